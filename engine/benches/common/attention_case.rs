//! One call of the CPU attention kernel over a random cache, shared by `benches/attention.rs`
//! (criterion, wall clock) and `examples/attention_costs.rs` (CPU time of one thread).

use specsweep_engine::model::cpu_attention::{AttnScratch, AttnShape, KvElem, attend};

/// The head shapes measured: Qwen2.5-1.5B (12 query / 2 KV heads of 128) and SmolLM2-135M
/// (9 / 3 of 64).
pub const SHAPES: [(&str, AttnShape); 2] = [
    (
        "qwen2.5-1.5b",
        AttnShape {
            n_heads: 12,
            n_kv_heads: 2,
            head_dim: 128,
        },
    ),
    (
        "smollm2-135m",
        AttnShape {
            n_heads: 9,
            n_kv_heads: 3,
            head_dim: 64,
        },
    ),
];

/// Values uniform in [−1, 1) from a xorshift stream (the kernel's time does not depend on them).
fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// `k` new query rows attending to `depth` cached positions and themselves.
pub struct Case<E> {
    shape: AttnShape,
    depth: usize,
    k: usize,
    q: Vec<f32>,
    keys: Vec<E>,
    values: Vec<E>,
    out: Vec<f32>,
    scratch: AttnScratch,
}

impl<E: KvElem> Case<E> {
    pub fn new(shape: AttnShape, depth: usize, k: usize) -> Self {
        let d = shape.head_dim;
        let n = shape.n_kv_heads * (depth + k) * d;
        let cache = |seed| -> Vec<E> {
            let mut rows = vec![E::ZERO; n / E::PER];
            for (row, x) in rows
                .chunks_exact_mut(d / E::PER)
                .zip(random(n, seed).chunks_exact(d))
            {
                E::put_row(row, x);
            }
            rows
        };
        Self {
            shape,
            depth,
            k,
            q: random(shape.n_heads * k * shape.head_dim, 3),
            keys: cache(1),
            values: cache(2),
            out: vec![0.0; k * shape.n_heads * shape.head_dim],
            scratch: AttnScratch::default(),
        }
    }

    /// One `attend` call; returns an output element so the call cannot be optimised away.
    pub fn run(&mut self) -> f32 {
        attend(
            std::hint::black_box(&self.q),
            &self.keys,
            &self.values,
            self.depth + self.k,
            self.shape,
            self.depth,
            self.k,
            &mut self.out,
            &mut self.scratch,
        );
        self.out[0]
    }

    /// Query-key plus probability-value multiply-adds of one call.
    pub fn macs(&self) -> f64 {
        let s = self.shape;
        2.0 * (s.n_heads * self.k * (self.depth + self.k) * s.head_dim) as f64
    }
}
