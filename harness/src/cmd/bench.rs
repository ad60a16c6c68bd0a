//! `specsweep bench`: prefill (`ppN`) and decode (`tgN`) throughput in the manner of llama-bench —
//! comma lists form a matrix, every test repeats `-r` times and reports mean ± stddev tokens/s —
//! plus the memory-bandwidth roofline for decoding (weight bytes per token ÷ measured bandwidth).
//!
//! `--random PRESET|config.json` benchmarks a random-initialised model built in memory, so a model
//! larger than the CPU caches can be measured without committing weights.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use specsweep_engine::random::{RandomWeights, resolve_config};
use specsweep_engine::roofline::measure_read_bandwidth;
use specsweep_engine::{Engine, KvCache};

use super::model_opts::DeviceOpts;

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Md,
    Csv,
    Json,
}

/// Arguments of `specsweep bench`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model: a directory, a .gguf file, a fetched model NAME or `default`.
    #[arg(
        long,
        short = 'm',
        required_unless_present = "random",
        conflicts_with = "random"
    )]
    pub model: Option<PathBuf>,
    /// Random-initialised model: a preset (qwen3-0.1b, qwen3-0.6b, llama-0.1b) or a config.json.
    #[arg(long)]
    pub random: Option<String>,
    /// Prompt lengths for prefill tests (0 skips).
    #[arg(
        short = 'p',
        long = "n-prompt",
        value_delimiter = ',',
        default_value = "128"
    )]
    pub n_prompt: Vec<usize>,
    /// Generated tokens for decode tests (0 skips).
    #[arg(
        short = 'n',
        long = "n-gen",
        value_delimiter = ',',
        default_value = "64"
    )]
    pub n_gen: Vec<usize>,
    /// Context depths already in the cache before each test.
    #[arg(
        short = 'd',
        long = "n-depth",
        value_delimiter = ',',
        default_value = "0"
    )]
    pub n_depth: Vec<usize>,
    /// CPU thread counts (default: all cores).
    #[arg(short = 't', long = "threads", value_delimiter = ',')]
    pub threads: Vec<usize>,
    /// Repetitions per test.
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    pub repetitions: usize,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "md")]
    pub output: Format,
    /// cpu | wgpu[:N] | cuda[:N]
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// f32 | f16 | bf16
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Weights: `native` (a GGUF file's own blocks on the quantized CPU kernels; the default for
    /// .gguf on the cpu), q8_0 | q4_0 | q4_1 | f32-kernel | f16-kernel | bf16-kernel (kernels), or
    /// f32 | f16 | bf16 (burn's dense path; the default otherwise).
    #[arg(long)]
    pub quant: Option<String>,
    /// Seed for random weights and input tokens.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Bytes of the buffer read to measure memory bandwidth (MiB).
    #[arg(long, default_value_t = 1024)]
    pub bandwidth_mib: usize,
}

/// One test result (llama-bench's JSON fields plus the roofline).
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchResult {
    pub model: String,
    pub device: String,
    pub dtype: String,
    pub test: String,
    pub n_prompt: usize,
    pub n_gen: usize,
    pub n_depth: usize,
    pub n_threads: usize,
    pub n_params: usize,
    pub weight_bytes_per_token: usize,
    pub avg_ts: f64,
    pub stddev_ts: f64,
    pub samples_ts: Vec<f64>,
    pub samples_ns: Vec<u128>,
    /// Measured read bandwidth, GB/s (decode tests).
    pub bandwidth_gbs: Option<f64>,
    /// Bandwidth ÷ weight bytes per token (decode tests).
    pub roofline_ts: Option<f64>,
    /// `avg_ts ÷ roofline_ts` (decode tests).
    pub roofline_fraction: Option<f64>,
}

fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = if xs.len() > 1 {
        xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// Deterministic pseudo-random token ids below `vocab`.
fn tokens(n: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) % vocab as u64) as u32
        })
        .collect()
}

/// Fill the cache to `depth` (untimed).
fn fill_depth(engine: &Engine, cache: &mut KvCache, depth: usize, seed: u64) -> anyhow::Result<()> {
    let vocab = engine.config().vocab_size;
    let ids = tokens(depth, vocab, seed);
    for chunk in ids.chunks(512) {
        engine.forward_last(chunk, cache)?;
    }
    Ok(())
}

/// Run `specsweep bench`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(args.repetitions > 0, "-r must be at least 1");
    let device = DeviceOpts {
        device: args.device.clone(),
        threads: None,
        dtype: args.dtype.clone(),
        quant: args.quant.clone(),
    };
    let thread_list: Vec<Option<usize>> = if args.threads.is_empty() {
        vec![None]
    } else {
        args.threads.iter().map(|&t| Some(t)).collect()
    };
    let (model_name, config) = match (&args.model, &args.random) {
        (_, Some(spec)) => (format!("random:{spec}"), Some(resolve_config(spec)?)),
        (Some(path), None) => (path.display().to_string(), None),
        (None, None) => anyhow::bail!("give --model or --random"),
    };
    let mut results = Vec::new();
    let model_path = match &args.model {
        Some(path) if config.is_none() => {
            Some(crate::models::resolve_model(&path.to_string_lossy())?)
        }
        _ => None,
    };
    let choice = device.quant_choice(model_path.as_deref().unwrap_or(Path::new("random")))?;
    for threads in thread_list {
        let opts = DeviceOpts {
            threads,
            ..device.clone()
        }
        .load_options(model_path.as_deref().unwrap_or(Path::new("random")))?;
        let engine = match (&config, &model_path) {
            (Some(c), _) => {
                let weights = RandomWeights::new(c, args.seed);
                Engine::from_source(c.clone(), &weights, None, &opts)?
            }
            (None, Some(path)) => Engine::load(path, &opts)
                .with_context(|| format!("loading model {}", path.display()))?,
            (None, None) => unreachable!("checked above"),
        };
        let n_threads = engine
            .threads()
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let weight_bytes = engine.weight_bytes_per_token();
        let bandwidth = if args.n_gen.iter().any(|&n| n > 0) {
            Some(measure_read_bandwidth(
                args.bandwidth_mib << 20,
                5,
                Some(n_threads),
            )?)
        } else {
            None
        };
        let row = |test: String, n_prompt, n_gen, n_depth, samples: Vec<(f64, u128)>| {
            let ts: Vec<f64> = samples.iter().map(|s| s.0).collect();
            let (avg_ts, stddev_ts) = mean_std(&ts);
            let roof = bandwidth
                .filter(|_| n_gen > 0)
                .map(|b| (b.bytes_per_s / 1e9, b.roofline_tok_per_s(weight_bytes)));
            BenchResult {
                model: model_name.clone(),
                device: engine.device().to_string(),
                dtype: choice.label(),
                test,
                n_prompt,
                n_gen,
                n_depth,
                n_threads,
                n_params: engine.config().num_parameters(),
                weight_bytes_per_token: weight_bytes,
                avg_ts,
                stddev_ts,
                samples_ns: samples.iter().map(|s| s.1).collect(),
                samples_ts: ts,
                bandwidth_gbs: roof.map(|r| r.0),
                roofline_ts: roof.map(|r| r.1),
                roofline_fraction: roof.map(|r| avg_ts / r.1),
            }
        };
        let vocab = engine.config().vocab_size;
        for &depth in &args.n_depth {
            for &p in args.n_prompt.iter().filter(|&&p| p > 0) {
                let mut cache = engine.new_cache(depth + p)?;
                fill_depth(&engine, &mut cache, depth, args.seed)?;
                let prompt = tokens(p, vocab, args.seed ^ 0xabc);
                engine.forward_last(&prompt, &mut cache)?; // warm-up
                let mut samples = Vec::new();
                for _ in 0..args.repetitions {
                    cache.truncate(depth)?;
                    let t = Instant::now();
                    engine.forward_last(&prompt, &mut cache)?;
                    let ns = t.elapsed().as_nanos();
                    samples.push((p as f64 * 1e9 / ns as f64, ns));
                }
                results.push(row(format!("pp{p}"), p, 0, depth, samples));
            }
            for &n in args.n_gen.iter().filter(|&&n| n > 0) {
                let mut cache = engine.new_cache(depth + n + 1)?;
                fill_depth(&engine, &mut cache, depth, args.seed)?;
                let first = tokens(1, vocab, args.seed ^ 0xdef)[0];
                engine.forward_last(&[first], &mut cache)?; // warm-up
                let mut samples = Vec::new();
                for _ in 0..args.repetitions {
                    cache.truncate(depth)?;
                    let mut token = first;
                    let t = Instant::now();
                    for _ in 0..n {
                        let out = engine.forward_last(&[token], &mut cache)?;
                        token = specsweep_engine::sampling::argmax(out.last_row());
                    }
                    let ns = t.elapsed().as_nanos();
                    samples.push((n as f64 * 1e9 / ns as f64, ns));
                }
                results.push(row(format!("tg{n}"), 0, n, depth, samples));
            }
        }
    }
    print(&results, args.output)?;
    Ok(ExitCode::SUCCESS)
}

fn print(results: &[BenchResult], format: Format) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, results).context("writing JSON")?;
            writeln!(out)?;
        }
        Format::Csv => {
            writeln!(
                out,
                "model,device,dtype,test,n_prompt,n_gen,n_depth,n_threads,n_params,avg_ts,stddev_ts,bandwidth_gbs,roofline_ts,roofline_fraction"
            )?;
            for r in results {
                let opt = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_default();
                writeln!(
                    out,
                    "{},{},{},{},{},{},{},{},{},{:.4},{:.4},{},{},{}",
                    r.model,
                    r.device,
                    r.dtype,
                    r.test,
                    r.n_prompt,
                    r.n_gen,
                    r.n_depth,
                    r.n_threads,
                    r.n_params,
                    r.avg_ts,
                    r.stddev_ts,
                    opt(r.bandwidth_gbs),
                    opt(r.roofline_ts),
                    opt(r.roofline_fraction)
                )?;
            }
        }
        Format::Md => {
            writeln!(
                out,
                "| model | params | device | dtype | threads | test | t/s | roofline t/s | of roofline |"
            )?;
            writeln!(
                out,
                "| --- | ---: | --- | --- | ---: | --- | ---: | ---: | ---: |"
            )?;
            for r in results {
                let test = if r.n_depth > 0 {
                    format!("{} @ d{}", r.test, r.n_depth)
                } else {
                    r.test.clone()
                };
                let roof = r
                    .roofline_ts
                    .map(|v| format!("{v:.2}"))
                    .unwrap_or_else(|| "-".into());
                let frac = r
                    .roofline_fraction
                    .map(|v| format!("{:.0}%", v * 100.0))
                    .unwrap_or_else(|| "-".into());
                writeln!(
                    out,
                    "| {} | {:.1}M | {} | {} | {} | {} | {:.2} ± {:.2} | {} | {} |",
                    r.model,
                    r.n_params as f64 / 1e6,
                    r.device,
                    r.dtype,
                    r.n_threads,
                    test,
                    r.avg_ts,
                    r.stddev_ts,
                    roof,
                    frac
                )?;
            }
            let mut seen = Vec::new();
            for r in results.iter().filter(|r| r.bandwidth_gbs.is_some()) {
                if seen.contains(&r.n_threads) {
                    continue;
                }
                seen.push(r.n_threads);
                writeln!(
                    out,
                    "{}memory bandwidth {:.2} GB/s with {} threads; weights read per token {:.1} MB",
                    if seen.len() == 1 { "\n" } else { "" },
                    r.bandwidth_gbs.unwrap_or(0.0),
                    r.n_threads,
                    r.weight_bytes_per_token as f64 / 1e6
                )?;
            }
        }
    }
    Ok(())
}
