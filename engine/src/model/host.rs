//! The CPU host path of the decoder stack (issue #8). When every layer's projections are on the
//! quantized kernels (`Linear::quant`), its FFN is a dense SwiGLU or a sparse mixture of experts
//! whose every projection is on the kernels (`model::host_moe`), and the KV cache lives on the host
//! (`LayerCache` host mode, the CPU backend), a forward runs all layers on host rows: RMSNorm, q/k/v
//! in one kernel call ([`matmul_many`]), biases, per-head q/k norm, RoPE, the cache write, attention
//! ([`cpu_attention`](crate::model::cpu_attention)), o, the residual, then the MLP sub-block
//! ([`swiglu_block`]). One set of buffers serves every layer, so memory after a long prefill does
//! not grow with the layer count. The hidden rows cross to the backend
//! once per forward instead of some twenty backend ops and a dozen copies per layer, which is most
//! of a small model's decode step (SmolLM2-135M: 30 layers of 576 wide).
//!
//! The arithmetic is the backend path's — the same kernels, the same formulas in f32 — and the
//! tests check the two paths against each other.

use std::sync::Mutex;

use burn::tensor::backend::Backend;

use crate::kv_cache::{HostKv, LayerCache};
use crate::model::host_moe::{self, MoeBuffers};
use crate::model::mlp::Ffn;
use crate::model::{Attention, DecoderLayer, Linear, Model, RmsNorm, Rope};
use crate::quant::{MatmulScratch, SwiGluBuffers, matmul, matmul_many, swiglu_block};

/// Reusable host buffers of one model's forwards (grown to the largest batch, never shrunk).
#[derive(Debug, Default)]
pub struct HostBuffers {
    scratch: MatmulScratch,
    xn: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    qt: Vec<f32>,
    kt: Vec<f32>,
    vt: Vec<f32>,
    att: Vec<f32>,
    mid: Vec<f32>,
    mlp: SwiGluBuffers,
    moe: MoeBuffers,
}

/// The host buffers behind a mutex (a model may be shared across threads; forwards serialise).
pub type SharedHostBuffers = std::sync::Arc<Mutex<HostBuffers>>;

/// The kernels' weights of a projection [`layer_ready`] admitted.
fn quant<B: Backend>(l: &Linear<B>) -> &crate::quant::QuantLinear {
    l.quant.as_deref().expect("layer_ready checked the kernels")
}

fn on_kernels<B: Backend>(l: &Linear<B>) -> bool {
    l.quant.is_some()
}

/// Whether `layer` can run on the host path.
pub fn layer_ready<B: Backend>(layer: &DecoderLayer<B>) -> bool {
    let a = &layer.self_attn;
    let attn = [&a.q_proj, &a.k_proj, &a.v_proj, &a.o_proj]
        .into_iter()
        .all(on_kernels);
    let ffn = match &layer.ffn {
        Ffn::Dense(m) => [&m.gate_proj, &m.up_proj, &m.down_proj]
            .into_iter()
            .all(|l| on_kernels(l) && l.bias.is_none()),
        Ffn::Sparse(moe) => host_moe::ready(moe),
    };
    attn && ffn
}

/// Whether a forward of `model` over `cache` can take the host path.
pub fn ready<B: Backend>(model: &Model<B>, cache: &[LayerCache<B>]) -> bool {
    model.host_kv
        && cache.len() >= model.layers.len()
        && cache.iter().all(|c| c.host().is_some())
        && model.layers.iter().all(layer_ready)
}

/// Run every decoder layer on `k` host rows `x` (`[k, hidden]`) at positions `start..start+k`,
/// appending to the host caches; returns the last layer's output rows (before the final norm).
/// Each sparse layer pushes its experts-touched count onto `experts_touched`.
///
/// # Panics
/// If [`ready`] does not hold — the caller checks it.
pub fn forward_layers<B: Backend>(
    model: &Model<B>,
    x: Vec<f32>,
    k: usize,
    cache: &mut [LayerCache<B>],
    start: usize,
    experts_touched: &mut Vec<u32>,
) -> Vec<f32> {
    let (cos, sin) = model.rope.host_tables(start, k);
    let mut guard = model.host.lock().unwrap_or_else(|e| e.into_inner());
    let bufs = &mut *guard;
    let mut x = x;
    let mut y = vec![0.0f32; x.len()];
    for (layer, lc) in model.layers.iter().zip(cache.iter_mut()) {
        let kv = lc.host_mut().expect("host path needs host caches");
        attention_block(
            &layer.self_attn,
            &layer.input_layernorm,
            &x,
            k,
            kv,
            start,
            (&cos, &sin),
            bufs,
            &mut y,
        );
        let mlp = match &layer.ffn {
            Ffn::Dense(mlp) => mlp,
            Ffn::Sparse(moe) => {
                let touched = host_moe::sparse_block(
                    moe,
                    &layer.post_attention_layernorm,
                    &y,
                    k,
                    &mut x,
                    &mut bufs.moe,
                    &mut bufs.mlp,
                    &mut bufs.scratch,
                );
                experts_touched.push(touched);
                continue;
            }
        };
        let (g, u, d) = (
            quant(&mlp.gate_proj),
            quant(&mlp.up_proj),
            quant(&mlp.down_proj),
        );
        let norm = |a: &[f32], o: &mut [f32]| layer.post_attention_layernorm.apply_host(a, o);
        swiglu_block(&y, k, Some(&norm), g, u, d, &mut x, &mut bufs.mlp);
    }
    x
}

/// `out = x + o(attention(rope(norm_qk(qkv(norm(x))))))` on host rows, appending K/V to `kv`.
#[allow(clippy::too_many_arguments)]
fn attention_block<B: Backend>(
    a: &Attention<B>,
    norm: &RmsNorm<B>,
    x: &[f32],
    k: usize,
    kv: &mut HostKv,
    start: usize,
    (cos, sin): (&[f32], &[f32]),
    b: &mut HostBuffers,
    out: &mut [f32],
) {
    let (nq, nkv, d) = (a.n_heads, a.n_kv_heads, a.head_dim);
    let resize = |v: &mut Vec<f32>, n: usize| v.resize(n, 0.0);
    resize(&mut b.xn, x.len());
    resize(&mut b.q, k * nq * d);
    resize(&mut b.k, k * nkv * d);
    resize(&mut b.v, k * nkv * d);
    resize(&mut b.qt, k * nq * d);
    resize(&mut b.kt, k * nkv * d);
    resize(&mut b.vt, k * nkv * d);
    resize(&mut b.att, k * nq * d);
    norm.apply_host(x, &mut b.xn);
    let (wq, wk, wv, wo) = (
        quant(&a.q_proj),
        quant(&a.k_proj),
        quant(&a.v_proj),
        quant(&a.o_proj),
    );
    if let Err(e) = matmul_many(
        &b.xn,
        k,
        &[wq.matrix(), wk.matrix(), wv.matrix()],
        &mut [&mut b.q[..], &mut b.k[..], &mut b.v[..]],
        &mut b.scratch,
    ) {
        panic!("attention q/k/v projections: {e}");
    }
    add_bias(&mut b.q, &a.q_proj);
    add_bias(&mut b.k, &a.k_proj);
    add_bias(&mut b.v, &a.v_proj);
    if let Some(n) = &a.q_norm {
        b.mid.clear();
        b.mid.extend_from_slice(&b.q);
        n.apply_host(&b.mid, &mut b.q);
    }
    if let Some(n) = &a.k_norm {
        b.mid.clear();
        b.mid.extend_from_slice(&b.k);
        n.apply_host(&b.mid, &mut b.k);
    }
    Rope::apply_host(&mut b.q, nq, d, cos, sin);
    Rope::apply_host(&mut b.k, nkv, d, cos, sin);
    // [k, heads, d] → [heads, k, d]
    heads_first(&b.q, k, nq, d, &mut b.qt);
    heads_first(&b.k, k, nkv, d, &mut b.kt);
    heads_first(&b.v, k, nkv, d, &mut b.vt);
    kv.write(start, k, &b.kt, &b.vt);
    kv.attend(&b.qt, nq, start, k, &mut b.att);
    if let Err(e) = matmul(&b.att, k, wo.matrix(), out, &mut b.scratch) {
        panic!("attention o projection: {e}");
    }
    add_bias(out, &a.o_proj);
    for (o, x) in out.iter_mut().zip(x) {
        *o += x;
    }
}

/// Add a projection's host bias to every row of `y`.
fn add_bias<B: Backend>(y: &mut [f32], l: &Linear<B>) {
    if let Some(bias) = &l.bias_host {
        for row in y.chunks_exact_mut(bias.len()) {
            for (v, b) in row.iter_mut().zip(bias) {
                *v += b;
            }
        }
    }
}

/// `[k, heads, d]` → `[heads, k, d]`.
fn heads_first(src: &[f32], k: usize, heads: usize, d: usize, dst: &mut [f32]) {
    for i in 0..k {
        for h in 0..heads {
            let s = (i * heads + h) * d;
            let t = (h * k + i) * d;
            dst[t..t + d].copy_from_slice(&src[s..s + d]);
        }
    }
}
