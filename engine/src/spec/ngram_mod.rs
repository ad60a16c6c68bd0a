//! `ngram-mod`: llama.cpp's constant-memory n-gram drafter (PR #19164, `common/ngram-mod.cpp`,
//! behaviour as of commit 88a39274e; shared/reference/speculation.md §1.2).
//!
//! A flat pool of 4 Mi `i32` entries (16 MiB) maps the hash of an n_match-token window to the
//! token that followed it last time (last writer wins, no key check). The hash is the LCG
//! polynomial h ← h·6364136223846793005 + token (wrapping u64), index = h mod size. Drafting
//! slides the window over its own proposals, stops at an empty slot, and discards the whole
//! draft when the chain breaks before n_min tokens. The pool persists across requests unless
//! `reset_per_request`; it is cleared after 5 consecutive rounds with acceptance below 25 %, or at
//! `begin` when `used / size > 0.25` (`used` counts writes into non-empty slots, as llama.cpp does).

use std::collections::BTreeMap;

use super::{Draft, Drafter};
use crate::{EngineError, Result};

/// Entries in the pool (4·1024·1024, as llama.cpp).
pub const POOL_ENTRIES: usize = 4 * 1024 * 1024;
/// The LCG multiplier of the hash (Knuth / PCG).
pub const LCG_MULTIPLIER: u64 = 6364136223846793005;
/// Newly generated context is ingested in chunks of more than this many tokens.
pub const INGEST_CHUNK: usize = 32;
/// A round whose accepted fraction is below this counts as low acceptance.
pub const LOW_ACCEPTANCE: f64 = 0.25;
/// Consecutive low-acceptance rounds that reset the pool.
pub const LOW_ROUNDS_RESET: u32 = 5;
/// `used / size` above this at `begin` resets the pool.
pub const OCCUPANCY_RESET: f64 = 0.25;

const EMPTY: i32 = -1;

/// Parameters of ngram-mod (defaults: llama.cpp 88a39274e, `--spec-ngram-mod-*` 24 / 48 / 64).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NgramModParams {
    /// Tokens in the hashed window (`--spec-ngram-mod-n-match`).
    pub n_match: usize,
    /// Drafts shorter than this are discarded (`--spec-ngram-mod-n-min`).
    pub n_min: usize,
    /// Longest draft (`--spec-ngram-mod-n-max`).
    pub n_max: usize,
    /// Clear the pool at the start of every request (otherwise it persists across requests).
    pub reset_per_request: bool,
}

/// The ngram-mod drafter and its pool.
#[derive(Debug, Clone)]
pub struct NgramMod {
    params: NgramModParams,
    entries: Vec<i32>,
    used: usize,
    /// History position up to which n-grams have been ingested (llama.cpp's `i_last`).
    i_last: usize,
    n_draft_last: usize,
    n_low: u32,
    resets_low_acceptance: u64,
    resets_occupancy: u64,
}

impl NgramMod {
    /// A drafter with the standard 4 Mi-entry pool.
    pub fn new(params: NgramModParams) -> Result<Self> {
        Self::with_pool_entries(params, POOL_ENTRIES)
    }

    /// A drafter with a pool of `entries` slots (tests use small pools to reach the occupancy
    /// rule quickly).
    pub fn with_pool_entries(params: NgramModParams, entries: usize) -> Result<Self> {
        if params.n_match == 0 || entries == 0 {
            return Err(EngineError::Invalid(format!(
                "ngram-mod: spec_ngram_mod_n_match ({}) and the pool size ({entries}) must be positive",
                params.n_match
            )));
        }
        if params.n_min > params.n_max {
            return Err(EngineError::Invalid(format!(
                "ngram-mod: spec_ngram_mod_n_min ({}) is larger than spec_ngram_mod_n_max ({})",
                params.n_min, params.n_max
            )));
        }
        Ok(Self {
            params,
            entries: vec![EMPTY; entries],
            used: 0,
            i_last: 0,
            n_draft_last: 0,
            n_low: 0,
            resets_low_acceptance: 0,
            resets_occupancy: 0,
        })
    }

    /// The parameters in use.
    pub fn params(&self) -> NgramModParams {
        self.params
    }

    /// Pool index of an n_match-token window.
    pub fn index(&self, window: &[u32]) -> usize {
        let h = window.iter().fold(0u64, |h, &t| {
            h.wrapping_mul(LCG_MULTIPLIER).wrapping_add(t as u64)
        });
        (h % self.entries.len() as u64) as usize
    }

    /// The `used` counter (writes into already non-empty slots).
    pub fn used(&self) -> usize {
        self.used
    }

    /// Clear the pool.
    pub fn reset(&mut self) {
        self.entries.fill(EMPTY);
        self.used = 0;
    }

    fn add(&mut self, ngram: &[u32]) {
        let n = self.params.n_match;
        let idx = self.index(&ngram[..n]);
        if self.entries[idx] != EMPTY {
            self.used += 1;
        }
        self.entries[idx] = ngram[n] as i32;
    }

    fn get(&self, window: &[u32]) -> Option<u32> {
        let v = self.entries[self.index(window)];
        (v != EMPTY).then_some(v as u32)
    }

    /// Add every n-gram (window + next token) starting at positions `from..to` of `tokens`.
    fn ingest(&mut self, tokens: &[u32], from: usize, to: usize) {
        let n = self.params.n_match;
        for i in from..to {
            self.add(&tokens[i..i + n + 1]);
        }
    }
}

impl Drafter for NgramMod {
    fn name(&self) -> &'static str {
        "ngram-mod"
    }

    fn begin(&mut self, prompt: &[u32]) -> Result<()> {
        if self.params.reset_per_request {
            self.reset();
        }
        let n = self.params.n_match;
        self.i_last = 0;
        self.n_low = 0;
        if prompt.len() > n {
            self.ingest(prompt, 0, prompt.len() - n);
            self.i_last = prompt.len() - n;
        }
        if self.used as f64 / self.entries.len() as f64 > OCCUPANCY_RESET {
            self.reset();
            self.resets_occupancy += 1;
        }
        Ok(())
    }

    fn draft(&mut self, history: &[u32], n_max: usize) -> Result<Draft> {
        let n = self.params.n_match;
        self.n_draft_last = 0;
        // `history` ends with id_last, which the target has not processed yet.
        let cur_len = history.len().saturating_sub(1);
        if self.i_last + INGEST_CHUNK < cur_len && cur_len > n {
            self.ingest(history, self.i_last, cur_len - n);
            self.i_last = cur_len - n;
        }
        if history.len() < n {
            return Ok(Draft::empty());
        }
        let n_max = n_max.min(self.params.n_max);
        let mut window: Vec<u32> = history[history.len() - n..].to_vec();
        let mut tokens = Vec::new();
        while tokens.len() < n_max {
            match self.get(&window[window.len() - n..]) {
                Some(tok) => {
                    tokens.push(tok);
                    window.push(tok);
                }
                None => break,
            }
        }
        if tokens.len() < self.params.n_min {
            tokens.clear();
        }
        self.n_draft_last = tokens.len();
        Ok(Draft::tokens(tokens))
    }

    fn accept(&mut self, n_accepted: usize) -> Result<()> {
        if self.n_draft_last == 0 {
            return Ok(());
        }
        let f = n_accepted as f64 / self.n_draft_last as f64;
        if f < LOW_ACCEPTANCE {
            self.n_low += 1;
            if self.n_low >= LOW_ROUNDS_RESET {
                self.reset();
                self.n_low = 0;
                self.i_last = 0;
                self.resets_low_acceptance += 1;
            }
        } else {
            self.n_low = 0;
        }
        Ok(())
    }

    fn extra_stats(&self) -> BTreeMap<String, serde_json::Value> {
        BTreeMap::from([
            (
                "reset_per_request".to_string(),
                self.params.reset_per_request.into(),
            ),
            (
                "resets_low_acceptance".to_string(),
                self.resets_low_acceptance.into(),
            ),
            ("resets_occupancy".to_string(), self.resets_occupancy.into()),
            ("pool_used".to_string(), (self.used as u64).into()),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(n_match: usize, n_min: usize, n_max: usize) -> NgramModParams {
        NgramModParams {
            n_match,
            n_min,
            n_max,
            reset_per_request: false,
        }
    }

    /// A passage of distinct tokens.
    fn passage(start: u32, len: u32) -> Vec<u32> {
        (start..start + len).collect()
    }

    #[test]
    fn hash_is_the_lcg_polynomial() {
        let m = NgramMod::new(params(2, 0, 4)).unwrap();
        let h = 5u64.wrapping_mul(LCG_MULTIPLIER).wrapping_add(7);
        assert_eq!(m.index(&[5, 7]), (h % POOL_ENTRIES as u64) as usize);
    }

    #[test]
    fn repeated_passage_drafts_its_continuation() {
        let mut m = NgramMod::new(params(4, 2, 8)).unwrap();
        let text = passage(100, 40);
        // The prompt holds the passage; generation has restarted it: history ends with 100..104.
        m.begin(&text).unwrap();
        let mut history = text.clone();
        history.extend(100..104);
        let d = m.draft(&history, 64).unwrap();
        assert_eq!(d.tokens, (104..112).collect::<Vec<_>>());
        assert!(d.probs.is_none());
    }

    #[test]
    fn draft_is_capped_by_the_loop_limit() {
        let mut m = NgramMod::new(params(4, 2, 8)).unwrap();
        let text = passage(100, 40);
        m.begin(&text).unwrap();
        let mut history = text.clone();
        history.extend(100..104);
        assert_eq!(m.draft(&history, 3).unwrap().tokens, vec![104, 105, 106]);
    }

    #[test]
    fn chain_shorter_than_n_min_is_discarded() {
        // The passage ends 3 tokens after the matched window: the chain breaks at 3 < n_min 5.
        let mut m = NgramMod::new(params(4, 5, 8)).unwrap();
        let text = passage(100, 10);
        m.begin(&text).unwrap();
        let mut history = vec![1, 2, 3];
        history.extend(103..107);
        assert!(m.draft(&history, 64).unwrap().tokens.is_empty());
        // With n_min 3 the same chain is proposed.
        let mut m = NgramMod::new(params(4, 3, 8)).unwrap();
        m.begin(&text).unwrap();
        assert_eq!(m.draft(&history, 64).unwrap().tokens, vec![107, 108, 109]);
    }

    #[test]
    fn generated_context_is_ingested_in_chunks() {
        let mut m = NgramMod::new(params(4, 1, 4)).unwrap();
        m.begin(&[1, 2, 3, 4, 5]).unwrap();
        let generated = passage(200, 20);
        let mut history = vec![1, 2, 3, 4, 5];
        history.extend(&generated);
        history.extend(200..204);
        // 5 + 24 tokens processed: i_last (1) + 32 ≥ 28 so nothing new is ingested yet.
        assert!(m.draft(&history, 4).unwrap().tokens.is_empty());
        let mut long = vec![1, 2, 3, 4, 5];
        long.extend(passage(200, 40));
        long.extend(200..204);
        assert_eq!(m.draft(&long, 4).unwrap().tokens, vec![204, 205, 206, 207]);
    }

    #[test]
    fn five_low_acceptance_rounds_reset_the_pool() {
        let mut m = NgramMod::new(params(4, 1, 8)).unwrap();
        let text = passage(100, 40);
        m.begin(&text).unwrap();
        let mut history = text.clone();
        history.extend(100..104);
        for round in 0..4 {
            assert_eq!(
                m.draft(&history, 8).unwrap().tokens.len(),
                8,
                "round {round}"
            );
            m.accept(1).unwrap(); // 1/8 < 0.25
        }
        // A good round clears the streak.
        m.draft(&history, 8).unwrap();
        m.accept(8).unwrap();
        for _ in 0..4 {
            m.draft(&history, 8).unwrap();
            m.accept(0).unwrap();
        }
        assert_eq!(m.draft(&history, 8).unwrap().tokens.len(), 8, "still alive");
        m.accept(0).unwrap(); // the fifth consecutive low round
        assert_eq!(m.extra_stats()["resets_low_acceptance"], 1);
        // History is short of a new chunk, so nothing was re-ingested: no draft.
        let short: Vec<u32> = history[history.len() - 8..].to_vec();
        assert!(m.draft(&short, 8).unwrap().tokens.is_empty());
    }

    #[test]
    fn occupancy_above_a_quarter_resets_at_begin() {
        // 64 slots; overwrites of non-empty slots count as `used`.
        let mut m = NgramMod::with_pool_entries(params(2, 1, 4), 64).unwrap();
        let noise: Vec<u32> = (0..200).map(|i| (i * 7919 + 13) % 1000).collect();
        m.begin(&noise).unwrap();
        assert_eq!(m.extra_stats()["resets_occupancy"], 1);
        assert_eq!(m.used(), 0);
    }

    #[test]
    fn pool_persists_across_requests_unless_reset_per_request() {
        let text = passage(100, 40);
        let mut history = vec![7, 7];
        history.extend(100..104);
        for (reset, expect_draft) in [(false, true), (true, false)] {
            let mut m = NgramMod::new(NgramModParams {
                reset_per_request: reset,
                ..params(4, 1, 4)
            })
            .unwrap();
            m.begin(&text).unwrap();
            m.begin(&[1, 2, 3]).unwrap();
            let d = m.draft(&history, 4).unwrap();
            assert_eq!(
                !d.tokens.is_empty(),
                expect_draft,
                "reset_per_request {reset}"
            );
        }
    }

    #[test]
    fn invalid_parameters_are_errors() {
        assert!(NgramMod::new(params(0, 1, 4)).is_err());
        let err = NgramMod::new(params(4, 9, 4)).unwrap_err().to_string();
        assert!(err.contains("spec_ngram_mod_n_min"), "{err}");
    }
}
