//! What the AVX2 instructions of the interleaved kernels (`quant::x16_avx2`) cost on this CPU, in
//! core cycles, and the floor they put under a speculative verify on a CPU without AVX-512
//! (ARCHITECTURE.md, "The verify floor on AVX2").
//!
//! A Q4_K product spends, per sub-block of 16 weight rows × 32 weights and activation row, 16
//! `vpmaddubsw`, 14 `vpaddw`, 2 `vpmaddwd`, 2 `vcvtdq2ps` and 2 FMAs (36 vector operations, all
//! needed for the exact i16 sums and the layout's float sequence), plus the weight unpacking
//! shared by the rows. This measures each instruction's throughput alone (independent registers),
//! in pairs (which share pipes) and mixed, then the kernel's own sub-block body (two activation
//! rows × 8 weight rows, as `q4k_x8` runs it, and with an integer scale chain for comparison),
//! converts the body into cycles per Q4_K unit (16 rows × 256 weights) and activation row, and
//! compares `m` rows of that with the time a unit's 2368 bytes take to stream at each core's
//! share of the measured read bandwidth.
//!
//! Cycles come from a dependent chain of scalar adds (one per cycle) timed next to each test,
//! so they follow the clock the vector code runs at. `cargo run -p specsweep-engine --example
//! avx2_costs [THREADS]` (threads sharing the bandwidth, default 2). Exits with a message
//! where the CPU has no AVX2.

#[cfg(target_arch = "x86_64")]
mod probe {
    use std::arch::asm;
    use std::time::Instant;

    use specsweep_engine::roofline::measure_read_bandwidth;

    const ITERS: usize = 20_000_000;

    /// 64-byte aligned operands for the memory forms (values do not matter: all zero).
    #[repr(C, align(64))]
    struct Operands([u8; 4096]);

    /// Best of 5 runs of `body(ITERS)`, seconds per iteration.
    fn per_iter(mut body: impl FnMut(usize)) -> f64 {
        (0..5)
            .map(|_| {
                let t = Instant::now();
                body(ITERS);
                t.elapsed().as_secs_f64() / ITERS as f64
            })
            .fold(f64::INFINITY, f64::min)
    }

    /// Seconds per core cycle: a chain of 4 dependent adds per iteration takes 4 cycles.
    fn cycle_s() -> f64 {
        per_iter(|n| {
            // SAFETY: register arithmetic only.
            unsafe {
                asm!(
                    "2:",
                    "add {x}, 1", "add {x}, 1", "add {x}, 1", "add {x}, 1",
                    "dec {n}", "jnz 2b",
                    n = inout(reg) n => _, x = out(reg) _,
                    options(nostack, nomem),
                )
            }
        }) / 4.0
    }

    /// Cycles per iteration of `$line`s (AVX2 / FMA, `{p}` the operand buffer), timed between
    /// two clock calibrations.
    macro_rules! cycles {
        ($buf:expr, $($line:literal),+ $(,)?) => {{
            let p = $buf.0.as_ptr();
            let before = cycle_s();
            let s = per_iter(|n| {
                // SAFETY: AVX2 and FMA are present (checked in `run`); the memory operands lie
                // within the 4 KiB at p.
                unsafe {
                    asm!(
                        "2:", "/* operands at {p} */", $($line,)+ "dec {n}", "jnz 2b",
                        n = inout(reg) n => _, p = in(reg) p,
                        out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _,
                        out("ymm4") _, out("ymm5") _, out("ymm6") _, out("ymm7") _,
                        out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _,
                        out("ymm12") _, out("ymm13") _, out("ymm14") _, out("ymm15") _,
                        options(nostack),
                    )
                }
            });
            s / ((before + cycle_s()) / 2.0)
        }};
    }

    pub fn run() {
        if !(std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma"))
        {
            println!("this CPU has no AVX2 + FMA: nothing to measure");
            return;
        }
        let threads: usize = std::env::args()
            .nth(1)
            .and_then(|a| a.parse().ok())
            .unwrap_or(2);
        let buf = Operands([0; 4096]);
        let ghz = 1e-9 / cycle_s();
        println!("core clock {ghz:.2} GHz (dependent scalar adds)");
        println!("| instructions per iteration | cycles / iteration | per cycle |");
        println!("| --- | ---: | ---: |");
        let row = |what: &str, ops: f64, c: f64| {
            println!("| {what} | {c:.2} | {:.2} |", ops / c);
            ops / c
        };
        // eight independent `vpmaddubsw`, then `$tail`
        macro_rules! maddubs8 {
            ($($tail:literal),* $(,)?) => {
                cycles!(
                    buf,
                    "vpmaddubsw ymm1, ymm0, ymm15",
                    "vpmaddubsw ymm2, ymm0, ymm15",
                    "vpmaddubsw ymm3, ymm0, ymm15",
                    "vpmaddubsw ymm4, ymm0, ymm15",
                    "vpmaddubsw ymm5, ymm0, ymm15",
                    "vpmaddubsw ymm6, ymm0, ymm15",
                    "vpmaddubsw ymm7, ymm0, ymm15",
                    "vpmaddubsw ymm8, ymm0, ymm15",
                    $($tail),*
                )
            };
        }
        row("8 vpmaddubsw", 8.0, maddubs8!());
        row(
            "12 vpaddw (12 chains)",
            12.0,
            cycles!(
                buf,
                "vpaddw ymm1, ymm1, ymm0",
                "vpaddw ymm2, ymm2, ymm0",
                "vpaddw ymm3, ymm3, ymm0",
                "vpaddw ymm4, ymm4, ymm0",
                "vpaddw ymm5, ymm5, ymm0",
                "vpaddw ymm6, ymm6, ymm0",
                "vpaddw ymm7, ymm7, ymm0",
                "vpaddw ymm8, ymm8, ymm0",
                "vpaddw ymm9, ymm9, ymm0",
                "vpaddw ymm10, ymm10, ymm0",
                "vpaddw ymm11, ymm11, ymm0",
                "vpaddw ymm12, ymm12, ymm0"
            ),
        );
        row(
            "8 vpmaddwd",
            8.0,
            cycles!(
                buf,
                "vpmaddwd ymm1, ymm0, ymm15",
                "vpmaddwd ymm2, ymm0, ymm15",
                "vpmaddwd ymm3, ymm0, ymm15",
                "vpmaddwd ymm4, ymm0, ymm15",
                "vpmaddwd ymm5, ymm0, ymm15",
                "vpmaddwd ymm6, ymm0, ymm15",
                "vpmaddwd ymm7, ymm0, ymm15",
                "vpmaddwd ymm8, ymm0, ymm15"
            ),
        );
        row(
            "8 vcvtdq2ps",
            8.0,
            cycles!(
                buf,
                "vcvtdq2ps ymm1, ymm0",
                "vcvtdq2ps ymm2, ymm0",
                "vcvtdq2ps ymm3, ymm0",
                "vcvtdq2ps ymm4, ymm0",
                "vcvtdq2ps ymm5, ymm0",
                "vcvtdq2ps ymm6, ymm0",
                "vcvtdq2ps ymm7, ymm0",
                "vcvtdq2ps ymm8, ymm0"
            ),
        );
        row(
            "10 vfmadd231ps (10 chains)",
            10.0,
            cycles!(
                buf,
                "vfmadd231ps ymm1, ymm0, ymm15",
                "vfmadd231ps ymm2, ymm0, ymm15",
                "vfmadd231ps ymm3, ymm0, ymm15",
                "vfmadd231ps ymm4, ymm0, ymm15",
                "vfmadd231ps ymm5, ymm0, ymm15",
                "vfmadd231ps ymm6, ymm0, ymm15",
                "vfmadd231ps ymm7, ymm0, ymm15",
                "vfmadd231ps ymm8, ymm0, ymm15",
                "vfmadd231ps ymm9, ymm0, ymm15",
                "vfmadd231ps ymm10, ymm0, ymm15"
            ),
        );
        row(
            "8 vpbroadcastd ymm, m32",
            8.0,
            cycles!(
                buf,
                "vpbroadcastd ymm1, [{p}]",
                "vpbroadcastd ymm2, [{p} + 4]",
                "vpbroadcastd ymm3, [{p} + 8]",
                "vpbroadcastd ymm4, [{p} + 12]",
                "vpbroadcastd ymm5, [{p} + 16]",
                "vpbroadcastd ymm6, [{p} + 20]",
                "vpbroadcastd ymm7, [{p} + 24]",
                "vpbroadcastd ymm8, [{p} + 28]"
            ),
        );
        // the kernel's inner pattern without its loads: products, then i16 sums
        let mix = row(
            "8 vpmaddubsw + 8 vpaddw (4 chains)",
            16.0,
            maddubs8!(
                "vpaddw ymm10, ymm10, ymm1",
                "vpaddw ymm11, ymm11, ymm2",
                "vpaddw ymm12, ymm12, ymm3",
                "vpaddw ymm13, ymm13, ymm4",
                "vpaddw ymm10, ymm10, ymm5",
                "vpaddw ymm11, ymm11, ymm6",
                "vpaddw ymm12, ymm12, ymm7",
                "vpaddw ymm13, ymm13, ymm8"
            ),
        );
        row(
            "the same + 8 vpbroadcastd m32",
            16.0,
            cycles!(
                buf,
                "vpbroadcastd ymm14, [{p}]",
                "vpmaddubsw ymm1, ymm0, ymm14",
                "vpbroadcastd ymm15, [{p} + 4]",
                "vpmaddubsw ymm2, ymm0, ymm15",
                "vpbroadcastd ymm14, [{p} + 8]",
                "vpmaddubsw ymm3, ymm0, ymm14",
                "vpbroadcastd ymm15, [{p} + 12]",
                "vpmaddubsw ymm4, ymm0, ymm15",
                "vpbroadcastd ymm14, [{p} + 16]",
                "vpmaddubsw ymm5, ymm0, ymm14",
                "vpbroadcastd ymm15, [{p} + 20]",
                "vpmaddubsw ymm6, ymm0, ymm15",
                "vpbroadcastd ymm14, [{p} + 24]",
                "vpmaddubsw ymm7, ymm0, ymm14",
                "vpbroadcastd ymm15, [{p} + 28]",
                "vpmaddubsw ymm8, ymm0, ymm15",
                "vpaddw ymm10, ymm10, ymm1",
                "vpaddw ymm11, ymm11, ymm2",
                "vpaddw ymm12, ymm12, ymm3",
                "vpaddw ymm13, ymm13, ymm4",
                "vpaddw ymm10, ymm10, ymm5",
                "vpaddw ymm11, ymm11, ymm6",
                "vpaddw ymm12, ymm12, ymm7",
                "vpaddw ymm13, ymm13, ymm8"
            ),
        );

        // which of them share pipes (each pair alone, independent registers)
        row(
            "8 vpmaddubsw + 4 vpmaddwd",
            12.0,
            maddubs8!(
                "vpmaddwd ymm9, ymm0, ymm15",
                "vpmaddwd ymm10, ymm0, ymm15",
                "vpmaddwd ymm11, ymm0, ymm15",
                "vpmaddwd ymm12, ymm0, ymm15"
            ),
        );
        row(
            "4 vpmaddwd + 4 vfmadd231ps",
            8.0,
            cycles!(
                buf,
                "vpmaddwd ymm1, ymm0, ymm15",
                "vfmadd231ps ymm5, ymm0, ymm15",
                "vpmaddwd ymm2, ymm0, ymm15",
                "vfmadd231ps ymm6, ymm0, ymm15",
                "vpmaddwd ymm3, ymm0, ymm15",
                "vfmadd231ps ymm7, ymm0, ymm15",
                "vpmaddwd ymm4, ymm0, ymm15",
                "vfmadd231ps ymm8, ymm0, ymm15"
            ),
        );
        row(
            "4 vfmadd231ps + 4 vcvtdq2ps",
            8.0,
            cycles!(
                buf,
                "vfmadd231ps ymm1, ymm0, ymm15",
                "vcvtdq2ps ymm5, ymm0",
                "vfmadd231ps ymm2, ymm0, ymm15",
                "vcvtdq2ps ymm6, ymm0",
                "vfmadd231ps ymm3, ymm0, ymm15",
                "vcvtdq2ps ymm7, ymm0",
                "vfmadd231ps ymm4, ymm0, ymm15",
                "vcvtdq2ps ymm8, ymm0"
            ),
        );
        row(
            "8 vpmaddubsw + 4 vcvtdq2ps",
            12.0,
            maddubs8!(
                "vcvtdq2ps ymm9, ymm0",
                "vcvtdq2ps ymm10, ymm0",
                "vcvtdq2ps ymm11, ymm0",
                "vcvtdq2ps ymm12, ymm0"
            ),
        );
        // The kernel's own body: one half (8 weight rows) of a 32-weight sub-block for two
        // activation rows (`x16_avx2::q4k_x8`'s pairs), its 8 weight registers held, and then
        // `$tail`: the scale chain as the kernel runs it (vpmaddwd by ones, vcvtdq2ps, an FMA
        // into the accumulator in memory) or as exact integers would (vpmaddwd by the scales,
        // vpaddd). Cycles per iteration = cycles per (activation row, sub-block) of 16 rows.
        macro_rules! q4k_body {
            ($($tail:literal),+ $(,)?) => {
                cycles!(
                    buf,
                    "vpbroadcastd ymm3, [{p} + 0]",
                    "vpbroadcastd ymm4, [{p} + 64]",
                    "vpmaddubsw ymm1, ymm8, ymm3",
                    "vpmaddubsw ymm2, ymm8, ymm4",
                    "vpbroadcastd ymm3, [{p} + 4]",
                    "vpbroadcastd ymm4, [{p} + 68]",
                    "vpmaddubsw ymm5, ymm9, ymm3",
                    "vpmaddubsw ymm6, ymm9, ymm4",
                    "vpaddw ymm1, ymm1, ymm5",
                    "vpaddw ymm2, ymm2, ymm6",
                    "vpbroadcastd ymm3, [{p} + 8]",
                    "vpbroadcastd ymm4, [{p} + 72]",
                    "vpmaddubsw ymm5, ymm10, ymm3",
                    "vpmaddubsw ymm6, ymm10, ymm4",
                    "vpaddw ymm1, ymm1, ymm5",
                    "vpaddw ymm2, ymm2, ymm6",
                    "vpbroadcastd ymm3, [{p} + 12]",
                    "vpbroadcastd ymm4, [{p} + 76]",
                    "vpmaddubsw ymm5, ymm11, ymm3",
                    "vpmaddubsw ymm6, ymm11, ymm4",
                    "vpaddw ymm1, ymm1, ymm5",
                    "vpaddw ymm2, ymm2, ymm6",
                    "vpbroadcastd ymm3, [{p} + 16]",
                    "vpbroadcastd ymm4, [{p} + 80]",
                    "vpmaddubsw ymm5, ymm12, ymm3",
                    "vpmaddubsw ymm6, ymm12, ymm4",
                    "vpaddw ymm1, ymm1, ymm5",
                    "vpaddw ymm2, ymm2, ymm6",
                    "vpbroadcastd ymm3, [{p} + 20]",
                    "vpbroadcastd ymm4, [{p} + 84]",
                    "vpmaddubsw ymm5, ymm13, ymm3",
                    "vpmaddubsw ymm6, ymm13, ymm4",
                    "vpaddw ymm1, ymm1, ymm5",
                    "vpaddw ymm2, ymm2, ymm6",
                    "vpbroadcastd ymm3, [{p} + 24]",
                    "vpbroadcastd ymm4, [{p} + 88]",
                    "vpmaddubsw ymm5, ymm14, ymm3",
                    "vpmaddubsw ymm6, ymm14, ymm4",
                    "vpaddw ymm1, ymm1, ymm5",
                    "vpaddw ymm2, ymm2, ymm6",
                    "vpbroadcastd ymm3, [{p} + 28]",
                    "vpbroadcastd ymm4, [{p} + 92]",
                    "vpmaddubsw ymm5, ymm15, ymm3",
                    "vpmaddubsw ymm6, ymm15, ymm4",
                    "vpaddw ymm1, ymm1, ymm5",
                    "vpaddw ymm2, ymm2, ymm6",
                    $($tail),+
                )
            };
        }
        let float_body = 36.0
            / row(
                "Q4_K sub-block body, 2 rows x 8 weight rows, float scale chain (the kernel's)",
                36.0,
                q4k_body!(
                    "vpmaddwd ymm1, ymm1, ymm0",
                    "vpmaddwd ymm2, ymm2, ymm0",
                    "vcvtdq2ps ymm1, ymm1",
                    "vcvtdq2ps ymm2, ymm2",
                    "vfmadd231ps ymm7, ymm1, [{p} + 256]",
                    "vmovaps [{p} + 256], ymm7",
                    "vfmadd231ps ymm3, ymm2, [{p} + 288]",
                    "vmovaps [{p} + 288], ymm3"
                ),
            );
        row(
            "the same body with an integer scale chain (not bit-identical: not used)",
            34.0,
            q4k_body!(
                "vpmaddwd ymm1, ymm1, ymm0",
                "vpmaddwd ymm2, ymm2, ymm0",
                "vpaddd ymm7, ymm1, [{p} + 256]",
                "vmovdqa [{p} + 256], ymm7",
                "vpaddd ymm3, ymm2, [{p} + 288]",
                "vmovdqa [{p} + 288], ymm3"
            ),
        );
        // Q4_K per unit and activation row: 8 sub-blocks of the kernel's body
        let body_row = 8.0 * float_body;
        let unit_row = 8.0 * 36.0 / mix;
        println!();
        println!(
            "Q4_K unit (16 rows x 256 weights), per activation row: 8 x 36 vector operations \
             = {unit_row:.0} cycles at the mix's {mix:.2} per cycle; 8 kernel bodies = \
             {body_row:.0} cycles (before unpacking the weights)"
        );
        let unit_row = body_row;
        match measure_read_bandwidth(256 << 20, 3, Some(threads)) {
            Ok(bw) => {
                let per_core = bw.bytes_per_s / threads as f64;
                let stream = 2368.0 / per_core * ghz * 1e9;
                println!(
                    "streaming a unit's 2368 bytes at {:.1} GB/s / {threads} threads: {stream:.0} \
                     cycles per core",
                    bw.bytes_per_s / 1e9
                );
                for m in [1usize, 2, 3, 5, 9, 17] {
                    let compute = m as f64 * unit_row;
                    println!(
                        "m = {m:>2}: arithmetic {compute:>5.0} cycles per unit, {:.2} x the \
                         stream: T(m)/T(1) >= {:.2} if the two overlap perfectly",
                        compute / stream,
                        (compute.max(stream)) / stream.max(unit_row),
                    );
                }
            }
            Err(e) => println!("bandwidth not measured: {e}"),
        }
    }
}

fn main() {
    #[cfg(target_arch = "x86_64")]
    probe::run();
    #[cfg(not(target_arch = "x86_64"))]
    println!("not an x86-64 CPU: nothing to measure");
}
