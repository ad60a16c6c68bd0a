//! The multi-token-prediction (MTP) head of DeepSeek-V3 (arXiv 2412.19437 §2.2) as Qwen3-Next,
//! Qwen3.5 and Qwen3.6 ship it (shared/reference/speculation.md §3).
//!
//! At MTP position p the head combines the main model's final hidden state `h_p` (after the final
//! norm: what the LM head reads) with the embedding of the next token `t_{p+1}`:
//!
//! ```text
//! x_p   = fc([pre_fc_norm_embedding(embed(t_{p+1})) ; pre_fc_norm_hidden(h_p)])   (2d → d)
//! y_p   = decoder_layer(x_0..x_p)       one full-attention layer with its own KV cache
//! o_p   = norm(y_p)                     returned as the head's output hidden state
//! logit = lm_head(o_p)                  the shared LM head: a prediction of t_{p+2}
//! ```
//!
//! The embedding part comes first in the concatenation (the order of the weights). Drafting more
//! than one token chains the head recurrently: step i+1 feeds the token drafted at step i together
//! with `o` of step i, as llama.cpp's `draft-mtp` and vLLM do with one-layer heads.
//!
//! Two weight namings are read: Qwen3.5 `mtp.{fc, pre_fc_norm_embedding, pre_fc_norm_hidden,
//! layers.0.*, norm}` (config `mtp_num_hidden_layers`) and DeepSeek-V3 `model.layers.{L}.{eh_proj,
//! enorm, hnorm, shared_head.norm}` plus the layer's usual sub-modules, `L = num_hidden_layers`
//! (config `num_nextn_predict_layers`). A checkpoint with neither has no MTP head; one with some
//! but not all of a naming's tensors is an error naming the first missing tensor. Only the first
//! MTP layer is loaded (every released checkpoint has one).

use burn::tensor::{Tensor, backend::Backend};

use crate::config::ModelConfig;
use crate::error::{EngineError, Result};
use crate::kv_cache::LayerCache;
use crate::model::transformer::DecoderLayer;
use crate::model::{Linear, Loader, Model, RmsNorm};

/// Which tensor naming a checkpoint's MTP head uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtpNaming {
    /// Qwen3-Next / Qwen3.5 / Qwen3.6: `mtp.*`.
    Qwen35,
    /// DeepSeek-V3: `model.layers.{num_hidden_layers}.*`.
    DeepSeek,
}

/// Tensor names of one MTP head under a naming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MtpNames {
    pub fc: String,
    pub norm_embedding: String,
    pub norm_hidden: String,
    /// Prefix of the decoder layer's sub-modules (`{layer}.self_attn.q_proj.weight`, ...).
    pub layer: String,
    pub norm: String,
}

impl MtpNaming {
    /// The tensor names for a model with `num_hidden_layers` main layers.
    pub fn names(self, num_hidden_layers: usize) -> MtpNames {
        match self {
            Self::Qwen35 => MtpNames {
                fc: "mtp.fc".into(),
                norm_embedding: "mtp.pre_fc_norm_embedding.weight".into(),
                norm_hidden: "mtp.pre_fc_norm_hidden.weight".into(),
                layer: "mtp.layers.0".into(),
                norm: "mtp.norm.weight".into(),
            },
            Self::DeepSeek => {
                let p = format!("model.layers.{num_hidden_layers}");
                MtpNames {
                    fc: format!("{p}.eh_proj"),
                    norm_embedding: format!("{p}.enorm.weight"),
                    norm_hidden: format!("{p}.hnorm.weight"),
                    layer: p.clone(),
                    norm: format!("{p}.shared_head.norm.weight"),
                }
            }
        }
    }

    /// Detect the naming from the checkpoint's tensor names; `None` when there is no MTP head.
    pub fn detect(names: &[String], num_hidden_layers: usize) -> Option<Self> {
        let deepseek = format!("model.layers.{num_hidden_layers}.");
        if names.iter().any(|n| n.starts_with("mtp.")) {
            Some(Self::Qwen35)
        } else if names.iter().any(|n| n.starts_with(&deepseek)) {
            Some(Self::DeepSeek)
        } else {
            None
        }
    }
}

/// One MTP module: two input norms, the 2d→d projection, a decoder layer and the output norm. The
/// embedding table and LM head are the main model's.
#[derive(Debug, Clone)]
pub struct MtpModule<B: Backend> {
    pub pre_fc_norm_embedding: RmsNorm<B>,
    pub pre_fc_norm_hidden: RmsNorm<B>,
    /// `2·hidden → hidden`
    pub fc: Linear<B>,
    pub layer: DecoderLayer<B>,
    pub norm: RmsNorm<B>,
    pub naming: MtpNaming,
}

impl<B: Backend> MtpModule<B> {
    /// Load the head if the checkpoint has one. The layer is a sparse MoE layer when its
    /// `mlp.gate.weight` router exists, dense otherwise.
    pub fn load(loader: &Loader<'_, B>, config: &ModelConfig) -> Result<Option<Self>> {
        let all = loader.source.names();
        let Some(naming) = MtpNaming::detect(&all, config.num_hidden_layers) else {
            return Ok(None);
        };
        let names = naming.names(config.num_hidden_layers);
        let (h, eps) = (config.hidden_size, config.rms_norm_eps);
        let sparse = loader
            .source
            .contains(&format!("{}.mlp.gate.weight", names.layer));
        Ok(Some(Self {
            pre_fc_norm_embedding: RmsNorm::load(loader, &names.norm_embedding, h, eps)?,
            pre_fc_norm_hidden: RmsNorm::load(loader, &names.norm_hidden, h, eps)?,
            fc: loader.linear(&names.fc, 2 * h, h, false)?,
            layer: DecoderLayer::load(loader, &names.layer, config, sparse)?,
            norm: RmsNorm::load(loader, &names.norm, h, eps)?,
            naming,
        }))
    }

    /// Run the head over `k` pairs `(tokens[i], hidden row i)` at MTP positions `start..start+k`,
    /// appending to `cache`; returns the output hidden states after `mtp.norm` (feed them to
    /// [`Model::logits`] for the next-next-token logits, or back into the head to chain). MoE
    /// layers push their experts-touched count onto `experts_touched`. The caller checks ids,
    /// shapes and cache capacity.
    ///
    /// # Shapes
    /// - `hidden`: `[k, hidden]` (main model, after its final norm) → `[k, hidden]`
    pub fn forward(
        &self,
        model: &Model<B>,
        tokens: &[u32],
        hidden: Tensor<B, 2>,
        cache: &mut LayerCache<B>,
        start: usize,
        experts_touched: &mut Vec<u32>,
    ) -> Tensor<B, 2> {
        let k = tokens.len();
        // 1. [k, d] each: normalised embedding of t_{p+1} and normalised h_p
        let e = self.pre_fc_norm_embedding.forward(model.embed(tokens));
        let h = self.pre_fc_norm_hidden.forward(hidden);
        // 2. [k, 2d] → [k, d], embedding part first
        let x = self.fc.forward(Tensor::cat(vec![e, h], 1));
        // 3. the decoder layer over MTP positions start..start+k, causally
        let inputs = model.attention_inputs(start, k);
        let y = self.layer.forward(x, cache, &inputs, experts_touched);
        // 4. [k, d]
        self.norm.forward(y)
    }

    /// Weight bytes held (the LM head, shared with the model, is counted by the caller).
    pub fn weight_bytes(&self) -> usize {
        self.fc.weight_bytes() + self.layer.self_attn.weight_bytes() + self.layer.ffn.weight_bytes()
    }

    /// Weight bytes read per draft step (the LM head is counted by the caller).
    pub fn weight_bytes_per_token(&self) -> usize {
        self.fc.weight_bytes()
            + self.layer.self_attn.weight_bytes()
            + self.layer.ffn.weight_bytes_per_token()
    }
}

/// Check a hidden-row buffer against `k` rows of width `hidden`.
pub fn check_hidden_rows(hidden: &[f32], k: usize, width: usize) -> Result<()> {
    if hidden.len() != k * width {
        return Err(EngineError::Shape {
            tensor: "mtp input hidden rows".into(),
            expected: vec![k, width],
            got: vec![hidden.len()],
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn detects_both_namings_and_their_absence() {
        let q = names(&["model.layers.1.mlp.up_proj.weight", "mtp.fc.weight"]);
        assert_eq!(MtpNaming::detect(&q, 2), Some(MtpNaming::Qwen35));
        let d = names(&[
            "model.layers.1.mlp.up_proj.weight",
            "model.layers.2.eh_proj.weight",
        ]);
        assert_eq!(MtpNaming::detect(&d, 2), Some(MtpNaming::DeepSeek));
        // layer 2 of a 3-layer model is a main layer, not an MTP head
        assert_eq!(MtpNaming::detect(&d, 3), None);
        assert_eq!(MtpNaming::detect(&names(&["model.norm.weight"]), 2), None);
    }

    #[test]
    fn names_follow_each_convention() {
        let q = MtpNaming::Qwen35.names(2);
        assert_eq!(q.fc, "mtp.fc");
        assert_eq!(q.layer, "mtp.layers.0");
        let d = MtpNaming::DeepSeek.names(61);
        assert_eq!(d.fc, "model.layers.61.eh_proj");
        assert_eq!(d.norm_embedding, "model.layers.61.enorm.weight");
        assert_eq!(d.norm_hidden, "model.layers.61.hnorm.weight");
        assert_eq!(d.norm, "model.layers.61.shared_head.norm.weight");
        assert_eq!(d.layer, "model.layers.61");
    }

    #[test]
    fn hidden_rows_must_match() {
        assert!(check_hidden_rows(&[0.0; 8], 2, 4).is_ok());
        let e = check_hidden_rows(&[0.0; 7], 2, 4).unwrap_err().to_string();
        assert!(e.contains("mtp input hidden rows"), "{e}");
    }
}
