//! CPU backend comparison on the engine's two matmul shapes (d = 2048, f32):
//! decode-shaped `1×d · d×d` (a matrix–vector product, memory-bound) and prefill-shaped
//! `128×d · d×d` (compute-bound). The weight is a transposed view of a PyTorch-layout `[out, in]`
//! matrix, exactly as `model::Linear` holds it, plus a contiguous `[in, out]` variant.
//!
//! Run: `cargo bench -p specsweep-engine --bench backends` (burn `flex`), and with
//! `--features bench-ndarray` to add burn's `ndarray` backend.
//!
//! Group `quant_d2048` measures burn's own quantization (`Tensor::quantize_dynamic`, symmetric
//! 8-bit, blocks of 32 — the scheme closest to ggml's Q8_0) against the engine's Q8_0 kernels
//! (`specsweep_engine::quant`) on the same shapes: the reason the projections use our kernels.

use std::hint::black_box;
use std::time::Duration;

use burn::tensor::{Tensor, TensorData, backend::Backend};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const D: usize = 2048;

fn data(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s as f32 / u32::MAX as f32) - 0.5
        })
        .collect()
}

fn bench_backend<B: Backend>(c: &mut Criterion, name: &str) {
    let dev = B::Device::default();
    let w = Tensor::<B, 2>::from_data(TensorData::new(data(D * D, 7), [D, D]), &dev);
    let w_view = w.clone().transpose();
    let w_contig = Tensor::<B, 2>::from_data(w_view.clone().into_data(), &dev);
    let mut group = c.benchmark_group(format!("matmul_d{D}"));
    group
        .measurement_time(Duration::from_secs(3))
        .sample_size(20);
    for m in [1usize, 128] {
        let x = Tensor::<B, 2>::from_data(TensorData::new(data(m * D, 3), [m, D]), &dev);
        group.throughput(Throughput::Elements((2 * m * D * D) as u64));
        for (layout, wt) in [("view", &w_view), ("contig", &w_contig)] {
            group.bench_function(format!("{name}/{layout}/m{m}"), |b| {
                b.iter(|| {
                    let y = x.clone().matmul(wt.clone());
                    // Force execution and a host sync, as a forward does once.
                    black_box(y.slice([0..1, 0..1]).into_data())
                })
            });
        }
    }
    group.finish();
}

/// burn's block-quantized weight in a matmul vs the engine's Q8_0 kernel, same shapes.
fn bench_quant(c: &mut Criterion) {
    use burn::tensor::quantization::{QuantLevel, QuantScheme, QuantValue};
    use specsweep_engine::quant::{MatmulScratch, QuantFormat, QuantMatrix, matmul};
    type B = burn::backend::Flex;
    let dev = Default::default();
    let w_host = data(D * D, 7);
    let w = Tensor::<B, 2>::from_data(TensorData::new(w_host.clone(), [D, D]), &dev);
    let scheme = QuantScheme::default()
        .with_value(QuantValue::Q8S)
        .with_level(QuantLevel::block([32]));
    let w_burn_q = w.transpose().quantize_dynamic(&scheme);
    let w_ours = QuantMatrix::quantize("w", QuantFormat::Q8_0, D, D, &w_host).expect("quantize");
    let mut group = c.benchmark_group(format!("quant_d{D}"));
    group
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    for m in [1usize, 16] {
        let x_host = data(m * D, 3);
        let x = Tensor::<B, 2>::from_data(TensorData::new(x_host.clone(), [m, D]), &dev);
        group.throughput(Throughput::Elements((2 * m * D * D) as u64));
        group.bench_function(format!("burn_q8s_block32/m{m}"), |b| {
            b.iter(|| {
                let y = x.clone().matmul(w_burn_q.clone());
                black_box(y.slice([0..1, 0..1]).into_data())
            })
        });
        let mut out = vec![0.0f32; m * D];
        let mut scratch = MatmulScratch::new();
        group.bench_function(format!("specsweep_q8_0/m{m}"), |b| {
            b.iter(|| {
                matmul(black_box(&x_host), m, &w_ours, &mut out, &mut scratch).expect("matmul");
                black_box(out[0])
            })
        });
    }
    group.finish();
}

fn backends(c: &mut Criterion) {
    bench_quant(c);
    bench_backend::<burn::backend::Flex>(c, "flex");
    #[cfg(feature = "bench-ndarray")]
    bench_backend::<burn::backend::NdArray>(c, "ndarray");
}

criterion_group!(benches, backends);
criterion_main!(benches);
