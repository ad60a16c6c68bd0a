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
        "qwen3moe-1b",
        "Qwen3-MoE-shaped, 12 layers, hidden 1024, 64 experts of 384 (top-4), vocab 32000: \
         ~971M parameters, ~122M active (`qwen3moe-0.2b`, its name until the parameter count \
         took every expert, is accepted too)",
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
        // the old name: the same shape
        "qwen3moe-1b" | "qwen3moe-0.2b" => serde_json::json!({
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
        Self {
            shapes: config.tensor_shapes(),
            seed,
        }
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
        // The presets have the parameter counts their names claim (±5 %): Qwen3-1.7B's and
        // Llama-3-8B's model cards say 1.72B / 8.03B.
        for (name, want, active) in [
            ("qwen3-1.7b", 1.72e9, 1.72e9),
            ("llama3-8b", 8.03e9, 8.03e9),
            ("qwen3moe-1b", 0.971e9, 0.122e9),
        ] {
            let c = preset_config(name).unwrap();
            let (n, a) = (c.num_parameters() as f64, c.num_active_parameters() as f64);
            assert!((n / want - 1.0).abs() < 0.05, "{name}: {n}");
            assert!((a / active - 1.0).abs() < 0.05, "{name}: {a} active");
        }
    }
}
