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
use specsweep_engine::quant::Isa;
use specsweep_engine::random::{RandomWeights, resolve_config};
use specsweep_engine::roofline::measure_device_bandwidth;
use specsweep_engine::{Engine, KvCache, KvTypes};

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
    /// Random-initialised model: a preset (qwen3-0.1b, qwen3-0.6b, llama-0.1b, qwen3-1.7b,
    /// llama3-8b, qwen3moe-1b) or a config.json.
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
    // `[:N]` is help text (clap shows the doc comment), not an intra-doc link
    #[allow(rustdoc::broken_intra_doc_links)]
    /// cpu | wgpu[:N] | cuda[:N]
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// f32 | f16 | bf16
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Weights: `native` (a GGUF file's own blocks on the quantized CPU kernels; the default for
    /// .gguf on the cpu), q8_0 | q4_0 | q4_1 | q5_0 | q5_1 | iq4_nl | iq4_xs | q2_k | q3_k | q4_k | q5_k | q6_k |
    /// f32-kernel | f16-kernel |
    /// bf16-kernel (kernels), or
    /// f32 | f16 | bf16 (burn's dense path; the default otherwise).
    #[arg(long)]
    pub quant: Option<String>,
    /// Verify tests: for each k, the time of one forward over k + 1 tokens (all logit rows, as a
    /// speculative verify) against a one-token step at the same depth, interleaved per
    /// repetition; reports `verify_cost` = T(k+1) / T(1). `1-16` or `1,2,4,8`.
    #[arg(short = 'v', long = "verify", value_parser = parse_k_list)]
    pub verify: Option<KList>,
    /// CPU kernel family for the quantized products: scalar | avx2 | avx512 | avx512vnni | amx
    /// (default: the best this CPU runs), to measure one family against another end to end.
    #[arg(long)]
    pub kernels: Option<String>,
    /// Weight layout of the block formats (the K-quants, IQ4_XS, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,
    /// IQ4_NL and the IQ1 / IQ2 / IQ3 code copies) on the AVX2, VNNI and AMX kernels: x16 (rows interleaved 16 at a time, batch-invariant exact kernels;
    /// the default) | rows (ggml's row-major blocks), to measure one against the other.
    #[arg(long, value_parser = ["x16", "rows"])]
    pub layout: Option<String>,
    /// Copies of GGUF IQ1 / IQ2 / IQ3 tensors: own (IQ1_SHIFT / IQ2_PLANES / IQ3_*_NIB, 2.4 /
    /// 3.3 / 4.3 bits per weight, on AVX-512 VNNI and AVX2; the default there) | fallback (IQ2
    /// as f32, IQ1 / IQ3 as Q6_K: larger in memory), to measure one against the other.
    #[arg(long = "iq-copies", value_parser = ["own", "fallback"])]
    pub iq_copies: Option<String>,
    /// Seed for random weights and input tokens.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// KV cache element types, as llama-bench's `-ctk/-ctv`: f32 (the reference numerics) | f16
    /// (llama.cpp's default) | q8_0 | q4_0 | q4_1 | q5_0 | q5_1 | iq4_nl (ggml's blocks of 32, CPU
    /// only)
    /// for K and V alike, or `K/V` (`q8_0/q4_0`: `-ctk q8_0 -ctv q4_0`); a list forms a matrix
    /// axis.
    #[arg(long = "kv-type", value_delimiter = ',', default_value = "f32")]
    pub kv_type: Vec<String>,
    /// Bytes of the buffer read to measure memory bandwidth (MiB).
    #[arg(long, default_value_t = 1024)]
    pub bandwidth_mib: usize,
}

/// One test result (llama-bench's JSON fields plus the roofline).
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchResult {
    pub model: String,
    pub device: String,
    /// CPU kernel family of the quantized products (`amx`, `avx512vnni`, ...).
    pub kernels: String,
    /// Weight layout of the block-format products: `x16` (interleaved) or `rows`.
    pub layout: String,
    /// Copies of GGUF IQ1 / IQ2 / IQ3 tensors: `own` or `fallback` (`--iq-copies`).
    pub iq_copies: String,
    pub dtype: String,
    /// KV cache element type of keys / values (llama-bench's fields).
    pub type_k: String,
    pub type_v: String,
    pub test: String,
    pub n_prompt: usize,
    pub n_gen: usize,
    pub n_depth: usize,
    pub n_threads: usize,
    /// Parameters, every expert of a mixture counted (llama-bench's `n_params`).
    pub n_params: usize,
    /// Parameters one token runs through (a mixture's chosen experts only; `n_params` if dense).
    pub n_params_active: usize,
    pub weight_bytes_per_token: usize,
    /// Bytes of the weights the loaded model holds, in the format it computes with.
    pub weights_held_bytes: usize,
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
    /// Mean time of one forward, ms (verify tests).
    pub avg_ms: Option<f64>,
    /// Median T(k+1) / median T(1) over the interleaved repetitions (verify tests; `verify1` = 1).
    pub verify_cost: Option<f64>,
    /// Peak resident memory of this process while the model was loaded and tested, bytes
    /// (Linux `VmHWM`, reset after the bandwidth probe; `None` where unavailable).
    pub peak_rss_bytes: Option<u64>,
    /// Resident memory just before the model was loaded (binary, runtime, thread pools), bytes:
    /// `peak_rss_bytes − base_rss_bytes` is what the model, its caches and the tests added.
    pub base_rss_bytes: Option<u64>,
    /// Size of the weight files on disk, bytes (`None` for random weights).
    pub weights_file_bytes: Option<u64>,
    /// The largest KV cache any test allocated, bytes.
    pub kv_cache_bytes: u64,
}

/// Draft sizes k of `--verify`, ascending and distinct.
#[derive(Debug, Clone, PartialEq)]
pub struct KList(pub Vec<usize>);

/// Parse `1-16` or `1,2,4,8` into draft sizes k ≥ 1.
fn parse_k_list(text: &str) -> Result<KList, String> {
    let bad = |t: &str| format!("`{t}`: expected k values like `1-16` or `1,2,4,8` (k ≥ 1)");
    let mut ks = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (
                    a.trim().parse().map_err(|_| bad(part))?,
                    b.trim().parse().map_err(|_| bad(part))?,
                );
                if a == 0 || b < a || b > 4096 {
                    return Err(bad(part));
                }
                ks.extend(a..=b);
            }
            None => ks.push(
                part.parse()
                    .ok()
                    .filter(|&k| k >= 1)
                    .ok_or_else(|| bad(part))?,
            ),
        }
    }
    if ks.is_empty() {
        return Err(bad(text));
    }
    ks.sort_unstable();
    ks.dedup();
    Ok(KList(ks))
}

/// Linux: the process's peak resident set (`VmHWM`), bytes.
fn peak_rss() -> Option<u64> {
    status_kb("VmHWM:")
}

/// Linux: the process's current resident set (`VmRSS`), bytes.
fn current_rss() -> Option<u64> {
    status_kb("VmRSS:")
}

/// A `kB` field of /proc/self/status, in bytes.
fn status_kb(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

/// Linux: restart the peak-RSS count from the current RSS (`clear_refs` code 5).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Bytes of weight files behind a model path: the file itself, or a directory's safetensors.
fn weights_file_bytes(path: &Path) -> Option<u64> {
    if path.is_file() {
        return path.metadata().ok().map(|m| m.len());
    }
    let total = std::fs::read_dir(path)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    Some(total)
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
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
    if let Some(name) = &args.kernels {
        let isa = Isa::from_name(name).with_context(|| {
            let names: Vec<&str> = Isa::ALL.iter().map(|i| i.name()).collect();
            format!("--kernels {name}: expected one of {}", names.join(", "))
        })?;
        Isa::select(isa).with_context(|| format!("--kernels {name}"))?;
    }
    if let Some(layout) = &args.layout {
        specsweep_engine::quant::set_interleaving(layout == "x16");
    }
    if let Some(copies) = &args.iq_copies {
        specsweep_engine::quant::iq_codes::set_code_copies(copies == "own");
    }
    let kv_types = args
        .kv_type
        .iter()
        .map(|t| {
            t.parse::<KvTypes>()
                .map_err(|e| anyhow::anyhow!("--kv-type: {e}"))
        })
        .collect::<anyhow::Result<Vec<KvTypes>>>()?;
    let device = DeviceOpts {
        device: args.device.clone(),
        threads: None,
        dtype: args.dtype.clone(),
        quant: args.quant.clone(),
        kv_type: KvTypes::default().to_string(),
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
    let device_spec = device.device_spec()?;
    let choice = device.quant_choice(model_path.as_deref().unwrap_or(Path::new("random")))?;
    for threads in thread_list {
        let n_threads =
            threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        // The bandwidth probe runs before the model is loaded and its buffer is freed, so the
        // peak-RSS count restarted below covers only the model, its caches and the runtime.
        let bandwidth = if args.n_gen.iter().any(|&n| n > 0) {
            Some(
                measure_device_bandwidth(device_spec, args.bandwidth_mib << 20, 5, Some(n_threads))
                    .with_context(|| format!("measuring the memory bandwidth of {device_spec}"))?,
            )
        } else {
            None
        };
        reset_peak_rss();
        let base_rss = current_rss();
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
        let weight_bytes = engine.weight_bytes_per_token();
        let held_bytes = engine.weight_bytes();
        let file_bytes = model_path.as_deref().and_then(weights_file_bytes);
        let kv_bytes = |kv: KvTypes, capacity: usize| {
            let c = engine.config();
            kv.cache_bytes(
                c.num_hidden_layers,
                c.num_key_value_heads,
                c.head_dim,
                capacity,
            )
        };
        let first_result = results.len();
        let mut max_kv = 0u64;
        let row =
            |kv: KvTypes, test: String, n_prompt, n_gen, n_depth, samples: Vec<(f64, u128)>| {
                let ts: Vec<f64> = samples.iter().map(|s| s.0).collect();
                let (avg_ts, stddev_ts) = mean_std(&ts);
                let roof = bandwidth
                    .filter(|_| n_gen > 0)
                    .map(|b| (b.bytes_per_s / 1e9, b.roofline_tok_per_s(weight_bytes)));
                BenchResult {
                    model: model_name.clone(),
                    device: engine.device().to_string(),
                    kernels: Isa::detect().name().to_string(),
                    layout: specsweep_engine::quant::kernel_layout().to_string(),
                    iq_copies: specsweep_engine::quant::iq_codes::code_copies().to_string(),
                    dtype: choice.label(),
                    type_k: kv.k.to_string(),
                    type_v: kv.v.to_string(),
                    test,
                    n_prompt,
                    n_gen,
                    n_depth,
                    n_threads,
                    n_params: engine.config().num_parameters(),
                    n_params_active: engine.config().num_active_parameters(),
                    weight_bytes_per_token: weight_bytes,
                    weights_held_bytes: held_bytes,
                    avg_ts,
                    stddev_ts,
                    samples_ns: samples.iter().map(|s| s.1).collect(),
                    samples_ts: ts,
                    bandwidth_gbs: roof.map(|r| r.0),
                    roofline_ts: roof.map(|r| r.1),
                    roofline_fraction: roof.map(|r| avg_ts / r.1),
                    avg_ms: None,
                    verify_cost: None,
                    peak_rss_bytes: None,
                    base_rss_bytes: None,
                    weights_file_bytes: file_bytes,
                    kv_cache_bytes: 0,
                }
            };
        let vocab = engine.config().vocab_size;
        for (&depth, &kv) in args
            .n_depth
            .iter()
            .flat_map(|d| kv_types.iter().map(move |k| (d, k)))
        {
            for &p in args.n_prompt.iter().filter(|&&p| p > 0) {
                max_kv = max_kv.max(kv_bytes(kv, depth + p));
                let mut cache = engine.new_cache_with(depth + p, kv)?;
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
                results.push(row(kv, format!("pp{p}"), p, 0, depth, samples));
            }
            for &n in args.n_gen.iter().filter(|&&n| n > 0) {
                max_kv = max_kv.max(kv_bytes(kv, depth + n + 1));
                let mut cache = engine.new_cache_with(depth + n + 1, kv)?;
                fill_depth(&engine, &mut cache, depth, args.seed)?;
                let first = tokens(1, vocab, args.seed ^ 0xdef)[0];
                // One untimed pass first, as llama-bench's warm-up run: every depth the test
                // reaches is visited once (a GPU compiles its kernels per shape there).
                let mut samples = Vec::new();
                for rep in 0..=args.repetitions {
                    cache.truncate(depth)?;
                    let mut token = first;
                    let t = Instant::now();
                    for _ in 0..n {
                        let out = engine.forward_last(&[token], &mut cache)?;
                        token = specsweep_engine::sampling::argmax(out.last_row());
                    }
                    let ns = t.elapsed().as_nanos();
                    if rep > 0 {
                        samples.push((n as f64 * 1e9 / ns as f64, ns));
                    }
                }
                results.push(row(kv, format!("tg{n}"), 0, n, depth, samples));
            }
            if let Some(KList(ks)) = &args.verify {
                let k_max = ks.iter().copied().max().unwrap_or(1);
                max_kv = max_kv.max(kv_bytes(kv, depth + k_max + 1));
                let mut cache = engine.new_cache_with(depth + k_max + 1, kv)?;
                fill_depth(&engine, &mut cache, depth, args.seed)?;
                let batch = tokens(k_max + 1, vocab, args.seed ^ 0x5eed);
                // batch sizes k + 1, the one-token step first; each repetition times them all
                let sizes: Vec<usize> =
                    std::iter::once(1).chain(ks.iter().map(|k| k + 1)).collect();
                let mut ns: Vec<Vec<u128>> = vec![Vec::new(); sizes.len()];
                for rep in 0..=args.repetitions {
                    for (i, &b) in sizes.iter().enumerate() {
                        cache.truncate(depth)?;
                        let t = Instant::now();
                        engine.forward(&batch[..b], &mut cache, false)?;
                        if rep > 0 {
                            ns[i].push(t.elapsed().as_nanos()); // repetition 0 warms up
                        }
                    }
                }
                let ms = |v: &[u128]| v.iter().map(|&n| n as f64 / 1e6).collect::<Vec<f64>>();
                let t1 = median(&ms(&ns[0]));
                for (i, &b) in sizes.iter().enumerate() {
                    let samples: Vec<(f64, u128)> = ns[i]
                        .iter()
                        .map(|&n| (b as f64 * 1e9 / n as f64, n))
                        .collect();
                    let mut r = row(kv, format!("verify{b}"), b, 0, depth, samples);
                    let times = ms(&ns[i]);
                    r.avg_ms = Some(times.iter().sum::<f64>() / times.len() as f64);
                    r.verify_cost = Some(median(&times) / t1);
                    results.push(r);
                }
            }
        }
        let peak = peak_rss();
        for r in &mut results[first_result..] {
            r.peak_rss_bytes = peak;
            r.base_rss_bytes = base_rss;
            r.kv_cache_bytes = max_kv;
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
                "model,device,dtype,type_k,type_v,test,n_prompt,n_gen,n_depth,n_threads,n_params,avg_ts,stddev_ts,bandwidth_gbs,roofline_ts,roofline_fraction"
            )?;
            for r in results {
                let opt = |v: Option<f64>| v.map(|v| format!("{v:.4}")).unwrap_or_default();
                writeln!(
                    out,
                    "{},{},{},{},{},{},{},{},{},{},{},{:.4},{:.4},{},{},{}",
                    r.model,
                    r.device,
                    r.dtype,
                    r.type_k,
                    r.type_v,
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
                "| model | params | device | dtype | kv | threads | test | t/s | roofline t/s | of roofline | T(k+1)/T(1) |"
            )?;
            writeln!(
                out,
                "| --- | ---: | --- | --- | --- | ---: | --- | ---: | ---: | ---: | ---: |"
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
                let mut params = format!("{:.1}M", r.n_params as f64 / 1e6);
                if r.n_params_active != r.n_params {
                    params += &format!(" (A{:.1}M)", r.n_params_active as f64 / 1e6);
                }
                let cost = r
                    .verify_cost
                    .map(|v| format!("{v:.2}"))
                    .unwrap_or_else(|| "-".into());
                writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {:.2} ± {:.2} | {} | {} | {cost} |",
                    r.model,
                    params,
                    r.device,
                    r.dtype,
                    r.type_k,
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
                    "{}memory bandwidth {:.2} GB/s ({}); weights read per token {:.1} MB",
                    if seen.len() == 1 { "\n" } else { "" },
                    r.bandwidth_gbs.unwrap_or(0.0),
                    if r.device == "cpu" {
                        format!("{} threads", r.n_threads)
                    } else {
                        format!("{}: a device tensor's sum", r.device)
                    },
                    r.weight_bytes_per_token as f64 / 1e6
                )?;
            }
            let mut seen = Vec::new();
            for r in results {
                if seen.contains(&r.n_threads) {
                    continue;
                }
                seen.push(r.n_threads);
                let mib = |b: u64| b as f64 / (1 << 20) as f64;
                match (r.peak_rss_bytes, r.weights_file_bytes) {
                    (Some(peak), Some(file)) => {
                        let base = r.base_rss_bytes.unwrap_or(0);
                        let need = (file + r.kv_cache_bytes) as f64;
                        writeln!(
                            out,
                            "peak memory {:.1} MiB with {} threads = {:.2} × (weight files {:.1} MiB + largest KV cache {:.1} MiB); {:.1} MiB before loading, so the model added {:.2} ×",
                            mib(peak),
                            r.n_threads,
                            peak as f64 / need,
                            mib(file),
                            mib(r.kv_cache_bytes),
                            mib(base),
                            peak.saturating_sub(base) as f64 / need
                        )?
                    }
                    (Some(peak), None) => {
                        // random weights: no file, so the weights as held
                        let base = r.base_rss_bytes.unwrap_or(0);
                        let need = (r.weights_held_bytes as u64 + r.kv_cache_bytes) as f64;
                        writeln!(
                            out,
                            "peak memory {:.1} MiB with {} threads = {:.2} × (weights held {:.1} MiB + largest KV cache {:.1} MiB); {:.1} MiB before loading, so the model added {:.2} ×",
                            mib(peak),
                            r.n_threads,
                            peak as f64 / need,
                            mib(r.weights_held_bytes as u64),
                            mib(r.kv_cache_bytes),
                            mib(base),
                            peak.saturating_sub(base) as f64 / need
                        )?
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}
