//! Causal grouped-query self-attention (Ainslie et al. 2023, "GQA") with RoPE, optional q/k/v/o
//! biases (Qwen2, `attention_bias`) and optional per-head q/k RMSNorm (Qwen3), reading and writing
//! a caller-owned KV cache.
//!
//! GQA without copying K/V: the `groups` query heads that share a KV head are stacked along the
//! row axis, so one batched matmul per KV head covers them (`[kv, groups·k, d] · [kv, d, L]`).
//! When the layer cache keeps its K/V on the host (the CPU backend), the product, softmax and
//! weighted sum run in [`cpu_attention`](crate::model::cpu_attention) instead.

use burn::tensor::{Tensor, TensorData, activation::softmax, backend::Backend};

use crate::config::ModelConfig;
use crate::error::Result;
use crate::kv_cache::{LayerCache, host_f32};
use crate::model::{Linear, Loader, RmsNorm, Rope};

/// One attention block.
#[derive(Debug, Clone)]
pub struct Attention<B: Backend> {
    pub q_proj: Linear<B>,
    pub k_proj: Linear<B>,
    pub v_proj: Linear<B>,
    pub o_proj: Linear<B>,
    /// Per-head RMSNorm on q and k (Qwen3).
    pub q_norm: Option<RmsNorm<B>>,
    pub k_norm: Option<RmsNorm<B>>,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
}

/// Per-forward inputs shared by every layer: the RoPE tables and the causal mask.
pub struct AttentionInputs<B: Backend> {
    /// Cache length before this forward (absolute position of the first new token).
    pub start: usize,
    /// `[k, head_dim/2]`
    pub cos: Tensor<B, 2>,
    pub sin: Tensor<B, 2>,
    /// Additive mask `[1, groups·k, start+k]` (0 or −∞); `None` when `k == 1`.
    pub mask: Option<Tensor<B, 3>>,
}

impl<B: Backend> Attention<B> {
    /// Load `{prefix}.{q,k,v,o}_proj` (+ `q_norm`, `k_norm` for Qwen3).
    pub fn load(loader: &Loader<'_, B>, prefix: &str, c: &ModelConfig) -> Result<Self> {
        let (h, d) = (c.hidden_size, c.head_dim);
        let (nq, nkv) = (c.num_attention_heads, c.num_key_value_heads);
        let qk_norm = c.architecture.has_qk_norm();
        let norm = |name: &str| -> Result<Option<RmsNorm<B>>> {
            if qk_norm {
                Ok(Some(RmsNorm::load(
                    loader,
                    &format!("{prefix}.{name}.weight"),
                    d,
                    c.rms_norm_eps,
                )?))
            } else {
                Ok(None)
            }
        };
        Ok(Self {
            q_proj: loader.linear(&format!("{prefix}.q_proj"), h, nq * d, c.qkv_bias())?,
            k_proj: loader.linear(&format!("{prefix}.k_proj"), h, nkv * d, c.qkv_bias())?,
            v_proj: loader.linear(&format!("{prefix}.v_proj"), h, nkv * d, c.qkv_bias())?,
            o_proj: loader.linear(&format!("{prefix}.o_proj"), nq * d, h, c.o_bias())?,
            q_norm: norm("q_norm")?,
            k_norm: norm("k_norm")?,
            n_heads: nq,
            n_kv_heads: nkv,
            head_dim: d,
        })
    }

    /// Attend `k` new tokens to the cached prefix and themselves; appends their K/V to `cache`.
    /// The caller has checked the capacity.
    ///
    /// # Shapes
    /// - `x`: `[k, hidden]` → `[k, hidden]`
    pub fn forward(
        &self,
        x: Tensor<B, 2>,
        cache: &mut LayerCache<B>,
        inputs: &AttentionInputs<B>,
    ) -> Tensor<B, 2> {
        let [k, _] = x.dims();
        let (nq, nkv, d) = (self.n_heads, self.n_kv_heads, self.head_dim);
        let groups = nq / nkv;
        let total = inputs.start + k;

        // 1. projections → [k, heads, d]
        let q = self.q_proj.forward(x.clone()).reshape([k, nq, d]);
        let key = self.k_proj.forward(x.clone()).reshape([k, nkv, d]);
        let value = self.v_proj.forward(x).reshape([k, nkv, d]);
        // 2. per-head norm (Qwen3), then heads first: [heads, k, d]
        let q = match &self.q_norm {
            Some(n) => n.forward(q),
            None => q,
        };
        let key = match &self.k_norm {
            Some(n) => n.forward(key),
            None => key,
        };
        let q = Rope::apply(q.swap_dims(0, 1), &inputs.cos, &inputs.sin);
        let key = Rope::apply(key.swap_dims(0, 1), &inputs.cos, &inputs.sin);
        let value = value.swap_dims(0, 1);

        // 3–5 on the host: write K/V rows, attend, upload [k, heads·d]
        if let Some(host) = cache.host_mut() {
            let (device, dtype) = (q.device(), q.dtype());
            let (q, key, value) = (host_f32(q), host_f32(key), host_f32(value));
            host.write(inputs.start, k, &key, &value);
            let mut out = vec![0.0f32; k * nq * d];
            host.attend(&q, nq, inputs.start, k, &mut out);
            let out = Tensor::from_data(TensorData::new(out, [k, nq * d]), (&device, dtype));
            return self.o_proj.forward(out);
        }

        // 3. append to the cache, then view the filled prefix: [kv, total, d]
        cache.write(inputs.start, key, value);
        let (keys, values) = cache.prefix(total);

        // 4. scores: [kv, groups·k, d] · [kv, d, total] → [kv, groups·k, total]
        let q = q.reshape([nkv, groups * k, d]);
        let scale = (d as f64).powf(-0.5);
        let mut scores = q.matmul(keys.swap_dims(1, 2)) * scale;
        if let Some(mask) = &inputs.mask {
            scores = scores + mask.clone();
        }
        let probs = softmax(scores, 2);
        // 5. [kv, groups·k, d] → [heads, k, d] → [k, heads·d]
        let out = probs
            .matmul(values)
            .reshape([nq, k, d])
            .swap_dims(0, 1)
            .reshape([k, nq * d]);
        self.o_proj.forward(out)
    }

    /// Bytes of weights read per token.
    pub fn weight_bytes(&self) -> usize {
        self.q_proj.weight_bytes()
            + self.k_proj.weight_bytes()
            + self.v_proj.weight_bytes()
            + self.o_proj.weight_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::DType;

    type B = Flex;

    fn weights(rows: usize, cols: usize, seed: usize) -> Tensor<B, 2> {
        let w: Vec<f32> = (0..rows * cols)
            .map(|i| (((i + seed) * 7919 % 211) as f32 / 211.0 - 0.5) * 0.4)
            .collect();
        Tensor::from_data(TensorData::new(w, [rows, cols]), &Default::default())
    }

    use crate::kv_cache::{KvType, KvTypes};

    /// RoPE tables and the additive causal mask, as `Model::attention_inputs` builds them.
    fn inputs(rope: &Rope, groups: usize, start: usize, k: usize) -> AttentionInputs<B> {
        let dev = Default::default();
        let (cos, sin) = rope.tables::<B>(start, k, &dev, DType::F32);
        let total = start + k;
        let mask = (k > 1).then(|| {
            let mut m = vec![0.0f32; groups * k * total];
            for g in 0..groups {
                for i in 0..k {
                    m[(g * k + i) * total + start + i + 1..(g * k + i + 1) * total]
                        .fill(f32::NEG_INFINITY);
                }
            }
            Tensor::from_data(TensorData::new(m, [1, groups * k, total]), &dev)
        });
        AttentionInputs {
            start,
            cos,
            sin,
            mask,
        }
    }

    /// The host kernel and burn's ops over the same cache contents, for an `f32` and an `f16`
    /// cache (burn's holds `f16` tensors, the host one halves: the same rounded values).
    #[test]
    fn host_cache_attention_equals_the_burn_path() {
        let dev = Default::default();
        let (hidden, nq, nkv, d) = (48, 6, 2, 32);
        let attn = Attention::<B> {
            q_proj: Linear::new(weights(nq * d, hidden, 1), None),
            k_proj: Linear::new(weights(nkv * d, hidden, 2), None),
            v_proj: Linear::new(weights(nkv * d, hidden, 3), None),
            o_proj: Linear::new(weights(hidden, nq * d, 4), None),
            q_norm: None,
            k_norm: None,
            n_heads: nq,
            n_kv_heads: nkv,
            head_dim: d,
        };
        let rope = Rope {
            inv_freq: (0..d / 2)
                .map(|i| 1.0 / 10000f32.powf((2 * i) as f32 / d as f32))
                .collect(),
        };
        let capacity = 16;
        // the types burn's cache holds too (the block types are the host kernel's alone), for K
        // and V alike and each way round
        let (f32_, f16_) = (KvType::F32, KvType::F16);
        for kv_type in [(f32_, f32_), (f16_, f16_), (f16_, f32_), (f32_, f16_)] {
            let kv_type = KvTypes {
                k: kv_type.0,
                v: kv_type.1,
            };
            let mut burn_cache = LayerCache::<B>::new(nkv, capacity, d, &dev, DType::F32, kv_type);
            let mut host_cache =
                LayerCache::<B>::new_host(nkv, capacity, d, &dev, DType::F32, kv_type);
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(2)
                .build()
                .unwrap();
            // (start, k): prefill 5, three decode steps, then roll back to 6 and append 4 + 1
            let steps = [(0, 5), (5, 1), (6, 1), (7, 1), (6, 4), (10, 1)];
            for (n, &(start, k)) in steps.iter().enumerate() {
                let x: Vec<f32> = (0..k * hidden)
                    .map(|i| ((i * 31 + n * 17) as f32 * 0.13).sin())
                    .collect();
                let x = Tensor::<B, 2>::from_data(TensorData::new(x, [k, hidden]), &dev);
                let inp = inputs(&rope, nq / nkv, start, k);
                let want = attn
                    .forward(x.clone(), &mut burn_cache, &inp)
                    .into_data()
                    .into_vec::<f32>()
                    .unwrap();
                let got = pool
                    .install(|| attn.forward(x, &mut host_cache, &inp))
                    .into_data()
                    .into_vec::<f32>()
                    .unwrap();
                assert_eq!(got.len(), k * hidden);
                assert!(got.iter().all(|x| x.is_finite()), "non-finite output");
                let err = want
                    .iter()
                    .zip(&got)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(
                    err <= 1e-5,
                    "{kv_type} step {n} (start {start}, k {k}): {err}"
                );
            }
            // the host buffers hold what the burn cache holds
            let (bk, bv) = burn_cache.prefix(11);
            let (hk, hv) = host_cache.prefix(11);
            for (a, b) in [(bk, hk), (bv, hv)] {
                let (a, b) = (host_f32(a), host_f32(b));
                let err = a
                    .iter()
                    .zip(&b)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(err <= 1e-6, "{kv_type} cache contents: {err}");
            }
        }
    }
}
