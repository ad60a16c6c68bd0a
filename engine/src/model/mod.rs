//! The transformer model, generic over a burn backend `B`, top-down: [`rope`] → [`mlp`] →
//! [`attention`] → [`transformer`] (decoder layer and model). This module holds what they share:
//! [`Loader`], which turns [`WeightSource`] tensors into device tensors with shape checks, and
//! [`Linear`], a projection `y = x·Wᵀ + b`.

pub mod attention;
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
    pub fn linear(&self, prefix: &str, d_in: usize, d_out: usize, bias: bool) -> Result<Linear<B>> {
        let weight = self.tensor2(&format!("{prefix}.weight"), d_out, d_in)?;
        let bias = if bias {
            Some(self.tensor1(&format!("{prefix}.bias"), d_out)?)
        } else {
            None
        };
        Ok(Linear::new(weight, bias))
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
}

impl<B: Backend> Linear<B> {
    /// Build from a PyTorch-layout `[out, in]` weight.
    pub fn new(weight: Tensor<B, 2>, bias: Option<Tensor<B, 1>>) -> Self {
        Self {
            weight_t: weight.transpose(),
            bias,
        }
    }

    /// # Shapes
    /// - `x`: `[tokens, in]` → `[tokens, out]`
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let y = x.matmul(self.weight_t.clone());
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
        let [i, o] = self.weight_t.dims();
        (i, o)
    }

    /// Bytes of weight data (read once per decoded token).
    pub fn weight_bytes(&self) -> usize {
        let (i, o) = self.dims();
        i * o * self.weight_t.dtype().size()
    }
}
