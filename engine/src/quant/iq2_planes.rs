//! `QuantFormat::Iq2Planes`: IQ2_XXS / IQ2_XS / IQ2_S weights in a layout the kernels decode
//! with a few register operations, copied exactly from the GGUF blocks at load (`super::iq2`).
//!
//! An IQ2 weight is `d·(2ls + 1)/8·(±g)`, `g` ∈ {8, 25, 43} taken from a codebook row per group
//! of 8 weights. Decoding the codebook costs a gather (one 64-bit row per group) and, for
//! IQ2_XXS / IQ2_XS, the parity bit of every group's signs: measured on the 1.5B model's up
//! projection (8960 × 1536, one thread, AVX-512 VNNI) a kernel on ggml's own blocks took
//! 1.07–1.13 ms per token against Q4_K's 0.47, and the IQ2_XXS file decoded at 0.97 × llama.cpp.
//! This layout stores what that decoding produces, per super-block of 256 weights (106 bytes,
//! 3.31 bits per weight against IQ2's 2.06–2.56):
//!
//! | bytes     | field                                                                   |
//! |-----------|-------------------------------------------------------------------------|
//! | 0..2      | f16 `d`                                                                 |
//! | 2..10     | 16 4-bit scales `ls`, one per 16 weights (nibble k: weights 16k..16k + 16) |
//! | 10..42    | 256 sign bits: bit j of byte k is weight `8k + j`'s (set: negative)     |
//! | 42..106   | 256 2-bit codes of the magnitudes [`LEVELS`] = 0, 8, 25, 43: chunk c of 64 weights in bytes `42 + 16c ..`, weight `64c + 16L + k` at bits `2L, 2L + 1` of byte k |
//!
//! `w = d·(2ls + 1)·(±LEVELS[code])`; the matrix carries IQ2's 1/8 as its out scale
//! (`QuantMatrix::with_out_scale`), so every value dequantizes to the bits of the IQ2 block's.
//! (i8 scales in a byte each cost 8 more bytes per block; measured on the IQ2_XXS file, peak
//! memory was 1.53 × file + KV with them.)
//!
//! Against activations quantized to 8-bit blocks of 256 (`x = dx·q`, ggml's Q8_K, sums per 16)
//! a super-block contributes `d·dx·S` with the exact integer `S = Σ_G (2ls_G + 1)·Σ_{j∈G} w_j·q_j`
//! (|S| ≤ 256·43·128·31 < 2³¹).
//! - [`row_dot_scalar`]: the portable kernel.
//! - `x86::rows_vnni` (AVX-512 VNNI): per super-block and weight row, four registers of weight
//!   bytes `64 ± level` (in 21..=107): a chunk's 16 code bytes broadcast to the four 128-bit
//!   lanes and shifted by 0 / 2 / 4 / 6, masked to 2 bits and looked up with `vpshufb`, the
//!   negative table chosen by the 64 sign bits as a mask. Decoded once, they serve every
//!   activation row of the tile: per row and 64 weights one `vpmaddubsw` (pairs ≤ 2·107·128,
//!   no saturation) and one `vpdpwssd` by the pairs' scales, per super-block one `vpdpwssd` of
//!   `−64·(2ls + 1)` against the activation sums per 16 (the offset), then one conversion, one
//!   multiply by `d` and one FMA by `dx` per 16 lanes, as the Q6_K kernel. Two weight rows per
//!   call share each activation load; every activation row goes through the same operations
//!   whatever the tile size (batch-invariant).
//!
//! Elsewhere (no AVX-512 VNNI) the loader keeps IQ2 tensors as exact f32 copies instead
//! (`crate::gguf`): the dense kernels multiply those faster than the portable kernel would.

use super::format::QuantFormat;
use super::matmul::{ActTile, Isa};

/// Bytes of one block.
pub const BLOCK_BYTES: usize = 106;
const SCALES: usize = 2;
const SIGNS: usize = 10;
const CODES: usize = 42;
/// The magnitudes a 2-bit code stands for (IQ2's grids hold 8, 25 and 43).
pub const LEVELS: [i8; 4] = [0, 8, 25, 43];

/// Whether this process multiplies IQ2_PLANES matrices with the vector kernel (AVX-512 VNNI on
/// the kernel family [`Isa::detect`] chose): where not, loading a GGUF file turns IQ2 tensors
/// into f32 copies.
pub fn native() -> bool {
    matches!(Isa::detect(), Isa::Avx512Vnni | Isa::Amx)
}

/// Write one block: `d` (f16 bits), 16 4-bit scales `ls`, and per group of 8 weights its 8
/// magnitudes (each a [`LEVELS`] entry) and sign bits (bit j set: weight j negative).
pub(crate) fn write(d: u16, ls: &[u8; 16], groups: &[([i8; 8], u8); 32], out: &mut [u8]) {
    assert_eq!(out.len(), BLOCK_BYTES, "one IQ2_PLANES block");
    out.fill(0);
    out[..2].copy_from_slice(&d.to_le_bytes());
    for (k, &l) in ls.iter().enumerate() {
        debug_assert!(l < 16, "scale {l}");
        out[SCALES + k / 2] |= (l & 0x0F) << (4 * (k % 2));
    }
    for (g, (row, signs)) in groups.iter().enumerate() {
        out[SIGNS + g] = *signs;
        for (e, &v) in row.iter().enumerate() {
            let code = match v {
                0 => 0,
                8 => 1,
                25 => 2,
                43 => 3,
                other => panic!("magnitude {other} is not an IQ2 level"),
            };
            let j = 8 * g + e;
            let (c, lane, k) = (j / 64, j % 64 / 16, j % 16);
            out[CODES + 16 * c + k] |= code << (2 * lane);
        }
    }
}

/// `d`, the 256 signed magnitudes and the 16 scales `2ls + 1` of one block.
pub(crate) fn decode(block: &[u8]) -> (f32, [i8; 256], [i8; 16]) {
    let d = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
    let q = std::array::from_fn(|j| {
        let (c, lane, k) = (j / 64, j % 64 / 16, j % 16);
        let v = LEVELS[usize::from(block[CODES + 16 * c + k] >> (2 * lane) & 3)];
        if block[SIGNS + j / 8] >> (j % 8) & 1 == 1 {
            -v
        } else {
            v
        }
    });
    let scales =
        std::array::from_fn(|g| 2 * (block[SCALES + g / 2] >> (4 * (g % 2)) & 0x0F) as i8 + 1);
    (d, q, scales)
}

/// The 256 values `d·(2ls + 1)·(±level)` of one block (without the matrix's out scale).
pub fn dequantize(block: &[u8], out: &mut [f32]) {
    assert!(
        block.len() == BLOCK_BYTES && out.len() == 256,
        "one IQ2_PLANES block"
    );
    let (d, q, scales) = decode(block);
    for (j, o) in out.iter_mut().enumerate() {
        *o = d * f32::from(scales[j / 16]) * f32::from(q[j]);
    }
}

/// Two weight rows at once on the vector kernel (each activation chunk loaded once for both);
/// `false`, computing nothing, where `isa` lacks it.
pub(crate) fn rows2_dot(isa: Isa, w: [&[u8]; 2], tile: &ActTile<'_>, out: [&mut [f32]; 2]) -> bool {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `row_dot`, for both rows.
        Isa::Avx512Vnni | Isa::Amx => unsafe { x86::rows_vnni(w, tile, out) },
        _ => false,
    }
}

/// `out[i] = Σ_j W_j · x_ij` for one row `w` and every activation row of `tile`, on the vector
/// kernel where `isa` has it and on the portable one elsewhere.
pub(crate) fn row_dot(isa: Isa, w: &[u8], tile: &ActTile<'_>, out: &mut [f32]) {
    debug_assert!(tile.block == 256);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: these families are only used once `Isa::detect` confirmed AVX-512 F/BW/VL/VNNI,
        // AVX2, FMA and F16C; `w` holds whole blocks.
        Isa::Avx512Vnni | Isa::Amx => unsafe {
            x86::rows_vnni([w], tile, [out]);
        },
        _ => row_dot_scalar(w, tile, out),
    }
}

/// The portable kernel: [`decode`] per block, the integer `S` per activation row.
pub(crate) fn row_dot_scalar(w: &[u8], tile: &ActTile<'_>, out: &mut [f32]) {
    let (cols, m) = (tile.cols, tile.m);
    let nb = cols / 256;
    out[..m].iter_mut().for_each(|o| *o = 0.0);
    for (b, blk) in w
        .chunks_exact(QuantFormat::Iq2Planes.block_bytes())
        .enumerate()
    {
        let (d, q, scales) = decode(blk);
        for (i, o) in out[..m].iter_mut().enumerate() {
            let x = &tile.qs[i * cols + 256 * b..][..256];
            let s: i32 = (0..16)
                .map(|g| {
                    let dot: i32 = (16 * g..16 * g + 16)
                        .map(|j| i32::from(q[j]) * i32::from(x[j]))
                        .sum();
                    i32::from(scales[g]) * dot
                })
                .sum();
            *o += s as f32 * d * tile.d[i * nb + b];
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::super::avx2::{dispatch_m, f16_at, loadu};
    use super::super::matmul::{ActTile, TILE_M};
    use super::{BLOCK_BYTES, CODES, LEVELS, SCALES, SIGNS};

    /// `vpermw` indices placing the 16 scales on chunk c's i16 pair sums: lane l covers weights
    /// 64c + 2l and 64c + 2l + 1, which belong to group of 16 number 4c + l/8.
    static SCALE_LANES: [[i16; 32]; 4] = {
        let mut t = [[0i16; 32]; 4];
        let mut c = 0;
        while c < 4 {
            let mut l = 0;
            while l < 32 {
                t[c][l] = (4 * c + l / 8) as i16;
                l += 1;
            }
            c += 1;
        }
        t
    };

    /// `R` weight rows against `tile.m` activation rows (see the module docs); `true`.
    ///
    /// # Safety
    /// The CPU supports AVX-512 F/BW/VL/VNNI, AVX2, FMA and F16C; every `w[r]` holds
    /// `tile.cols / 256` blocks.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    pub(super) unsafe fn rows_vnni<const R: usize>(
        w: [&[u8]; R],
        tile: &ActTile<'_>,
        out: [&mut [f32]; R],
    ) -> bool {
        debug_assert!((1..=TILE_M).contains(&tile.m));
        let m = tile.m;
        // SAFETY: forwarded from the caller.
        unsafe { dispatch_m!(m, planes_vnni::<R>, w, tile, out) };
        true
    }

    /// The 16 scales `2ls + 1` (i16) from the 8 nibble bytes at `p`.
    #[inline(always)]
    unsafe fn odd_scales(p: *const u8) -> __m256i {
        // SAFETY: `p` points to 8 readable bytes; the caller's target features include AVX2.
        unsafe {
            let v = _mm_cvtsi64_si128(loadu::<i64, u8>(p));
            let low = _mm_set1_epi8(0x0F);
            let bytes = _mm_unpacklo_epi8(
                _mm_and_si128(v, low),
                _mm_and_si128(_mm_srli_epi16(v, 4), low),
            );
            let ls = _mm256_cvtepu8_epi16(bytes);
            _mm256_add_epi16(_mm256_add_epi16(ls, ls), _mm256_set1_epi16(1))
        }
    }

    /// `R` weight rows against `M` activation rows.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
    #[allow(clippy::needless_range_loop)]
    unsafe fn planes_vnni<const M: usize, const R: usize>(
        w: [&[u8]; R],
        tile: &ActTile<'_>,
        out: [&mut [f32]; R],
    ) {
        let cols = tile.cols;
        let (nb, n16) = (cols / 256, cols / 16);
        debug_assert!(tile.m == M && tile.block == 256);
        debug_assert!(
            w.iter().all(|w| w.len() == nb * BLOCK_BYTES) && out.iter().all(|o| o.len() >= M)
        );
        // SAFETY: 64 bytes read from each 64-byte row of the table.
        let perm: [__m512i; 4] =
            std::array::from_fn(|c| unsafe { loadu::<__m512i, i16>(SCALE_LANES[c].as_ptr()) });
        // 64 ± level per code, in every 128-bit lane
        let table = |sign: i8| {
            let t: [i8; 16] = std::array::from_fn(|k| 64 + sign * LEVELS[k % 4]);
            // SAFETY: 16 bytes read from a 16-byte array.
            _mm512_broadcast_i32x4(unsafe { loadu::<__m128i, i8>(t.as_ptr()) })
        };
        let (plus, minus) = (table(1), table(-1));
        // code bits of lane L of a broadcast chunk start at bit 2L
        let shifts = _mm512_set_epi64(
            0x0006_0006_0006_0006,
            0x0006_0006_0006_0006,
            0x0004_0004_0004_0004,
            0x0004_0004_0004_0004,
            0x0002_0002_0002_0002,
            0x0002_0002_0002_0002,
            0,
            0,
        );
        let three = _mm512_set1_epi8(3);
        let zero = _mm512_setzero_si512();
        let mut acc = [[_mm512_setzero_ps(); M]; R];
        let (qs, bsums, ds) = (tile.qs.as_ptr(), tile.bsums.as_ptr(), tile.d.as_ptr());
        // SAFETY: block b's bytes lie within every `w[r]` (b < nb); activation row i < M has
        // `cols` values, `cols / 16` sums and `nb` scales in the tile.
        unsafe {
            for b in 0..nb {
                let mut q = [[zero; 4]; R];
                let mut sc = [[zero; 4]; R];
                let mut off = [zero; R];
                let mut dv = [_mm512_setzero_ps(); R];
                for r in 0..R {
                    let blk = w[r].as_ptr().wrapping_add(b * BLOCK_BYTES);
                    for c in 0..4 {
                        let codes = _mm512_broadcast_i32x4(loadu::<__m128i, u8>(
                            blk.wrapping_add(CODES + 16 * c),
                        ));
                        let code = _mm512_and_si512(_mm512_srlv_epi16(codes, shifts), three);
                        let signs: __mmask64 = loadu::<u64, u8>(blk.wrapping_add(SIGNS + 8 * c));
                        q[r][c] = _mm512_mask_shuffle_epi8(
                            _mm512_shuffle_epi8(plus, code),
                            signs,
                            minus,
                            code,
                        );
                    }
                    let ls = odd_scales(blk.wrapping_add(SCALES));
                    let lsz = _mm512_zextsi256_si512(ls);
                    sc[r] = std::array::from_fn(|c| _mm512_permutexvar_epi16(perm[c], lsz));
                    // −64 · (2ls + 1) per group of 16 (|·| ≤ 1984) against the activation sums
                    off[r] = _mm512_zextsi256_si512(_mm256_sub_epi16(
                        _mm256_setzero_si256(),
                        _mm256_slli_epi16(ls, 6),
                    ));
                    dv[r] = _mm512_set1_ps(f16_at(blk));
                }
                for i in 0..M {
                    let x = qs.wrapping_add(i * cols + 256 * b);
                    let xs =
                        [0usize, 1, 2, 3].map(|c| loadu::<__m512i, i8>(x.wrapping_add(64 * c)));
                    let bs = _mm512_zextsi256_si512(loadu::<__m256i, i16>(
                        bsums.wrapping_add(i * n16 + 16 * b),
                    ));
                    let dx = _mm512_set1_ps(*ds.add(i * nb + b));
                    for r in 0..R {
                        let mut sumi = _mm512_dpwssd_epi32(zero, bs, off[r]);
                        for c in 0..4 {
                            let pairs = _mm512_maddubs_epi16(q[r][c], xs[c]);
                            sumi = _mm512_dpwssd_epi32(sumi, pairs, sc[r][c]);
                        }
                        let t = _mm512_mul_ps(_mm512_cvtepi32_ps(sumi), dv[r]);
                        acc[r][i] = _mm512_fmadd_ps(t, dx, acc[r][i]);
                    }
                }
            }
        }
        for (acc, out) in acc.iter().zip(out) {
            for (a, o) in acc.iter().zip(out.iter_mut()) {
                *o = _mm512_reduce_add_ps(*a);
            }
        }
    }
}
