//! Rotary position embeddings (Su et al. 2021, "RoFormer"), HF `rotate_half` convention: the head
//! dimension is split in two halves `(x1, x2)` and rotated as `(x1·cos − x2·sin, x2·cos + x1·sin)`.
//!
//! Frequencies `θ_i = base^(−2i/d)` are optionally rescaled: `linear` divides by `factor`; `llama3`
//! (Llama 3.1) keeps high frequencies, divides low ones by `factor` and interpolates smoothly in
//! between (HF `_compute_llama3_parameters`).

use burn::tensor::{DType, Tensor, TensorData, backend::Backend};

use crate::config::{ModelConfig, RopeScaling};

/// Precomputed inverse frequencies; cos/sin tables are built per forward for the positions used.
#[derive(Debug, Clone)]
pub struct Rope {
    /// `[head_dim / 2]`
    pub inv_freq: Vec<f32>,
}

impl Rope {
    /// Frequencies for the config's head_dim, rope_theta and rope scaling.
    pub fn new(config: &ModelConfig) -> Self {
        let d = config.head_dim;
        // f32 throughout, as HF computes `1 / base ** (arange(0, d, 2).float() / d)` in float32.
        let base = config.rope_theta as f32;
        let mut inv_freq: Vec<f32> = (0..d / 2)
            .map(|i| 1.0 / base.powf((2 * i) as f32 / d as f32))
            .collect();
        match config.rope_scaling {
            RopeScaling::Default => {}
            RopeScaling::Linear { factor } => inv_freq.iter_mut().for_each(|f| *f /= factor as f32),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                let (factor, low_freq_factor, high_freq_factor) = (
                    factor as f32,
                    low_freq_factor as f32,
                    high_freq_factor as f32,
                );
                let old = original_max_position_embeddings as f32;
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                for f in inv_freq.iter_mut() {
                    let wavelen = 2.0 * std::f32::consts::PI / *f;
                    if wavelen < high_wavelen {
                        // high frequency: unchanged
                    } else if wavelen > low_wavelen {
                        *f /= factor;
                    } else {
                        let smooth = (old / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        *f = (1.0 - smooth) * *f / factor + smooth * *f;
                    }
                }
            }
        }
        Self { inv_freq }
    }

    /// cos and sin tables for positions `start..start+len`, each `[len, head_dim/2]`.
    pub fn tables<B: Backend>(
        &self,
        start: usize,
        len: usize,
        device: &B::Device,
        dtype: DType,
    ) -> (Tensor<B, 2>, Tensor<B, 2>) {
        let half = self.inv_freq.len();
        let (cos, sin) = self.host_tables(start, len);
        (
            Tensor::from_data(TensorData::new(cos, [len, half]), (device, dtype)),
            Tensor::from_data(TensorData::new(sin, [len, half]), (device, dtype)),
        )
    }

    /// The cos and sin tables of [`Rope::tables`] on the host (`len × head_dim/2` each).
    pub fn host_tables(&self, start: usize, len: usize) -> (Vec<f32>, Vec<f32>) {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(len * half);
        let mut sin = Vec::with_capacity(len * half);
        for p in start..start + len {
            for &f in &self.inv_freq {
                // f32 product, as HF computes `position_ids.float() @ inv_freq`.
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        (cos, sin)
    }

    /// [`Rope::apply`] on host rows: `x` holds positions `start..start+len` (the tables' rows) of
    /// `heads` rows of `head_dim` each (`[len, heads, head_dim]`), rotated in place by the tables
    /// of [`Rope::host_tables`].
    pub fn apply_host(x: &mut [f32], heads: usize, head_dim: usize, cos: &[f32], sin: &[f32]) {
        let half = head_dim / 2;
        for (p, pos) in x.chunks_exact_mut(heads * head_dim).enumerate() {
            let (c, s) = (
                &cos[p * half..(p + 1) * half],
                &sin[p * half..(p + 1) * half],
            );
            for row in pos.chunks_exact_mut(head_dim) {
                let (x1, x2) = row.split_at_mut(half);
                for j in 0..half {
                    let (a, b) = (x1[j], x2[j]);
                    x1[j] = a * c[j] - b * s[j];
                    x2[j] = b * c[j] + a * s[j];
                }
            }
        }
    }

    /// Rotate `x` by the tables from [`Rope::tables`].
    ///
    /// # Shapes
    /// - `x`: `[heads, len, head_dim]`; `cos`, `sin`: `[len, head_dim/2]` → `[heads, len, head_dim]`
    pub fn apply<B: Backend>(
        x: Tensor<B, 3>,
        cos: &Tensor<B, 2>,
        sin: &Tensor<B, 2>,
    ) -> Tensor<B, 3> {
        let [_, len, d] = x.dims();
        let half = d / 2;
        let cos = cos.clone().reshape([1, len, half]);
        let sin = sin.clone().reshape([1, len, half]);
        let x1 = x.clone().narrow(2, 0, half);
        let x2 = x.narrow(2, half, half);
        let r1 = x1.clone() * cos.clone() - x2.clone() * sin.clone();
        let r2 = x2 * cos + x1 * sin;
        Tensor::cat(vec![r1, r2], 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelConfig;
    use std::path::Path;

    fn config(scaling: serde_json::Value) -> ModelConfig {
        let v = serde_json::json!({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
            "intermediate_size": 8, "num_hidden_layers": 1, "num_attention_heads": 1,
            "vocab_size": 8, "rope_theta": 10000.0, "rope_scaling": scaling});
        ModelConfig::from_value(v, Path::new("config.json")).unwrap()
    }

    #[test]
    fn llama3_scaling_keeps_high_and_divides_low_frequencies() {
        let plain = Rope::new(&config(serde_json::Value::Null));
        let scaled = Rope::new(&config(
            serde_json::json!({"rope_type": "llama3", "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64}),
        ));
        // θ_0 = 1: wavelength 2π < 64/4 → unchanged.
        assert_eq!(plain.inv_freq[0], scaled.inv_freq[0]);
        // The lowest frequency has wavelength ≫ 64 → divided by 8.
        let last = plain.inv_freq.len() - 1;
        assert!((scaled.inv_freq[last] - plain.inv_freq[last] / 8.0).abs() < 1e-12);
        // Frequencies never increase under scaling, and some in the middle band are smoothed.
        let mut smoothed = 0;
        for (a, b) in plain.inv_freq.iter().zip(&scaled.inv_freq) {
            assert!(b <= a);
            if b < a && *b > a / 8.0 {
                smoothed += 1;
            }
        }
        assert!(smoothed > 0);
    }

    #[test]
    fn rotation_preserves_norm_and_is_identity_at_position_zero() {
        use burn::backend::Flex;
        let rope = Rope::new(&config(serde_json::Value::Null));
        let dev = Default::default();
        let x: Vec<f32> = (0..2 * 64).map(|i| (i as f32 * 0.37).sin()).collect();
        let xt = Tensor::<Flex, 3>::from_data(TensorData::new(x.clone(), [1, 2, 64]), &dev);
        let (cos, sin) = rope.tables::<Flex>(0, 2, &dev, DType::F32);
        let out = Rope::apply(xt, &cos, &sin)
            .into_data()
            .into_vec::<f32>()
            .unwrap();
        for i in 0..64 {
            assert!((out[i] - x[i]).abs() < 1e-6);
        }
        let n = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>();
        assert!((n(&out[64..]) - n(&x[64..])).abs() < 1e-4);
    }
}
