//! Measures why speculation can lose on a sparse MoE target (issue #4's note): decode tokens/s of a
//! random-initialised MoE with many small experts against a dense model of equal *active*
//! parameters, and the verify cost `T(k+1) / T(1)` for k = 1..16 on both, with the distinct experts
//! each MoE layer touched beside the uniform-routing estimate `N·(1 − (1 − K/N)^b)` (MoESD).
//!
//! Both models are built in memory from `random::RandomWeights` (no files). The dense twin has the
//! MoE's attention, embeddings and depth, and one MLP of `intermediate_size = K × moe_intermediate`,
//! so a single decoded token multiplies the same number of FFN weights in both.
//!
//! ```text
//! cargo run -p specsweep-engine --example moe_verify_cost -- [--layers 4] [--hidden 1024]
//!     [--experts 128] [--top-k 8] [--moe-inter 384] [--depth 64] [--reps 7] [--threads N]
//!     [--n-gen 32] [--embed-scale 1.0]
//! ```
//! Timings are medians over `--reps` repetitions; each repetition truncates the cache back to
//! `--depth` and uses fresh random tokens, so routing varies between repetitions.
//!
//! With HF-style initialisation (std 0.02 everywhere) the tokens' hidden states at the routers are
//! strongly correlated, so a batch shares experts far more than uniform routing would.
//! `--embed-scale S` multiplies the token embeddings by S, making each token's hidden state mostly
//! its own and the routing close to independent across tokens (the MoESD uniform case).

use std::time::Instant;

use specsweep_engine::random::RandomWeights;
use specsweep_engine::weights::{HostTensor, WeightSource};
use specsweep_engine::{Engine, LoadOptions, ModelConfig, Result};

/// Command-line settings (all have defaults).
struct Settings {
    layers: usize,
    hidden: usize,
    experts: usize,
    top_k: usize,
    moe_inter: usize,
    depth: usize,
    reps: usize,
    n_gen: usize,
    threads: Option<usize>,
    embed_scale: f32,
}

fn parse_args() -> std::result::Result<Settings, String> {
    let mut s = Settings {
        layers: 4,
        hidden: 1024,
        experts: 128,
        top_k: 8,
        moe_inter: 384,
        depth: 64,
        reps: 7,
        n_gen: 32,
        threads: None,
        embed_scale: 1.0,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        if flag == "--embed-scale" {
            s.embed_scale = value
                .parse()
                .map_err(|_| format!("{flag}: `{value}` is not a number"))?;
            continue;
        }
        let n: usize = value
            .parse()
            .map_err(|_| format!("{flag}: `{value}` is not a number"))?;
        match flag.as_str() {
            "--layers" => s.layers = n,
            "--hidden" => s.hidden = n,
            "--experts" => s.experts = n,
            "--top-k" => s.top_k = n,
            "--moe-inter" => s.moe_inter = n,
            "--depth" => s.depth = n,
            "--reps" => s.reps = n.max(1),
            "--n-gen" => s.n_gen = n.max(1),
            "--threads" => s.threads = Some(n),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(s)
}

/// Qwen3-shaped configs: the MoE and its dense twin of equal active parameters.
fn configs(s: &Settings) -> Result<(ModelConfig, ModelConfig)> {
    let heads = s.hidden / 64;
    let base = serde_json::json!({
        "hidden_size": s.hidden, "num_hidden_layers": s.layers, "num_attention_heads": heads,
        "num_key_value_heads": (heads / 2).max(1), "head_dim": 64, "vocab_size": 32000,
        "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": true,
        "max_position_embeddings": 4096, "eos_token_id": 0});
    let mut moe = base.clone();
    moe["architectures"] = serde_json::json!(["Qwen3MoeForCausalLM"]);
    moe["num_experts"] = s.experts.into();
    moe["num_experts_per_tok"] = s.top_k.into();
    moe["moe_intermediate_size"] = s.moe_inter.into();
    moe["norm_topk_prob"] = true.into();
    moe["intermediate_size"] = (s.top_k * s.moe_inter).into();
    let mut dense = base;
    dense["architectures"] = serde_json::json!(["Qwen3ForCausalLM"]);
    dense["intermediate_size"] = (s.top_k * s.moe_inter).into();
    let p = std::path::Path::new("<generated>");
    Ok((
        ModelConfig::from_value(moe, p)?,
        ModelConfig::from_value(dense, p)?,
    ))
}

/// Random weights with the token embeddings scaled by a constant.
struct ScaledEmbeddings {
    inner: RandomWeights,
    scale: f32,
}

impl WeightSource for ScaledEmbeddings {
    fn origin(&self) -> String {
        format!("{} (embeddings x{})", self.inner.origin(), self.scale)
    }
    fn contains(&self, name: &str) -> bool {
        self.inner.contains(name)
    }
    fn load(&self, name: &str) -> Result<HostTensor> {
        let mut t = self.inner.load(name)?;
        if name == "model.embed_tokens.weight" {
            t.data.iter_mut().for_each(|v| *v *= self.scale);
        }
        Ok(t)
    }
    fn names(&self) -> Vec<String> {
        self.inner.names()
    }
}

/// SplitMix64 token stream below `vocab`.
struct Tokens(u64);

impl Tokens {
    fn take(&mut self, n: usize, vocab: usize) -> Vec<u32> {
        (0..n)
            .map(|_| {
                self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = self.0;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                ((z ^ (z >> 31)) % vocab as u64) as u32
            })
            .collect()
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Per batch size b = 1..=17: median forward time (ms) and mean experts touched per MoE layer.
struct Measured {
    decode_tok_per_s: f64,
    weight_bytes_per_token: usize,
    verify_ms: Vec<f64>,
    experts_touched: Vec<f64>,
}

fn measure(engine: &Engine, s: &Settings, seed: u64) -> Result<Measured> {
    let vocab = engine.config().vocab_size;
    let mut tokens = Tokens(seed);
    let mut cache = engine.new_cache(s.depth + s.n_gen + 17)?;
    engine.forward_last(&tokens.take(s.depth, vocab), &mut cache)?;

    // Plain decoding: n_gen greedy steps after the context, median over repetitions.
    let mut rates = Vec::new();
    for _ in 0..s.reps {
        cache.truncate(s.depth)?;
        let mut last = tokens.take(1, vocab)[0];
        let t = Instant::now();
        for _ in 0..s.n_gen {
            let out = engine.forward_last(&[last], &mut cache)?;
            last = specsweep_engine::sampling::argmax(out.last_row());
        }
        rates.push(s.n_gen as f64 / t.elapsed().as_secs_f64());
    }

    // Verify-shaped forwards: b tokens, logits for every row.
    let (mut verify_ms, mut experts_touched) = (Vec::new(), Vec::new());
    for b in 1..=17 {
        let (mut times, mut touched) = (Vec::new(), Vec::new());
        for _ in 0..s.reps {
            cache.truncate(s.depth)?;
            let batch = tokens.take(b, vocab);
            let t = Instant::now();
            let out = engine.forward(&batch, &mut cache, false)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
            let layers = out.experts_touched.len().max(1) as f64;
            touched.push(out.experts_touched.iter().map(|&x| x as f64).sum::<f64>() / layers);
        }
        verify_ms.push(median(times));
        experts_touched.push(touched.iter().sum::<f64>() / touched.len() as f64);
    }
    Ok(Measured {
        decode_tok_per_s: median(rates),
        weight_bytes_per_token: engine.weight_bytes_per_token(),
        verify_ms,
        experts_touched,
    })
}

fn main() {
    if let Err(e) = run() {
        eprintln!("moe_verify_cost: {e}");
        std::process::exit(2);
    }
}

fn run() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let s = parse_args()?;
    let (moe_cfg, dense_cfg) = configs(&s)?;
    let opts = LoadOptions {
        threads: s.threads,
        ..Default::default()
    };
    let mut results = Vec::new();
    for (name, cfg) in [("dense", &dense_cfg), ("moe", &moe_cfg)] {
        let t = Instant::now();
        let weights = ScaledEmbeddings {
            inner: RandomWeights::new(cfg, 1),
            scale: s.embed_scale,
        };
        let engine = Engine::from_source(cfg.clone(), &weights, None, &opts)?;
        eprintln!("{name}: built in {:.1} s", t.elapsed().as_secs_f64());
        results.push(measure(&engine, &s, 7)?);
    }
    let (dense, moe) = (&results[0], &results[1]);
    let (n, k) = (s.experts as f64, s.top_k as f64);
    println!(
        "config: {} layers, hidden {}, vocab 32000 (tied); MoE {} experts top-{} of intermediate {}; \
         dense twin intermediate {}; context depth {}; {} reps (medians); threads {}; embeddings x{}",
        s.layers,
        s.hidden,
        s.experts,
        s.top_k,
        s.moe_inter,
        s.top_k * s.moe_inter,
        s.depth,
        s.reps,
        s.threads.map_or("all".to_string(), |t| t.to_string()),
        s.embed_scale
    );
    println!(
        "decode tok/s: dense {:.1} ({:.1} MB weights/token), moe {:.1} ({:.1} MB active weights/token)",
        dense.decode_tok_per_s,
        dense.weight_bytes_per_token as f64 / 1e6,
        moe.decode_tok_per_s,
        moe.weight_bytes_per_token as f64 / 1e6
    );
    println!();
    println!(
        "| k | batch k+1 | dense T ms | dense T(k+1)/T(1) | moe T ms | moe T(k+1)/T(1) | experts touched/layer | uniform N(1-(1-K/N)^b) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for b in 1..=17usize {
        let i = b - 1;
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} |",
            b - 1,
            b,
            dense.verify_ms[i],
            dense.verify_ms[i] / dense.verify_ms[0],
            moe.verify_ms[i],
            moe.verify_ms[i] / moe.verify_ms[0],
            moe.experts_touched[i],
            n * (1.0 - (1.0 - k / n).powi(b as i32))
        );
    }
    Ok(())
}
