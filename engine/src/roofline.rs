//! The memory-bandwidth roofline for decoding: a decode step reads every weight once, so
//! `tok/s ≤ bandwidth ÷ weight bytes per token` (Williams, Waterman & Patterson 2009, "Roofline").
//! Bandwidth is measured by summing a buffer much larger than the last-level cache in parallel.

use std::time::Instant;

use rayon::prelude::*;

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
}
