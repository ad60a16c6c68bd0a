//! `ngram-simple`: prompt lookup decoding (Saxena 2023, apoorvumang/prompt-lookup-decoding), as
//! vLLM's `ngram` method implements it (`vllm/v1/spec_decode/ngram_proposer.py`;
//! shared/reference/speculation.md §2.1).
//!
//! Find the longest suffix of the history, of length n with prompt_lookup_min ≤ n ≤
//! prompt_lookup_max, that also occurs earlier in the history; among occurrences of that length
//! take the earliest; propose the k tokens that followed it (clipped at the end of the history).
//! No state is kept between rounds: the history (prompt + output) is the only source.

use super::{Draft, Drafter};
use crate::{EngineError, Result};

/// Parameters of prompt lookup (defaults: vLLM, both bounds 5 when neither is given).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NgramSimpleParams {
    /// Shortest suffix that may match (`prompt_lookup_min`).
    pub prompt_lookup_min: usize,
    /// Longest suffix tried (`prompt_lookup_max`).
    pub prompt_lookup_max: usize,
    /// Tokens proposed per round (`draft_max`; vLLM's `num_speculative_tokens`).
    pub n_draft: usize,
}

/// The prompt-lookup drafter.
#[derive(Debug, Clone)]
pub struct NgramSimple {
    params: NgramSimpleParams,
}

impl NgramSimple {
    /// A drafter with validated parameters.
    pub fn new(params: NgramSimpleParams) -> Result<Self> {
        if params.prompt_lookup_min == 0 || params.prompt_lookup_min > params.prompt_lookup_max {
            return Err(EngineError::Invalid(format!(
                "ngram-simple: need 1 ≤ prompt_lookup_min ({}) ≤ prompt_lookup_max ({})",
                params.prompt_lookup_min, params.prompt_lookup_max
            )));
        }
        Ok(Self { params })
    }
}

/// The proposal of prompt lookup for `history`: the up-to-`k` tokens that followed the earliest
/// earlier occurrence of the longest matching suffix of length `min..=max`.
pub fn lookup(history: &[u32], min: usize, max: usize, k: usize) -> Vec<u32> {
    let len = history.len();
    if k == 0 {
        return Vec::new();
    }
    for n in (min..=max.min(len.saturating_sub(1))).rev() {
        let suffix = &history[len - n..];
        // Occurrences must end before the suffix itself does, so at least one token follows.
        if let Some(start) = (0..len - n).find(|&i| &history[i..i + n] == suffix) {
            let from = start + n;
            let to = (from + k).min(len);
            return history[from..to].to_vec();
        }
    }
    Vec::new()
}

impl Drafter for NgramSimple {
    fn name(&self) -> &'static str {
        "ngram-simple"
    }

    fn begin(&mut self, _prompt: &[u32]) -> Result<()> {
        Ok(())
    }

    fn draft(&mut self, history: &[u32], n_max: usize) -> Result<Draft> {
        let p = self.params;
        let k = n_max.min(p.n_draft);
        Ok(Draft::tokens(lookup(
            history,
            p.prompt_lookup_min,
            p.prompt_lookup_max,
            k,
        )))
    }

    fn accept(&mut self, _n_accepted: usize) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(history: &[u32], min: usize, max: usize, k: usize, expected: &[u32]) {
        assert_eq!(
            lookup(history, min, max, k),
            expected,
            "history {history:?} min {min} max {max} k {k}"
        );
    }

    #[test]
    fn lookup_table() {
        // Suffix [1,2] occurs at 0: propose what followed.
        check(&[1, 2, 3, 4, 5, 1, 2], 1, 3, 3, &[3, 4, 5]);
        // Longest match wins: [2,3] at 4 (len 2) beats [3] at 1 (len 1).
        check(&[9, 3, 7, 8, 2, 3, 6, 2, 3], 1, 2, 1, &[6]);
        // Earliest occurrence at the longest length.
        check(&[1, 2, 5, 1, 2, 6, 1, 2], 2, 2, 1, &[5]);
        // Clipped at the end of the history.
        check(&[4, 4, 4], 1, 1, 5, &[4, 4]);
        // Below prompt_lookup_min nothing matches.
        check(&[1, 2, 3, 9, 3], 2, 3, 2, &[]);
        // No earlier occurrence.
        check(&[1, 2, 3], 1, 3, 2, &[]);
        check(&[], 1, 3, 2, &[]);
        check(&[1, 2, 1], 1, 3, 0, &[]);
    }

    #[test]
    fn repeated_passage_drafts_its_continuation() {
        let mut d = NgramSimple::new(NgramSimpleParams {
            prompt_lookup_min: 2,
            prompt_lookup_max: 4,
            n_draft: 4,
        })
        .unwrap();
        let mut history: Vec<u32> = (100..130).collect();
        history.extend(110..114);
        d.begin(&history).unwrap();
        assert_eq!(
            d.draft(&history, 10).unwrap().tokens,
            vec![114, 115, 116, 117]
        );
        assert_eq!(d.draft(&history, 2).unwrap().tokens, vec![114, 115]);
    }

    #[test]
    fn invalid_bounds_are_errors() {
        let bad = NgramSimpleParams {
            prompt_lookup_min: 5,
            prompt_lookup_max: 3,
            n_draft: 4,
        };
        assert!(NgramSimple::new(bad).is_err());
    }
}
