//! ggml's 3-bit i-quants `iq3_xxs` and `iq3_s`: super-blocks of 256 weights whose groups of 4
//! magnitudes are rows of a codebook (`super::iq_grid`), with a sign per weight and a 4-bit scale
//! per sub-block of 32 (ggml's `dequantize_row_iq3_xxs` / `_iq3_s`).
//!
//! - `iq3_xxs` (98 bytes, 3.06 bits per weight): f16 `d`; 64 bytes of 8-bit grid indices (two
//!   per group of 8); per sub-block a 32-bit word holding four 7-bit sign indices (expanded by
//!   `ksigns`) and the scale `ls` in its top 4 bits. `w = d·(0.5 + ls)·0.5·grid·sign` with grid
//!   magnitudes 4 … 62 (all even).
//! - `iq3_s` (110 bytes, 3.44 bits): f16 `d`; 64 bytes of index low bits, 8 bytes of ninth
//!   bits, 32 bytes of explicit sign bits, 4 bytes of 4-bit scales. `w = d·(1 + 2·ls)·grid·sign`
//!   with odd magnitudes 1 … 15.
//!
//! Both are held exactly by Q6_K (`super::recode`): IQ3_XXS as `½ · d·(2·ls + 1)·(±grid/2)` (the
//! ½ kept outside the blocks, as the matrix's out scale), IQ3_S as `d·(2·ls + 1)·(±grid)`, each
//! sub-block of 32 two Q6_K sub-blocks of 16; and with the same values by the smaller
//! IQ3_XXS_NIB / IQ3_S_NIB of `super::iq_codes` (4-bit codes), where its kernel runs.

use super::iq_grid::{Grid, ksigns};
use super::recode::write_q6_k;
use half::f16;

/// Bytes of an `iq3_xxs` super-block.
pub const XXS_BYTES: usize = 98;
/// Bytes of an `iq3_s` super-block.
pub const S_BYTES: usize = 110;

fn d_of(block: &[u8]) -> (u16, f32) {
    let bits = u16::from_le_bytes([block[0], block[1]]);
    (bits, f16::from_bits(bits).to_f32())
}

/// Sub-block `ib`'s scale-and-signs word of an `iq3_xxs` block.
fn xxs_word(block: &[u8], ib: usize) -> u32 {
    let at = 66 + 4 * ib;
    u32::from_le_bytes([block[at], block[at + 1], block[at + 2], block[at + 3]])
}

/// The signed grid value of weight `k` of an `iq3_xxs` block and its sub-block's scale `ls`.
fn xxs_weight(block: &[u8], k: usize) -> (i8, u32) {
    let (ib, l, j) = (k / 32, (k % 32) / 8, k % 8);
    let word = xxs_word(block, ib);
    let index = block[2 + 8 * ib + 2 * l + j / 4];
    let magnitude = Grid::Iq3xxs.row::<4>(usize::from(index))[j % 4];
    let negative = ksigns(word >> (7 * l)) >> j & 1 == 1;
    (if negative { -magnitude } else { magnitude }, word >> 28)
}

/// The 256 values of one `iq3_xxs` super-block (`db·(±grid)` with ggml's `db = d·(0.5 + ls)·0.5`;
/// a sign multiplies exactly, so this is `dequantize_row_iq3_xxs` bit for bit).
pub fn dequantize_xxs(block: &[u8], out: &mut [f32]) {
    assert!(
        block.len() == XXS_BYTES && out.len() == 256,
        "one iq3_xxs block"
    );
    let (_, d) = d_of(block);
    for (k, y) in out.iter_mut().enumerate() {
        let (v, ls) = xxs_weight(block, k);
        *y = d * (0.5 + ls as f32) * 0.5 * f32::from(v);
    }
}

/// An `iq3_xxs` block as Q6_K of twice its values: `d`, scales `2·ls + 1`, weights `±grid/2`
/// (the matrix keeps the factor 1/2 as its out scale; always exact).
pub fn xxs_to_q6_k(block: &[u8], out: &mut [u8]) -> bool {
    let (d, _) = d_of(block);
    let scales = std::array::from_fn(|s| (2 * (xxs_word(block, s / 2) >> 28) + 1) as i8);
    let q = std::array::from_fn(|k| xxs_weight(block, k).0 / 2);
    write_q6_k(d, &scales, &q, out);
    true
}

/// Sub-block `ib`'s 4-bit scale of an `iq3_s` block.
fn s_scale(block: &[u8], ib: usize) -> u8 {
    (block[106 + ib / 2] >> (4 * (ib % 2))) & 0x0F
}

/// The signed grid value of weight `k` of an `iq3_s` block.
fn s_weight(block: &[u8], k: usize) -> i8 {
    let (ib, g, j) = (k / 32, (k % 32) / 4, k % 4);
    let high = usize::from(block[66 + ib] >> g & 1) << 8;
    let index = usize::from(block[2 + 8 * ib + g]) | high;
    let magnitude = Grid::Iq3s.row::<4>(index)[j];
    let negative = block[74 + 4 * ib + g / 2] >> (4 * (g % 2) + j) & 1 == 1;
    if negative { -magnitude } else { magnitude }
}

/// The 256 values of one `iq3_s` super-block (`d·(1 + 2·ls)·(±grid)`, bit for bit as
/// `dequantize_row_iq3_s`).
pub fn dequantize_s(block: &[u8], out: &mut [f32]) {
    assert!(
        block.len() == S_BYTES && out.len() == 256,
        "one iq3_s block"
    );
    let (_, d) = d_of(block);
    for (k, y) in out.iter_mut().enumerate() {
        let db = d * f32::from(1 + 2 * s_scale(block, k / 32));
        *y = db * f32::from(s_weight(block, k));
    }
}

/// An `iq3_s` block as Q6_K: `d`, scales `2·ls + 1`, weights `±grid` (always exact).
pub fn s_to_q6_k(block: &[u8], out: &mut [u8]) -> bool {
    let (bits, _) = d_of(block);
    let scales = std::array::from_fn(|s| (2 * s_scale(block, s / 2) + 1) as i8);
    let q = std::array::from_fn(|k| s_weight(block, k));
    write_q6_k(bits, &scales, &q, out);
    true
}

/// An `iq3_xxs` block as IQ3_XXS_NIB: `d`, scales `ls`, weights `±grid/2` — the values of
/// [`xxs_to_q6_k`]'s copy (the matrix keeps the 1/2), in 4.31 bits per weight.
pub fn xxs_to_nib(block: &[u8], out: &mut [u8]) -> bool {
    let (d, _) = d_of(block);
    let ls = std::array::from_fn(|s| (xxs_word(block, s / 2) >> 28) as u8);
    let q = std::array::from_fn(|k| xxs_weight(block, k).0 / 2);
    super::iq_codes::write_nibbles(super::QuantFormat::Iq3XxsNib, d, &ls, &q, out);
    true
}

/// An `iq3_s` block as IQ3_S_NIB: `d`, scales `ls`, weights `±grid` (always exact).
pub fn s_to_nib(block: &[u8], out: &mut [u8]) -> bool {
    let (bits, _) = d_of(block);
    let ls = std::array::from_fn(|s| s_scale(block, s / 2));
    let q = std::array::from_fn(|k| s_weight(block, k));
    super::iq_codes::write_nibbles(super::QuantFormat::Iq3SNib, bits, &ls, &q, out);
    true
}
