//! Cost of the CPU attention kernel (`model::cpu_attention::attend`) at depth, in CPU time of one
//! thread (`/proc/thread-self/schedstat`), so A/B runs survive a shared machine.
//!
//! For each head shape and cache element type it times `k` query rows against `depth` cached
//! keys (random values: the time does not depend on them) and prints µs per call and the
//! multiply-adds per nanosecond of the `q·Kᵀ` and `p·V` products.
//!
//! `cargo run -p specsweep-engine --example attention_costs -- [DEPTH] [K_LIST]`, e.g.
//! `-- 4096 1,9,16` (the defaults). Shapes: Qwen2.5-1.5B (12 query / 2 KV heads of 128) and
//! SmolLM2-135M (9 / 3 of 64). Best of 5 runs of ~0.2 s each.

use half::f16;
use specsweep_engine::model::cpu_attention::{AttnScratch, AttnShape, KvElem, attend};

/// CPU time of the calling thread, ns.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

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

/// Best CPU time of one call, µs.
fn time<E: KvElem>(shape: AttnShape, depth: usize, k: usize) -> f64 {
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
    // enough calls per run that the scheduler's ticks are small against it (~0.2 s)
    let t0 = cpu_ns();
    attend(
        &q,
        &keys,
        &values,
        cap,
        shape,
        depth,
        k,
        &mut out,
        &mut scratch,
    );
    let one = (cpu_ns() - t0).max(1);
    let calls = (200_000_000 / one).clamp(5, 2000) as usize;
    (0..5)
        .map(|_| {
            let t0 = cpu_ns();
            for _ in 0..calls {
                attend(
                    &q,
                    &keys,
                    &values,
                    cap,
                    shape,
                    depth,
                    k,
                    &mut out,
                    &mut scratch,
                );
            }
            (cpu_ns() - t0) as f64 / calls as f64 / 1e3
        })
        .fold(f64::INFINITY, f64::min)
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
        for (name, shape) in [
            (
                "1.5B  12/2 x 128",
                AttnShape {
                    n_heads: 12,
                    n_kv_heads: 2,
                    head_dim: 128,
                },
            ),
            (
                "SmolLM2 9/3 x 64",
                AttnShape {
                    n_heads: 9,
                    n_kv_heads: 3,
                    head_dim: 64,
                },
            ),
        ] {
            for &k in &ks {
                let macs = 2.0 * (shape.n_heads * k * (depth + k) * shape.head_dim) as f64;
                let line = [
                    ("f32", time::<f32>(shape, depth, k)),
                    ("f16", time::<f16>(shape, depth, k)),
                ]
                .map(|(t, us)| format!("{t} {us:8.1} us ({:.1} MAC/ns)", macs / us / 1e3));
                println!("{name} k={k:<3} {}", line.join(" | "));
            }
        }
    });
}
