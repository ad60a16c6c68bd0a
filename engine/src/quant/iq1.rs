//! ggml's 1-bit i-quants `iq1_s` and `iq1_m`: super-blocks of 256 weights whose groups of 8 are
//! rows of an 11-bit-indexed codebook of −1 / 0 / 1 (`super::iq_grid`), shifted by `±1/8` and
//! scaled per sub-block (ggml's `dequantize_row_iq1_s` / `_iq1_m`).
//!
//! - `iq1_s` (50 bytes, 1.56 bits per weight): f16 `d`; 32 bytes of index low bytes; per
//!   sub-block of 32 a 16-bit word: four 3-bit index highs, a 3-bit scale `ls` (bits 12–14) and
//!   the shift's sign (bit 15). `w = d·(2·ls + 1)·(grid ± 1/8)`.
//! - `iq1_m` (56 bytes, 1.75 bits): 32 bytes of index low bytes; 16 bytes holding, per group of
//!   8, a 3-bit index high and the shift's sign; four 16-bit words of 3-bit scales per 16 whose
//!   top nibbles together are the f16 `d`. `w = d·(2·ls + 1)·(grid ± 1/8)`.
//!
//! Both are held exactly by Q6_K (`super::recode`) as `⅛ · d·(2·ls + 1)·(8·grid ± 1)`, the ⅛
//! kept outside the blocks as the matrix's out scale, and with the same values by the smaller
//! IQ1_SHIFT of `super::iq_codes` where its kernel runs.

use super::iq_grid::Grid;
use super::recode::write_q6_k;
use half::f16;

/// Bytes of an `iq1_s` super-block.
pub const S_BYTES: usize = 50;
/// Bytes of an `iq1_m` super-block.
pub const M_BYTES: usize = 56;
/// ggml's `IQ1S_DELTA`.
const DELTA: f32 = 0.125;

fn u16_at(block: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([block[at], block[at + 1]])
}

/// One super-block decoded: `d`'s f16 bits, the scale `2·ls + 1` of each sub-block of 16, and
/// per group of 8 its grid row and whether the shift is negative.
struct Decoded {
    d: u16,
    scales: [i8; 16],
    rows: [[i8; 8]; 32],
    negative: [bool; 32],
}

fn decode_s(block: &[u8]) -> Decoded {
    let word = |ib: usize| u16_at(block, 34 + 2 * ib);
    Decoded {
        d: u16_at(block, 0),
        scales: std::array::from_fn(|s| (2 * ((word(s / 2) >> 12) & 7) + 1) as i8),
        rows: std::array::from_fn(|g| {
            let high = usize::from((word(g / 4) >> (3 * (g % 4))) & 7) << 8;
            Grid::Iq1s.row(usize::from(block[2 + g]) | high)
        }),
        negative: std::array::from_fn(|g| word(g / 4) & 0x8000 != 0),
    }
}

fn decode_m(block: &[u8]) -> Decoded {
    let sc = |k: usize| u16_at(block, 48 + 2 * k);
    let d = (sc(0) >> 12) | ((sc(1) >> 8) & 0x00F0) | ((sc(2) >> 4) & 0x0F00) | (sc(3) & 0xF000);
    // group g's index high and shift sign: nibble g % 2 of byte 32 + g / 2
    let nibble = |g: usize| block[32 + g / 2] >> (4 * (g % 2));
    Decoded {
        d,
        // sub-block of 16 s: bits 3·(s % 4) .. of word s / 4
        scales: std::array::from_fn(|s| (2 * ((sc(s / 4) >> (3 * (s % 4))) & 7) + 1) as i8),
        rows: std::array::from_fn(|g| {
            Grid::Iq1s.row(usize::from(block[g]) | usize::from(nibble(g) & 7) << 8)
        }),
        negative: std::array::from_fn(|g| nibble(g) & 0x08 != 0),
    }
}

fn dequantize(x: &Decoded, out: &mut [f32]) {
    let d = f16::from_bits(x.d).to_f32();
    for (g, y) in out.chunks_exact_mut(8).enumerate() {
        let dl = d * f32::from(x.scales[g / 2]);
        let delta = if x.negative[g] { -DELTA } else { DELTA };
        for (yj, &v) in y.iter_mut().zip(&x.rows[g]) {
            *yj = dl * (f32::from(v) + delta);
        }
    }
}

/// Eight times the block's values: the matrix keeps the 1/8 as its out scale (always exact).
fn to_q6_k(x: &Decoded, out: &mut [u8]) -> bool {
    let q = std::array::from_fn(|k| {
        let g = k / 8;
        8 * x.rows[g][k % 8] + if x.negative[g] { -1 } else { 1 }
    });
    write_q6_k(x.d, &x.scales, &q, out);
    true
}

/// The 256 values of one `iq1_s` super-block.
pub fn dequantize_s(block: &[u8], out: &mut [f32]) {
    assert!(
        block.len() == S_BYTES && out.len() == 256,
        "one iq1_s block"
    );
    dequantize(&decode_s(block), out);
}

/// The 256 values of one `iq1_m` super-block.
pub fn dequantize_m(block: &[u8], out: &mut [f32]) {
    assert!(
        block.len() == M_BYTES && out.len() == 256,
        "one iq1_m block"
    );
    dequantize(&decode_m(block), out);
}

/// An `iq1_s` block as Q6_K (of eight times its values).
pub fn s_to_q6_k(block: &[u8], out: &mut [u8]) -> bool {
    to_q6_k(&decode_s(block), out)
}

/// An `iq1_m` block as Q6_K (of eight times its values).
pub fn m_to_q6_k(block: &[u8], out: &mut [u8]) -> bool {
    to_q6_k(&decode_m(block), out)
}

/// Eight times the block's values as IQ1_SHIFT: per group of 8 its grid row and shift sign,
/// the scales as `ls` (the matrix keeps the 1/8; always exact).
fn to_shift(x: &Decoded, out: &mut [u8]) -> bool {
    let groups = std::array::from_fn(|g| (x.rows[g], x.negative[g]));
    let ls = std::array::from_fn(|s| ((x.scales[s] - 1) / 2) as u8);
    super::iq_codes::write_shift(x.d, &ls, &groups, out);
    true
}

/// An `iq1_s` block as IQ1_SHIFT (of eight times its values).
pub fn s_to_shift(block: &[u8], out: &mut [u8]) -> bool {
    to_shift(&decode_s(block), out)
}

/// An `iq1_m` block as IQ1_SHIFT (of eight times its values).
pub fn m_to_shift(block: &[u8], out: &mut [u8]) -> bool {
    to_shift(&decode_m(block), out)
}
