//! The CPU attention kernel (`model::cpu_attention::attend`) over a cached context, as a decode
//! step (`k = 1`) and a speculative verify (`k = 9`) see it, with `f32` and `f16` caches.
//!
//! Ids are `attention/{shape}/{kv}/d{depth}/k{k}`; throughput is in query rows. Shapes:
//! Qwen2.5-1.5B (12 query / 2 KV heads of 128) and SmolLM2-135M (9 / 3 of 64). For CPU-time
//! figures that survive a shared machine, `cargo run -p specsweep-engine --example
//! attention_costs` times the same calls in one thread's CPU time.
//!
//! Run: `cargo bench -p specsweep-engine --bench attention`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use half::f16;
use specsweep_engine::model::cpu_attention::{AttnScratch, AttnShape, KvElem, attend};

/// Values uniform in [−1, 1) from a xorshift stream.
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

fn case<E: KvElem>(c: &mut Criterion, name: &str, kv: &str, shape: AttnShape) {
    let mut group = c.benchmark_group("attention");
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for depth in [512usize, 4096] {
        for k in [1usize, 9] {
            let cap = depth + k;
            let d = shape.head_dim;
            let cache = |seed| -> Vec<E> {
                random(shape.n_kv_heads * cap * d, seed)
                    .into_iter()
                    .map(E::from_f32)
                    .collect()
            };
            let (keys, values) = (cache(1), cache(2));
            let q = random(shape.n_heads * k * d, 3);
            let mut out = vec![0.0f32; k * shape.n_heads * d];
            let mut scratch = AttnScratch::default();
            group.throughput(Throughput::Elements(k as u64));
            group.bench_function(
                BenchmarkId::from_parameter(format!("{name}/{kv}/d{depth}/k{k}")),
                |b| {
                    b.iter(|| {
                        attend(
                            black_box(&q),
                            &keys,
                            &values,
                            cap,
                            shape,
                            depth,
                            k,
                            &mut out,
                            &mut scratch,
                        );
                        black_box(out[0])
                    })
                },
            );
        }
    }
    group.finish();
}

fn attention(c: &mut Criterion) {
    for (name, shape) in [
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
    ] {
        case::<f32>(c, name, "f32", shape);
        case::<f16>(c, name, "f16", shape);
    }
}

criterion_group!(benches, attention);
criterion_main!(benches);
