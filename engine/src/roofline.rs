//! The memory-bandwidth roofline for decoding: a decode step reads every weight once, so
//! `tok/s ≤ bandwidth ÷ weight bytes per token` (Williams, Waterman & Patterson 2009, "Roofline").
//! Bandwidth is measured by summing a buffer much larger than the last-level cache in parallel:
//! on the CPU with the thread pool the decode uses, on a GPU with the backend's own reduction over
//! a device tensor (so the roofline counts what burn's kernels can read, not a datasheet figure).

use std::time::Instant;

use rayon::prelude::*;

use crate::device::DeviceSpec;
use crate::error::{EngineError, Result};

/// A bandwidth measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bandwidth {
    /// Best observed read bandwidth, bytes per second.
    pub bytes_per_s: f64,
    /// Size of the buffer read, bytes.
    pub buffer_bytes: usize,
    /// Threads used.
    pub threads: usize,
}

impl Bandwidth {
    /// Upper bound on decode tokens/s for a model reading `weight_bytes` per token.
    pub fn roofline_tok_per_s(&self, weight_bytes: usize) -> f64 {
        if weight_bytes == 0 {
            0.0
        } else {
            self.bytes_per_s / weight_bytes as f64
        }
    }
}

/// Read a `buffer_bytes` buffer `reps` times with `threads` threads (None: all cores) and keep
/// the fastest pass.
pub fn measure_read_bandwidth(
    buffer_bytes: usize,
    reps: usize,
    threads: Option<usize>,
) -> Result<Bandwidth> {
    let n = (buffer_bytes / 8).max(1);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.unwrap_or(0))
        .build()
        .map_err(|e| EngineError::Invalid(format!("cannot start threads: {e}")))?;
    let buf: Vec<u64> =
        pool.install(|| (0..n as u64).into_par_iter().map(|i| i ^ 0x5555).collect());
    let mut best = f64::INFINITY;
    let mut checksum = 0u64;
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let s = pool.install(|| {
            buf.par_chunks(1 << 16)
                .map(|c| c.iter().fold(0u64, |a, &b| a.wrapping_add(b)))
                .reduce(|| 0, u64::wrapping_add)
        });
        best = best.min(t.elapsed().as_secs_f64());
        checksum = checksum.wrapping_add(std::hint::black_box(s));
    }
    std::hint::black_box(checksum);
    Ok(Bandwidth {
        bytes_per_s: (n * 8) as f64 / best,
        buffer_bytes: n * 8,
        threads: pool.current_num_threads(),
    })
}

/// Read bandwidth of `device`'s memory: the CPU's (as [`measure_read_bandwidth`]) or a GPU's,
/// timed over full reductions of a `buffer_bytes` f32 tensor that lives on it.
pub fn measure_device_bandwidth(
    device: DeviceSpec,
    buffer_bytes: usize,
    reps: usize,
    threads: Option<usize>,
) -> Result<Bandwidth> {
    match device {
        DeviceSpec::Cpu => measure_read_bandwidth(buffer_bytes, reps, threads),
        #[cfg(feature = "wgpu")]
        DeviceSpec::Wgpu(i) => device.guard(|| {
            let dev = DeviceSpec::wgpu_device(i);
            Ok(tensor_read_bandwidth::<burn::backend::Wgpu>(
                &dev,
                buffer_bytes,
                reps,
            ))
        }),
        #[cfg(feature = "cuda")]
        DeviceSpec::Cuda(i) => {
            let dev = DeviceSpec::cuda_device(i)?;
            device.guard(|| {
                Ok(tensor_read_bandwidth::<burn::backend::Cuda>(
                    &dev,
                    buffer_bytes,
                    reps,
                ))
            })
        }
        #[allow(unreachable_patterns)]
        other => Err(EngineError::Device(other.to_string())),
    }
}

/// Read bandwidth of `device` through burn's own kernels: the fastest of `reps` timed passes of
/// each probe over a `buffer_bytes` f32 tensor, each pass waited for by reading a value back.
/// The probes are a full `sum()` and a row-wise `sum_dim` (which parallelises where a full
/// reduction may not); which one a backend runs fastest differs, so the best one is the
/// ceiling. (No element-wise probe: with kernel fusion its unread output need not be written.)
/// A first, untimed pass of each materialises the tensor and compiles the kernels.
pub fn tensor_read_bandwidth<B: burn::tensor::backend::Backend>(
    device: &B::Device,
    buffer_bytes: usize,
    reps: usize,
) -> Bandwidth {
    use burn::tensor::{Distribution, ElementConversion, Tensor};
    let cols = 4096;
    let rows = (buffer_bytes / 4 / cols).max(1);
    let t = Tensor::<B, 2>::random([rows, cols], Distribution::Uniform(0.0, 1.0), device);
    let bytes = rows * cols * 4;
    let first = |x: Tensor<B, 2>| -> f64 { x.slice([0..1, 0..1]).into_scalar().elem::<f64>() };
    let probes: [&dyn Fn() -> f64; 2] = [&|| t.clone().sum().into_scalar().elem::<f64>(), &|| {
        first(t.clone().sum_dim(1))
    }];
    let mut best = 0f64;
    let mut checksum = 0f64;
    for pass in probes {
        checksum += pass();
        for _ in 0..reps.max(1) {
            let start = Instant::now();
            checksum += pass();
            best = best.max(bytes as f64 / start.elapsed().as_secs_f64());
        }
    }
    std::hint::black_box(checksum);
    Bandwidth {
        bytes_per_s: best,
        buffer_bytes: bytes,
        threads: 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roofline_divides_bandwidth_by_bytes() {
        let bw = measure_read_bandwidth(1 << 20, 2, Some(1)).unwrap();
        assert!(bw.bytes_per_s > 0.0 && bw.bytes_per_s.is_finite());
        assert_eq!(bw.buffer_bytes, 1 << 20);
        let b = Bandwidth {
            bytes_per_s: 10e9,
            buffer_bytes: 0,
            threads: 1,
        };
        assert_eq!(b.roofline_tok_per_s(1_000_000_000), 10.0);
        assert_eq!(b.roofline_tok_per_s(0), 0.0);
    }

    #[test]
    fn tensor_probe_reads_the_whole_buffer() {
        let bw = tensor_read_bandwidth::<burn::backend::Flex>(&Default::default(), 1 << 20, 2);
        assert_eq!(bw.buffer_bytes, 1 << 20, "whole rows of 4096 f32");
        assert!(bw.bytes_per_s > 0.0 && bw.bytes_per_s.is_finite());
        let cpu = measure_device_bandwidth(DeviceSpec::Cpu, 1 << 20, 1, Some(1)).unwrap();
        assert_eq!(cpu.buffer_bytes, 1 << 20);
    }
}
