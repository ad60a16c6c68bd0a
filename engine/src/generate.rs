//! Plain autoregressive generation: one batched prefill forward over the prompt, then one forward
//! per new token, timing every step (TTFT, inter-token latencies, prefill / decode throughput).
//! Only the last logit row is computed at each step.

use std::time::Instant;

use crate::engine::Engine;
use crate::error::{EngineError, Result};
use crate::model::moe::ExpertTally;
use crate::sampling::{Sampler, Sampling};

/// Generation settings.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    pub sampling: Sampling,
    /// Keep going past end-of-sequence tokens.
    pub ignore_eos: bool,
    /// KV cache positions; default `prompt + max_new_tokens`.
    pub cache_capacity: Option<usize>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self {
            max_new_tokens: 32,
            sampling: Sampling::Greedy,
            ignore_eos: false,
            cache_capacity: None,
        }
    }
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// `max_new_tokens` reached.
    MaxTokens,
    /// An end-of-sequence token was produced (it is included in the output).
    Eos,
}

/// The tokens produced and how long each step took.
#[derive(Debug, Clone)]
pub struct Generation {
    pub prompt_token_ids: Vec<u32>,
    pub output_token_ids: Vec<u32>,
    /// Prefill forward (prompt → first logits), ms.
    pub prefill_ms: f64,
    /// Start → first new token, ms.
    pub ttft_ms: f64,
    /// Latency of each token after the first, ms.
    pub itl_ms: Vec<f64>,
    /// Sum of `itl_ms`.
    pub decode_ms: f64,
    /// Start → last token, ms.
    pub e2e_ms: f64,
    pub prefill_tok_per_s: f64,
    /// Tokens after the first ÷ decode time.
    pub decode_tok_per_s: f64,
    pub stop_reason: StopReason,
    /// MoE models: distinct experts touched per MoE layer, by forward batch size.
    pub experts: Option<ExpertTally>,
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn per_s(n: usize, ms: f64) -> f64 {
    if ms > 0.0 { n as f64 * 1e3 / ms } else { 0.0 }
}

/// Generate up to `opts.max_new_tokens` tokens after `prompt_ids`.
pub fn generate(engine: &Engine, prompt_ids: &[u32], opts: &GenerateOptions) -> Result<Generation> {
    if prompt_ids.is_empty() {
        return Err(EngineError::Invalid("the prompt has no tokens".into()));
    }
    opts.sampling.validate()?;
    let capacity = opts
        .cache_capacity
        .unwrap_or(prompt_ids.len() + opts.max_new_tokens);
    let mut cache = engine.new_cache(capacity)?;
    let mut sampler = Sampler::new(opts.sampling);
    let eos = engine.eos_token_ids();
    let stops = |t: u32| !opts.ignore_eos && eos.contains(&t);

    let start = Instant::now();
    let mut output = Vec::with_capacity(opts.max_new_tokens);
    let mut itl_ms = Vec::with_capacity(opts.max_new_tokens.saturating_sub(1));
    let mut stop_reason = StopReason::MaxTokens;
    let mut prefill_ms = 0.0;
    let mut ttft_ms = 0.0;
    let mut experts = ExpertTally::for_config(engine.config());
    if opts.max_new_tokens > 0 {
        let out = engine.forward_last(prompt_ids, &mut cache)?;
        if let Some(t) = experts.as_mut() {
            t.record(prompt_ids.len(), &out.experts_touched);
        }
        let token = sampler.sample(out.last_row());
        prefill_ms = ms_since(start);
        ttft_ms = prefill_ms;
        output.push(token);
        if stops(token) {
            stop_reason = StopReason::Eos;
        }
        while stop_reason == StopReason::MaxTokens && output.len() < opts.max_new_tokens {
            let step = Instant::now();
            let last = output[output.len() - 1];
            let out = engine.forward_last(&[last], &mut cache)?;
            let token = sampler.sample(out.last_row());
            itl_ms.push(ms_since(step));
            if let Some(t) = experts.as_mut() {
                t.record(1, &out.experts_touched);
            }
            output.push(token);
            if stops(token) {
                stop_reason = StopReason::Eos;
            }
        }
    }
    let e2e_ms = ms_since(start);
    let decode_ms: f64 = itl_ms.iter().sum();
    Ok(Generation {
        prompt_token_ids: prompt_ids.to_vec(),
        prefill_tok_per_s: per_s(prompt_ids.len(), prefill_ms),
        decode_tok_per_s: per_s(itl_ms.len(), decode_ms),
        output_token_ids: output,
        prefill_ms,
        ttft_ms,
        itl_ms,
        decode_ms,
        e2e_ms,
        stop_reason,
        experts,
    })
}
