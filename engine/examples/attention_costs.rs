//! Cost of the CPU attention kernel (`model::cpu_attention::attend`) at depth, in CPU time of one
//! thread (`/proc/thread-self/schedstat`), so A/B runs survive a shared machine.
//!
//! For each head shape and cache element type (`f32`, `f16`, `q8_0`, `q4_0`, `q5_1`, `iq4_nl`) it times `k` query rows against `depth` cached
//! keys (random values: the time does not depend on them) and prints µs per call and the
//! multiply-adds per nanosecond of the `q·Kᵀ` and `p·V` products.
//!
//! `cargo run -p specsweep-engine --example attention_costs -- [DEPTH] [K_LIST]`, e.g.
//! `-- 4096 1,9,16` (the defaults). Shapes: Qwen2.5-1.5B (12 query / 2 KV heads of 128) and
//! SmolLM2-135M (9 / 3 of 64), as `benches/attention.rs`. Best of 5 runs of ~0.2 s each.

use half::f16;
use specsweep_engine::model::cpu_attention::{
    AttnShape, BlockIq4Nl, BlockQ4_0, BlockQ5_1, BlockQ8_0, KvElem,
};

#[path = "../benches/common/attention_case.rs"]
mod attention_case;
use attention_case::{Case, SHAPES};

/// CPU time of the calling thread, ns.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Best CPU time of one call, µs, and the multiply-adds per ns it reached.
fn time<E: KvElem>(shape: AttnShape, depth: usize, k: usize) -> (f64, f64) {
    let mut case = Case::<E>::new(shape, depth, k);
    // enough calls per run that the scheduler's ticks are small against it (~0.2 s)
    let t0 = cpu_ns();
    std::hint::black_box(case.run());
    let one = (cpu_ns() - t0).max(1);
    let calls = (200_000_000 / one).clamp(5, 2000) as usize;
    let us = (0..5)
        .map(|_| {
            let t0 = cpu_ns();
            for _ in 0..calls {
                std::hint::black_box(case.run());
            }
            (cpu_ns() - t0) as f64 / calls as f64 / 1e3
        })
        .fold(f64::INFINITY, f64::min);
    (us, case.macs() / us / 1e3)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let depth: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(4096);
    let ks: Vec<usize> = args
        .get(2)
        .map(|s| s.split(',').filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 9, 16]);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool");
    pool.install(|| {
        println!("one thread, depth {depth}");
        for (name, shape) in SHAPES {
            for &k in &ks {
                let line = [
                    ("f32", time::<f32>(shape, depth, k)),
                    ("f16", time::<f16>(shape, depth, k)),
                    ("q8_0", time::<BlockQ8_0>(shape, depth, k)),
                    ("q4_0", time::<BlockQ4_0>(shape, depth, k)),
                    ("q5_1", time::<BlockQ5_1>(shape, depth, k)),
                    ("iq4_nl", time::<BlockIq4Nl>(shape, depth, k)),
                ]
                .map(|(t, (us, rate))| format!("{t} {us:8.1} us ({rate:.1} MAC/ns)"));
                println!(
                    "{name} {}/{} x {} k={k:<3} {}",
                    shape.n_heads,
                    shape.n_kv_heads,
                    shape.head_dim,
                    line.join(" | ")
                );
            }
        }
    });
}
