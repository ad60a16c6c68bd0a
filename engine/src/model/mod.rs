//! The transformer model, generic over a burn backend `B`, top-down: [`rope`] → [`mlp`] →
//! [`attention`] → [`transformer`] (decoder layer and model). This module holds what they share:
//! [`Loader`], which turns [`WeightSource`] tensors into device tensors with shape checks, and
//! [`Linear`], a projection `y = x·Wᵀ + b`.

pub mod attention;
pub mod cpu_attention;
pub mod host;
pub mod host_moe;
pub mod mlp;
pub mod moe;
pub mod mtp;
pub mod norm;
pub mod rope;
pub mod transformer;

use burn::tensor::{DType, Tensor, TensorData, backend::Backend};

use crate::error::{EngineError, Result};
use crate::weights::{HostTensor, WeightSource};

pub use attention::Attention;
pub use mlp::{Ffn, Mlp};
pub use norm::RmsNorm;
pub use rope::Rope;
pub use transformer::{DecoderLayer, Model};

/// Loads named tensors from a [`WeightSource`] onto a device, checking every shape.
pub struct Loader<'a, B: Backend> {
    pub source: &'a dyn WeightSource,
    pub device: B::Device,
    /// Storage / compute dtype on the device.
    pub dtype: DType,
    /// CPU: build linear projections on the quantized kernels (weights kept in host memory in a
    /// block format) instead of dense device tensors.
    pub quant: Option<crate::quant::WeightQuant>,
}

impl<'a, B: Backend> Loader<'a, B> {
    /// Load a host tensor and check its shape.
    pub fn host(&self, name: &str, expected: &[usize]) -> Result<HostTensor> {
        let t = self.source.load(name)?;
        if t.shape != expected {
            return Err(EngineError::Shape {
                tensor: name.to_string(),
                expected: expected.to_vec(),
                got: t.shape,
            });
        }
        Ok(t)
    }

    /// Upload host data with the given shape.
    pub fn upload<const D: usize>(&self, data: Vec<f32>, shape: [usize; D]) -> Tensor<B, D> {
        Tensor::from_data(TensorData::new(data, shape), (&self.device, self.dtype))
    }

    /// Load a rank-1 tensor of length `n`.
    pub fn tensor1(&self, name: &str, n: usize) -> Result<Tensor<B, 1>> {
        let t = self.host(name, &[n])?;
        Ok(self.upload(t.data, [n]))
    }

    /// Load a rank-2 tensor `[rows, cols]`.
    pub fn tensor2(&self, name: &str, rows: usize, cols: usize) -> Result<Tensor<B, 2>> {
        let t = self.host(name, &[rows, cols])?;
        Ok(self.upload(t.data, [rows, cols]))
    }

    /// Load `{prefix}.weight` (`[out, in]`, PyTorch layout) and, if `bias`, `{prefix}.bias`.
    /// With [`Loader::quant`] set, the weight goes to the quantized kernels ([`Loader::matrix`]).
    pub fn linear(&self, prefix: &str, d_in: usize, d_out: usize, bias: bool) -> Result<Linear<B>> {
        let name = format!("{prefix}.weight");
        let bias = if bias {
            Some(self.tensor1(&format!("{prefix}.bias"), d_out)?)
        } else {
            None
        };
        if let Some(m) = self.matrix(&name, d_out, d_in)? {
            let quant = std::sync::Arc::new(crate::quant::QuantLinear::new(m));
            return Ok(Linear::from_quant(quant, bias, &self.device, self.dtype));
        }
        let weight = self.tensor2(&name, d_out, d_in)?;
        Ok(Linear::new(weight, bias))
    }

    /// With [`Loader::quant`] set, the `[rows, cols]` weight `name` as the kernels hold it:
    /// [`WeightQuant::Native`](crate::quant::WeightQuant) takes the source's stored blocks when the
    /// kernels support them (GGUF; no copy) and quantizes anything else to Q8_0;
    /// [`WeightQuant::Format`](crate::quant::WeightQuant) quantizes to the given format, one tensor
    /// at a time so no f32 copy of the model exists. `None`: dense (no quantization asked, or a
    /// column count the kernels cannot take — such a weight stays a dense tensor).
    pub fn matrix(
        &self,
        name: &str,
        rows: usize,
        cols: usize,
    ) -> Result<Option<crate::quant::QuantMatrix>> {
        use crate::quant::{QuantFormat, QuantMatrix, WeightQuant, kernel_cols_ok};
        let format = match self.quant {
            None => return Ok(None),
            Some(WeightQuant::Native) => {
                if let Some(m) = self.source.quant_matrix(name)? {
                    if (m.rows(), m.cols()) != (rows, cols) {
                        return Err(EngineError::Shape {
                            tensor: name.to_string(),
                            expected: vec![rows, cols],
                            got: vec![m.rows(), m.cols()],
                        });
                    }
                    return Ok(Some(m));
                }
                QuantFormat::Q8_0
            }
            Some(WeightQuant::Format(f)) => f,
        };
        if !kernel_cols_ok(format, cols) {
            return Ok(None);
        }
        let t = self.host(name, &[rows, cols])?;
        QuantMatrix::quantize(name, format, rows, cols, &t.data).map(Some)
    }

    /// Bytes per element of the device dtype.
    pub fn elem_bytes(&self) -> usize {
        self.dtype.size()
    }
}

/// A linear projection `y = x·Wᵀ + b`.
#[derive(Debug, Clone)]
pub struct Linear<B: Backend> {
    /// `[in, out]`: the transposed view of the stored `[out, in]` weight (no copy; the matmul
    /// kernel reads it through strides).
    pub weight_t: Tensor<B, 2>,
    /// `[out]`
    pub bias: Option<Tensor<B, 1>>,
    /// CPU only: run small products (decode, verify) as column blocks on the current rayon pool.
    /// See [`Linear::forward`].
    pub split_columns: bool,
    /// CPU only: the weight kept quantized on the host and multiplied by `crate::quant`'s kernels
    /// ([`Linear::quantize`]); when set, `weight_t` is a 1 × 1 placeholder.
    pub quant: Option<std::sync::Arc<crate::quant::QuantLinear>>,
    /// With `quant`: the bias on the host too, for the host paths (`model::host`).
    pub bias_host: Option<Vec<f32>>,
}

/// Below this many multiply-adds burn `flex`'s matmul runs on one thread (its `gemm` call uses
/// `Parallelism::None` under 192³); `Linear` parallelises those products itself.
const FLEX_SERIAL_OPS: usize = 192 * 192 * 192;

/// Smallest column block worth a task.
const MIN_BLOCK_COLUMNS: usize = 128;

impl<B: Backend> Linear<B> {
    /// Build from a PyTorch-layout `[out, in]` weight.
    pub fn new(weight: Tensor<B, 2>, bias: Option<Tensor<B, 1>>) -> Self {
        Self {
            weight_t: weight.transpose(),
            bias,
            split_columns: false,
            quant: None,
            bias_host: None,
        }
    }

    /// A projection on the quantized kernels (`weight_t` is a 1 × 1 placeholder).
    pub fn from_quant(
        quant: std::sync::Arc<crate::quant::QuantLinear>,
        bias: Option<Tensor<B, 1>>,
        device: &B::Device,
        dtype: DType,
    ) -> Self {
        let bias_host = bias.as_ref().map(|b| crate::kv_cache::host_f32(b.clone()));
        Self {
            weight_t: Tensor::zeros([1, 1], (device, dtype)),
            bias,
            split_columns: false,
            quant: Some(quant),
            bias_host,
        }
    }

    /// Keep the weight on the host in `format` and multiply with the quantized CPU kernels from
    /// now on, releasing the device copy ([`QuantPath::Kernels`](crate::quant::QuantPath)), or
    /// replace it by its quantized values as a dense tensor (the `DequantizedF32` reference).
    /// `name` labels errors.
    pub fn quantize(
        &mut self,
        name: &str,
        format: crate::quant::QuantFormat,
        path: crate::quant::QuantPath,
    ) -> Result<()> {
        if self.quant.is_some() {
            return Err(EngineError::Invalid(format!(
                "linear `{name}` is already quantized"
            )));
        }
        let [d_in, d_out] = self.weight_t.dims();
        let w = self
            .weight_t
            .clone()
            .transpose()
            .into_data()
            .convert::<f32>();
        let w = w
            .into_vec::<f32>()
            .map_err(|e| EngineError::Invalid(format!("linear `{name}`: {e:?}")))?;
        let matrix = crate::quant::QuantMatrix::quantize(name, format, d_out, d_in, &w)?;
        let device = self.weight_t.device();
        if path == crate::quant::QuantPath::DequantizedF32 {
            let data = TensorData::new(matrix.dequantize(), [d_out, d_in]);
            let w: Tensor<B, 2> = Tensor::from_data(data, (&device, self.weight_t.dtype()));
            self.weight_t = w.transpose();
            return Ok(());
        }
        self.weight_t = Tensor::zeros([1, 1], (&device, self.weight_t.dtype()));
        self.quant = Some(std::sync::Arc::new(crate::quant::QuantLinear::new(matrix)));
        self.bias_host = self
            .bias
            .as_ref()
            .map(|b| crate::kv_cache::host_f32(b.clone()));
        Ok(())
    }

    /// # Shapes
    /// - `x`: `[tokens, in]` → `[tokens, out]`
    ///
    /// With `split_columns`, a product too small for the backend's own threading (a decode step's
    /// `1 × in · in × out`) is computed as column blocks `x · Wᵀ[:, c₀..c₁]` in parallel on the
    /// current rayon pool and concatenated: every output element is the same dot product, so the
    /// result equals the unsplit one while a decode step reads the weights with every thread.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        if let Some(q) = &self.quant {
            let y = q.forward(x);
            return match &self.bias {
                Some(b) => {
                    let out = b.dims()[0];
                    y + b.clone().reshape([1, out])
                }
                None => y,
            };
        }
        let [rows, d_in] = x.dims();
        let d_out = self.weight_t.dims()[1];
        let threads = rayon::current_num_threads();
        let blocks = threads.min(d_out / MIN_BLOCK_COLUMNS);
        let y = if self.split_columns && blocks > 1 && rows * d_in * d_out < FLEX_SERIAL_OPS {
            use rayon::prelude::*;
            let width = d_out.div_ceil(blocks);
            let blocks = d_out.div_ceil(width);
            let parts: Vec<Tensor<B, 2>> = (0..blocks)
                .into_par_iter()
                .map(|i| {
                    let start = i * width;
                    let n = width.min(d_out - start);
                    x.clone().matmul(self.weight_t.clone().narrow(1, start, n))
                })
                .collect();
            Tensor::cat(parts, 1)
        } else {
            x.matmul(self.weight_t.clone())
        };
        match &self.bias {
            Some(b) => {
                let out = b.dims()[0];
                y + b.clone().reshape([1, out])
            }
            None => y,
        }
    }

    /// `(in, out)`
    pub fn dims(&self) -> (usize, usize) {
        if let Some(q) = &self.quant {
            return (q.matrix().cols(), q.matrix().rows());
        }
        let [i, o] = self.weight_t.dims();
        (i, o)
    }

    /// Bytes of weight data (read once per decoded token).
    pub fn weight_bytes(&self) -> usize {
        if let Some(q) = &self.quant {
            return q.matrix().bytes().len();
        }
        let (i, o) = self.dims();
        i * o * self.weight_t.dtype().size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn column_split_equals_the_plain_product() {
        let dev = Default::default();
        let (d_in, d_out) = (96, 1000);
        let w: Vec<f32> = (0..d_in * d_out)
            .map(|i| ((i * 7919) % 113) as f32 / 113.0 - 0.5)
            .collect();
        let b: Vec<f32> = (0..d_out).map(|i| i as f32 * 1e-3).collect();
        let weight = Tensor::<Flex, 2>::from_data(TensorData::new(w, [d_out, d_in]), &dev);
        let bias = Tensor::<Flex, 1>::from_data(TensorData::new(b, [d_out]), &dev);
        let plain = Linear::new(weight, Some(bias));
        let mut split = plain.clone();
        split.split_columns = true;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for rows in [1, 4] {
            let x: Vec<f32> = (0..rows * d_in).map(|i| (i as f32 * 0.37).sin()).collect();
            let x = Tensor::<Flex, 2>::from_data(TensorData::new(x, [rows, d_in]), &dev);
            let a = plain
                .forward(x.clone())
                .into_data()
                .into_vec::<f32>()
                .unwrap();
            let s = pool
                .install(|| split.forward(x))
                .into_data()
                .into_vec::<f32>()
                .unwrap();
            assert_eq!(a.len(), rows * d_out);
            let d = a
                .iter()
                .zip(&s)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0f32, f32::max);
            assert!(d <= 1e-5, "rows {rows}: {d}");
        }
    }
}
