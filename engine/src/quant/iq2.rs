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
//! No kernel format holds these values exactly (a magnitude of 43 under a 4-bit scale needs
//! more than Q6_K's 6 bits), so the engine keeps IQ2 tensors as f32 (`crate::gguf`).

use super::iq_grid::{Grid, ksigns, sign};
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
fn sub_scale(d: f32, ls: u32) -> f32 {
    d * (0.5 + ls as f32) * 0.25
}

/// Eight weights `db·grid·sign` of one group.
fn group(y: &mut [f32], db: f32, row: [i8; 8], signs: u8) {
    for (j, yj) in y.iter_mut().enumerate() {
        *yj = db * f32::from(row[j]) * sign(signs, j);
    }
}

/// The 256 values of one `iq2_xxs` super-block.
pub fn dequantize_xxs(block: &[u8], out: &mut [f32]) {
    assert!(
        block.len() == XXS_BYTES && out.len() == 256,
        "one iq2_xxs block"
    );
    let d = d_of(block);
    for (ib, y) in out.chunks_exact_mut(32).enumerate() {
        let at = 2 + 8 * ib;
        let word = u32::from_le_bytes([block[at + 4], block[at + 5], block[at + 6], block[at + 7]]);
        let db = sub_scale(d, word >> 28);
        for (l, y) in y.chunks_exact_mut(8).enumerate() {
            let row = Grid::Iq2xxs.row(usize::from(block[at + l]));
            group(y, db, row, ksigns(word >> (7 * l)));
        }
    }
}

/// The 256 values of one `iq2_xs` super-block.
pub fn dequantize_xs(block: &[u8], out: &mut [f32]) {
    assert!(
        block.len() == XS_BYTES && out.len() == 256,
        "one iq2_xs block"
    );
    let d = d_of(block);
    for (g, y) in out.chunks_exact_mut(8).enumerate() {
        let word = u16::from_le_bytes([block[2 + 2 * g], block[3 + 2 * g]]);
        let ls = block[66 + g / 4] >> (4 * (g / 2 % 2)) & 0x0F;
        let row = Grid::Iq2xs.row(usize::from(word & 511));
        group(
            y,
            sub_scale(d, u32::from(ls)),
            row,
            ksigns(u32::from(word >> 9)),
        );
    }
}

/// The 256 values of one `iq2_s` super-block.
pub fn dequantize_s(block: &[u8], out: &mut [f32]) {
    assert!(
        block.len() == S_BYTES && out.len() == 256,
        "one iq2_s block"
    );
    let d = d_of(block);
    for (g, y) in out.chunks_exact_mut(8).enumerate() {
        let high = usize::from(block[66 + g / 4] >> (2 * (g % 4)) & 3) << 8;
        let ls = block[74 + g / 4] >> (4 * (g / 2 % 2)) & 0x0F;
        let row = Grid::Iq2s.row(usize::from(block[2 + g]) | high);
        group(y, sub_scale(d, u32::from(ls)), row, block[34 + g]);
    }
}
