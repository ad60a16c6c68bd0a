//! [`QuantLinear`]: the bridge between a burn model's projection and the quantized CPU kernels.
//!
//! Decode and verify activations are a few rows, so the projection copies them to the host
//! (`into_data`), runs [`matmul`] against the weights kept quantized in host memory, and uploads the
//! product (`from_data`); on the CPU backend both copies are a memcpy of `m × d` floats, tiny next
//! to the weight bytes the kernel streams.

use std::sync::Mutex;

use burn::tensor::{Tensor, TensorData, backend::Backend};

use super::matmul::{MatmulScratch, matmul, matmul_many};
use super::matrix::QuantMatrix;

/// How a model runs with quantized weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantPath {
    /// Weights stay quantized on the host; products run on the quantized kernels.
    Kernels,
    /// The reference: weights take their quantized values (quantize, then dequantize) but stay
    /// dense f32 device tensors multiplied by the backend — what [`QuantPath::Kernels`] must match
    /// up to the kernels' 8-bit activation rounding.
    DequantizedF32,
}

/// How a model's projections are held when loaded for the CPU kernels (`LoadOptions::quant`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightQuant {
    /// Each weight in the block format it is stored in (a GGUF file's Q4_K, Q6_K, Q8_0, ...),
    /// borrowed from the file map — the same bits llama.cpp multiplies. Weights the kernels cannot
    /// take as stored (other block types; every tensor of a safetensors checkpoint) are quantized
    /// to Q8_0.
    Native,
    /// Every projection quantized to this format at load (the quantization axis).
    Format(super::QuantFormat),
}

impl std::fmt::Display for WeightQuant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WeightQuant::Native => f.write_str("native"),
            WeightQuant::Format(q) => write!(f, "{}", q.name().to_ascii_lowercase()),
        }
    }
}

/// A projection weight kept quantized on the host, with the kernels' reusable scratch.
#[derive(Debug)]
pub struct QuantLinear {
    matrix: QuantMatrix,
    scratch: Mutex<MatmulScratch>,
}

impl QuantLinear {
    /// Wrap a `[out, in]` weight matrix, in the layout this CPU's kernels read fastest
    /// ([`QuantMatrix::into_kernel_layout`]).
    pub fn new(matrix: QuantMatrix) -> Self {
        QuantLinear {
            matrix: matrix.into_kernel_layout(),
            scratch: Mutex::new(MatmulScratch::new()),
        }
    }

    /// Wrap a `[out, in]` weight matrix in the layout it has: for a table read row by row (an
    /// embedding the LM head does not share), where a mapped matrix stays mapped.
    pub fn in_own_layout(matrix: QuantMatrix) -> Self {
        QuantLinear {
            matrix,
            scratch: Mutex::new(MatmulScratch::new()),
        }
    }

    /// The weight matrix.
    pub fn matrix(&self) -> &QuantMatrix {
        &self.matrix
    }

    /// `x · Wᵀ` without bias.
    ///
    /// # Shapes
    /// - `x`: `[tokens, in]` → `[tokens, out]` (same device and dtype as `x`)
    ///
    /// # Panics
    /// If `in` differs from the weight's columns — a model construction bug, as for burn's matmul.
    pub fn forward<B: Backend>(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let [rows, d_in] = x.dims();
        let (device, dtype) = (x.device(), x.dtype());
        let d_out = self.matrix.rows();
        let host = x
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .expect("f32 data after convert");
        let mut out = vec![0.0f32; rows * d_out];
        // A poisoned lock only means another forward panicked; the scratch holds no invariants.
        let mut scratch = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = matmul(&host, rows, &self.matrix, &mut out, &mut scratch) {
            panic!("quantized linear: input [{rows}, {d_in}]: {e}");
        }
        Tensor::from_data(TensorData::new(out, [rows, d_out]), (&device, dtype))
    }
}

/// A SwiGLU MLP `down(silu(gate(x)) ⊙ up(x))` whose three projections are on the kernels, run on
/// the host in one pass: one download of `x`, gate and up in one parallel region
/// ([`matmul_many`]), the gating in place, down, one upload — instead of six copies and two
/// backend ops between three separate products.
#[derive(Debug)]
pub struct HostSwiGlu {
    buffers: Mutex<SwiGluBuffers>,
}

/// Buffers of [`swiglu_block`]: reused across calls (and across layers, by the host path).
#[derive(Debug, Default)]
pub struct SwiGluBuffers {
    scratch: MatmulScratch,
    gate: Vec<f32>,
    up: Vec<f32>,
    normed: Vec<f32>,
}

impl Default for HostSwiGlu {
    fn default() -> Self {
        HostSwiGlu {
            buffers: Mutex::new(SwiGluBuffers::default()),
        }
    }
}

impl HostSwiGlu {
    /// # Shapes
    /// - `x`: `[tokens, hidden]` → `[tokens, hidden]`
    ///
    /// # Panics
    /// If the matrices do not chain (`gate`, `up`: `[inter, hidden]`, `down`: `[hidden, inter]`) —
    /// a model construction bug.
    pub fn forward<B: Backend>(
        &self,
        x: Tensor<B, 2>,
        gate: &QuantLinear,
        up: &QuantLinear,
        down: &QuantLinear,
    ) -> Tensor<B, 2> {
        self.run(x, None, gate, up, down)
    }

    /// The whole pre-norm MLP sub-block of a decoder layer, `h + mlp(norm(h))`, with `norm`
    /// applying the RMSNorm to host rows (in, out): one download and one upload in all.
    pub fn forward_residual<B: Backend>(
        &self,
        h: Tensor<B, 2>,
        norm: HostNorm<'_>,
        gate: &QuantLinear,
        up: &QuantLinear,
        down: &QuantLinear,
    ) -> Tensor<B, 2> {
        self.run(h, Some(norm), gate, up, down)
    }

    fn run<B: Backend>(
        &self,
        x: Tensor<B, 2>,
        norm: Option<HostNorm<'_>>,
        gate: &QuantLinear,
        up: &QuantLinear,
        down: &QuantLinear,
    ) -> Tensor<B, 2> {
        let [rows, _] = x.dims();
        let (device, dtype) = (x.device(), x.dtype());
        let hidden = down.matrix().rows();
        let host = x
            .into_data()
            .convert::<f32>()
            .into_vec::<f32>()
            .expect("f32 data after convert");
        let mut out = vec![0.0f32; rows * hidden];
        let mut guard = self.buffers.lock().unwrap_or_else(|e| e.into_inner());
        swiglu_block(&host, rows, norm, gate, up, down, &mut out, &mut guard);
        Tensor::from_data(TensorData::new(out, [rows, hidden]), (&device, dtype))
    }
}

/// A normalisation applied on host rows: `(input row, output row)`.
pub type HostNorm<'a> = &'a dyn Fn(&[f32], &mut [f32]);

/// `out = [x +] down(silu(gate(n)) ⊙ up(n))` with `n = norm(x)` (or `x`) on `rows` host rows:
/// gate and up in one parallel region ([`matmul_many`]), the gating in place, down, and with a
/// norm the residual.
#[allow(clippy::too_many_arguments)]
pub fn swiglu_block(
    x: &[f32],
    rows: usize,
    norm: Option<HostNorm<'_>>,
    gate: &QuantLinear,
    up: &QuantLinear,
    down: &QuantLinear,
    out: &mut [f32],
    buffers: &mut SwiGluBuffers,
) {
    let inter = gate.matrix().rows();
    let SwiGluBuffers {
        scratch,
        gate: g,
        up: u,
        normed,
    } = buffers;
    g.resize(rows * inter, 0.0);
    u.resize(rows * inter, 0.0);
    let input: &[f32] = match norm {
        Some(f) => {
            normed.resize(x.len(), 0.0);
            f(x, normed);
            normed
        }
        None => x,
    };
    if let Err(e) = matmul_many(
        input,
        rows,
        &[gate.matrix(), up.matrix()],
        &mut [&mut g[..], &mut u[..]],
        scratch,
    ) {
        panic!("quantized MLP gate/up: {e}");
    }
    crate::model::cpu_attention::silu_mul(g, u);
    if let Err(e) = matmul(g, rows, down.matrix(), out, scratch) {
        panic!("quantized MLP down: {e}");
    }
    if norm.is_some() {
        // the residual: x + mlp(norm(x))
        for (o, x) in out.iter_mut().zip(x) {
            *o += x;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::QuantFormat;
    use burn::backend::Flex;

    #[test]
    fn forward_equals_dequantized_product() {
        let dev = Default::default();
        let (d_in, d_out, rows) = (64, 48, 3);
        let w: Vec<f32> = (0..d_in * d_out)
            .map(|i| ((i * 7919) % 113) as f32 / 113.0 - 0.5)
            .collect();
        let m = QuantMatrix::quantize("w", QuantFormat::Q8_0, d_out, d_in, &w).expect("quantize");
        let wd = m.dequantize();
        let lin = QuantLinear::new(m);
        let x: Vec<f32> = (0..rows * d_in).map(|i| (i as f32 * 0.37).sin()).collect();
        let y = lin
            .forward(Tensor::<Flex, 2>::from_data(
                TensorData::new(x.clone(), [rows, d_in]),
                &dev,
            ))
            .into_data()
            .into_vec::<f32>()
            .expect("f32");
        for i in 0..rows {
            for r in 0..d_out {
                let xi = &x[i * d_in..(i + 1) * d_in];
                let dot: f32 = xi
                    .iter()
                    .zip(&wd[r * d_in..(r + 1) * d_in])
                    .map(|(a, b)| a * b)
                    .sum();
                // 8-bit activations: |error| ≤ Σ|w|·max|x_block|/254 ≤ 64 · 0.5 / 254
                assert!(
                    (y[i * d_out + r] - dot).abs() <= 0.13,
                    "{i},{r}: {} vs {dot}",
                    y[i * d_out + r]
                );
            }
        }
    }
}
