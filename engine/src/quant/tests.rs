//! Kernel correctness: every format's `matmul` against "dequantize, then f64 matmul", on random
//! matrices (every format, odd shapes, decode / verify / prefill batch sizes, one and two threads)
//! and on the committed gguf-py vectors in tests/fixtures/quant.
//!
//! Stated tolerance per output element, from the kernel's arithmetic (see `scalar`):
//! - block formats: `Σ_b (d_b / 2) · Σ_{j∈b} |W_j|` (the 8-bit rounding of activation block `b` of
//!   32 values, or 256 for the K-quants, scale `d_b = max|x_b| / 127`) plus `1e-5 · Σ |W_j x_j|`
//!   for f32 summation;
//! - dense formats (f32 / f16 / bf16, activations stay f32): `1e-5 · Σ |W_j x_j|`.
//!
//! SIMD and scalar kernels must agree within `1e-5 · Σ |W_j x_j|` (same integers, other order).

use super::*;
use half::f16;

/// xorshift64* — deterministic test data without depending on a rand API.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// A random `rows × cols` matrix of `format`: random blocks with finite scales, as a GGUF file holds.
fn random_matrix(format: QuantFormat, rows: usize, cols: usize, rng: &mut Rng) -> QuantMatrix {
    if !format.is_block_quantized() {
        let v: Vec<f32> = (0..rows * cols).map(|_| rng.unit()).collect();
        return QuantMatrix::quantize("random", format, rows, cols, &v).expect("dense quantize");
    }
    let mut data: Vec<u8> = (0..format.bytes_for(rows, cols))
        .map(|_| rng.next() as u8)
        .collect();
    for blk in data.chunks_exact_mut(format.block_bytes()) {
        for &at in format.f16_fields() {
            let scale = f16::from_f32(rng.unit() * 0.05);
            blk[at..at + 2].copy_from_slice(&scale.to_le_bytes());
        }
    }
    QuantMatrix::from_raw("random", format, rows, cols, data).expect("valid geometry")
}

/// `(reference, tolerance, Σ|W x|)` per output element of `x · Wᵀ` (`m × rows`).
fn reference(w: &QuantMatrix, x: &[f32], m: usize) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (rows, cols) = (w.rows(), w.cols());
    let wd = w.dequantize();
    let mut refs = vec![0.0; m * rows];
    let mut tols = vec![0.0; m * rows];
    let mut abss = vec![0.0; m * rows];
    for i in 0..m {
        let xi = &x[i * cols..(i + 1) * cols];
        for r in 0..rows {
            let wr = &wd[r * cols..(r + 1) * cols];
            let (mut dot, mut abs, mut rounding) = (0.0f64, 0.0f64, 0.0f64);
            let act_block = w.format().block_elems().max(32);
            for (xb, wb) in xi.chunks(act_block).zip(wr.chunks(act_block)) {
                let half_step = f64::from(xb.iter().fold(0.0f32, |a, v| a.max(v.abs()))) / 254.0;
                for (&xv, &wv) in xb.iter().zip(wb) {
                    dot += f64::from(xv) * f64::from(wv);
                    abs += (f64::from(xv) * f64::from(wv)).abs();
                    rounding += half_step * f64::from(wv).abs();
                }
            }
            let quant = if w.format().is_block_quantized() {
                rounding * 1.0001
            } else {
                0.0
            };
            refs[i * rows + r] = dot;
            tols[i * rows + r] = quant + 1e-5 * abs + 1e-6;
            abss[i * rows + r] = abs;
        }
    }
    (refs, tols, abss)
}

fn isas() -> Vec<Isa> {
    Isa::available()
}

fn check_format(format: QuantFormat, rows: usize, cols: usize, m: usize, seed: u64) {
    let mut rng = Rng(seed);
    let w = random_matrix(format, rows, cols, &mut rng);
    let x: Vec<f32> = (0..m * cols).map(|_| rng.unit() * 2.0).collect();
    check_matrix(&w, &x, m);
}

/// `x · wᵀ` for `m` activation rows on every kernel family, against the f64 reference (within
/// the stated tolerance) and the scalar kernel.
fn check_matrix(w: &QuantMatrix, x: &[f32], m: usize) {
    let (format, rows, cols) = (w.format(), w.rows(), w.cols());
    let (refs, tols, abss) = reference(w, x, m);
    let mut scratch = MatmulScratch::new();
    let mut outs = Vec::new();
    for isa in isas() {
        let mut out = vec![f32::NAN; m * rows];
        matmul_with(isa, x, m, w, &mut out, &mut scratch).expect("matmul");
        for (k, ((o, r), t)) in out.iter().zip(&refs).zip(&tols).enumerate() {
            let err = (f64::from(*o) - r).abs();
            assert!(
                err <= *t,
                "{format} {isa:?} m={m} {rows}x{cols} out[{k}] = {o}, reference {r}, error {err} > tol {t}"
            );
        }
        outs.push(out);
    }
    compare_with_scalar(format, m, &isas(), &outs, &abss);
}

/// Every SIMD family's output against the scalar kernel's (`outs[0]`, in the order of `isas`):
/// the same integer sums in another float order, so within `1e-5 · Σ |W x|`.
fn compare_with_scalar(
    format: QuantFormat,
    m: usize,
    isas: &[Isa],
    outs: &[Vec<f32>],
    abss: &[f64],
) {
    assert_eq!(isas[0], Isa::Scalar);
    for (isa, simd) in isas.iter().zip(outs).skip(1) {
        for (k, (a, b)) in outs[0].iter().zip(simd).enumerate() {
            let tol = 1e-5 * abss[k] + 1e-6;
            assert!(
                f64::from((a - b).abs()) <= tol,
                "{format} m={m} scalar/{isa:?} out[{k}]: {a} vs {b}"
            );
        }
    }
}

/// Q4_K / Q6_K and the code copies (IQ2_PLANES, IQ3_*_NIB, IQ1_SHIFT) on every kernel family
/// for every verify batch size 1..=17 (the batch kernels are specialised per m) and several
/// widths, against the scalar kernel and the f64 reference.
#[test]
fn super_block_kernels_match_scalar_for_every_batch_size_and_isa() {
    let formats = [
        QuantFormat::Q4K,
        QuantFormat::Q6K,
        QuantFormat::Iq2Planes,
        QuantFormat::Iq3XxsNib,
        QuantFormat::Iq3SNib,
        QuantFormat::Iq1Shift,
    ];
    for (n, format) in formats.into_iter().enumerate() {
        for cols in [256, 768, 1536] {
            for m in 1..=17 {
                check_format(
                    format,
                    35,
                    cols,
                    m,
                    0xB0B + 97 * n as u64 + 13 * cols as u64 + m as u64,
                );
            }
        }
    }
}

/// `m` activation rows of `cols` at the 8-bit limits: row 0 all −1 (every value −128), row 1
/// all +1 (127), then random −128 / +127 (on the Q8_K grid, d = 1/128 from the leading −1).
fn extreme_activations(m: usize, cols: usize, rng: &mut Rng) -> Vec<f32> {
    (0..m * cols)
        .map(|k| match k / cols {
            0 => -1.0,
            1 => 1.0,
            _ if k.is_multiple_of(256) || rng.next().is_multiple_of(2) => -1.0,
            _ => 127.0 / 128.0,
        })
        .collect()
}

/// `w` against [`extreme_activations`] for each batch size in `ms` ([`check_matrix`]).
fn check_at_extreme_activations(w: &QuantMatrix, ms: &[usize], rng: &mut Rng) {
    for &m in ms {
        check_matrix(w, &extreme_activations(m, w.cols(), rng), m);
    }
}

/// Largest integer sums: every weight byte 0xFF (Q4_K: q = 15, scales and mins 63; Q6_K: q = 63,
/// scales −1) against activations at −128 / +127, where an i16 intermediate that overflowed or
/// saturated would show. Random blocks with extreme bytes cover positive Q6_K scales.
#[test]
fn k_quants_exact_at_the_integer_range_limits() {
    let mut rng = Rng(99);
    for format in [QuantFormat::Q4K, QuantFormat::Q6K] {
        // 38 rows: two 16-row AMX tiles and a remainder on the VNNI kernels
        let (rows, cols) = (38, 512);
        let mut data = vec![0xFFu8; format.bytes_for(rows, cols)];
        for (k, blk) in data.chunks_exact_mut(format.block_bytes()).enumerate() {
            if format == QuantFormat::Q6K && k % 2 == 1 {
                // scales +127 (0x7F) and −128 (0x80) alternating
                for (j, s) in blk[192..208].iter_mut().enumerate() {
                    *s = if j % 2 == 0 { 0x7F } else { 0x80 };
                }
            }
            for &at in format.f16_fields() {
                blk[at..at + 2].copy_from_slice(&f16::from_f32(0.01).to_le_bytes());
            }
        }
        let w = QuantMatrix::from_raw("extreme", format, rows, cols, data).expect("geometry");
        check_at_extreme_activations(&w, &[1, 3, 9, 16, 17, 40], &mut rng);
    }
}

/// The code copies at their largest: IQ2_PLANES with every magnitude 43 and signs all negative
/// (weight bytes 64 − 43) or, in every other block, all positive (64 + 43 = 107: `vpmaddubsw`
/// pairs up to 2 · 107 · 128); IQ1_SHIFT likewise at −9 (grid −1, shift down) and +9 (grid 1,
/// shift up); the nibble formats with their extreme levels (±31, ±15); scales 2ls + 1 = 31
/// (and some 1), against activations at −128 / +127.
#[test]
fn code_copies_exact_at_the_integer_range_limits() {
    use super::iq_codes::{LEVELS, NIB_S, NIB_XXS, write_nibbles, write_planes, write_shift};
    let mut rng = Rng(0x1F2);
    let (rows, cols) = (21, 512);
    for format in [
        QuantFormat::Iq2Planes,
        QuantFormat::Iq3XxsNib,
        QuantFormat::Iq3SNib,
        QuantFormat::Iq1Shift,
    ] {
        let mut data = vec![0u8; format.bytes_for(rows, cols)];
        for (k, blk) in data.chunks_exact_mut(format.block_bytes()).enumerate() {
            let d = f16::from_f32(0.01).to_bits();
            let scales: [u8; 16] = std::array::from_fn(|g| if (g + k) % 5 == 0 { 0 } else { 15 });
            let negative = k % 2 == 0;
            match format {
                QuantFormat::Iq2Planes => {
                    let groups = [([LEVELS[3]; 8], if negative { 0xFF } else { 0 }); 32];
                    write_planes(d, &scales, &groups, blk);
                }
                QuantFormat::Iq1Shift => {
                    let groups = [([if negative { -1 } else { 1 }; 8], negative); 32];
                    write_shift(d, &scales, &groups, blk);
                }
                _ => {
                    let levels = if format == QuantFormat::Iq3XxsNib {
                        NIB_XXS
                    } else {
                        NIB_S
                    };
                    let v = if negative { levels[15] } else { levels[7] };
                    write_nibbles(format, d, &scales, &[v; 256], blk);
                }
            }
        }
        let w = QuantMatrix::from_raw("extreme", format, rows, cols, data).expect("geometry");
        let dq = w.dequantize();
        let top = match format {
            QuantFormat::Iq2Planes => 43.0,
            QuantFormat::Iq3XxsNib => 31.0,
            QuantFormat::Iq3SNib => 15.0,
            _ => 9.0,
        };
        assert!(dq.iter().all(|v| v.abs() >= 0.01 * top * 0.999));
        assert!(dq.iter().any(|v| v.abs() >= 0.01 * top * 31.0 * 0.999));
        check_at_extreme_activations(&w, &[1, 2, 9, 16, 17], &mut rng);
    }
}

#[test]
fn every_format_matches_dequantized_matmul_for_decode_and_verify_shapes() {
    for (n, format) in QuantFormat::ALL.into_iter().enumerate() {
        for m in [1, 2, 5, 16] {
            check_format(format, 13, 512, m, 0x9E37_79B9 + 31 * n as u64 + m as u64);
        }
    }
}

/// An odd number of 32-weight blocks per row (544 columns = 17 blocks): the AVX-512 decode kernel
/// takes blocks in pairs and finishes the last one in 256-bit registers.
#[test]
fn odd_block_counts_match_at_decode() {
    for (n, format) in [
        QuantFormat::Q4_0,
        QuantFormat::Q4_1,
        QuantFormat::Q5_0,
        QuantFormat::Q5_1,
        QuantFormat::Q8_0,
        QuantFormat::Iq4Nl,
    ]
    .into_iter()
    .enumerate()
    {
        for cols in [32, 544] {
            check_format(format, 9, cols, 1, 0xD1CE + n as u64 + cols as u64);
        }
    }
}

#[test]
fn every_format_matches_for_prefill_tiles_on_a_thread_pool() {
    // 17 and 40 rows of activations cross the tile of 16; 70 weight rows cross the slab of 32;
    // the size is above the parallel threshold so the row split across tasks is exercised.
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool");
        pool.install(|| {
            for (n, format) in QuantFormat::ALL.into_iter().enumerate() {
                for m in [17, 40] {
                    check_format(format, 70, 768, m, 0xC0FFEE + 7 * n as u64 + m as u64);
                }
            }
        });
    }
}

/// K-quant prefill batches beyond the AMX kernels' group of 8 activation tiles (128 rows), which
/// then make several passes over each weight block.
#[test]
fn k_quants_match_for_batches_beyond_one_tile_group() {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("pool");
    pool.install(|| {
        for (n, format) in [QuantFormat::Q4K, QuantFormat::Q6K].into_iter().enumerate() {
            check_format(format, 48, 512, 150, 0xFACE + n as u64);
        }
    });
}

/// A speculative verify must give bit for bit the logits of single-token steps (greedy speculative
/// output = plain greedy output): inside `without_tiles`, a batch of rows equals each row alone on
/// every kernel family, for every block format the models use.
#[test]
fn products_are_batch_invariant_without_tiles() {
    let mut rng = Rng(0xBA7C);
    for format in QuantFormat::ALL {
        let (rows, cols) = (40, 512);
        let w = random_matrix(format, rows, cols, &mut rng);
        for m in [2, 9, 17] {
            let x: Vec<f32> = (0..m * cols).map(|_| rng.unit() * 2.0).collect();
            for isa in isas() {
                let mut scratch = MatmulScratch::new();
                let mut batch = vec![0.0; m * rows];
                without_tiles(|| matmul_with(isa, &x, m, &w, &mut batch, &mut scratch))
                    .expect("matmul");
                for i in 0..m {
                    let mut one = vec![0.0; rows];
                    let xi = &x[i * cols..(i + 1) * cols];
                    matmul_with(isa, xi, 1, &w, &mut one, &mut scratch).expect("matmul");
                    assert_eq!(
                        &batch[i * rows..(i + 1) * rows],
                        &one[..],
                        "{format} {isa:?} m={m} row {i}: a batched row differs from the row alone"
                    );
                }
            }
        }
    }
}

/// Where the CPU and the kernel report AMX-INT8, the tile kernels are the ones picked (so the
/// comparisons above exercise them); elsewhere nothing is claimed.
#[test]
fn amx_is_detected_where_the_kernel_reports_it() {
    let Ok(cpuinfo) = std::fs::read_to_string("/proc/cpuinfo") else {
        return;
    };
    let flags = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .unwrap_or_default();
    let has = |f: &str| flags.split_whitespace().any(|w| w == f);
    if has("amx_int8") && has("amx_tile") && has("avx512_vnni") {
        assert_eq!(Isa::detect(), Isa::Amx);
        assert!(Isa::available().contains(&Isa::Avx512Vnni));
    } else {
        assert_ne!(Isa::detect(), Isa::Amx);
    }
}

/// A fixture document (`tests/fixtures/<dir>/<name>.json`) and its float array `key`.
fn fixture_json(dir: &str, name: &str, key: &str) -> (serde_json::Value, Vec<f32>) {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(dir)
        .join(format!("{name}.json"));
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("fixture json")).expect("json");
    let floats = json[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} in {}", path.display()))
        .iter()
        .map(|v| v.as_f64().expect("number") as f32)
        .collect();
    (json, floats)
}

/// The quantizers give gguf-py's bytes (its NumPy ports of ggml's `quantize_row_*_ref`) for every
/// format they produce, on inputs with ties, zeros, constant blocks and six decades of magnitude
/// (tests/fixtures/quantize) — and for IQ4_NL / IQ4_XS, which gguf-py cannot quantize, llama.cpp's
/// own weight quantizers' bytes (`quantize_iq4_nl`, `quantize_iq4_xs`, from its library) on those
/// inputs plus a block of exact levels and ties (IQ4_XS: also sub-blocks eight decades apart and
/// an all-zero super-block); the k-quants likewise (`quantize_q2_K` ...) on those super-blocks
/// plus positive-only, negative-only and single-outlier ones.
#[test]
fn quantizers_give_gguf_py_blocks() {
    let formats = [
        (QuantFormat::Q8_0, "Q8_0"),
        (QuantFormat::Q4_0, "Q4_0"),
        (QuantFormat::Q4_1, "Q4_1"),
        (QuantFormat::Q5_0, "Q5_0"),
        (QuantFormat::Q5_1, "Q5_1"),
        (QuantFormat::Iq4Nl, "IQ4_NL_weights"),
        (QuantFormat::Iq4Xs, "IQ4_XS_weights"),
        (QuantFormat::Q2K, "Q2_K_weights"),
        (QuantFormat::Q3K, "Q3_K_weights"),
        (QuantFormat::Q4K, "Q4_K_weights"),
        (QuantFormat::Q5K, "Q5_K_weights"),
        (QuantFormat::Q6K, "Q6_K_weights"),
    ];
    for (format, fixture) in formats {
        let (json, input) = fixture_json("quantize", fixture, "input");
        let hex = json["blocks_hex"].as_str().expect("blocks_hex");
        let want: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
            .collect();
        let mut got = Vec::new();
        quantize_into(format, &input, &mut got);
        assert_eq!(got.len(), want.len(), "{format}");
        let bb = format.block_bytes();
        for (b, (g, w)) in got.chunks(bb).zip(want.chunks(bb)).enumerate() {
            assert_eq!(g, w, "{format} block {b}");
        }
    }
}

/// The K-quant quantizers give llama.cpp's bytes (`quantize_q2_K` … `quantize_q6_K`, sha256 in
/// tests/fixtures/quantize/K_stream.json) on 512 generated super-blocks — 4096 fits of 32, 8192
/// of 16: dropping the last trial scale of the Q4_K or Q5_K search, the first of Q6_K's or the
/// fifth refinement pass of Q3_K's changes some block (Q6_K's last trial, `−(32 + 0.9) / max`,
/// never wins on these).
#[test]
fn k_quantizers_give_llamacpp_bytes_on_a_long_stream() {
    use sha2::{Digest, Sha256};
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/quantize/K_stream.json");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("fixture json")).expect("json");
    let n = json["n_superblocks"].as_u64().expect("n_superblocks") as usize;
    // the generator of scripts/fixture_quant.py's k_quant_stream, in f32
    let mut state = 0x5EEDu64;
    let mut x: Vec<f32> = (0..n * 256)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (((state >> 33) % 20001) as i32 - 10000) as f32 / 10000.0
        })
        .collect();
    for (s, row) in x.chunks_mut(256).enumerate() {
        match s % 4 {
            1 => row.iter_mut().for_each(|u| *u = *u * *u * *u),
            2 => row.iter_mut().for_each(|u| *u += 0.5),
            3 => row[(7 * s) % 256] *= 64.0,
            _ => {}
        }
        let scale = 2.0f32.powi((s % 13) as i32 - 6);
        row.iter_mut().for_each(|u| *u *= scale);
    }
    for (format, name) in [
        (QuantFormat::Q2K, "Q2_K"),
        (QuantFormat::Q3K, "Q3_K"),
        (QuantFormat::Q4K, "Q4_K"),
        (QuantFormat::Q5K, "Q5_K"),
        (QuantFormat::Q6K, "Q6_K"),
    ] {
        let mut got = Vec::new();
        quantize_into(format, &x, &mut got);
        let hex: String = Sha256::digest(&got)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, json["sha256"][name].as_str().expect("hash"), "{name}");
    }
}

/// The `iq4_nl` quantizer gives llama.cpp's own blocks (`quantize_row_iq4_nl_ref`, from its
/// library: gguf-py has no quantizer for it) on the same kinds of inputs plus a block of exact
/// levels and ties, and the blocks read back as gguf-py's dequantized values.
#[test]
fn iq4_nl_quantizer_gives_llamacpp_blocks_and_gguf_py_values() {
    use super::iq4_nl::{BLOCK_BYTES, dequantize_block, quantize_block};
    let (json, input) = fixture_json("quantize", "IQ4_NL", "input");
    let (_, values) = fixture_json("quantize", "IQ4_NL", "values");
    let hex = json["blocks_hex"].as_str().expect("blocks_hex");
    let want: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    assert_eq!(want.len(), input.len() / 32 * BLOCK_BYTES);
    for (b, (x, w)) in input.chunks(32).zip(want.chunks(BLOCK_BYTES)).enumerate() {
        let mut got = [0u8; BLOCK_BYTES];
        quantize_block(x, &mut got);
        assert_eq!(&got[..], w, "iq4_nl block {b}");
        let mut back = [0.0f32; 32];
        dequantize_block(w, &mut back);
        assert_eq!(&back[..], &values[b * 32..(b + 1) * 32], "iq4_nl block {b}");
        // as a GGUF tensor / weight matrix: the GGUF dequantizer
        let mut gguf = [0.0f32; 32];
        dequantize_into(QuantFormat::Iq4Nl, w, &mut gguf);
        assert_eq!(&gguf[..], &back[..], "iq4_nl block {b}");
    }
}

#[test]
fn fixture_blocks_multiply_like_gguf_py_values() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/quant");
    let mut rng = Rng(42);
    // every ggml block format as stored, and llama.cpp's IQ2 / IQ3 blocks as the loader copies
    // them
    let mut cases: Vec<(&str, QuantFormat)> = QuantFormat::ALL
        .into_iter()
        .filter(|f| f.is_block_quantized() && f.ggml_type().is_some())
        .map(|f| (f.name(), f))
        .collect();
    cases.extend(["IQ2_XXS", "IQ2_XS", "IQ2_S"].map(|n| (n, QuantFormat::Iq2Planes)));
    cases.extend([
        ("IQ3_XXS", QuantFormat::Iq3XxsNib),
        ("IQ3_S", QuantFormat::Iq3SNib),
        ("IQ1_S", QuantFormat::Iq1Shift),
        ("IQ1_M", QuantFormat::Iq1Shift),
    ]);
    for (name, format) in cases {
        let bytes = std::fs::read(dir.join(name).with_extension("bin")).expect("fixture bin");
        let (_, values) = fixture_json("quant", name, "values");
        let cols = values.len();
        let w = if format.is_code_copy() {
            let ty = crate::gguf::GgmlType::ALL
                .into_iter()
                .find(|t| t.name() == name)
                .expect("ggml type");
            let r = super::recode::recode_for(ty, true).expect("i-quant recode");
            assert_eq!(r.target, format);
            let mut out = vec![0u8; bytes.len() / r.from_bytes * format.block_bytes()];
            for (b, o) in bytes
                .chunks_exact(r.from_bytes)
                .zip(out.chunks_exact_mut(format.block_bytes()))
            {
                assert!((r.convert)(b, o));
            }
            QuantMatrix::from_raw(name, format, 1, cols, out)
                .expect("fixture geometry")
                .with_out_scale(r.out_scale)
        } else {
            QuantMatrix::from_raw(name, format, 1, cols, bytes).expect("fixture geometry")
        };
        let x: Vec<f32> = (0..2 * cols).map(|_| rng.unit()).collect();
        for isa in isas() {
            let mut out = [0.0f32; 2];
            matmul_with(isa, &x, 2, &w, &mut out, &mut MatmulScratch::new()).expect("matmul");
            for i in 0..2 {
                let xi = &x[i * cols..(i + 1) * cols];
                let dot: f64 = xi
                    .iter()
                    .zip(&values)
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum();
                let mut tol = 1e-6;
                let act_block = format.block_elems().max(32);
                for (xb, wb) in xi.chunks(act_block).zip(values.chunks(act_block)) {
                    let half_step =
                        f64::from(xb.iter().fold(0.0f32, |a, v| a.max(v.abs()))) / 254.0;
                    tol += wb
                        .iter()
                        .map(|v| {
                            half_step * f64::from(v.abs()) * 1.0001 + 1e-5 * f64::from(v.abs())
                        })
                        .sum::<f64>();
                }
                let err = (f64::from(out[i]) - dot).abs();
                assert!(
                    err <= tol,
                    "{name} as {format} {isa:?} row {i}: {} vs {dot} (tol {tol})",
                    out[i]
                );
            }
        }
    }
}

#[test]
fn quantized_activations_are_exact_on_grid_inputs() {
    // Activations that already lie on the 8-bit grid (x = q / 127 · amax) are represented exactly,
    // so the block kernels must match the f64 reference to f32 summation error alone.
    let mut rng = Rng(7);
    let w = random_matrix(QuantFormat::Q4K, 9, 256, &mut rng);
    // On ggml's Q8_K grid: the first value of largest magnitude, −1, maps to −128, so
    // d = 1/128 and every k/128 (|k| ≤ 127) is exact.
    let x: Vec<f32> = (0..256)
        .map(|j| {
            if j == 0 {
                -1.0
            } else {
                ((rng.next() % 255) as i32 - 127) as f32 / 128.0
            }
        })
        .collect();
    let wd = w.dequantize();
    let mut out = vec![0.0; 9];
    matmul(&x, 1, &w, &mut out, &mut MatmulScratch::new()).expect("matmul");
    for r in 0..9 {
        let row = &wd[r * 256..(r + 1) * 256];
        let dot: f64 = row
            .iter()
            .zip(&x)
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum();
        let abs: f64 = row
            .iter()
            .zip(&x)
            .map(|(a, b)| f64::from((a * b).abs()))
            .sum();
        assert!(
            (f64::from(out[r]) - dot).abs() <= 1e-5 * abs + 1e-6,
            "row {r}: {} vs {dot}",
            out[r]
        );
    }
}

#[test]
fn shape_mismatch_is_an_error_not_a_panic() {
    let w = QuantMatrix::quantize("w", QuantFormat::Q8_0, 4, 64, &[0.5; 256]).expect("quantize");
    let mut out = vec![0.0; 4];
    let err = matmul(&[1.0; 63], 1, &w, &mut out, &mut MatmulScratch::new()).unwrap_err();
    assert!(err.to_string().contains("matmul"), "{err}");
    assert!(matmul(&[1.0; 64], 1, &w, &mut out[..3], &mut MatmulScratch::new()).is_err());
}

/// `x · Wᵀ` of an interleaved matrix on every kernel family, with the checks the layout promises
/// (`super::interleave`): within the stated tolerance of the f64 reference, *bit-identical* across
/// kernel families, and bit-identical to computing each activation row alone (batch invariance:
/// a verify of k + 1 rows equals k + 1 single-row steps).
fn check_interleaved(w: &QuantMatrix, x: &[f32], m: usize) {
    let x16 = w.clone().interleave();
    assert!(
        x16.is_interleaved(),
        "{} {}x{}",
        w.format(),
        w.rows(),
        w.cols()
    );
    assert_eq!(
        x16.dequantize(),
        w.dequantize(),
        "dequantize after interleaving"
    );
    let (format, rows, cols) = (w.format(), w.rows(), w.cols());
    let (refs, tols, _) = reference(w, x, m);
    let mut first: Option<Vec<f32>> = None;
    // the batch-invariant kernels (a verify forward runs without the AMX tiles)
    let product = |isa: Isa, w: &QuantMatrix, x: &[f32], m: usize| {
        let mut out = vec![f32::NAN; m * w.rows()];
        without_tiles(|| matmul_with(isa, x, m, w, &mut out, &mut MatmulScratch::new()))
            .expect("matmul");
        out
    };
    for isa in isas() {
        let out = product(isa, &x16, x, m);
        for (k, ((o, r), t)) in out.iter().zip(&refs).zip(&tols).enumerate() {
            let err = (f64::from(*o) - r).abs();
            assert!(
                err <= *t,
                "interleaved {format} {isa:?} m={m} out[{k}] = {o}, reference {r}, error {err} > {t}"
            );
        }
        for t in 0..m {
            let alone = product(isa, &x16, &x[t * cols..(t + 1) * cols], 1);
            let batch = &out[t * rows..(t + 1) * rows];
            assert!(
                alone
                    .iter()
                    .zip(batch)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "interleaved {format} {isa:?}: row {t} of a batch of {m} differs from the row alone"
            );
        }
        match &first {
            None => first = Some(out),
            Some(f) => assert!(
                f.iter().zip(&out).all(|(a, b)| a.to_bits() == b.to_bits()),
                "interleaved {format} m={m}: {isa:?} differs from the scalar reference bitwise"
            ),
        }
    }
    // The AMX tiles (prefills) unpack the interleaved units into the very slots they fill from
    // ggml's rows, so both layouts give the same bits there too.
    #[cfg(target_arch = "x86_64")]
    if isas().contains(&Isa::Amx) && super::amx::takes(format, m) {
        let mut tiled = vec![f32::NAN; m * rows];
        let mut rowwise = vec![f32::NAN; m * rows];
        matmul_with(Isa::Amx, x, m, &x16, &mut tiled, &mut MatmulScratch::new()).expect("matmul");
        matmul_with(Isa::Amx, x, m, w, &mut rowwise, &mut MatmulScratch::new()).expect("matmul");
        assert!(
            tiled
                .iter()
                .zip(&rowwise)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{format} m={m}: AMX on the interleaved layout differs from AMX on ggml's rows"
        );
        for (k, ((o, r), t)) in tiled.iter().zip(&refs).zip(&tols).enumerate() {
            let err = (f64::from(*o) - r).abs();
            assert!(
                err <= *t,
                "interleaved {format} tiles m={m} out[{k}] = {o}, reference {r}"
            );
        }
    }
}

/// Every format with an interleaved layout: the K-quants', IQ4_XS's and the nibble formats'
/// (`interleave`) and the 32-weight formats' (`interleave32`).
const INTERLEAVED: [QuantFormat; 16] = [
    QuantFormat::Q4K,
    QuantFormat::Q5K,
    QuantFormat::Q6K,
    QuantFormat::Q8_0,
    QuantFormat::Q4_0,
    QuantFormat::Q4_1,
    QuantFormat::Q5_0,
    QuantFormat::Q5_1,
    QuantFormat::Iq4Nl,
    QuantFormat::Iq4Xs,
    QuantFormat::Q3K,
    QuantFormat::Q2K,
    QuantFormat::Iq3XxsNib,
    QuantFormat::Iq3SNib,
    QuantFormat::Iq2Planes,
    QuantFormat::Iq1Shift,
];

#[test]
fn interleaved_formats_are_exact_across_kernels_and_batch_sizes() {
    for (n, format) in INTERLEAVED.into_iter().enumerate() {
        // one and several super-blocks; an odd count of 32-blocks
        let widths: &[usize] = if format.block_elems() == 256 {
            &[256, 1536]
        } else {
            &[96, 896]
        };
        for &cols in widths {
            for m in [1, 2, 3, 5, 8, 9, 16, 17, 40, 130] {
                let mut rng = Rng(0x1616 + 31 * n as u64 + cols as u64 + m as u64);
                let w = random_matrix(format, 48, cols, &mut rng);
                let x: Vec<f32> = (0..m * cols).map(|_| rng.unit() * 2.0).collect();
                check_interleaved(&w, &x, m);
            }
        }
    }
}

/// The integer range limits of `k_quants_exact_at_the_integer_range_limits` on the interleaved
/// kernels: every weight byte 0xFF (and Q8_0's −128) against activations at −128 / +127.
#[test]
fn interleaved_formats_exact_at_the_integer_range_limits() {
    let mut rng = Rng(77);
    for format in INTERLEAVED {
        let (rows, cols) = (32, 512);
        let mut data = vec![0xFFu8; format.bytes_for(rows, cols)];
        for (k, blk) in data.chunks_exact_mut(format.block_bytes()).enumerate() {
            if format == QuantFormat::Q6K && k % 2 == 1 {
                for (j, s) in blk[192..208].iter_mut().enumerate() {
                    *s = if j % 2 == 0 { 0x7F } else { 0x80 };
                }
            }
            // Q8_0: every other block at −128 (all 0xFF is −1)
            if format == QuantFormat::Q8_0 && k % 2 == 1 {
                blk[2..].fill(0x80);
            }
            // IQ4_NL / IQ4_XS: all 0xFF is the top level (113, IQ4_XS's scales at +31); every
            // other block at the bottom level (−127, IQ4_XS's scales at −32)
            if matches!(format, QuantFormat::Iq4Nl | QuantFormat::Iq4Xs) && k % 2 == 1 {
                blk[2..].fill(0x00);
            }
            // Q3_K: all 0xFF is q = 7 under scales +31; every other block q = 0 under −32
            if format == QuantFormat::Q3K && k % 2 == 1 {
                blk[..108].fill(0x00);
            }
            // Q2_K: all 0xFF is q = 3 under scale and min 15; every other block q = 3 under
            // scale 15, min 0
            if format == QuantFormat::Q2K && k % 2 == 1 {
                blk[..16].fill(0x0F);
            }
            // the nibble formats: all 0xFF is the bottom level (−31 / −15) under scale 31;
            // every other block the top one (code 7: +31 / +15)
            if matches!(format, QuantFormat::Iq3XxsNib | QuantFormat::Iq3SNib) && k % 2 == 1 {
                blk[10..].fill(0x77);
            }
            // IQ2_PLANES: all 0xFF is −43 under scale 31, every other block +43 (signs clear);
            // IQ1_SHIFT: all 0xFF is code 3 (level 0) — every other block codes 2 shifted up
            // (+9) and, in the next, codes 0 shifted down (−9)
            if format == QuantFormat::Iq2Planes && k % 2 == 1 {
                blk[10..42].fill(0x00);
            }
            if format == QuantFormat::Iq1Shift {
                match k % 3 {
                    1 => {
                        blk[10..14].fill(0x00);
                        blk[14..].fill(0xAA);
                    }
                    2 => blk[14..].fill(0x00),
                    _ => {}
                }
            }
            for &at in format.f16_fields() {
                blk[at..at + 2].copy_from_slice(&f16::from_f32(0.01).to_le_bytes());
            }
        }
        let w = QuantMatrix::from_raw("extreme", format, rows, cols, data).expect("geometry");
        for m in [1, 3, 17, 40] {
            check_interleaved(&w, &extreme_activations(m, cols, &mut rng), m);
        }
    }
}

/// A matrix with an out scale (`QuantMatrix::with_out_scale`, the exact copies of IQ3_XXS / IQ1
/// blocks) multiplies and dequantizes as its blocks times that power of two, bit for bit, in
/// both layouts and with the other matrices of a `matmul_many` untouched.
#[test]
fn out_scale_multiplies_products_and_values_exactly() {
    let mut rng = Rng(0x5CA1E);
    let (rows, cols, m) = (32, 512, 3);
    let x: Vec<f32> = (0..m * cols).map(|_| rng.unit()).collect();
    for interleave in [false, true] {
        let plain = random_matrix(QuantFormat::Q6K, rows, cols, &mut rng);
        let plain = if interleave {
            plain.interleave()
        } else {
            plain
        };
        let scaled = plain.clone().with_out_scale(0.125);
        assert_eq!(scaled.is_interleaved(), interleave);
        let mut scratch = MatmulScratch::new();
        let (mut a, mut b, mut c) = (
            vec![0.0; m * rows],
            vec![0.0; m * rows],
            vec![0.0; m * rows],
        );
        matmul_many(
            &x,
            m,
            &[&plain, &scaled],
            &mut [&mut a, &mut b],
            &mut scratch,
        )
        .unwrap();
        matmul(&x, m, &plain, &mut c, &mut scratch).unwrap();
        assert_eq!(a, c, "the unscaled matrix beside a scaled one");
        for (p, s) in a.iter().zip(&b) {
            assert_eq!((p * 0.125).to_bits(), s.to_bits());
        }
        for (p, s) in plain.dequantize().iter().zip(scaled.dequantize()) {
            assert_eq!((p * 0.125).to_bits(), s.to_bits());
        }
        let (mut p, mut s) = (vec![0.0; cols], vec![0.0; cols]);
        plain.dequantize_row(7, &mut p).unwrap();
        scaled.dequantize_row(7, &mut s).unwrap();
        assert!(
            p.iter()
                .zip(&s)
                .all(|(p, s)| (p * 0.125).to_bits() == s.to_bits())
        );
    }
}
