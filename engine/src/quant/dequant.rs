//! Scalar dequantization of ggml blocks to f32: the reference the kernels are tested against, and
//! what embedding lookups use.
//!
//! Each function decodes whole blocks exactly as ggml's `dequantize_row_*` (llama.cpp
//! `ggml-quants.c`) does; the K-quant 6-bit scale packing is `get_scale_min_k4`.

use half::f16;

use super::format::QuantFormat;
use crate::gguf::GgmlType;

/// Read the little-endian f16 at `b[at..at + 2]` as f32.
#[inline(always)]
pub(crate) fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

/// Sub-block `j` (0..8) scale and min of a Q4_K / Q5_K block from its 12 packed scale bytes.
#[inline(always)]
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Dequantize `bytes` (whole blocks of `format`) into `out`, which must hold
/// `bytes.len() / block_bytes · block_elems` values. The block decoding itself is the GGUF
/// loader's ([`crate::gguf::dequant::dequantize`]): one implementation of the ggml layouts.
pub fn dequantize_into(format: QuantFormat, bytes: &[u8], out: &mut [f32]) {
    debug_assert_eq!(bytes.len() % format.block_bytes(), 0);
    debug_assert_eq!(
        out.len(),
        bytes.len() / format.block_bytes() * format.block_elems()
    );
    if format.is_code_copy() {
        for (b, o) in bytes
            .chunks_exact(format.block_bytes())
            .zip(out.chunks_exact_mut(256))
        {
            super::iq_codes::dequantize(format, b, o);
        }
        return;
    }
    crate::gguf::dequant::dequantize(ggml_type(format), bytes, out);
}

/// The ggml type id of a block format (the two enums name the same layouts).
fn ggml_type(format: QuantFormat) -> GgmlType {
    match format {
        QuantFormat::F32 => GgmlType::F32,
        QuantFormat::F16 => GgmlType::F16,
        QuantFormat::Bf16 => GgmlType::BF16,
        QuantFormat::Q8_0 => GgmlType::Q8_0,
        QuantFormat::Q4_0 => GgmlType::Q4_0,
        QuantFormat::Q4_1 => GgmlType::Q4_1,
        QuantFormat::Q5_0 => GgmlType::Q5_0,
        QuantFormat::Q5_1 => GgmlType::Q5_1,
        QuantFormat::Iq4Nl => GgmlType::IQ4_NL,
        QuantFormat::Iq4Xs => GgmlType::IQ4_XS,
        QuantFormat::Q2K => GgmlType::Q2_K,
        QuantFormat::Q3K => GgmlType::Q3_K,
        QuantFormat::Q4K => GgmlType::Q4_K,
        QuantFormat::Q5K => GgmlType::Q5_K,
        QuantFormat::Q6K => GgmlType::Q6_K,
        QuantFormat::Iq2Planes
        | QuantFormat::Iq3XxsNib
        | QuantFormat::Iq3SNib
        | QuantFormat::Iq1Shift => {
            unreachable!("{format} is decoded by iq_codes")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn fixture_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/quant")
    }

    /// Every block format decodes the committed raw blocks to exactly gguf-py's values.
    #[test]
    fn matches_gguf_py_on_fixture_blocks() {
        let mut checked = 0;
        for format in QuantFormat::ALL
            .into_iter()
            .filter(|f| f.is_block_quantized() && f.ggml_type().is_some())
        {
            let stem = fixture_dir().join(format.name());
            let bytes = std::fs::read(stem.with_extension("bin")).expect("fixture .bin");
            let json: serde_json::Value =
                serde_json::from_slice(&std::fs::read(stem.with_extension("json")).expect("json"))
                    .expect("fixture json");
            assert_eq!(
                json["type_size"].as_u64(),
                Some(format.block_bytes() as u64)
            );
            assert_eq!(
                json["block_size"].as_u64(),
                Some(format.block_elems() as u64)
            );
            let expected: Vec<f32> = json["values"]
                .as_array()
                .expect("values")
                .iter()
                .map(|v| v.as_f64().expect("number") as f32)
                .collect();
            let mut got = vec![0.0f32; expected.len()];
            dequantize_into(format, &bytes, &mut got);
            for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
                // gguf-py computes in float32 with the same operation order; allow one ulp-ish.
                let tol = 1e-6 * e.abs().max(1.0);
                assert!((g - e).abs() <= tol, "{format} element {i}: {g} vs {e}");
            }
            checked += 1;
        }
        assert_eq!(checked, 12);
    }

    #[test]
    fn dense_formats_decode() {
        let mut out = [0.0f32; 3];
        let f32s: Vec<u8> = [1.5f32, -2.0, 0.25]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        dequantize_into(QuantFormat::F32, &f32s, &mut out);
        assert_eq!(out, [1.5, -2.0, 0.25]);
        let f16s: Vec<u8> = [1.5f32, -2.0, 0.25]
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect();
        dequantize_into(QuantFormat::F16, &f16s, &mut out);
        assert_eq!(out, [1.5, -2.0, 0.25]);
        let bf16s: Vec<u8> = [1.5f32, -2.0, 0.25]
            .iter()
            .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
            .collect();
        dequantize_into(QuantFormat::Bf16, &bf16s, &mut out);
        assert_eq!(out, [1.5, -2.0, 0.25]);
    }
}
