//! x86-64 AVX-512 (F + BW + VL) kernels for the two K-quant formats that carry most of a
//! Q4_K_M / Q5_K_M file's bytes: Q4_K and Q6_K. Other formats fall through to [`super::avx2`].
//!
//! Why a second family: at batch 1 the AVX2 Q4_K kernel retires about 80 µops per 256-weight block
//! and runs out of front-end width before the memory bus is saturated (measured 41 GiB/s on two
//! cores from L3, where the DRAM read rate is 40–60 GB/s). 512-bit registers handle a whole
//! 64-weight Q4_K chunk (both nibble halves of its 32 bytes) or a 128-weight Q6_K half in one set
//! of operations, with the per-sub-block scales placed by one `vpermw` instead of per-group
//! broadcasts, so a block costs roughly half the µops. The arithmetic — integer `u8 × i8` pair
//! sums (`vpmaddubsw`), scaled to i32 by the 6/8-bit sub-block scales (`vpmaddwd`), one float
//! conversion per block, minimum / offset terms from the activation group sums — is exactly that
//! of [`super::avx2`] and [`super::scalar`], so results agree to float summation order.

use std::arch::x86_64::*;

use super::avx2::{dispatch_m, f16_at, f16_pair, hsum, k4_scales_mins, loadu};
use super::format::QuantFormat;
use super::matmul::{ActTile, TILE_M};

/// One row of a block format against a tile of quantized activations; Q4_K and Q6_K here, every
/// other format on the AVX2 kernels.
///
/// # Safety
/// The CPU supports AVX-512 F/BW/VL, AVX2, FMA and F16C; `w` holds `tile.cols / block_elems`
/// blocks of `format`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
pub(crate) unsafe fn row_dot_blocks(
    format: QuantFormat,
    w: &[u8],
    tile: &ActTile<'_>,
    out: &mut [f32],
) {
    debug_assert!((1..=TILE_M).contains(&tile.m));
    let m = tile.m;
    unsafe {
        match format {
            QuantFormat::Q4K => dispatch_m!(m, q4k_m, w, tile, out),
            QuantFormat::Q6K => dispatch_m!(m, q6k_m, w, tile, out),
            _ => super::avx2::row_dot_blocks(format, w, tile, out),
        }
    }
}

/// Sum of 16 float lanes.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
unsafe fn hsum512(v: __m512) -> f32 {
    let lo = _mm512_castps512_ps256(v);
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    unsafe { hsum(_mm256_add_ps(lo, hi)) }
}

/// i16 lane indices: `a` in lanes 0–15, `b` in lanes 16–31.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
unsafe fn halves_epi16(a: i16, b: i16) -> __m512i {
    _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_set1_epi16(a)),
        _mm256_set1_epi16(b),
        1,
    )
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
unsafe fn q4k_m<const M: usize>(w: &[u8], tile: &ActTile<'_>, out: &mut [f32]) {
    const BB: usize = 144;
    let cols = tile.cols;
    let nb = cols / 256;
    let n16 = cols / 16;
    debug_assert!(tile.m == M && out.len() >= M && tile.block == 256);
    debug_assert_eq!(w.len(), nb * BB);
    let m4 = _mm512_set1_epi8(0x0F);
    // low nibbles in the first 32 bytes, high nibbles (shifted down by 4) in the last 32
    let shifts = unsafe { halves_epi16(0, 4) };
    let mut acc = [_mm512_setzero_ps(); M];
    let mut accm = [_mm256_setzero_ps(); M];
    let (qs, bsums) = (tile.qs.as_ptr(), tile.bsums.as_ptr());
    // SAFETY (whole body): offsets stay inside `w` (nb blocks of 144 bytes) and inside the tile's
    // M rows of `cols` values, `nb` scales and `n16` group sums, as asserted above.
    unsafe {
        for b in 0..nb {
            let blk = w.as_ptr().wrapping_add(b * BB);
            let (d, dmin) = f16_pair(blk);
            let (sc16, mins) = k4_scales_mins(blk.wrapping_add(4));
            let sc = _mm512_broadcast_i32x4(sc16);
            let mut sumi = [_mm512_setzero_si512(); M];
            for c in 0..4 {
                let qb =
                    _mm512_broadcast_i64x4(loadu::<__m256i, u8>(blk.wrapping_add(16 + 32 * c)));
                let q = _mm512_and_si512(_mm512_srlv_epi16(qb, shifts), m4);
                // sub-block 2c for the low 32 weights, 2c + 1 for the high 32
                let s = _mm512_permutexvar_epi16(halves_epi16(2 * c as i16, 2 * c as i16 + 1), sc);
                for (i, acc_i) in sumi.iter_mut().enumerate() {
                    let x = loadu::<__m512i, i8>(qs.wrapping_add(i * cols + 256 * b + 64 * c));
                    let p = _mm512_madd_epi16(_mm512_maddubs_epi16(q, x), s);
                    *acc_i = _mm512_add_epi32(*acc_i, p);
                }
            }
            for i in 0..M {
                let dx = tile.d[i * nb + b];
                acc[i] =
                    _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi[i]), _mm512_set1_ps(d * dx), acc[i]);
                let bs = loadu::<__m256i, i16>(bsums.wrapping_add(i * n16 + 16 * b));
                let summ = _mm256_cvtepi32_ps(_mm256_madd_epi16(bs, mins));
                accm[i] = _mm256_fmadd_ps(summ, _mm256_set1_ps(dmin * dx), accm[i]);
            }
        }
        for i in 0..M {
            out[i] = hsum512(acc[i]) - hsum(accm[i]);
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
unsafe fn q6k_m<const M: usize>(w: &[u8], tile: &ActTile<'_>, out: &mut [f32]) {
    const BB: usize = 210;
    let cols = tile.cols;
    let nb = cols / 256;
    let n16 = cols / 16;
    debug_assert!(tile.m == M && out.len() >= M && tile.block == 256);
    debug_assert_eq!(w.len(), nb * BB);
    let m4 = _mm512_set1_epi8(0x0F);
    let m3 = _mm512_set1_epi8(3);
    // The two high bits of weight j of a 128-weight half sit at bits 2·(j / 32) of qh[j % 32]:
    // shift by 0 / 2 for the first 64 weights, 4 / 6 for the last 64.
    let (shift_lo, shift_hi) = unsafe { (halves_epi16(0, 2), halves_epi16(4, 6)) };
    let mut acc = [_mm512_setzero_ps(); M];
    let (qs, bsums) = (tile.qs.as_ptr(), tile.bsums.as_ptr());
    // SAFETY: as in `q4k_m` (blocks of 210 bytes).
    unsafe {
        for b in 0..nb {
            let blk = w.as_ptr().wrapping_add(b * BB);
            let d = f16_at(blk.wrapping_add(208));
            let sc8 = loadu::<__m128i, u8>(blk.wrapping_add(192));
            // 16 scales as i16 in lanes 0–15 (lanes 16–31 unused)
            let sc = _mm512_zextsi256_si512(_mm256_cvtepi8_epi16(sc8));
            let mut sumi = [_mm512_setzero_si512(); M];
            for h in 0..2 {
                let ql = loadu::<__m512i, u8>(blk.wrapping_add(64 * h));
                let qh =
                    _mm512_broadcast_i64x4(loadu::<__m256i, u8>(blk.wrapping_add(128 + 32 * h)));
                let hi_bits = |shift: __m512i| {
                    _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, shift), m3), 4)
                };
                let q_lo = _mm512_or_si512(_mm512_and_si512(ql, m4), hi_bits(shift_lo));
                let q_hi = _mm512_or_si512(
                    _mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                    hi_bits(shift_hi),
                );
                // i16 lane j of the 64 weights starting at 64·p covers weights 2j, 2j + 1: scale
                // 8h + 4p + j / 8
                let base = 8 * h as i16;
                let s_of = |p: i16| {
                    let g = base + 4 * p;
                    let idx = _mm512_set_epi64(
                        rep(g + 3),
                        rep(g + 3),
                        rep(g + 2),
                        rep(g + 2),
                        rep(g + 1),
                        rep(g + 1),
                        rep(g),
                        rep(g),
                    );
                    _mm512_permutexvar_epi16(idx, sc)
                };
                let (s_lo, s_hi) = (s_of(0), s_of(1));
                for (i, acc_i) in sumi.iter_mut().enumerate() {
                    let x = qs.wrapping_add(i * cols + 256 * b + 128 * h);
                    let x_lo = loadu::<__m512i, i8>(x);
                    let x_hi = loadu::<__m512i, i8>(x.wrapping_add(64));
                    let p_lo = _mm512_madd_epi16(_mm512_maddubs_epi16(q_lo, x_lo), s_lo);
                    let p_hi = _mm512_madd_epi16(_mm512_maddubs_epi16(q_hi, x_hi), s_hi);
                    *acc_i = _mm512_add_epi32(*acc_i, _mm512_add_epi32(p_lo, p_hi));
                }
            }
            let sc16 = _mm256_cvtepi8_epi16(sc8);
            for i in 0..M {
                let dx = tile.d[i * nb + b];
                // the offset 32: Σ sc·(q − 32)·x = Σ sc·q·x − 32·Σ_g sc_g·Σx_g
                let bs = loadu::<__m256i, i16>(bsums.wrapping_add(i * n16 + 16 * b));
                let offset = _mm256_slli_epi32(_mm256_madd_epi16(bs, sc16), 5);
                let total = _mm512_sub_epi32(sumi[i], _mm512_zextsi256_si512(offset));
                acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(total), _mm512_set1_ps(d * dx), acc[i]);
            }
        }
        for i in 0..M {
            out[i] = hsum512(acc[i]);
        }
    }
}

/// Four i16 lanes holding `g` (one 64-bit element of a `vpermw` index).
#[inline(always)]
const fn rep(g: i16) -> i64 {
    (g as u16 as i64) * 0x0001_0001_0001_0001
}
