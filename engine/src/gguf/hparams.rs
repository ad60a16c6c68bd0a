//! GGUF metadata → a Hugging Face style `config.json`.
//!
//! llama.cpp stores hyper-parameters under `{arch}.*` keys (`llama.embedding_length`,
//! `qwen3moe.expert_count`, ...; see ggml's `docs/gguf.md` "LLM" section). This module rebuilds the
//! fields the engine's `ModelConfig` reads. One quirk: for Llama-3 RoPE scaling the converter
//! writes no metadata, only the per-frequency divisors as the tensor `rope_freqs.weight`
//! (1 for short wavelengths, `factor` for long ones, `1/((1-s)/factor + s)` in between, with
//! `s` linear in 1/wavelength). [`fit_llama3`] recovers a `rope_scaling` that reproduces those
//! divisors exactly (only the ratios of its parameters are identifiable, so
//! `original_max_position_embeddings` is taken from the metadata when present).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::reader::{MetaValue, TensorInfo};

/// The GGUF architectures the engine implements, with their HF class and model_type.
pub const ARCHITECTURES: &[(&str, &str, &str)] = &[
    ("llama", "LlamaForCausalLM", "llama"),
    ("qwen2", "Qwen2ForCausalLM", "qwen2"),
    ("qwen3", "Qwen3ForCausalLM", "qwen3"),
    ("qwen3moe", "Qwen3MoeForCausalLM", "qwen3_moe"),
];

/// A float stored as f32 in GGUF, widened by its shortest decimal form (1e-6, not 9.99999997e-7).
fn widen(v: &MetaValue) -> Option<f64> {
    match v {
        MetaValue::F32(f) => f.to_string().parse().ok(),
        other => other.as_f64(),
    }
}

/// Read access to `{arch}.*` keys with errors naming the key.
pub struct Meta<'a> {
    pub map: &'a BTreeMap<String, MetaValue>,
    pub arch: &'a str,
}

impl Meta<'_> {
    fn get(&self, key: &str) -> Option<&MetaValue> {
        self.map.get(&format!("{}.{key}", self.arch))
    }
    fn usize(&self, key: &str) -> Result<Option<usize>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
                format!(
                    "metadata `{}.{key}`: expected an integer, got {v:?}",
                    self.arch
                )
            }),
        }
    }
    fn required(&self, key: &str) -> Result<usize, String> {
        self.usize(key)?
            .ok_or_else(|| format!("metadata `{}.{key}` is missing", self.arch))
    }
    fn f64(&self, key: &str) -> Result<Option<f64>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => widen(v).map(Some).ok_or_else(|| {
                format!(
                    "metadata `{}.{key}`: expected a number, got {v:?}",
                    self.arch
                )
            }),
        }
    }
}

/// Build config.json. `rope_freqs` is the dequantized `rope_freqs.weight` when present.
pub fn config_json(
    map: &BTreeMap<String, MetaValue>,
    tensors: &[TensorInfo],
    rope_freqs: Option<&[f32]>,
) -> Result<Value, String> {
    let arch = map
        .get("general.architecture")
        .and_then(MetaValue::as_str)
        .ok_or("metadata `general.architecture` is missing")?;
    let (_, class, model_type) = ARCHITECTURES
        .iter()
        .find(|(a, _, _)| *a == arch)
        .ok_or_else(|| {
            let names: Vec<&str> = ARCHITECTURES.iter().map(|a| a.0).collect();
            format!(
                "unsupported architecture `{arch}` (supported: {})",
                names.join(", ")
            )
        })?;
    let m = Meta { map, arch };
    let has = |name: &str| tensors.iter().any(|t| t.name == name);

    let hidden = m.required("embedding_length")?;
    let heads = m.required("attention.head_count")?;
    let kv_heads = m.usize("attention.head_count_kv")?.unwrap_or(heads);
    let head_dim = match m.usize("attention.key_length")? {
        Some(d) => d,
        None if heads > 0 => hidden / heads,
        None => return Err(format!("metadata `{arch}.attention.head_count` is 0")),
    };
    let n_nextn = m.usize("nextn_predict_layers")?.unwrap_or(0);
    let n_layers = m
        .required("block_count")?
        .checked_sub(n_nextn)
        .ok_or_else(|| format!("metadata `{arch}.nextn_predict_layers` exceeds block_count"))?;
    let vocab = match m.usize("vocab_size")? {
        Some(v) => v,
        None => match map
            .get("tokenizer.ggml.tokens")
            .and_then(MetaValue::as_array)
        {
            Some(t) => t.len(),
            None => tensors
                .iter()
                .find(|t| t.name == "token_embd.weight")
                .and_then(|t| t.dims.get(1).map(|&d| d as usize))
                .ok_or("cannot tell the vocabulary size: no vocab_size, tokens or token_embd")?,
        },
    };
    let rope_theta = m.f64("rope.freq_base")?.unwrap_or(10_000.0);

    let mut c = Map::new();
    c.insert("architectures".into(), json!([class]));
    c.insert("model_type".into(), json!(model_type));
    c.insert("hidden_size".into(), json!(hidden));
    if let Some(ff) = m.usize("feed_forward_length")? {
        c.insert("intermediate_size".into(), json!(ff));
    }
    c.insert("num_hidden_layers".into(), json!(n_layers));
    c.insert("num_attention_heads".into(), json!(heads));
    c.insert("num_key_value_heads".into(), json!(kv_heads));
    c.insert("head_dim".into(), json!(head_dim));
    c.insert(
        "rms_norm_eps".into(),
        json!(m.f64("attention.layer_norm_rms_epsilon")?.unwrap_or(1e-6)),
    );
    c.insert("rope_theta".into(), json!(rope_theta));
    c.insert("vocab_size".into(), json!(vocab));
    c.insert(
        "max_position_embeddings".into(),
        json!(m.usize("context_length")?.unwrap_or(4096)),
    );
    c.insert("tie_word_embeddings".into(), json!(!has("output.weight")));
    c.insert(
        "attention_bias".into(),
        json!(arch == "qwen2" || has("blk.0.attn_q.bias")),
    );
    let token_id = |k: &str| map.get(k).and_then(MetaValue::as_u64);
    if let Some(bos) = token_id("tokenizer.ggml.bos_token_id") {
        c.insert("bos_token_id".into(), json!(bos));
    }
    let mut eos: Vec<u64> = ["eos", "eot", "eom"]
        .iter()
        .filter_map(|k| token_id(&format!("tokenizer.ggml.{k}_token_id")))
        .collect();
    eos.dedup();
    match eos.len() {
        0 => {}
        1 => {
            c.insert("eos_token_id".into(), json!(eos[0]));
        }
        _ => {
            c.insert("eos_token_id".into(), json!(eos));
        }
    }
    if let Some(e) = m.usize("expert_count")? {
        c.insert("num_experts".into(), json!(e));
        c.insert(
            "num_experts_per_tok".into(),
            json!(m.usize("expert_used_count")?.unwrap_or(0)),
        );
        if let Some(ff) = m.usize("expert_feed_forward_length")? {
            c.insert("moe_intermediate_size".into(), json!(ff));
        }
        // llama.cpp's qwen3moe graph always renormalises the top-k weights.
        let norm = m
            .get("expert_weights_norm")
            .and_then(MetaValue::as_bool)
            .unwrap_or(true);
        c.insert("norm_topk_prob".into(), json!(norm));
        c.insert("decoder_sparse_step".into(), json!(1));
        c.insert("mlp_only_layers".into(), json!([]));
    }
    if n_nextn > 0 {
        c.insert("num_nextn_predict_layers".into(), json!(n_nextn));
    }

    let scaling_type = m.get("rope.scaling.type").and_then(MetaValue::as_str);
    match (scaling_type, rope_freqs) {
        (Some("linear"), _) => {
            let factor = m.f64("rope.scaling.factor")?.unwrap_or(1.0);
            c.insert(
                "rope_scaling".into(),
                json!({"rope_type": "linear", "factor": factor}),
            );
        }
        (Some(other), _) if other != "none" => {
            // Passed through so that the config parser names what is unsupported.
            c.insert("rope_scaling".into(), json!({"rope_type": other}));
        }
        (_, Some(factors)) => {
            let dim = m.usize("rope.dimension_count")?.unwrap_or(head_dim);
            let original = m
                .usize("rope.scaling.original_context_length")?
                .unwrap_or(8192);
            if let Some(s) = fit_llama3(factors, rope_theta, dim, original) {
                c.insert("rope_scaling".into(), s);
            }
        }
        _ => {}
    }
    Ok(Value::Object(c))
}

/// Recover a Llama-3 `rope_scaling` from llama.cpp's per-frequency divisors (see the module
/// docs). `None` when the divisors are all 1 (no scaling).
pub fn fit_llama3(factors: &[f32], base: f64, dim: usize, original: usize) -> Option<Value> {
    let r: Vec<f64> = factors.iter().map(|&f| f64::from(f)).collect();
    let big = r.iter().copied().fold(1.0, f64::max);
    if big <= 1.0 + 1e-6 {
        return None;
    }
    if r.iter().all(|&v| (v - big).abs() <= 1e-6 * big) {
        return Some(json!({"rope_type": "linear", "factor": big}));
    }
    // x = 1 / wavelength of frequency i; s(x) is the smoothing weight (0: low, 1: high frequency).
    let x = |i: usize| base.powf(-2.0 * i as f64 / dim as f64) / (2.0 * std::f64::consts::PI);
    let tol = 1e-5 * big;
    let (mut lows, mut highs, mut mids) = (Vec::new(), Vec::new(), Vec::new());
    for (i, &v) in r.iter().enumerate() {
        if (v - 1.0).abs() <= tol {
            highs.push(x(i));
        } else if (v - big).abs() <= tol {
            lows.push(x(i));
        } else {
            mids.push((x(i), (1.0 / v - 1.0 / big) / (1.0 - 1.0 / big)));
        }
    }
    let x_lo = lows
        .iter()
        .copied()
        .fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.max(v))));
    let x_hi = highs
        .iter()
        .copied()
        .fold(None, |a: Option<f64>, v| Some(a.map_or(v, |a| a.min(v))));
    let (slope, intercept) = if mids.len() >= 2 {
        let n = mids.len() as f64;
        let mx = mids.iter().map(|p| p.0).sum::<f64>() / n;
        let ms = mids.iter().map(|p| p.1).sum::<f64>() / n;
        let sxx: f64 = mids.iter().map(|p| (p.0 - mx).powi(2)).sum();
        let sxs: f64 = mids.iter().map(|p| (p.0 - mx) * (p.1 - ms)).sum();
        let a = sxs / sxx;
        (a, ms - a * mx)
    } else if let [(xm, sm)] = mids[..] {
        let mut a: f64 = 0.0;
        if let Some(lo) = x_lo {
            a = a.max(sm / (xm - lo));
        }
        if let Some(hi) = x_hi {
            a = a.max((1.0 - sm) / (hi - xm));
        }
        if a == 0.0 {
            a = sm / xm;
        }
        (a, sm - a * xm)
    } else {
        let (lo, hi) = (x_lo?, x_hi?);
        let a = 1.0 / (hi - lo);
        (a, -a * lo)
    };
    // NaN fails both comparisons
    if slope.is_nan() || slope <= 0.0 || intercept.is_nan() || intercept >= 0.0 {
        return None;
    }
    // s = (original * x - low) / (high - low)  ⇒  slope = original / (high - low), intercept = -low / (high - low).
    let span = original as f64 / slope;
    let low = -intercept * span;
    Some(json!({
        "rope_type": "llama3",
        "factor": big,
        "low_freq_factor": low,
        "high_freq_factor": low + span,
        "original_max_position_embeddings": original,
    }))
}

/// The divisors HF's Llama-3 rope scaling applies to frequency `i` (the inverse of the fit).
pub fn llama3_divisors(scaling: &Value, base: f64, dim: usize) -> Vec<f64> {
    let g = |k: &str| scaling[k].as_f64().unwrap_or(f64::NAN);
    let (factor, low, high, orig) = (
        g("factor"),
        g("low_freq_factor"),
        g("high_freq_factor"),
        g("original_max_position_embeddings"),
    );
    (0..dim / 2)
        .map(|i| {
            let wavelen = 2.0 * std::f64::consts::PI * base.powf(2.0 * i as f64 / dim as f64);
            if wavelen < orig / high {
                1.0
            } else if wavelen > orig / low {
                factor
            } else {
                let s = (orig / wavelen - low) / (high - low);
                1.0 / ((1.0 - s) / factor + s)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_reproduces_hf_divisors() {
        // The llama-tiny fixture's scaling: factor 8, low 1, high 4, original 16, head_dim 16.
        let hf = json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                        "high_freq_factor": 4.0, "original_max_position_embeddings": 16});
        for (dim, base) in [(16, 10_000.0), (64, 500_000.0), (128, 10_000.0)] {
            let want = llama3_divisors(&hf, base, dim);
            let stored: Vec<f32> = want.iter().map(|&v| v as f32).collect();
            let fit = fit_llama3(&stored, base, dim, 16).expect("fit");
            let got = llama3_divisors(&fit, base, dim);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-6 * w, "dim {dim}: {got:?} vs {want:?}");
            }
        }
        assert_eq!(fit_llama3(&[1.0; 8], 1e4, 16, 16), None);
    }

    #[test]
    fn widens_f32_by_shortest_form() {
        assert_eq!(widen(&MetaValue::F32(1e-6)), Some(1e-6));
        assert_eq!(widen(&MetaValue::U32(7)), Some(7.0));
    }
}
