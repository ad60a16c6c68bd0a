//! `specsweep generate`: tokenize a prompt (or take token ids), generate greedily or with
//! temperature / top-k / top-p sampling, and report the text with its timings.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use specsweep_engine::{GenerateOptions, Sampling, generate};

use super::model_opts::{ModelOpts, parse_token_ids};

/// Arguments of `specsweep generate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelOpts,
    /// Prompt text (tokenized with the model's tokenizer, special tokens added).
    #[arg(
        long,
        conflicts_with = "token_ids",
        required_unless_present = "token_ids"
    )]
    pub prompt: Option<String>,
    /// Prompt as comma-separated token ids.
    #[arg(long)]
    pub token_ids: Option<String>,
    /// Tokens to generate.
    #[arg(long, short = 'n', default_value_t = 64)]
    pub max_new_tokens: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Do not stop at end-of-sequence tokens.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub spec: crate::spec_args::SpecArgs,
}

/// Sampling flags: greedy unless a temperature is given.
#[derive(Debug, Clone, clap::Args)]
pub struct SamplingArgs {
    /// Sampling temperature (> 0); absent = greedy.
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Keep only the K most probable tokens.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Nucleus sampling mass in (0, 1].
    #[arg(long)]
    pub top_p: Option<f32>,
    /// RNG seed for sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl SamplingArgs {
    /// The engine's sampling settings.
    pub fn sampling(&self) -> anyhow::Result<Sampling> {
        let s = match self.temperature {
            None => {
                anyhow::ensure!(
                    self.top_k.is_none() && self.top_p.is_none(),
                    "--top-k / --top-p need --temperature (greedy otherwise)"
                );
                Sampling::Greedy
            }
            Some(temperature) => Sampling::Sample {
                temperature,
                top_k: self.top_k,
                top_p: self.top_p,
                seed: self.seed,
            },
        };
        s.validate()?;
        Ok(s)
    }
}

/// Run `specsweep generate`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let sampling = args.sampling.sampling()?;
    let engine = args.model.load()?;
    let prompt_ids = match (&args.prompt, &args.token_ids) {
        (_, Some(ids)) => parse_token_ids(ids)?,
        (Some(text), None) => engine
            .tokenizer()
            .with_context(|| {
                format!(
                    "{}: no tokenizer.json (use --token-ids)",
                    args.model.model.display()
                )
            })?
            .encode(text, true)?,
        (None, None) => anyhow::bail!("give --prompt or --token-ids"),
    };
    let opts = GenerateOptions {
        max_new_tokens: args.max_new_tokens,
        sampling,
        ignore_eos: args.ignore_eos,
        cache_capacity: None,
    };
    // Speculative decoding (issue #5): same output contract, plus the round statistics.
    let (g, spec_stats) = if args.spec.enabled() {
        let config = args.spec.config()?;
        let draft = match &config.draft_model {
            Some(name) => Some(
                super::model_opts::ModelOpts {
                    model: name.into(),
                    device: args.model.device.clone(),
                }
                .load()?,
            ),
            None => None,
        };
        let mut speculator =
            specsweep_engine::spec::Speculator::new(&engine, draft.as_ref(), &config, &sampling)?;
        let (g, s) = specsweep_engine::spec::generate_speculative(
            &engine,
            &mut speculator,
            &prompt_ids,
            &opts,
        )?;
        (g, Some(s))
    } else {
        (generate(&engine, &prompt_ids, &opts)?, None)
    };
    let text = match engine.tokenizer() {
        Some(t) => t.decode(&g.output_token_ids)?,
        None => String::new(),
    };
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let value = serde_json::json!({
            "output_token_ids": g.output_token_ids,
            "text": text,
            "prompt_tokens": g.prompt_token_ids.len(),
            "prompt_token_ids": g.prompt_token_ids,
            "output_tokens": g.output_token_ids.len(),
            "prefill_ms": g.prefill_ms,
            "prefill_tok_per_s": g.prefill_tok_per_s,
            "decode_ms": g.decode_ms,
            "decode_tok_per_s": g.decode_tok_per_s,
            "ttft_ms": g.ttft_ms,
            "itl_ms": g.itl_ms,
            "e2e_ms": g.e2e_ms,
            "stop_reason": g.stop_reason,
            "device": engine.device().to_string(),
            "dtype": engine.dtype().to_string(),
            "quant": args.model.device.quant.as_deref().map(str::to_ascii_lowercase),
            "kv_type": engine.kv_type().to_string(),
            "experts": g.experts.as_ref().map(|t| t.summary()),
            "spec": spec_stats,
        });
        serde_json::to_writer(&mut stdout, &value).context("writing JSON")?;
        writeln!(stdout)?;
    } else {
        writeln!(stdout, "{text}")?;
        eprintln!(
            "prompt {} tok, {:.1} tok/s prefill | {} tok, {:.1} tok/s decode | ttft {:.1} ms, e2e {:.1} ms",
            g.prompt_token_ids.len(),
            g.prefill_tok_per_s,
            g.output_token_ids.len(),
            g.decode_tok_per_s,
            g.ttft_ms,
            g.e2e_ms
        );
        if let Some(s) = &spec_stats {
            eprintln!(
                "spec {}: {} rounds, {}/{} drafts accepted (acceptance_rate {:.3}), mean_acceptance_length {:.2}",
                s.mode,
                s.rounds,
                s.accepted,
                s.drafted,
                s.acceptance_rate,
                s.mean_acceptance_length
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
