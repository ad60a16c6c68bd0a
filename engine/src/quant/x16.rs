//! AVX-512 VNNI kernels for the row-interleaved layouts — Q2_K / Q3_K / Q4_K / Q5_K / Q6_K / IQ4_XS
//! and the code formats IQ3_XXS_NIB / IQ3_S_NIB / IQ2_PLANES / IQ1_SHIFT (`super::interleave`) and Q8_0 / Q4_0 / Q4_1 / Q5_0 / Q5_1 / IQ4_NL (`super::interleave32`): 16
//! weight rows per vector, every
//! activation row through one `vpdpbusd` per 64 weights with its 4 bytes broadcast from memory,
//! then the float operations of the layouts' module docs — bit-identical to the scalar references
//! whatever the number of activation rows. (AVX2 kernels of the same layouts, 8 rows per vector:
//! `super::x16_avx2`.)
//!
//! Per 16 rows × 256 weights: 32 chunk loads and ~96 nibble/bit operations shared by all
//! activation rows, then per activation row 64 `vpdpbusd` plus 8 (Q4_K) or 16 (Q6_K) scale
//! conversions and FMAs — about 5 (Q4_K) or 6 (Q6_K) operations per 256 weights and activation
//! row, against ~14 on the row-major VNNI kernels (`super::avx512`), and no horizontal sums.
//!
//! The 32-weight formats (thirteenth round, a 2-core Intel Xeon with AVX-512 VNNI, no AMX): one
//! thread, 8960 × 1536 (`quant_kernels`, CPU time, rows → x16) Q4_0 m = 1 1133 → 333 µs, Q4_1
//! 1000 → 333, Q5_0 1333 → 400, Q5_1 1265 → 467, Q8_0 1000 → 533; at m = 9 T(9)/T(1) 3.7–4.4 →
//! 1.5–2.4. SmolLM2-135M Q4_1 decode 130–138 → 332–370 tok/s; see ARCHITECTURE.md.

use std::arch::x86_64::*;
use std::ops::Range;

use super::avx2::{dispatch_m, loadu};
use super::format::QuantFormat;
use super::interleave::{GroupSums, ROWS, iq4xs, nib, planes, q2k, q3k, q4k, q5k, q6k, unit_bytes};
use super::interleave32::{D, IQ4_NL, IQ4_NL_U, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, layout_of};
use super::iq_codes::{index_levels, nib_levels_plus32};
use super::matmul::TILE_M;
use super::quantize::ActBlocks;

/// Where one tile of activation rows lives (rows `t0 .. t0 + M` of the call), for the kernels of
/// the interleaved layouts here and in `super::x16_avx2`.
#[derive(Clone, Copy)]
pub(super) struct Acts {
    /// Quantized values of the tile's first row (rows `cols` apart).
    pub(super) qs: *const i8,
    /// Scales of the tile's first row (`nb` per row).
    pub(super) d: *const f32,
    /// Q4_K: group-sum pairs of the first row (`4·nb` per row).
    pub(super) pairs: *const i32,
    /// Q6_K and the nibble formats: `−32 · Σ` per 16-group of the first row (`16·nb` per row).
    pub(super) neg_off: *const i32,
    /// IQ2_PLANES / IQ1_SHIFT: `−64 · Σ` per 16-group of the first row (`16·nb` per row).
    pub(super) neg64: *const i32,
    /// IQ4_XS: `−128 · Σ` per 32-group of the first row (`8·nb` per row).
    pub(super) neg128: *const i32,
    /// Q3_K: `−4 · Σ` per 16-group of the first row (`16·nb` per row).
    pub(super) neg4: *const i32,
    /// Q2_K: the activations' own `Σ` per 16-group of the first row (`16·nb` per row; two
    /// consecutive ones read as one i32 are a `vpdpwssd` pair).
    pub(super) bsums: *const i16,
    /// 32-weight formats: `Σa` per block of the first row (`nb` per row).
    pub(super) sum32: *const i32,
    /// 32-weight formats: ggml's Q8_1 sums `s_a` of the first row (`nb` per row).
    pub(super) s: *const f32,
    pub(super) cols: usize,
}

/// One kernel call's results: `[t][n]` for activation row `t` and weight row `n` of the group.
pub(super) type Tile = [[f32; ROWS]; TILE_M];

/// The driver of every interleaved kernel: for each group of 16 rows in `rows` and each tile of
/// at most [`TILE_M`] activation rows, `kernel(units, nb, acts, tm, tile)` fills `tile` for the
/// group's `nb` units at `units` and the `tm` activation rows at `acts`, and the tile is written
/// to `out[t·n_rows + r]`.
///
/// # Safety
/// `data` is an interleaved `format` matrix with `cols` columns and at least `rows.end` rows;
/// `act` holds `m` rows of `cols` quantized in the format's activation blocks and `sums` their
/// group sums; `out` points to `m × n_rows` floats of which no other thread writes the elements
/// of `rows`; `kernel` reads only what `acts` and `units` describe.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn for_each_tile(
    format: QuantFormat,
    data: &[u8],
    cols: usize,
    act: &ActBlocks,
    sums: &GroupSums,
    m: usize,
    rows: Range<usize>,
    out: *mut f32,
    n_rows: usize,
    mut kernel: impl FnMut(*const u8, usize, Acts, usize, &mut Tile),
) {
    // units per group: super-blocks of 256, or blocks of 32 (`super::interleave32`)
    let nb = cols / format.block_elems();
    let ub = unit_bytes(format);
    debug_assert!(rows.start.is_multiple_of(ROWS) && rows.end.is_multiple_of(ROWS));
    debug_assert!(data.len() >= rows.end / ROWS * nb * ub);
    let mut tile = [[0.0f32; ROWS]; TILE_M];
    for g in rows.start / ROWS..rows.end / ROWS {
        let units = data.as_ptr().wrapping_add(g * nb * ub);
        for t0 in (0..m).step_by(TILE_M) {
            let tm = TILE_M.min(m - t0);
            let acts = Acts {
                qs: act.qs.as_ptr().wrapping_add(t0 * cols),
                d: act.d.as_ptr().wrapping_add(t0 * nb),
                pairs: sums.pairs.as_ptr().wrapping_add(t0 * nb * 4),
                neg_off: sums.neg_off.as_ptr().wrapping_add(t0 * nb * 16),
                neg64: sums.neg64.as_ptr().wrapping_add(t0 * nb * 16),
                neg128: sums.neg128.as_ptr().wrapping_add(t0 * nb * 8),
                neg4: sums.neg4.as_ptr().wrapping_add(t0 * nb * 16),
                bsums: act.bsums.as_ptr().wrapping_add(t0 * nb * 16),
                sum32: sums.sum32.as_ptr().wrapping_add(t0 * nb),
                s: act.s.as_ptr().wrapping_add(t0 * nb),
                cols,
            };
            kernel(units, nb, acts, tm, &mut tile);
            for (t, lanes) in tile.iter().take(tm).enumerate() {
                for (n, v) in lanes.iter().enumerate() {
                    // SAFETY: t0 + t < m and 16g + n is one of the caller's rows.
                    unsafe { *out.add((t0 + t) * n_rows + ROWS * g + n) = *v };
                }
            }
        }
    }
}

/// `out[t·n_rows + r]` for `r ∈ rows` (whole groups of 16) and `t < m`.
///
/// # Safety
/// The CPU supports AVX-512 F/BW/VL/VNNI, AVX2, FMA, F16C and BMI2 (IQ1_SHIFT's `pdep`); `data` is an interleaved `format`
/// matrix (any format with a layout: `super::interleave::has_layout`) with `cols` columns and at
/// least `rows.end` rows; `act` / `sums` hold `m` rows of `cols`; `out` points to `m × n_rows` floats of which no other thread writes the
/// elements of `rows`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn rows_vnni(
    format: QuantFormat,
    data: &[u8],
    cols: usize,
    act: &ActBlocks,
    sums: &GroupSums,
    m: usize,
    rows: Range<usize>,
    out: *mut f32,
    n_rows: usize,
) {
    // SAFETY: forwarded from the caller; the kernels read the group's units and the tile's rows.
    unsafe {
        for_each_tile(
            format,
            data,
            cols,
            act,
            sums,
            m,
            rows,
            out,
            n_rows,
            |u, nb, a, tm, t| match format {
                QuantFormat::Q4K => dispatch_m!(tm, q4k_x16::<FOUR>, u, nb, a, t),
                QuantFormat::Q5K => dispatch_m!(tm, q4k_x16::<FIVE>, u, nb, a, t),
                QuantFormat::Q6K => dispatch_m!(tm, q6k_x16, u, nb, a, t),
                QuantFormat::Iq4Xs => dispatch_m!(tm, iq4xs_x16, u, nb, a, t),
                QuantFormat::Iq3XxsNib => dispatch_m!(tm, nib_x16::<LEVELS_XXS>, u, nb, a, t),
                QuantFormat::Iq3SNib => dispatch_m!(tm, nib_x16::<LEVELS_S>, u, nb, a, t),
                QuantFormat::Iq2Planes => dispatch_m!(tm, planes_x16::<SIGN_BITS>, u, nb, a, t),
                QuantFormat::Iq1Shift => dispatch_m!(tm, planes_x16::<SHIFT_BITS>, u, nb, a, t),
                QuantFormat::Q3K => dispatch_m!(tm, q3k_x16, u, nb, a, t),
                QuantFormat::Q2K => dispatch_m!(tm, q2k_x16, u, nb, a, t),
                QuantFormat::Q4_0 => dispatch_m!(tm, blocks32_x16::<Q4_0>, u, nb, a, t),
                QuantFormat::Q4_1 => dispatch_m!(tm, blocks32_x16::<Q4_1>, u, nb, a, t),
                QuantFormat::Q5_0 => dispatch_m!(tm, blocks32_x16::<Q5_0>, u, nb, a, t),
                QuantFormat::Q5_1 => dispatch_m!(tm, blocks32_x16::<Q5_1>, u, nb, a, t),
                QuantFormat::Q8_0 => dispatch_m!(tm, blocks32_x16::<Q8_0>, u, nb, a, t),
                QuantFormat::Iq4Nl => dispatch_m!(tm, blocks32_x16::<IQ4_NL>, u, nb, a, t),
                _ => unreachable!("{format} has no VNNI interleaved kernel"),
            },
        )
    }
}

/// Prefetch part `part` of `PARTS` of the unit after `u` into L1 and of the one three units on
/// into L2 (a group's units are contiguous, and groups follow each other, so this is one stream).
/// Spread over the unit's sub-blocks rather than issued at once, so the prefetches never hold
/// every line-fill buffer while the arithmetic waits behind them.
#[inline(always)]
pub(super) fn prefetch_part<const UNIT: usize, const PARTS: usize>(u: *const u8, part: usize) {
    let lines = UNIT.div_ceil(64);
    let mut line = part * lines / PARTS;
    while line < (part + 1) * lines / PARTS {
        // SAFETY: a prefetch never faults, whatever the address.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(u.wrapping_add(UNIT + 64 * line) as *const i8);
            _mm_prefetch::<_MM_HINT_T1>(u.wrapping_add(3 * UNIT + 64 * line) as *const i8);
        }
        line += 1;
    }
}

/// [`prefetch_part`] of a whole unit of a 32-weight layout (`unit` bytes: one of
/// `super::interleave32`'s five sizes), so each size gets its constant line count.
#[inline(always)]
pub(super) fn prefetch_unit32(unit: usize, u: *const u8) {
    match unit {
        288 => prefetch_part::<288, 1>(u, 0),
        320 => prefetch_part::<320, 1>(u, 0),
        352 => prefetch_part::<352, 1>(u, 0),
        384 => prefetch_part::<384, 1>(u, 0),
        _ => prefetch_part::<544, 1>(u, 0),
    }
}

/// The four activation bytes at `p` broadcast to every lane.
#[inline(always)]
unsafe fn bcast4(p: *const i8) -> __m512i {
    // SAFETY: 4 readable bytes at p (callers).
    unsafe { _mm512_set1_epi32(loadu::<i32, i8>(p)) }
}

/// `start` plus the integer products of 32 columns: `w[k]` holds columns `4k .. 4k + 4` of the 16
/// rows, `x` the activation row's 32 bytes (one `vpdpbusd` each, the bytes broadcast).
#[inline(always)]
unsafe fn dot32(start: __m512i, w: &[__m512i; 8], x: *const i8) -> __m512i {
    // SAFETY: 32 readable bytes at x (callers); AVX-512 VNNI is the callers' (inlined into them).
    unsafe {
        let mut c = start;
        for (k, wk) in w.iter().enumerate() {
            c = _mm512_dpbusd_epi32(c, *wk, bcast4(x.add(4 * k)));
        }
        c
    }
}

/// Sixteen i8 scales at `p` (one per row) as f32 lanes.
#[inline(always)]
unsafe fn scales_i8(p: *const u8) -> __m512 {
    // SAFETY: 16 readable bytes at p (callers); AVX-512 is the callers' (inlined into them).
    unsafe { _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(loadu::<__m128i, u8>(p))) }
}

/// The 8 weight registers of 32 columns stored as Q3_K's low bits / Q2_K's weights: two chunks
/// at `p` (64 bytes apart), field `i` (bits `2i, 2i + 1`) of chunk `h` giving register `4h + i`.
#[inline(always)]
unsafe fn two_bit_fields(p: *const u8) -> [__m512i; 8] {
    // SAFETY: 128 readable bytes at p (callers); AVX-512 BW is the callers' (inlined into them).
    unsafe {
        let m3 = _mm512_set1_epi8(3);
        let chunks = [0, 1].map(|h| loadu::<__m512i, u8>(p.add(64 * h)));
        std::array::from_fn(|k| {
            let shift = _mm512_set1_epi16(2 * (k % 4) as i16);
            _mm512_and_si512(_mm512_srlv_epi16(chunks[k / 4], shift), m3)
        })
    }
}

/// Two sub-blocks of 16 columns (Q6_K, Q3_K, Q2_K): `isf + C₀·sc[0] + C₁·sc[1]`, where `C₀`
/// sums `w[0..4]` against `x[0..16]` from `start[0]` and `C₁` sums `w[4..8]` against `x[16..32]`
/// from `start[1]` (Q6_K / Q3_K: their offsets `−32·Σa` / `−4·Σa`, broadcast loads; Q2_K: zero).
#[inline(always)]
unsafe fn two_sub_blocks(
    isf: __m512,
    w: &[__m512i; 8],
    x: *const i8,
    start: [__m512i; 2],
    sc: [__m512; 2],
) -> __m512 {
    // SAFETY: 32 readable bytes at x (callers); AVX-512 VNNI is the callers' (inlined into them).
    unsafe {
        let [mut c0, mut c1] = start;
        for k in 0..4 {
            c0 = _mm512_dpbusd_epi32(c0, w[k], bcast4(x.add(4 * k)));
            c1 = _mm512_dpbusd_epi32(c1, w[4 + k], bcast4(x.add(16 + 4 * k)));
        }
        let isf = _mm512_fmadd_ps(_mm512_cvtepi32_ps(c0), sc[0], isf);
        _mm512_fmadd_ps(_mm512_cvtepi32_ps(c1), sc[1], isf)
    }
}

/// The end of a unit whose scale chain multiplies by `d` only (Q6_K, Q3_K, IQ4_XS): `acc[t] +=
/// (isf[t]·d)·d_a` for the 16 f16 `d` at `d_at` and activation row `t`'s scale `da[t·nb]`.
#[inline(always)]
unsafe fn finish_unit<const M: usize>(
    isf: &[__m512; M],
    d_at: *const u8,
    da: *const f32,
    nb: usize,
    acc: &mut [__m512; M],
) {
    // SAFETY: 32 readable bytes at d_at and M scales nb apart at da (callers); AVX-512 is the
    // callers' (inlined into them).
    unsafe {
        let d = _mm512_cvtph_ps(loadu::<__m256i, u8>(d_at));
        for (t, (acc, isf)) in acc.iter_mut().zip(isf).enumerate() {
            let s = _mm512_mul_ps(*isf, d);
            *acc = _mm512_fmadd_ps(s, _mm512_set1_ps(*da.add(t * nb)), *acc);
        }
    }
}

/// The end of a unit with mins (Q4_K, Q2_K): `acc[t] += fma(isf[t], d, −(msum·dmin))·d_a` for
/// the 16 f16 `d` at `d_at` and `dmin` 32 bytes on, activation row `t`'s scale `da[t·nb]`, and
/// the exact integer `msum = Σ_p mins[p] · pair p` (`vpdpwssd`: each row's two i16 mins against
/// the pair of group sums at `pairs[t·stride + p]`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn finish_unit_min<const M: usize, const P: usize>(
    isf: &[__m512; M],
    mins: &[__m512i; P],
    d_at: *const u8,
    pairs: *const i32,
    stride: usize,
    da: *const f32,
    nb: usize,
    acc: &mut [__m512; M],
) {
    // SAFETY: 64 readable bytes at d_at, P pairs stride apart per row at pairs and M scales nb
    // apart at da (callers); AVX-512 VNNI is the callers' (inlined into them).
    unsafe {
        let d = _mm512_cvtph_ps(loadu::<__m256i, u8>(d_at));
        let dmin = _mm512_cvtph_ps(loadu::<__m256i, u8>(d_at.add(32)));
        for (t, (acc, isf)) in acc.iter_mut().zip(isf).enumerate() {
            let pr = pairs.add(t * stride);
            let mut ms = _mm512_madd_epi16(mins[0], _mm512_set1_epi32(loadu::<i32, i32>(pr)));
            for (p, mins) in mins.iter().enumerate().skip(1) {
                let pair = _mm512_set1_epi32(loadu::<i32, i32>(pr.add(p)));
                ms = _mm512_dpwssd_epi32(ms, *mins, pair);
            }
            let s = _mm512_fmsub_ps(*isf, d, _mm512_mul_ps(_mm512_cvtepi32_ps(ms), dmin));
            *acc = _mm512_fmadd_ps(s, _mm512_set1_ps(*da.add(t * nb)), *acc);
        }
    }
}

/// Bits per weight of [`q4k_x16`] / `super::x16_avx2::q4k_x8`: Q4_K's nibbles, or Q5_K's with
/// a fifth bit from its own chunk.
pub(super) const FOUR: u8 = 4;
pub(super) const FIVE: u8 = 5;

/// 16 rows × `M` activation rows of an interleaved Q4_K (`BITS` = 4) or Q5_K (`BITS` = 5)
/// matrix (`nb` units at `units`); Q5_K ORs each register's fifth bits, shifted to bit 4 and
/// masked, into its nibbles.
// `t` indexes several per-row arrays at once
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q4k_x16<const M: usize, const BITS: u8>(
    units: *const u8,
    nb: usize,
    a: Acts,
    out: &mut Tile,
) {
    let m4 = _mm512_set1_epi8(0x0F);
    let m10 = _mm512_set1_epi8(0x10);
    let zero = _mm512_setzero_si512();
    let unit = if BITS == FIVE { q5k::UNIT } else { q4k::UNIT };
    let mut acc = [_mm512_setzero_ps(); M];
    // SAFETY (whole body): unit b spans b·unit..(b + 1)·unit of the group; activation row t's
    // super-block b spans t·cols + 256·b.. of the tile, with scale t·nb + b and pairs (t·nb + b)·4.
    unsafe {
        for b in 0..nb {
            let u = units.add(b * unit);
            let mut isf = [_mm512_setzero_ps(); M];
            for j in 0..8 {
                if BITS == FIVE {
                    prefetch_part::<{ q5k::UNIT }, 8>(u, j);
                } else {
                    prefetch_part::<{ q4k::UNIT }, 8>(u, j);
                }
                let sc = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(loadu::<__m128i, u8>(
                    u.add(q4k::SC + 16 * j),
                )));
                let mut w = [zero; 8];
                for i in 0..4 {
                    let v = loadu::<__m512i, u8>(u.add(q4k::QS + 64 * (4 * j + i)));
                    w[i] = _mm512_and_si512(v, m4);
                    w[4 + i] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
                }
                if BITS == FIVE {
                    // register k's fifth bits are bit k of each lane byte: moved to bit 4 (a
                    // 16-bit shift of at most 4 never carries across the byte for bit 4)
                    let qh = loadu::<__m512i, u8>(u.add(q5k::QH + 64 * j));
                    for k in 0..8 {
                        let h = match k {
                            0..4 => _mm512_sllv_epi16(qh, _mm512_set1_epi16(4 - k as i16)),
                            _ => _mm512_srlv_epi16(qh, _mm512_set1_epi16(k as i16 - 4)),
                        };
                        w[k] = _mm512_or_si512(w[k], _mm512_and_si512(h, m10));
                    }
                }
                for t in 0..M {
                    let c = dot32(zero, &w, a.qs.add(t * a.cols + 256 * b + 32 * j));
                    isf[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(c), sc, isf[t]);
                }
            }
            let mins = [0usize, 1, 2, 3]
                .map(|p| _mm512_cvtepu8_epi16(loadu::<__m256i, u8>(u.add(q4k::MINS + 32 * p))));
            let pairs = a.pairs.add(4 * b);
            finish_unit_min(
                &isf,
                &mins,
                u.add(q4k::D),
                pairs,
                4 * nb,
                a.d.add(b),
                nb,
                &mut acc,
            );
        }
        for t in 0..M {
            _mm512_storeu_ps(out[t].as_mut_ptr(), acc[t]);
        }
    }
}

/// 16 rows × `M` activation rows of an interleaved Q6_K matrix (`nb` units at `units`).
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q6k_x16<const M: usize>(units: *const u8, nb: usize, a: Acts, out: &mut Tile) {
    let m4 = _mm512_set1_epi8(0x0F);
    let m30 = _mm512_set1_epi8(0x30);
    let zero = _mm512_setzero_si512();
    let mut acc = [_mm512_setzero_ps(); M];
    // SAFETY: as in `q4k_x16`; 16 offsets per super-block and row.
    unsafe {
        for b in 0..nb {
            let u = units.add(b * q6k::UNIT);
            let mut isf = [_mm512_setzero_ps(); M];
            // sub-blocks 2J (low nibbles of chunks 4J..4J + 4) and 2J + 1 (high nibbles)
            for jj in 0..8 {
                prefetch_part::<{ q6k::UNIT }, 8>(u, jj);
                let sc = [0, 1].map(|h| scales_i8(u.add(q6k::SC + 16 * (2 * jj + h))));
                let mut w = [zero; 8];
                for h in 0..2 {
                    let qh = loadu::<__m512i, u8>(u.add(q6k::QH + 64 * (2 * jj + h)));
                    for e in 0..2 {
                        let i = 2 * h + e;
                        let v = loadu::<__m512i, u8>(u.add(q6k::QL + 64 * (4 * jj + i)));
                        // chunk 4jj + i's two-bit fields (bits 0–3 of qh for even i, 4–7 for
                        // odd) moved to bits 4–5 of each byte
                        let (hl, hh) = if e == 0 {
                            (_mm512_slli_epi16(qh, 4), _mm512_slli_epi16(qh, 2))
                        } else {
                            (qh, _mm512_srli_epi16(qh, 2))
                        };
                        w[i] = _mm512_or_si512(_mm512_and_si512(v, m4), _mm512_and_si512(hl, m30));
                        w[4 + i] = _mm512_or_si512(
                            _mm512_and_si512(_mm512_srli_epi16(v, 4), m4),
                            _mm512_and_si512(hh, m30),
                        );
                    }
                }
                for t in 0..M {
                    let x = a.qs.add(t * a.cols + 256 * b + 32 * jj);
                    // each sum starts from its −32·Σa
                    let neg_off = a.neg_off.add(t * nb * 16 + 16 * b + 2 * jj);
                    let start = [bcast4(neg_off.cast()), bcast4(neg_off.add(1).cast())];
                    isf[t] = two_sub_blocks(isf[t], &w, x, start, sc);
                }
            }
            finish_unit(&isf, u.add(q6k::D), a.d.add(b), nb, &mut acc);
        }
        for t in 0..M {
            _mm512_storeu_ps(out[t].as_mut_ptr(), acc[t]);
        }
    }
}

/// 16 rows × `M` activation rows of an interleaved Q3_K matrix (`nb` units at `units`): per 32
/// columns, 2 low-bit chunks and 1 high-bit chunk give the 8 weight registers (two bits shifted
/// down and masked, the third bit moved up to bit 2), then per activation row two chains of 4
/// `vpdpbusd` from their `−4·Σa` — Q6_K's arithmetic.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q3k_x16<const M: usize>(units: *const u8, nb: usize, a: Acts, out: &mut Tile) {
    let m1 = _mm512_set1_epi8(1);
    let mut acc = [_mm512_setzero_ps(); M];
    // SAFETY (whole body): unit b spans b·UNIT..(b + 1)·UNIT of the group; activation row t's
    // super-block b spans t·cols + 256·b.. of the tile, with scale t·nb + b and 16-group sums
    // (t·nb + b)·16 + s.
    unsafe {
        for b in 0..nb {
            let u = units.add(b * q3k::UNIT);
            let mut isf = [_mm512_setzero_ps(); M];
            for j in 0..8 {
                prefetch_part::<{ q3k::UNIT }, 8>(u, j);
                let sc = [0, 1].map(|h| scales_i8(u.add(q3k::SC + 16 * (2 * j + h))));
                let mut w = two_bit_fields(u.add(q3k::QL + 128 * j));
                let high = loadu::<__m512i, u8>(u.add(q3k::QH + 64 * j));
                for (k, w) in w.iter_mut().enumerate() {
                    let hi =
                        _mm512_and_si512(_mm512_srlv_epi16(high, _mm512_set1_epi16(k as i16)), m1);
                    *w = _mm512_or_si512(*w, _mm512_slli_epi16(hi, 2));
                }
                for t in 0..M {
                    let x = a.qs.add(t * a.cols + 256 * b + 32 * j);
                    let neg = a.neg4.add((t * nb + b) * 16 + 2 * j);
                    let start = [bcast4(neg.cast()), bcast4(neg.add(1).cast())];
                    isf[t] = two_sub_blocks(isf[t], &w, x, start, sc);
                }
            }
            finish_unit(&isf, u.add(q3k::D), a.d.add(b), nb, &mut acc);
        }
        for t in 0..M {
            _mm512_storeu_ps(out[t].as_mut_ptr(), acc[t]);
        }
    }
}

/// 16 rows × `M` activation rows of an interleaved Q2_K matrix (`nb` units at `units`): per 32
/// columns one widening load of the scale bytes gives both sub-blocks' scales (low nibbles) and
/// 2 weight chunks the 8 weight registers (shifted down and masked); per activation row two
/// chains of 4 `vpdpbusd` from zero, each scaled by its sub-block's scale; at the unit's end the
/// mins (high nibbles) against the activations' 16-group sums — Q4_K's arithmetic over 16
/// sub-blocks of 16.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q2k_x16<const M: usize>(units: *const u8, nb: usize, a: Acts, out: &mut Tile) {
    let m4 = _mm512_set1_epi32(0x0F);
    let zero = _mm512_setzero_si512();
    let mut acc = [_mm512_setzero_ps(); M];
    // SAFETY (whole body): unit b spans b·UNIT..(b + 1)·UNIT of the group; activation row t's
    // super-block b spans t·cols + 256·b.. of the tile, with scale t·nb + b and 16-group sums
    // (t·nb + b)·16 + s.
    unsafe {
        for b in 0..nb {
            let u = units.add(b * q2k::UNIT);
            let mut isf = [_mm512_setzero_ps(); M];
            for j in 0..8 {
                prefetch_part::<{ q2k::UNIT }, 8>(u, j);
                // lane n: row n's scale bytes of sub-blocks 2j, 2j + 1 as two i16
                let pair = _mm512_cvtepu8_epi16(loadu::<__m256i, u8>(u.add(q2k::SC + 32 * j)));
                let sc = [
                    _mm512_cvtepi32_ps(_mm512_and_si512(pair, m4)),
                    _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32(pair, 16), m4)),
                ];
                let w = two_bit_fields(u.add(q2k::QL + 128 * j));
                for t in 0..M {
                    let x = a.qs.add(t * a.cols + 256 * b + 32 * j);
                    isf[t] = two_sub_blocks(isf[t], &w, x, [zero; 2], sc);
                }
            }
            let mins = [0usize, 1, 2, 3, 4, 5, 6, 7].map(|p| {
                let pair = _mm512_cvtepu8_epi16(loadu::<__m256i, u8>(u.add(q2k::SC + 32 * p)));
                _mm512_srli_epi16(pair, 4)
            });
            let pairs = a.bsums.add(16 * b).cast::<i32>();
            finish_unit_min(
                &isf,
                &mins,
                u.add(q2k::D),
                pairs,
                8 * nb,
                a.d.add(b),
                nb,
                &mut acc,
            );
        }
        for t in 0..M {
            _mm512_storeu_ps(out[t].as_mut_ptr(), acc[t]);
        }
    }
}

/// The variants of [`nib_x16`] / `super::x16_avx2::nib_x8`: IQ3_XXS_NIB's levels or IQ3_S_NIB's.
pub(super) const LEVELS_XXS: bool = true;
pub(super) const LEVELS_S: bool = false;

/// The nibble format of a [`nib_x16`] variant.
pub(super) const fn nib_format(xxs: bool) -> QuantFormat {
    if xxs {
        QuantFormat::Iq3XxsNib
    } else {
        QuantFormat::Iq3SNib
    }
}

/// The 8 weight registers of 32 columns stored as 4-bit codes (IQ4_XS, the nibble formats):
/// the four chunks at `p` (64 bytes apart) split into their low (registers 0–3) and high
/// (4–7) nibbles, each looked up in the 16-byte table `levels` (in every 128-bit lane).
#[inline(always)]
unsafe fn looked_up_nibbles(p: *const u8, levels: __m512i) -> [__m512i; 8] {
    // SAFETY: 256 readable bytes at p (callers); AVX-512 BW is the callers' (inlined into them).
    unsafe {
        let m4 = _mm512_set1_epi8(0x0F);
        let mut w = [_mm512_setzero_si512(); 8];
        for i in 0..4 {
            let v = loadu::<__m512i, u8>(p.add(64 * i));
            w[i] = _mm512_shuffle_epi8(levels, _mm512_and_si512(v, m4));
            w[4 + i] = _mm512_shuffle_epi8(levels, _mm512_and_si512(_mm512_srli_epi16(v, 4), m4));
        }
        w
    }
}

/// 16 rows × `M` activation rows of an interleaved IQ3_XXS_NIB (`XXS`) or IQ3_S_NIB matrix
/// (`nb` units at `units`): per 32 columns 4 chunk loads give the 8 weight registers (the codes'
/// levels + 32 by one `vpshufb` each) and one widening load of 16 scale bytes both sub-blocks'
/// `2ls + 1` (low / high nibbles); then per activation row two chains of 4 `vpdpbusd` from
/// their `−32·Σa` — Q6_K's arithmetic.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn nib_x16<const M: usize, const XXS: bool>(
    units: *const u8,
    nb: usize,
    a: Acts,
    out: &mut Tile,
) {
    let format = if XXS {
        QuantFormat::Iq3XxsNib
    } else {
        QuantFormat::Iq3SNib
    };
    // SAFETY: the table is 16 readable bytes.
    let levels =
        unsafe { _mm512_broadcast_i32x4(loadu::<__m128i, u8>(nib_levels_plus32(format).as_ptr())) };
    let mut acc = [_mm512_setzero_ps(); M];
    // SAFETY (whole body): unit b spans b·UNIT..(b + 1)·UNIT of the group; activation row t's
    // super-block b spans t·cols + 256·b.. of the tile, with scale t·nb + b and 16-group sums
    // (t·nb + b)·16 + s.
    unsafe {
        for b in 0..nb {
            let u = units.add(b * nib::UNIT);
            let mut isf = [_mm512_setzero_ps(); M];
            for jj in 0..8 {
                prefetch_part::<{ nib::UNIT }, 8>(u, jj);
                let sc = odd_scales(u.add(nib::SC + 16 * jj));
                let w = looked_up_nibbles(u.add(nib::QS + 64 * 4 * jj), levels);
                for t in 0..M {
                    let x = a.qs.add(t * a.cols + 256 * b + 32 * jj);
                    let neg_off = a.neg_off.add((t * nb + b) * 16 + 2 * jj);
                    let start = [bcast4(neg_off.cast()), bcast4(neg_off.add(1).cast())];
                    isf[t] = two_sub_blocks(isf[t], &w, x, start, sc);
                }
            }
            finish_unit(&isf, u.add(nib::D), a.d.add(b), nb, &mut acc);
        }
        for t in 0..M {
            _mm512_storeu_ps(out[t].as_mut_ptr(), acc[t]);
        }
    }
}

/// The scales `2ls + 1` of two sub-blocks from 16 scale bytes at `p` (the code formats' units:
/// byte `n` holds row `n`'s nibbles of the first sub-block, low, and of the second, high) as f32
/// lanes.
#[inline(always)]
unsafe fn odd_scales(p: *const u8) -> [__m512; 2] {
    // SAFETY: 16 readable bytes at p (callers); AVX-512 is the callers' (inlined into them).
    unsafe {
        let ls = _mm512_cvtepu8_epi32(loadu::<__m128i, u8>(p));
        let (lo, hi) = (
            _mm512_and_si512(ls, _mm512_set1_epi32(0x0F)),
            _mm512_srli_epi32(ls, 4),
        );
        let one = _mm512_set1_epi32(1);
        [
            _mm512_cvtepi32_ps(_mm512_or_si512(_mm512_add_epi32(lo, lo), one)),
            _mm512_cvtepi32_ps(_mm512_or_si512(_mm512_add_epi32(hi, hi), one)),
        ]
    }
}

/// The variants of [`planes_x16`] / `super::x16_avx2::planes_x8`: IQ2_PLANES's sign bits or
/// IQ1_SHIFT's shift bits.
pub(super) const SIGN_BITS: bool = false;
pub(super) const SHIFT_BITS: bool = true;

/// The format and unit bytes of a [`planes_x16`] variant.
pub(super) const fn planes_format(shift: bool) -> (QuantFormat, usize) {
    if shift {
        (QuantFormat::Iq1Shift, planes::SHIFT_UNIT)
    } else {
        (QuantFormat::Iq2Planes, planes::UNIT)
    }
}

/// A 2-bit format's [`index_levels`] + 64 as a `vpshufb` table of its first (`down == false`:
/// positive / shifted-up) or last four entries.
fn planes_table(format: QuantFormat, down: bool) -> [u8; 16] {
    let levels = index_levels(format);
    std::array::from_fn(|k| {
        if k < 4 {
            (levels[k + 4 * usize::from(down)] + 64) as u8
        } else {
            0
        }
    })
}

/// 16 rows × `M` activation rows of an interleaved IQ2_PLANES (`SHIFT == SIGN_BITS`) or
/// IQ1_SHIFT matrix (`nb` units at `units`): per 4 columns a code chunk's 16 bytes broadcast to
/// the four 128-bit lanes, shifted by 0 / 2 / 4 / 6 and masked, one `vpshufb` into the
/// positive (shifted-up) levels + 64 and one into the others under the chunk's 64-bit mask (the
/// sign bits as stored; the rows' shift bits spread to 4 lanes each by `pdep`); then per
/// activation row two chains of 4 `vpdpbusd` from their `−64·Σa` — Q6_K's arithmetic.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c,bmi2")]
unsafe fn planes_x16<const M: usize, const SHIFT: bool>(
    units: *const u8,
    nb: usize,
    a: Acts,
    out: &mut Tile,
) {
    let (format, unit) = planes_format(SHIFT);
    let [up, down] = [false, true].map(|d| {
        let t = planes_table(format, d);
        // SAFETY: 16 readable bytes.
        unsafe { _mm512_broadcast_i32x4(loadu::<__m128i, u8>(t.as_ptr())) }
    });
    // lane L of the broadcast codes: its bytes' bits 2L, 2L + 1
    let lane_shift: [i16; 32] = std::array::from_fn(|w| 2 * (w / 8) as i16);
    // SAFETY: 64 readable bytes.
    let lane_shift = unsafe { loadu::<__m512i, i16>(lane_shift.as_ptr()) };
    let m3 = _mm512_set1_epi8(3);
    let mut acc = [_mm512_setzero_ps(); M];
    // SAFETY (whole body): unit b spans b·unit..(b + 1)·unit of the group; activation row t's
    // super-block b spans t·cols + 256·b.. of the tile, with scale t·nb + b and 16-group sums
    // (t·nb + b)·16 + s.
    unsafe {
        for b in 0..nb {
            let u = units.add(b * unit);
            let mut isf = [_mm512_setzero_ps(); M];
            for jj in 0..8 {
                if SHIFT {
                    prefetch_part::<{ planes::SHIFT_UNIT }, 8>(u, jj);
                } else {
                    prefetch_part::<{ planes::UNIT }, 8>(u, jj);
                }
                let sc = odd_scales(u.add(planes::SC + 16 * jj));
                let mut w = [_mm512_setzero_si512(); 8];
                for (k, w) in w.iter_mut().enumerate() {
                    let c = 8 * jj + k;
                    let codes =
                        _mm512_broadcast_i32x4(loadu::<__m128i, u8>(u.add(planes::CODES + 16 * c)));
                    let idx = _mm512_and_si512(_mm512_srlv_epi16(codes, lane_shift), m3);
                    let mask: __mmask64 = if SHIFT {
                        // chunk c is in group c / 2; row n's bit to lane bytes 4n .. 4n + 4
                        let bits = loadu::<u16, u8>(u.add(planes::BITS + 2 * (c / 2)));
                        _pdep_u64(u64::from(bits), 0x1111_1111_1111_1111) * 0x0F
                    } else {
                        loadu::<u64, u8>(u.add(planes::BITS + 8 * c))
                    };
                    *w = _mm512_mask_shuffle_epi8(_mm512_shuffle_epi8(up, idx), mask, down, idx);
                }
                for t in 0..M {
                    let x = a.qs.add(t * a.cols + 256 * b + 32 * jj);
                    let neg = a.neg64.add((t * nb + b) * 16 + 2 * jj);
                    let start = [bcast4(neg.cast()), bcast4(neg.add(1).cast())];
                    isf[t] = two_sub_blocks(isf[t], &w, x, start, sc);
                }
            }
            finish_unit(&isf, u.add(planes::D), a.d.add(b), nb, &mut acc);
        }
        for t in 0..M {
            _mm512_storeu_ps(out[t].as_mut_ptr(), acc[t]);
        }
    }
}

/// 16 rows × `M` activation rows of an interleaved IQ4_XS matrix (`nb` units at `units`): per
/// sub-block 4 chunk loads split into 8 index registers, each turned into its levels + 128 by one
/// `vpshufb`, then per activation row 8 `vpdpbusd` from its `−128·Σa`, one conversion and one FMA
/// with the sub-block scales — Q6_K's arithmetic over 8 sub-blocks of 32.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn iq4xs_x16<const M: usize>(units: *const u8, nb: usize, a: Acts, out: &mut Tile) {
    // SAFETY: IQ4_NL_U is 16 readable bytes.
    let levels = unsafe { _mm512_broadcast_i32x4(loadu::<__m128i, u8>(IQ4_NL_U.as_ptr())) };
    let mut acc = [_mm512_setzero_ps(); M];
    // SAFETY (whole body): unit b spans b·UNIT..(b + 1)·UNIT of the group; activation row t's
    // super-block b spans t·cols + 256·b.. of the tile, with scale t·nb + b and 32-group sums
    // (t·nb + b)·8 + j.
    unsafe {
        for b in 0..nb {
            let u = units.add(b * iq4xs::UNIT);
            let mut isf = [_mm512_setzero_ps(); M];
            for j in 0..8 {
                prefetch_part::<{ iq4xs::UNIT }, 8>(u, j);
                let sc = scales_i8(u.add(iq4xs::SC + 16 * j));
                let w = looked_up_nibbles(u.add(iq4xs::QS + 64 * 4 * j), levels);
                for t in 0..M {
                    let x = a.qs.add(t * a.cols + 256 * b + 32 * j);
                    // from its −128·Σa (a broadcast load)
                    let neg = bcast4(a.neg128.add((t * nb + b) * 8 + j).cast());
                    let c = dot32(neg, &w, x);
                    isf[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(c), sc, isf[t]);
                }
            }
            finish_unit(&isf, u.add(iq4xs::D), a.d.add(b), nb, &mut acc);
        }
        for t in 0..M {
            _mm512_storeu_ps(out[t].as_mut_ptr(), acc[t]);
        }
    }
}

/// 16 rows × `M` activation rows of an interleaved Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0 / IQ4_NL
/// matrix (`nb` units of 32 columns; `super::interleave32`): per unit the 8 weight registers (4
/// chunk loads split into nibbles, fifth bits merged under a 64-bit mask, IQ4_NL's nibbles
/// turned into its levels + 128 by one `vpshufb` each; Q8_0 its 8 chunks as they are) are
/// decoded once, then each activation row takes 8 `vpdpbusd` from its `−OFF·Σa`, one
/// conversion, the scale multiply and one FMA (two with a minimum term). `vpdpbusd` sums in i32,
/// so Q8_0's stored `w + 128` needs no nibble split as on AVX2.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn blocks32_x16<const M: usize, const F: u8>(
    units: *const u8,
    nb: usize,
    a: Acts,
    out: &mut Tile,
) {
    let l = const { layout_of(F) };
    let m4 = _mm512_set1_epi8(0x0F);
    let fifth = _mm512_set1_epi8(0x10);
    let zero = _mm512_setzero_si512();
    // SAFETY: IQ4_NL_U is 16 readable bytes.
    let levels = unsafe { _mm512_broadcast_i32x4(loadu::<__m128i, u8>(IQ4_NL_U.as_ptr())) };
    let mut acc = [_mm512_setzero_ps(); M];
    // SAFETY (whole body): unit b spans b·unit..(b + 1)·unit of the group (chunks of 64 bytes,
    // masks of 8, f16 fields of 32); activation row t's block b spans t·cols + 32·b.., with
    // scale, sum and Q8_1 sum t·nb + b.
    unsafe {
        for b in 0..nb {
            let u = units.add(b * l.unit);
            prefetch_unit32(l.unit, u);
            let d = _mm512_cvtph_ps(loadu::<__m256i, u8>(u.add(D)));
            // w[c] holds columns 4c..4c + 4 of the 16 rows
            let mut w = [zero; 8];
            if l.bytes {
                for c in 0..8 {
                    w[c] = loadu::<__m512i, u8>(u.add(l.qs + 64 * c));
                }
            } else {
                for i in 0..4 {
                    let v = loadu::<__m512i, u8>(u.add(l.qs + 64 * i));
                    w[i] = _mm512_and_si512(v, m4);
                    w[4 + i] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
                }
                if let Some(qh) = l.qh {
                    for c in 0..8 {
                        let bits: __mmask64 = loadu::<u64, u8>(u.add(qh + 8 * c));
                        w[c] = _mm512_or_si512(w[c], _mm512_maskz_mov_epi8(bits, fifth));
                    }
                }
                if l.lut {
                    for c in 0..8 {
                        w[c] = _mm512_shuffle_epi8(levels, w[c]);
                    }
                }
            }
            let mins = l.m.map(|m| _mm512_cvtph_ps(loadu::<__m256i, u8>(u.add(m))));
            for t in 0..M {
                let x = a.qs.add(t * a.cols + 32 * b);
                let start = if l.off != 0 {
                    _mm512_set1_epi32(-l.off * *a.sum32.add(t * nb + b))
                } else {
                    zero
                };
                let c = dot32(start, &w, x);
                let s = _mm512_mul_ps(_mm512_cvtepi32_ps(c), d);
                acc[t] = _mm512_fmadd_ps(s, _mm512_set1_ps(*a.d.add(t * nb + b)), acc[t]);
                if let Some(mv) = mins {
                    acc[t] = _mm512_fmadd_ps(mv, _mm512_set1_ps(*a.s.add(t * nb + b)), acc[t]);
                }
            }
        }
        for t in 0..M {
            _mm512_storeu_ps(out[t].as_mut_ptr(), acc[t]);
        }
    }
}
