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
//!
//! # VNNI kernels (speculative verify, m = 2..16)
//!
//! With AVX-512 VNNI ([`super::Isa::Avx512Vnni`]) Q4_K and Q6_K run `q4k_vnni` / `q6k_vnni`:
//! - `vpdpbusd` (u8 × i8, four products per i32 lane) replaces `vpmaddubsw` + `vpmaddwd` + add.
//!   The sub-block scale still has to be applied per row in integers, so two chunks' `vpdpbusd`
//!   sums are packed to i16 (`vpackssdw`) and scaled and accumulated with one `vpdpwssd`: per
//!   64 weights and activation row 2 instead of 3 vector ops. Ranges: a `vpdpbusd` lane is at most
//!   4 · 15 · 128 = 7680 for Q4_K and 4 · 63 · 128 = 32256 for Q6_K (activations in −128..=127), so
//!   the pack never saturates; the i32 block sums stay below 2·10⁶ (Q4_K) and 3.4·10⁷ (Q6_K,
//!   including the −32 offset, which goes through the same `vpdpwssd` as `−32 · scale` against the
//!   activation group sums). `tests.rs` checks the limits with every weight byte 0xFF against
//!   activations at −128 / +127.
//! - Register blocking: `matmul::compute_rows` hands two weight rows per call
//!   (`rows2_dot_blocks_vnni`), so each 64-byte activation chunk, group-sum vector and activation
//!   scale is loaded once for both rows; both rows' decoded blocks (6 registers each) stay live.
//! - The row loop sits inside the block loop with the block's decoded weights in registers, so
//!   only the M float accumulators persist across blocks (the `vpmaddubsw` kernels above keep M
//!   integer sums live across the four chunks as well, and spill for M ≳ 8).
//!
//! Measured (Qwen2.5-1.5B up projection, 8960 × 1536, one thread, min of 40 interleaved calls,
//! `engine/examples`-style harness; the 2-core host was shared and loaded, so two-thread timings
//! were not reproducible): Q4_K m = 1 / 2 / 4 / 9 / 16: 268 / 352 / 595 / 1269 / 2672 µs with the
//! `vpmaddubsw` kernels, 220 / 281 / 422 / 810 / 1361 µs with VNNI + two rows (×0.82 / 0.80 / 0.71
//! / 0.64 / 0.51); Q6_K: 297 / 382 / 510 / 1035 / 2254 → 250 / 311 / 451 / 813 / 1328 µs (×0.84 /
//! 0.81 / 0.88 / 0.79 / 0.59). VNNI with one weight row per call alone gave ×0.78 for Q4_K at
//! m = 3..5 but nothing at m = 8..10 (×0.96–1.0, Q6_K ×1.12–1.19 slower); the two-row blocking is
//! what made the larger batches pay. Side by side: `cargo bench -p specsweep-engine --bench quant
//! -- "verify/Q4_K"` (ids `verify/Q4_K/avx512/mNN` against `verify/Q4_K/avx512vnni/mNN`).

use std::arch::x86_64::*;

use super::avx2::{
    dispatch_m, f16_at, f16_pair, fifth_bits, hsum, k4_scales_mins, loadu, prefetch_ahead,
};
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
                let (q_lo, q_hi) = q6k_half(blk, h);
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

/// The 6-bit weights of half `h` (128 weights) of the Q6_K block at `blk`, as two registers of 64
/// bytes in 0..=63: weights 0–63 and 64–127 of the half. The two high bits of weight j sit at bits
/// 0 / 2 of `qh[j % 32]` for the first 64 weights, 4 / 6 for the last 64.
///
/// # Safety
/// The CPU supports AVX-512 F/BW; `blk` points to a 210-byte Q6_K block.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
pub(super) unsafe fn q6k_half(blk: *const u8, h: usize) -> (__m512i, __m512i) {
    let m4 = _mm512_set1_epi8(0x0F);
    let m3 = _mm512_set1_epi8(3);
    // SAFETY: the block holds 128 bytes of low nibbles and 64 of high bits (caller).
    unsafe {
        let (shift_lo, shift_hi) = (halves_epi16(0, 2), halves_epi16(4, 6));
        let ql = loadu::<__m512i, u8>(blk.wrapping_add(64 * h));
        let qh = _mm512_broadcast_i64x4(loadu::<__m256i, u8>(blk.wrapping_add(128 + 32 * h)));
        let hi_bits = |shift: __m512i| {
            _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, shift), m3), 4)
        };
        let lo = _mm512_or_si512(_mm512_and_si512(ql, m4), hi_bits(shift_lo));
        let hi = _mm512_or_si512(
            _mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
            hi_bits(shift_hi),
        );
        (lo, hi)
    }
}

/// Four i16 lanes holding `g` (one 64-bit element of a `vpermw` index).
#[inline(always)]
const fn rep(g: i16) -> i64 {
    (g as u16 as i64) * 0x0001_0001_0001_0001
}

/// [`row_dot_blocks`] with AVX-512 VNNI: Q4_K and Q6_K through `vpdpbusd` / `vpdpwssd` (see the
/// module docs), every other format on the AVX2 kernels.
///
/// # Safety
/// As [`row_dot_blocks`], and the CPU supports AVX-512 VNNI.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn row_dot_blocks_vnni(
    format: QuantFormat,
    w: &[u8],
    tile: &ActTile<'_>,
    out: &mut [f32],
) {
    debug_assert!((1..=TILE_M).contains(&tile.m));
    let m = tile.m;
    unsafe {
        match format {
            QuantFormat::Q4K => dispatch_m!(m, q4k_vnni::<ONE>, [w], tile, [out]),
            QuantFormat::Q6K => dispatch_m!(m, q6k_vnni::<ONE>, [w], tile, [out]),
            QuantFormat::Q4_0 => dispatch_m!(m, blocks32_vnni::<Q4_0>, w, tile, out),
            QuantFormat::Q4_1 => dispatch_m!(m, blocks32_vnni::<Q4_1>, w, tile, out),
            QuantFormat::Q8_0 => dispatch_m!(m, blocks32_vnni::<Q8_0>, w, tile, out),
            QuantFormat::Q5_0 => dispatch_m!(m, blocks32_vnni::<Q5_0>, w, tile, out),
            QuantFormat::Q5_1 => dispatch_m!(m, blocks32_vnni::<Q5_1>, w, tile, out),
            _ => super::avx2::row_dot_blocks(format, w, tile, out),
        }
    }
}

/// Formats of the 32-weight VNNI kernel (const-generic arguments of `blocks32_vnni`).
const Q4_0: u8 = 0;
const Q4_1: u8 = 1;
const Q8_0: u8 = 2;
const Q5_0: u8 = 3;
const Q5_1: u8 = 4;

/// One weight row of Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0 against `M` activation rows with AVX-512 VNNI: two
/// 32-weight blocks per 512-bit register decoded once for all rows, one `vpdpbusd` per row, the two
/// blocks' scales applied to the two halves of the i32 lanes by one FMA, and the offset / minimum
/// terms (`−8·d`, `−16·d`, `m`) against the activation group sums in a vector accumulator, with no scalar
/// chain from block to block. The AVX2 kernel spends about twice the operations per block and
/// carries the minimum term through a scalar FMA chain. Every activation row goes through the same
/// operations whatever `M` (batch-invariant, as a speculative verify needs). Q8_0 takes |w| · (x
/// with w's sign), the AVX2 kernel's integers; an odd last block goes through 256-bit registers.
///
/// # Safety
/// As [`row_dot_blocks_vnni`], with `tile.m == M` and `w` of format `F`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
#[allow(clippy::needless_range_loop)]
unsafe fn blocks32_vnni<const M: usize, const F: u8>(
    w: &[u8],
    tile: &ActTile<'_>,
    out: &mut [f32],
) {
    let bb: usize = match F {
        Q4_0 => 18,
        Q4_1 => 20,
        Q5_0 => 22,
        Q5_1 => 24,
        _ => 34,
    };
    // offsets of the nibbles and (Q5_*) of the 32 fifth bits in a block
    let (qs_at, qh_at) = match F {
        Q4_0 => (2, 0),
        Q4_1 => (4, 0),
        Q5_0 => (6, 2),
        _ => (8, 4),
    };
    let five = F == Q5_0 || F == Q5_1;
    let nb = tile.cols / 32;
    debug_assert!(tile.m == M && out.len() >= M && tile.block == 32 && w.len() == nb * bb);
    let (wp, x, dx, sx) = (
        w.as_ptr(),
        tile.qs.as_ptr(),
        tile.d.as_ptr(),
        tile.s.as_ptr(),
    );
    let m4 = _mm512_set1_epi8(0x0F);
    // 128-bit lanes 0 / 2 keep the low nibbles (weights 0–15 of a block), 1 / 3 the high ones
    let shifts = _mm512_set_epi64(
        4 * 0x0001_0001_0001_0001,
        4 * 0x0001_0001_0001_0001,
        0,
        0,
        4 * 0x0001_0001_0001_0001,
        4 * 0x0001_0001_0001_0001,
        0,
        0,
    );
    let zero = _mm512_setzero_si512();
    let cols = tile.cols;
    let mut acc = [_mm512_setzero_ps(); M];
    let mut accm = [_mm_setzero_ps(); M];
    // (d, offset-or-min) of a block as floats
    // SAFETY: `p` points to a block's leading scale fields (callers below).
    let scales = |p: *const u8| -> (f32, f32) {
        // SAFETY: `p` points to a block's leading scale fields (callers below).
        unsafe {
            match F {
                Q4_0 => {
                    let d = f16_at(p);
                    (d, -8.0 * d)
                }
                Q5_0 => {
                    let d = f16_at(p);
                    (d, -16.0 * d)
                }
                Q4_1 | Q5_1 => f16_pair(p),
                _ => (f16_at(p), 0.0),
            }
        }
    };
    // SAFETY (whole body): block b of `w` spans b·bb..(b + 1)·bb < w.len(); activation block b
    // spans 32·b..32·b + 32 of the row's `cols` values, with scale and sum b of `nb`.
    unsafe {
        let mut b = 0;
        while b + 2 <= nb {
            let (p0, p1) = (wp.add(b * bb), wp.add((b + 1) * bb));
            prefetch_ahead(p0, 64);
            let (d0, c0) = scales(p0);
            let (d1, c1) = scales(p1);
            let c = _mm_setr_ps(c0, c1, 0.0, 0.0);
            // Q8_0: |w| here, w's sign moved onto each activation row below
            let (q, neg) = match F {
                Q8_0 => {
                    let wv = _mm512_inserti64x4(
                        _mm512_castsi256_si512(_mm256_loadu_si256(p0.add(2) as *const __m256i)),
                        _mm256_loadu_si256(p1.add(2) as *const __m256i),
                        1,
                    );
                    (_mm512_abs_epi8(wv), _mm512_movepi8_mask(wv))
                }
                _ => {
                    let lo = _mm256_broadcastsi128_si256(_mm_loadu_si128(
                        p0.add(qs_at) as *const __m128i
                    ));
                    let hi = _mm256_broadcastsi128_si256(_mm_loadu_si128(
                        p1.add(qs_at) as *const __m128i
                    ));
                    let both = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
                    let mut q = _mm512_and_si512(_mm512_srlv_epi16(both, shifts), m4);
                    if five {
                        // byte j of each block's 32 is weight j: bit j of its fifth bits
                        let h0 = (p0.add(qh_at) as *const u32).read_unaligned();
                        let h1 = (p1.add(qh_at) as *const u32).read_unaligned();
                        let hm = u64::from(h0) | (u64::from(h1) << 32);
                        q = _mm512_or_si512(q, _mm512_maskz_mov_epi8(hm, _mm512_set1_epi8(0x10)));
                    }
                    (q, 0)
                }
            };
            // every activation row through the same operations (batch-invariant results)
            for i in 0..M {
                let xv = _mm512_loadu_si512(x.add(i * cols + 32 * b) as *const _);
                let xv = if F == Q8_0 {
                    _mm512_mask_sub_epi8(xv, neg, zero, xv)
                } else {
                    xv
                };
                let sum = _mm512_dpbusd_epi32(zero, q, xv);
                let (dx0, dx1) = (*dx.add(i * nb + b), *dx.add(i * nb + b + 1));
                // (insertf64x4 rather than insertf32x8, which needs AVX-512 DQ)
                let dv = _mm512_castpd_ps(_mm512_insertf64x4(
                    _mm512_castps_pd(_mm512_castps256_ps512(_mm256_set1_ps(d0 * dx0))),
                    _mm256_castps_pd(_mm256_set1_ps(d1 * dx1)),
                    1,
                ));
                acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), dv, acc[i]);
                if F != Q8_0 {
                    let s = _mm_castpd_ps(_mm_load_sd(sx.add(i * nb + b) as *const f64));
                    accm[i] = _mm_fmadd_ps(c, s, accm[i]);
                }
            }
            b += 2;
        }
        for i in 0..M {
            let mut total = hsum512(acc[i]);
            if b < nb {
                // the odd last block, in 256-bit registers
                let p = wp.add(b * bb);
                let xv = _mm256_loadu_si256(x.add(i * cols + 32 * b) as *const __m256i);
                let (q, xv) = match F {
                    Q8_0 => {
                        let wv = _mm256_loadu_si256(p.add(2) as *const __m256i);
                        (_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv))
                    }
                    _ => {
                        let bytes = _mm_loadu_si128(p.add(qs_at) as *const __m128i);
                        let m4 = _mm_set1_epi8(0x0F);
                        let mut q = _mm256_set_m128i(
                            _mm_and_si128(_mm_srli_epi16(bytes, 4), m4),
                            _mm_and_si128(bytes, m4),
                        );
                        if five {
                            let h = (p.add(qh_at) as *const u32).read_unaligned();
                            q = _mm256_or_si256(q, fifth_bits(h));
                        }
                        (q, xv)
                    }
                };
                let sum = _mm256_dpbusd_epi32(_mm256_setzero_si256(), q, xv);
                let (d, c) = scales(p);
                total += super::avx2::hsum(_mm256_cvtepi32_ps(sum)) * (d * *dx.add(i * nb + b));
                if F != Q8_0 {
                    total += c * *sx.add(i * nb + b);
                }
            }
            let m = accm[i];
            let m2 = _mm_add_ps(m, _mm_movehl_ps(m, m));
            out[i] = total + _mm_cvtss_f32(_mm_add_ss(m2, _mm_shuffle_ps(m2, m2, 1)));
        }
    }
}

/// Two weight rows against a tile with AVX-512 VNNI (register blocking: each activation chunk is
/// loaded once for both rows). Returns `false`, computing nothing, for formats without a
/// two-row kernel (the caller then calls [`row_dot_blocks_vnni`] per row).
///
/// # Safety
/// As [`row_dot_blocks_vnni`], for both rows.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn rows2_dot_blocks_vnni(
    format: QuantFormat,
    w: [&[u8]; 2],
    tile: &ActTile<'_>,
    out: [&mut [f32]; 2],
) -> bool {
    debug_assert!((1..=TILE_M).contains(&tile.m));
    let m = tile.m;
    unsafe {
        match format {
            QuantFormat::Q4K => dispatch_m!(m, q4k_vnni::<TWO>, w, tile, out),
            QuantFormat::Q6K => dispatch_m!(m, q6k_vnni::<TWO>, w, tile, out),
            _ => return false,
        }
    }
    true
}

/// Weight rows per VNNI kernel call (const-generic arguments of `dispatch_m!`).
const ONE: usize = 1;
const TWO: usize = 2;

/// `vpermw` index for `packs(a, b)` of two `vpdpbusd` results: 64-bit element `e` of the packed
/// vector holds i32 lanes `4·(e / 2) .. 4·(e / 2) + 4` of `a` (even `e`) or of `b` (odd `e`), and
/// `groups[e]` names the scale that applies to them.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
fn pack_index(groups: [i16; 8]) -> __m512i {
    _mm512_set_epi64(
        rep(groups[7]),
        rep(groups[6]),
        rep(groups[5]),
        rep(groups[4]),
        rep(groups[3]),
        rep(groups[2]),
        rep(groups[1]),
        rep(groups[0]),
    )
}

/// `R` Q4_K weight rows against `M` activation rows.
// `i` indexes the accumulators of every one of the R weight rows
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q4k_vnni<const M: usize, const R: usize>(
    w: [&[u8]; R],
    tile: &ActTile<'_>,
    out: [&mut [f32]; R],
) {
    const BB: usize = 144;
    let cols = tile.cols;
    let nb = cols / 256;
    let n16 = cols / 16;
    debug_assert!(tile.m == M && tile.block == 256);
    debug_assert!(w.iter().all(|w| w.len() == nb * BB));
    debug_assert!(out.iter().all(|o| o.len() >= M));
    let m4 = _mm512_set1_epi8(0x0F);
    let shifts = unsafe { halves_epi16(0, 4) };
    // Chunk c: i32 lanes 0–7 are sub-block 2c (low nibbles), 8–15 sub-block 2c + 1. For the pair
    // of chunks (2p, 2p + 1) packed together, element e covers lanes 4·(e / 2).. of chunk 2p + e % 2.
    let idx = [0i16, 1].map(|p| {
        let g = 4 * p;
        pack_index([g, g + 2, g, g + 2, g + 1, g + 3, g + 1, g + 3])
    });
    let zero = _mm512_setzero_si512();
    let mut acc = [[_mm512_setzero_ps(); M]; R];
    let (qs, bsums, ds) = (tile.qs.as_ptr(), tile.bsums.as_ptr(), tile.d.as_ptr());
    // SAFETY (whole body): offsets stay inside each `w` (nb blocks of 144 bytes) and inside the
    // tile's M rows of `cols` values, `nb` scales and `n16` group sums, as asserted above.
    unsafe {
        for b in 0..nb {
            let mut q = [[zero; 4]; R];
            let mut s = [[zero; 2]; R];
            let mut mins = [_mm256_setzero_si256(); R];
            let mut dv = [_mm512_setzero_ps(); R];
            let mut dminv = [_mm512_setzero_ps(); R];
            for r in 0..R {
                let blk = w[r].as_ptr().wrapping_add(b * BB);
                prefetch_ahead(blk, BB);
                let (d, dmin) = f16_pair(blk);
                let (sc16, mn) = k4_scales_mins(blk.wrapping_add(4));
                let sc = _mm512_broadcast_i32x4(sc16);
                for (c, q) in q[r].iter_mut().enumerate() {
                    let qb =
                        _mm512_broadcast_i64x4(loadu::<__m256i, u8>(blk.wrapping_add(16 + 32 * c)));
                    *q = _mm512_and_si512(_mm512_srlv_epi16(qb, shifts), m4);
                }
                s[r] = [
                    _mm512_permutexvar_epi16(idx[0], sc),
                    _mm512_permutexvar_epi16(idx[1], sc),
                ];
                mins[r] = mn;
                dv[r] = _mm512_set1_ps(d);
                dminv[r] = _mm512_set1_ps(dmin);
            }
            for i in 0..M {
                let x = qs.wrapping_add(i * cols + 256 * b);
                let xs = [0usize, 1, 2, 3].map(|c| loadu::<__m512i, i8>(x.wrapping_add(64 * c)));
                let bs = loadu::<__m256i, i16>(bsums.wrapping_add(i * n16 + 16 * b));
                let dx = _mm512_set1_ps(*ds.add(i * nb + b));
                for r in 0..R {
                    let mut sumi = zero;
                    for p in 0..2 {
                        // |lane| ≤ 4 · 15 · 128 = 7680: exact in i16, so `packs` never saturates
                        let a = _mm512_dpbusd_epi32(zero, q[r][2 * p], xs[2 * p]);
                        let c = _mm512_dpbusd_epi32(zero, q[r][2 * p + 1], xs[2 * p + 1]);
                        sumi = _mm512_dpwssd_epi32(sumi, _mm512_packs_epi32(a, c), s[r][p]);
                    }
                    let summ =
                        _mm512_cvtepi32_ps(_mm512_zextsi256_si512(_mm256_madd_epi16(bs, mins[r])));
                    let t = _mm512_fmsub_ps(
                        _mm512_cvtepi32_ps(sumi),
                        dv[r],
                        _mm512_mul_ps(summ, dminv[r]),
                    );
                    acc[r][i] = _mm512_fmadd_ps(t, dx, acc[r][i]);
                }
            }
        }
    }
    for (acc, out) in acc.iter().zip(out) {
        for (a, o) in acc.iter().zip(out.iter_mut()) {
            // SAFETY: AVX-512 F is enabled on this function.
            *o = unsafe { hsum512(*a) };
        }
    }
}

/// `R` Q6_K weight rows against `M` activation rows.
// `i` indexes the accumulators of every one of the R weight rows
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q6k_vnni<const M: usize, const R: usize>(
    w: [&[u8]; R],
    tile: &ActTile<'_>,
    out: [&mut [f32]; R],
) {
    const BB: usize = 210;
    let cols = tile.cols;
    let nb = cols / 256;
    let n16 = cols / 16;
    debug_assert!(tile.m == M && tile.block == 256);
    debug_assert!(w.iter().all(|w| w.len() == nb * BB));
    debug_assert!(out.iter().all(|o| o.len() >= M));
    // Half h: the low 64 weights' i32 lane k has scale 8h + k / 4, the high 64's 8h + 4 + k / 4.
    let idx = [0i16, 1].map(|h| {
        let g = 8 * h;
        pack_index([g, g + 4, g + 1, g + 5, g + 2, g + 6, g + 3, g + 7])
    });
    let zero = _mm512_setzero_si512();
    let mut acc = [[_mm512_setzero_ps(); M]; R];
    let (qs, bsums, ds) = (tile.qs.as_ptr(), tile.bsums.as_ptr(), tile.d.as_ptr());
    // SAFETY: as in `q4k_vnni` (blocks of 210 bytes).
    unsafe {
        for b in 0..nb {
            let mut q = [[zero; 4]; R];
            let mut s = [[zero; 2]; R];
            let mut off = [zero; R];
            let mut dv = [_mm512_setzero_ps(); R];
            for r in 0..R {
                let blk = w[r].as_ptr().wrapping_add(b * BB);
                prefetch_ahead(blk, BB);
                dv[r] = _mm512_set1_ps(f16_at(blk.wrapping_add(208)));
                let sc16 = _mm256_cvtepi8_epi16(loadu::<__m128i, u8>(blk.wrapping_add(192)));
                let sc = _mm512_zextsi256_si512(sc16);
                // −32 · scale per group of 16 (|·| ≤ 4096): the offset of q − 32 through the
                // same `vpdpwssd` as the products
                off[r] = _mm512_zextsi256_si512(_mm256_slli_epi16(
                    _mm256_sub_epi16(_mm256_setzero_si256(), sc16),
                    5,
                ));
                for h in 0..2 {
                    (q[r][2 * h], q[r][2 * h + 1]) = q6k_half(blk, h);
                }
                s[r] = [
                    _mm512_permutexvar_epi16(idx[0], sc),
                    _mm512_permutexvar_epi16(idx[1], sc),
                ];
            }
            for i in 0..M {
                let x = qs.wrapping_add(i * cols + 256 * b);
                let xs = [0usize, 1, 2, 3].map(|c| loadu::<__m512i, i8>(x.wrapping_add(64 * c)));
                let bs = _mm512_zextsi256_si512(loadu::<__m256i, i16>(
                    bsums.wrapping_add(i * n16 + 16 * b),
                ));
                let dx = _mm512_set1_ps(*ds.add(i * nb + b));
                for r in 0..R {
                    let mut sumi = _mm512_dpwssd_epi32(zero, bs, off[r]);
                    for h in 0..2 {
                        // |lane| ≤ 4 · 63 · 128 = 32256: exact in i16
                        let a = _mm512_dpbusd_epi32(zero, q[r][2 * h], xs[2 * h]);
                        let c = _mm512_dpbusd_epi32(zero, q[r][2 * h + 1], xs[2 * h + 1]);
                        sumi = _mm512_dpwssd_epi32(sumi, _mm512_packs_epi32(a, c), s[r][h]);
                    }
                    let t = _mm512_mul_ps(_mm512_cvtepi32_ps(sumi), dv[r]);
                    acc[r][i] = _mm512_fmadd_ps(t, dx, acc[r][i]);
                }
            }
        }
    }
    for (acc, out) in acc.iter().zip(out) {
        for (a, o) in acc.iter().zip(out.iter_mut()) {
            // SAFETY: AVX-512 F is enabled on this function.
            *o = unsafe { hsum512(*a) };
        }
    }
}

/// Sixteen weights of a dense format from `w` (element `j` on) as f32.
#[inline(always)]
unsafe fn load16(format: QuantFormat, w: *const u8, j: usize) -> __m512 {
    // SAFETY: the caller keeps `j + 16` within the row.
    unsafe {
        match format {
            QuantFormat::F32 => loadu::<__m512, u8>(w.wrapping_add(4 * j)),
            QuantFormat::F16 => _mm512_cvtph_ps(loadu::<__m256i, u8>(w.wrapping_add(2 * j))),
            _ => _mm512_castsi512_ps(_mm512_slli_epi32(
                _mm512_cvtepu16_epi32(loadu::<__m256i, u8>(w.wrapping_add(2 * j))),
                16,
            )),
        }
    }
}

/// One row of a dense format (f32, f16, bf16) against a tile of f32 activations, 16 lanes at a
/// time: the AVX-512 form of `super::avx2::row_dot_dense` (up to 8 activation rows per pass
/// over the weight row, two accumulators each: 16 of the 32 zmm registers).
///
/// # Safety
/// The CPU supports AVX-512 F and F16C; `w` holds `tile.cols` weights of `format`, `tile.cols` is
/// a multiple of 32.
#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
pub(crate) unsafe fn row_dot_dense(
    format: QuantFormat,
    w: &[u8],
    tile: &super::matmul::FloatTile<'_>,
    out: &mut [f32],
) {
    const DENSE_M: usize = 8;
    let cols = tile.cols;
    debug_assert!((1..=TILE_M).contains(&tile.m) && cols.is_multiple_of(32));
    debug_assert_eq!(w.len(), format.bytes_for(1, cols));
    for i0 in (0..tile.m).step_by(DENSE_M) {
        let m = DENSE_M.min(tile.m - i0);
        let x = &tile.x[i0 * cols..(i0 + m) * cols];
        let out = &mut out[i0..i0 + m];
        // SAFETY: as documented above.
        unsafe {
            match m {
                1 => dense_m::<1>(format, w, x, cols, out),
                2 => dense_m::<2>(format, w, x, cols, out),
                3 => dense_m::<3>(format, w, x, cols, out),
                4 => dense_m::<4>(format, w, x, cols, out),
                5 => dense_m::<5>(format, w, x, cols, out),
                6 => dense_m::<6>(format, w, x, cols, out),
                7 => dense_m::<7>(format, w, x, cols, out),
                _ => dense_m::<8>(format, w, x, cols, out),
            }
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx2,fma,f16c")]
unsafe fn dense_m<const M: usize>(
    format: QuantFormat,
    w: &[u8],
    x: &[f32],
    cols: usize,
    out: &mut [f32],
) {
    debug_assert!(x.len() == M * cols && out.len() == M);
    let mut acc0 = [_mm512_setzero_ps(); M];
    let mut acc1 = [_mm512_setzero_ps(); M];
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    // SAFETY: offsets stay below `cols` elements of `w` and of each of the `M` rows of `x`.
    unsafe {
        for j in (0..cols).step_by(32) {
            let w0 = load16(format, wp, j);
            let w1 = load16(format, wp, j + 16);
            for i in 0..M {
                let xi = xp.wrapping_add(i * cols + j);
                acc0[i] = _mm512_fmadd_ps(w0, loadu::<__m512, f32>(xi), acc0[i]);
                acc1[i] = _mm512_fmadd_ps(w1, loadu::<__m512, f32>(xi.wrapping_add(16)), acc1[i]);
            }
        }
        for i in 0..M {
            out[i] = hsum512(_mm512_add_ps(acc0[i], acc1[i]));
        }
    }
}
