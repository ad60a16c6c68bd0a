//! The sparse mixture-of-experts FFN on the CPU host path (`model::host`): the steps and order of
//! [`SparseMoe::forward`] — router logits, softmax and top-k ([`route`]), each chosen expert's
//! SwiGLU on exactly the rows routed to it ([`dispatch`]), the weighted results added in
//! increasing expert order, the shared expert under its sigmoid gate, the residual — on host rows
//! through the quantized kernels. The backend path spends some thirty backend ops, gathers and
//! scatters per MoE layer around the same kernel calls; on two cores that was more than half of
//! a small MoE model's decode step.

use burn::tensor::backend::Backend;

use crate::model::moe::{SparseMoe, dispatch, route};
use crate::model::{Linear, Mlp, RmsNorm};
use crate::quant::{MatmulScratch, QuantLinear, SwiGluBuffers, matmul, swiglu_block};

/// Reusable rows of the MoE sub-block (grown to the largest batch, never shrunk).
#[derive(Debug, Default)]
pub struct MoeBuffers {
    normed: Vec<f32>,
    logits: Vec<f32>,
    rows_in: Vec<f32>,
    rows_out: Vec<f32>,
    sum: Vec<f32>,
    gate: Vec<f32>,
}

/// The kernels' weights of a projection without a bias, if it has them.
fn kernels<B: Backend>(l: &Linear<B>) -> Option<&QuantLinear> {
    l.quant.as_deref().filter(|_| l.bias.is_none())
}

/// The kernels' gate, up and down projections of an expert MLP.
fn mlp_kernels<B: Backend>(m: &Mlp<B>) -> Option<(&QuantLinear, &QuantLinear, &QuantLinear)> {
    Some((
        kernels(&m.gate_proj)?,
        kernels(&m.up_proj)?,
        kernels(&m.down_proj)?,
    ))
}

/// Whether every projection of `moe` (router, experts, shared expert and its gate) is on the
/// quantized kernels without a bias.
pub fn ready<B: Backend>(moe: &SparseMoe<B>) -> bool {
    kernels(&moe.router).is_some()
        && moe.experts.iter().all(|e| mlp_kernels(e).is_some())
        && moe
            .shared
            .as_ref()
            .is_none_or(|s| mlp_kernels(&s.mlp).is_some() && kernels(&s.gate).is_some())
}

/// `out = x + moe(norm(x))` on `k` host rows; returns the number of distinct experts run.
///
/// # Panics
/// If [`ready`] does not hold (the caller checks it) or a kernel rejects its operands (shapes are
/// checked at load).
#[allow(clippy::too_many_arguments)]
pub fn sparse_block<B: Backend>(
    moe: &SparseMoe<B>,
    norm: &RmsNorm<B>,
    x: &[f32],
    k: usize,
    out: &mut [f32],
    b: &mut MoeBuffers,
    mlp: &mut SwiGluBuffers,
    scratch: &mut MatmulScratch,
) -> u32 {
    let h = x.len() / k.max(1);
    let n_experts = moe.n_experts();
    let router = kernels(&moe.router).expect("host_moe::ready checked the router");
    b.normed.resize(x.len(), 0.0);
    norm.apply_host(x, &mut b.normed);
    // 1. router logits [k, n_experts]; 2–4. softmax, top-k, renormalisation
    b.logits.resize(k * n_experts, 0.0);
    if let Err(e) = matmul(&b.normed, k, router.matrix(), &mut b.logits, scratch) {
        panic!("MoE router: {e}");
    }
    let routes = route(&b.logits, n_experts, moe.top_k, moe.norm_topk_prob);
    // 5. the chosen experts on their rows, added in increasing expert order
    b.sum.clear();
    b.sum.resize(x.len(), 0.0);
    let mut touched = 0u32;
    for (expert, batch) in moe.experts.iter().zip(dispatch(&routes, n_experts)) {
        let m = batch.rows.len();
        if m == 0 {
            continue;
        }
        touched += 1;
        let (g, u, d) = mlp_kernels(expert).expect("host_moe::ready checked the experts");
        b.rows_in.clear();
        for &r in &batch.rows {
            b.rows_in.extend_from_slice(&b.normed[r * h..(r + 1) * h]);
        }
        b.rows_out.resize(m * h, 0.0);
        swiglu_block(&b.rows_in, m, None, g, u, d, &mut b.rows_out, mlp);
        for ((&r, &w), y) in batch
            .rows
            .iter()
            .zip(&batch.weights)
            .zip(b.rows_out.chunks_exact(h))
        {
            for (s, &v) in b.sum[r * h..(r + 1) * h].iter_mut().zip(y) {
                *s += v * w;
            }
        }
    }
    // 6. the shared expert scaled by sigmoid(shared_expert_gate(x)), one gate per row
    if let Some(shared) = &moe.shared {
        let (g, u, d) =
            mlp_kernels(&shared.mlp).expect("host_moe::ready checked the shared expert");
        let gate = kernels(&shared.gate).expect("host_moe::ready checked the shared gate");
        b.gate.resize(k, 0.0);
        if let Err(e) = matmul(&b.normed, k, gate.matrix(), &mut b.gate, scratch) {
            panic!("MoE shared expert gate: {e}");
        }
        b.rows_out.resize(x.len(), 0.0);
        swiglu_block(&b.normed, k, None, g, u, d, &mut b.rows_out, mlp);
        for ((s, y), &gl) in b
            .sum
            .chunks_exact_mut(h)
            .zip(b.rows_out.chunks_exact(h))
            .zip(&b.gate)
        {
            let sig = 1.0 / (1.0 + (-gl).exp());
            for (s, &v) in s.iter_mut().zip(y) {
                *s += v * sig;
            }
        }
    }
    for ((o, &xi), &s) in out.iter_mut().zip(x).zip(&b.sum) {
        *o = xi + s;
    }
    touched
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use burn::backend::Flex;
    use burn::tensor::DType;

    use crate::config::ModelConfig;
    use crate::kv_cache::KvType;
    use crate::model::Model;
    use crate::model::mlp::Ffn;
    use crate::quant::{QuantFormat, WeightQuant};
    use crate::safetensors::SafetensorsSource;

    fn load(name: &str, host: bool) -> Model<Flex> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures")
            .join(name);
        let config = ModelConfig::from_file(&dir.join("config.json")).expect("config");
        let source = SafetensorsSource::open_dir(&dir).expect("weights");
        let quant = Some(WeightQuant::Format(QuantFormat::F32));
        let mut model =
            Model::<Flex>::load_quantized(&config, &source, &Default::default(), DType::F32, quant)
                .expect("model");
        model.host_kv = host;
        model
    }

    /// The MoE fixtures (dense and sparse layers; a shared expert; unnormalised top-k) on the
    /// f32 kernels: the host path (every layer admitted) gives the backend path's hidden states
    /// within 1e-5 and the same experts-touched counts, for a prefill and two decode steps — with
    /// an `f32` cache, and with an `f16` one within the tolerance explained below.
    #[test]
    fn host_moe_layers_match_the_backend_path() {
        for (name, kv_type) in [
            "qwen3moe-tiny",
            "qwen2moe-tiny",
            "qwen3moe-nonorm",
            "qwen3moe-4e",
        ]
        .into_iter()
        // the types a backend (device) cache can hold too; the block types are host-only
        .flat_map(|n| [KvType::F32, KvType::F16].map(|t| (n, t)))
        {
            let (host, backend) = (load(name, true), load(name, false));
            assert!(
                host.layers.iter().any(|l| matches!(l.ffn, Ffn::Sparse(_))),
                "{name} has sparse layers"
            );
            let (mut hc, mut bc) = (
                host.new_cache(16, kv_type.into()),
                backend.new_cache(16, kv_type.into()),
            );
            assert!(
                crate::model::host::ready(&host, &hc),
                "{name}: host path taken"
            );
            assert!(!crate::model::host::ready(&backend, &bc));
            let mut start = 0;
            for tokens in [&[3u32, 17, 42, 7, 99][..], &[12], &[5]] {
                let (mut ht, mut bt) = (Vec::new(), Vec::new());
                let a = host.forward_traced(tokens, &mut hc, start, &mut ht);
                let b = backend.forward_traced(tokens, &mut bc, start, &mut bt);
                let (a, b) = (
                    a.into_data().into_vec::<f32>().expect("f32"),
                    b.into_data().into_vec::<f32>().expect("f32"),
                );
                let d = a
                    .iter()
                    .zip(&b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0f32, f32::max);
                // An f16 cache rounds K computed by two float paths (the host's q/k norm and
                // burn's differ in the last bit), so a key within that bit of a rounding boundary
                // lands on neighbouring halves, 2^-11 apart (measured up to 6e-5 on the Qwen3
                // fixtures, 1e-6 on those without a k norm).
                let tol = if kv_type == KvType::F16 { 5e-4 } else { 1e-5 };
                assert!(
                    d <= tol,
                    "{name} {kv_type} at {start}: hidden states differ by {d}"
                );
                assert_eq!(ht, bt, "{name} {kv_type} at {start}: experts touched");
                assert!(!ht.is_empty());
                start += tokens.len();
            }
        }
    }
}
