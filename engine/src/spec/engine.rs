//! Speculative decoding on the real engine: [`Target`] for an [`Engine`] with its [`KvCache`],
//! [`MtpHead`] for the engine's MTP head, the draft model's vocabulary check, the drafter chosen
//! by a [`SpecConfig`] ([`Speculator`]) and [`generate_speculative`], which reports a
//! [`Generation`] with the same timing definitions as plain [`crate::generate()`] plus the round
//! statistics.
//!
//! Caches of drafters that outlive one request are allocated with a working capacity. The draft
//! model's is rebuilt when a request needs more, by re-running the positions it holds (a rare,
//! correctness-preserving fallback; it shows up in `draft_ms`). The MTP head's is resized at a
//! request's start to the prompt plus 4096 positions; a request generating past that fails with
//! a cache-full error naming both numbers.

use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::draft_model::{DraftChooser, DraftModel, DraftParams};
use super::mtp::{MtpDrafter, MtpHead};
use super::ngram_cache::{NgramCacheDrafter, NgramCacheParams};
use super::ngram_mod::{NgramMod, NgramModParams};
use super::ngram_simple::{NgramSimple, NgramSimpleParams};
use super::run::{LoopOptions, Target, TargetOutput, speculative_loop};
use super::{Drafter, SpecConfig, SpecMode, SpecStats, VerifyRule};
use crate::generate::{GenerateOptions, Generation, StopReason};
use crate::model::moe::ExpertTally;
use crate::sampling::Sampling;
use crate::{Engine, EngineError, KvCache, Result};

/// Working capacity of caches owned by drafters (grown on demand).
const DRAFTER_CACHE: usize = 4096;

/// An engine and a cache it writes to, seen as a [`Target`]. With `growable`, a forward that
/// does not fit reallocates a larger cache and replays the tokens it holds.
pub struct EngineTarget<'a> {
    engine: &'a Engine,
    cache: KvCache,
    tokens: Vec<u32>,
    growable: bool,
    /// MoE targets: distinct experts per layer by forward batch size (verify batches included).
    experts: Option<ExpertTally>,
}

impl<'a> EngineTarget<'a> {
    /// A target with a fixed-capacity cache.
    pub fn new(engine: &'a Engine, capacity: usize) -> Result<Self> {
        Ok(Self {
            cache: engine.new_cache(capacity)?,
            engine,
            tokens: Vec::new(),
            growable: false,
            experts: ExpertTally::for_config(engine.config()),
        })
    }

    /// A target whose cache grows when needed (draft models).
    pub fn growable(engine: &'a Engine) -> Result<Self> {
        Ok(Self {
            growable: true,
            ..Self::new(engine, DRAFTER_CACHE)?
        })
    }
}

fn output(out: crate::ForwardOutput) -> TargetOutput {
    TargetOutput {
        logits: out.logits,
        hidden: out.hidden,
    }
}

impl Target for EngineTarget<'_> {
    fn vocab_size(&self) -> usize {
        self.engine.config().vocab_size
    }
    fn len(&self) -> usize {
        self.cache.len()
    }
    fn capacity(&self) -> usize {
        if self.growable {
            usize::MAX / 2
        } else {
            self.cache.capacity()
        }
    }
    fn forward(&mut self, tokens: &[u32], want_hidden: bool) -> Result<TargetOutput> {
        let needed = self.cache.len() + tokens.len();
        if self.growable && needed > self.cache.capacity() {
            let mut cache = self
                .engine
                .new_cache(needed.max(2 * self.cache.capacity()))?;
            if !self.tokens.is_empty() {
                self.engine.forward_last(&self.tokens, &mut cache)?;
            }
            self.cache = cache;
        }
        let out = self.engine.forward(tokens, &mut self.cache, want_hidden)?;
        self.tokens.extend_from_slice(tokens);
        if let Some(t) = self.experts.as_mut() {
            t.record(tokens.len(), &out.experts_touched);
        }
        Ok(output(out))
    }
    fn prefill(&mut self, tokens: &[u32], want_hidden: bool) -> Result<TargetOutput> {
        let out = self.engine.forward_rows(
            tokens,
            &mut self.cache,
            crate::LogitRows::Last,
            want_hidden,
        )?;
        self.tokens.extend_from_slice(tokens);
        if let Some(t) = self.experts.as_mut() {
            t.record(tokens.len(), &out.experts_touched);
        }
        Ok(output(out))
    }
    fn truncate(&mut self, len: usize) -> Result<()> {
        self.cache.truncate(len)?;
        self.tokens.truncate(len);
        Ok(())
    }
}

/// The engine's MTP head with its own cache, seen as an [`MtpHead`].
pub struct EngineMtp<'a> {
    engine: &'a Engine,
    cache: KvCache,
}

impl<'a> EngineMtp<'a> {
    /// The head of `engine`; an error when the checkpoint has none.
    pub fn new(engine: &'a Engine) -> Result<Self> {
        Ok(Self {
            cache: engine.new_mtp_cache(DRAFTER_CACHE)?,
            engine,
        })
    }
}

impl MtpHead for EngineMtp<'_> {
    fn vocab_size(&self) -> usize {
        self.engine.config().vocab_size
    }
    fn len(&self) -> usize {
        self.cache.len()
    }
    fn forward(&mut self, tokens: &[u32], hidden: &[f32]) -> Result<TargetOutput> {
        let needed = self.cache.len() + tokens.len();
        if needed > self.cache.capacity() && self.cache.is_empty() {
            // At a request's start (the prompt's pairs): make room for the prompt plus a
            // working margin for generation.
            self.cache = self.engine.new_mtp_cache(needed + DRAFTER_CACHE)?;
        }
        if needed > self.cache.capacity() {
            // Mid-request the entries depend on hidden rows no longer at hand: report the limit.
            return Err(EngineError::CacheFull {
                needed: self.cache.len() + tokens.len(),
                capacity: self.cache.capacity(),
            });
        }
        Ok(output(self.engine.mtp_forward(
            tokens,
            hidden,
            &mut self.cache,
        )?))
    }
    fn truncate(&mut self, len: usize) -> Result<()> {
        self.cache.truncate(len)
    }
}

/// Check that `draft` can draft for `target`: same vocabulary size, same special ids and the
/// same token text for every id (llama.cpp checks text from id 5 up; we check all).
pub fn check_vocabulary(target: &Engine, draft: &Engine) -> Result<()> {
    let (t, d) = (target.config(), draft.config());
    let bad = |what: String| {
        EngineError::Invalid(format!(
            "draft model {} does not share the vocabulary of {}: {what}",
            draft.origin().display(),
            target.origin().display()
        ))
    };
    if t.vocab_size != d.vocab_size {
        return Err(bad(format!(
            "vocab_size {} vs {}",
            d.vocab_size, t.vocab_size
        )));
    }
    if t.eos_token_ids != d.eos_token_ids {
        return Err(bad(format!(
            "eos ids {:?} vs {:?}",
            d.eos_token_ids, t.eos_token_ids
        )));
    }
    if t.bos_token_id != d.bos_token_id {
        return Err(bad(format!(
            "bos id {:?} vs {:?}",
            d.bos_token_id, t.bos_token_id
        )));
    }
    match (target.tokenizer(), draft.tokenizer()) {
        (Some(tt), Some(dt)) => {
            let n = tt
                .inner()
                .get_vocab_size(true)
                .max(dt.inner().get_vocab_size(true));
            for id in 0..n as u32 {
                let (a, b) = (tt.inner().id_to_token(id), dt.inner().id_to_token(id));
                if a != b {
                    return Err(bad(format!(
                        "token {id} is {b:?} in the draft, {a:?} in the target"
                    )));
                }
            }
            Ok(())
        }
        (None, None) => Ok(()),
        _ => Err(bad("only one of the two models has a tokenizer".to_string())),
    }
}

/// A drafter chosen by a [`SpecConfig`]. Keep one per run to let n-gram state persist across
/// requests (ngram-mod's pool) as in a long-running server.
pub struct Speculator<'a> {
    config: SpecConfig,
    drafter: Box<dyn Drafter + 'a>,
}

impl<'a> Speculator<'a> {
    /// Build the drafter of `config` for `target` (and `draft`, required for `--spec draft`).
    /// `sampling` is the request's sampler: with rejection sampling the model drafters sample
    /// from their own distribution; otherwise they draft greedily as llama.cpp does.
    pub fn new(
        target: &'a Engine,
        draft: Option<&'a Engine>,
        config: &SpecConfig,
        sampling: &Sampling,
    ) -> Result<Self> {
        config.validate()?;
        let chooser = || match (sampling, config.verify) {
            (Sampling::Sample { seed, .. }, VerifyRule::Rejection) => {
                DraftChooser::new(*sampling, seed ^ 0x5EED_D4AF)
            }
            _ => DraftChooser::greedy(),
        };
        let params = DraftParams {
            draft_min: config.draft_min,
            draft_max: config.draft_max,
            draft_p_min: config.draft_p_min,
        };
        let drafter: Box<dyn Drafter + 'a> = match config.mode {
            SpecMode::None => {
                return Err(EngineError::Invalid(
                    "--spec none has no drafter: use plain generation".to_string(),
                ));
            }
            SpecMode::NgramCache => Box::new(NgramCacheDrafter::new(NgramCacheParams {
                n_draft: config.draft_max,
                static_path: config.lookup_cache_static.clone(),
                dynamic_path: config.lookup_cache_dynamic.clone(),
                reset_per_request: config.reset_per_request,
            })?),
            SpecMode::NgramMod => Box::new(NgramMod::new(NgramModParams {
                n_match: config.ngram_mod_n_match,
                n_min: config.ngram_mod_n_min,
                n_max: config.ngram_mod_n_max,
                reset_per_request: config.reset_per_request,
            })?),
            SpecMode::NgramSimple => Box::new(NgramSimple::new(NgramSimpleParams {
                prompt_lookup_min: config.prompt_lookup_min,
                prompt_lookup_max: config.prompt_lookup_max,
                n_draft: config.draft_max,
            })?),
            SpecMode::Draft => {
                let draft = draft.ok_or_else(|| {
                    EngineError::Invalid("--spec draft needs a loaded draft model".to_string())
                })?;
                check_vocabulary(target, draft)?;
                Box::new(DraftModel::new(
                    EngineTarget::growable(draft)?,
                    params,
                    chooser(),
                ))
            }
            SpecMode::Mtp => Box::new(MtpDrafter::new(EngineMtp::new(target)?, params, chooser())),
        };
        Ok(Self {
            config: config.clone(),
            drafter,
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &SpecConfig {
        &self.config
    }

    /// Longest draft per round handed to the loop.
    fn draft_max(&self) -> usize {
        match self.config.mode {
            SpecMode::NgramMod => self.config.ngram_mod_n_max,
            _ => self.config.draft_max,
        }
    }
}

/// Generate with speculative decoding: the same [`Generation`] as [`crate::generate()`] (ttft =
/// prefill and first token; each later token's latency is its round's time split evenly over the
/// round's tokens) and the request's [`SpecStats`].
pub fn generate_speculative(
    target: &Engine,
    speculator: &mut Speculator<'_>,
    prompt_ids: &[u32],
    opts: &GenerateOptions,
) -> Result<(Generation, SpecStats)> {
    opts.sampling.validate()?;
    if prompt_ids.is_empty() {
        return Err(EngineError::Invalid("the prompt has no tokens".into()));
    }
    let capacity = opts
        .cache_capacity
        .unwrap_or(prompt_ids.len() + opts.max_new_tokens);
    let mut t = EngineTarget::new(target, capacity)?;
    let eos = target.eos_token_ids().to_vec();
    let loop_opts = LoopOptions {
        max_new_tokens: opts.max_new_tokens,
        stop_tokens: if opts.ignore_eos {
            Vec::new()
        } else {
            eos.clone()
        },
        sampling: opts.sampling,
        verify: speculator.config.verify,
        draft_max: speculator.draft_max(),
    };
    let seed = match opts.sampling {
        Sampling::Sample { seed, .. } => seed,
        Sampling::Greedy => 0,
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let start = Instant::now();
    let out = speculative_loop(
        &mut t,
        speculator.drafter.as_mut(),
        prompt_ids,
        &loop_opts,
        &mut rng,
    )?;
    let e2e_ms = start.elapsed().as_secs_f64() * 1e3;
    let ttft_ms = out.token_ms.first().copied().unwrap_or(0.0);
    let itl_ms: Vec<f64> = out.token_ms.iter().skip(1).copied().collect();
    let decode_ms: f64 = itl_ms.iter().sum();
    let per_s = |n: usize, ms: f64| if ms > 0.0 { n as f64 * 1e3 / ms } else { 0.0 };
    let stop_reason = match out.tokens.last() {
        Some(t) if !opts.ignore_eos && eos.contains(t) => StopReason::Eos,
        _ => StopReason::MaxTokens,
    };
    let mut stats = out.stats;
    stats.extra.insert(
        "verify".to_string(),
        serde_json::to_value(speculator.config.verify).unwrap_or_default(),
    );
    let generation = Generation {
        prompt_token_ids: prompt_ids.to_vec(),
        prefill_tok_per_s: per_s(prompt_ids.len(), out.prefill_ms),
        decode_tok_per_s: per_s(itl_ms.len(), decode_ms),
        output_token_ids: out.tokens,
        prefill_ms: out.prefill_ms,
        ttft_ms,
        itl_ms,
        decode_ms,
        e2e_ms,
        stop_reason,
        experts: t.experts.take(),
    };
    Ok((generation, stats))
}
