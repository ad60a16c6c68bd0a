//! ggml's 2-bit i-quants `iq2_xxs`, `iq2_xs` and `iq2_s`: super-blocks of 256 weights whose
//! groups of 8 magnitudes (8, 25 or 43) are rows of a codebook (`super::iq_grid`), with a sign
//! per weight and 4-bit scales (ggml's `dequantize_row_iq2_xxs` / `_iq2_xs` / `_iq2_s`).
//! `w = d·(0.5 + ls)·0.25·grid·sign` in all three.
//!
//! - `iq2_xxs` (66 bytes, 2.06 bits per weight): f16 `d`; per sub-block of 32 two 32-bit words,
//!   the first four 8-bit grid indices, the second four 7-bit sign indices (expanded by
//!   `ksigns`) and the scale in its top 4 bits.
//! - `iq2_xs` (74 bytes, 2.31 bits): f16 `d`; per group of 8 a 16-bit word, a 9-bit grid index
//!   and a 7-bit sign index; 8 bytes of two 4-bit scales each (one per 16).
//! - `iq2_s` (82 bytes, 2.56 bits): f16 `d`; 32 bytes of index low bytes, 32 bytes of explicit
//!   sign bits, 8 bytes of 2-bit index highs, 8 bytes of scales per 16.
//!
//! No ggml kernel format holds these values exactly (a magnitude of 43 under a 4-bit scale
//! needs more than Q6_K's 6 bits): the loader copies the blocks into specsweep's own
//! `QuantFormat::Iq2Planes` (`to_planes`, `super::iq_codes`), which has kernels.

use super::iq_grid::{Grid, ksigns, sign};
use crate::gguf::GgmlType;
use half::f16;

/// Bytes of an `iq2_xxs` super-block.
pub const XXS_BYTES: usize = 66;
/// Bytes of an `iq2_xs` super-block.
pub const XS_BYTES: usize = 74;
/// Bytes of an `iq2_s` super-block.
pub const S_BYTES: usize = 82;

fn d_of(block: &[u8]) -> f32 {
    f16::from_le_bytes([block[0], block[1]]).to_f32()
}

/// `d·(0.5 + ls)·0.25` in ggml's order of operations.
fn sub_scale(d: f32, ls: u8) -> f32 {
    d * (0.5 + f32::from(ls)) * 0.25
}

/// Group `g` (0..32) of 8 weights of an IQ2 super-block of type `ty` (`block` holds its
/// bytes): its codebook row (magnitudes 8 / 25 / 43), sign bits (bit j set: weight j is
/// negative) and 4-bit scale `ls`. The one reading of the three layouts, for the dequantizers
/// and [`to_planes`].
fn group(ty: GgmlType, block: &[u8], g: usize) -> ([i8; 8], u8, u8) {
    match ty {
        GgmlType::IQ2_XXS => {
            let at = 2 + 8 * (g / 4);
            let word =
                u32::from_le_bytes([block[at + 4], block[at + 5], block[at + 6], block[at + 7]]);
            let row = Grid::Iq2xxs.row(usize::from(block[at + g % 4]));
            (row, ksigns(word >> (7 * (g % 4))), (word >> 28) as u8)
        }
        GgmlType::IQ2_XS => {
            let word = u16::from_le_bytes([block[2 + 2 * g], block[3 + 2 * g]]);
            let ls = block[66 + g / 4] >> (4 * (g / 2 % 2)) & 0x0F;
            let row = Grid::Iq2xs.row(usize::from(word & 511));
            (row, ksigns(u32::from(word >> 9)), ls)
        }
        GgmlType::IQ2_S => {
            let high = usize::from(block[66 + g / 4] >> (2 * (g % 4)) & 3) << 8;
            let ls = block[74 + g / 4] >> (4 * (g / 2 % 2)) & 0x0F;
            let row = Grid::Iq2s.row(usize::from(block[2 + g]) | high);
            (row, block[34 + g], ls)
        }
        other => unreachable!("{} is not an IQ2 type", other.name()),
    }
}

/// The 256 values `d·(0.5 + ls)·0.25·grid·sign` of one super-block of type `ty`.
fn dequantize(ty: GgmlType, block: &[u8], out: &mut [f32]) {
    assert!(
        block.len() == ty.type_size() && out.len() == 256,
        "one {} block",
        ty.name()
    );
    let d = d_of(block);
    for (g, y) in out.chunks_exact_mut(8).enumerate() {
        let (row, signs, ls) = group(ty, block, g);
        let db = sub_scale(d, ls);
        for (j, yj) in y.iter_mut().enumerate() {
            *yj = db * f32::from(row[j]) * sign(signs, j);
        }
    }
}

/// The 256 values of one `iq2_xxs` super-block.
pub fn dequantize_xxs(block: &[u8], out: &mut [f32]) {
    dequantize(GgmlType::IQ2_XXS, block, out);
}

/// The 256 values of one `iq2_xs` super-block.
pub fn dequantize_xs(block: &[u8], out: &mut [f32]) {
    dequantize(GgmlType::IQ2_XS, block, out);
}

/// The 256 values of one `iq2_s` super-block.
pub fn dequantize_s(block: &[u8], out: &mut [f32]) {
    dequantize(GgmlType::IQ2_S, block, out);
}

/// One IQ2 super-block of type `ty` as a `QuantFormat::Iq2Planes` block holding exactly its
/// values times 8 (`d`, the scales `ls`, signed magnitudes; the matrix keeps an out scale of
/// 1/8): `d·(0.5 + ls)·0.25·g` is the exact product `d·(2ls + 1)·g / 8` in f32 (11 + 5 + 6
/// significant bits), so every value dequantizes to the same bits.
fn to_planes(ty: GgmlType, block: &[u8], out: &mut [u8]) -> bool {
    let mut groups = [([0i8; 8], 0u8); 32];
    let mut scales = [0u8; 16];
    for (g, slot) in groups.iter_mut().enumerate() {
        let (row, signs, ls) = group(ty, block, g);
        *slot = (row, signs);
        scales[g / 2] = ls;
    }
    super::iq_codes::write_planes(
        u16::from_le_bytes([block[0], block[1]]),
        &scales,
        &groups,
        out,
    );
    true
}

/// [`to_planes`] for `iq2_xxs` (a `super::recode::Recode` conversion).
pub(crate) fn xxs_to_planes(block: &[u8], out: &mut [u8]) -> bool {
    to_planes(GgmlType::IQ2_XXS, block, out)
}

/// [`to_planes`] for `iq2_xs`.
pub(crate) fn xs_to_planes(block: &[u8], out: &mut [u8]) -> bool {
    to_planes(GgmlType::IQ2_XS, block, out)
}

/// [`to_planes`] for `iq2_s`.
pub(crate) fn s_to_planes(block: &[u8], out: &mut [u8]) -> bool {
    to_planes(GgmlType::IQ2_S, block, out)
}
