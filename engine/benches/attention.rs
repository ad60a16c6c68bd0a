//! The CPU attention kernel (`model::cpu_attention::attend`) over a cached context, as a decode
//! step (`k = 1`) and a speculative verify (`k = 9`) see it, with `f32`, `f16` and `q8_0` caches.
//!
//! Ids are `attention/{shape}/{kv}/d{depth}/k{k}`; throughput is in multiply-adds (`q·Kᵀ` and
//! `p·V`). Shapes:
//! Qwen2.5-1.5B (12 query / 2 KV heads of 128) and SmolLM2-135M (9 / 3 of 64). For CPU-time
//! figures that survive a shared machine, `cargo run -p specsweep-engine --example
//! attention_costs` times the same calls in one thread's CPU time.
//!
//! Run: `cargo bench -p specsweep-engine --bench attention`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use half::f16;
use specsweep_engine::model::cpu_attention::{AttnShape, BlockQ8_0, KvElem};

#[path = "common/attention_case.rs"]
mod attention_case;
use attention_case::{Case, SHAPES};

fn cases<E: KvElem>(c: &mut Criterion, name: &str, kv: &str, shape: AttnShape) {
    let mut group = c.benchmark_group("attention");
    group
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    for depth in [512usize, 4096] {
        for k in [1usize, 9] {
            let mut case = Case::<E>::new(shape, depth, k);
            group.throughput(Throughput::Elements(case.macs() as u64));
            group.bench_function(
                BenchmarkId::from_parameter(format!("{name}/{kv}/d{depth}/k{k}")),
                |b| b.iter(|| black_box(case.run())),
            );
        }
    }
    group.finish();
}

fn attention(c: &mut Criterion) {
    for (name, shape) in SHAPES {
        cases::<f32>(c, name, "f32", shape);
        cases::<f16>(c, name, "f16", shape);
        cases::<BlockQ8_0>(c, name, "q8_0", shape);
    }
}

criterion_group!(benches, attention);
criterion_main!(benches);
