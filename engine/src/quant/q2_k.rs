//! ggml's `q2_K`: super-blocks of 256 weights in 16 sub-blocks of 16, each weight 2 bits, each
//! sub-block a 4-bit scale and a 4-bit min (84 bytes, 2.625 bits per weight): `scales` (16
//! bytes: the low nibble of byte `s` is sub-block `s`'s scale, the high nibble its min), `qs` (64
//! bytes: bits `2j, 2j + 1` of byte `32h + l` are weight `128h + 32j + l`), `d` and `dmin`
//! (f16). A weight is `d · sc_s · q − dmin · m_s` with `q` in 0 ..= 3 (ggml's
//! `dequantize_row_q2_K`).
//!
//! The kernels multiply Q2_K as Q4_K, with sub-blocks of 16: `Σ_s sc_s·Σ q·a` scaled by `d`
//! minus the exact integer `Σ_s m_s·Σ a` scaled by `dmin` (ggml's `vec_dot_q2_K_q8_K`).

use half::f16;

/// Bytes of one super-block.
pub const BLOCK_BYTES: usize = 84;
/// Byte offset of the 2-bit weights.
pub(crate) const QS: usize = 16;
/// Byte offset of the f16 `d`.
pub(crate) const D: usize = 80;
/// Byte offset of the f16 `dmin`.
pub(crate) const DMIN: usize = 82;

/// Sub-block `s`'s 4-bit scale and 4-bit min.
#[inline]
pub(crate) fn scale_min(block: &[u8], s: usize) -> (u8, u8) {
    (block[s] & 0x0F, block[s] >> 4)
}

/// The 2-bit weight `q` (0 ..= 3) of element `k` (0 ..= 255).
#[inline]
pub(crate) fn weight(block: &[u8], k: usize) -> u8 {
    let (h, j, l) = (k / 128, (k % 128) / 32, k % 32);
    (block[QS + 32 * h + l] >> (2 * j)) & 3
}

/// The 256 values of one super-block.
///
/// # Panics
/// When `block` is not 84 bytes or `out` not 256 values.
pub fn dequantize_block(block: &[u8], out: &mut [f32]) {
    assert!(
        block.len() == BLOCK_BYTES && out.len() == 256,
        "one q2_K block"
    );
    let half = |at: usize| f16::from_le_bytes([block[at], block[at + 1]]).to_f32();
    let (d, dmin) = (half(D), half(DMIN));
    for (k, y) in out.iter_mut().enumerate() {
        let (sc, m) = scale_min(block, k / 16);
        let (dl, ml) = (d * f32::from(sc), dmin * f32::from(m));
        *y = dl * f32::from(weight(block, k)) - ml;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_and_scales_follow_the_packing() {
        let mut block = [0u8; BLOCK_BYTES];
        // weight 128 + 64 + 5 = 197: byte 16 + 32 + 5, bits 4–5
        block[QS + 32 + 5] = 0b0011_0000;
        block[12] = 0x9A;
        for k in 0..256 {
            assert_eq!(
                weight(&block, k),
                if k == 197 { 3 } else { 0 },
                "weight {k}"
            );
        }
        assert_eq!(scale_min(&block, 12), (0xA, 0x9));
        block[D..D + 2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        block[DMIN..DMIN + 2].copy_from_slice(&f16::from_f32(0.25).to_le_bytes());
        let mut out = [0.0f32; 256];
        dequantize_block(&block, &mut out);
        // sub-block 12 holds 192 ..= 207
        assert_eq!(out[197], 0.5 * 10.0 * 3.0 - 0.25 * 9.0);
        assert_eq!(out[196], -0.25 * 9.0);
        assert_eq!(out[0], 0.0);
    }
}
