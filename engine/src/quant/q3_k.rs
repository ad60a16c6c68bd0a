//! ggml's `q3_K`: super-blocks of 256 weights in 16 sub-blocks of 16, each weight 3 bits, each
//! sub-block a 6-bit scale (110 bytes, 3.4375 bits per weight): `hmask` (32 bytes: bit `4h + j`
//! of byte `l` is the high bit of weight `128h + 32j + l`), `qs` (64 bytes: bits `2j, 2j + 1` of
//! byte `32h + l` are its low two bits), `scales` (12 bytes of packed 6-bit values), `d` (f16).
//! A weight is `d · (sc_s − 32) · (q − 4)` with `q = low + 4·high` in 0 ..= 7 and `s` its
//! sub-block (ggml's `dequantize_row_q3_K`).
//!
//! The kernels take Q3_K as Q6_K, exactly: Q6_K's weight is `d · sc · (q6 − 32)` over the same 16
//! sub-blocks of 16 with i8 scales, so `q6 = q + 28` and `sc = sc_s − 32` give the same values
//! bit for bit ([`to_q6_k`]) at 210 instead of 110 bytes per 256 weights.

use half::f16;

/// Bytes of one super-block.
pub const BLOCK_BYTES: usize = 110;

/// The 16 sub-block scales `sc_s − 32` (−32 ..= 31), unpacked from the 12 bytes at 96: the low
/// four bits of scales 0–7 / 8–15 are the low / high nibbles of bytes 0–7, their high two bits
/// are the bit pairs of bytes 8–11.
pub fn scales(block: &[u8]) -> [i8; 16] {
    let packed = &block[96..108];
    std::array::from_fn(|s| {
        let low = if s < 8 {
            packed[s] & 0x0F
        } else {
            packed[s - 8] >> 4
        };
        let high = (packed[8 + s % 4] >> (2 * (s / 4))) & 3;
        (low | (high << 4)) as i8 - 32
    })
}

/// Pack 16 signed sub-block scales (−32 ..= 31) into the 12 bytes at 96 (the inverse of
/// [`scales`]).
pub fn set_scales(block: &mut [u8], sc: &[i8; 16]) {
    let packed = &mut block[96..108];
    packed.fill(0);
    for (s, &v) in sc.iter().enumerate() {
        let ls = (i16::from(v) + 32) as u8 & 63;
        if s < 8 {
            packed[s] |= ls & 0x0F;
        } else {
            packed[s - 8] |= (ls & 0x0F) << 4;
        }
        packed[8 + s % 4] |= (ls >> 4) << (2 * (s / 4));
    }
}

/// The 3-bit weight `q` (0 ..= 7) of element `k` (0 ..= 255).
#[inline]
pub(crate) fn weight(block: &[u8], k: usize) -> u8 {
    let (h, j, l) = (k / 128, (k % 128) / 32, k % 32);
    let low = (block[32 + 32 * h + l] >> (2 * j)) & 3;
    let high = (block[l] >> (4 * h + j)) & 1;
    low | (high << 2)
}

/// The 256 values of one super-block.
///
/// # Panics
/// When `block` is not 110 bytes or `out` not 256 values.
pub fn dequantize_block(block: &[u8], out: &mut [f32]) {
    assert!(
        block.len() == BLOCK_BYTES && out.len() == 256,
        "one q3_K block"
    );
    let d = f16::from_le_bytes([block[108], block[109]]).to_f32();
    let sc = scales(block);
    for (k, y) in out.iter_mut().enumerate() {
        let dl = d * f32::from(sc[k / 16]);
        *y = dl * f32::from(weight(block, k) as i8 - 4);
    }
}

/// One super-block as the Q6_K super-block of the same values (see the module docs; always
/// exact, so always `true`, the signature of `super::recode::Recode::convert`).
///
/// # Panics
/// When `block` is not 110 bytes or `out` not 210.
pub fn to_q6_k(block: &[u8], out: &mut [u8]) -> bool {
    assert_eq!(block.len(), BLOCK_BYTES, "one q3_K block");
    let q = std::array::from_fn(|k| weight(block, k) as i8 - 4);
    let d = u16::from_le_bytes([block[108], block[109]]);
    super::recode::write_q6_k(d, &scales(block), &q, out);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_pack_back_to_the_same_bytes() {
        let mut s = 0xC0DE_u64;
        for _ in 0..16 {
            let block: Vec<u8> = (0..BLOCK_BYTES)
                .map(|_| {
                    s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    (s >> 33) as u8
                })
                .collect();
            let mut again = block.clone();
            set_scales(&mut again, &scales(&block));
            assert_eq!(again, block);
        }
    }

    #[test]
    fn scales_cover_their_range_and_follow_the_packing() {
        let mut block = [0u8; BLOCK_BYTES];
        assert!(scales(&block).iter().all(|&s| s == -32));
        block[96..108].fill(0xFF);
        assert!(scales(&block).iter().all(|&s| s == 31));
        // scale 9: low nibble in the high half of byte 1, high bits in bits 4–5 of byte 9
        block[96..108].fill(0);
        block[97] = 0x50;
        block[105] = 0x20;
        let sc = scales(&block);
        assert_eq!(sc[9], (0x5 | (2 << 4)) - 32);
        assert!(sc.iter().enumerate().all(|(s, &v)| s == 9 || v == -32));
    }
}
