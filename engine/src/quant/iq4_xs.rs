//! ggml's `iq4_xs`: super-blocks of 256 weights in 8 sub-blocks of 32, each weight a 4-bit index
//! into `iq4_nl`'s grid of 16 int8 levels (`super::iq4_nl::GRID`), each sub-block a 6-bit scale
//! (136 bytes, 4.25 bits per weight): `d` (f16), `scales_h` (u16: bits `2j, 2j + 1` are the high
//! two bits of sub-block `j`'s scale), `scales_l` (4 bytes: nibble `j` is its low four bits), then
//! 128 bytes of indices laid out as `iq4_nl`'s per sub-block (byte `16j + i` holds index `i` of
//! sub-block `j` in its low nibble and index `16 + i` in its high one). A weight is
//! `d · (ls_j − 32) · GRID[q]` (ggml's `dequantize_row_iq4_xs`). Loaded from GGUF files only.

use half::f16;

use super::iq4_nl::GRID;

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
        let qs = &block[8 + 16 * j..8 + 16 * (j + 1)];
        for (i, &b) in qs.iter().enumerate() {
            y[i] = dl * f32::from(GRID[usize::from(b & 0x0F)]);
            y[16 + i] = dl * f32::from(GRID[usize::from(b >> 4)]);
        }
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
