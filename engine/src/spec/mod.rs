//! Lossless speculative decoding: drafters propose tokens, the target verifies them in one forward.
//!
//! The structure follows llama.cpp's `common/speculative.cpp` (drafter lifecycle
//! `begin(prompt) / draft / accept(n)` with `process` mirroring the target's batches) and the
//! verification rules of Leviathan et al. 2023 / Chen et al. 2023 (rejection sampling), vLLM's
//! rejection sampler (n-gram drafts accepted with probability p(x)) and llama.cpp's
//! sample-and-match. Definitions and names follow shared/reference/speculation.md §0.
//!
//! Module map:
//! - [`verify`]: the acceptance rules as pure functions over slices (no model, caller-owned RNG).
//! - [`ngram_cache`], [`ngram_mod`], [`ngram_simple`]: model-free drafters.
//! - [`draft_model`]: a second model of the same vocabulary; [`mtp`]: the target's MTP head.
//! - [`stats`]: per-request counters ([`SpecStats`]); [`config`]: [`SpecConfig`] and its defaults.
//! - [`engine`]: the real engine as a target, [`Speculator`] and [`generate_speculative`].
//! - [`run`]: the speculative generation loop, the only place where verification is followed by
//!   cache truncation.

pub mod config;
pub mod draft_model;
pub mod engine;
pub mod mtp;
pub mod ngram_cache;
pub mod ngram_mod;
pub mod ngram_simple;
pub mod run;
pub mod stats;
pub mod verify;

#[cfg(test)]
mod lossless_tests;
#[cfg(test)]
mod mock;

use std::collections::BTreeMap;

use crate::Result;

pub use config::{SpecConfig, SpecMode, VerifyRule};
pub use engine::{Speculator, check_vocabulary, generate_speculative};
pub use run::{LoopOptions, LoopOutput, Target, TargetOutput, speculative_loop};
pub use stats::SpecStats;

/// Tokens proposed by a drafter for one round.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Draft {
    /// Proposed tokens d_1..d_k, in order.
    pub tokens: Vec<u32>,
    /// The drafter's distribution q_i for each proposed token, `k × vocab` row-major, when the
    /// drafter has one (draft model, MTP). `None` for n-gram drafters.
    pub probs: Option<Vec<f32>>,
}

impl Draft {
    /// A draft without probabilities.
    pub fn tokens(tokens: Vec<u32>) -> Self {
        Self {
            tokens,
            probs: None,
        }
    }

    /// An empty draft (the round becomes a plain decode step).
    pub fn empty() -> Self {
        Self::default()
    }
}

/// A speculative drafter. The loop drives it as llama.cpp does:
///
/// 1. `begin(prompt)` once per request;
/// 2. `process(batch, hidden)` after every target forward with the tokens that the target's cache
///    now holds for good (the prompt, a plain step's token, or the verified prefix of a round);
/// 3. `draft(history, n_max)` before each round, where `history` is the prompt plus every token
///    generated so far; its last element is the just-sampled token that the target has not
///    processed yet (llama.cpp's `id_last`);
/// 4. `accept(n_accepted)` after a round that verified a non-empty draft, before `process`.
///
/// A drafter owns whatever state it keeps (n-gram tables, a draft model's cache) and must roll
/// that state back itself in `accept`; the target's cache is rolled back by the loop.
pub trait Drafter {
    /// The mode name used in statistics (`ngram-cache`, `ngram-mod`, ...).
    fn name(&self) -> &'static str;

    /// Start a new request whose prompt is `prompt`.
    fn begin(&mut self, prompt: &[u32]) -> Result<()>;

    /// Propose at most `n_max` tokens to follow `history`.
    fn draft(&mut self, history: &[u32], n_max: usize) -> Result<Draft>;

    /// The target accepted the first `n_accepted` tokens of the last non-empty draft.
    fn accept(&mut self, n_accepted: usize) -> Result<()>;

    /// Whether `process` needs the target's hidden rows (MTP).
    fn needs_hidden(&self) -> bool {
        false
    }

    /// The target's cache now holds `batch` for good; `hidden` is its `batch.len() × d` hidden
    /// rows when `needs_hidden` is true.
    fn process(&mut self, batch: &[u32], hidden: Option<&[f32]>) -> Result<()> {
        let _ = (batch, hidden);
        Ok(())
    }

    /// Mode-specific counters reported under `SpecStats::extra` (e.g. ngram-mod resets).
    fn extra_stats(&self) -> BTreeMap<String, serde_json::Value> {
        BTreeMap::new()
    }
}
