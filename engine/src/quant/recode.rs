//! Exact re-encodings of GGUF block types that have no kernels of their own into formats that
//! do: IQ2_XXS, IQ2_XS and IQ2_S into specsweep's IQ2_PLANES and IQ3_XXS / IQ3_S into its
//! IQ3_XXS_NIB / IQ3_S_NIB (`super::iq_codes`, where their vector kernel runs; IQ3 into Q6_K
//! elsewhere), IQ1_S and IQ1_M into its IQ1_SHIFT (Q6_K elsewhere), TQ1_0 and TQ2_0 into
//! Q2_K, MXFP4 into Q8_0 (and Q3_K into Q6_K where it is not interleaved).
//!
//! Each source block is decoded to one f16 scale, small integer sub-block scales and small
//! integer weights whose product is the block's value exactly, and written in the target's
//! layout; a power-of-two factor the target's f16 scale cannot take exactly (IQ3_XXS's 1/2,
//! IQ1's 1/8: small super-block scales would turn subnormal) stays outside the blocks as the
//! matrix's [`Recode::out_scale`]. [`Recode::convert`] says when a block cannot be held exactly
//! (an MXFP4 scale outside f16's range), and the caller then keeps the tensor as f32 instead.
//! The copies cost more memory than the source (Q6_K: 210 bytes per 256 weights against 50–110)
//! but run on the vector kernels, and every value dequantizes to the same f32 as the source
//! block (tests below).

use super::format::QuantFormat;
use crate::gguf::GgmlType;

/// How blocks of one GGUF type become blocks of a kernel format.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Recode {
    /// The format the copies are in.
    pub target: QuantFormat,
    /// Bytes of one source block (`target.block_bytes()` per target block of as many weights).
    pub from_bytes: usize,
    /// The power of two the target blocks' values are multiplied by
    /// (`QuantMatrix::with_out_scale`): IQ3_XXS's `1/2` and IQ1's `1/8`, which moved into the
    /// f16 super-block scale would make small scales subnormal and inexact.
    pub out_scale: f32,
    /// Write one source block's values into one target block; `false` when they cannot be held
    /// exactly.
    pub convert: fn(&[u8], &mut [u8]) -> bool,
}

/// The exact re-encoding of `ty`, if it has one. `own_kernels`: the code copies of
/// `super::iq_codes` (IQ2_PLANES, IQ3_XXS_NIB, IQ3_S_NIB, IQ1_SHIFT) have their vector kernel
/// in this process (`iq_codes::native`); otherwise IQ3 and IQ1 go to Q6_K and IQ2 has none.
pub(crate) fn recode_for(ty: GgmlType, own_kernels: bool) -> Option<Recode> {
    use super::{iq1, iq2, iq3, ternary};
    use QuantFormat::{Iq1Shift, Iq2Planes, Iq3SNib, Iq3XxsNib, Q2K, Q6K, Q8_0};
    let to = |target, from_bytes, out_scale, convert| Recode {
        target,
        from_bytes,
        out_scale,
        convert,
    };
    // IQ2's `(0.5 + ls)·0.25` is `(2ls + 1) / 8` and IQ1 is held as 8 times its values: the 1/8
    // outside the blocks, as IQ3_XXS's 1/2
    Some(match ty {
        GgmlType::Q3_K => to(Q6K, super::q3_k::BLOCK_BYTES, 1.0, super::q3_k::to_q6_k),
        GgmlType::IQ3_XXS if own_kernels => to(Iq3XxsNib, iq3::XXS_BYTES, 0.5, iq3::xxs_to_nib),
        GgmlType::IQ3_S if own_kernels => to(Iq3SNib, iq3::S_BYTES, 1.0, iq3::s_to_nib),
        GgmlType::IQ3_XXS => to(Q6K, iq3::XXS_BYTES, 0.5, iq3::xxs_to_q6_k),
        GgmlType::IQ3_S => to(Q6K, iq3::S_BYTES, 1.0, iq3::s_to_q6_k),
        GgmlType::IQ1_S if own_kernels => to(Iq1Shift, iq1::S_BYTES, 0.125, iq1::s_to_shift),
        GgmlType::IQ1_M if own_kernels => to(Iq1Shift, iq1::M_BYTES, 0.125, iq1::m_to_shift),
        GgmlType::IQ1_S => to(Q6K, iq1::S_BYTES, 0.125, iq1::s_to_q6_k),
        GgmlType::IQ1_M => to(Q6K, iq1::M_BYTES, 0.125, iq1::m_to_q6_k),
        GgmlType::TQ1_0 => to(Q2K, ternary::TQ1_BYTES, 1.0, ternary::tq1_to_q2_k),
        GgmlType::TQ2_0 => to(Q2K, ternary::TQ2_BYTES, 1.0, ternary::tq2_to_q2_k),
        GgmlType::IQ2_XXS if own_kernels => {
            to(Iq2Planes, iq2::XXS_BYTES, 0.125, iq2::xxs_to_planes)
        }
        GgmlType::IQ2_XS if own_kernels => to(Iq2Planes, iq2::XS_BYTES, 0.125, iq2::xs_to_planes),
        GgmlType::IQ2_S if own_kernels => to(Iq2Planes, iq2::S_BYTES, 0.125, iq2::s_to_planes),
        GgmlType::MXFP4 => to(Q8_0, super::mxfp4::BLOCK_BYTES, 1.0, super::mxfp4::to_q8_0),
        _ => return None,
    })
}

/// Write a Q6_K super-block: `d` (f16 bits), 16 sub-block scales and 256 weights in −32 ..= 31
/// (`w = d·scale·q`; ggml's `block_q6_K`: low nibbles, high bit pairs, scales, d).
pub(crate) fn write_q6_k(d: u16, scales: &[i8; 16], q: &[i8; 256], out: &mut [u8]) {
    assert_eq!(out.len(), QuantFormat::Q6K.block_bytes(), "one q6_K block");
    out[..192].fill(0);
    for (k, &v) in q.iter().enumerate() {
        debug_assert!((-32..32).contains(&v), "q6_K weight {v}");
        let q6 = (v + 32) as u8;
        let (h, g, l) = (k / 128, (k % 128) / 32, k % 32);
        let at = 64 * h + 32 * (g % 2) + l;
        out[at] |= if g < 2 { q6 & 0x0F } else { (q6 & 0x0F) << 4 };
        out[128 + 32 * h + l] |= (q6 >> 4) << (2 * g);
    }
    for (o, &s) in out[192..208].iter_mut().zip(scales) {
        *o = s as u8;
    }
    out[208..210].copy_from_slice(&d.to_le_bytes());
}

/// Write a Q2_K super-block whose every sub-block has scale 1 and min 1 under `d = dmin`:
/// `w = d·q − d` for `q` in 0 ..= 3 (ternary weights `d·(q − 1)`).
pub(crate) fn write_q2_k_unit(d: u16, q: &[u8; 256], out: &mut [u8]) {
    use super::q2_k::{BLOCK_BYTES, D, DMIN, QS};
    assert_eq!(out.len(), BLOCK_BYTES, "one q2_K block");
    out[..QS].fill(0x11);
    out[QS..D].fill(0);
    for (k, &v) in q.iter().enumerate() {
        let (h, j, l) = (k / 128, (k % 128) / 32, k % 32);
        out[QS + 32 * h + l] |= (v & 3) << (2 * j);
    }
    out[D..D + 2].copy_from_slice(&d.to_le_bytes());
    out[DMIN..DMIN + 2].copy_from_slice(&d.to_le_bytes());
}

/// `n` bytes of the 64-bit LCG `state · 6364136223846793005 + 1442695040888963407` (advanced
/// before each byte, the byte its top 8 bits): the generator of the tests' random blocks and of
/// scripts/fixture_quant.py's `iq_stream`.
#[cfg(test)]
pub(crate) fn lcg_bytes(state: &mut u64, n: usize) -> Vec<u8> {
    (0..n)
        .map(|_| {
            *state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (*state >> 56) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::dequant::dequantize;

    /// Pseudo-random blocks of `ty` (every f16 / E8M0 scale left random too, so that range
    /// failures happen): each block either converts to values equal to its own dequantization,
    /// or reports that it cannot.
    fn check(ty: GgmlType, own_kernels: bool, want_failures: bool) {
        let r = recode_for(ty, own_kernels).expect("recodable");
        assert_eq!(r.from_bytes, ty.type_size());
        assert_eq!(r.target.block_elems(), ty.block_size());
        let mut state = 0x0DDB_1A5E_u64;
        let (mut ok, mut failed) = (0, 0);
        for _ in 0..4000 {
            let block = lcg_bytes(&mut state, r.from_bytes);
            let n = ty.block_size();
            let (mut want, mut got) = (vec![0f32; n], vec![0f32; n]);
            dequantize(ty, &block, &mut want);
            let mut out = vec![0u8; r.target.block_bytes()];
            if !(r.convert)(&block, &mut out) {
                failed += 1;
                continue;
            }
            crate::quant::dequantize_into(r.target, &out, &mut got);
            got.iter_mut().for_each(|v| *v *= r.out_scale);
            ok += 1;
            for (k, (w, g)) in want.iter().zip(&got).enumerate() {
                // bit for bit, but for the sign of a zero (TQ's `0·d` is −0 for negative `d`,
                // Q2_K's `d − d` is +0) and NaN payloads (random f16 scales include NaN)
                assert!(
                    w.to_bits() == g.to_bits()
                        || (*w == 0.0 && *g == 0.0)
                        || (w.is_nan() && g.is_nan()),
                    "{}: value {k}: {w} as {} is {g}",
                    ty.name(),
                    r.target
                );
            }
        }
        assert!(ok > 400, "{}: {ok} blocks converted", ty.name());
        assert_eq!(
            failed > 0,
            want_failures,
            "{}: {failed} blocks refused",
            ty.name()
        );
    }

    #[test]
    fn recoded_blocks_hold_the_same_values() {
        // random f16 scales reach f16's extremes (subnormal included: IQ3_XXS's and IQ1's
        // factors stay out of `d`); MXFP4's E8M0 scales mostly lie outside f16's range
        check(GgmlType::Q3_K, false, false);
        check(GgmlType::IQ3_XXS, false, false);
        check(GgmlType::IQ3_S, false, false);
        check(GgmlType::IQ1_S, false, false);
        check(GgmlType::IQ1_M, false, false);
        check(GgmlType::TQ1_0, false, false);
        check(GgmlType::TQ2_0, false, false);
        check(GgmlType::MXFP4, false, true);
        // the code copies of `iq_codes` (and IQ2 has none without them)
        for ty in [GgmlType::IQ2_XXS, GgmlType::IQ2_XS, GgmlType::IQ2_S] {
            check(ty, true, false);
            assert!(recode_for(ty, false).is_none());
        }
        check(GgmlType::IQ3_XXS, true, false);
        check(GgmlType::IQ3_S, true, false);
        check(GgmlType::IQ1_S, true, false);
        check(GgmlType::IQ1_M, true, false);
    }
}
