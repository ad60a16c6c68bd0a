//! Tensor names: llama.cpp's GGUF names → Hugging Face names, and the Q/K row order.
//!
//! The mapping follows llama.cpp's `gguf-py/gguf/tensor_mapping.py` read backwards
//! (`blk.N.attn_q` ← `model.layers.N.self_attn.q_proj`, ...). Stacked expert tensors
//! (`blk.N.ffn_{gate,up,down}_exps`, PyTorch shape `[n_expert, rows, cols]`) become one HF tensor
//! per expert. Multi-token-prediction blocks (`blk.L.nextn.*`, L ≥ the main layer count) map to
//! the Qwen3.5 `mtp.*` names. llama.cpp's converter permutes the rows of `attn_q`/`attn_k` of
//! llama-architecture models from HF's rotate-half RoPE layout to interleaved pairs;
//! [`unpermute_rows`] undoes it.

/// What one GGUF tensor becomes in HF naming.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HfName {
    /// One HF tensor.
    Plain(String),
    /// A stacked `[n_expert, rows, cols]` tensor: expert `E` is
    /// `model.layers.{layer}.mlp.experts.{E}.{proj}.weight`.
    Experts { layer: usize, proj: &'static str },
}

/// Per-layer GGUF suffix → HF suffix (after `model.layers.N.`).
const LAYER_NAMES: &[(&str, &str)] = &[
    ("attn_norm", "input_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("attn_q_norm", "self_attn.q_norm"),
    ("attn_k_norm", "self_attn.k_norm"),
    ("ffn_norm", "post_attention_layernorm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
    ("ffn_gate_inp", "mlp.gate"),
    ("ffn_gate_inp_shexp", "mlp.shared_expert_gate"),
    ("ffn_gate_shexp", "mlp.shared_expert.gate_proj"),
    ("ffn_up_shexp", "mlp.shared_expert.up_proj"),
    ("ffn_down_shexp", "mlp.shared_expert.down_proj"),
];

/// GGUF `blk.L.nextn.X` → Qwen3.5 `mtp.Y` (the shared head and embedding are the main model's).
const NEXTN_NAMES: &[(&str, &str)] = &[
    ("eh_proj", "mtp.fc"),
    ("enorm", "mtp.pre_fc_norm_embedding"),
    ("hnorm", "mtp.pre_fc_norm_hidden"),
    ("shared_head_norm", "mtp.norm"),
];

/// Map a GGUF tensor name to its HF name(s). `n_main_layers` is the number of ordinary decoder
/// layers (blocks at or past it are MTP blocks). `None` means the tensor has no HF counterpart
/// (`rope_freqs`, an MTP block's copy of the embedding or head) and is not exposed.
pub fn hf_name(gguf: &str, n_main_layers: usize) -> Option<HfName> {
    let (stem, kind) = gguf.rsplit_once('.')?;
    if kind != "weight" && kind != "bias" {
        return None;
    }
    let plain = |s: &str| Some(HfName::Plain(format!("{s}.{kind}")));
    match stem {
        "token_embd" => return plain("model.embed_tokens"),
        "output_norm" => return plain("model.norm"),
        "output" => return plain("lm_head"),
        _ => {}
    }
    let rest = stem.strip_prefix("blk.")?;
    let (layer, suffix) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    if layer >= n_main_layers {
        let mtp_index = layer - n_main_layers;
        if let Some(nextn) = suffix.strip_prefix("nextn.") {
            let (_, hf) = NEXTN_NAMES.iter().find(|(g, _)| *g == nextn)?;
            // Qwen3.5 has one fc/norm pair; further MTP blocks keep an index.
            return if mtp_index == 0 {
                plain(hf)
            } else {
                plain(&format!("{hf}.{mtp_index}"))
            };
        }
        let (_, hf) = LAYER_NAMES.iter().find(|(g, _)| *g == suffix)?;
        return plain(&format!("mtp.layers.{mtp_index}.{hf}"));
    }
    for (g, proj) in [
        ("ffn_gate_exps", "gate_proj"),
        ("ffn_up_exps", "up_proj"),
        ("ffn_down_exps", "down_proj"),
    ] {
        if suffix == g && kind == "weight" {
            return Some(HfName::Experts { layer, proj });
        }
    }
    let (_, hf) = LAYER_NAMES.iter().find(|(g, _)| *g == suffix)?;
    plain(&format!("model.layers.{layer}.{hf}"))
}

/// HF name of expert `expert` of a stacked tensor.
pub fn expert_name(layer: usize, expert: usize, proj: &str) -> String {
    format!("model.layers.{layer}.mlp.experts.{expert}.{proj}.weight")
}

/// Whether an HF name is a q or k projection (weight or bias) whose rows llama.cpp permuted,
/// returning the number of heads it spans (`n_head` for q, `n_head_kv` for k).
pub fn permuted_heads(hf: &str, n_head: usize, n_head_kv: usize) -> Option<usize> {
    let is = |p: &str| hf.ends_with(&format!("{p}.weight")) || hf.ends_with(&format!("{p}.bias"));
    if is("self_attn.q_proj") {
        Some(n_head)
    } else if is("self_attn.k_proj") {
        Some(n_head_kv)
    } else {
        None
    }
}

/// Undo llama.cpp's `permute(w, n_head)`: the converter reshaped the rows as
/// `[n_head, 2, head_dim/2]` and swapped the last two axes, so GGUF row `h*hd + 2*j + i` holds HF
/// row `h*hd + i*hd/2 + j`. `data` is row-major `[rows, cols]`.
pub fn unpermute_rows(data: &[f32], rows: usize, cols: usize, n_head: usize) -> Option<Vec<f32>> {
    if n_head == 0
        || !rows.is_multiple_of(n_head)
        || !(rows / n_head).is_multiple_of(2)
        || data.len() != rows * cols
    {
        return None;
    }
    let hd = rows / n_head;
    let half = hd / 2;
    let mut out = vec![0f32; data.len()];
    for h in 0..n_head {
        for i in 0..2 {
            for j in 0..half {
                let hf_row = h * hd + i * half + j;
                let gguf_row = h * hd + 2 * j + i;
                out[hf_row * cols..(hf_row + 1) * cols]
                    .copy_from_slice(&data[gguf_row * cols..(gguf_row + 1) * cols]);
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(gguf: &str, expected: Option<&str>) {
        let got = hf_name(gguf, 2);
        let want = expected.map(|s| HfName::Plain(s.to_string()));
        assert_eq!(got, want, "{gguf}");
    }

    #[test]
    fn maps_dense_names() {
        check("token_embd.weight", Some("model.embed_tokens.weight"));
        check("output.weight", Some("lm_head.weight"));
        check("output_norm.weight", Some("model.norm.weight"));
        check(
            "blk.1.attn_q.bias",
            Some("model.layers.1.self_attn.q_proj.bias"),
        );
        check(
            "blk.0.attn_output.weight",
            Some("model.layers.0.self_attn.o_proj.weight"),
        );
        check(
            "blk.0.attn_k_norm.weight",
            Some("model.layers.0.self_attn.k_norm.weight"),
        );
        check(
            "blk.1.ffn_norm.weight",
            Some("model.layers.1.post_attention_layernorm.weight"),
        );
        check(
            "blk.1.ffn_gate_inp.weight",
            Some("model.layers.1.mlp.gate.weight"),
        );
        check("rope_freqs.weight", None);
        check("blk.0.unknown.weight", None);
    }

    #[test]
    fn maps_experts_and_mtp() {
        assert_eq!(
            hf_name("blk.1.ffn_down_exps.weight", 2),
            Some(HfName::Experts {
                layer: 1,
                proj: "down_proj"
            })
        );
        assert_eq!(
            expert_name(1, 3, "up_proj"),
            "model.layers.1.mlp.experts.3.up_proj.weight"
        );
        check("blk.2.nextn.eh_proj.weight", Some("mtp.fc.weight"));
        check(
            "blk.2.nextn.hnorm.weight",
            Some("mtp.pre_fc_norm_hidden.weight"),
        );
        check(
            "blk.2.attn_q.weight",
            Some("mtp.layers.0.self_attn.q_proj.weight"),
        );
        check("blk.2.nextn.shared_head_head.weight", None);
    }

    #[test]
    fn unpermute_inverts_the_converter() {
        // The converter's permute for 2 heads of head_dim 4, 1 column: HF rows [0..8).
        // permute: reshape [n_head, 2, hd/2] then swap → per head rows (0,2,1,3).
        let hf: Vec<f32> = (0..8).map(|v| v as f32).collect();
        let gguf = vec![0., 2., 1., 3., 4., 6., 5., 7.];
        assert_eq!(unpermute_rows(&gguf, 8, 1, 2).unwrap(), hf);
        assert_eq!(
            permuted_heads("model.layers.0.self_attn.k_proj.weight", 4, 2),
            Some(2)
        );
        assert_eq!(
            permuted_heads("model.layers.0.self_attn.v_proj.weight", 4, 2),
            None
        );
        assert!(unpermute_rows(&gguf, 8, 1, 3).is_none());
    }
}
