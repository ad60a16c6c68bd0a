//! Inside the worker: load the cell's models once, then measure every request of the unit and
//! report it as a [`RequestRecord`]. This is the only harness module that drives the engine.
//!
//! Per request: the conversation is rendered with the model's chat template ([`crate::chat`]),
//! preceded by `depth` filler tokens ([`crate::depth`]), and generated with the cell's sampler
//! (greedy at temperature 0; otherwise seeded with the unit's seed so every arm of a block draws
//! from the same stream). Peak RSS is the kernel's VmHWM, reset before each request by writing
//! `5` to /proc/self/clear_refs (Linux ≥ 4.0), so it is each request's own peak.

use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::Value;
use specsweep_engine::{DType, DeviceSpec, Engine, GenerateOptions, LoadOptions, Sampling, Tokenizer, generate};
use specsweep_reports::schema::{ExpertStats, ExpertsAtBatch, RecordKey, RequestRecord, SCHEMA_VERSION};

use crate::chat::ChatTemplate;
use crate::depth::filler_text;
use crate::job::{UnitJob, WorkerMessage, request_prompt_id};
use crate::suite::{Message, Role, generation_points};

/// New tokens per warmup request (enough to reach the decode loop's steady state).
pub const WARMUP_NEW_TOKENS: usize = 8;

/// Run `job`, sending each message to `emit` as it happens.
pub fn run_job(job: &UnitJob, emit: &mut dyn FnMut(WorkerMessage) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let started = Instant::now();
    let cell = &job.cell;
    let text = |k: &str| cell.get(k).and_then(Value::as_str);
    let int = |k: &str| cell.get(k).and_then(Value::as_u64);
    let device: DeviceSpec = text("device").unwrap_or("cpu").parse().context("cell key `device`")?;
    let dtype: DType = match text("quant") {
        Some(q) => q.parse().with_context(|| format!("cell key `quant`: `{q}` is not supported by this engine"))?,
        None => DType::F32,
    };
    let options = LoadOptions { device, threads: int("threads").map(|t| t as usize), dtype };
    let model_name = text("model").context("cell has no `model`")?;
    let model_path = job.model_paths.get(model_name).with_context(|| format!("no path for model `{model_name}`"))?;
    let engine = Engine::load(model_path, &options).with_context(|| format!("loading model {}", model_path.display()))?;
    let tokenizer = engine.tokenizer().with_context(|| format!("model {} has no tokenizer", model_path.display()))?;
    let mode = text("spec").unwrap_or("none");
    if mode != "none" {
        bail!("speculation mode `{mode}` is not wired into the worker yet");
    }
    let template = ChatTemplate::detect(tokenizer.inner().token_to_id("<|im_start|>").is_some());
    let depth = int("depth").unwrap_or(0) as usize;
    let filler = filler_ids(tokenizer, depth)?;
    let temperature = cell.get("temperature").and_then(Value::as_f64).unwrap_or(0.0);
    let sampling = if temperature == 0.0 {
        Sampling::Greedy
    } else {
        Sampling::Sample { temperature: temperature as f32, top_k: None, top_p: None, seed: job.seed }
    };
    let cell_max_new = int("max_new_tokens").unwrap_or(64) as usize;
    emit(WorkerMessage::Loaded { load_ms: started.elapsed().as_secs_f64() * 1e3 })?;

    // Warmup: the first prompts, short, unrecorded.
    for p in job.prompts.iter().cycle().take(if job.prompts.is_empty() { 0 } else { job.warmup as usize }) {
        let ids = prompt_ids(tokenizer, template, &filler, &p.prompt.messages)?;
        let opts = GenerateOptions { max_new_tokens: WARMUP_NEW_TOKENS, sampling, ignore_eos: false, cache_capacity: None };
        generate(&engine, &ids, &opts).context("warmup request")?;
    }

    let key = RecordKey {
        schema_version: SCHEMA_VERSION,
        sweep: job.sweep.clone(),
        cell_id: job.cell_id.clone(),
        cell: job.cell.clone(),
        baseline_cell_id: job.baseline_cell_id.clone(),
        repetition: job.repetition,
    };
    for p in &job.prompts {
        let points = generation_points(&p.prompt.messages);
        let max_new = p.prompt.max_new_tokens.map_or(cell_max_new, |m| (m as usize).min(cell_max_new));
        let mut history: Vec<Message> = Vec::new();
        for (i, message) in p.prompt.messages.iter().enumerate() {
            history.push(message.clone());
            let Some(k) = points.iter().position(|&g| g == i) else { continue };
            let ids = prompt_ids(tokenizer, template, &filler, &history)?;
            reset_peak_rss();
            let opts = GenerateOptions { max_new_tokens: max_new, sampling, ignore_eos: false, cache_capacity: None };
            let g = generate(&engine, &ids, &opts).with_context(|| format!("prompt `{}`", p.prompt.id))?;
            emit(WorkerMessage::Tokens { n: g.output_token_ids.len() as u64 })?;
            let answer = tokenizer.decode(&g.output_token_ids).unwrap_or_default();
            let record = RequestRecord {
                key: key.clone(),
                prompt_id: request_prompt_id(&p.prompt.id, k, points.len()),
                category: p.prompt.category.clone(),
                suite: p.suite.clone(),
                suite_sha256: p.suite_sha256.clone(),
                prompt_tokens: ids.len() as u64,
                output_tokens: g.output_token_ids.len() as u64,
                prefill_tok_per_s: g.prefill_tok_per_s,
                decode_tok_per_s: g.decode_tok_per_s,
                ttft_ms: g.ttft_ms,
                itl_ms: g.itl_ms,
                e2e_ms: g.e2e_ms,
                output_token_ids: g.output_token_ids,
                spec: None,
                experts: g.experts.map(|t| ExpertStats {
                    n_experts: t.n_experts,
                    n_experts_per_token: t.n_experts_per_token,
                    by_batch_size: t
                        .by_batch_size()
                        .into_iter()
                        .map(|b| ExpertsAtBatch { batch_tokens: b.batch_tokens, forwards: b.forwards, mean_experts_touched: b.mean_experts_touched })
                        .collect(),
                }),
                peak_rss_bytes: peak_rss_bytes(),
                output_identical: None,
                first_divergence: None,
            };
            emit(WorkerMessage::Record(Box::new(record)))?;
            history.push(Message { role: Role::Assistant, content: answer });
        }
    }
    Ok(())
}

/// Token ids of a request: `filler` then the rendered conversation (with the tokenizer's special
/// tokens, e.g. BOS).
fn prompt_ids(tokenizer: &Tokenizer, template: ChatTemplate, filler: &[u32], messages: &[Message]) -> anyhow::Result<Vec<u32>> {
    let text = template.render(messages);
    let mut ids = filler.to_vec();
    ids.extend(tokenizer.encode(&text, true).context("tokenizing the prompt")?);
    Ok(ids)
}

/// Exactly `depth` token ids of filler text.
fn filler_ids(tokenizer: &Tokenizer, depth: usize) -> anyhow::Result<Vec<u32>> {
    if depth == 0 {
        return Ok(Vec::new());
    }
    let mut words = depth;
    loop {
        let ids = tokenizer.encode(&filler_text(words), false).context("tokenizing the depth filler")?;
        if ids.len() >= depth {
            return Ok(ids[..depth].to_vec());
        }
        if words > depth * 64 {
            bail!("cannot make {depth} filler tokens with this tokenizer");
        }
        words *= 2;
    }
}

/// Reset the kernel's peak-RSS counter of this process (ignored where unsupported).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident set size of this process (VmHWM), bytes; 0 where unavailable.
pub fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
