//! x86-64 AVX2 kernels: the arithmetic of [`super::scalar`] with 256-bit integer dot products.
//!
//! Why intrinsics rather than loops left to the auto-vectoriser: the workspace builds for the
//! baseline x86-64 target (SSE2), and the core of every block format is `vpmaddubsw` (u8 × i8 pairs
//! summed to i16) followed by `vpmaddwd` — the instruction pair ggml's `ggml_vec_dot_*_q8_*` are
//! built on — which LLVM does not derive from scalar code. The functions are compiled with
//! `#[target_feature(enable = "avx2,fma,f16c")]` and only called after run-time detection
//! ([`super::Isa::detect`]).
//!
//! Weight blocks are decoded to 32 unsigned (Q4/Q5 families, offset folded into the block sum `s`)
//! or signed (Q8_0, Q6_K, via the `vpsignb` trick) bytes once per block and then multiplied with
//! every activation row of the tile, so verify-shaped calls (m = 2..16) stream the weights once.

use std::arch::x86_64::*;

use super::format::QuantFormat;
use super::matmul::{ActTile, FloatTile, TILE_M};

/// A value read from any address: a by-value read of a packed struct's field compiles to one
/// unaligned load. `std::arch`'s `_mm*_loadu_*` go through `ptr::copy_nonoverlapping`, whose
/// precondition checks are compiled into this crate when debug assertions are on (as in the
/// workspace's `dev` profile) and measured 2× slower there.
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub(super) struct Unaligned<T: Copy>(T);

/// Unaligned load of a `T` at `p`.
///
/// # Safety
/// `p .. p + size_of::<T>()` is readable.
#[inline(always)]
pub(super) unsafe fn loadu<T: Copy, P>(p: *const P) -> T {
    unsafe { (*(p as *const Unaligned<T>)).0 }
}

/// Prefetch the `bytes` bytes 1 KiB past `p` into L1 and those 4 KiB past it into L2: the
/// row-major kernels stream each weight row once, and on a machine whose DRAM latency the
/// hardware prefetchers did not hide they waited on their loads (SmolLM2-135M Q4_1 decode on one
/// thread: 58 tok/s before the L1 prefetch, 78 after). The L1 line-fill buffers bound how many
/// misses a core keeps in flight; the L2 prefetch adds more, further ahead: two threads, A/B in
/// one session, 1.5B Q4_K_M 20.8–21.1 → 22.4–23.2 tok/s, SmolLM2 133–136 → 148–150 (4 and 8 KiB
/// ahead measured the same). The i-quant code kernels (`super::iq_codes`) call it per block too.
#[inline(always)]
pub(super) fn prefetch_ahead(p: *const u8, bytes: usize) {
    /// How far ahead the second, L2-level prefetch reaches.
    const FAR: usize = 4096;
    let mut line = 0;
    while line < bytes {
        // SAFETY: a prefetch never faults, whatever the address.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(1024 + line) as *const i8) };
        unsafe { _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(FAR + line) as *const i8) };
        line += 64;
    }
}

/// Half to single precision (F16C).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn f16_at(p: *const u8) -> f32 {
    let bits = unsafe { loadu::<u16, u8>(p) };
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_set1_epi16(bits as i16)))
}

/// The two halves `d, m` of a Q4_1 / Q5_1 block, converted together from one `vmovd`, which writes
/// the whole register. Converting a lone half lets LLVM load it with `vpinsrw` into whichever
/// register is free — here the scalar accumulator of the offset terms — a false dependency that
/// chained every block to the previous one (measured 2–3× slower for Q4_0 / Q4_1).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn f16_pair(p: *const u8) -> (f32, f32) {
    let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(unsafe { loadu::<i32, u8>(p) }));
    (_mm_cvtss_f32(dm), _mm_cvtss_f32(_mm_movehdup_ps(dm)))
}

/// A lone half of a block with an offset term (Q4_0 / Q5_0), converted in integer registers
/// (`half`'s branch-free software conversion) for the reason given at [`f16_pair`]: LLVM narrows
/// even a 4-byte load to `vpinsrw` when only one lane is used.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn f16_soft(p: *const u8) -> f32 {
    let bits = unsafe { loadu::<u16, u8>(p) };
    half::f16::from_bits(bits).to_f32_const()
}

/// Horizontal sum of 8 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
}

/// 32 bytes, one per bit of `bits`: 0x10 where the bit is set (the fifth bit of Q5_0 / Q5_1).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn fifth_bits(bits: u32) -> __m256i {
    let v = _mm256_set1_epi32(bits as i32);
    let shuf = _mm256_setr_epi64x(
        0x0000_0000_0000_0000,
        0x0101_0101_0101_0101,
        0x0202_0202_0202_0202,
        0x0303_0303_0303_0303,
    );
    let bitmask = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let set = _mm256_cmpeq_epi8(
        _mm256_and_si256(_mm256_shuffle_epi8(v, shuf), bitmask),
        bitmask,
    );
    _mm256_and_si256(set, _mm256_set1_epi8(0x10))
}

/// The 32 nibbles of a Q4_0/Q4_1/Q5 block (16 bytes at `p`) in element order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn nibbles_16(p: *const u8) -> __m256i {
    let bytes = unsafe { loadu::<__m128i, u8>(p) };
    let m4 = _mm_set1_epi8(0x0F);
    let lo = _mm_and_si128(bytes, m4);
    let hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), m4);
    _mm256_set_m128i(hi, lo)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn load(p: *const u8) -> __m256i {
    unsafe { loadu::<__m256i, u8>(p) }
}

/// Σ u·s over 32 (u8, i8) pairs as 8 i32 lanes, each pair-sum scaled by `scale` (i16 lanes).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dot_us(u: __m256i, s: __m256i, scale: __m256i) -> __m256 {
    _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(u, s), scale))
}

/// The 8 six-bit sub-block scales (as 8 × i16) and mins (as 16 × i16, each repeated for the two
/// 16-value halves of its group, matching the activation `bsums`) of a Q4_K / Q5_K block, from
/// its 12 packed bytes at `p`, in a dozen integer operations rather than a per-group loop: bytes
/// 0–3 hold scales 0–3 (low 6 bits) and the top bits of scales 4–7, bytes 4–7 the same for the
/// mins, bytes 8–11 the low nibbles of scales 4–7 (low) and mins 4–7 (high).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn k4_scales_mins(p: *const u8) -> (__m128i, __m256i) {
    let (sc, mn) = unsafe { k4_scale_min_bytes(p) };
    let sc16 = _mm_cvtepu8_epi16(_mm_cvtsi64_si128(sc as i64));
    let mn8 = _mm_cvtsi64_si128(mn as i64);
    (sc16, _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(mn8, mn8)))
}

/// The eight 6-bit scales and the eight mins of a Q4_K / Q5_K block from its 12 packed bytes at
/// `p`, one byte each, little-endian in a `u64` (see [`k4_scales_mins`] for the layout).
///
/// # Safety
/// `p` points to 12 readable bytes.
#[inline(always)]
pub(super) unsafe fn k4_scale_min_bytes(p: *const u8) -> (u64, u64) {
    const M6: u32 = 0x3f3f_3f3f;
    const M4: u32 = 0x0f0f_0f0f;
    const M2: u32 = 0x0303_0303;
    // SAFETY: 12 bytes at p (caller).
    let (w0, w1, w2) = unsafe {
        (
            loadu::<u32, u8>(p),
            loadu::<u32, u8>(p.wrapping_add(4)),
            loadu::<u32, u8>(p.wrapping_add(8)),
        )
    };
    let sc = u64::from(w0 & M6) | (u64::from((w2 & M4) | (((w0 >> 6) & M2) << 4)) << 32);
    let mn = u64::from(w1 & M6) | (u64::from(((w2 >> 4) & M4) | (((w1 >> 6) & M2) << 4)) << 32);
    (sc, mn)
}

/// Call `$f::<M>($args)` with `M` the tile's row count as a constant (1..=TILE_M), so the
/// per-row accumulators are registers rather than a stack array (whose store-to-load forwarding
/// would otherwise sit in the loop-carried dependency of every block: measured 1.8× slower at m = 1).
macro_rules! dispatch_m {
    ($m:expr, $f:ident :: <$($c:ident),*>, $($arg:expr),*) => {
        match $m {
            1 => $f::<1 $(, $c)*>($($arg),*), 2 => $f::<2 $(, $c)*>($($arg),*),
            3 => $f::<3 $(, $c)*>($($arg),*), 4 => $f::<4 $(, $c)*>($($arg),*),
            5 => $f::<5 $(, $c)*>($($arg),*), 6 => $f::<6 $(, $c)*>($($arg),*),
            7 => $f::<7 $(, $c)*>($($arg),*), 8 => $f::<8 $(, $c)*>($($arg),*),
            9 => $f::<9 $(, $c)*>($($arg),*), 10 => $f::<10 $(, $c)*>($($arg),*),
            11 => $f::<11 $(, $c)*>($($arg),*), 12 => $f::<12 $(, $c)*>($($arg),*),
            13 => $f::<13 $(, $c)*>($($arg),*), 14 => $f::<14 $(, $c)*>($($arg),*),
            15 => $f::<15 $(, $c)*>($($arg),*), _ => $f::<TILE_M $(, $c)*>($($arg),*),
        }
    };
    // a kernel generic over M only (rustfmt writes `f::<>` as `f`)
    ($m:expr, $f:ident, $($arg:expr),*) => {
        dispatch_m!($m, $f::<>, $($arg),*)
    };
}
pub(super) use dispatch_m;

/// [`QuantFormat::ALL`] indexed by a const generic, so each block format gets its own kernel with
/// the per-block `match` resolved at compile time.
const FORMATS: [QuantFormat; QuantFormat::ALL.len()] = QuantFormat::ALL;

/// Position of `format` in [`FORMATS`].
const fn format_index(format: QuantFormat) -> usize {
    let mut i = 0;
    while i < FORMATS.len() {
        if FORMATS[i] as u8 == format as u8 {
            return i;
        }
        i += 1;
    }
    0
}

/// One row of a block format against a tile of quantized activations (see `scalar::row_dot_blocks`).
///
/// # Safety
/// The CPU supports AVX2, FMA and F16C; `w` holds `tile.cols / block_elems` blocks of `format`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn row_dot_blocks(
    format: QuantFormat,
    w: &[u8],
    tile: &ActTile<'_>,
    out: &mut [f32],
) {
    debug_assert!((1..=TILE_M).contains(&tile.m));
    const Q8_0: usize = format_index(QuantFormat::Q8_0);
    const Q4_0: usize = format_index(QuantFormat::Q4_0);
    const Q4_1: usize = format_index(QuantFormat::Q4_1);
    const Q5_0: usize = format_index(QuantFormat::Q5_0);
    const Q5_1: usize = format_index(QuantFormat::Q5_1);
    const IQ4_NL: usize = format_index(QuantFormat::Iq4Nl);
    const Q4K: usize = format_index(QuantFormat::Q4K);
    const Q5K: usize = format_index(QuantFormat::Q5K);
    const Q6K: usize = format_index(QuantFormat::Q6K);
    let m = tile.m;
    unsafe {
        match format {
            QuantFormat::Q8_0 => dispatch_m!(m, blocks_m::<Q8_0>, w, tile, out),
            QuantFormat::Q4_0 => dispatch_m!(m, blocks_m::<Q4_0>, w, tile, out),
            QuantFormat::Q4_1 => dispatch_m!(m, blocks_m::<Q4_1>, w, tile, out),
            QuantFormat::Q5_0 => dispatch_m!(m, blocks_m::<Q5_0>, w, tile, out),
            QuantFormat::Q5_1 => dispatch_m!(m, blocks_m::<Q5_1>, w, tile, out),
            QuantFormat::Iq4Nl => dispatch_m!(m, blocks_m::<IQ4_NL>, w, tile, out),
            QuantFormat::Q4K => dispatch_m!(m, blocks_m::<Q4K>, w, tile, out),
            QuantFormat::Q5K => dispatch_m!(m, blocks_m::<Q5K>, w, tile, out),
            QuantFormat::Q6K => dispatch_m!(m, blocks_m::<Q6K>, w, tile, out),
            // row-major IQ4_XS / Q3_K / Q2_K (a shape or CPU without the interleaved layout):
            // portable
            QuantFormat::Iq4Xs | QuantFormat::Q3K | QuantFormat::Q2K => {
                super::scalar::row_dot_blocks(format, w, tile, out)
            }
            // (`matmul` sends these rows to `iq_codes` before this)
            QuantFormat::Iq2Planes
            | QuantFormat::Iq3XxsNib
            | QuantFormat::Iq3SNib
            | QuantFormat::Iq1Shift => super::iq_codes::row_dot_scalar(format, w, tile, out),
            QuantFormat::F32 | QuantFormat::F16 | QuantFormat::Bf16 => {
                unreachable!("dense formats use row_dot_dense")
            }
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn blocks_m<const M: usize, const F: usize>(w: &[u8], tile: &ActTile<'_>, out: &mut [f32]) {
    let format = FORMATS[F];
    let m = M;
    debug_assert!(tile.m == M && out.len() >= m);
    debug_assert_eq!(w.len(), format.bytes_for(1, tile.cols));
    let cols = tile.cols;
    let nb32 = cols / 32;
    let n_blocks = cols / format.block_elems();
    let bb = format.block_bytes();
    let mut acc = [_mm256_setzero_ps(); M];
    let mut corr = [0.0f32; M];
    // K-quant minimum terms, subtracted at the end
    let mut accm = [_mm256_setzero_ps(); M];
    let n16 = cols / 16;
    let ones = _mm256_set1_epi16(1);
    let m4 = _mm256_set1_epi8(0x0F);
    let qs = tile.qs.as_ptr();
    let bsums = tile.bsums.as_ptr();
    debug_assert_eq!(tile.block, format.block_elems().max(32));
    // SAFETY (whole body): every pointer offset stays inside `w` (n_blocks · bb bytes) or inside the
    // tile (m rows of `cols` values and `nb32` scales), as the debug assertions above state.
    unsafe {
        // activation group `ab` of row `i` for the 32-weight formats: (values, scale, sum)
        let xb = |i: usize, ab: usize| {
            (
                qs.wrapping_add(i * cols + 32 * ab),
                tile.d[i * nb32 + ab],
                tile.s[i * nb32 + ab],
            )
        };
        for b in 0..n_blocks {
            let blk = w.as_ptr().wrapping_add(b * bb);
            match format {
                QuantFormat::Q8_0 | QuantFormat::Iq4Nl => {
                    // IQ4_NL: its nibbles looked up as the grid's int8 levels, then as Q8_0
                    let d = f16_at(blk);
                    let q = if format == QuantFormat::Q8_0 {
                        load(blk.wrapping_add(2))
                    } else {
                        let grid = loadu::<__m128i, i8>(super::iq4_nl::GRID.as_ptr());
                        _mm256_shuffle_epi8(
                            _mm256_broadcastsi128_si256(grid),
                            nibbles_16(blk.wrapping_add(2)),
                        )
                    };
                    let aq = _mm256_sign_epi8(q, q);
                    for (i, acc) in acc.iter_mut().enumerate().take(m) {
                        let (x, dx, _) = xb(i, b);
                        let p = dot_us(aq, _mm256_sign_epi8(load(x as *const u8), q), ones);
                        *acc = _mm256_fmadd_ps(p, _mm256_set1_ps(d * dx), *acc);
                    }
                }
                QuantFormat::Q4_0 | QuantFormat::Q4_1 | QuantFormat::Q5_0 | QuantFormat::Q5_1 => {
                    let (d, q, c) = match format {
                        QuantFormat::Q4_0 => {
                            let d = f16_soft(blk);
                            (d, nibbles_16(blk.wrapping_add(2)), -8.0 * d)
                        }
                        QuantFormat::Q4_1 => {
                            let (d, m) = f16_pair(blk);
                            (d, nibbles_16(blk.wrapping_add(4)), m)
                        }
                        QuantFormat::Q5_0 => {
                            let d = f16_soft(blk);
                            let qh = u32::from_le_bytes(*(blk.wrapping_add(2) as *const [u8; 4]));
                            let q =
                                _mm256_or_si256(nibbles_16(blk.wrapping_add(6)), fifth_bits(qh));
                            (d, q, -16.0 * d)
                        }
                        _ => {
                            let (d, m) = f16_pair(blk);
                            let qh = u32::from_le_bytes(*(blk.wrapping_add(4) as *const [u8; 4]));
                            let q =
                                _mm256_or_si256(nibbles_16(blk.wrapping_add(8)), fifth_bits(qh));
                            (d, q, m)
                        }
                    };
                    for i in 0..m {
                        let (x, dx, sx) = xb(i, b);
                        let p = dot_us(q, load(x as *const u8), ones);
                        acc[i] = _mm256_fmadd_ps(p, _mm256_set1_ps(d * dx), acc[i]);
                        corr[i] += c * sx;
                    }
                }
                QuantFormat::Q4K | QuantFormat::Q5K => {
                    // One activation scale per super-block (Q8_K): the 8 groups' integer dot
                    // products, each times its 6-bit scale, are summed in i32 lanes and converted
                    // once; the minimum term is Σ_g m_g · (Σq_x over group g), from `bsums`.
                    let (d, dmin) = (f16_at(blk), f16_at(blk.wrapping_add(2)));
                    let five = format == QuantFormat::Q5K;
                    let qh = if five {
                        load(blk.wrapping_add(16))
                    } else {
                        _mm256_setzero_si256()
                    };
                    let qs_w = blk.wrapping_add(if five { 48 } else { 16 });
                    let (sc16, mins) = k4_scales_mins(blk.wrapping_add(4));
                    let sc_both = _mm256_broadcastsi128_si256(sc16);
                    let mut sumi = [_mm256_setzero_si256(); M];
                    for c in 0..4 {
                        let qb = load(qs_w.wrapping_add(32 * c));
                        let mut q0 = _mm256_and_si256(qb, m4);
                        let mut q1 = _mm256_and_si256(_mm256_srli_epi16(qb, 4), m4);
                        if five {
                            let sixteen = _mm256_set1_epi8(0x10);
                            let b0 = _mm256_set1_epi8(1 << (2 * c));
                            let b1 = _mm256_set1_epi8(1 << (2 * c + 1));
                            let h0 = _mm256_cmpeq_epi8(_mm256_and_si256(qh, b0), b0);
                            let h1 = _mm256_cmpeq_epi8(_mm256_and_si256(qh, b1), b1);
                            q0 = _mm256_or_si256(q0, _mm256_and_si256(h0, sixteen));
                            q1 = _mm256_or_si256(q1, _mm256_and_si256(h1, sixteen));
                        }
                        // i16 lanes 2c and 2c+1 of the scales, broadcast
                        let pick = |g: usize| {
                            let lo = (2 * g) as i16;
                            _mm256_set1_epi16(lo | ((lo + 1) << 8))
                        };
                        let s0 = _mm256_shuffle_epi8(sc_both, pick(2 * c));
                        let s1 = _mm256_shuffle_epi8(sc_both, pick(2 * c + 1));
                        for (i, sumi) in sumi.iter_mut().enumerate().take(m) {
                            let x = qs.wrapping_add(i * cols + 256 * b + 64 * c) as *const u8;
                            let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(q0, load(x)), s0);
                            let p1 = _mm256_madd_epi16(
                                _mm256_maddubs_epi16(q1, load(x.wrapping_add(32))),
                                s1,
                            );
                            *sumi = _mm256_add_epi32(*sumi, _mm256_add_epi32(p0, p1));
                        }
                    }
                    for i in 0..m {
                        let dx = tile.d[i * n_blocks + b];
                        let bs = loadu::<__m256i, _>(bsums.wrapping_add(i * n16 + 16 * b));
                        let summ = _mm256_cvtepi32_ps(_mm256_madd_epi16(bs, mins));
                        acc[i] = _mm256_fmadd_ps(
                            _mm256_cvtepi32_ps(sumi[i]),
                            _mm256_set1_ps(d * dx),
                            acc[i],
                        );
                        accm[i] = _mm256_fmadd_ps(summ, _mm256_set1_ps(dmin * dx), accm[i]);
                    }
                }
                QuantFormat::Q6K => {
                    // Unsigned 6-bit q times x, scaled per 16 in i32 lanes; the offset 32 is
                    // removed with the activation group sums: Σ sc·(q − 32)·x = Σ sc·q·x − 32·Σ sc·Σx.
                    let d = f16_at(blk.wrapping_add(208));
                    let sc8 = loadu::<__m128i, _>(blk.wrapping_add(192));
                    let sc16 = _mm256_cvtepi8_epi16(sc8);
                    let m3 = _mm256_set1_epi8(3);
                    let mut sumi = [_mm256_setzero_si256(); M];
                    for h in 0..2 {
                        let ql0 = load(blk.wrapping_add(64 * h));
                        let ql1 = load(blk.wrapping_add(64 * h + 32));
                        let qh = load(blk.wrapping_add(128 + 32 * h));
                        let hi =
                            |shifted: __m256i| _mm256_slli_epi16(_mm256_and_si256(shifted, m3), 4);
                        let groups = [
                            _mm256_or_si256(_mm256_and_si256(ql0, m4), hi(qh)),
                            _mm256_or_si256(
                                _mm256_and_si256(ql1, m4),
                                hi(_mm256_srli_epi16(qh, 2)),
                            ),
                            _mm256_or_si256(
                                _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                hi(_mm256_srli_epi16(qh, 4)),
                            ),
                            _mm256_or_si256(
                                _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                hi(_mm256_srli_epi16(qh, 6)),
                            ),
                        ];
                        for (p, g) in groups.into_iter().enumerate() {
                            let k = 4 * h + p;
                            // scale 2k for the first 16 values, 2k+1 for the next 16
                            let pick = _mm_set_epi64x(
                                (0x0101_0101_0101_0101u64 * (2 * k as u64 + 1)) as i64,
                                (0x0101_0101_0101_0101u64 * (2 * k as u64)) as i64,
                            );
                            let scv = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, pick));
                            for (i, sumi) in sumi.iter_mut().enumerate().take(m) {
                                let x = qs.wrapping_add(i * cols + 256 * b + 32 * k) as *const u8;
                                let prod = _mm256_madd_epi16(_mm256_maddubs_epi16(g, load(x)), scv);
                                *sumi = _mm256_add_epi32(*sumi, prod);
                            }
                        }
                    }
                    for i in 0..m {
                        let dx = tile.d[i * n_blocks + b];
                        let bs = loadu::<__m256i, _>(bsums.wrapping_add(i * n16 + 16 * b));
                        let offset = _mm256_slli_epi32(_mm256_madd_epi16(bs, sc16), 5);
                        let total = _mm256_sub_epi32(sumi[i], offset);
                        acc[i] = _mm256_fmadd_ps(
                            _mm256_cvtepi32_ps(total),
                            _mm256_set1_ps(d * dx),
                            acc[i],
                        );
                    }
                }
                QuantFormat::F32
                | QuantFormat::F16
                | QuantFormat::Bf16
                | QuantFormat::Iq4Xs
                | QuantFormat::Q3K
                | QuantFormat::Q2K
                | QuantFormat::Iq2Planes
                | QuantFormat::Iq3XxsNib
                | QuantFormat::Iq3SNib
                | QuantFormat::Iq1Shift => {
                    unreachable!(
                        "dense formats use row_dot_dense, IQ4_XS / Q3_K / Q2_K the portable kernel"
                    )
                }
            }
        }
        for i in 0..m {
            out[i] = hsum(acc[i]) - hsum(accm[i]) + corr[i];
        }
    }
}

/// Load 8 weights of a dense format starting at element `j` as f32.
macro_rules! load8 {
    ($format:expr, $w:expr, $j:expr) => {
        match $format {
            QuantFormat::F32 => loadu::<__m256, u8>($w.wrapping_add(4 * $j)),
            QuantFormat::F16 => _mm256_cvtph_ps(loadu::<__m128i, _>($w.wrapping_add(2 * $j))),
            _ => _mm256_castsi256_ps(_mm256_slli_epi32(
                _mm256_cvtepu16_epi32(loadu::<__m128i, _>($w.wrapping_add(2 * $j))),
                16,
            )),
        }
    };
}

/// One row of a dense format against a tile of f32 activations, with two accumulators per row to
/// hide the FMA latency in the m = 1 case.
///
/// # Safety
/// The CPU supports AVX2, FMA and F16C; `w` holds `tile.cols` weights of `format`, `tile.cols` is a
/// multiple of 16.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) unsafe fn row_dot_dense(
    format: QuantFormat,
    w: &[u8],
    tile: &FloatTile<'_>,
    out: &mut [f32],
) {
    debug_assert!((1..=TILE_M).contains(&tile.m));
    const F32: usize = format_index(QuantFormat::F32);
    const F16: usize = format_index(QuantFormat::F16);
    const BF16: usize = format_index(QuantFormat::Bf16);
    // At most DENSE_M activation rows per pass over the weight row: their 2 · DENSE_M
    // accumulators, two weight registers and the activation load fit the 16 ymm registers (a
    // tile of 16 rows at once spilled its 32 accumulators to the stack on every FMA).
    const DENSE_M: usize = 4;
    let cols = tile.cols;
    for i0 in (0..tile.m).step_by(DENSE_M) {
        let m = DENSE_M.min(tile.m - i0);
        let sub = FloatTile {
            x: &tile.x[i0 * cols..(i0 + m) * cols],
            cols,
            m,
        };
        let out = &mut out[i0..i0 + m];
        let f = match format {
            QuantFormat::F32 => dense4::<F32>,
            QuantFormat::F16 => dense4::<F16>,
            _ => dense4::<BF16>,
        };
        unsafe { f(m, w, &sub, out) };
    }
}

/// [`dense_m`] for a tile of 1 ..= `DENSE_M` rows (the only sizes `row_dot_dense` passes).
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dense4<const F: usize>(m: usize, w: &[u8], tile: &FloatTile<'_>, out: &mut [f32]) {
    // SAFETY: as `row_dot_dense`.
    unsafe {
        match m {
            1 => dense_m::<1, F>(w, tile, out),
            2 => dense_m::<2, F>(w, tile, out),
            3 => dense_m::<3, F>(w, tile, out),
            _ => dense_m::<4, F>(w, tile, out),
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn dense_m<const M: usize, const F: usize>(w: &[u8], tile: &FloatTile<'_>, out: &mut [f32]) {
    let format = FORMATS[F];
    let (m, cols) = (M, tile.cols);
    debug_assert!(tile.m == M && cols % 16 == 0);
    debug_assert_eq!(w.len(), format.bytes_for(1, cols));
    let mut acc0 = [_mm256_setzero_ps(); M];
    let mut acc1 = [_mm256_setzero_ps(); M];
    let (wp, xp) = (w.as_ptr(), tile.x.as_ptr());
    // SAFETY: offsets stay below `cols` elements of `w` and of each of the `m` rows of the tile.
    unsafe {
        for j in (0..cols).step_by(16) {
            let w0 = load8!(format, wp, j);
            let w1 = load8!(format, wp, j + 8);
            for i in 0..m {
                let x = xp.wrapping_add(i * cols + j);
                acc0[i] = _mm256_fmadd_ps(w0, loadu::<__m256, f32>(x), acc0[i]);
                acc1[i] = _mm256_fmadd_ps(w1, loadu::<__m256, f32>(x.wrapping_add(8)), acc1[i]);
            }
        }
        for i in 0..m {
            out[i] = hsum(_mm256_add_ps(acc0[i], acc1[i]));
        }
    }
}
