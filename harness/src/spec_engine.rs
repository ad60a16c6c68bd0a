//! Adapters between the real engine and the speculative loop: [`EngineTarget`] (a model with its
//! own KV cache, as the loop's target or a draft model), [`EngineMtpHead`] (the target's MTP head
//! with its cache), and [`build_drafter`], which turns a resolved
//! [`SpecConfig`](specsweep_engine::spec::SpecConfig) into the mode's drafter
//! (shared/reference/speculation.md §1: llama.cpp's lookup, ngram-mod, prompt lookup,
//! draft-simple and draft-mtp).

use specsweep_engine::model::moe::ExpertTally;
use specsweep_engine::spec::draft_model::{DraftChooser, DraftModel, DraftParams};
use specsweep_engine::spec::mtp::{MtpDrafter, MtpHead};
use specsweep_engine::spec::ngram_cache::{NgramCacheDrafter, NgramCacheParams};
use specsweep_engine::spec::ngram_mod::{NgramMod, NgramModParams};
use specsweep_engine::spec::ngram_simple::{NgramSimple, NgramSimpleParams};
use specsweep_engine::spec::{Drafter, SpecConfig, SpecMode, Target, TargetOutput, VerifyRule};
use specsweep_engine::{Engine, KvCache, Result, Sampling};

/// A loaded model and a cache: the loop's [`Target`]. For MoE models it tallies the experts each
/// forward touched by batch size (the verify batches are k+1 tokens).
pub struct EngineTarget<'a> {
    pub engine: &'a Engine,
    pub cache: KvCache,
    pub experts: Option<ExpertTally>,
}

impl<'a> EngineTarget<'a> {
    /// `engine` with a fresh cache of `capacity` positions.
    pub fn new(engine: &'a Engine, capacity: usize) -> Result<Self> {
        Ok(Self {
            engine,
            cache: engine.new_cache(capacity)?,
            experts: ExpertTally::for_config(engine.config()),
        })
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
        self.cache.capacity()
    }

    fn forward(&mut self, tokens: &[u32], want_hidden: bool) -> Result<TargetOutput> {
        let out = self.engine.forward(tokens, &mut self.cache, want_hidden)?;
        if let Some(tally) = self.experts.as_mut() {
            tally.record(tokens.len(), &out.experts_touched);
        }
        Ok(TargetOutput {
            logits: out.logits,
            hidden: out.hidden,
        })
    }

    fn truncate(&mut self, len: usize) -> Result<()> {
        self.cache.truncate(len)
    }
}

/// The target's MTP head and its cache.
pub struct EngineMtpHead<'a> {
    pub engine: &'a Engine,
    pub cache: KvCache,
}

impl MtpHead for EngineMtpHead<'_> {
    fn vocab_size(&self) -> usize {
        self.engine.config().vocab_size
    }

    fn len(&self) -> usize {
        self.cache.len()
    }

    fn forward(&mut self, tokens: &[u32], hidden: &[f32]) -> Result<TargetOutput> {
        let out = self.engine.mtp_forward(tokens, hidden, &mut self.cache)?;
        Ok(TargetOutput {
            logits: out.logits,
            hidden: out.hidden,
        })
    }

    fn truncate(&mut self, len: usize) -> Result<()> {
        self.cache.truncate(len)
    }
}

/// How a model-based drafter picks tokens: greedy for greedy requests and for sample-and-match
/// verification; otherwise it samples from its own distribution with the request's sampler.
fn chooser(config: &SpecConfig, sampling: Sampling, seed: u64) -> DraftChooser {
    match (sampling, config.verify) {
        (Sampling::Greedy, _) | (_, VerifyRule::SampleAndMatch) => DraftChooser::greedy(),
        (s, VerifyRule::Rejection) => DraftChooser::new(s, seed),
    }
}

/// The drafter of `config`. `draft` is the loaded draft model (mode `draft`); `capacity` sizes the
/// caches of model-based drafters (they are rebuilt per request, n-gram drafters live for the unit).
pub fn build_drafter<'a>(
    config: &SpecConfig,
    target: &'a Engine,
    draft: Option<&'a Engine>,
    sampling: Sampling,
    seed: u64,
    capacity: usize,
) -> anyhow::Result<Box<dyn Drafter + 'a>> {
    let params = DraftParams {
        draft_min: config.draft_min,
        draft_max: config.draft_max,
        draft_p_min: config.draft_p_min,
    };
    Ok(match config.mode {
        SpecMode::None => anyhow::bail!("mode none has no drafter"),
        SpecMode::NgramSimple => Box::new(NgramSimple::new(NgramSimpleParams {
            prompt_lookup_min: config.prompt_lookup_min,
            prompt_lookup_max: config.prompt_lookup_max,
            n_draft: config.draft_max,
        })?),
        SpecMode::NgramMod => Box::new(NgramMod::new(NgramModParams {
            n_match: config.ngram_mod_n_match,
            n_min: config.ngram_mod_n_min,
            n_max: config.ngram_mod_n_max,
            reset_per_request: config.reset_per_request,
        })?),
        SpecMode::NgramCache => Box::new(NgramCacheDrafter::new(NgramCacheParams {
            n_draft: config.draft_max,
            static_path: config.lookup_cache_static.clone(),
            dynamic_path: config.lookup_cache_dynamic.clone(),
            reset_per_request: config.reset_per_request,
        })?),
        SpecMode::Draft => {
            let draft = draft.ok_or_else(|| anyhow::anyhow!("mode draft needs a draft model"))?;
            let model = EngineTarget::new(draft, capacity)?;
            Box::new(DraftModel::new(
                model,
                params,
                chooser(config, sampling, seed),
            ))
        }
        SpecMode::Mtp => {
            anyhow::ensure!(target.has_mtp(), "mode mtp: the model has no MTP head");
            let head = EngineMtpHead {
                engine: target,
                cache: target.new_mtp_cache(capacity)?,
            };
            Box::new(MtpDrafter::new(
                head,
                params,
                chooser(config, sampling, seed),
            ))
        }
    })
}
