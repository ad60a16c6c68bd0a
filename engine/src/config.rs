//! The model configuration: a mirror of Hugging Face's `config.json`, field for field.
//!
//! Both transformers 4.x (hub) and 5.x spellings are accepted: `rope_theta` or
//! `rope_parameters.rope_theta`, `rope_scaling` or `rope_parameters` (with `rope_type`/`type`),
//! `torch_dtype` or `dtype`. Unknown keys are ignored (HF mirrors accept extra keys); a known key
//! with the wrong type is an error naming the file and the field.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{EngineError, Result};

/// The architectures the engine implements (`architectures[0]` in config.json).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Qwen3ForCausalLM: per-head RMSNorm on q and k.
    Qwen3,
    /// LlamaForCausalLM.
    Llama,
    /// Qwen2ForCausalLM: biases on q, k and v.
    Qwen2,
    /// Qwen3MoeForCausalLM: Qwen3 attention with a sparse mixture-of-experts FFN.
    Qwen3Moe,
    /// Qwen2MoeForCausalLM: Qwen2 attention (q/k/v biases) with experts and a gated shared expert.
    Qwen2Moe,
}

impl Architecture {
    /// The supported `architectures` strings, for error messages.
    pub const SUPPORTED: &'static str = "Qwen3ForCausalLM, LlamaForCausalLM, Qwen2ForCausalLM, Qwen3MoeForCausalLM, Qwen2MoeForCausalLM";

    /// Parse the HF class name.
    pub fn from_hf(name: &str) -> Option<Self> {
        match name {
            "Qwen3ForCausalLM" => Some(Self::Qwen3),
            "LlamaForCausalLM" => Some(Self::Llama),
            "Qwen2ForCausalLM" => Some(Self::Qwen2),
            "Qwen3MoeForCausalLM" => Some(Self::Qwen3Moe),
            "Qwen2MoeForCausalLM" => Some(Self::Qwen2Moe),
            _ => None,
        }
    }

    /// The HF class name.
    pub fn hf_name(self) -> &'static str {
        match self {
            Self::Qwen3 => "Qwen3ForCausalLM",
            Self::Llama => "LlamaForCausalLM",
            Self::Qwen2 => "Qwen2ForCausalLM",
            Self::Qwen3Moe => "Qwen3MoeForCausalLM",
            Self::Qwen2Moe => "Qwen2MoeForCausalLM",
        }
    }

    /// Whether attention applies per-head RMSNorm to q and k (Qwen3 family).
    pub fn has_qk_norm(self) -> bool {
        matches!(self, Self::Qwen3 | Self::Qwen3Moe)
    }

    /// Whether the architecture routes its FFN through experts (see `model::moe`).
    pub fn is_moe(self) -> bool {
        matches!(self, Self::Qwen3Moe | Self::Qwen2Moe)
    }
}

/// RoPE frequency scaling (`rope_scaling` / `rope_parameters`).
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Plain RoPE.
    Default,
    /// Position interpolation: every frequency divided by `factor`.
    Linear { factor: f64 },
    /// Llama 3.1 smooth frequency-dependent scaling.
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: usize,
    },
}

/// The fields of config.json the engine uses. Field names follow HF.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    /// Per-head dimension; `hidden_size / num_attention_heads` when absent.
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: RopeScaling,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// Biases on q/k/v/o (Llama, Qwen3); Qwen2 always has q/k/v biases.
    pub attention_bias: bool,
    /// Biases on the MLP projections (Llama).
    pub mlp_bias: bool,
    /// `torch_dtype` / `dtype` as written (informational; tensors carry their own dtype).
    pub torch_dtype: Option<String>,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    /// MoE: number of routed experts (0 for dense models).
    pub num_experts: usize,
    /// MoE: experts chosen per token.
    pub num_experts_per_tok: usize,
    /// MoE: hidden size of one expert.
    pub moe_intermediate_size: usize,
    /// MoE: renormalise the top-k routing weights.
    pub norm_topk_prob: bool,
    /// MoE: every `decoder_sparse_step`-th layer is sparse.
    pub decoder_sparse_step: usize,
    /// MoE: layers that stay dense.
    pub mlp_only_layers: Vec<usize>,
    /// MoE: hidden size of the sigmoid-gated shared expert (Qwen2-MoE); 0 = none.
    pub shared_expert_intermediate_size: usize,
    /// Number of multi-token-prediction heads (`num_nextn_predict_layers` / `mtp_num_hidden_layers`).
    pub num_mtp_layers: usize,
    /// The raw JSON, for extensions (MoE/MTP fields not mirrored above).
    pub raw: Value,
}

/// Typed access to a JSON object whose errors name the file and the field.
struct Fields<'a> {
    path: &'a Path,
    obj: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn err(&self, field: &str, message: impl Into<String>) -> EngineError {
        EngineError::Config {
            path: self.path.to_path_buf(),
            field: field.to_string(),
            message: message.into(),
        }
    }

    fn get(&self, field: &str) -> Option<&'a Value> {
        self.obj.get(field).filter(|v| !v.is_null())
    }

    fn opt_usize(&self, field: &str) -> Result<Option<usize>> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
                self.err(field, format!("expected a non-negative integer, got {v}"))
            }),
        }
    }

    fn usize(&self, field: &str) -> Result<usize> {
        self.opt_usize(field)?
            .ok_or_else(|| self.err(field, "missing"))
    }

    fn positive(&self, field: &str) -> Result<usize> {
        let n = self.usize(field)?;
        if n == 0 {
            return Err(self.err(field, "must be positive"));
        }
        Ok(n)
    }

    fn opt_f64(&self, field: &str) -> Result<Option<f64>> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.err(field, format!("expected a number, got {v}"))),
        }
    }

    fn opt_bool(&self, field: &str) -> Result<Option<bool>> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.err(field, format!("expected a boolean, got {v}"))),
        }
    }

    fn opt_str(&self, field: &str) -> Result<Option<&'a str>> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.err(field, format!("expected a string, got {v}"))),
        }
    }

    /// A token id field that may be an integer or a list of integers.
    fn token_ids(&self, field: &str) -> Result<Vec<u32>> {
        let bad = || self.err(field, "expected a token id or a list of token ids");
        match self.get(field) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_u64().map(|n| n as u32).ok_or_else(bad))
                .collect(),
            Some(v) => v.as_u64().map(|n| vec![n as u32]).ok_or_else(bad),
        }
    }
}

impl ModelConfig {
    /// Read and parse `config.json` from a file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| EngineError::Format {
            path: path.to_path_buf(),
            message: format!("malformed JSON: {e}"),
        })?;
        Self::from_value(value, path)
    }

    /// Parse an already-decoded config.json value; `path` is used in error messages.
    pub fn from_value(value: Value, path: &Path) -> Result<Self> {
        let obj = value.as_object().ok_or_else(|| EngineError::Format {
            path: path.to_path_buf(),
            message: "config.json is not a JSON object".into(),
        })?;
        let f = Fields { path, obj };

        let arch_name = match f.get("architectures") {
            Some(Value::Array(a)) => a.first().and_then(Value::as_str).map(str::to_string),
            _ => None,
        }
        .ok_or_else(|| f.err("architectures", "missing or not a list of class names"))?;
        let architecture =
            Architecture::from_hf(&arch_name).ok_or_else(|| EngineError::Architecture {
                arch: arch_name.clone(),
                supported: Architecture::SUPPORTED.into(),
            })?;

        let hidden_size = f.positive("hidden_size")?;
        let num_attention_heads = f.positive("num_attention_heads")?;
        let num_key_value_heads = f
            .opt_usize("num_key_value_heads")?
            .unwrap_or(num_attention_heads);
        if num_key_value_heads == 0 || num_attention_heads % num_key_value_heads != 0 {
            return Err(f.err(
                "num_key_value_heads",
                format!("{num_key_value_heads} does not divide num_attention_heads {num_attention_heads}"),
            ));
        }
        let head_dim = match f.opt_usize("head_dim")? {
            Some(d) => d,
            None => {
                if hidden_size % num_attention_heads != 0 {
                    return Err(f.err(
                        "head_dim",
                        "missing and hidden_size is not divisible by num_attention_heads",
                    ));
                }
                hidden_size / num_attention_heads
            }
        };
        if head_dim == 0 || head_dim % 2 != 0 {
            return Err(f.err("head_dim", format!("{head_dim} must be positive and even")));
        }

        // 5.x nests rope settings in `rope_parameters`; 4.x has `rope_theta` + `rope_scaling`.
        let rope_params = match f.get("rope_parameters") {
            Some(Value::Object(m)) => Some(m),
            Some(_) => return Err(f.err("rope_parameters", "expected an object")),
            None => None,
        };
        let rope_theta = match f.opt_f64("rope_theta")? {
            Some(t) => t,
            None => match rope_params {
                Some(m) => Fields { path, obj: m }
                    .opt_f64("rope_theta")
                    .map_err(|_| f.err("rope_parameters.rope_theta", "expected a number"))?
                    .unwrap_or(10_000.0),
                None => 10_000.0,
            },
        };
        let scaling_obj = match f.get("rope_scaling") {
            Some(Value::Object(m)) => Some(("rope_scaling", m)),
            Some(_) => return Err(f.err("rope_scaling", "expected an object or null")),
            None => rope_params.map(|m| ("rope_parameters", m)),
        };
        let rope_scaling = match scaling_obj {
            None => RopeScaling::Default,
            Some((name, m)) => parse_rope_scaling(path, name, m)?,
        };

        let mut eos_token_ids = f.token_ids("eos_token_id")?;
        eos_token_ids.dedup();
        let bos_token_id = f.token_ids("bos_token_id")?.first().copied();

        let num_experts = f
            .opt_usize("num_experts")?
            .or(f.opt_usize("num_local_experts")?)
            .unwrap_or(0);
        let mlp_only_layers = match f.get("mlp_only_layers") {
            None => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_u64().map(|n| n as usize))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| f.err("mlp_only_layers", "expected a list of layer indices"))?,
            Some(_) => return Err(f.err("mlp_only_layers", "expected a list of layer indices")),
        };
        let num_mtp_layers = f
            .opt_usize("num_nextn_predict_layers")?
            .or(f.opt_usize("mtp_num_hidden_layers")?)
            .unwrap_or(0);

        let config = ModelConfig {
            architecture,
            model_type: f.opt_str("model_type")?.unwrap_or_default().to_string(),
            vocab_size: f.positive("vocab_size")?,
            hidden_size,
            intermediate_size: f.opt_usize("intermediate_size")?.unwrap_or(0),
            num_hidden_layers: f.positive("num_hidden_layers")?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: f.opt_f64("rms_norm_eps")?.unwrap_or(1e-6),
            rope_theta,
            rope_scaling,
            max_position_embeddings: f.opt_usize("max_position_embeddings")?.unwrap_or(4096),
            tie_word_embeddings: f.opt_bool("tie_word_embeddings")?.unwrap_or(false),
            attention_bias: f
                .opt_bool("attention_bias")?
                .unwrap_or(architecture == Architecture::Qwen2),
            mlp_bias: f.opt_bool("mlp_bias")?.unwrap_or(false),
            torch_dtype: f
                .opt_str("torch_dtype")?
                .or(f.opt_str("dtype")?)
                .map(str::to_string),
            bos_token_id,
            eos_token_ids,
            num_experts,
            num_experts_per_tok: f.opt_usize("num_experts_per_tok")?.unwrap_or(0),
            moe_intermediate_size: f.opt_usize("moe_intermediate_size")?.unwrap_or(0),
            norm_topk_prob: f.opt_bool("norm_topk_prob")?.unwrap_or(false),
            decoder_sparse_step: f.opt_usize("decoder_sparse_step")?.unwrap_or(1),
            mlp_only_layers,
            shared_expert_intermediate_size: f
                .opt_usize("shared_expert_intermediate_size")?
                .unwrap_or(0),
            num_mtp_layers,
            raw: value.clone(),
        };
        if !config.architecture.is_moe() && config.intermediate_size == 0 {
            return Err(f.err("intermediate_size", "missing"));
        }
        if config.architecture.is_moe() {
            let (n, k) = (config.num_experts, config.num_experts_per_tok);
            if n == 0 {
                return Err(f.err(
                    "num_experts",
                    "missing or zero (also read as num_local_experts)",
                ));
            }
            if k == 0 || k > n {
                return Err(f.err("num_experts_per_tok", format!("{k} must be in 1..={n}")));
            }
            if config.moe_intermediate_size == 0 {
                return Err(f.err("moe_intermediate_size", "missing or zero"));
            }
            if config.decoder_sparse_step == 0 {
                return Err(f.err("decoder_sparse_step", "must be positive"));
            }
        }
        Ok(config)
    }

    /// Query heads per KV head (grouped-query attention).
    pub fn gqa_groups(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }

    /// Whether q/k/v projections carry biases.
    pub fn qkv_bias(&self) -> bool {
        match self.architecture {
            Architecture::Qwen2 => true,
            // Qwen2-MoE: always in 4.x; 5.x spells it `qkv_bias` (default true).
            Architecture::Qwen2Moe => self
                .raw
                .get("qkv_bias")
                .and_then(Value::as_bool)
                .unwrap_or(true),
            _ => self.attention_bias,
        }
    }

    /// Whether o_proj carries a bias (never for Qwen2 / Qwen2-MoE).
    pub fn o_bias(&self) -> bool {
        !matches!(
            self.architecture,
            Architecture::Qwen2 | Architecture::Qwen2Moe
        ) && self.attention_bias
    }

    /// Every tensor a checkpoint of this config holds for the embedding, the decoder stack and the
    /// LM head (an MTP module aside), under its Hugging Face name, with its shape: dense layers'
    /// MLPs, or a sparse layer's router, `num_experts` experts and optional gated shared expert
    /// (`model::moe`). Random weights are generated for exactly these (`crate::random`).
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        let (h, v, d) = (self.hidden_size, self.vocab_size, self.head_dim);
        let (q, kv, ff) = (
            self.num_attention_heads * d,
            self.num_key_value_heads * d,
            self.intermediate_size,
        );
        let mut shapes = vec![
            ("model.embed_tokens.weight".to_string(), vec![v, h]),
            ("model.norm.weight".to_string(), vec![h]),
        ];
        if !self.tie_word_embeddings {
            shapes.push(("lm_head.weight".into(), vec![v, h]));
        }
        for i in 0..self.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let mut add = |n: &str, s: Vec<usize>| shapes.push((format!("{p}.{n}"), s));
            add("input_layernorm.weight", vec![h]);
            add("post_attention_layernorm.weight", vec![h]);
            add("self_attn.q_proj.weight", vec![q, h]);
            add("self_attn.k_proj.weight", vec![kv, h]);
            add("self_attn.v_proj.weight", vec![kv, h]);
            add("self_attn.o_proj.weight", vec![h, q]);
            if self.qkv_bias() {
                add("self_attn.q_proj.bias", vec![q]);
                add("self_attn.k_proj.bias", vec![kv]);
                add("self_attn.v_proj.bias", vec![kv]);
            }
            if self.o_bias() {
                add("self_attn.o_proj.bias", vec![h]);
            }
            if self.architecture.has_qk_norm() {
                add("self_attn.q_norm.weight", vec![d]);
                add("self_attn.k_norm.weight", vec![d]);
            }
            if self.architecture.is_moe() && crate::model::moe::is_sparse_layer(self, i) {
                let (n, m, sh) = (
                    self.num_experts,
                    self.moe_intermediate_size,
                    self.shared_expert_intermediate_size,
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
            if self.mlp_bias {
                add("mlp.gate_proj.bias", vec![ff]);
                add("mlp.up_proj.bias", vec![ff]);
                add("mlp.down_proj.bias", vec![h]);
            }
        }
        shapes
    }

    /// Parameters of [`ModelConfig::tensor_shapes`]: every expert of a mixture counted, tied
    /// embeddings once (llama-bench's `n_params`).
    pub fn num_parameters(&self) -> usize {
        self.tensor_shapes()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }

    /// Parameters one token runs through: [`ModelConfig::num_parameters`] less the routed experts
    /// a sparse layer does not choose (`num_experts − num_experts_per_tok` of them); equal to it
    /// for a dense model. The "A3B" of Qwen3-30B-A3B.
    pub fn num_active_parameters(&self) -> usize {
        let sparse = (0..self.num_hidden_layers)
            .filter(|&i| self.architecture.is_moe() && crate::model::moe::is_sparse_layer(self, i))
            .count();
        let unchosen = self.num_experts.saturating_sub(self.num_experts_per_tok);
        let expert = 3 * self.hidden_size * self.moe_intermediate_size;
        self.num_parameters() - sparse * unchosen * expert
    }
}

fn parse_rope_scaling(path: &Path, name: &str, m: &Map<String, Value>) -> Result<RopeScaling> {
    let f = Fields { path, obj: m };
    let field = |sub: &str| format!("{name}.{sub}");
    let wrap = |sub: &str, e: EngineError| match e {
        EngineError::Config { message, .. } => EngineError::Config {
            path: PathBuf::from(path),
            field: field(sub),
            message,
        },
        other => other,
    };
    let kind = match f.opt_str("rope_type").map_err(|e| wrap("rope_type", e))? {
        Some(k) => k,
        None => f
            .opt_str("type")
            .map_err(|e| wrap("type", e))?
            .unwrap_or("default"),
    };
    let num = |sub: &str| -> Result<f64> {
        f.opt_f64(sub)
            .map_err(|e| wrap(sub, e))?
            .ok_or_else(|| EngineError::Config {
                path: PathBuf::from(path),
                field: field(sub),
                message: "missing".into(),
            })
    };
    match kind {
        "default" => Ok(RopeScaling::Default),
        "linear" => Ok(RopeScaling::Linear {
            factor: num("factor")?,
        }),
        "llama3" => Ok(RopeScaling::Llama3 {
            factor: num("factor")?,
            low_freq_factor: num("low_freq_factor")?,
            high_freq_factor: num("high_freq_factor")?,
            original_max_position_embeddings: num("original_max_position_embeddings")? as usize,
        }),
        other => Err(EngineError::Config {
            path: PathBuf::from(path),
            field: field("rope_type"),
            message: format!(
                "unsupported rope type `{other}` (supported: default, linear, llama3)"
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The tensors a config names are exactly those of the checkpoints transformers wrote for
    /// it (dense, Qwen2 with biases, Llama, Qwen3-MoE and Qwen2-MoE with a shared expert), so
    /// the parameter counts are the checkpoints' own.
    #[test]
    fn tensor_shapes_are_the_checkpoints_tensors() {
        use crate::weights::WeightSource;
        let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
        for name in [
            "qwen3-tiny",
            "qwen2-tiny",
            "llama-tiny",
            "qwen3moe-tiny",
            "qwen3moe-4e",
            "qwen2moe-tiny",
        ] {
            let dir = root.join(name);
            let config = ModelConfig::from_file(&dir.join("config.json")).unwrap();
            let source = crate::safetensors::SafetensorsSource::open_dir(&dir).unwrap();
            let mut stored: Vec<(String, Vec<usize>)> = source
                .names()
                .into_iter()
                .map(|n| {
                    let shape = source.load(&n).unwrap().shape;
                    (n, shape)
                })
                // a tied checkpoint may carry its head anyway; the model then uses it
                .filter(|(n, _)| !(config.tie_word_embeddings && n == "lm_head.weight"))
                .collect();
            let mut named = config.tensor_shapes();
            stored.sort();
            named.sort();
            assert_eq!(named, stored, "{name}");
            let total: usize = stored
                .iter()
                .map(|(_, s)| s.iter().product::<usize>())
                .sum();
            assert_eq!(config.num_parameters(), total, "{name}");
            if config.num_experts == 0 {
                assert_eq!(config.num_active_parameters(), total, "{name}");
            } else {
                assert!(config.num_active_parameters() < total, "{name}");
            }
        }
    }

    fn parse(v: Value) -> Result<ModelConfig> {
        ModelConfig::from_value(v, Path::new("config.json"))
    }

    fn base() -> Value {
        json!({"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
               "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
               "vocab_size": 320, "rms_norm_eps": 1e-5, "eos_token_id": [1, 2], "extra": "ok"})
    }

    #[test]
    fn reads_4x_spelling_with_llama3_scaling() {
        let mut v = base();
        v["rope_theta"] = json!(500000.0);
        v["torch_dtype"] = json!("bfloat16");
        v["rope_scaling"] = json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 8192});
        let c = parse(v).unwrap();
        assert_eq!(c.head_dim, 16);
        assert_eq!(c.rope_theta, 500000.0);
        assert_eq!(c.torch_dtype.as_deref(), Some("bfloat16"));
        assert_eq!(c.eos_token_ids, vec![1, 2]);
        assert!(matches!(
            c.rope_scaling,
            RopeScaling::Llama3 {
                original_max_position_embeddings: 8192,
                ..
            }
        ));
    }

    #[test]
    fn reads_5x_spelling() {
        let mut v = base();
        v["dtype"] = json!("float32");
        v["head_dim"] = json!(32);
        v["rope_parameters"] = json!({"rope_theta": 1e6, "rope_type": "default"});
        let c = parse(v).unwrap();
        assert_eq!(c.rope_theta, 1e6);
        assert_eq!(c.head_dim, 32);
        assert_eq!(c.rope_scaling, RopeScaling::Default);
    }

    #[test]
    fn errors_name_the_field() {
        let mut v = base();
        v["hidden_size"] = json!("big");
        let e = parse(v).unwrap_err().to_string();
        assert!(e.contains("hidden_size"), "{e}");
        let mut v = base();
        v["architectures"] = json!(["GPT2LMHeadModel"]);
        let e = parse(v).unwrap_err().to_string();
        assert!(e.contains("GPT2LMHeadModel"), "{e}");
        let mut v = base();
        v["rope_scaling"] = json!({"rope_type": "yarn", "factor": 4.0});
        let e = parse(v).unwrap_err().to_string();
        assert!(e.contains("rope_scaling.rope_type"), "{e}");
        let mut v = base();
        v["num_key_value_heads"] = json!(3);
        assert!(parse(v).is_err());
    }
}
