//! RMSNorm (Zhang & Sennrich 2019, "Root Mean Square Layer Normalization"):
//! `y = x / sqrt(mean(x²) + eps) · weight`, over the last dimension, as in HF's `LlamaRMSNorm`.

use burn::tensor::{Tensor, backend::Backend};

use crate::error::Result;
use crate::model::Loader;

/// Root-mean-square normalisation with a learned per-channel scale.
#[derive(Debug, Clone)]
pub struct RmsNorm<B: Backend> {
    /// `[dim]`
    pub weight: Tensor<B, 1>,
    /// The same weights on the host, for the CPU host paths ([`RmsNorm::apply_host`]).
    pub weight_host: Vec<f32>,
    pub eps: f64,
}

impl<B: Backend> RmsNorm<B> {
    /// Load `{name}` (shape `[dim]`).
    pub fn load(loader: &Loader<'_, B>, name: &str, dim: usize, eps: f64) -> Result<Self> {
        let t = loader.host(name, &[dim])?;
        Ok(Self {
            weight: loader.upload(t.data.clone(), [dim]),
            weight_host: t.data,
            eps,
        })
    }

    /// Normalise every row of `x` (rows of `weight_host.len()` values) into `out`, on the host:
    /// the same formula as [`RmsNorm::forward`], summed in f32.
    pub fn apply_host(&self, x: &[f32], out: &mut [f32]) {
        let dim = self.weight_host.len();
        for (row, o) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
            let ms = row.iter().map(|v| v * v).sum::<f32>() / dim as f32;
            let r = 1.0 / (ms + self.eps as f32).sqrt();
            for ((o, v), w) in o.iter_mut().zip(row).zip(&self.weight_host) {
                *o = v * r * w;
            }
        }
    }

    /// # Shapes
    /// - `x`: `[..., dim]` → `[..., dim]`
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dims = x.dims();
        let dim = dims[D - 1];
        // 1. mean of squares over the last dim, kept for broadcasting: [..., 1]
        let ms = x.clone().powi_scalar(2).mean_dim(D - 1);
        // 2. x · rsqrt(ms + eps)
        let normed = x * (ms + self.eps).sqrt().recip();
        // 3. per-channel scale, broadcast from [1, ..., dim]
        let mut shape = [1usize; D];
        shape[D - 1] = dim;
        normed * self.weight.clone().reshape(shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::TensorData;

    #[test]
    fn matches_the_formula() {
        let dev = Default::default();
        let norm = RmsNorm::<Flex> {
            weight: Tensor::from_data(TensorData::new(vec![1.0f32, 2.0, 0.5, -1.0], [4]), &dev),
            weight_host: vec![1.0f32, 2.0, 0.5, -1.0],
            eps: 1e-6,
        };
        let x = vec![1.0f32, -2.0, 3.0, 0.5];
        let out = norm
            .forward(Tensor::<Flex, 2>::from_data(
                TensorData::new(x.clone(), [1, 4]),
                &dev,
            ))
            .into_data()
            .into_vec::<f32>()
            .unwrap();
        let rms = (x.iter().map(|v| v * v).sum::<f32>() / 4.0 + 1e-6).sqrt();
        let w = [1.0f32, 2.0, 0.5, -1.0];
        let mut host = [0.0f32; 4];
        norm.apply_host(&x, &mut host);
        for i in 0..4 {
            assert!((out[i] - x[i] / rms * w[i]).abs() < 1e-6, "{i}");
            assert!((host[i] - out[i]).abs() < 1e-6, "host {i}");
        }
    }
}
