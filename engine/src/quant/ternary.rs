//! ggml's ternary types `tq1_0` and `tq2_0` (BitNet b1.58 / TriLM checkpoints): super-blocks of
//! 256 weights `d·(q − 1)` with `q` in 0 ..= 2 and one f16 `d` (ggml's `dequantize_row_tq1_0` /
//! `_tq2_0`).
//!
//! - `tq1_0` (54 bytes, 1.69 bits per weight): five base-3 digits per byte, stored as the
//!   fraction `⌈digits·256/243⌉` so that multiplying by 3ⁿ (wrapping in 8 bits) and taking the
//!   top bits of `3·byte` yields digit n: 32 bytes for weights 0–159 (digit n of byte m is weight
//!   `32n + m`), 16 bytes for weights 160–239 (`160 + 16n + m`), and 4 bytes holding four digits
//!   each for weights 240–255 (`240 + 4n + m`); then `d`.
//! - `tq2_0` (66 bytes, 2.06 bits): 2-bit `q`, bits `2l, 2l + 1` of byte `32j + m` being weight
//!   `128j + 32l + m`; then `d`.
//!
//! Both are held exactly by Q2_K (`super::recode`) with every sub-block's scale and min 1 under
//! `d = dmin`: `d·q − d`.

use super::recode::write_q2_k_unit;
use half::f16;

/// Bytes of a `tq1_0` super-block.
pub const TQ1_BYTES: usize = 54;
/// Bytes of a `tq2_0` super-block.
pub const TQ2_BYTES: usize = 66;

/// Digit `n` of a base-3 byte (its `q`, 0 ..= 2).
fn digit(byte: u8, n: u32) -> u8 {
    let q = byte.wrapping_mul(3u8.pow(n));
    ((u16::from(q) * 3) >> 8) as u8
}

fn tq1_digits(block: &[u8]) -> [u8; 256] {
    let mut q = [0u8; 256];
    let mut k = 0;
    for (bytes, digits) in [(&block[0..32], 5), (&block[32..48], 5), (&block[48..52], 4)] {
        for n in 0..digits {
            for &b in bytes {
                q[k] = digit(b, n);
                k += 1;
            }
        }
    }
    debug_assert_eq!(k, 256);
    q
}

fn tq2_digits(block: &[u8]) -> [u8; 256] {
    std::array::from_fn(|k| {
        let (j, l, m) = (k / 128, (k % 128) / 32, k % 32);
        (block[32 * j + m] >> (2 * l)) & 3
    })
}

fn dequantize(q: &[u8; 256], d_bits: u16, out: &mut [f32]) {
    let d = f16::from_bits(d_bits).to_f32();
    for (y, &v) in out.iter_mut().zip(q) {
        *y = f32::from(i16::from(v) - 1) * d;
    }
}

fn d_at(block: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([block[at], block[at + 1]])
}

/// The 256 values of one `tq1_0` super-block.
pub fn dequantize_tq1(block: &[u8], out: &mut [f32]) {
    assert!(
        block.len() == TQ1_BYTES && out.len() == 256,
        "one tq1_0 block"
    );
    dequantize(&tq1_digits(block), d_at(block, 52), out);
}

/// The 256 values of one `tq2_0` super-block.
pub fn dequantize_tq2(block: &[u8], out: &mut [f32]) {
    assert!(
        block.len() == TQ2_BYTES && out.len() == 256,
        "one tq2_0 block"
    );
    dequantize(&tq2_digits(block), d_at(block, 64), out);
}

/// A `tq1_0` block as Q2_K (always exact).
pub fn tq1_to_q2_k(block: &[u8], out: &mut [u8]) -> bool {
    write_q2_k_unit(d_at(block, 52), &tq1_digits(block), out);
    true
}

/// A `tq2_0` block as Q2_K (always exact; a stored 3, which ggml's quantizer never writes, stays
/// `2·d` in both).
pub fn tq2_to_q2_k(block: &[u8], out: &mut [u8]) -> bool {
    write_q2_k_unit(d_at(block, 64), &tq2_digits(block), out);
    true
}
