//! Inside the worker: load the cell's models once, then measure every request of the unit and
//! report it as a [`RequestRecord`]. This is the only harness module that drives the engine.
//!
//! Per request: the conversation is rendered with the model's chat template ([`crate::chat`]),
//! preceded by `depth` filler tokens ([`crate::depth`]), and generated with the cell's sampler
//! (greedy at temperature 0; otherwise seeded with the unit's seed so every arm of a block draws
//! from the same stream). Peak RSS is the kernel's VmHWM, reset before each request by writing
//! `5` to /proc/self/clear_refs (Linux ≥ 4.0), so it is each request's own peak.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, bail};
use serde_json::Value;
use specsweep_engine::generate::Generation;
use specsweep_engine::spec::{SpecConfig, Speculator, generate_speculative};
use specsweep_engine::{
    DType, DeviceSpec, Engine, GenerateOptions, LoadOptions, Sampling, Tokenizer, generate,
};
use specsweep_reports::schema::{
    ExpertStats, ExpertsAtBatch, RecordKey, RequestRecord, SCHEMA_VERSION, SpecStats,
};

use crate::chat::ChatTemplate;
use crate::cmd::model_opts::QuantChoice;
use crate::depth::filler_text;
use crate::job::{UnitJob, WorkerMessage, request_prompt_id};
use crate::suite::{Message, Role, generation_points};

/// New tokens per warmup request (enough to reach the decode loop's steady state).
pub const WARMUP_NEW_TOKENS: usize = 8;

/// Run `job`, sending each message to `emit` as it happens.
pub fn run_job(
    job: &UnitJob,
    emit: &mut dyn FnMut(WorkerMessage) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let cell = &job.cell;
    let text = |k: &str| cell.get(k).and_then(Value::as_str);
    let int = |k: &str| cell.get(k).and_then(Value::as_u64);
    let device: DeviceSpec = text("device")
        .unwrap_or("cpu")
        .parse()
        .context("cell key `device`")?;
    let threads = int("threads").map(|t| t as usize);
    // The cell's `quant`, or the default for each model's kind (a GGUF file: its own blocks).
    let options_for = |path: &std::path::Path| -> anyhow::Result<LoadOptions> {
        let choice = match text("quant") {
            Some(q) => crate::cmd::model_opts::parse_quant_axis(q).with_context(|| {
                format!("cell key `quant`: `{q}` is not supported by this engine")
            })?,
            None => QuantChoice::default_for(path, device, DType::F32),
        };
        let mut opts = choice.options(device, threads);
        if let Some(t) = text("kv_type") {
            opts.kv_type = t
                .parse()
                .map_err(|e: String| anyhow::anyhow!("cell key `kv_type`: {e}"))?;
        }
        Ok(opts)
    };
    let model_name = text("model").context("cell has no `model`")?;
    let model_path = job
        .model_paths
        .get(model_name)
        .with_context(|| format!("no path for model `{model_name}`"))?;
    let engine = Engine::load(model_path, &options_for(model_path)?)
        .with_context(|| format!("loading model {}", model_path.display()))?;
    let tokenizer = engine
        .tokenizer()
        .with_context(|| format!("model {} has no tokenizer", model_path.display()))?;
    let mode = text("spec").unwrap_or("none").to_string();
    let spec = if mode == "none" {
        None
    } else {
        // The cell's speculation parameters, keyed as the engine reads them.
        let params: BTreeMap<String, Value> = cell
            .iter()
            .filter(|(k, _)| crate::axes::axis_def(k).is_some_and(|d| d.modes.is_some()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Some(SpecConfig::from_params(&mode, &params).context("cell speculation parameters")?)
    };
    let draft_engine = match text("draft_model") {
        Some(name) if mode == "draft" => {
            let path = job
                .model_paths
                .get(name)
                .with_context(|| format!("no path for draft model `{name}`"))?;
            let draft = Engine::load(path, &options_for(path)?)
                .with_context(|| format!("loading draft model {}", path.display()))?;
            Some(draft)
        }
        _ => None,
    };
    let template = ChatTemplate::detect(tokenizer.inner().token_to_id("<|im_start|>").is_some());
    let depth = int("depth").unwrap_or(0) as usize;
    let filler = filler_ids(tokenizer, depth)?;
    let temperature = cell
        .get("temperature")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    let sampling = if temperature == 0.0 {
        Sampling::Greedy
    } else {
        Sampling::Sample {
            temperature: temperature as f32,
            top_k: None,
            top_p: None,
            seed: job.seed,
        }
    };
    let cell_max_new = int("max_new_tokens").unwrap_or(64) as usize;
    emit(WorkerMessage::Loaded {
        load_ms: started.elapsed().as_secs_f64() * 1e3,
    })?;

    let mut decoder = Decoder {
        engine: &engine,
        draft: draft_engine.as_ref(),
        spec,
        speculator: None,
        sampling,
    };
    // Warmup: the first prompts, short, unrecorded; n-gram state is dropped afterwards so that
    // warmup prompts do not pre-train a drafter that persists across requests.
    for p in job.prompts.iter().cycle().take(if job.prompts.is_empty() {
        0
    } else {
        job.warmup as usize
    }) {
        let ids = prompt_ids(tokenizer, template, &filler, &p.prompt.messages)?;
        decoder
            .decode(&ids, WARMUP_NEW_TOKENS)
            .context("warmup request")?;
    }
    decoder.reset();

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
        let max_new = p
            .prompt
            .max_new_tokens
            .map_or(cell_max_new, |m| (m as usize).min(cell_max_new));
        let mut history: Vec<Message> = Vec::new();
        for (i, message) in p.prompt.messages.iter().enumerate() {
            history.push(message.clone());
            let Some(k) = points.iter().position(|&g| g == i) else {
                continue;
            };
            let ids = prompt_ids(tokenizer, template, &filler, &history)?;
            reset_peak_rss();
            let g = decoder
                .decode(&ids, max_new)
                .with_context(|| format!("prompt `{}`", p.prompt.id))?;
            emit(WorkerMessage::Tokens {
                n: g.output_token_ids.len() as u64,
            })?;
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
                spec: g.spec,
                experts: g.experts.map(|t| ExpertStats {
                    n_experts: t.n_experts,
                    n_experts_per_token: t.n_experts_per_token,
                    by_batch_size: t
                        .by_batch_size()
                        .into_iter()
                        .map(|b| ExpertsAtBatch {
                            batch_tokens: b.batch_tokens,
                            forwards: b.forwards,
                            mean_experts_touched: b.mean_experts_touched,
                        })
                        .collect(),
                }),
                peak_rss_bytes: peak_rss_bytes(),
                output_identical: None,
                first_divergence: None,
            };
            emit(WorkerMessage::Record(Box::new(record)))?;
            history.push(Message {
                role: Role::Assistant,
                content: answer,
            });
        }
    }
    Ok(())
}

/// One request's measurements, from plain or speculative decoding.
struct Measured {
    output_token_ids: Vec<u32>,
    prefill_tok_per_s: f64,
    decode_tok_per_s: f64,
    ttft_ms: f64,
    itl_ms: Vec<f64>,
    e2e_ms: f64,
    spec: Option<SpecStats>,
    experts: Option<specsweep_engine::model::moe::ExpertTally>,
}

impl From<Generation> for Measured {
    fn from(g: Generation) -> Self {
        Measured {
            output_token_ids: g.output_token_ids,
            prefill_tok_per_s: g.prefill_tok_per_s,
            decode_tok_per_s: g.decode_tok_per_s,
            ttft_ms: g.ttft_ms,
            itl_ms: g.itl_ms,
            e2e_ms: g.e2e_ms,
            spec: None,
            experts: g.experts,
        }
    }
}

/// Decodes requests for one cell: plain generation, or the engine's speculative loop with the
/// mode's drafter. One [`Speculator`] serves the unit's requests, so n-gram state persists across
/// them unless `reset_per_request` (as in llama.cpp's server); model drafters re-prefill per request.
struct Decoder<'a> {
    engine: &'a Engine,
    draft: Option<&'a Engine>,
    spec: Option<SpecConfig>,
    speculator: Option<Speculator<'a>>,
    sampling: Sampling,
}

impl<'a> Decoder<'a> {
    fn decode(&mut self, ids: &[u32], max_new: usize) -> anyhow::Result<Measured> {
        let opts = GenerateOptions {
            max_new_tokens: max_new,
            sampling: self.sampling,
            ignore_eos: false,
            cache_capacity: None,
        };
        let Some(config) = self.spec.as_ref() else {
            return Ok(generate(self.engine, ids, &opts)?.into());
        };
        if self.speculator.is_none() {
            self.speculator = Some(Speculator::new(
                self.engine,
                self.draft,
                config,
                &self.sampling,
            )?);
        }
        let speculator = self.speculator.as_mut().context("speculator")?;
        let (generation, stats) = generate_speculative(self.engine, speculator, ids, &opts)?;
        // The engine's statistics mirror the record's field for field (see engine spec::stats).
        let spec: SpecStats = serde_json::from_value(serde_json::to_value(&stats)?)?;
        let mut measured = Measured::from(generation);
        measured.spec = Some(spec);
        Ok(measured)
    }

    /// Forget drafter state (after warmup, so warmup prompts do not pre-train a drafter).
    fn reset(&mut self) {
        self.speculator = None;
    }
}

/// Token ids of a request: `filler` then the rendered conversation (with the tokenizer's special
/// tokens, e.g. BOS).
fn prompt_ids(
    tokenizer: &Tokenizer,
    template: ChatTemplate,
    filler: &[u32],
    messages: &[Message],
) -> anyhow::Result<Vec<u32>> {
    let text = template.render(messages);
    let mut ids = filler.to_vec();
    ids.extend(
        tokenizer
            .encode(&text, true)
            .context("tokenizing the prompt")?,
    );
    Ok(ids)
}

/// Exactly `depth` token ids of filler text.
fn filler_ids(tokenizer: &Tokenizer, depth: usize) -> anyhow::Result<Vec<u32>> {
    if depth == 0 {
        return Ok(Vec::new());
    }
    let mut words = depth;
    loop {
        let ids = tokenizer
            .encode(&filler_text(words), false)
            .context("tokenizing the depth filler")?;
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn tokenizer() -> Tokenizer {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/default/tokenizer.json");
        Tokenizer::from_file(&path, vec![0], None).unwrap()
    }

    #[test]
    fn depth_filler_has_exactly_depth_tokens_before_the_prompt() {
        let tok = tokenizer();
        for depth in [0, 1, 7, 300] {
            let filler = filler_ids(&tok, depth).unwrap();
            assert_eq!(filler.len(), depth);
            assert_eq!(filler, filler_ids(&tok, depth).unwrap(), "deterministic");
        }
        let messages = vec![Message {
            role: Role::User,
            content: "def f(x):".into(),
        }];
        let plain = prompt_ids(&tok, ChatTemplate::ChatMl, &[], &messages).unwrap();
        let deep = prompt_ids(
            &tok,
            ChatTemplate::ChatMl,
            &filler_ids(&tok, 50).unwrap(),
            &messages,
        )
        .unwrap();
        assert_eq!(deep.len(), plain.len() + 50);
        assert_eq!(&deep[50..], &plain[..]);
        // Longer fillers extend shorter ones: depth d is a prefix of depth 2d.
        assert_eq!(
            filler_ids(&tok, 40).unwrap()[..],
            filler_ids(&tok, 80).unwrap()[..40]
        );
    }

    #[test]
    fn peak_rss_is_read() {
        assert!(peak_rss_bytes() > 0);
    }
}
