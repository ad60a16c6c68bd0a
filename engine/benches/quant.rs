//! Kernel throughput of `specsweep_engine::quant::matmul` per weight format, in GB/s of weight bytes
//! streamed, beside the machine's measured memory read bandwidth (the decode roofline).
//!
//! Groups:
//! - `memory`: a streaming read (sum of a 512 MiB buffer, split over the pool like the kernels) and
//!   a memcpy of the same size: the bandwidth the kernels are compared against;
//! - `decode`: `1 × 1536 · (1536 → 8960)` and `1 × 8960 · (8960 → 1536)` (Qwen2.5-1.5B's FFN up and
//!   down projections, 13.8 M weights each, far larger than L2) for every format;
//! - `verify`: the up projection with `m = 1..=17` activation rows (speculative verify of `k = m − 1`
//!   drafted tokens) for the formats real GGUF files use; `T(m) / T(1)` is the verify cost. Ids are
//!   `format/isa/mNN`; Q4_K and Q6_K run every AVX-512 kernel family the CPU has side by side
//!   (e.g. `verify/Q4_K/avx512/m09` against `verify/Q4_K/avx512vnni/m09`).
//!
//! Run: `cargo bench -p specsweep-engine --bench quant` (add a filter such as `decode/Q4_K`).
//! Weights are random blocks: the kernels' speed does not depend on weight values.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use half::f16;
use rayon::prelude::*;
use specsweep_engine::quant::{
    Isa, MatmulScratch, QuantFormat, QuantMatrix, matmul, matmul_with, without_tiles,
};

/// Qwen2.5-1.5B: hidden size and FFN size.
const HIDDEN: usize = 1536;
const FFN: usize = 8960;

/// Deterministic xorshift bytes.
fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// A `rows × cols` matrix of random blocks with small finite f16 scales.
fn random_matrix(format: QuantFormat, rows: usize, cols: usize) -> QuantMatrix {
    if !format.is_block_quantized() {
        let v: Vec<f32> = random_bytes(rows * cols, 7)
            .into_iter()
            .map(|b| (f32::from(b) - 128.0) / 128.0)
            .collect();
        return QuantMatrix::quantize("bench", format, rows, cols, &v).expect("quantize");
    }
    let mut data = random_bytes(format.bytes_for(rows, cols), 11);
    let scale_offsets = format.f16_fields();
    let scale = f16::from_f32(0.01).to_le_bytes();
    for blk in data.chunks_exact_mut(format.block_bytes()) {
        for &at in scale_offsets {
            blk[at..at + 2].copy_from_slice(&scale);
        }
    }
    QuantMatrix::from_raw("bench", format, rows, cols, data).expect("geometry")
}

fn activations(m: usize, cols: usize) -> Vec<f32> {
    random_bytes(m * cols, 3)
        .into_iter()
        .map(|b| (f32::from(b) - 128.0) / 64.0)
        .collect()
}

fn config(c: &mut Criterion) -> &mut Criterion {
    c
}

fn memory(c: &mut Criterion) {
    let bytes = 512 << 20;
    let src: Vec<u64> = (0..bytes / 8).map(|i| i as u64).collect();
    let mut dst = vec![0u64; bytes / 8];
    let mut g = config(c).benchmark_group("memory");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("read", |b| {
        b.iter(|| {
            let chunk = src.len().div_ceil(rayon::current_num_threads() * 4);
            let s: u64 = src
                .par_chunks(chunk)
                .map(|c| c.iter().fold(0u64, |a, v| a.wrapping_add(*v)))
                .sum();
            black_box(s)
        })
    });
    g.bench_function("memcpy", |b| {
        b.iter(|| {
            let chunk = src.len().div_ceil(rayon::current_num_threads() * 4);
            dst.par_chunks_mut(chunk)
                .zip(src.par_chunks(chunk))
                .for_each(|(d, s)| d.copy_from_slice(s));
            black_box(&dst);
        })
    });
    g.finish();
}

fn decode(c: &mut Criterion) {
    eprintln!(
        "quant kernels: {} on {} threads",
        Isa::detect().name(),
        rayon::current_num_threads()
    );
    let mut g = c.benchmark_group("decode");
    g.sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    for format in QuantFormat::ALL {
        for (name, rows, cols) in [
            ("up_1536x8960", FFN, HIDDEN),
            ("down_8960x1536", HIDDEN, FFN),
        ] {
            let w = random_matrix(format, rows, cols);
            let x = activations(1, cols);
            let mut out = vec![0.0; rows];
            let mut scratch = MatmulScratch::new();
            g.throughput(Throughput::Bytes(w.bytes().len() as u64));
            g.bench_function(BenchmarkId::new(format.name(), name), |b| {
                b.iter(|| matmul(black_box(&x), 1, &w, &mut out, &mut scratch).expect("matmul"))
            });
        }
    }
    g.finish();
}

fn verify(c: &mut Criterion) {
    let mut g = c.benchmark_group("verify");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for format in [
        QuantFormat::Q4K,
        QuantFormat::Q6K,
        QuantFormat::Q8_0,
        QuantFormat::Q4_1,
        QuantFormat::Iq4Nl,
        QuantFormat::Iq4Xs,
        QuantFormat::Q3K,
        QuantFormat::Q2K,
        // the loader's code copies of the i-quants (`quant::iq_codes`)
        QuantFormat::Iq2Planes,
        QuantFormat::Iq3SNib,
        QuantFormat::Iq1Shift,
        QuantFormat::F16,
    ] {
        let w = random_matrix(format, FFN, HIDDEN);
        // Q4_K / Q6_K: every AVX-512 kernel family this CPU runs, side by side
        let isas: Vec<Isa> = if matches!(format, QuantFormat::Q4K | QuantFormat::Q6K) {
            Isa::available()
                .into_iter()
                .filter(|&i| matches!(i, Isa::Avx512 | Isa::Avx512Vnni) || i == Isa::detect())
                .collect()
        } else {
            vec![Isa::detect()]
        };
        // the block formats also in the row-interleaved layout (what a model loads on a CPU
        // with AVX-512 VNNI), on its batch-invariant kernels: ids `Q4_K/x16/mNN`
        let x16 = Isa::available()
            .contains(&Isa::Avx512Vnni)
            .then(|| w.clone().interleave())
            .filter(|x| x.is_interleaved());
        // every verify batch, then two prefill-sized ones
        for m in (1..=17).chain([32, 128]) {
            let x = activations(m, HIDDEN);
            let mut out = vec![0.0; m * FFN];
            let mut scratch = MatmulScratch::new();
            g.throughput(Throughput::Bytes(w.bytes().len() as u64));
            for &isa in &isas {
                let id = BenchmarkId::new(
                    format!("{}/{}", format.name(), isa.name()),
                    format!("m{m:02}"),
                );
                g.bench_function(id, |b| {
                    b.iter(|| {
                        matmul_with(isa, black_box(&x), m, &w, &mut out, &mut scratch)
                            .expect("matmul")
                    })
                });
            }
            if let Some(x16) = &x16 {
                let id = BenchmarkId::new(format!("{}/x16", format.name()), format!("m{m:02}"));
                g.bench_function(id, |b| {
                    b.iter(|| {
                        without_tiles(|| {
                            matmul_with(
                                Isa::detect(),
                                black_box(&x),
                                m,
                                x16,
                                &mut out,
                                &mut scratch,
                            )
                        })
                        .expect("matmul")
                    })
                });
            }
        }
    }
    g.finish();
}

criterion_group!(benches, memory, decode, verify);
criterion_main!(benches);
