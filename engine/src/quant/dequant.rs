//! Scalar dequantization of ggml blocks to f32: the reference the kernels are tested against, and
//! what embedding lookups use.
//!
//! Each function decodes whole blocks exactly as ggml's `dequantize_row_*` (llama.cpp
//! `ggml-quants.c`) does; the K-quant 6-bit scale packing is `get_scale_min_k4`.

use half::{bf16, f16};

use super::format::QuantFormat;

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
/// `bytes.len() / block_bytes · block_elems` values.
pub fn dequantize_into(format: QuantFormat, bytes: &[u8], out: &mut [f32]) {
    let be = format.block_elems();
    let bb = format.block_bytes();
    debug_assert_eq!(bytes.len() % bb, 0);
    debug_assert_eq!(out.len(), bytes.len() / bb * be);
    for (blk, y) in bytes.chunks_exact(bb).zip(out.chunks_exact_mut(be)) {
        dequantize_block(format, blk, y);
    }
}

/// Dequantize one block.
fn dequantize_block(format: QuantFormat, b: &[u8], y: &mut [f32]) {
    match format {
        QuantFormat::F32 => y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        QuantFormat::F16 => y[0] = f16_at(b, 0),
        QuantFormat::Bf16 => y[0] = bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32(),
        QuantFormat::Q8_0 => {
            let d = f16_at(b, 0);
            for (v, &q) in y.iter_mut().zip(&b[2..34]) {
                *v = d * f32::from(q as i8);
            }
        }
        QuantFormat::Q4_0 => {
            let d = f16_at(b, 0);
            for j in 0..16 {
                y[j] = d * (f32::from(b[2 + j] & 0x0F) - 8.0);
                y[j + 16] = d * (f32::from(b[2 + j] >> 4) - 8.0);
            }
        }
        QuantFormat::Q4_1 => {
            let (d, m) = (f16_at(b, 0), f16_at(b, 2));
            for j in 0..16 {
                y[j] = d * f32::from(b[4 + j] & 0x0F) + m;
                y[j + 16] = d * f32::from(b[4 + j] >> 4) + m;
            }
        }
        QuantFormat::Q5_0 => {
            let d = f16_at(b, 0);
            let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
            for j in 0..16 {
                let lo = (b[6 + j] & 0x0F) | ((((qh >> j) & 1) as u8) << 4);
                let hi = (b[6 + j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
                y[j] = d * (f32::from(lo) - 16.0);
                y[j + 16] = d * (f32::from(hi) - 16.0);
            }
        }
        QuantFormat::Q5_1 => {
            let (d, m) = (f16_at(b, 0), f16_at(b, 2));
            let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
            for j in 0..16 {
                let lo = (b[8 + j] & 0x0F) | ((((qh >> j) & 1) as u8) << 4);
                let hi = (b[8 + j] >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4);
                y[j] = d * f32::from(lo) + m;
                y[j + 16] = d * f32::from(hi) + m;
            }
        }
        QuantFormat::Q4K => {
            let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
            let scales = &b[4..16];
            let qs = &b[16..144];
            for chunk in 0..4 {
                let (sc1, m1) = scale_min_k4(2 * chunk, scales);
                let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
                let (d1, d2) = (d * f32::from(sc1), d * f32::from(sc2));
                let (mn1, mn2) = (dmin * f32::from(m1), dmin * f32::from(m2));
                let q = &qs[32 * chunk..32 * chunk + 32];
                for l in 0..32 {
                    y[64 * chunk + l] = d1 * f32::from(q[l] & 0x0F) - mn1;
                    y[64 * chunk + 32 + l] = d2 * f32::from(q[l] >> 4) - mn2;
                }
            }
        }
        QuantFormat::Q5K => {
            let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
            let scales = &b[4..16];
            let qh = &b[16..48];
            let qs = &b[48..176];
            for chunk in 0..4 {
                let (sc1, m1) = scale_min_k4(2 * chunk, scales);
                let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
                let (d1, d2) = (d * f32::from(sc1), d * f32::from(sc2));
                let (mn1, mn2) = (dmin * f32::from(m1), dmin * f32::from(m2));
                let q = &qs[32 * chunk..32 * chunk + 32];
                for l in 0..32 {
                    let h1 = ((qh[l] >> (2 * chunk)) & 1) << 4;
                    let h2 = ((qh[l] >> (2 * chunk + 1)) & 1) << 4;
                    y[64 * chunk + l] = d1 * f32::from((q[l] & 0x0F) | h1) - mn1;
                    y[64 * chunk + 32 + l] = d2 * f32::from((q[l] >> 4) | h2) - mn2;
                }
            }
        }
        QuantFormat::Q6K => {
            let ql = &b[0..128];
            let qh = &b[128..192];
            let sc = &b[192..208];
            let d = f16_at(b, 208);
            for half in 0..2 {
                let (ql, qh) = (&ql[64 * half..], &qh[32 * half..]);
                let sc = &sc[8 * half..];
                let y = &mut y[128 * half..];
                for l in 0..32 {
                    let is = l / 16;
                    let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
                    let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
                    let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
                    let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
                    y[l] = d * f32::from(sc[is] as i8) * q1 as f32;
                    y[l + 32] = d * f32::from(sc[is + 2] as i8) * q2 as f32;
                    y[l + 64] = d * f32::from(sc[is + 4] as i8) * q3 as f32;
                    y[l + 96] = d * f32::from(sc[is + 6] as i8) * q4 as f32;
                }
            }
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
            .filter(|f| f.is_block_quantized())
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
        assert_eq!(checked, 8);
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
            .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
            .collect();
        dequantize_into(QuantFormat::Bf16, &bf16s, &mut out);
        assert_eq!(out, [1.5, -2.0, 0.25]);
    }
}
