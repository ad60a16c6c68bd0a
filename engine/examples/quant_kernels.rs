//! Kernel cost on one core measured in CPU time (`/proc/thread-self/schedstat`), so the figures
//! survive a machine shared with other jobs, where criterion's wall-clock times do not.
//!
//! For each format it times `matmul` of `m` activation rows against Qwen2.5-1.5B's FFN up projection
//! (8960 × 1536, random blocks: speed does not depend on values) on a one-thread pool and prints
//! the time per call, the weight bytes streamed per CPU-second at m = 1, and `T(m) / T(1)`.
//!
//! `cargo run -p specsweep-engine --example quant_kernels -- [M_LIST] [FORMATS] [rows|x16]
//! [KERNELS]`, e.g. `-- 1,2,3,5,9,17 q4_k,q6_k,q8_0 x16` (x16: rows interleaved 16 at a time, as
//! a model loads every block format on a CPU with AVX-512 VNNI or AVX2; rows, the default here:
//! ggml's layout; KERNELS: a kernel family below the best, as `specsweep bench --kernels`). The scheduler accounts CPU time in ticks, so each figure is
//! the best of 3 runs of 60 calls. Products run on the vector kernels, as a speculative verify
//! runs them (AMX tiles serve prefill only).

use half::f16;
use specsweep_engine::quant::{
    Isa, MatmulScratch, QuantFormat, QuantMatrix, matmul, without_tiles,
};

/// CPU time of the calling thread, ns.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

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

fn random_matrix(format: QuantFormat, rows: usize, cols: usize) -> QuantMatrix {
    if !format.is_block_quantized() {
        let v: Vec<f32> = random_bytes(rows * cols, 7)
            .into_iter()
            .map(|b| (f32::from(b) - 128.0) / 128.0)
            .collect();
        return QuantMatrix::quantize("bench", format, rows, cols, &v).expect("quantize");
    }
    let mut data = random_bytes(format.bytes_for(rows, cols), 11);
    let offsets = format.f16_fields();
    for blk in data.chunks_exact_mut(format.block_bytes()) {
        for &at in offsets {
            blk[at..at + 2].copy_from_slice(&f16::from_f32(0.01).to_le_bytes());
        }
    }
    QuantMatrix::from_raw("bench", format, rows, cols, data).expect("geometry")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let ms: Vec<usize> = match args.get(1) {
        Some(s) => s.split(',').map(str::parse).collect::<Result<_, _>>()?,
        None => vec![1],
    };
    let formats: Vec<QuantFormat> = match args.get(2) {
        Some(s) => s
            .split(',')
            .map(|f| QuantFormat::from_name(f).ok_or(format!("unknown format `{f}`")))
            .collect::<Result<_, _>>()?,
        None => QuantFormat::ALL.to_vec(),
    };
    if let Some(name) = args.get(4) {
        Isa::select(Isa::from_name(name).ok_or(format!("unknown kernel family `{name}`"))?)?;
    }
    // ROWS: another weight-row count (e.g. 1024: a matrix that stays in L2, for pure compute)
    let rows: usize = std::env::var("ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8960);
    let cols = 1536;
    // calls per timing (the scheduler's tick is coarse: more calls, finer figures)
    let calls: usize = std::env::var("CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    println!(
        "kernels: {}, one thread, {rows} x {cols}",
        Isa::detect().name()
    );
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    pool.install(|| {
        for &format in &formats {
            let w = random_matrix(format, rows, cols);
            let w = if args.get(3).map(String::as_str) == Some("x16") {
                w.interleave()
            } else {
                w
            };
            let mut line = format!("{:5}", format.name());
            let mut t1 = 0.0;
            for (k, &m) in ms.iter().enumerate() {
                let x: Vec<f32> = random_bytes(m * cols, 3)
                    .into_iter()
                    .map(|b| (f32::from(b) - 128.0) / 64.0)
                    .collect();
                let mut out = vec![0.0; m * rows];
                let mut scratch = MatmulScratch::new();
                let mut best = f64::MAX;
                for _ in 0..3 {
                    let c0 = cpu_ns();
                    for _ in 0..calls {
                        // the vector kernels, as a speculative verify runs them (AMX tiles
                        // serve prefill only)
                        without_tiles(|| matmul(&x, m, &w, &mut out, &mut scratch))
                            .expect("matmul");
                    }
                    best = best.min((cpu_ns() - c0) as f64 / calls as f64);
                }
                if k == 0 {
                    t1 = best;
                    let gbs = w.bytes().len() as f64 / best;
                    line += &format!(" m={m}: {:.0} us, {gbs:.1} GB/s per core", best / 1e3);
                } else {
                    line += &format!(" | m={m} x{:.2}", best / t1);
                }
            }
            println!("{line}");
        }
    });
    Ok(())
}
