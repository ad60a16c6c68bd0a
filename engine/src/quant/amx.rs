//! Intel AMX (`AMX-TILE` + `AMX-INT8`) kernels for Q4_K and Q6_K at batch sizes above one, where
//! the AVX-512 VNNI kernels become compute-bound: prefill (issue #8), 2.4× the VNNI kernels at
//! pp128 on Qwen2.5-Coder-1.5B.
//!
//! They sum in another float order than the VNNI kernels, so a row's result depends on whether it
//! went through the tiles; a speculative verify must reproduce single-token steps bit for bit, so
//! the engine uses the tiles only in forwards that return the last row alone (prefills) and runs
//! the rest (a speculative verify's every-row forward) inside [`super::without_tiles`].
//!
//! # Why tiles pay, and what they cost
//! One `tdpbusd` multiplies a 16 × K tile of u8 weights by a K × 16 tile of i8 activations into a
//! 16 × 16 tile of i32 sums: up to 16 384 multiply-adds in one instruction, against 64 for a
//! 512-bit `vpdpbusd`. What the tile unit cannot do is apply the K-quants' per-sub-block scales
//! inside a sum, so every sub-block (32 weights for Q4_K, 16 for Q6_K) gets its own `tdpbusd` into
//! its own accumulator tile, which is stored and scaled in f32 by the vector units:
//! `Σ_j d·sc_j · C_j` for 16 weight rows × 16 activation rows at a time — two vector operations per
//! (weight row, sub-block) whatever the number of activation rows up to 16. The weights are
//! unpacked once per 16-row block and super-block (nibbles → bytes, Q6_K's six bits → i8 − 32) into
//! an L1 buffer that every activation tile reuses. Per 16 weight rows × 256 columns this is about
//! 300 vector operations for Q4_K, against ~16 per weight row *and activation row* on the VNNI
//! kernels: at m = 9 the tiles do a third of the work, at m = 16 a fifth, and the product becomes
//! bound by the weight stream again.
//!
//! # Arithmetic (exactly the integers of the other kernels)
//! - Q4_K: `C_j[r][t] = Σ_{k∈j} q[r][k] · a[t][k]` (`tdpbusd`, q ∈ 0..=15 as u8, a as i8, |C| ≤
//!   32 · 15 · 128); the row's value for token t in super-block b is
//!   `d·Σ_j sc_j·C_j − dmin·Σ_j m_j·bsum_j[t]` (the minimum term from the activation group sums by
//!   `vpdpwssd`), times the activation scale `d_a[t]`.
//! - Q6_K: `tdpbssd` on q − 32 ∈ −32..=31 as i8, so the offset needs no correction term;
//!   `d·Σ_j sc_j·C_j` over 16 sub-blocks of 16.
//!
//! Only the float summation order differs from [`super::scalar`]; `tests.rs` compares every
//! kernel family at m = 1..=17 and beyond one activation tile, and at the integer range limits.
//!
//! # Tile use
//! `tmm0`–`tmm3` are accumulators of four sub-blocks; weights alternate between `tmm4` / `tmm6`
//! and activations between `tmm5` / `tmm7`, so the loads of one sub-block overlap the product of
//! the previous one. Each call loads its configuration (`ldtilecfg`) and releases the tile state
//! at the end (`tilerelease`), so threads that never call it carry no tile state. The instructions
//! are written as inline assembly (Rust's AMX intrinsics are not stable); no tile register is ever
//! visible to the compiler.

use std::arch::asm;
use std::arch::x86_64::*;
use std::ops::Range;

use super::avx2::{f16_at, f16_pair, k4_scale_min_bytes, loadu};
use super::avx512::q6k_half;
use super::format::QuantFormat;
use super::matrix::QuantMatrix;
use super::quantize::ActBlocks;

/// Rows of a weight tile and columns (activation rows) of an activation tile.
pub(crate) const TILE: usize = 16;
/// Activation tiles whose accumulators one pass over a weight block keeps (128 activation rows);
/// larger batches make several passes.
const GROUP: usize = 8;

/// Whether the AMX kernels take a batch of `m` activation rows against weights of `format`: Q4_K
/// from 9 rows, Q6_K from 16 — below that the VNNI kernels are as fast, since the tiles cost the
/// same from 1 to 16 rows. Crossovers measured with `cargo bench -p specsweep-engine --bench quant
/// -- verify/` (8960 × 1536, 2 threads: Q4_K m = 8 / 9 / 16: 751 / 720 / 777 µs on tiles against
/// 761 / 874 / 1343 µs on VNNI; Q6_K m = 12 / 16: 1259 / 1320 µs against 1046 / 1422 µs) and inside
/// the model (`specsweep bench -v`, Qwen2.5-Coder-1.5B: T(8) 114.7 ms on tiles against 108.2 on
/// VNNI, T(9) 117.3 against 117.4, T(13) 137.2 against 176.9).
pub(crate) fn takes(format: QuantFormat, m: usize) -> bool {
    match format {
        QuantFormat::Q4K => m >= 9,
        QuantFormat::Q6K => m >= 16,
        _ => false,
    }
}

/// Whether this CPU and OS let the process use AMX-INT8: CPUID leaf 7 reports AMX-TILE and
/// AMX-INT8, the OS enables the tile state in XCR0, and Linux grants the tile-data permission
/// (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`, once per process; without it the first
/// tile instruction would kill the process).
pub(crate) fn usable() -> bool {
    let leaf7 = __cpuid_count(7, 0);
    let (tile, int8) = (leaf7.edx & (1 << 24) != 0, leaf7.edx & (1 << 25) != 0);
    let osxsave = __cpuid(1).ecx & (1 << 27) != 0;
    if !(tile && int8 && osxsave) {
        return false;
    }
    // SAFETY: OSXSAVE is set, so XGETBV is available and XCR0 readable.
    let xcr0 = unsafe { xcr0() };
    // XTILECFG (bit 17) and XTILEDATA (bit 18)
    if xcr0 & (0b11 << 17) != 0b11 << 17 {
        return false;
    }
    request_tile_permission()
}

/// XCR0 through `xgetbv` (ECX = 0).
///
/// # Safety
/// CPUID.1:ECX.OSXSAVE is set.
unsafe fn xcr0() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the caller checked OSXSAVE; xgetbv only reads a register.
    unsafe {
        asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi, options(nomem, nostack));
    }
    (u64::from(hi) << 32) | u64::from(lo)
}

#[cfg(target_os = "linux")]
fn request_tile_permission() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: a plain system call with integer arguments; it only changes this process's
    // permitted extended-state features.
    unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        ) == 0
    }
}

#[cfg(not(target_os = "linux"))]
fn request_tile_permission() -> bool {
    false
}

/// The activations of one call in the tile layout, shared read-only by every row task: activation
/// rows in tiles of 16 (zero-padded), each tile as `cols / 4` lines of 64 bytes (4 consecutive
/// values of each of the 16 rows: the "VNNI" layout `tdpbusd` takes for its second operand), with
/// each super-block's scales and group-sum pairs as 16-lane vectors.
#[derive(Debug, Default, Clone)]
pub(crate) struct TileActs {
    /// `tiles × cols / 4 × 64` bytes.
    b: Vec<i8>,
    /// `tiles × (cols / 256) × 16` activation scales (0 for padding rows).
    d: Vec<f32>,
    /// `tiles × (cols / 256) × 4 × 16` lanes: `bsum32[2p] | bsum32[2p + 1] << 16` per row, the
    /// sums of the 32-value groups that Q4_K's minimum term needs.
    bs: Vec<i32>,
    m: usize,
    cols: usize,
    tiles: usize,
}

impl TileActs {
    /// Lay out `m` rows of 256-blocks (`act`, as quantized for the K-quants).
    pub(crate) fn pack(&mut self, act: &ActBlocks, m: usize, cols: usize) {
        debug_assert_eq!(act.block, 256);
        let (nb, n16) = (cols / 256, cols / 16);
        let tiles = m.div_ceil(TILE);
        self.m = m;
        self.cols = cols;
        self.tiles = tiles;
        self.b.clear();
        self.b.resize(tiles * cols * TILE, 0);
        self.d.clear();
        self.d.resize(tiles * nb * TILE, 0.0);
        self.bs.clear();
        self.bs.resize(tiles * nb * 4 * TILE, 0);
        for i in 0..m {
            let (tile, t) = (i / TILE, i % TILE);
            let row = &act.qs[i * cols..(i + 1) * cols];
            let dst = &mut self.b[tile * cols * TILE..(tile + 1) * cols * TILE];
            for (k4, four) in row.chunks_exact(4).enumerate() {
                dst[k4 * 64 + 4 * t..k4 * 64 + 4 * t + 4].copy_from_slice(four);
            }
            for b in 0..nb {
                self.d[(tile * nb + b) * TILE + t] = act.d[i * nb + b];
                let g = &act.bsums[i * n16 + 16 * b..i * n16 + 16 * b + 16];
                for p in 0..4 {
                    let lo = i32::from(g[4 * p]) + i32::from(g[4 * p + 1]);
                    let hi = i32::from(g[4 * p + 2]) + i32::from(g[4 * p + 3]);
                    // |Σ of 32 values| ≤ 4096: both fit an i16
                    self.bs[((tile * nb + b) * 4 + p) * TILE + t] =
                        (lo as i16 as u16 as i32) | (hi << 16);
                }
            }
        }
    }
}

/// The 64-byte tile configuration (palette 1).
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

impl TileConfig {
    /// Accumulators `tmm0`–`tmm3` (16 weight rows × `n` i32), weights `tmm4` / `tmm6` (16 × `k`
    /// bytes), activations `tmm5` / `tmm7` (`k / 4` lines of `4·n` bytes).
    fn for_sub_block(k: usize, n: usize) -> Self {
        let mut c = TileConfig {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            colsb: [0; 16],
            rows: [0; 16],
        };
        for t in 0..4 {
            c.rows[t] = TILE as u8;
            c.colsb[t] = (4 * n) as u16;
        }
        for t in [4, 6] {
            c.rows[t] = TILE as u8;
            c.colsb[t] = k as u16;
        }
        for t in [5, 7] {
            c.rows[t] = (k / 4) as u8;
            c.colsb[t] = (4 * n) as u16;
        }
        c
    }
}

macro_rules! tile_zero {
    ($t:literal) => {
        asm!(concat!("tilezero tmm", $t), options(nomem, nostack))
    };
}

macro_rules! tile_load {
    ($t:literal, $ptr:expr, $stride:expr) => {
        asm!(concat!("tileloadd tmm", $t, ", [{p} + {s}*1]"),
            p = in(reg) $ptr, s = in(reg) $stride, options(nostack, readonly))
    };
}

macro_rules! tile_store {
    ($t:literal, $ptr:expr, $stride:expr) => {
        asm!(concat!("tilestored [{p} + {s}*1], tmm", $t),
            p = in(reg) $ptr, s = in(reg) $stride, options(nostack))
    };
}

/// Four sub-blocks' products into `tmm0`–`tmm3` and out to `c` (4 × 16 × 16 i32): sub-block `jj`
/// takes weights at `a + jj·k` (row stride 256) and activations at `b + jj·k·16` (stride 64).
/// `signed` picks `tdpbssd` (i8 weights) over `tdpbusd` (u8 weights).
///
/// # Safety
/// The tile configuration of `TileConfig::for_sub_block(k)` is loaded; `a` has 16 lines of 256
/// bytes, `b` `4·k/4` lines of 64 and `c` 4096 writable bytes.
#[inline(always)]
unsafe fn four_sub_blocks(signed: bool, a: *const u8, b: *const i8, k: usize, c: *mut i32) {
    let (sa, sb, sc) = (256usize, 64usize, 64usize);
    // SAFETY: per the contract above; the tile instructions read/write exactly those bytes.
    unsafe {
        tile_zero!(0);
        tile_zero!(1);
        tile_zero!(2);
        tile_zero!(3);
        tile_load!(4, a, sa);
        tile_load!(5, b, sb);
        tile_load!(6, a.add(k), sa);
        tile_load!(7, b.add(k * 16), sb);
        if signed {
            asm!("tdpbssd tmm0, tmm4, tmm5", options(nomem, nostack));
        } else {
            asm!("tdpbusd tmm0, tmm4, tmm5", options(nomem, nostack));
        }
        tile_load!(4, a.add(2 * k), sa);
        tile_load!(5, b.add(2 * k * 16), sb);
        if signed {
            asm!("tdpbssd tmm1, tmm6, tmm7", options(nomem, nostack));
        } else {
            asm!("tdpbusd tmm1, tmm6, tmm7", options(nomem, nostack));
        }
        tile_load!(6, a.add(3 * k), sa);
        tile_load!(7, b.add(3 * k * 16), sb);
        if signed {
            asm!("tdpbssd tmm2, tmm4, tmm5", options(nomem, nostack));
            asm!("tdpbssd tmm3, tmm6, tmm7", options(nomem, nostack));
        } else {
            asm!("tdpbusd tmm2, tmm4, tmm5", options(nomem, nostack));
            asm!("tdpbusd tmm3, tmm6, tmm7", options(nomem, nostack));
        }
        tile_store!(0, c, sc);
        tile_store!(1, c.add(256), sc);
        tile_store!(2, c.add(512), sc);
        tile_store!(3, c.add(768), sc);
    }
}

/// The per-format half of the kernel: how a super-block of 16 weight rows is unpacked for the
/// tiles, and how the sub-block sums of one activation tile are scaled into the accumulators.
trait Format {
    /// Bytes per 256-weight block.
    const BLOCK_BYTES: usize;
    /// Weights per sub-block (the K of one tile product).
    const K: usize;
    /// Whether weights are signed (`tdpbssd`) rather than unsigned (`tdpbusd`).
    const SIGNED: bool;

    /// Unpack the block at `p` of weight row `r` into `slot`.
    ///
    /// # Safety
    /// AVX-512 F/BW/VL/VNNI; `p` points to one block; `slot` is valid for writes.
    unsafe fn unpack(p: *const u8, r: usize, slot: *mut Slot);

    /// Unpack one unit of the interleaved layout (`super::interleave`: this super-block of all
    /// 16 rows) into `slot`, with the same bytes and scales [`Format::unpack`] writes.
    ///
    /// # Safety
    /// AVX-512 F/BW/VL/VNNI; `u` points to one unit of this format; `slot` is valid for writes.
    unsafe fn unpack_x16(u: *const u8, slot: *mut Slot);

    /// `acc[r] += (Σ_j scale · C_j[r] − minimum term) · d_a` for the 16 weight rows.
    ///
    /// # Safety
    /// AVX-512 F/BW/VL/VNNI; `c` holds `256 / K` tiles of sums.
    unsafe fn scale(
        c: &[i32; SUMS],
        slot: &Slot,
        acts: &TileActs,
        at: usize,
        acc: &mut [__m512; TILE],
    );
}

/// Up to 16 sub-blocks' 16 × 16 sums.
const SUMS: usize = 16 * TILE * TILE;

/// One super-block of 16 weight rows, unpacked: the weight bytes the tiles read and the scales the
/// vector units apply.
#[repr(C, align(64))]
struct Slot {
    /// 16 rows × 256 weights (Q4_K: u8 0..=15; Q6_K: i8 −32..=31).
    a: [u8; TILE * 256],
    /// `d · sc_j` per row and sub-block (8 for Q4_K, 16 for Q6_K).
    sf: [[f32; 16]; TILE],
    /// Q4_K: the 8 sub-block mins as i16 pairs (4 i32) per row.
    mp: [[i32; 4]; TILE],
    /// Q4_K: `dmin` per row.
    dmin: [f32; TILE],
}

/// Sums of one activation tile's sub-block products, 64-byte aligned for the tile stores.
#[repr(C, align(64))]
struct Sums([i32; SUMS]);

struct Q4K;

impl Format for Q4K {
    const BLOCK_BYTES: usize = 144;
    const K: usize = 32;
    const SIGNED: bool = false;

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn unpack(p: *const u8, r: usize, slot: *mut Slot) {
        // SAFETY: AVX-512 (caller); 144 bytes at p; the slot row has 256 bytes.
        unsafe {
            let (d, dmin) = f16_pair(p);
            (*slot).dmin[r] = dmin;
            let (sc, mn) = k4_scales_mins_i16(p.add(4));
            let sf = _mm256_mul_ps(
                _mm256_cvtepi32_ps(_mm256_cvtepi16_epi32(sc)),
                _mm256_set1_ps(d),
            );
            _mm256_storeu_ps((*slot).sf[r].as_mut_ptr(), sf);
            // i16 lanes m0..m7 are the i32 pairs m0 | m1 << 16, ...
            _mm_storeu_si128((*slot).mp[r].as_mut_ptr() as *mut __m128i, mn);
            let m4 = _mm512_set1_epi8(0x0F);
            let shifts = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
            let dst = (*slot).a.as_mut_ptr().add(r * 256);
            for c in 0..4 {
                let qb = _mm512_broadcast_i64x4(_mm256_loadu_si256(
                    p.add(16 + 32 * c) as *const __m256i
                ));
                let q = _mm512_and_si512(_mm512_srlv_epi16(qb, shifts), m4);
                _mm512_store_si512(dst.add(64 * c) as *mut _, q);
            }
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn unpack_x16(u: *const u8, slot: *mut Slot) {
        use super::interleave::q4k;
        // SAFETY: AVX-512 (caller); one Q4_K unit at u; the slot's fields hold 16 rows.
        unsafe {
            let d = _mm512_cvtph_ps(loadu::<__m256i, u8>(u.add(q4k::D)));
            _mm512_storeu_ps(
                (*slot).dmin.as_mut_ptr(),
                _mm512_cvtph_ps(loadu::<__m256i, u8>(u.add(q4k::DMIN))),
            );
            for j in 0..8 {
                let sc = _mm512_cvtepu8_epi32(loadu::<__m128i, u8>(u.add(q4k::SC + 16 * j)));
                scatter_rows(_mm512_mul_ps(_mm512_cvtepi32_ps(sc), d), j, &mut (*slot).sf);
            }
            for n in 0..TILE {
                for p in 0..4 {
                    let at = q4k::MINS + 32 * p + 2 * n;
                    (*slot).mp[n][p] = i32::from(*u.add(at)) | (i32::from(*u.add(at + 1)) << 16);
                }
            }
            let m4 = _mm512_set1_epi8(0x0F);
            for pair in 0..4 {
                // chunks 8·pair .. 8·pair + 8: sub-blocks 2·pair and 2·pair + 1
                let mut v = [_mm512_setzero_si512(); 16];
                for h in 0..2 {
                    for i in 0..4 {
                        let c = loadu::<__m512i, u8>(u.add(q4k::QS + 64 * (8 * pair + 4 * h + i)));
                        v[8 * h + i] = _mm512_and_si512(c, m4);
                        v[8 * h + 4 + i] = _mm512_and_si512(_mm512_srli_epi16(c, 4), m4);
                    }
                }
                store_rows(transpose16(v), (*slot).a.as_mut_ptr().add(64 * pair));
            }
        }
    }

    // index loops on purpose: see `scaled_sum`
    #[allow(clippy::needless_range_loop)]
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn scale(
        c: &[i32; SUMS],
        slot: &Slot,
        acts: &TileActs,
        at: usize,
        acc: &mut [__m512; TILE],
    ) {
        // SAFETY: AVX-512 (caller); `at` indexes a laid-out super-block of an activation tile.
        unsafe {
            let da = _mm512_loadu_ps(acts.d.as_ptr().add(at));
            let bsp = acts.bs.as_ptr().add(at * 4);
            let bp0 = _mm512_loadu_si512(bsp as *const _);
            let bp1 = _mm512_loadu_si512(bsp.add(TILE) as *const _);
            let bp2 = _mm512_loadu_si512(bsp.add(2 * TILE) as *const _);
            let bp3 = _mm512_loadu_si512(bsp.add(3 * TILE) as *const _);
            let c = c.as_ptr();
            let sfp = slot.sf.as_ptr() as *const f32;
            let mpp = slot.mp.as_ptr() as *const i32;
            for r in 0..TILE {
                let s = scaled_sum::<8>(c, sfp.add(16 * r), r);
                let mp = mpp.add(4 * r);
                let mut mi = _mm512_madd_epi16(bp0, _mm512_set1_epi32(*mp));
                mi = _mm512_dpwssd_epi32(mi, bp1, _mm512_set1_epi32(*mp.add(1)));
                mi = _mm512_dpwssd_epi32(mi, bp2, _mm512_set1_epi32(*mp.add(2)));
                mi = _mm512_dpwssd_epi32(mi, bp3, _mm512_set1_epi32(*mp.add(3)));
                let s = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(mi), _mm512_set1_ps(slot.dmin[r]), s);
                acc[r] = _mm512_fmadd_ps(s, da, acc[r]);
            }
        }
    }
}

struct Q6K;

impl Format for Q6K {
    const BLOCK_BYTES: usize = 210;
    const K: usize = 16;
    const SIGNED: bool = true;

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn unpack(p: *const u8, r: usize, slot: *mut Slot) {
        // SAFETY: AVX-512 (caller); 210 bytes at p; the slot row has 256 bytes.
        unsafe {
            let d = f16_at(p.add(208));
            let sc = _mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(192) as *const __m128i));
            let sf = _mm512_mul_ps(_mm512_cvtepi32_ps(sc), _mm512_set1_ps(d));
            _mm512_storeu_ps((*slot).sf[r].as_mut_ptr(), sf);
            let off = _mm512_set1_epi8(32);
            let dst = (*slot).a.as_mut_ptr().add(r * 256);
            for h in 0..2 {
                let (lo, hi) = q6k_half(p, h);
                _mm512_store_si512(dst.add(128 * h) as *mut _, _mm512_sub_epi8(lo, off));
                _mm512_store_si512(dst.add(128 * h + 64) as *mut _, _mm512_sub_epi8(hi, off));
            }
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn unpack_x16(u: *const u8, slot: *mut Slot) {
        use super::interleave::q6k;
        // SAFETY: AVX-512 (caller); one Q6_K unit at u; the slot's fields hold 16 rows.
        unsafe {
            let d = _mm512_cvtph_ps(loadu::<__m256i, u8>(u.add(q6k::D)));
            for j in 0..16 {
                let sc = _mm512_cvtepi8_epi32(loadu::<__m128i, u8>(u.add(q6k::SC + 16 * j)));
                scatter_rows(_mm512_mul_ps(_mm512_cvtepi32_ps(sc), d), j, &mut (*slot).sf);
            }
            let (m4, m30, off) = (
                _mm512_set1_epi8(0x0F),
                _mm512_set1_epi8(0x30),
                _mm512_set1_epi8(32),
            );
            for pair in 0..4 {
                let mut v = [_mm512_setzero_si512(); 16];
                for h in 0..2 {
                    let jj = 2 * pair + h;
                    for i in 0..4 {
                        let c = 4 * jj + i;
                        let ql = loadu::<__m512i, u8>(u.add(q6k::QL + 64 * c));
                        let qh = loadu::<__m512i, u8>(u.add(q6k::QH + 64 * (c / 2)));
                        let (hl, hh) = if c % 2 == 0 {
                            (_mm512_slli_epi16(qh, 4), _mm512_slli_epi16(qh, 2))
                        } else {
                            (qh, _mm512_srli_epi16(qh, 2))
                        };
                        let lo =
                            _mm512_or_si512(_mm512_and_si512(ql, m4), _mm512_and_si512(hl, m30));
                        let hi = _mm512_or_si512(
                            _mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                            _mm512_and_si512(hh, m30),
                        );
                        v[8 * h + i] = _mm512_sub_epi8(lo, off);
                        v[8 * h + 4 + i] = _mm512_sub_epi8(hi, off);
                    }
                }
                store_rows(transpose16(v), (*slot).a.as_mut_ptr().add(64 * pair));
            }
        }
    }

    // index loops on purpose: see `scaled_sum`
    #[allow(clippy::needless_range_loop)]
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    unsafe fn scale(
        c: &[i32; SUMS],
        slot: &Slot,
        acts: &TileActs,
        at: usize,
        acc: &mut [__m512; TILE],
    ) {
        // SAFETY: as for Q4_K.
        unsafe {
            let da = _mm512_loadu_ps(acts.d.as_ptr().add(at));
            let c = c.as_ptr();
            let sfp = slot.sf.as_ptr() as *const f32;
            for r in 0..TILE {
                let s = scaled_sum::<16>(c, sfp.add(16 * r), r);
                acc[r] = _mm512_fmadd_ps(s, da, acc[r]);
            }
        }
    }
}

/// Lane `n` of `v` into `sf[n][j]` for the 16 rows.
///
/// # Safety
/// AVX-512 F.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn scatter_rows(v: __m512, j: usize, sf: &mut [[f32; 16]; TILE]) {
    let mut lanes = [0.0f32; 16];
    // SAFETY: 16 floats into a 16-float array.
    unsafe { _mm512_storeu_ps(lanes.as_mut_ptr(), v) };
    for (row, x) in sf.iter_mut().zip(lanes) {
        row[j] = x;
    }
}

/// Store row `n` of a transposed block (`t[n]`, 64 bytes) at `dst + 256·n` (slot rows).
///
/// # Safety
/// AVX-512 F; `dst` has 16 lines of 256 bytes, 64-byte aligned.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn store_rows(t: [__m512i; 16], dst: *mut u8) {
    for (n, row) in t.into_iter().enumerate() {
        // SAFETY: per the contract above.
        unsafe { _mm512_store_si512(dst.add(256 * n) as *mut _, row) };
    }
}

/// Transpose a 16 × 16 matrix of 4-byte elements: `out[n]` element `q` is `v[q]` element `n`.
/// The interleaved layout keeps 4 weights of 16 rows per register; the tiles want each row's
/// weights in a line (three shuffle stages, 64 shuffles per 16 × 64 weights).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
fn transpose16(v: [__m512i; 16]) -> [__m512i; 16] {
    // 32-bit interleave of row pairs, then 64-bit of pair pairs: u[4g + k], 128-bit lane L,
    // holds rows 4g..4g + 4 of column 4L + k
    let t: [__m512i; 16] = std::array::from_fn(|i| {
        let (a, b) = (v[i & !1], v[i | 1]);
        if i % 2 == 0 {
            _mm512_unpacklo_epi32(a, b)
        } else {
            _mm512_unpackhi_epi32(a, b)
        }
    });
    let u: [__m512i; 16] = std::array::from_fn(|i| {
        let (g, k) = (i / 4, i % 4);
        let (a, b) = (t[4 * g + k / 2], t[4 * g + 2 + k / 2]);
        if k % 2 == 0 {
            _mm512_unpacklo_epi64(a, b)
        } else {
            _mm512_unpackhi_epi64(a, b)
        }
    });
    // then a 4 × 4 transpose of 128-bit lanes among u[k], u[4 + k], u[8 + k], u[12 + k]
    let mut out = [_mm512_setzero_si512(); 16];
    for k in 0..4 {
        let v0 = _mm512_shuffle_i32x4::<0x88>(u[k], u[4 + k]);
        let v1 = _mm512_shuffle_i32x4::<0xDD>(u[k], u[4 + k]);
        let v2 = _mm512_shuffle_i32x4::<0x88>(u[8 + k], u[12 + k]);
        let v3 = _mm512_shuffle_i32x4::<0xDD>(u[8 + k], u[12 + k]);
        out[k] = _mm512_shuffle_i32x4::<0x88>(v0, v2);
        out[8 + k] = _mm512_shuffle_i32x4::<0xDD>(v0, v2);
        out[4 + k] = _mm512_shuffle_i32x4::<0x88>(v1, v3);
        out[12 + k] = _mm512_shuffle_i32x4::<0xDD>(v1, v3);
    }
    out
}

/// Unpack one block of each of 16 consecutive weight rows (the first at `p`, rows `row_bytes`
/// apart) into `slot`, prefetching the same blocks `ahead` bytes further (the next 16 rows; 0:
/// none). The 16 rows are read one block each per step, 16 strided streams that the hardware
/// prefetchers do not follow (measured: without it the tiles lost to VNNI inside a model).
///
/// # Safety
/// AVX-512 F/BW/VL/VNNI; 16 rows of blocks at `p` (and at `p + ahead` when `ahead > 0`);
/// `slot` valid for writes.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn unpack16<F: Format>(p: *const u8, row_bytes: usize, ahead: usize, slot: *mut Slot) {
    for r in 0..TILE {
        // SAFETY: per the contract above.
        unsafe {
            let q = p.add(r * row_bytes);
            if ahead > 0 {
                let mut line = 0;
                while line < F::BLOCK_BYTES {
                    _mm_prefetch::<_MM_HINT_T0>(q.add(ahead + line) as *const i8);
                    line += 64;
                }
            }
            F::unpack(q, r, slot);
        }
    }
}

/// `Σ_j sf[j] · C_j[r]` over `N` sub-blocks' sums `c` (tiles of 16 × 16 i32), for weight row `r`
/// across the 16 activation lanes; two accumulators halve the FMA chain. Plain index loops:
/// iterator adapters were not inlined into these target-feature functions (measured: a call per
/// sub-block).
///
/// # Safety
/// AVX-512 F; `c` holds `N` tiles, `sf` `N` floats.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn scaled_sum<const N: usize>(c: *const i32, sf: *const f32, r: usize) -> __m512 {
    // SAFETY: per the contract above; tile j's row r is 16 aligned i32 at j·256 + 16·r.
    unsafe {
        let load =
            |j: usize| _mm512_cvtepi32_ps(_mm512_load_si512(c.add(j * 256 + r * 16) as *const _));
        let mut s0 = _mm512_mul_ps(load(0), _mm512_set1_ps(*sf));
        let mut s1 = _mm512_mul_ps(load(1), _mm512_set1_ps(*sf.add(1)));
        let mut j = 2;
        while j < N {
            s0 = _mm512_fmadd_ps(load(j), _mm512_set1_ps(*sf.add(j)), s0);
            s1 = _mm512_fmadd_ps(load(j + 1), _mm512_set1_ps(*sf.add(j + 1)), s1);
            j += 2;
        }
        _mm512_add_ps(s0, s1)
    }
}

/// The tile products of one super-block against one activation tile: `256 / K` sub-blocks, four
/// at a time, into `c`.
///
/// # Safety
/// The configuration for `F::K` is loaded; `a` is an unpacked slot, `bt` the activation tile's
/// lines of this super-block.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn products<F: Format>(a: *const u8, bt: *const i8, c: *mut i32) {
    for g in 0..256 / F::K / 4 {
        // SAFETY: forwarded; four sub-blocks of K weights (K / 4 activation lines each) per group.
        unsafe {
            four_sub_blocks(
                F::SIGNED,
                a.add(4 * F::K * g),
                bt.add(4 * F::K * 16 * g),
                F::K,
                c.add(1024 * g),
            )
        };
    }
}

/// `out[t·n_rows + r] = Σ_j act[t][j] · W[r][j]` for `r ∈ rows` (a multiple of 16 rows) and every
/// laid-out activation row `t < acts.m`.
///
/// # Safety
/// [`usable`] returned true (and the CPU has AVX-512 F/BW/VL/VNNI, AVX2, FMA, F16C); `w` is Q4_K
/// or Q6_K with `acts.cols` columns; `out` points to `acts.m × n_rows` floats of which no
/// other thread writes the elements of `rows`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(crate) unsafe fn rows(
    w: &QuantMatrix,
    rows: Range<usize>,
    acts: &TileActs,
    out: *mut f32,
    n_rows: usize,
) {
    debug_assert!(takes(w.format(), acts.m) && w.cols() == acts.cols);
    debug_assert!((rows.end - rows.start).is_multiple_of(TILE) && rows.end <= w.rows());
    // SAFETY: forwarded from the caller.
    unsafe {
        match w.format() {
            QuantFormat::Q4K => rows_of::<Q4K>(w, rows, acts, out, n_rows),
            _ => rows_of::<Q6K>(w, rows, acts, out, n_rows),
        }
    }
}

/// [`rows`] for one format, software-pipelined over (super-block, activation tile) jobs: job n's
/// tile products are issued, then job n − 1's sums are scaled, then (at the first tile of a
/// super-block) the next super-block is unpacked — three independent streams that the core
/// overlaps instead of waiting on each tile's latency in turn. Two slots and two sum buffers
/// alternate.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn rows_of<F: Format>(
    w: &QuantMatrix,
    rows: Range<usize>,
    acts: &TileActs,
    out: *mut f32,
    n_rows: usize,
) {
    let cols = acts.cols;
    let nb = cols / 256;
    let (base, row_bytes) = (w.bytes().as_ptr(), w.row_bytes());
    let (interleaved, unit_bytes) = (
        w.is_interleaved(),
        super::interleave::unit_bytes(w.format()),
    );
    // super-block b of rows r0..r0 + 16 into `slot`, from either layout
    let unpack = |r0: usize, b: usize, ahead: usize, slot: *mut Slot| {
        // SAFETY: rows r0..r0 + 16 and super-block b exist (the callers' loops below).
        unsafe {
            if interleaved {
                let u = base.add((r0 / TILE * nb + b) * unit_bytes);
                let mut line = 0;
                while line < unit_bytes {
                    _mm_prefetch::<_MM_HINT_T0>(u.wrapping_add(unit_bytes + line) as *const i8);
                    line += 64;
                }
                F::unpack_x16(u, slot);
            } else {
                unpack16::<F>(
                    base.add(r0 * row_bytes + b * F::BLOCK_BYTES),
                    row_bytes,
                    ahead,
                    slot,
                );
            }
        }
    };
    // a lone activation tile of m < 16 rows: products over its m columns only
    let n = if acts.tiles == 1 { acts.m } else { TILE };
    let cfg = TileConfig::for_sub_block(F::K, n);
    let mut slots: Box<[Slot; 2]> = Box::new(
        // SAFETY: all-zero bytes are valid integers and floats.
        unsafe { std::mem::zeroed() },
    );
    let mut sums: Box<[Sums; 2]> = Box::new([Sums([0; SUMS]), Sums([0; SUMS])]);
    let mut acc = [[_mm512_setzero_ps(); TILE]; GROUP];
    // SAFETY: AMX is usable (caller); the configuration is a valid palette-1 layout.
    unsafe { asm!("ldtilecfg [{}]", in(reg) &cfg, options(nostack, readonly)) };
    for g0 in (0..acts.tiles).step_by(GROUP) {
        let ntiles = (acts.tiles - g0).min(GROUP);
        for r0 in rows.clone().step_by(TILE) {
            acc.iter_mut()
                .for_each(|a| *a = [_mm512_setzero_ps(); TILE]);
            // SAFETY (loop body): block pointers stay inside rows r0..r0 + 16 (< w.rows()) of nb
            // blocks; activation offsets inside the laid-out tiles; see also the caller's contract.
            unsafe {
                // The 16 rows are read one block each per step, 16 strided streams that the
                // hardware prefetchers do not follow: fetch the same blocks of the next 16 rows
                // one row block ahead.
                let ahead = if r0 + 2 * TILE <= rows.end {
                    TILE * row_bytes
                } else {
                    0
                };
                let slot_ptr = slots.as_mut_ptr();
                unpack(r0, 0, ahead, slot_ptr);
                let jobs = nb * ntiles;
                for n in 0..=jobs {
                    if n < jobs {
                        let (b, ti) = (n / ntiles, n % ntiles);
                        let bt = acts
                            .b
                            .as_ptr()
                            .add((g0 + ti) * cols * TILE + b * 256 * TILE);
                        products::<F>(
                            (*slot_ptr.add(b % 2)).a.as_ptr(),
                            bt,
                            sums[n % 2].0.as_mut_ptr(),
                        );
                    }
                    if n >= 1 {
                        let (b, ti) = ((n - 1) / ntiles, (n - 1) % ntiles);
                        let at = ((g0 + ti) * nb + b) * TILE;
                        F::scale(
                            &sums[(n - 1) % 2].0,
                            &*slot_ptr.add(b % 2),
                            acts,
                            at,
                            &mut acc[ti],
                        );
                    }
                    if n < jobs && n % ntiles == 0 && n / ntiles + 1 < nb {
                        let b = n / ntiles + 1;
                        unpack(r0, b, ahead, slot_ptr.add(b % 2));
                    }
                }
                for (ti, acc) in acc.iter().take(ntiles).enumerate() {
                    write_tile(acc, g0 + ti, acts.m, r0, out, n_rows);
                }
            }
        }
    }
    // SAFETY: releases this thread's tile state; no tile is live past this point.
    unsafe { asm!("tilerelease", options(nomem, nostack)) };
}

/// Write one 16 × 16 accumulator tile (weight row `r`, activation lane `t`) of activation tile
/// `tile` to the rows that exist.
///
/// # Safety
/// As [`rows`].
#[inline(always)]
unsafe fn write_tile(
    acc: &[__m512; TILE],
    tile: usize,
    m: usize,
    r0: usize,
    out: *mut f32,
    n_rows: usize,
) {
    let mut lanes = [[0.0f32; TILE]; TILE];
    for (l, a) in lanes.iter_mut().zip(acc) {
        // SAFETY: 16 floats into a 16-float array.
        unsafe { _mm512_storeu_ps(l.as_mut_ptr(), *a) };
    }
    for t in 0..TILE.min(m - tile * TILE) {
        let row = (tile * TILE + t) * n_rows + r0;
        for (r, l) in lanes.iter().enumerate() {
            // SAFETY: the activation row exists and r0 + r is one of the caller's rows.
            unsafe { *out.add(row + r) = l[t] };
        }
    }
}

/// The eight 6-bit sub-block scales and mins of a Q4_K block from its 12 packed bytes at `p`,
/// each as 8 × i16.
///
/// # Safety
/// `p` points to 12 readable bytes; the CPU has AVX2.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
unsafe fn k4_scales_mins_i16(p: *const u8) -> (__m128i, __m128i) {
    // SAFETY: 12 bytes at p (caller).
    let (sc, mn) = unsafe { k4_scale_min_bytes(p) };
    (
        _mm_cvtepu8_epi16(_mm_cvtsi64_si128(sc as i64)),
        _mm_cvtepu8_epi16(_mm_cvtsi64_si128(mn as i64)),
    )
}
