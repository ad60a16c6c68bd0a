//! AVX2 kernels for the row-interleaved layouts — Q2_K / Q3_K / Q4_K / Q5_K / Q6_K / IQ4_XS /
//! IQ3_XXS_NIB / IQ3_S_NIB / IQ2_PLANES / IQ1_SHIFT (`super::interleave`) and Q8_0 / Q4_0 / Q4_1 / Q5_0 / Q5_1 / IQ4_NL (`super::interleave32`) —
//! for CPUs without AVX-512: each 64-byte chunk is two 256-bit halves of 8 rows, and each activation row goes through `vpmaddubsw` (u8 × i8 pairs
//! to i16) with its 4 bytes broadcast from memory, i16 sums across chunks, and one `vpmaddwd` per
//! sub-block to i32 — then exactly the float operations of the layouts' module docs, so the
//! results are bit-identical to the scalar references and to the AVX-512 VNNI kernels
//! (`super::x16`) whatever the number of activation rows.
//!
//! # Why
//! On ggml's row-major blocks the AVX2 kernels (`super::avx2`) end every (weight row, activation
//! row) pair in a horizontal sum and apply the block scales per row: a 9-token verify of
//! Qwen2.5-Coder-1.5B cost 5 single-token steps on a 2-core AMD EPYC (Zen, AVX2 only).
//! Interleaved, 8 rows' integer sums come out lane by lane and the scales of 8 rows are applied by
//! one FMA.
//!
//! # Exactness of the i16 sums
//! `vpmaddubsw` saturates at ±32767, so the i16 sums only take what cannot reach it, activations
//! being in −128..=127: Q4_K adds the 8 products of a 32-weight sub-block (|sum| ≤ 8 · 2 · 15 ·
//! 128 = 30720), Q5_K 4 per half sub-block (4 · 2 · 31 · 128 = 31744); Q3_K / Q2_K four (at most
//! 4 · 2 · 7 · 128); Q6_K and the nibble formats (levels + 32 in 1 ..= 63) two (2 · 2 · 63 · 128 =
//! 32256); IQ2_PLANES / IQ1_SHIFT (levels + 64 up to 107) one: each `vpmaddubsw` is widened on
//! its own (2 · 107 · 128 = 27392). the 32-weight formats four (4 · 2 · 31 · 128
//! = 31744). Q8_0's stored `w + 128` would overflow a single pair (2 · 255 · 128), so its kernel
//! multiplies the two nibbles of each byte separately (eight products per sum, 30720 at most) and
//! joins them as `Σ lo·a + 16 · Σ hi·a` in i32. IQ4_NL's levels + 128 (up to 241) take the same
//! route: two `vpshufb` per index register give the low and high nibbles of the level directly.

use std::arch::x86_64::*;
use std::ops::Range;

use super::avx2::{dispatch_m, fifth_bits, loadu};
use super::format::QuantFormat;
use super::interleave::{GroupSums, has_layout, iq4xs, nib, planes, q2k, q3k, q4k, q5k, q6k};
use super::interleave32::{D, IQ4_NL, IQ4_NL_U, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, layout_of};
use super::iq_codes::{index_levels, nib_levels_plus32};
use super::matmul::TILE_M;
use super::quantize::ActBlocks;
use super::x16::{
    Acts, FIVE, FOUR, LEVELS_S, LEVELS_XXS, SHIFT_BITS, SIGN_BITS, Tile, for_each_tile, nib_format,
    planes_format, prefetch_part, prefetch_unit32,
};

/// Weight rows per 256-bit register.
const HALF: usize = 8;

/// `out[t·n_rows + r]` for `r ∈ rows` (whole groups of 16) and `t < m`.
///
/// # Safety
/// The CPU supports AVX2, FMA and F16C; `format` is one with a layout ([`has_layout`]); `data` is an interleaved
/// `format` matrix with `cols` columns and at least `rows.end` rows; `act` holds `m` rows of `cols`
/// quantized in the format's activation blocks (256 for the K-quants, 32 otherwise) and `sums`
/// their group sums; `out` points to `m × n_rows` floats of which no other thread writes the
/// elements of `rows`.
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn rows_avx2(
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
    debug_assert!(has_layout(format));
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
                QuantFormat::Q4K => dispatch_m!(tm, q4k_x8::<FOUR>, u, nb, a, t),
                QuantFormat::Q5K => dispatch_m!(tm, q4k_x8::<FIVE>, u, nb, a, t),
                QuantFormat::Q6K => dispatch_m!(tm, q6k_x8, u, nb, a, t),
                QuantFormat::Iq4Xs => dispatch_m!(tm, iq4xs_x8, u, nb, a, t),
                QuantFormat::Iq3XxsNib => dispatch_m!(tm, nib_x8::<LEVELS_XXS>, u, nb, a, t),
                QuantFormat::Iq3SNib => dispatch_m!(tm, nib_x8::<LEVELS_S>, u, nb, a, t),
                QuantFormat::Iq2Planes => dispatch_m!(tm, planes_x8::<SIGN_BITS>, u, nb, a, t),
                QuantFormat::Iq1Shift => dispatch_m!(tm, planes_x8::<SHIFT_BITS>, u, nb, a, t),
                QuantFormat::Q3K => dispatch_m!(tm, q3k_x8, u, nb, a, t),
                QuantFormat::Q2K => dispatch_m!(tm, q2k_x8, u, nb, a, t),
                QuantFormat::Q4_0 => dispatch_m!(tm, blocks32_x8::<Q4_0>, u, nb, a, t),
                QuantFormat::Q4_1 => dispatch_m!(tm, blocks32_x8::<Q4_1>, u, nb, a, t),
                QuantFormat::Q5_0 => dispatch_m!(tm, blocks32_x8::<Q5_0>, u, nb, a, t),
                QuantFormat::Q5_1 => dispatch_m!(tm, blocks32_x8::<Q5_1>, u, nb, a, t),
                QuantFormat::Q8_0 => dispatch_m!(tm, blocks32_x8::<Q8_0>, u, nb, a, t),
                QuantFormat::Iq4Nl => dispatch_m!(tm, blocks32_x8::<IQ4_NL>, u, nb, a, t),
                _ => unreachable!("{format} has no AVX2 interleaved kernel"),
            },
        )
    }
}

/// The four activation bytes at `p` broadcast to every 32-bit lane.
#[inline(always)]
unsafe fn bcast4(p: *const i8) -> __m256i {
    // SAFETY: 4 readable bytes at p (callers).
    unsafe { _mm256_set1_epi32(loadu::<i32, i8>(p)) }
}

/// `vpmaddubsw` of weights `w` (unsigned) and the activation bytes at `x` (broadcast).
#[inline(always)]
unsafe fn mul4(w: __m256i, x: *const i8) -> __m256i {
    // SAFETY: forwarded (4 readable bytes at x).
    unsafe { _mm256_maddubs_epi16(w, bcast4(x)) }
}

/// Eight f16 values at `p` as f32 lanes.
#[inline(always)]
unsafe fn halves(p: *const u8) -> __m256 {
    // SAFETY: 16 readable bytes at p (callers).
    unsafe { _mm256_cvtph_ps(loadu::<__m128i, u8>(p)) }
}

/// IQ4_NL's levels + 128 (`super::interleave32::IQ4_NL_U`) as two `vpshufb` tables: their low
/// and their high nibbles.
#[inline(always)]
unsafe fn level_nibble_tables() -> [__m256i; 2] {
    // SAFETY: IQ4_NL_U is 16 readable bytes; AVX2 is the callers' (inlined into them).
    unsafe {
        let m4 = _mm256_set1_epi8(0x0F);
        let levels = _mm256_broadcastsi128_si256(loadu::<__m128i, u8>(IQ4_NL_U.as_ptr()));
        [
            _mm256_and_si256(levels, m4),
            _mm256_and_si256(_mm256_srli_epi16(levels, 4), m4),
        ]
    }
}

/// The levels + 128 of four 32-byte halves of index chunks (at `p`, 64 bytes apart) as Q8_0's
/// split bytes: `w[c]` / `w[8 + c]` the low / high nibbles of columns `4c .. 4c + 4` (the low
/// nibbles of chunk `c` for `c < 4`, the high nibbles of chunk `c − 4` for `c ≥ 4`).
#[inline(always)]
unsafe fn level_nibbles(p: *const u8, tables: [__m256i; 2]) -> [__m256i; 16] {
    // SAFETY: 32 readable bytes at p + 64i (callers); AVX2 is the callers' (inlined into them).
    unsafe {
        let m4 = _mm256_set1_epi8(0x0F);
        let mut w = [_mm256_setzero_si256(); 16];
        for i in 0..4 {
            let v = loadu::<__m256i, u8>(p.wrapping_add(64 * i));
            for (c, q) in [
                (i, _mm256_and_si256(v, m4)),
                (4 + i, _mm256_and_si256(_mm256_srli_epi16(v, 4), m4)),
            ] {
                w[c] = _mm256_shuffle_epi8(tables[0], q);
                w[8 + c] = _mm256_shuffle_epi8(tables[1], q);
            }
        }
        w
    }
}

/// One sub-block of 16 columns of 8 rows: `Σ w·x` over `w[0..4]` against `x[0..16]` plus `start`
/// (Q6_K's offset `−32·Σa`, Q3_K's `−4·Σa`, Q2_K's zero, IQ2_PLANES's `−64·Σa`), with `PAIRS`
/// `vpmaddubsw` results added per i16 sum before `vpmaddwd` widens them: 4 for Q3_K / Q2_K (at
/// most 4 · 2 · 7 · 128), 2 for Q6_K's and the nibble formats' 6-bit weights, 1 for the levels
/// + 64 of IQ2_PLANES / IQ1_SHIFT.
#[inline(always)]
unsafe fn sub_block16<const PAIRS: usize>(w: &[__m256i], x: *const i8, start: __m256i) -> __m256i {
    // SAFETY: 16 readable bytes at x (callers); AVX2 is the callers' (inlined into them).
    unsafe {
        let ones = _mm256_set1_epi16(1);
        let p = [
            mul4(w[0], x),
            mul4(w[1], x.add(4)),
            mul4(w[2], x.add(8)),
            mul4(w[3], x.add(12)),
        ];
        let wide = |v| _mm256_madd_epi16(v, ones);
        let c = match PAIRS {
            4 => wide(_mm256_add_epi16(
                _mm256_add_epi16(p[0], p[1]),
                _mm256_add_epi16(p[2], p[3]),
            )),
            2 => _mm256_add_epi32(
                wide(_mm256_add_epi16(p[0], p[1])),
                wide(_mm256_add_epi16(p[2], p[3])),
            ),
            _ => _mm256_add_epi32(
                _mm256_add_epi32(wide(p[0]), wide(p[1])),
                _mm256_add_epi32(wide(p[2]), wide(p[3])),
            ),
        };
        _mm256_add_epi32(c, start)
    }
}

/// The 8 weight registers of 32 columns of 8 rows stored as Q3_K's low bits / Q2_K's weights:
/// two chunk halves at `p` (64 bytes apart), field `i` (bits `2i, 2i + 1`) of chunk `h` giving
/// register `4h + i`.
#[inline(always)]
unsafe fn two_bit_fields(p: *const u8) -> [__m256i; 8] {
    // SAFETY: 32 readable bytes at p and at p + 64 (callers); AVX2 is the callers' (inlined).
    unsafe {
        let m3 = _mm256_set1_epi8(3);
        let chunks = [0, 1].map(|h| loadu::<__m256i, u8>(p.add(64 * h)));
        std::array::from_fn(|k| {
            let by = _mm_cvtsi32_si128(2 * (k % 4) as i32);
            _mm256_and_si256(_mm256_srl_epi16(chunks[k / 4], by), m3)
        })
    }
}

/// Two sub-blocks of 16 columns of 8 rows (Q6_K, Q3_K, Q2_K, the code formats): `isf + C₀·sc[0] + C₁·sc[1]` with
/// `C₀` the [`sub_block16`] of `w[0..4]` against `x[0..16]` from `start[0]`, `C₁` of `w[4..8]`
/// against `x[16..32]` from `start[1]`.
#[inline(always)]
unsafe fn two_sub_blocks16<const PAIRS: usize>(
    isf: __m256,
    w: &[__m256i; 8],
    x: *const i8,
    start: [__m256i; 2],
    sc: [__m256; 2],
) -> __m256 {
    // SAFETY: 32 readable bytes at x (callers); AVX2 is the callers' (inlined into them).
    unsafe {
        let c0 = sub_block16::<PAIRS>(&w[0..4], x, start[0]);
        let c1 = sub_block16::<PAIRS>(&w[4..8], x.add(16), start[1]);
        let isf = _mm256_fmadd_ps(_mm256_cvtepi32_ps(c0), sc[0], isf);
        _mm256_fmadd_ps(_mm256_cvtepi32_ps(c1), sc[1], isf)
    }
}

/// The end of a unit's half whose scale chain multiplies by `d` only (Q6_K, Q3_K, IQ4_XS):
/// `acc[t] += (isf[t]·d)·d_a` for the 8 f16 `d` at `d_at` and activation row `t`'s scale
/// `da[t·nb]`.
#[inline(always)]
unsafe fn finish_half<const M: usize>(
    isf: &[__m256; M],
    d_at: *const u8,
    da: *const f32,
    nb: usize,
    acc: &mut [__m256; M],
) {
    // SAFETY: 16 readable bytes at d_at and M scales nb apart at da (callers); AVX2 is the
    // callers' (inlined into them).
    unsafe {
        let d = halves(d_at);
        for (t, (acc, isf)) in acc.iter_mut().zip(isf).enumerate() {
            let s = _mm256_mul_ps(*isf, d);
            *acc = _mm256_fmadd_ps(s, _mm256_set1_ps(*da.add(t * nb)), *acc);
        }
    }
}

/// The end of a unit's half with mins (Q4_K, Q2_K): `acc[t] += fma(isf[t], d, −(msum·dmin))·d_a`
/// for the 8 f16 `d` at `d_at` and `dmin` 32 bytes on, activation row `t`'s scale `da[t·nb]`,
/// and the exact integer `msum = Σ_p mins[p] · pair p` (`vpmaddwd`: each row's two i16 mins
/// against the pair of group sums at `pairs[t·stride + p]`).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn finish_half_min<const M: usize, const P: usize>(
    isf: &[__m256; M],
    mins: &[__m256i; P],
    d_at: *const u8,
    pairs: *const i32,
    stride: usize,
    da: *const f32,
    nb: usize,
    acc: &mut [__m256; M],
) {
    // SAFETY: 48 readable bytes at d_at, P pairs stride apart per row at pairs and M scales nb
    // apart at da (callers); AVX2 is the callers' (inlined into them).
    unsafe {
        let (d, dmin) = (halves(d_at), halves(d_at.add(32)));
        for (t, (acc, isf)) in acc.iter_mut().zip(isf).enumerate() {
            let pr = pairs.add(t * stride);
            let mut ms = _mm256_madd_epi16(mins[0], _mm256_set1_epi32(loadu::<i32, i32>(pr)));
            for (p, mins) in mins.iter().enumerate().skip(1) {
                let pair = _mm256_set1_epi32(loadu::<i32, i32>(pr.add(p)));
                ms = _mm256_add_epi32(ms, _mm256_madd_epi16(*mins, pair));
            }
            let s = _mm256_fmsub_ps(*isf, d, _mm256_mul_ps(_mm256_cvtepi32_ps(ms), dmin));
            *acc = _mm256_fmadd_ps(s, _mm256_set1_ps(*da.add(t * nb)), *acc);
        }
    }
}

/// 16 rows (two halves of 8) × `M` activation rows of an interleaved Q4_K (`BITS` = 4) or Q5_K
/// (`BITS` = 5) matrix (`nb` units at `units`). Q4_K adds a sub-block's 16 products per i16
/// (16 · 15 · 128 = 30720); Q5_K's weights up to 31 allow 8, so its two halves of 16 columns
/// are widened to i32 separately.
// `t` indexes several per-row arrays at once
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4k_x8<const M: usize, const BITS: u8>(
    units: *const u8,
    nb: usize,
    a: Acts,
    out: &mut Tile,
) {
    let m4 = _mm256_set1_epi8(0x0F);
    let m10 = _mm256_set1_epi8(0x10);
    let ones = _mm256_set1_epi16(1);
    let zero = _mm256_setzero_si256();
    let unit = if BITS == FIVE { q5k::UNIT } else { q4k::UNIT };
    let mut acc = [[_mm256_setzero_ps(); M]; 2];
    // SAFETY (whole body): unit b spans b·unit..(b + 1)·unit of the group and half h its bytes
    // 32h.. of each chunk (16h.. / 8h.. of the per-row fields); activation row t's super-block b
    // spans t·cols + 256·b.. of the tile, with scale t·nb + b and pairs (t·nb + b)·4.
    unsafe {
        for b in 0..nb {
            let u = units.add(b * unit);
            let mut isf = [[_mm256_setzero_ps(); M]; 2];
            for j in 0..8 {
                if BITS == FIVE {
                    prefetch_part::<{ q5k::UNIT }, 8>(u, j);
                } else {
                    prefetch_part::<{ q4k::UNIT }, 8>(u, j);
                }
                let sc = [0, 1].map(|h| {
                    _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(
                        u.add(q4k::SC + 16 * j + HALF * h) as *const __m128i,
                    )))
                });
                // both halves' weights, so each activation broadcast serves 16 rows
                let mut w = [[zero; 8]; 2];
                for h in 0..2 {
                    for i in 0..4 {
                        let v = loadu::<__m256i, u8>(u.add(q4k::QS + 64 * (4 * j + i) + 32 * h));
                        w[h][i] = _mm256_and_si256(v, m4);
                        w[h][4 + i] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
                    }
                    if BITS == FIVE {
                        // as `super::x16::q4k_x16`: bit k of each lane byte to bit 4 of w[k]
                        let qh = loadu::<__m256i, u8>(u.add(q5k::QH + 64 * j + 32 * h));
                        for k in 0..8 {
                            let hb = match k {
                                0..4 => _mm256_sll_epi16(qh, _mm_cvtsi32_si128(4 - k as i32)),
                                _ => _mm256_srl_epi16(qh, _mm_cvtsi32_si128(k as i32 - 4)),
                            };
                            w[h][k] = _mm256_or_si256(w[h][k], _mm256_and_si256(hb, m10));
                        }
                    }
                }
                for t in 0..M {
                    let x = a.qs.add(t * a.cols + 256 * b + 32 * j);
                    if BITS == FIVE {
                        // columns 0..16 and 16..32 of the sub-block: 8 products per i16 each
                        let mut p = [[zero; 2]; 2];
                        for i in 0..4 {
                            let (lo, hi) = (bcast4(x.add(4 * i)), bcast4(x.add(16 + 4 * i)));
                            for h in 0..2 {
                                let (pl, ph) = (
                                    _mm256_maddubs_epi16(w[h][i], lo),
                                    _mm256_maddubs_epi16(w[h][4 + i], hi),
                                );
                                p[h][0] = _mm256_add_epi16(p[h][0], pl);
                                p[h][1] = _mm256_add_epi16(p[h][1], ph);
                            }
                        }
                        for h in 0..2 {
                            let c = _mm256_add_epi32(
                                _mm256_madd_epi16(p[h][0], ones),
                                _mm256_madd_epi16(p[h][1], ones),
                            );
                            isf[h][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(c), sc[h], isf[h][t]);
                        }
                        continue;
                    }
                    let (lo, hi) = (bcast4(x), bcast4(x.add(16)));
                    let mut p = [0, 1].map(|h| {
                        _mm256_add_epi16(
                            _mm256_maddubs_epi16(w[h][0], lo),
                            _mm256_maddubs_epi16(w[h][4], hi),
                        )
                    });
                    for i in 1..4 {
                        let (lo, hi) = (bcast4(x.add(4 * i)), bcast4(x.add(16 + 4 * i)));
                        for h in 0..2 {
                            p[h] = _mm256_add_epi16(p[h], _mm256_maddubs_epi16(w[h][i], lo));
                            p[h] = _mm256_add_epi16(p[h], _mm256_maddubs_epi16(w[h][4 + i], hi));
                        }
                    }
                    for h in 0..2 {
                        let c = _mm256_madd_epi16(p[h], ones);
                        isf[h][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(c), sc[h], isf[h][t]);
                    }
                }
            }
            for h in 0..2 {
                let mins = [0usize, 1, 2, 3].map(|p| {
                    _mm256_cvtepu8_epi16(loadu::<__m128i, u8>(u.add(q4k::MINS + 32 * p + 16 * h)))
                });
                let d_at = u.add(q4k::D + 2 * HALF * h);
                let (pairs, da) = (a.pairs.add(4 * b), a.d.add(b));
                finish_half_min(&isf[h], &mins, d_at, pairs, 4 * nb, da, nb, &mut acc[h]);
            }
        }
        store_halves(&acc, out);
    }
}

/// 16 rows (two halves of 8) × `M` activation rows of an interleaved IQ4_XS matrix: per half and
/// sub-block, 4 chunk loads give 8 index registers, and two `vpshufb` each the low and high
/// nibbles of the levels + 128 (as Q8_0's bytes: eight products per i16 sum, see the module
/// docs), joined as `Σ lo·a + 16·Σ hi·a − 128·Σa` in i32, then Q6_K's float steps.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn iq4xs_x8<const M: usize>(units: *const u8, nb: usize, a: Acts, out: &mut Tile) {
    let ones = _mm256_set1_epi16(1);
    let sixteen = _mm256_set1_epi16(16);
    // SAFETY: no memory is read but the constant table.
    let tables = unsafe { level_nibble_tables() };
    let mut acc = [[_mm256_setzero_ps(); M]; 2];
    // SAFETY (whole body): unit b spans b·UNIT..(b + 1)·UNIT of the group and half h its bytes
    // 32h.. of each chunk (16h.. / 8h.. of the per-row fields); activation row t's super-block b
    // spans t·cols + 256·b.. of the tile, with scale t·nb + b and 32-group sums (t·nb + b)·8 + j.
    unsafe {
        for b in 0..nb {
            let u = units.add(b * iq4xs::UNIT);
            let mut isf = [[_mm256_setzero_ps(); M]; 2];
            for j in 0..8 {
                prefetch_part::<{ iq4xs::UNIT }, 8>(u, j);
                for h in 0..2 {
                    let sc = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(
                        u.add(iq4xs::SC + 16 * j + HALF * h) as *const __m128i,
                    )));
                    let w = level_nibbles(u.add(iq4xs::QS + 64 * 4 * j + 32 * h), tables);
                    for t in 0..M {
                        let x = a.qs.add(t * a.cols + 256 * b + 32 * j);
                        let mut lo = mul4(w[0], x);
                        let mut hi = mul4(w[8], x);
                        for c in 1..8 {
                            let xc = x.add(4 * c);
                            lo = _mm256_add_epi16(lo, mul4(w[c], xc));
                            hi = _mm256_add_epi16(hi, mul4(w[8 + c], xc));
                        }
                        let c = _mm256_add_epi32(
                            _mm256_add_epi32(
                                _mm256_madd_epi16(lo, ones),
                                _mm256_madd_epi16(hi, sixteen),
                            ),
                            _mm256_set1_epi32(*a.neg128.add((t * nb + b) * 8 + j)),
                        );
                        isf[h][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(c), sc, isf[h][t]);
                    }
                }
            }
            for h in 0..2 {
                finish_half(
                    &isf[h],
                    u.add(iq4xs::D + 2 * HALF * h),
                    a.d.add(b),
                    nb,
                    &mut acc[h],
                );
            }
        }
        store_halves(&acc, out);
    }
}

/// 16 rows (two halves of 8) × `M` activation rows of an interleaved Q3_K matrix: per half and
/// 32 columns the 8 weight registers from 2 low-bit and 1 high-bit chunk halves, then per
/// activation row four products per i16 sum (4 · 2 · 7 · 128, far from saturating) for each of
/// the two sub-blocks of 16, from their `−4·Σa` — Q6_K's arithmetic.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q3k_x8<const M: usize>(units: *const u8, nb: usize, a: Acts, out: &mut Tile) {
    let m1 = _mm256_set1_epi8(1);
    let mut acc = [[_mm256_setzero_ps(); M]; 2];
    // SAFETY (whole body): unit b spans b·UNIT..(b + 1)·UNIT of the group and half h its bytes
    // 32h.. of each chunk (8h.. of the scales, 16h.. of d); activation row t's super-block b
    // spans t·cols + 256·b.. of the tile, with scale t·nb + b and 16-group sums (t·nb + b)·16 + s.
    unsafe {
        for b in 0..nb {
            let u = units.add(b * q3k::UNIT);
            for h in 0..2 {
                let mut isf = [_mm256_setzero_ps(); M];
                for j in 0..8 {
                    if h == 0 {
                        prefetch_part::<{ q3k::UNIT }, 8>(u, j);
                    }
                    let scale = |s: usize| {
                        _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(
                            u.add(q3k::SC + 16 * s + HALF * h) as *const __m128i,
                        )))
                    };
                    let (sc_lo, sc_hi) = (scale(2 * j), scale(2 * j + 1));
                    let mut w = two_bit_fields(u.add(q3k::QL + 128 * j + 32 * h));
                    let high = loadu::<__m256i, u8>(u.add(q3k::QH + 64 * j + 32 * h));
                    for (k, w) in w.iter_mut().enumerate() {
                        let hi = _mm256_srl_epi16(high, _mm_cvtsi32_si128(k as i32));
                        *w = _mm256_or_si256(*w, _mm256_slli_epi16(_mm256_and_si256(hi, m1), 2));
                    }
                    for t in 0..M {
                        let x = a.qs.add(t * a.cols + 256 * b + 32 * j);
                        let neg = a.neg4.add((t * nb + b) * 16 + 2 * j);
                        let start = [_mm256_set1_epi32(*neg), _mm256_set1_epi32(*neg.add(1))];
                        isf[t] = two_sub_blocks16::<4>(isf[t], &w, x, start, [sc_lo, sc_hi]);
                    }
                }
                finish_half(
                    &isf,
                    u.add(q3k::D + 2 * HALF * h),
                    a.d.add(b),
                    nb,
                    &mut acc[h],
                );
            }
        }
        store_halves(&acc, out);
    }
}

/// 16 rows (two halves of 8) × `M` activation rows of an interleaved Q2_K matrix: per half and
/// 32 columns one widening load of the scale bytes gives both sub-blocks' scales and 2 weight
/// chunk halves the 8 weight registers, then per activation row four products per i16 sum for
/// each sub-block of 16 (from zero); at the half's end the mins against the activations'
/// 16-group sums — Q4_K's arithmetic over 16 sub-blocks of 16.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q2k_x8<const M: usize>(units: *const u8, nb: usize, a: Acts, out: &mut Tile) {
    let m4 = _mm256_set1_epi32(0x0F);
    let zero = _mm256_setzero_si256();
    let mut acc = [[_mm256_setzero_ps(); M]; 2];
    // SAFETY (whole body): unit b spans b·UNIT..(b + 1)·UNIT of the group and half h its bytes
    // 32h.. of each chunk (16h.. of the scale pairs and of d); activation row t's super-block b
    // spans t·cols + 256·b.. of the tile, with scale t·nb + b and 16-group sums (t·nb + b)·16 + s.
    unsafe {
        for b in 0..nb {
            let u = units.add(b * q2k::UNIT);
            for h in 0..2 {
                let mut isf = [_mm256_setzero_ps(); M];
                for j in 0..8 {
                    if h == 0 {
                        prefetch_part::<{ q2k::UNIT }, 8>(u, j);
                    }
                    let pair = _mm256_cvtepu8_epi16(loadu::<__m128i, u8>(
                        u.add(q2k::SC + 32 * j + 2 * HALF * h),
                    ));
                    let sc_lo = _mm256_cvtepi32_ps(_mm256_and_si256(pair, m4));
                    let sc_hi =
                        _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(pair, 16), m4));
                    let w = two_bit_fields(u.add(q2k::QL + 128 * j + 32 * h));
                    for t in 0..M {
                        let x = a.qs.add(t * a.cols + 256 * b + 32 * j);
                        isf[t] = two_sub_blocks16::<4>(isf[t], &w, x, [zero; 2], [sc_lo, sc_hi]);
                    }
                }
                let mins = [0usize, 1, 2, 3, 4, 5, 6, 7].map(|p| {
                    let at = u.add(q2k::SC + 32 * p + 2 * HALF * h);
                    _mm256_srli_epi16(_mm256_cvtepu8_epi16(loadu::<__m128i, u8>(at)), 4)
                });
                let d_at = u.add(q2k::D + 2 * HALF * h);
                let (pairs, da) = (a.bsums.add(16 * b).cast::<i32>(), a.d.add(b));
                finish_half_min(&isf, &mins, d_at, pairs, 8 * nb, da, nb, &mut acc[h]);
            }
        }
        store_halves(&acc, out);
    }
}

/// 16 rows (two halves of 8) × `M` activation rows of an interleaved Q6_K matrix.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6k_x8<const M: usize>(units: *const u8, nb: usize, a: Acts, out: &mut Tile) {
    let m4 = _mm256_set1_epi8(0x0F);
    let m30 = _mm256_set1_epi8(0x30);
    let zero = _mm256_setzero_si256();
    let mut acc = [[_mm256_setzero_ps(); M]; 2];
    // SAFETY: as in `q4k_x8`; 16 offsets per super-block and row.
    unsafe {
        for b in 0..nb {
            let u = units.add(b * q6k::UNIT);
            for h in 0..2 {
                let mut isf = [_mm256_setzero_ps(); M];
                // sub-blocks 2J (low nibbles of chunks 4J..4J + 4) and 2J + 1 (high nibbles)
                for jj in 0..8 {
                    if h == 0 {
                        prefetch_part::<{ q6k::UNIT }, 8>(u, jj);
                    }
                    let scale = |j: usize| {
                        _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(
                            u.add(q6k::SC + 16 * j + HALF * h) as *const __m128i,
                        )))
                    };
                    let (sc_lo, sc_hi) = (scale(2 * jj), scale(2 * jj + 1));
                    let mut w = [zero; 8];
                    for hh in 0..2 {
                        let qh = loadu::<__m256i, u8>(u.add(q6k::QH + 64 * (2 * jj + hh) + 32 * h));
                        for e in 0..2 {
                            let i = 2 * hh + e;
                            let v =
                                loadu::<__m256i, u8>(u.add(q6k::QL + 64 * (4 * jj + i) + 32 * h));
                            // chunk 4jj + i's two-bit fields moved to bits 4–5 of each byte
                            let (hl, hi) = if e == 0 {
                                (_mm256_slli_epi16(qh, 4), _mm256_slli_epi16(qh, 2))
                            } else {
                                (qh, _mm256_srli_epi16(qh, 2))
                            };
                            w[i] =
                                _mm256_or_si256(_mm256_and_si256(v, m4), _mm256_and_si256(hl, m30));
                            w[4 + i] = _mm256_or_si256(
                                _mm256_and_si256(_mm256_srli_epi16(v, 4), m4),
                                _mm256_and_si256(hi, m30),
                            );
                        }
                    }
                    for t in 0..M {
                        let x = a.qs.add(t * a.cols + 256 * b + 32 * jj);
                        let neg_off = a.neg_off.add(t * nb * 16 + 16 * b + 2 * jj);
                        // two products per i16 sum (the saturation bound in the module docs)
                        let start = [
                            _mm256_set1_epi32(*neg_off),
                            _mm256_set1_epi32(*neg_off.add(1)),
                        ];
                        isf[t] = two_sub_blocks16::<2>(isf[t], &w, x, start, [sc_lo, sc_hi]);
                    }
                }
                finish_half(
                    &isf,
                    u.add(q6k::D + 2 * HALF * h),
                    a.d.add(b),
                    nb,
                    &mut acc[h],
                );
            }
        }
        store_halves(&acc, out);
    }
}

/// A kernel's two halves of 8 rows per activation row into its tile.
#[inline(always)]
unsafe fn store_halves<const M: usize>(acc: &[[__m256; M]; 2], out: &mut Tile) {
    for (t, row) in out.iter_mut().take(M).enumerate() {
        for (h, acc) in acc.iter().enumerate() {
            // SAFETY: a tile row holds 16 floats; AVX is the callers' (inlined into them).
            unsafe { _mm256_storeu_ps(row.as_mut_ptr().add(HALF * h), acc[t]) };
        }
    }
}

/// The scales `2ls + 1` of two sub-blocks from 8 scale bytes at `p` (half of a code format's
/// 16: byte `n` holds row `n`'s nibbles of the first sub-block, low, and of the second, high)
/// as f32 lanes.
#[inline(always)]
unsafe fn odd_scales8(p: *const u8) -> [__m256; 2] {
    // SAFETY: 8 readable bytes at p (callers); AVX2 is the callers' (inlined into them).
    unsafe {
        let ls = _mm256_cvtepu8_epi32(_mm_loadl_epi64(p as *const __m128i));
        let (lo, hi) = (
            _mm256_and_si256(ls, _mm256_set1_epi32(0x0F)),
            _mm256_srli_epi32(ls, 4),
        );
        let one = _mm256_set1_epi32(1);
        [
            _mm256_cvtepi32_ps(_mm256_or_si256(_mm256_add_epi32(lo, lo), one)),
            _mm256_cvtepi32_ps(_mm256_or_si256(_mm256_add_epi32(hi, hi), one)),
        ]
    }
}

/// 16 rows (two halves of 8) × `M` activation rows of an interleaved IQ3_XXS_NIB (`XXS`) or
/// IQ3_S_NIB matrix: per half and 32 columns 4 chunk halves give the 8 weight registers (the
/// codes' levels + 32 by one `vpshufb` each) and one widening load of 8 scale bytes both
/// sub-blocks' `2ls + 1`; then per activation row Q6_K's two products per i16 sum from the
/// sub-blocks' `−32·Σa`.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn nib_x8<const M: usize, const XXS: bool>(
    units: *const u8,
    nb: usize,
    a: Acts,
    out: &mut Tile,
) {
    // SAFETY: the table is 16 readable bytes.
    let levels = unsafe {
        _mm256_broadcastsi128_si256(loadu::<__m128i, u8>(
            nib_levels_plus32(nib_format(XXS)).as_ptr(),
        ))
    };
    let m4 = _mm256_set1_epi8(0x0F);
    let mut acc = [[_mm256_setzero_ps(); M]; 2];
    // SAFETY (whole body): unit b spans b·UNIT..(b + 1)·UNIT of the group and half h its bytes
    // 32h.. of each chunk (8h.. of the scales, 16h.. of d); activation row t's super-block b
    // spans t·cols + 256·b.. of the tile, with scale t·nb + b and 16-group sums (t·nb + b)·16 + s.
    unsafe {
        for b in 0..nb {
            let u = units.add(b * nib::UNIT);
            for h in 0..2 {
                let mut isf = [_mm256_setzero_ps(); M];
                for jj in 0..8 {
                    if h == 0 {
                        prefetch_part::<{ nib::UNIT }, 8>(u, jj);
                    }
                    let sc = odd_scales8(u.add(nib::SC + 16 * jj + HALF * h));
                    let mut w = [_mm256_setzero_si256(); 8];
                    for i in 0..4 {
                        let v = loadu::<__m256i, u8>(u.add(nib::QS + 64 * (4 * jj + i) + 32 * h));
                        w[i] = _mm256_shuffle_epi8(levels, _mm256_and_si256(v, m4));
                        let hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
                        w[4 + i] = _mm256_shuffle_epi8(levels, hi);
                    }
                    for t in 0..M {
                        let x = a.qs.add(t * a.cols + 256 * b + 32 * jj);
                        let neg_off = a.neg_off.add((t * nb + b) * 16 + 2 * jj);
                        let start = [
                            _mm256_set1_epi32(*neg_off),
                            _mm256_set1_epi32(*neg_off.add(1)),
                        ];
                        isf[t] = two_sub_blocks16::<2>(isf[t], &w, x, start, sc);
                    }
                }
                finish_half(
                    &isf,
                    u.add(nib::D + 2 * HALF * h),
                    a.d.add(b),
                    nb,
                    &mut acc[h],
                );
            }
        }
        store_halves(&acc, out);
    }
}

/// 16 rows (two halves of 8) × `M` activation rows of an interleaved IQ2_PLANES (`SHIFT ==
/// SIGN_BITS`) or IQ1_SHIFT matrix: per half and 4 columns a code chunk's 16 bytes in both
/// 128-bit lanes shifted by `vpsrlvd` and masked, ORed with 4 where the lane byte's sign / its
/// row's shift bit (spread to bytes by a broadcast, an AND and a compare) is set, one `vpshufb`
/// into both tables' levels + 64; then per activation row each `vpmaddubsw` widened on its own
/// from the sub-blocks' `−64·Σa` — the VNNI kernel's integers.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn planes_x8<const M: usize, const SHIFT: bool>(
    units: *const u8,
    nb: usize,
    a: Acts,
    out: &mut Tile,
) {
    let (format, unit) = planes_format(SHIFT);
    // entries 0..4 the positive / shifted-up levels + 64, 4..8 the others
    let both = index_levels(format).map(|l| (l + 64) as u8);
    // SAFETY: 16 readable bytes.
    let both = unsafe { _mm256_broadcastsi128_si256(loadu::<__m128i, u8>(both.as_ptr())) };
    // half h: its low lane holds code lane 2h (bits 4h), its high lane 2h + 1 (bits 4h + 2)
    let shifts = [0, 1].map(|h| {
        let (lo, hi) = (4 * h, 4 * h + 2);
        _mm256_setr_epi32(lo, lo, lo, lo, hi, hi, hi, hi)
    });
    // IQ2_PLANES: byte i takes sign byte i / 8 of the half's 4 and tests bit i % 8; IQ1_SHIFT:
    // byte i tests bit i / 4 (its row) of the half's shift byte
    let sign_bytes = _mm256_setr_epi64x(
        0,
        0x0101_0101_0101_0101,
        0x0202_0202_0202_0202,
        0x0303_0303_0303_0303,
    );
    let bit_of_byte = if SHIFT {
        let b: [u8; 32] = std::array::from_fn(|i| 1 << (i / 4));
        // SAFETY: 32 readable bytes.
        unsafe { loadu::<__m256i, u8>(b.as_ptr()) }
    } else {
        _mm256_set1_epi64x(0x8040_2010_0804_0201_u64 as i64)
    };
    let (m3, four) = (_mm256_set1_epi8(3), _mm256_set1_epi8(4));
    let mut acc = [[_mm256_setzero_ps(); M]; 2];
    // SAFETY (whole body): unit b spans b·unit..(b + 1)·unit of the group and half h its lane
    // bytes 32h.. of each chunk (8h.. of the scales, 16h.. of d); activation row t's super-block
    // b spans t·cols + 256·b.. of the tile, with scale t·nb + b and 16-group sums
    // (t·nb + b)·16 + s.
    unsafe {
        for b in 0..nb {
            let u = units.add(b * unit);
            for h in 0..2 {
                let mut isf = [_mm256_setzero_ps(); M];
                for jj in 0..8 {
                    if h == 0 && SHIFT {
                        prefetch_part::<{ planes::SHIFT_UNIT }, 8>(u, jj);
                    } else if h == 0 {
                        prefetch_part::<{ planes::UNIT }, 8>(u, jj);
                    }
                    let sc = odd_scales8(u.add(planes::SC + 16 * jj + HALF * h));
                    let mut w = [_mm256_setzero_si256(); 8];
                    for (k, w) in w.iter_mut().enumerate() {
                        let c = 8 * jj + k;
                        let codes = _mm256_broadcastsi128_si256(loadu::<__m128i, u8>(
                            u.add(planes::CODES + 16 * c),
                        ));
                        let code = _mm256_and_si256(_mm256_srlv_epi32(codes, shifts[h]), m3);
                        let bits = if SHIFT {
                            let row_bits = loadu::<u16, u8>(u.add(planes::BITS + 2 * (c / 2)));
                            _mm256_set1_epi8((row_bits >> (8 * h)) as i8)
                        } else {
                            let signs = loadu::<i32, u8>(u.add(planes::BITS + 8 * c + 4 * h));
                            _mm256_shuffle_epi8(_mm256_set1_epi32(signs), sign_bytes)
                        };
                        let set =
                            _mm256_cmpeq_epi8(_mm256_and_si256(bits, bit_of_byte), bit_of_byte);
                        let index = _mm256_or_si256(code, _mm256_and_si256(set, four));
                        *w = _mm256_shuffle_epi8(both, index);
                    }
                    for t in 0..M {
                        let x = a.qs.add(t * a.cols + 256 * b + 32 * jj);
                        let neg = a.neg64.add((t * nb + b) * 16 + 2 * jj);
                        let start = [_mm256_set1_epi32(*neg), _mm256_set1_epi32(*neg.add(1))];
                        isf[t] = two_sub_blocks16::<1>(isf[t], &w, x, start, sc);
                    }
                }
                finish_half(
                    &isf,
                    u.add(planes::D + 2 * HALF * h),
                    a.d.add(b),
                    nb,
                    &mut acc[h],
                );
            }
        }
        store_halves(&acc, out);
    }
}

/// 16 rows (two halves of 8) × `M` activation rows of an interleaved Q4_0 / Q4_1 / Q5_0 / Q5_1 /
/// Q8_0 matrix (`nb` units of 32 columns; `super::interleave32`): per unit and half the 8 weight
/// registers are decoded once, then each activation row takes 8 `vpmaddubsw`, two `vpmaddwd`,
/// its `−OFF·Σa`, one conversion, the scale multiply and one FMA (two with a minimum term).
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn blocks32_x8<const M: usize, const F: u8>(
    units: *const u8,
    nb: usize,
    a: Acts,
    out: &mut Tile,
) {
    let l = const { layout_of(F) };
    let m4 = _mm256_set1_epi8(0x0F);
    let ones = _mm256_set1_epi16(1);
    let zero = _mm256_setzero_si256();
    // SAFETY: no memory is read but the constant table.
    let tables = unsafe { level_nibble_tables() };
    let mut acc = [[_mm256_setzero_ps(); M]; 2];
    // SAFETY (whole body): unit b spans b·unit..(b + 1)·unit of the group and half h its bytes
    // 32h.. of each chunk, 4h.. of each fifth-bit mask and 16h.. of the f16 fields; activation
    // row t's block b spans t·cols + 32·b.., with scale, sum and Q8_1 sum t·nb + b.
    unsafe {
        for b in 0..nb {
            let u = units.add(b * l.unit);
            prefetch_unit32(l.unit, u);
            for h in 0..2 {
                let d = halves(u.add(D + 2 * HALF * h));
                if l.bytes || l.lut {
                    // Q8_0: the stored w + 128 as its two nibbles, w[c] / w[8 + c] the low / high
                    // nibbles of columns 4c..4c + 4; IQ4_NL: those of its level + 128, looked up
                    let mut w = [zero; 16];
                    if l.lut {
                        w = level_nibbles(u.add(l.qs + 32 * h), tables);
                    } else {
                        for c in 0..8 {
                            let v = loadu::<__m256i, u8>(u.add(l.qs + 64 * c + 32 * h));
                            w[c] = _mm256_and_si256(v, m4);
                            w[8 + c] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
                        }
                    }
                    for t in 0..M {
                        let x = a.qs.add(t * a.cols + 32 * b);
                        // eight products per i16 sum: 8 · 2 · 15 · 128 = 30720
                        let mut lo = mul4(w[0], x);
                        let mut hi = mul4(w[8], x);
                        for c in 1..8 {
                            lo = _mm256_add_epi16(lo, mul4(w[c], x.add(4 * c)));
                            hi = _mm256_add_epi16(hi, mul4(w[8 + c], x.add(4 * c)));
                        }
                        let c = _mm256_add_epi32(
                            _mm256_add_epi32(
                                _mm256_madd_epi16(lo, ones),
                                _mm256_madd_epi16(hi, _mm256_set1_epi16(16)),
                            ),
                            _mm256_set1_epi32(-l.off * *a.sum32.add(t * nb + b)),
                        );
                        let s = _mm256_mul_ps(_mm256_cvtepi32_ps(c), d);
                        let da = _mm256_set1_ps(*a.d.add(t * nb + b));
                        acc[h][t] = _mm256_fmadd_ps(s, da, acc[h][t]);
                    }
                    continue;
                }
                // w[c] holds columns 4c..4c + 4 of the half's 8 rows
                let mut w = [zero; 8];
                for i in 0..4 {
                    let v = loadu::<__m256i, u8>(u.add(l.qs + 64 * i + 32 * h));
                    w[i] = _mm256_and_si256(v, m4);
                    w[4 + i] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
                }
                if let Some(qh) = l.qh {
                    for c in 0..8 {
                        let bits = loadu::<u32, u8>(u.add(qh + 8 * c + 4 * h));
                        w[c] = _mm256_or_si256(w[c], fifth_bits(bits));
                    }
                }
                let mins = l.m.map(|m| halves(u.add(m + 2 * HALF * h)));
                for t in 0..M {
                    let x = a.qs.add(t * a.cols + 32 * b);
                    // four products per i16 sum (the saturation bound in the module docs)
                    let p0 = _mm256_add_epi16(
                        _mm256_add_epi16(mul4(w[0], x), mul4(w[1], x.add(4))),
                        _mm256_add_epi16(mul4(w[2], x.add(8)), mul4(w[3], x.add(12))),
                    );
                    let p1 = _mm256_add_epi16(
                        _mm256_add_epi16(mul4(w[4], x.add(16)), mul4(w[5], x.add(20))),
                        _mm256_add_epi16(mul4(w[6], x.add(24)), mul4(w[7], x.add(28))),
                    );
                    let mut c =
                        _mm256_add_epi32(_mm256_madd_epi16(p0, ones), _mm256_madd_epi16(p1, ones));
                    if l.off != 0 {
                        c = _mm256_add_epi32(
                            c,
                            _mm256_set1_epi32(-l.off * *a.sum32.add(t * nb + b)),
                        );
                    }
                    let s = _mm256_mul_ps(_mm256_cvtepi32_ps(c), d);
                    let da = _mm256_set1_ps(*a.d.add(t * nb + b));
                    acc[h][t] = _mm256_fmadd_ps(s, da, acc[h][t]);
                    if let Some(mv) = mins {
                        let sa = _mm256_set1_ps(*a.s.add(t * nb + b));
                        acc[h][t] = _mm256_fmadd_ps(mv, sa, acc[h][t]);
                    }
                }
            }
        }
        store_halves(&acc, out);
    }
}
