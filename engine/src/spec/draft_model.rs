//! `draft`: speculative decoding with a second, smaller model of the same vocabulary
//! (Leviathan et al. 2023; llama.cpp `draft-simple`, shared/reference/speculation.md §1.0, §1.5).
//!
//! The draft model keeps its own cache. It processes the prompt in the request's prompt phase,
//! when the target has (`process` on the prompt batch: llama.cpp's server mirrors every target
//! batch on the draft, and `examples/speculative` evaluates the prompt on both models before its
//! decode timer starts), so the prompt counts in the time to first token, not in decoding. Before
//! each round it catches up on the tokens the target accepted since the last round (the longest
//! common prefix with its cache is kept) in the same forward as the round's first draft step,
//! then drafts token by token. Greedy drafting follows llama.cpp: the top candidate of a top-10
//! softmax (its probability found in one pass, `sampling::top_k_probability`), and drafting stops
//! before a token whose probability is below `draft_p_min` (per token, not cumulative) or at
//! `draft_max`; a draft shorter than `draft_min` is dropped. When the loop
//! verifies with rejection sampling the drafter instead samples each token from its own
//! distribution q under the request's sampler and returns q with the draft (the Leviathan rule
//! needs d ~ q); the p_min test then uses q(d). After a round that accepted a tokens the cache is
//! truncated to the history plus the accepted drafts it had processed.

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::run::Target;
use super::verify::draw;
use super::{Draft, Drafter};
use crate::sampling::{Sampling, probabilities, top_k_probability};
use crate::{EngineError, Result};

/// llama.cpp's hard-coded top-k of draft sampling (`LLAMA_DRAFT_TOP_K` in later builds).
pub const DRAFT_TOP_K: usize = 10;

/// Draft-length limits shared by the draft-model and MTP drafters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DraftParams {
    /// Drafts shorter than this are dropped.
    pub draft_min: usize,
    /// Longest draft.
    pub draft_max: usize,
    /// Stop before a token whose probability is below this.
    pub draft_p_min: f32,
}

/// How a model-based drafter picks its tokens.
#[derive(Debug)]
pub struct DraftChooser {
    sampling: Sampling,
    rng: StdRng,
}

impl DraftChooser {
    /// Greedy drafting (greedy requests, or sample-and-match verification).
    pub fn greedy() -> Self {
        Self::new(Sampling::Greedy, 0)
    }

    /// Draft under `sampling` with a drafter-owned RNG seeded with `seed`.
    pub fn new(sampling: Sampling, seed: u64) -> Self {
        Self {
            sampling,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// Whether drafts carry their distribution q.
    pub fn with_probs(&self) -> bool {
        !matches!(self.sampling, Sampling::Greedy)
    }

    /// Choose a token from one row of logits: (token, its probability for the p_min test, q row
    /// when sampling).
    pub fn choose(&mut self, row: &[f32]) -> (u32, f32, Option<Vec<f32>>) {
        match self.sampling {
            Sampling::Greedy => {
                let (top, p) = top_k_probability(row, DRAFT_TOP_K);
                (top, p, None)
            }
            s => {
                let q = probabilities(row, &s);
                let t = draw(&q, &mut self.rng);
                (t, q[t as usize], Some(q))
            }
        }
    }
}

/// Draft up to `n_max` tokens from a model whose logits for the first step are `first_row`;
/// `step(token)` feeds a drafted token and returns the next row. Shared by the draft-model and
/// MTP drafters. Returns the draft and how many drafted tokens were fed back.
pub fn draft_chain(
    first_row: Vec<f32>,
    n_max: usize,
    params: &DraftParams,
    chooser: &mut DraftChooser,
    mut step: impl FnMut(u32) -> Result<Vec<f32>>,
) -> Result<(Draft, usize)> {
    let mut tokens = Vec::new();
    let mut probs: Option<Vec<f32>> = chooser.with_probs().then(Vec::new);
    let mut row = first_row;
    let mut fed = 0;
    let n_max = n_max.min(params.draft_max);
    while tokens.len() < n_max {
        let (tok, p, q) = chooser.choose(&row);
        if p < params.draft_p_min {
            break;
        }
        tokens.push(tok);
        if let (Some(all), Some(q)) = (probs.as_mut(), q) {
            all.extend(q);
        }
        if tokens.len() < n_max {
            row = step(tok)?;
            fed += 1;
        }
    }
    if tokens.len() < params.draft_min {
        return Ok((Draft::empty(), fed));
    }
    Ok((Draft { tokens, probs }, fed))
}

/// The draft-model drafter over any [`Target`] (the real engine or a mock).
#[derive(Debug)]
pub struct DraftModel<M: Target> {
    model: M,
    params: DraftParams,
    chooser: DraftChooser,
    /// Tokens in the draft model's cache, in order.
    cached: Vec<u32>,
    /// History length at the last draft, and drafted tokens fed after it.
    last_draft: Option<(usize, usize)>,
}

impl<M: Target> DraftModel<M> {
    /// A drafter around `model`, whose cache must start empty.
    pub fn new(model: M, params: DraftParams, chooser: DraftChooser) -> Self {
        Self {
            model,
            params,
            chooser,
            cached: Vec::new(),
            last_draft: None,
        }
    }

    /// The wrapped model.
    pub fn model(&self) -> &M {
        &self.model
    }

    fn truncate(&mut self, len: usize) -> Result<()> {
        self.model.truncate(len)?;
        self.cached.truncate(len);
        Ok(())
    }
}

impl<M: Target> Drafter for DraftModel<M> {
    fn name(&self) -> &'static str {
        "draft"
    }

    fn begin(&mut self, _prompt: &[u32]) -> Result<()> {
        self.truncate(0)?;
        self.last_draft = None;
        Ok(())
    }

    fn draft(&mut self, history: &[u32], n_max: usize) -> Result<Draft> {
        if history.is_empty() {
            return Ok(Draft::empty());
        }
        let common = self
            .cached
            .iter()
            .zip(history)
            .take_while(|(a, b)| a == b)
            .count()
            .min(history.len() - 1);
        self.truncate(common)?;
        let room = self.model.capacity().saturating_sub(history.len());
        let n_max = n_max.min(room + 1);
        if n_max == 0 {
            return Ok(Draft::empty());
        }
        let vocab = self.model.vocab_size();
        // Catching up (the whole prompt on the first call) needs the last row's logits only: a
        // prefill, which skips the LM head for the other rows.
        let out = self.model.prefill(&history[common..], false)?;
        if out.logits.len() != vocab {
            return Err(EngineError::Shape {
                tensor: "draft logits".to_string(),
                expected: vec![1, vocab],
                got: vec![out.logits.len()],
            });
        }
        self.cached.extend_from_slice(&history[common..]);
        let first = out.logits;
        let model = &mut self.model;
        let cached = &mut self.cached;
        let (draft, fed) = draft_chain(first, n_max, &self.params, &mut self.chooser, |tok| {
            let out = model.forward(&[tok], false)?;
            cached.push(tok);
            Ok(out.logits)
        })?;
        self.last_draft = Some((history.len(), fed));
        Ok(draft)
    }

    fn accept(&mut self, n_accepted: usize) -> Result<()> {
        if let Some((history_len, fed)) = self.last_draft.take() {
            self.truncate(history_len + n_accepted.min(fed))?;
        }
        Ok(())
    }

    fn process(&mut self, batch: &[u32], _hidden: Option<&[f32]>) -> Result<()> {
        // Only the prompt (the first batch after `begin`), and only when a round's catch-up token
        // still fits after it; later batches are caught up lazily by `draft`, in one forward with
        // the round's first draft step, which a separate forward here would cost again.
        if self.cached.is_empty() && !batch.is_empty() && batch.len() < self.model.capacity() {
            self.model.prefill(batch, false)?;
            self.cached.extend_from_slice(batch);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::mock::MockModel;

    fn params(draft_min: usize, draft_max: usize, draft_p_min: f32) -> DraftParams {
        DraftParams {
            draft_min,
            draft_max,
            draft_p_min,
        }
    }

    #[test]
    fn exact_draft_model_drafts_the_targets_greedy_continuation() {
        let mut target = MockModel::target(32, 7);
        let prompt = [1, 2, 3];
        let expected = crate::spec::mock::plain_greedy(&mut target, &prompt, 5);
        let mut d = DraftModel::new(
            MockModel::draft(32, 7, 0.0),
            params(0, 4, 0.0),
            DraftChooser::greedy(),
        );
        d.begin(&prompt).unwrap();
        let mut history = prompt.to_vec();
        history.push(expected[0]);
        let draft = d.draft(&history, 8).unwrap();
        assert_eq!(draft.tokens, expected[1..5].to_vec());
        assert!(draft.probs.is_none());
        // 4 history tokens + 3 fed drafts; accepting 1 keeps history + 1.
        assert_eq!(d.model().len(), 7);
        d.accept(1).unwrap();
        assert_eq!(d.model().len(), 5);
    }

    #[test]
    fn the_prompt_is_processed_in_the_prompt_phase_and_each_round_catches_up_once() {
        let mut target = MockModel::target(32, 7);
        let prompt = [1, 2, 3, 4, 5];
        let expected = crate::spec::mock::plain_greedy(&mut target, &prompt, 4);
        let mut d = DraftModel::new(
            MockModel::draft(32, 7, 0.0),
            params(0, 2, 0.0),
            DraftChooser::greedy(),
        );
        d.begin(&prompt).unwrap();
        d.process(&prompt, None).unwrap();
        assert_eq!((d.model().len(), d.model().forwards), (5, 1));
        // the round: one forward over the first generated token, one over the first draft
        let mut history = prompt.to_vec();
        history.push(expected[0]);
        let draft = d.draft(&history, 2).unwrap();
        assert_eq!(draft.tokens, expected[1..3].to_vec());
        assert_eq!((d.model().len(), d.model().forwards), (7, 3));
        // the kept tokens are not processed again until the next round's catch-up
        d.accept(2).unwrap();
        d.process(&expected[..3], None).unwrap();
        assert_eq!((d.model().len(), d.model().forwards), (7, 3));
        // a new request starts from an empty cache and processes its prompt again
        d.begin(&prompt[..2]).unwrap();
        d.process(&prompt[..2], None).unwrap();
        assert_eq!((d.model().len(), d.model().forwards), (2, 4));
    }

    #[test]
    fn p_min_stops_and_draft_min_drops() {
        let prompt = [4, 5, 6];
        let mut d = DraftModel::new(
            MockModel::draft(32, 7, 0.0),
            params(0, 4, 1.01),
            DraftChooser::greedy(),
        );
        d.begin(&prompt).unwrap();
        assert!(
            d.draft(&prompt, 4).unwrap().tokens.is_empty(),
            "no token has p ≥ 1.01"
        );
        let mut d = DraftModel::new(
            MockModel::draft(32, 7, 0.0),
            params(5, 8, 0.0),
            DraftChooser::greedy(),
        );
        d.begin(&prompt).unwrap();
        assert!(
            d.draft(&prompt, 4).unwrap().tokens.is_empty(),
            "4 < draft_min 5"
        );
    }

    #[test]
    fn sampled_drafts_carry_their_distribution() {
        let s = Sampling::Sample {
            temperature: 1.0,
            top_k: None,
            top_p: None,
            seed: 0,
        };
        let mut d = DraftModel::new(
            MockModel::draft(16, 3, 0.5),
            params(0, 3, 0.0),
            DraftChooser::new(s, 9),
        );
        d.begin(&[1, 2]).unwrap();
        let draft = d.draft(&[1, 2], 3).unwrap();
        let q = draft.probs.unwrap();
        assert_eq!(q.len(), 3 * 16);
        for (i, &t) in draft.tokens.iter().enumerate() {
            let row = &q[i * 16..(i + 1) * 16];
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4);
            assert!(row[t as usize] > 0.0);
        }
    }
}
