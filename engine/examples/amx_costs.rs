//! What the AMX tile instructions cost on this CPU, in time-stamp-counter ticks: the figures that
//! decide whether tiles can make a speculative verify cheaper than the VNNI kernels
//! (ARCHITECTURE.md, "AMX tiles on the interleaved layout").
//!
//! A bit-identical verify on tiles needs, per Q4_K sub-block of 16 weight rows (32 weights), one
//! activation tile load (`m` rows × 32 bytes), one weight tile load (8 × 64 bytes), a zeroed
//! accumulator, one `tdpbsud` and one accumulator store (`m` × 64 bytes) — eight per unit of 16
//! rows × 256 weights, against which the VNNI kernel spends ~130 ticks plus ~45 per activation
//! row. This measures each instruction alone (throughput, independent registers) and that sequence
//! (two interleaved streams, as a kernel would issue it), for `m` = 1, 5, 9 and 16.
//!
//! `cargo run -p specsweep-engine --example amx_costs`. Exits with a message where the CPU or OS
//! offers no AMX-INT8.

#[cfg(target_arch = "x86_64")]
mod probe {
    use std::arch::asm;
    use std::arch::x86_64::_rdtsc;

    use specsweep_engine::quant::Isa;

    /// Palette-1 tile configuration.
    #[repr(C, align(64))]
    struct Config {
        palette: u8,
        start_row: u8,
        reserved: [u8; 14],
        colsb: [u16; 16],
        rows: [u8; 16],
    }

    /// `tmm0`–`tmm3` accumulators (`m` × 64 bytes), `tmm4`–`tmm5` activations (`m` × `k` bytes),
    /// `tmm6`–`tmm7` weights (`k / 4` × 64 bytes).
    fn configure(m: usize, k: usize) {
        let mut c = Config {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            colsb: [0; 16],
            rows: [0; 16],
        };
        for t in 0..4 {
            (c.rows[t], c.colsb[t]) = (m as u8, 64);
        }
        for t in [4, 5] {
            (c.rows[t], c.colsb[t]) = (m as u8, k as u16);
        }
        for t in [6, 7] {
            (c.rows[t], c.colsb[t]) = ((k / 4) as u8, 64);
        }
        // SAFETY: AMX is usable (`Isa::best`, checked in `run`); a valid palette-1 configuration.
        unsafe { asm!("ldtilecfg [{}]", in(reg) &c, options(nostack, readonly)) };
    }

    /// 64-byte aligned scratch: 32 KiB of operands, 8 KiB of stored accumulators.
    #[repr(C, align(64))]
    struct Buffers {
        src: [u8; 32768],
        dst: [u8; 8192],
    }

    /// Ticks per iteration of `body`, best of 5 runs of `n` iterations.
    fn ticks(n: usize, mut body: impl FnMut(usize)) -> f64 {
        (0..5)
            .map(|_| {
                // SAFETY: rdtsc only reads the time-stamp counter.
                let t0 = unsafe { _rdtsc() };
                for i in 0..n {
                    body(i);
                }
                // SAFETY: as above.
                (unsafe { _rdtsc() } - t0) as f64 / n as f64
            })
            .fold(f64::MAX, f64::min)
    }

    pub fn run() {
        // the engine finds AMX usable only where CPUID, XCR0 and Linux's tile permission agree
        if Isa::best() != Isa::Amx {
            println!("no AMX-INT8 on this CPU or OS");
            return;
        }
        let mut buf = Box::new(Buffers {
            src: [1; 32768],
            dst: [0; 8192],
        });
        let (src, dst) = (buf.src.as_ptr(), buf.dst.as_mut_ptr());
        let n = 200_000;
        println!("AMX instruction costs, TSC ticks (independent registers; best of 5)");
        println!("   m  k | tileloadd A  tileloadd B  tdpbsud  tilestored C | sub-block sequence");
        for (m, k) in [(16, 64), (1, 32), (5, 32), (9, 32), (16, 32)] {
            configure(m, k);
            // SAFETY (all bodies): AMX is configured; every load reads inside `src` (16 rows of
            // at most 64 bytes: stride 64 from below 4 KiB or 12 KiB, stride 1536 from below
            // 256 bytes, so below 24 KiB) and every store writes inside `dst` (16 × 64 bytes at
            // offsets below 4 KiB); no tile is read before it is written.
            let load_a = ticks(n, |i| unsafe {
                let p = src.add(1024 * (i % 4));
                asm!("tileloadd tmm4, [{p} + {s}*1]", "tileloadd tmm5, [{p} + {s}*1]",
                    p = in(reg) p, s = in(reg) 64usize, options(nostack, readonly));
            }) / 2.0;
            let load_b = ticks(n, |i| unsafe {
                let p = src.add(1024 * (i % 4));
                asm!("tileloadd tmm6, [{p} + {s}*1]", "tileloadd tmm7, [{p} + {s}*1]",
                    p = in(reg) p, s = in(reg) 64usize, options(nostack, readonly));
            }) / 2.0;
            let product = ticks(n, |_| unsafe {
                asm!(
                    "tdpbsud tmm0, tmm4, tmm6",
                    "tdpbsud tmm1, tmm5, tmm7",
                    "tdpbsud tmm2, tmm4, tmm7",
                    "tdpbsud tmm3, tmm5, tmm6",
                    options(nomem, nostack)
                );
            }) / 4.0;
            let store = ticks(n, |i| unsafe {
                let p = dst.add(2048 * (i % 2));
                asm!("tilestored [{p} + {s}*1], tmm0", "tilestored [{q} + {s}*1], tmm1",
                    p = in(reg) p, q = in(reg) p.add(1024), s = in(reg) 64usize,
                    options(nostack));
            }) / 2.0;
            // what a verify kernel issues per sub-block, two streams interleaved
            let sequence = ticks(n, |i| unsafe {
                let (a, w) = (src.add(32 * (i % 8)), src.add(8192 + 512 * (i % 8)));
                let c = dst.add(2048 * (i % 2));
                asm!(
                    "tileloadd tmm4, [{a} + {sa}*1]", "tileloadd tmm6, [{w} + {s}*1]",
                    "tilezero tmm0", "tdpbsud tmm0, tmm4, tmm6", "tilestored [{c} + {s}*1], tmm0",
                    "tileloadd tmm5, [{a} + {sa}*1]", "tileloadd tmm7, [{w} + {s}*1]",
                    "tilezero tmm1", "tdpbsud tmm1, tmm5, tmm7", "tilestored [{d} + {s}*1], tmm1",
                    a = in(reg) a, w = in(reg) w, c = in(reg) c, d = in(reg) c.add(1024),
                    sa = in(reg) 1536usize, s = in(reg) 64usize, options(nostack));
            }) / 2.0;
            println!(
                "  {m:2} {k:2} | {load_a:11.1}  {load_b:11.1}  {product:7.1}  {store:12.1} | {sequence:6.1}"
            );
        }
        // SAFETY: releases this thread's tile state.
        unsafe { asm!("tilerelease", options(nomem, nostack)) };
        drop(buf);
    }
}

fn main() {
    #[cfg(target_arch = "x86_64")]
    probe::run();
    #[cfg(not(target_arch = "x86_64"))]
    println!("AMX is an x86-64 extension");
}
