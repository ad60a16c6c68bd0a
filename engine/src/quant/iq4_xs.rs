//! ggml's `iq4_xs`: super-blocks of 256 weights in 8 sub-blocks of 32, each weight a 4-bit index
//! into `iq4_nl`'s grid of 16 int8 levels (`super::iq4_nl::GRID`), each sub-block a 6-bit scale
//! (136 bytes, 4.25 bits per weight): `d` (f16), `scales_h` (u16: bits `2j, 2j + 1` are the high
//! two bits of sub-block `j`'s scale), `scales_l` (4 bytes: nibble `j` is its low four bits), then
//! 128 bytes of indices laid out as `iq4_nl`'s per sub-block (byte `16j + i` holds index `i` of
//! sub-block `j` in its low nibble and index `16 + i` in its high one). A weight is
//! `d · (ls_j − 32) · GRID[q]` (ggml's `dequantize_row_iq4_xs`). [`quantize_block`] is llama.cpp's
//! weight quantizer (`quantize_iq4_xs` without an importance matrix).

use half::f16;

use super::iq4_nl::{dequantize_indices, nearest, pack_indices, weight_scale};

/// Bytes of one super-block.
pub const BLOCK_BYTES: usize = 136;

/// Sub-block `j`'s signed scale `ls_j − 32` (−32 ..= 31) from the block's packed 6-bit scales.
#[inline]
pub fn sub_scale(block: &[u8], j: usize) -> i8 {
    let high = (u16::from_le_bytes([block[2], block[3]]) >> (2 * j)) & 3;
    let low = (block[4 + j / 2] >> (4 * (j % 2))) & 0x0F;
    (u16::from(low) | (high << 4)) as i8 - 32
}

/// Pack the 8 signed sub-block scales (−32 ..= 31) into `block`'s `scales_h` and `scales_l`
/// (the inverse of [`sub_scale`]).
pub fn set_sub_scales(block: &mut [u8], scales: &[i8; 8]) {
    let mut high = 0u16;
    block[4..8].fill(0);
    for (j, &s) in scales.iter().enumerate() {
        let ls = (i16::from(s) + 32) as u8 & 63;
        high |= u16::from(ls >> 4) << (2 * j);
        block[4 + j / 2] |= (ls & 0x0F) << (4 * (j % 2));
    }
    block[2..4].copy_from_slice(&high.to_le_bytes());
}

/// One super-block of 256 weights into `out` (136 bytes), as llama.cpp's `quantize_iq4_xs` makes
/// it without an importance matrix (what `llama-quantize … IQ4_XS` runs): each sub-block of 32
/// takes IQ4_NL's weight scale search (`super::iq4_nl::weight_scale`); the super-block scale is
/// `d = −s / 32` for the sub-block scale `s` of largest magnitude (the first of equals); each
/// sub-block's 6-bit scale is `round(s_j / d)` (half to even, clamped to −32 ..= 31) and its
/// indices the levels nearest to `x / (d · l_j)`, all under the unrounded `d`. An all-zero
/// super-block is `d = −0` with every index at level 8.
///
/// # Panics
/// When `x` is not 256 values or `out` not 136 bytes.
pub fn quantize_block(x: &[f32], out: &mut [u8]) {
    assert!(
        x.len() == 256 && out.len() == BLOCK_BYTES,
        "one iq4_xs block"
    );
    let scales: [f32; 8] = std::array::from_fn(|j| weight_scale(&x[32 * j..32 * (j + 1)]));
    let max_scale = scales
        .iter()
        .fold(0.0f32, |m, &s| if s.abs() > m.abs() { s } else { m });
    let d = -max_scale / 32.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut ls = [0i8; 8];
    for (j, (l, &s)) in ls.iter_mut().zip(&scales).enumerate() {
        *l = ((id * s).round_ties_even() as i32).clamp(-32, 31) as i8;
        let dl = d * f32::from(*l);
        let idl = if dl != 0.0 { 1.0 / dl } else { 0.0 };
        let xb = &x[32 * j..32 * (j + 1)];
        let q: [u8; 32] = std::array::from_fn(|i| nearest(idl * xb[i]));
        pack_indices(&q, &mut out[8 + 16 * j..8 + 16 * (j + 1)]);
    }
    out[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
    set_sub_scales(out, &ls);
}

/// The 256 values of one super-block.
///
/// # Panics
/// When `block` is not 136 bytes or `out` not 256 values.
pub fn dequantize_block(block: &[u8], out: &mut [f32]) {
    assert!(
        block.len() == BLOCK_BYTES && out.len() == 256,
        "one iq4_xs block"
    );
    let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
    for (j, y) in out.chunks_exact_mut(32).enumerate() {
        let dl = d * f32::from(sub_scale(block, j));
        dequantize_indices(&block[8 + 16 * j..8 + 16 * (j + 1)], dl, y);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_scales_round_trip_over_their_whole_range() {
        let mut block = [0xA5u8; BLOCK_BYTES];
        for first in -32i8..=31 {
            let scales: [i8; 8] = std::array::from_fn(|j| {
                let v = i16::from(first) + 9 * j as i16;
                ((v + 32).rem_euclid(64) - 32) as i8
            });
            set_sub_scales(&mut block, &scales);
            for (j, &s) in scales.iter().enumerate() {
                assert_eq!(sub_scale(&block, j), s, "sub-block {j}");
            }
        }
        // all bits set: every ls is 63, every scale 31
        let ones = [0xFFu8; BLOCK_BYTES];
        assert!((0..8).all(|j| sub_scale(&ones, j) == 31));
    }
}
