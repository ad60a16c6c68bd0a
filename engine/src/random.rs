//! Random-initialised weights as a [`WeightSource`], for benchmarks on models whose weights exceed
//! the CPU caches without committing any weights (`specsweep bench --random qwen3-0.1b`).
//!
//! Every tensor a config needs is generated on demand from a seeded SplitMix64 stream keyed by the
//! tensor name, so the same (config, seed) always gives the same model. Linear weights are uniform
//! with standard deviation 0.02 (HF's default `initializer_range`); norm weights are 1.

use std::path::Path;

use crate::config::ModelConfig;
use crate::error::{EngineError, Result};
use crate::weights::{HostTensor, WeightSource};

/// Named shapes for `--random`: (name, description).
pub const PRESETS: &[(&str, &str)] = &[
    (
        "qwen3-0.1b",
        "Qwen3-shaped, 8 layers, hidden 1024, vocab 32000: ~133M parameters",
    ),
    (
        "qwen3-0.6b",
        "the shape of Qwen3-0.6B: 28 layers, hidden 1024, vocab 151936: ~596M parameters",
    ),
    (
        "llama-0.1b",
        "Llama-shaped, 12 layers, hidden 768, vocab 32000: ~110M parameters",
    ),
    (
        "qwen3-1.7b",
        "the shape of Qwen3-1.7B: 28 layers, hidden 2048, vocab 151936: ~1.7B parameters",
    ),
    (
        "qwen3moe-0.2b",
        "Qwen3-MoE-shaped, 12 layers, hidden 1024, 64 experts of 384 (top-4), vocab 32000: \
         ~178M parameters, ~33M active",
    ),
    (
        "llama3-8b",
        "the shape of Llama-3-8B: 32 layers, hidden 4096, vocab 128256: ~8.0B parameters",
    ),
];

/// The config.json of a preset.
pub fn preset_config(name: &str) -> Result<ModelConfig> {
    let v = match name {
        "qwen3-0.1b" => serde_json::json!({
            "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 1024,
            "intermediate_size": 3072, "num_hidden_layers": 8, "num_attention_heads": 16,
            "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 32000, "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0, "tie_word_embeddings": true, "max_position_embeddings": 40960,
            "eos_token_id": 0}),
        "qwen3-0.6b" => serde_json::json!({
            "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 1024,
            "intermediate_size": 3072, "num_hidden_layers": 28, "num_attention_heads": 16,
            "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936, "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0, "tie_word_embeddings": true, "max_position_embeddings": 40960,
            "eos_token_id": 151645}),
        "llama-0.1b" => serde_json::json!({
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 768,
            "intermediate_size": 2048, "num_hidden_layers": 12, "num_attention_heads": 12,
            "num_key_value_heads": 4, "vocab_size": 32000, "rms_norm_eps": 1e-5,
            "rope_theta": 500000.0, "tie_word_embeddings": false, "max_position_embeddings": 8192,
            "eos_token_id": 2}),
        "qwen3-1.7b" => serde_json::json!({
            "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 2048,
            "intermediate_size": 6144, "num_hidden_layers": 28, "num_attention_heads": 16,
            "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 151936, "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0, "tie_word_embeddings": true, "max_position_embeddings": 40960,
            "eos_token_id": 151645}),
        "qwen3moe-0.2b" => serde_json::json!({
            "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe",
            "hidden_size": 1024, "intermediate_size": 3072, "moe_intermediate_size": 384,
            "num_hidden_layers": 12, "num_attention_heads": 16, "num_key_value_heads": 4,
            "head_dim": 64, "vocab_size": 32000, "num_experts": 64, "num_experts_per_tok": 4,
            "norm_topk_prob": true, "decoder_sparse_step": 1, "mlp_only_layers": [],
            "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "tie_word_embeddings": true,
            "max_position_embeddings": 40960, "eos_token_id": 0}),
        "llama3-8b" => serde_json::json!({
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
            "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
            "num_key_value_heads": 8, "vocab_size": 128256, "rms_norm_eps": 1e-5,
            "rope_theta": 500000.0, "tie_word_embeddings": false, "max_position_embeddings": 8192,
            "eos_token_id": 128001}),
        other => {
            let names: Vec<&str> = PRESETS.iter().map(|p| p.0).collect();
            return Err(EngineError::Invalid(format!(
                "unknown random model `{other}` (presets: {}; or a path to a config.json)",
                names.join(", ")
            )));
        }
    };
    ModelConfig::from_value(v, Path::new(name))
}

/// A preset name or a path to a config.json.
pub fn resolve_config(spec: &str) -> Result<ModelConfig> {
    let p = Path::new(spec);
    if p.is_file() {
        ModelConfig::from_file(p)
    } else if p.is_dir() {
        ModelConfig::from_file(&p.join("config.json"))
    } else {
        preset_config(spec)
    }
}

/// Random weights for every tensor of a config (dense, or MoE with sparse layers).
pub struct RandomWeights {
    shapes: Vec<(String, Vec<usize>)>,
    seed: u64,
}

impl RandomWeights {
    /// The tensors `config` needs, with their shapes.
    pub fn new(config: &ModelConfig, seed: u64) -> Self {
        let c = config;
        let (h, v, d) = (c.hidden_size, c.vocab_size, c.head_dim);
        let (q, kv, ff) = (
            c.num_attention_heads * d,
            c.num_key_value_heads * d,
            c.intermediate_size,
        );
        let mut shapes = vec![
            ("model.embed_tokens.weight".to_string(), vec![v, h]),
            ("model.norm.weight".to_string(), vec![h]),
        ];
        if !c.tie_word_embeddings {
            shapes.push(("lm_head.weight".into(), vec![v, h]));
        }
        for i in 0..c.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let mut add = |n: &str, s: Vec<usize>| shapes.push((format!("{p}.{n}"), s));
            add("input_layernorm.weight", vec![h]);
            add("post_attention_layernorm.weight", vec![h]);
            add("self_attn.q_proj.weight", vec![q, h]);
            add("self_attn.k_proj.weight", vec![kv, h]);
            add("self_attn.v_proj.weight", vec![kv, h]);
            add("self_attn.o_proj.weight", vec![h, q]);
            if c.qkv_bias() {
                add("self_attn.q_proj.bias", vec![q]);
                add("self_attn.k_proj.bias", vec![kv]);
                add("self_attn.v_proj.bias", vec![kv]);
            }
            if c.o_bias() {
                add("self_attn.o_proj.bias", vec![h]);
            }
            if c.architecture.has_qk_norm() {
                add("self_attn.q_norm.weight", vec![d]);
                add("self_attn.k_norm.weight", vec![d]);
            }
            if c.architecture.is_moe() && crate::model::moe::is_sparse_layer(c, i) {
                // Sparse layer: router, experts and the optional gated shared expert (model::moe).
                let (n, m, sh) = (
                    c.num_experts,
                    c.moe_intermediate_size,
                    c.shared_expert_intermediate_size,
                );
                add("mlp.gate.weight", vec![n, h]);
                let mut mlp = |name: String, inter: usize| {
                    add(&format!("{name}.gate_proj.weight"), vec![inter, h]);
                    add(&format!("{name}.up_proj.weight"), vec![inter, h]);
                    add(&format!("{name}.down_proj.weight"), vec![h, inter]);
                };
                (0..n).for_each(|e| mlp(format!("mlp.experts.{e}"), m));
                if sh > 0 {
                    mlp("mlp.shared_expert".into(), sh);
                    add("mlp.shared_expert_gate.weight", vec![1, h]);
                }
                continue;
            }
            add("mlp.gate_proj.weight", vec![ff, h]);
            add("mlp.up_proj.weight", vec![ff, h]);
            add("mlp.down_proj.weight", vec![h, ff]);
            if c.mlp_bias {
                add("mlp.gate_proj.bias", vec![ff]);
                add("mlp.up_proj.bias", vec![ff]);
                add("mlp.down_proj.bias", vec![h]);
            }
        }
        Self { shapes, seed }
    }
}

/// SplitMix64 (Steele, Lea & Flood 2014): a tiny, fast, well-mixed generator.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl WeightSource for RandomWeights {
    fn origin(&self) -> String {
        format!("random weights (seed {})", self.seed)
    }

    fn contains(&self, name: &str) -> bool {
        self.shapes.iter().any(|(n, _)| n == name)
    }

    fn load(&self, name: &str) -> Result<HostTensor> {
        let shape = self
            .shapes
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.clone())
            .ok_or_else(|| EngineError::MissingTensor {
                path: self.origin().into(),
                tensor: name.to_string(),
            })?;
        let numel: usize = shape.iter().product();
        let data = if name.ends_with("norm.weight") {
            vec![1.0; numel]
        } else {
            let mut state = self.seed
                ^ name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                    (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
                });
            // uniform(-a, a) has std a/√3; a = 0.02·√3.
            let a = 0.02f32 * 3f32.sqrt();
            (0..numel)
                .map(|_| {
                    let u = (splitmix64(&mut state) >> 40) as f32 / (1u64 << 24) as f32;
                    (2.0 * u - 1.0) * a
                })
                .collect()
        };
        Ok(HostTensor { shape, data })
    }

    fn names(&self) -> Vec<String> {
        self.shapes.iter().map(|(n, _)| n.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_big_enough_and_deterministic() {
        let c = preset_config("qwen3-0.1b").unwrap();
        assert!(c.num_parameters() >= 100_000_000, "{}", c.num_parameters());
        assert!(preset_config("llama-0.1b").unwrap().num_parameters() >= 100_000_000);
        let w = RandomWeights::new(&c, 1);
        let a = w.load("model.layers.0.self_attn.q_proj.weight").unwrap();
        assert_eq!(a.shape, vec![1024, 1024]);
        assert_eq!(a, w.load("model.layers.0.self_attn.q_proj.weight").unwrap());
        let mean = a.data.iter().sum::<f32>() / a.data.len() as f32;
        let var = a.data.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / a.data.len() as f32;
        assert!(
            mean.abs() < 1e-3 && (var.sqrt() - 0.02).abs() < 1e-3,
            "{mean} {var}"
        );
        assert!(w.load("lm_head.weight").is_err(), "tied: no lm_head");
        assert!(preset_config("nope").is_err());
        // The GPU presets have the parameter counts their names claim (±5 %).
        for (name, want) in [
            ("qwen3-1.7b", 1.72e9),
            ("llama3-8b", 8.03e9),
            ("qwen3moe-0.2b", 1.775e8),
        ] {
            let n = preset_config(name).unwrap().num_parameters() as f64;
            assert!((n / want - 1.0).abs() < 0.05, "{name}: {n}");
        }
    }
}
