//! Formats of specsweep's own for the codebook i-quants: each weight a small code into a table
//! of levels, laid out for the kernels to decode with a few register operations, and filled
//! exactly from the GGUF blocks at load (`super::recode`).
//!
//! **IQ2_PLANES** (IQ2_XXS / IQ2_XS / IQ2_S, `super::iq2`). An IQ2 weight is
//! `d·(2ls + 1)/8·(±g)`, `g` ∈ {8, 25, 43} taken from a codebook row per group of 8 weights.
//! Decoding the codebook costs a gather (one 64-bit row per group) and, for IQ2_XXS / IQ2_XS,
//! the parity bit of every group's signs: measured on the 1.5B model's up projection (8960 ×
//! 1536, one thread, AVX-512 VNNI) a kernel on ggml's own blocks took 1.07–1.13 ms per token
//! against Q4_K's 0.47, and the IQ2_XXS file decoded at 0.97 × llama.cpp. This layout stores
//! what that decoding produces, per super-block of 256 weights (106 bytes, 3.31 bits per weight
//! against IQ2's 2.06–2.56):
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
//! **IQ3_XXS_NIB / IQ3_S_NIB** (IQ3_XXS / IQ3_S, `super::iq3`): a 4-bit code per weight into
//! 16 signed levels ([`NIB_XXS`]: ±grid/2 of IQ3_XXS's magnitudes 4 … 62, the matrix keeping
//! ½ as its out scale; [`NIB_S`]: ±1 … ±15), the same 4-bit scales; 138 bytes per 256 (4.31
//! bits per weight against IQ3's 3.06 / 3.44, where the Q6_K copies of the eighteenth round
//! took 6.56):
//!
//! | bytes     | field                                                                   |
//! |-----------|-------------------------------------------------------------------------|
//! | 0..2      | f16 `d`                                                                 |
//! | 2..10     | 16 4-bit scales `ls`, as above                                          |
//! | 10..138   | 256 4-bit codes: chunk c in bytes `10 + 32c ..`, weight `64c + k` in the low nibble of byte k, `64c + 32 + k` in its high nibble |
//!
//! Against activations quantized to 8-bit blocks of 256 (`x = dx·q`, ggml's Q8_K, sums per 16)
//! a super-block contributes `d·dx·S` with the exact integer `S = Σ_G (2ls_G + 1)·Σ_{j∈G} w_j·q_j`
//! (|S| ≤ 256·43·128·31 < 2³¹).
//!
//! **IQ1_SHIFT** (IQ1_S / IQ1_M, `super::iq1`): an IQ1 weight is `d·(2ls + 1)·(grid ± 1/8)`
//! with grid ∈ {−1, 0, 1} and the shift's sign shared by a group of 8 (IQ1_M; 32 for IQ1_S).
//! The layout keeps the grid value as a 2-bit code and the shift as one bit per group, the matrix
//! keeping 1/8 as its out scale — 78 bytes per 256, 2.44 bits per weight against IQ1's 1.56 /
//! 1.75 (a first version stored magnitudes and sign bits as IQ2_PLANES does, 3.31 bits per
//! weight, and left the IQ1_M file at 1.62 × file + KV in peak memory; the Q6_K copies took
//! 6.56):
//!
//! | bytes     | field                                                                   |
//! |-----------|-------------------------------------------------------------------------|
//! | 0..2      | f16 `d`                                                                 |
//! | 2..10     | 16 4-bit scales `ls`, as above                                          |
//! | 10..14    | 32 shift bits: bit j of byte k is group `8k + j`'s (set: `−1/8`)        |
//! | 14..78    | 256 2-bit codes of grid + 1, placed as IQ2_PLANES's                      |
//!
//! `w = d·(2ls + 1)·level`, the level [`SHIFT_UP`]`[code]` = `8·grid + 1` or, under a set
//! shift bit, [`SHIFT_DOWN`]`[code]` = `8·grid − 1`.
//! - `row_dot_scalar`: the portable kernel.
//! - `x86::rows_vnni` (AVX-512 VNNI): per super-block and weight row, four registers of weight
//!   bytes `64 + w` (in 21..=107): IQ2_PLANES broadcasts a chunk's 16 code bytes to the four
//!   128-bit lanes, shifts them by 0 / 2 / 4 / 6, masks 2 bits and looks them up with `vpshufb`
//!   in `64 + level`, a second `vpshufb` into `64 − level` under the sign bits as a mask
//!   (IQ1_SHIFT: the two tables are `64 + 8·grid ± 1`, the mask its chunk's 8 shift bits
//!   spread to bytes by `pdep`); the nibble formats broadcast a chunk's 32 bytes to both halves, shift by 0 / 4, mask 4 bits and
//!   look up `64 + level` once. Decoded once, they serve every activation row of the tile: per
//!   row and 64 weights one `vpmaddubsw` (pairs ≤ 2·107·128, no saturation) and one `vpdpwssd`
//!   by the pairs' scales, per super-block one `vpdpwssd` of `−64·(2ls + 1)` against the
//!   activation sums per 16 (the offset), then one conversion, one multiply by `d` and one FMA
//!   by `dx` per 16 lanes, as the Q6_K kernel. Two weight rows per call share each activation
//!   load; every activation row goes through the same operations whatever the tile size
//!   (batch-invariant).
//! - `x86::rows_avx2` (AVX2, and AVX-512 CPUs without VNNI): the same integers 32 weights per
//!   register — the chunk's code bytes in both 128-bit lanes shifted by `vpsrlvd` and masked,
//!   ORed with 4 where the sign / shift bit is set (bits spread to bytes by a `vpshufb` of
//!   their bytes, an AND with each byte's bit and a compare), one `vpshufb` into a table of both
//!   signs' levels; then per row and 32 weights `vpmaddubsw`, `vpmaddwd` by the scales and an
//!   add.
//! - Both prefetch per block as the row-major `super::avx512` kernels do (`prefetch_ahead`: 1 KiB
//!   ahead into L1, 4 KiB into L2); without it the IQ3_S 1.5B file decoded at ~16 tok/s on the
//!   VNNI kernel, with it at 21–25.
//!
//! - On AVX2 and AVX-512 VNNI CPUs the loader interleaves the copies 16 rows at a time
//!   (`super::interleave`, the "x16" layout, same bytes per row) for the kernels of
//!   `super::x16` / `super::x16_avx2`, which share each weight register across the activation
//!   rows as the K-quants' do; the row-major kernels above run where a matrix stays row-major
//!   (`--layout rows`, rows not a multiple of 16, AVX-512 CPUs without VNNI).
//!
//! Without either (no AVX2, or not x86) the loader keeps IQ2 tensors as exact f32 copies and
//! IQ3 / IQ1 tensors as exact Q6_K copies instead (`crate::gguf`): the dense and Q6_K kernels
//! multiply those faster than the portable kernel would.

use super::format::QuantFormat;
use super::matmul::{ActTile, Isa};

/// Bytes of an IQ2_PLANES block.
pub const PLANES_BYTES: usize = 106;
/// Bytes of an IQ3_XXS_NIB / IQ3_S_NIB block.
pub const NIB_BYTES: usize = 138;
/// Where a block's 16 scale nibbles start (every format of this module).
pub(crate) const SCALES: usize = 2;
/// Where an IQ2_PLANES block's sign bits and codes start.
pub(crate) const SIGNS: usize = 10;
pub(crate) const PLANE_CODES: usize = 42;
/// Where a nibble-format block's 256 codes start.
pub(crate) const NIB_CODES: usize = 10;
/// Bytes of an IQ1_SHIFT block.
pub const SHIFT_BYTES: usize = 78;
/// Where an IQ1_SHIFT block's shift bits and codes start.
pub(crate) const SHIFTS: usize = 10;
pub(crate) const SHIFT_CODES: usize = 14;
/// The magnitudes an IQ2_PLANES 2-bit code stands for (IQ2's grids hold 8, 25 and 43).
pub const LEVELS: [i8; 4] = [0, 8, 25, 43];
/// IQ1_SHIFT's levels `8·grid + 1` for its codes 0, 1, 2 (grid −1, 0, 1; code 3 is unused).
pub const SHIFT_UP: [i8; 4] = [-7, 1, 9, 0];
/// IQ1_SHIFT's levels `8·grid − 1` (the group's shift bit set).
pub const SHIFT_DOWN: [i8; 4] = [-9, -1, 7, 0];
/// The levels of IQ3_XXS_NIB's 4-bit codes: ± half IQ3_XXS's magnitudes 4, 12, …, 52, 62.
pub const NIB_XXS: [i8; 16] = [
    2, 6, 10, 14, 18, 22, 26, 31, -2, -6, -10, -14, -18, -22, -26, -31,
];
/// The levels of IQ3_S_NIB's 4-bit codes: ± IQ3_S's magnitudes 1, 3, …, 15.
pub const NIB_S: [i8; 16] = [1, 3, 5, 7, 9, 11, 13, 15, -1, -3, -5, -7, -9, -11, -13, -15];

/// The level table of a nibble format.
pub(crate) fn nib_levels(format: QuantFormat) -> &'static [i8; 16] {
    match format {
        QuantFormat::Iq3XxsNib => &NIB_XXS,
        QuantFormat::Iq3SNib => &NIB_S,
        other => unreachable!("{other} has no nibble levels"),
    }
}

/// `levels` + 32.
const fn plus32(levels: [i8; 16]) -> [u8; 16] {
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        out[i] = (levels[i] + 32) as u8;
        i += 1;
    }
    out
}

static NIB_XXS_PLUS32: [u8; 16] = plus32(NIB_XXS);
static NIB_S_PLUS32: [u8; 16] = plus32(NIB_S);

/// A nibble format's levels + 32 (in 1 ..= 63), the unsigned weights the interleaved kernels
/// multiply (`super::interleave`: Q6_K's arithmetic, offset `−32·Σa`).
pub(crate) fn nib_levels_plus32(format: QuantFormat) -> &'static [u8; 16] {
    match format {
        QuantFormat::Iq3XxsNib => &NIB_XXS_PLUS32,
        QuantFormat::Iq3SNib => &NIB_S_PLUS32,
        other => unreachable!("{other} has no nibble levels"),
    }
}

/// Whether later loads may make the code copies (see [`set_code_copies`]).
static OWN_COPIES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Turn the code copies of later loads on or off for this process (on by default), to measure
/// them against the fallback copies — IQ2 as f32, IQ3 / IQ1 as Q6_K: larger in memory
/// (`specsweep bench --iq-copies`).
pub fn set_code_copies(on: bool) {
    OWN_COPIES.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Whether loading a GGUF file in this process makes the code copies: one of their vector
/// kernels runs (AVX-512 VNNI or AVX2 on the kernel family [`Isa::detect`] chose) and
/// [`set_code_copies`] has not turned them off. Where not, IQ2 tensors become f32 copies and
/// IQ3 / IQ1 tensors Q6_K copies.
pub fn native() -> bool {
    OWN_COPIES.load(std::sync::atomic::Ordering::Relaxed)
        && matches!(
            Isa::detect(),
            Isa::Avx2 | Isa::Avx512 | Isa::Avx512Vnni | Isa::Amx
        )
}

/// The copies GGUF IQ1 / IQ2 / IQ3 tensors get in this process: `own` (the code copies) or
/// `fallback` (f32 for IQ2, Q6_K for IQ1 / IQ3).
pub fn code_copies() -> &'static str {
    if native() { "own" } else { "fallback" }
}

/// Write the 16 scale nibbles `ls` and `d` (f16 bits) of a block.
pub(crate) fn write_head(d: u16, ls: &[u8; 16], out: &mut [u8]) {
    out.fill(0);
    out[..2].copy_from_slice(&d.to_le_bytes());
    for (k, &l) in ls.iter().enumerate() {
        debug_assert!(l < 16, "scale {l}");
        out[SCALES + k / 2] |= (l & 0x0F) << (4 * (k % 2));
    }
}

/// Put weight `j`'s 2-bit code into the code area at `at`: chunk c of 64 weights in 16 bytes,
/// weight `64c + 16L + k` at bits `2L, 2L + 1` of byte k.
fn put_code2(out: &mut [u8], at: usize, j: usize, code: u8) {
    let (c, lane, k) = (j / 64, j % 64 / 16, j % 16);
    out[at + 16 * c + k] |= code << (2 * lane);
}

/// Weight `j`'s 2-bit code in the code area at `at` (see [`put_code2`]).
fn code2(block: &[u8], at: usize, j: usize) -> usize {
    let (c, lane, k) = (j / 64, j % 64 / 16, j % 16);
    usize::from(block[at + 16 * c + k] >> (2 * lane) & 3)
}

/// Where weight `j`'s 4-bit code lives in a nibble-format block: the byte and the shift (chunk
/// c of 64 weights in 32 bytes, weight `64c + k` in the low nibble of byte k, `64c + 32 + k` in
/// its high nibble).
fn nib_at(j: usize) -> (usize, u32) {
    let (c, half, k) = (j / 64, j % 64 / 32, j % 32);
    (NIB_CODES + 32 * c + k, 4 * half as u32)
}

/// Weight `j`'s 4-bit code in a nibble-format block.
pub(crate) fn nib_code(block: &[u8], j: usize) -> u8 {
    let (at, shift) = nib_at(j);
    block[at] >> shift & 0x0F
}

/// Put weight `j`'s 4-bit code into a nibble-format block whose code bytes start zeroed.
pub(crate) fn put_nib_code(out: &mut [u8], j: usize, code: u8) {
    let (at, shift) = nib_at(j);
    out[at] |= code << shift;
}

/// Scale nibble `g` (weights `16g .. 16g + 16`) of a block of any format of this module.
pub(crate) fn scale_nibble(block: &[u8], g: usize) -> u8 {
    block[SCALES + g / 2] >> (4 * (g % 2)) & 0x0F
}

/// Write one IQ2_PLANES block: `d` (f16 bits), 16 4-bit scales `ls`, and per group of 8
/// weights its 8 magnitudes (each one of [`LEVELS`]) and sign bits (bit j set: weight j
/// negative).
pub(crate) fn write_planes(d: u16, ls: &[u8; 16], groups: &[([i8; 8], u8); 32], out: &mut [u8]) {
    assert_eq!(out.len(), PLANES_BYTES, "one IQ2_PLANES block");
    write_head(d, ls, out);
    for (g, (row, signs)) in groups.iter().enumerate() {
        out[SIGNS + g] = *signs;
        for (e, &v) in row.iter().enumerate() {
            let code = LEVELS
                .iter()
                .position(|&l| l == v)
                .unwrap_or_else(|| panic!("magnitude {v} is not an IQ2_PLANES level"));
            put_code2(out, PLANE_CODES, 8 * g + e, code as u8);
        }
    }
}

/// Write one IQ1_SHIFT block: `d` (f16 bits), 16 4-bit scales `ls`, and per group of 8
/// weights its 8 grid values (−1, 0 or 1) and whether its shift is `−1/8`.
pub(crate) fn write_shift(d: u16, ls: &[u8; 16], groups: &[([i8; 8], bool); 32], out: &mut [u8]) {
    assert_eq!(out.len(), SHIFT_BYTES, "one IQ1_SHIFT block");
    write_head(d, ls, out);
    for (g, (row, down)) in groups.iter().enumerate() {
        out[SHIFTS + g / 8] |= u8::from(*down) << (g % 8);
        for (e, &v) in row.iter().enumerate() {
            assert!(
                (-1..=1).contains(&v),
                "grid value {v} is not an IQ1_SHIFT code"
            );
            put_code2(out, SHIFT_CODES, 8 * g + e, (v + 1) as u8);
        }
    }
}

/// Write one block of a nibble format: `d` (f16 bits), 16 4-bit scales `ls` and 256 weights,
/// each one of the format's levels.
pub(crate) fn write_nibbles(
    format: QuantFormat,
    d: u16,
    ls: &[u8; 16],
    q: &[i8; 256],
    out: &mut [u8],
) {
    assert_eq!(out.len(), NIB_BYTES, "one {format} block");
    write_head(d, ls, out);
    let levels = nib_levels(format);
    for (j, &v) in q.iter().enumerate() {
        let code = levels
            .iter()
            .position(|&l| l == v)
            .unwrap_or_else(|| panic!("{v} is not a {format} level")) as u8;
        put_nib_code(out, j, code);
    }
}

/// Weight `j`'s 2-bit code in an IQ2_PLANES / IQ1_SHIFT block with its sign / its group's
/// shift bit as bit 2: an index into [`index_levels`].
pub(crate) fn code_index(format: QuantFormat, block: &[u8], j: usize) -> u8 {
    let (codes, at, bit) = index_bits(format, j);
    code2(block, codes, j) as u8 | (block[at] >> bit & 1) << 2
}

/// Put weight `j`'s [`code_index`] into a block whose code and bit bytes start zeroed (IQ1_SHIFT:
/// every weight of a group of 8 carries the group's bit).
pub(crate) fn put_code_index(format: QuantFormat, out: &mut [u8], j: usize, index: u8) {
    let (codes, at, bit) = index_bits(format, j);
    put_code2(out, codes, j, index & 3);
    out[at] |= (index >> 2 & 1) << bit;
}

/// Where weight `j`'s code area starts and its sign / shift bit lives (byte, bit).
fn index_bits(format: QuantFormat, j: usize) -> (usize, usize, u32) {
    match format {
        QuantFormat::Iq2Planes => (PLANE_CODES, SIGNS + j / 8, (j % 8) as u32),
        QuantFormat::Iq1Shift => (SHIFT_CODES, SHIFTS + j / 64, (j / 8 % 8) as u32),
        other => unreachable!("{other} has no 2-bit codes"),
    }
}

/// The levels of a 2-bit format's [`code_index`] 0..8 — the codes' positive (IQ1_SHIFT:
/// shifted-up) levels, then their negative (shifted-down) ones — as a 16-entry `vpshufb`
/// table (entries 8..16 zero, never indexed).
pub(crate) fn index_levels(format: QuantFormat) -> [i8; 16] {
    let (up, down) = match format {
        QuantFormat::Iq2Planes => (LEVELS, LEVELS.map(|l| -l)),
        QuantFormat::Iq1Shift => (SHIFT_UP, SHIFT_DOWN),
        other => unreachable!("{other} has no 2-bit codes"),
    };
    std::array::from_fn(|k| match k {
        0..4 => up[k],
        4..8 => down[k - 4],
        _ => 0,
    })
}

/// `d`, the 256 signed levels and the 16 scales `2ls + 1` of one block of `format`.
pub(crate) fn decode(format: QuantFormat, block: &[u8]) -> (f32, [i8; 256], [i8; 16]) {
    let d = half::f16::from_le_bytes([block[0], block[1]]).to_f32();
    let q = std::array::from_fn(|j| match format {
        QuantFormat::Iq2Planes | QuantFormat::Iq1Shift => {
            index_levels(format)[usize::from(code_index(format, block, j))]
        }
        _ => nib_levels(format)[usize::from(nib_code(block, j))],
    });
    let scales = std::array::from_fn(|g| 2 * scale_nibble(block, g) as i8 + 1);
    (d, q, scales)
}

/// The 256 values `d·(2ls + 1)·level` of one block of `format` (without the matrix's out
/// scale).
pub fn dequantize(format: QuantFormat, block: &[u8], out: &mut [f32]) {
    assert!(
        block.len() == format.block_bytes() && out.len() == 256,
        "one {format} block"
    );
    let (d, q, scales) = decode(format, block);
    for (j, o) in out.iter_mut().enumerate() {
        *o = d * f32::from(scales[j / 16]) * f32::from(q[j]);
    }
}

/// Two weight rows at once on the vector kernel (each activation chunk loaded once for both);
/// `false`, computing nothing, where `isa` lacks it.
pub(crate) fn rows2_dot(
    isa: Isa,
    format: QuantFormat,
    w: [&[u8]; 2],
    tile: &ActTile<'_>,
    out: [&mut [f32]; 2],
) -> bool {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `row_dot`, for both rows.
        Isa::Avx512Vnni | Isa::Amx => unsafe { x86::rows_vnni(format, w, tile, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `row_dot`, for both rows.
        Isa::Avx2 | Isa::Avx512 => unsafe { x86::rows_avx2(format, w, tile, out) },
        _ => false,
    }
}

/// `out[i] = Σ_j W_j · x_ij` for one row `w` of `format` and every activation row of `tile`,
/// on the vector kernel where `isa` has it and on the portable one elsewhere.
pub(crate) fn row_dot(
    isa: Isa,
    format: QuantFormat,
    w: &[u8],
    tile: &ActTile<'_>,
    out: &mut [f32],
) {
    debug_assert!(tile.block == 256);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: these families are only used once `Isa::detect` confirmed AVX-512 F/BW/VL/VNNI,
        // AVX2, FMA, F16C and BMI2; `w` holds whole blocks.
        Isa::Avx512Vnni | Isa::Amx => unsafe {
            x86::rows_vnni(format, [w], tile, [out]);
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: these families are only used once `Isa::detect` confirmed AVX2, FMA and F16C;
        // `w` holds whole blocks.
        Isa::Avx2 | Isa::Avx512 => unsafe {
            x86::rows_avx2(format, [w], tile, [out]);
        },
        _ => row_dot_scalar(format, w, tile, out),
    }
}

/// The portable kernel: [`decode`] per block, the integer `S` per activation row.
pub(crate) fn row_dot_scalar(format: QuantFormat, w: &[u8], tile: &ActTile<'_>, out: &mut [f32]) {
    let (cols, m) = (tile.cols, tile.m);
    let nb = cols / 256;
    out[..m].iter_mut().for_each(|o| *o = 0.0);
    for (b, blk) in w.chunks_exact(format.block_bytes()).enumerate() {
        let (d, q, scales) = decode(format, blk);
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

    use super::super::avx2::{dispatch_m, f16_at, loadu, prefetch_ahead};
    use super::super::format::QuantFormat;
    use super::super::matmul::{ActTile, TILE_M};
    use super::{
        LEVELS, NIB_CODES, NIB_S, NIB_XXS, PLANE_CODES, SCALES, SHIFT_CODES, SHIFT_DOWN, SHIFT_UP,
        SHIFTS, SIGNS, index_levels,
    };

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

    /// Kernel variants (const-generic arguments of `codes_vnni`).
    const PLANES: u8 = 0;
    const NIB_XXS_K: u8 = 1;
    const NIB_S_K: u8 = 2;
    const SHIFT_K: u8 = 3;

    /// `R` weight rows of `format` against `tile.m` activation rows (see the module docs);
    /// `true`.
    ///
    /// # Safety
    /// The CPU supports AVX-512 F/BW/VL/VNNI, AVX2, FMA, F16C and BMI2; every `w[r]` holds
    /// `tile.cols / 256` blocks of `format`, one of this module's.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c,bmi2")]
    pub(super) unsafe fn rows_vnni<const R: usize>(
        format: QuantFormat,
        w: [&[u8]; R],
        tile: &ActTile<'_>,
        out: [&mut [f32]; R],
    ) -> bool {
        debug_assert!((1..=TILE_M).contains(&tile.m));
        let m = tile.m;
        // SAFETY: forwarded from the caller.
        unsafe {
            match format {
                QuantFormat::Iq2Planes => dispatch_m!(m, codes_vnni::<PLANES, R>, w, tile, out),
                QuantFormat::Iq3XxsNib => dispatch_m!(m, codes_vnni::<NIB_XXS_K, R>, w, tile, out),
                QuantFormat::Iq3SNib => dispatch_m!(m, codes_vnni::<NIB_S_K, R>, w, tile, out),
                QuantFormat::Iq1Shift => {
                    dispatch_m!(m, codes_vnni::<SHIFT_K, R>, w, tile, out)
                }
                other => unreachable!("{other} is not a code format"),
            }
        }
        true
    }

    /// `R` weight rows of `format` against `tile.m` activation rows on AVX2 (see the module
    /// docs); `true`.
    ///
    /// # Safety
    /// The CPU supports AVX2, FMA and F16C; every `w[r]` holds `tile.cols / 256` blocks of
    /// `format`, one of this module's.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn rows_avx2<const R: usize>(
        format: QuantFormat,
        w: [&[u8]; R],
        tile: &ActTile<'_>,
        out: [&mut [f32]; R],
    ) -> bool {
        debug_assert!((1..=TILE_M).contains(&tile.m));
        let m = tile.m;
        // SAFETY: forwarded from the caller.
        unsafe {
            match format {
                QuantFormat::Iq2Planes => dispatch_m!(m, codes_avx2::<PLANES, R>, w, tile, out),
                QuantFormat::Iq3XxsNib => dispatch_m!(m, codes_avx2::<NIB_XXS_K, R>, w, tile, out),
                QuantFormat::Iq3SNib => dispatch_m!(m, codes_avx2::<NIB_S_K, R>, w, tile, out),
                QuantFormat::Iq1Shift => dispatch_m!(m, codes_avx2::<SHIFT_K, R>, w, tile, out),
                other => unreachable!("{other} is not a code format"),
            }
        }
        true
    }

    /// The bytes `64 + levels[k]` of a lookup table.
    fn offset(levels: [i8; 16]) -> [i8; 16] {
        levels.map(|l| 64 + l)
    }

    /// Block bytes and where its codes start, for kernel variant `K`.
    const fn layout(k: u8) -> (usize, usize) {
        match k {
            PLANES => (super::PLANES_BYTES, PLANE_CODES),
            SHIFT_K => (super::SHIFT_BYTES, SHIFT_CODES),
            _ => (super::NIB_BYTES, NIB_CODES),
        }
    }

    /// A 16-entry byte table `64 + levels[k]` in both 128-bit lanes.
    #[inline(always)]
    unsafe fn table256(levels: [i8; 16]) -> __m256i {
        let t = offset(levels);
        // SAFETY: 16 bytes read from a 16-byte array; AVX2 is enabled in the caller.
        unsafe { _mm256_broadcastsi128_si256(loadu::<__m128i, i8>(t.as_ptr())) }
    }

    /// `R` weight rows of kernel variant `K` against `M` activation rows, 32 weights per
    /// register: per super-block and weight row, eight registers of weight bytes `64 + w`
    /// (2-bit codes: the chunk's 16 code bytes in both lanes, `vpsrlvd` by 4h / 4h + 2, mask,
    /// OR 4 where the sign / shift bit, spread to bytes, is set, and one `vpshufb` into a table
    /// of both signs' levels; nibbles: mask or shift and mask, one `vpshufb`) and eight of the
    /// scales `2ls + 1` as i16 per 16 weights, kept in L1 for the activation rows, each of
    /// which takes per register one `vpmaddubsw`, one `vpmaddwd` and one add, per super-block
    /// one `vpmaddwd` of the offsets `−64·(2ls + 1)` against its sums per 16 — the integers of
    /// the VNNI kernel.
    #[target_feature(enable = "avx2,fma,f16c")]
    #[allow(clippy::needless_range_loop)]
    unsafe fn codes_avx2<const M: usize, const K: u8, const R: usize>(
        w: [&[u8]; R],
        tile: &ActTile<'_>,
        out: [&mut [f32]; R],
    ) {
        let (bb, codes_at) = layout(K);
        let cols = tile.cols;
        let (nb, n16) = (cols / 256, cols / 16);
        debug_assert!(tile.m == M && tile.block == 256);
        debug_assert!(w.iter().all(|w| w.len() == nb * bb) && out.iter().all(|o| o.len() >= M));
        let zero = _mm256_setzero_si256();
        // SAFETY: AVX2 is enabled on this function.
        let (both, plus) = unsafe {
            // 2-bit codes: entries 0..4 the positive (shifted-up) levels, 4..8 the others
            match K {
                PLANES => (table256(index_levels(QuantFormat::Iq2Planes)), zero),
                SHIFT_K => (table256(index_levels(QuantFormat::Iq1Shift)), zero),
                NIB_XXS_K => (zero, table256(NIB_XXS)),
                _ => (zero, table256(NIB_S)),
            }
        };
        let mask = _mm256_set1_epi8(if K == PLANES || K == SHIFT_K { 3 } else { 0x0F });
        // half h of a chunk: its lanes hold code lanes 2h and 2h + 1 (bits 4h and 4h + 2)
        let shifts = [0, 1].map(|h| {
            _mm256_setr_epi32(
                4 * h,
                4 * h,
                4 * h,
                4 * h,
                4 * h + 2,
                4 * h + 2,
                4 * h + 2,
                4 * h + 2,
            )
        });
        // byte i of a register takes sign byte i / 8 (IQ2_PLANES) or shift bit i / 8 of the
        // half's nibble (IQ1_SHIFT)
        let sign_bytes = _mm256_setr_epi64x(
            0,
            0x0101_0101_0101_0101,
            0x0202_0202_0202_0202,
            0x0303_0303_0303_0303,
        );
        let bit_of_byte = _mm256_set1_epi64x(0x8040_2010_0804_0201_u64 as i64);
        let group_bit = _mm256_setr_epi64x(
            0x0101_0101_0101_0101,
            0x0202_0202_0202_0202,
            0x0404_0404_0404_0404,
            0x0808_0808_0808_0808,
        );
        // register j's scales: i16 lanes of group 2j (low lane) and 2j + 1 (high lane)
        // (byte index 2j / 2j + 1, then 0x80: a zero high byte)
        let scale_idx: [__m256i; 8] = std::array::from_fn(|j| {
            let word = |g: usize| (0x8000 | g) as i16;
            _mm256_setr_m128i(_mm_set1_epi16(word(2 * j)), _mm_set1_epi16(word(2 * j + 1)))
        });
        let mut acc = [[_mm256_setzero_ps(); M]; R];
        let (qs, bsums, ds) = (tile.qs.as_ptr(), tile.bsums.as_ptr(), tile.d.as_ptr());
        // SAFETY: block b's bytes lie within every `w[r]` (b < nb); activation row i < M has
        // `cols` values, `cols / 16` sums and `nb` scales in the tile.
        unsafe {
            for b in 0..nb {
                let mut q = [[zero; 8]; R];
                let mut sc = [[zero; 8]; R];
                let mut off = [zero; R];
                let mut dv = [_mm256_setzero_ps(); R];
                for r in 0..R {
                    let blk = w[r].as_ptr().wrapping_add(b * bb);
                    prefetch_ahead(blk, bb);
                    for j in 0..8 {
                        let (c, h) = (j / 2, j % 2);
                        q[r][j] = if K == PLANES || K == SHIFT_K {
                            let codes = _mm256_broadcastsi128_si256(loadu::<__m128i, u8>(
                                blk.wrapping_add(codes_at + 16 * c),
                            ));
                            let code = _mm256_and_si256(_mm256_srlv_epi32(codes, shifts[h]), mask);
                            let down = if K == PLANES {
                                let bits =
                                    loadu::<i32, u8>(blk.wrapping_add(SIGNS + 8 * c + 4 * h));
                                let bytes =
                                    _mm256_shuffle_epi8(_mm256_set1_epi32(bits), sign_bytes);
                                _mm256_cmpeq_epi8(_mm256_and_si256(bytes, bit_of_byte), bit_of_byte)
                            } else {
                                let bits = *blk.wrapping_add(SHIFTS + c) >> (4 * h);
                                let v = _mm256_set1_epi8(bits as i8);
                                _mm256_cmpeq_epi8(_mm256_and_si256(v, group_bit), group_bit)
                            };
                            // codes 4..8 of the table are the negative / shifted-down levels
                            let down4 = _mm256_and_si256(down, _mm256_set1_epi8(4));
                            _mm256_shuffle_epi8(both, _mm256_or_si256(code, down4))
                        } else {
                            let raw = loadu::<__m256i, u8>(blk.wrapping_add(codes_at + 32 * c));
                            let nib = if h == 0 {
                                raw
                            } else {
                                _mm256_srli_epi16(raw, 4)
                            };
                            _mm256_shuffle_epi8(plus, _mm256_and_si256(nib, mask))
                        };
                    }
                    let ls = odd_scales(blk.wrapping_add(SCALES));
                    // the 16 scales as bytes in both lanes (each ≤ 31)
                    let bytes = _mm256_broadcastsi128_si256(_mm_packus_epi16(
                        _mm256_castsi256_si128(ls),
                        _mm256_extracti128_si256(ls, 1),
                    ));
                    sc[r] = std::array::from_fn(|j| _mm256_shuffle_epi8(bytes, scale_idx[j]));
                    // −64 · (2ls + 1) per group of 16 against the activation sums
                    off[r] = _mm256_sub_epi16(zero, _mm256_slli_epi16(ls, 6));
                    dv[r] = _mm256_set1_ps(f16_at(blk));
                }
                for i in 0..M {
                    let x = qs.wrapping_add(i * cols + 256 * b);
                    let bs = loadu::<__m256i, i16>(bsums.wrapping_add(i * n16 + 16 * b));
                    let dx = _mm256_set1_ps(*ds.add(i * nb + b));
                    for r in 0..R {
                        let mut sumi = _mm256_madd_epi16(bs, off[r]);
                        for j in 0..8 {
                            let xj = loadu::<__m256i, i8>(x.wrapping_add(32 * j));
                            let pairs = _mm256_maddubs_epi16(q[r][j], xj);
                            sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(pairs, sc[r][j]));
                        }
                        let t = _mm256_mul_ps(_mm256_cvtepi32_ps(sumi), dv[r]);
                        acc[r][i] = _mm256_fmadd_ps(t, dx, acc[r][i]);
                    }
                }
            }
        }
        for (acc, out) in acc.iter().zip(out) {
            for (a, o) in acc.iter().zip(out.iter_mut()) {
                let h = _mm_add_ps(_mm256_castps256_ps128(*a), _mm256_extractf128_ps(*a, 1));
                let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
                *o = _mm_cvtss_f32(_mm_add_ss(h, _mm_shuffle_ps(h, h, 1)));
            }
        }
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

    /// A 16-entry byte table `64 + levels[k]` in every 128-bit lane.
    #[inline(always)]
    unsafe fn table(levels: [i8; 16]) -> __m512i {
        let t = offset(levels);
        // SAFETY: 16 bytes read from a 16-byte array; AVX-512 F is enabled in the caller.
        unsafe { _mm512_broadcast_i32x4(loadu::<__m128i, i8>(t.as_ptr())) }
    }

    /// `R` weight rows of kernel variant `K` against `M` activation rows.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c,bmi2")]
    #[allow(clippy::needless_range_loop)]
    unsafe fn codes_vnni<const M: usize, const K: u8, const R: usize>(
        w: [&[u8]; R],
        tile: &ActTile<'_>,
        out: [&mut [f32]; R],
    ) {
        // 2-bit codes (IQ2_PLANES, IQ1_SHIFT) or nibbles (IQ3_*_NIB)
        let planes = K == PLANES || K == SHIFT_K;
        let (bb, codes_at) = layout(K);
        let cols = tile.cols;
        let (nb, n16) = (cols / 256, cols / 16);
        debug_assert!(tile.m == M && tile.block == 256);
        debug_assert!(w.iter().all(|w| w.len() == nb * bb) && out.iter().all(|o| o.len() >= M));
        // SAFETY: 64 bytes read from each 64-byte row of the table.
        let perm: [__m512i; 4] =
            std::array::from_fn(|c| unsafe { loadu::<__m512i, i16>(SCALE_LANES[c].as_ptr()) });
        let pad = |l: [i8; 4]| std::array::from_fn(|k| l[k % 4]);
        // SAFETY: AVX-512 F is enabled on this function.
        let (plus, minus) = unsafe {
            match K {
                PLANES => (table(pad(LEVELS)), table(pad(LEVELS.map(|l| -l)))),
                SHIFT_K => (table(pad(SHIFT_UP)), table(pad(SHIFT_DOWN))),
                NIB_XXS_K => (table(NIB_XXS), table(NIB_XXS)),
                _ => (table(NIB_S), table(NIB_S)),
            }
        };
        // IQ2_PLANES: code bits of lane L of a broadcast chunk start at bit 2L; nibbles: the
        // high half of the register takes the high nibbles
        let shifts = if planes {
            _mm512_set_epi64(
                0x0006_0006_0006_0006,
                0x0006_0006_0006_0006,
                0x0004_0004_0004_0004,
                0x0004_0004_0004_0004,
                0x0002_0002_0002_0002,
                0x0002_0002_0002_0002,
                0,
                0,
            )
        } else {
            _mm512_set_epi64(
                0x0004_0004_0004_0004,
                0x0004_0004_0004_0004,
                0x0004_0004_0004_0004,
                0x0004_0004_0004_0004,
                0,
                0,
                0,
                0,
            )
        };
        let mask = _mm512_set1_epi8(if planes { 3 } else { 0x0F });
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
                    let blk = w[r].as_ptr().wrapping_add(b * bb);
                    prefetch_ahead(blk, bb);
                    for c in 0..4 {
                        let codes = if planes {
                            _mm512_broadcast_i32x4(loadu::<__m128i, u8>(
                                blk.wrapping_add(codes_at + 16 * c),
                            ))
                        } else {
                            _mm512_broadcast_i64x4(loadu::<__m256i, u8>(
                                blk.wrapping_add(codes_at + 32 * c),
                            ))
                        };
                        let code = _mm512_and_si512(_mm512_srlv_epi16(codes, shifts), mask);
                        let pos = _mm512_shuffle_epi8(plus, code);
                        q[r][c] = match K {
                            PLANES => {
                                let signs: __mmask64 =
                                    loadu::<u64, u8>(blk.wrapping_add(SIGNS + 8 * c));
                                _mm512_mask_shuffle_epi8(pos, signs, minus, code)
                            }
                            SHIFT_K => {
                                // the chunk's 8 groups' shift bits, each spread to 8 bytes
                                let bits = u64::from(*blk.wrapping_add(SHIFTS + c));
                                let down = _pdep_u64(bits, 0x0101_0101_0101_0101) * 0xFF;
                                _mm512_mask_shuffle_epi8(pos, down, minus, code)
                            }
                            _ => pos,
                        };
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
