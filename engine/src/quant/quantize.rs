//! Quantizers from f32 to the formats of the "quantization axis" (f32 / f16 / bf16 / q8_0 / q4_0 /
//! q4_1 / q5_0 / q5_1), so any checkpoint can be run quantized, and the 8-bit activation blocks
//! the integer kernels multiply with.
//!
//! The weight quantizers are ggml's reference ones (`quantize_row_q8_0_ref`, `quantize_row_q4_0_ref`,
//! `quantize_row_q4_1_ref`, `quantize_row_q5_0_ref`, `quantize_row_q5_1_ref` in llama.cpp
//! `ggml-quants.c`): round-to-nearest with one scale per block of 32, so a model quantized here is
//! bit-identical to one quantized by `llama-quantize` without an importance matrix (checked
//! against gguf-py's ports of them on tests/fixtures/quantize). IQ4_NL and IQ4_XS take llama.cpp's
//! `quantize_iq4_nl` / `quantize_iq4_xs` (`super::iq4_nl::quantize_weights_block`,
//! `super::iq4_xs::quantize_block`, checked against its library's bytes), the K-quants its
//! `quantize_row_q*_K_ref` (`super::k_quantize`, likewise).

use half::{bf16, f16};

use super::format::QuantFormat;

/// Quantize `x` (a whole number of blocks of `format`) and append the bytes to `out`.
pub fn quantize_into(format: QuantFormat, x: &[f32], out: &mut Vec<u8>) {
    let be = format.block_elems();
    debug_assert_eq!(x.len() % be, 0);
    let mut per_block = |f: fn(&[f32], &mut [u8])| {
        for b in x.chunks_exact(be) {
            let at = out.len();
            out.resize(at + format.block_bytes(), 0);
            f(b, &mut out[at..]);
        }
    };
    match format {
        QuantFormat::F32 => x
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        QuantFormat::F16 => x
            .iter()
            .for_each(|&v| out.extend_from_slice(&f16::from_f32(v).to_le_bytes())),
        QuantFormat::Bf16 => x
            .iter()
            .for_each(|&v| out.extend_from_slice(&bf16::from_f32(v).to_le_bytes())),
        QuantFormat::Q8_0
        | QuantFormat::Q4_0
        | QuantFormat::Q4_1
        | QuantFormat::Q5_0
        | QuantFormat::Q5_1 => x.chunks_exact(32).for_each(|b| {
            let at = out.len();
            out.resize(at + format.block_bytes(), 0);
            quantize_block(format, b, &mut out[at..]);
        }),
        QuantFormat::Iq4Nl => per_block(super::iq4_nl::quantize_weights_block),
        QuantFormat::Iq4Xs => per_block(super::iq4_xs::quantize_block),
        QuantFormat::Q2K => per_block(super::k_quantize::q2_k_block),
        QuantFormat::Q3K => per_block(super::k_quantize::q3_k_block),
        QuantFormat::Q4K => per_block(super::k_quantize::q4_k_block),
        QuantFormat::Q5K => per_block(super::k_quantize::q5_k_block),
        QuantFormat::Q6K => per_block(super::k_quantize::q6_k_block),
        // `QuantMatrix::quantize` and `QuantFormat::from_str` refuse them first
        QuantFormat::Iq2Planes
        | QuantFormat::Iq3XxsNib
        | QuantFormat::Iq3SNib
        | QuantFormat::Iq1Shift => {
            unreachable!("no {format} quantizer")
        }
    }
}

/// One ggml block of the 32 values `x` in `format` (Q8_0, Q4_0, Q4_1, Q5_0 or Q5_1) into `out`
/// (its `block_bytes`), as ggml's `quantize_row_*_ref` makes it — the weight quantizer's blocks
/// and the KV cache's (`crate::model::cpu_attention::Block32`):
/// - Q8_0: `d = max|x| / 127`, `q = round(x / d)`;
/// - Q4_0 / Q5_0: the signed value of largest magnitude (the first, on ties) maps to `−H` (H = 8
///   / 16), `d = max / −H`, `q = min(2H − 1, trunc(x / d + H + 0.5))`;
/// - Q4_1 / Q5_1: `d = (max − min) / L` (L = 15 / 31), `q = min(L, trunc((x − min) / d + 0.5))`,
///   the minimum stored beside `d`;
///
/// `d` (and `m`) as little-endian `f16` bits; 4-bit values `j` and `j + 16` share byte `j`'s low
/// and high nibble, the fifth bit of value `j` is bit `j` of the little-endian `qh`.
///
/// # Panics
/// For any other format, or when `x` is not 32 values or `out` not one block.
pub fn quantize_block(format: QuantFormat, x: &[f32], out: &mut [u8]) {
    assert!(
        x.len() == 32 && out.len() == format.block_bytes(),
        "one {format} block"
    );
    let (m_at, qh_at, qs_at) = super::interleave32::ggml_fields(format);
    let signed_max = || {
        x.iter()
            .fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m })
    };
    let range = || {
        let min = x.iter().copied().fold(f32::INFINITY, f32::min);
        (min, x.iter().copied().fold(f32::NEG_INFINITY, f32::max))
    };
    let inverse = |d: f32| if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut q = [0u8; 32];
    let (d, bits) = match format {
        QuantFormat::Q8_0 => {
            let d = x.iter().fold(0.0f32, |a, v| a.max(v.abs())) / 127.0;
            let id = inverse(d);
            for (o, &v) in out[qs_at..qs_at + 32].iter_mut().zip(x) {
                *o = (v * id).round() as i8 as u8;
            }
            (d, 8)
        }
        QuantFormat::Q4_0 | QuantFormat::Q5_0 => {
            let (half, top) = if format == QuantFormat::Q4_0 {
                (8.0, 15)
            } else {
                (16.0, 31)
            };
            let d = signed_max() / -half;
            let id = inverse(d);
            for (o, &v) in q.iter_mut().zip(x) {
                *o = ((v * id + (half + 0.5)) as i8).min(top) as u8;
            }
            (d, if top == 15 { 4 } else { 5 })
        }
        QuantFormat::Q4_1 | QuantFormat::Q5_1 => {
            let levels = if format == QuantFormat::Q4_1 {
                15u8
            } else {
                31
            };
            let (min, max) = range();
            let d = (max - min) / f32::from(levels);
            let id = inverse(d);
            for (o, &v) in q.iter_mut().zip(x) {
                *o = (((v - min) * id + 0.5) as u8).min(levels);
            }
            out[m_at..m_at + 2].copy_from_slice(&f16::from_f32(min).to_le_bytes());
            (d, if levels == 15 { 4 } else { 5 })
        }
        _ => panic!("{format} has no block quantizer"),
    };
    out[0..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
    if bits == 8 {
        return;
    }
    for j in 0..16 {
        out[qs_at + j] = (q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4);
    }
    if bits == 5 {
        let high = (0..32).fold(0u32, |h, j| h | u32::from(q[j] >> 4) << j);
        out[qh_at..qh_at + 4].copy_from_slice(&high.to_le_bytes());
    }
}

/// Activation rows quantized to 8-bit blocks for the integer kernels, as ggml's `block_q8_1`
/// (blocks of 32, for the 32-weight formats) and `block_q8_K` (blocks of 256, for the K-quants) do:
/// block `b` holds `q = round(x / d)` with `d = max|x| / 127`; every group of 16 keeps its integer
/// sum `Σq` (`bsums`) and every group of 32 its scaled sum `s = d · Σq`, which the offset and minimum
/// terms of Q4_0 / Q4_1 / Q5_* / Q4_K / Q5_K / Q6_K need.
///
/// A reusable buffer: [`ActBlocks::quantize`] grows it on first use and never shrinks it, so the
/// decode loop does not allocate.
#[derive(Debug, Default, Clone)]
pub struct ActBlocks {
    /// `rows × cols` quantized values.
    pub(crate) qs: Vec<i8>,
    /// `rows × cols / block` block scales.
    pub(crate) d: Vec<f32>,
    /// `rows × cols / 32` sums `d · Σq` of each group of 32.
    pub(crate) s: Vec<f32>,
    /// `rows × cols / 16` integer sums `Σq` of each group of 16.
    pub(crate) bsums: Vec<i16>,
    /// Values per scale: 32 or 256.
    pub(crate) block: usize,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
}

/// Quantize one activation block (a multiple of 32 values) to `q = round(x / d)`, rounding half
/// to even (as `vcvtps2dq` and ggml's `nearest_int` do), and return `(d, d before rounding)`:
/// - blocks of 32 (ggml's `block_q8_0` / `block_q8_1` as its AVX2 quantizer fills them, for
///   Q4_0 / Q4_1 / Q5_* / Q8_0 weights): `q = round(x · 127 / max|x|) ∈ [−127, 127]`,
///   `d = max|x| / 127` stored as an IEEE half (the kernels multiply with the rounded scale, as
///   ggml's do);
/// - blocks of 256 (ggml's `block_q8_K`, for the K-quants): the value of largest magnitude (the
///   first, on ties) maps to −128, `d = −max / 128`, `q = min(127, round(x / d))`.
///
/// The AVX2 path and the portable one give identical bytes.
fn quantize_act_block(xb: &[f32], qb: &mut [i8]) -> (f32, f32) {
    #[cfg(target_arch = "x86_64")]
    if super::matmul::Isa::detect() != super::matmul::Isa::Scalar {
        // SAFETY: AVX2 was detected; `xb` and `qb` have the same length, a multiple of 32.
        let amax = unsafe { abs_max_avx2(xb) };
        let (d, id) = act_scale(xb, amax);
        // SAFETY: as above.
        unsafe { round_avx2(xb, id, qb) };
        return stored_scale(xb, d);
    }
    quantize_act_block_scalar(xb, qb)
}

/// `(scale the kernels use, exact scale)`: 32-blocks keep their scale as an IEEE half.
fn stored_scale(xb: &[f32], d: f32) -> (f32, f32) {
    if xb.len() == 256 {
        (d, d)
    } else {
        (f16::from_f32(d).to_f32(), d)
    }
}

/// `(d, 1/d)` of an activation block whose largest magnitude is `amax` (see
/// [`quantize_act_block`]); `(0, 0)` for an all-zero block.
fn act_scale(xb: &[f32], amax: f32) -> (f32, f32) {
    if amax == 0.0 {
        return (0.0, 0.0);
    }
    if xb.len() == 256 {
        let max = xb.iter().copied().find(|v| v.abs() == amax).unwrap_or(amax);
        let iscale = -128.0 / max;
        (1.0 / iscale, iscale)
    } else {
        (amax / 127.0, 127.0 / amax)
    }
}

/// [`quantize_act_block`] in portable Rust.
fn quantize_act_block_scalar(xb: &[f32], qb: &mut [i8]) -> (f32, f32) {
    let amax = xb.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let (d, id) = act_scale(xb, amax);
    for (q, &v) in qb.iter_mut().zip(xb) {
        *q = (v * id).round_ties_even().clamp(-128.0, 127.0) as i8;
    }
    stored_scale(xb, d)
}

/// Largest |x| of a block, with AVX2.
///
/// # Safety
/// The CPU supports AVX2; `xb.len()` is a multiple of 8.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn abs_max_avx2(xb: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let xp = xb.as_ptr();
    // SAFETY: every access is within the `xb.len()` elements.
    unsafe {
        let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        let mut mx = _mm256_setzero_ps();
        for j in (0..xb.len()).step_by(8) {
            mx = _mm256_max_ps(mx, _mm256_and_ps(abs_mask, _mm256_loadu_ps(xp.add(j))));
        }
        let m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        let m2 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        _mm_cvtss_f32(_mm_max_ss(m2, _mm_shuffle_ps(m2, m2, 1)))
    }
}

/// `q = clamp(round_even(x · id), −128, 127)` with AVX2 (the saturating packs clamp).
///
/// # Safety
/// The CPU supports AVX2; `xb.len() == qb.len()`, a multiple of 32.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn round_avx2(xb: &[f32], id: f32, qb: &mut [i8]) {
    use std::arch::x86_64::*;
    debug_assert!(xb.len() == qb.len() && xb.len().is_multiple_of(32));
    let (xp, qp) = (xb.as_ptr(), qb.as_mut_ptr());
    // SAFETY: every access is within the `xb.len()` elements of both slices.
    unsafe {
        let id = _mm256_set1_ps(id);
        // packs interleave 128-bit lanes; this restores element order
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for j in (0..xb.len()).step_by(32) {
            let r = |k: usize| {
                _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xp.add(j + 8 * k)), id))
            };
            let a = _mm256_packs_epi32(r(0), r(1));
            let b = _mm256_packs_epi32(r(2), r(3));
            let q = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(a, b), order);
            _mm256_storeu_si256(qp.add(j) as *mut __m256i, q);
        }
    }
}

impl ActBlocks {
    /// Quantize `x` (`rows × cols`, row-major, `cols` a multiple of `block`) with one scale per
    /// `block` (32 or 256) values.
    pub fn quantize(&mut self, x: &[f32], rows: usize, cols: usize, block: usize) {
        self.quantize_for(x, rows, cols, block, false);
    }

    /// [`ActBlocks::quantize`], with the 32-blocks' sums `s` as the weights will use them:
    /// `q8_1_sums` — ggml's `block_q8_1.s = fp16(d · Σq)` (Q4_1 / Q5_1 weights, whose min term is
    /// `m · s`); otherwise `s = d · Σq` in f32 (Q4_0 / Q5_0, whose offset ggml applies to exact
    /// integer sums).
    pub fn quantize_for(
        &mut self,
        x: &[f32],
        rows: usize,
        cols: usize,
        block: usize,
        q8_1_sums: bool,
    ) {
        debug_assert!(block == 32 || block == 256);
        debug_assert_eq!(cols % block, 0);
        debug_assert_eq!(x.len(), rows * cols);
        let n = rows * cols;
        self.qs.resize(n, 0);
        self.d.resize(n / block, 0.0);
        self.s.resize(n / 32, 0.0);
        self.bsums.resize(n / 16, 0);
        self.block = block;
        self.rows = rows;
        self.cols = cols;
        for (b, (xb, qb)) in x
            .chunks_exact(block)
            .zip(self.qs.chunks_exact_mut(block))
            .enumerate()
        {
            let (d, d_exact) = quantize_act_block(xb, qb);
            self.d[b] = d;
            let g16 = b * block / 16;
            for (k, q16) in qb.chunks_exact(16).enumerate() {
                self.bsums[g16 + k] = q16.iter().map(|&q| i16::from(q)).sum();
            }
            for k in 0..block / 32 {
                let pair =
                    i32::from(self.bsums[g16 + 2 * k]) + i32::from(self.bsums[g16 + 2 * k + 1]);
                self.s[b * block / 32 + k] = if q8_1_sums && block == 32 {
                    f16::from_f32(d_exact * pair as f32).to_f32()
                } else {
                    d * pair as f32
                };
            }
        }
    }

    /// The largest error `|x − d·q|` of any element of block `b` is at most `d / 2`.
    #[cfg(test)]
    pub(crate) fn block_scale(&self, b: usize) -> f32 {
        self.d[b]
    }
}

#[cfg(test)]
mod tests {
    use super::super::dequant::dequantize_into;
    use super::*;

    /// The AVX2 and portable activation quantizers give the same bytes, ties included.
    #[test]
    fn activation_quantizers_agree_bytewise() {
        // 127 / 127 · k + 0.5 steps: exact ties at every other value
        let mut x: Vec<f32> = (0..256).map(|i| (i as f32 - 128.0) * 0.5).collect();
        x[7] = 127.0;
        x.extend(ramp(256));
        let (mut a, mut b) = (vec![0i8; 32 * 16], vec![0i8; 32 * 16]);
        for (xb, (qa, qb)) in x.chunks(32).zip(a.chunks_mut(32).zip(b.chunks_mut(32))) {
            let da = quantize_act_block_scalar(xb, qa);
            let db = quantize_act_block(xb, qb);
            assert_eq!(da, db);
        }
        assert_eq!(a, b);
    }

    fn ramp(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013)
            .collect()
    }

    /// Round trip error of each quantizer is within half a quantization step of its block (a whole
    /// step for Q4_0, whose grid `[-8d, 7d]` clamps the extreme of the opposite sign).
    #[test]
    fn weight_quantizers_round_trip_within_half_a_step() {
        let x = ramp(256);
        for (format, steps) in [
            (QuantFormat::Q8_0, 127.0),
            (QuantFormat::Q4_0, 4.0),
            (QuantFormat::Q4_1, 7.5),
            (QuantFormat::Q5_0, 8.0),
            (QuantFormat::Q5_1, 15.5),
        ] {
            let mut bytes = Vec::new();
            quantize_into(format, &x, &mut bytes);
            assert_eq!(bytes.len(), format.bytes_for(1, 256));
            let mut y = vec![0.0; 256];
            dequantize_into(format, &bytes, &mut y);
            for (xb, yb) in x.chunks(32).zip(y.chunks(32)) {
                let amax = xb.iter().fold(0.0f32, |a, v| a.max(v.abs()));
                let span = match format {
                    QuantFormat::Q4_1 | QuantFormat::Q5_1 => {
                        xb.iter().copied().fold(f32::MIN, f32::max)
                            - xb.iter().copied().fold(f32::MAX, f32::min)
                    }
                    _ => amax,
                };
                // half a step, plus f16 rounding of the scale (2^-11 relative, times 15 steps)
                let tol = 0.5 * span / steps + amax * 1e-2 / steps * 2.0;
                for (a, b) in xb.iter().zip(yb) {
                    assert!((a - b).abs() <= tol, "{format}: {a} vs {b} (tol {tol})");
                }
            }
        }
    }

    #[test]
    fn activation_blocks_round_trip_and_sum() {
        let x = ramp(96);
        let mut a = ActBlocks::default();
        a.quantize(&x, 1, 96, 32);
        for b in 0..3 {
            let d = a.block_scale(b);
            let mut sum = 0.0;
            for j in 0..32 {
                let v = d * f32::from(a.qs[32 * b + j]);
                assert!((v - x[32 * b + j]).abs() <= 0.5 * d * 1.0001);
                sum += v;
            }
            assert!((sum - a.s[b]).abs() <= 1e-5);
        }
        // one scale per 256: group sums still per 16 and per 32
        let x = ramp(256);
        a.quantize(&x, 1, 256, 256);
        let d = a.block_scale(0);
        for k in 0..16 {
            let sum: i16 = a.qs[16 * k..16 * k + 16]
                .iter()
                .map(|&q| i16::from(q))
                .sum();
            assert_eq!(a.bsums[k], sum);
        }
        // Q8_K's scale is negative when the largest magnitude is positive; a value of the opposite
        // sign and the same magnitude would be +128 and is clamped to 127 (one step, as in ggml)
        for (j, v) in x.iter().enumerate() {
            let err = (d * f32::from(a.qs[j]) - v).abs();
            let steps = if a.qs[j] == 127 { 1.0 } else { 0.5 };
            assert!(err <= steps * d.abs() * 1.0001, "{j}: {v} → {}", a.qs[j]);
        }
        // all-zero rows give zero scales, not NaN
        a.quantize(&[0.0; 32], 1, 32, 32);
        assert_eq!((a.d[0], a.s[0], a.qs[5]), (0.0, 0.0, 0));
    }
}
