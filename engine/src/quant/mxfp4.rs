//! The OCP microscaling format MXFP4 as ggml stores it (`block_mxfp4`, gpt-oss checkpoints and
//! `llama-quantize … MXFP4_MOE`): blocks of 32 weights, an E8M0 scale byte `e` and 16 bytes of
//! 4-bit E2M1 codes (low nibbles weights 0–15, high nibbles 16–31). ggml keeps the codes doubled
//! (`kvalues_mxfp4`: 0, 1, 2, 3, 4, 6, 8, 12 and their negatives) and halves the scale:
//! `w = 2^(e − 128)·kvalue` (`dequantize_row_mxfp4`).
//!
//! Held exactly by Q8_0 (`super::recode`) while `2^(e − 128)` is an f16 (e in 104 ..= 143, scales
//! 2⁻²⁴ … 2¹⁵); blocks outside that range make the caller keep the tensor as f32.

use half::f16;

/// Bytes of one block.
pub const BLOCK_BYTES: usize = 17;
/// ggml's `kvalues_mxfp4`: twice the E2M1 values of the 16 codes.
const KVALUES: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// ggml's `ggml_e8m0_to_fp32_half`: `2^(e − 128)`, subnormal for `e < 2`.
fn scale(e: u8) -> f32 {
    let bits = if e < 2 {
        0x0020_0000u32 << e
    } else {
        u32::from(e - 1) << 23
    };
    f32::from_bits(bits)
}

fn code(block: &[u8], j: usize) -> i8 {
    let byte = block[1 + j % 16];
    KVALUES[usize::from(if j < 16 { byte & 0x0F } else { byte >> 4 })]
}

/// The 32 values of one block.
pub fn dequantize_block(block: &[u8], out: &mut [f32]) {
    assert!(
        block.len() == BLOCK_BYTES && out.len() == 32,
        "one mxfp4 block"
    );
    let d = scale(block[0]);
    for (j, y) in out.iter_mut().enumerate() {
        *y = f32::from(code(block, j)) * d;
    }
}

/// A block as Q8_0 (`d = 2^(e − 128)`, `q` = the doubled code); `false` when that scale is not
/// an f16.
pub fn to_q8_0(block: &[u8], out: &mut [u8]) -> bool {
    let d = scale(block[0]);
    let h = f16::from_f32(d);
    if h.to_f32() != d {
        return false;
    }
    out[..2].copy_from_slice(&h.to_le_bytes());
    for j in 0..32 {
        out[2 + j] = code(block, j) as u8;
    }
    true
}
