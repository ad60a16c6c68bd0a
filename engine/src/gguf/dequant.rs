//! ggml tensor types and their dequantization to f32.
//!
//! Each quantized type stores a tensor's innermost dimension in fixed-size blocks; the layouts are
//! ggml's `block_q4_0`, `block_q4_1`, `block_q5_0`, `block_q5_1`, `block_q8_0` (32 values per
//! block, one f16 scale `d`, sometimes an f16 minimum `m` and a 32-bit mask `qh` of fifth bits)
//! and the k-quants `block_q3_K`, `block_q4_K`, `block_q5_K`, `block_q6_K` (256-value
//! super-blocks split into sub-blocks of 32 or 16 with 6- or 8-bit sub-scales), and the
//! non-linear `block_iq4_nl` / `block_iq4_xs` (`crate::quant::iq4_nl`, `crate::quant::iq4_xs`),
//! the codebook i-quants IQ1_S / IQ1_M / IQ2_XXS / IQ2_XS / IQ2_S / IQ3_XXS / IQ3_S
//! (`crate::quant::iq1`, `iq2`, `iq3`), the ternary TQ1_0 / TQ2_0 (`crate::quant::ternary`) and
//! MXFP4 (`crate::quant::mxfp4`), as described in ggml's `ggml-common.h` and dequantized by
//! `dequantize_row_*` in `ggml-quants.c`. Everything here is a pure function from block bytes to
//! values, tested against gguf-py's reference vectors and, for the types added in the eighteenth
//! round, bit for bit against llama.cpp's own dequantizers (tests/fixtures/quant).

use half::{bf16, f16};

/// The ggml tensor types the engine can read. Discriminants are ggml's `ggml_type` ids.
#[allow(non_camel_case_types)] // ggml's spelling (Q4_K) is what users search for
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q2_K = 10,
    Q3_K = 11,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    IQ4_NL = 20,
    IQ4_XS = 23,
    BF16 = 30,
    IQ2_XXS = 16,
    IQ2_XS = 17,
    IQ3_XXS = 18,
    IQ1_S = 19,
    IQ3_S = 21,
    IQ2_S = 22,
    IQ1_M = 29,
    TQ1_0 = 34,
    TQ2_0 = 35,
    MXFP4 = 39,
}

/// Values per k-quant super-block (ggml's `QK_K`).
const QK_K: usize = 256;

impl GgmlType {
    /// Every supported type, for error messages and tests.
    pub const ALL: [GgmlType; 25] = [
        Self::F32,
        Self::F16,
        Self::BF16,
        Self::Q8_0,
        Self::Q4_0,
        Self::Q4_1,
        Self::Q5_0,
        Self::Q5_1,
        Self::Q2_K,
        Self::Q3_K,
        Self::Q4_K,
        Self::Q5_K,
        Self::Q6_K,
        Self::IQ4_NL,
        Self::IQ4_XS,
        Self::IQ2_XXS,
        Self::IQ2_XS,
        Self::IQ3_XXS,
        Self::IQ1_S,
        Self::IQ3_S,
        Self::IQ2_S,
        Self::IQ1_M,
        Self::TQ1_0,
        Self::TQ2_0,
        Self::MXFP4,
    ];

    /// The type with ggml id `id`, if supported.
    pub fn from_id(id: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|t| *t as u32 == id)
    }

    /// ggml's name for the type (`Q4_K`, `F16`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "F32",
            Self::F16 => "F16",
            Self::BF16 => "BF16",
            Self::Q8_0 => "Q8_0",
            Self::Q4_0 => "Q4_0",
            Self::Q4_1 => "Q4_1",
            Self::Q5_0 => "Q5_0",
            Self::Q5_1 => "Q5_1",
            Self::Q2_K => "Q2_K",
            Self::Q3_K => "Q3_K",
            Self::Q4_K => "Q4_K",
            Self::Q5_K => "Q5_K",
            Self::Q6_K => "Q6_K",
            Self::IQ4_NL => "IQ4_NL",
            Self::IQ4_XS => "IQ4_XS",
            Self::IQ2_XXS => "IQ2_XXS",
            Self::IQ2_XS => "IQ2_XS",
            Self::IQ3_XXS => "IQ3_XXS",
            Self::IQ1_S => "IQ1_S",
            Self::IQ3_S => "IQ3_S",
            Self::IQ2_S => "IQ2_S",
            Self::IQ1_M => "IQ1_M",
            Self::TQ1_0 => "TQ1_0",
            Self::TQ2_0 => "TQ2_0",
            Self::MXFP4 => "MXFP4",
        }
    }

    /// Values per block (1 for plain floats).
    pub fn block_size(self) -> usize {
        match self {
            Self::F32 | Self::F16 | Self::BF16 => 1,
            Self::Q8_0
            | Self::Q4_0
            | Self::Q4_1
            | Self::Q5_0
            | Self::Q5_1
            | Self::IQ4_NL
            | Self::MXFP4 => 32,
            Self::Q2_K
            | Self::Q3_K
            | Self::Q4_K
            | Self::Q5_K
            | Self::Q6_K
            | Self::IQ4_XS
            | Self::IQ2_XXS
            | Self::IQ2_XS
            | Self::IQ2_S
            | Self::IQ3_XXS
            | Self::IQ3_S
            | Self::IQ1_S
            | Self::IQ1_M
            | Self::TQ1_0
            | Self::TQ2_0 => QK_K,
        }
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 | Self::BF16 => 2,
            Self::Q8_0 => 2 + 32,
            Self::Q4_0 => 2 + 16,
            Self::Q4_1 => 2 + 2 + 16,
            Self::Q5_0 => 2 + 4 + 16,
            Self::Q5_1 => 2 + 2 + 4 + 16,
            Self::Q2_K => crate::quant::q2_k::BLOCK_BYTES,
            Self::Q3_K => crate::quant::q3_k::BLOCK_BYTES,
            Self::Q4_K => 2 + 2 + 12 + QK_K / 2,
            Self::Q5_K => 2 + 2 + 12 + QK_K / 8 + QK_K / 2,
            Self::Q6_K => QK_K / 2 + QK_K / 4 + QK_K / 16 + 2,
            Self::IQ4_NL => crate::quant::iq4_nl::BLOCK_BYTES,
            Self::IQ4_XS => crate::quant::iq4_xs::BLOCK_BYTES,
            Self::IQ2_XXS => crate::quant::iq2::XXS_BYTES,
            Self::IQ2_XS => crate::quant::iq2::XS_BYTES,
            Self::IQ3_XXS => crate::quant::iq3::XXS_BYTES,
            Self::IQ1_S => crate::quant::iq1::S_BYTES,
            Self::IQ3_S => crate::quant::iq3::S_BYTES,
            Self::IQ2_S => crate::quant::iq2::S_BYTES,
            Self::IQ1_M => crate::quant::iq1::M_BYTES,
            Self::TQ1_0 => crate::quant::ternary::TQ1_BYTES,
            Self::TQ2_0 => crate::quant::ternary::TQ2_BYTES,
            Self::MXFP4 => crate::quant::mxfp4::BLOCK_BYTES,
        }
    }

    /// Bytes needed for `n_elements` values, or `None` when `n_elements` is not a whole number
    /// of blocks.
    pub fn byte_len(self, n_elements: usize) -> Option<usize> {
        n_elements
            .is_multiple_of(self.block_size())
            .then(|| n_elements / self.block_size() * self.type_size())
    }
}

/// Name of a ggml type id, including the ones the engine cannot read (for error messages).
pub fn ggml_type_name(id: u32) -> String {
    let known = [
        (9, "Q8_1"),
        (15, "Q8_K"),
        (24, "I8"),
        (25, "I16"),
        (26, "I32"),
        (27, "I64"),
        (28, "F64"),
        (40, "NVFP4"),
    ];
    match GgmlType::from_id(id) {
        Some(t) => t.name().to_string(),
        None => known
            .iter()
            .find(|(k, _)| *k == id)
            .map(|(_, n)| n.to_string())
            .unwrap_or_else(|| format!("ggml type {id}")),
    }
}

/// Dequantize `bytes` (whole blocks of `ty`) into `out`; `out.len()` must equal the number of
/// values the bytes hold (checked by the caller via [`GgmlType::byte_len`]).
pub fn dequantize(ty: GgmlType, bytes: &[u8], out: &mut [f32]) {
    let (bs, ts) = (ty.block_size(), ty.type_size());
    debug_assert_eq!(bytes.len() / ts * bs, out.len());
    let blocks = bytes.chunks_exact(ts).zip(out.chunks_exact_mut(bs));
    match ty {
        GgmlType::F32 => {
            blocks.for_each(|(b, y)| y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        }
        GgmlType::F16 => blocks.for_each(|(b, y)| y[0] = f16_at(b, 0)),
        GgmlType::BF16 => blocks
            .for_each(|(b, y)| y[0] = bf16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32()),
        GgmlType::Q8_0 => blocks.for_each(|(b, y)| q8_0(b, y)),
        GgmlType::Q4_0 => blocks.for_each(|(b, y)| q4_0(b, y)),
        GgmlType::Q4_1 => blocks.for_each(|(b, y)| q4_1(b, y)),
        GgmlType::Q5_0 => blocks.for_each(|(b, y)| q5_0(b, y)),
        GgmlType::Q5_1 => blocks.for_each(|(b, y)| q5_1(b, y)),
        GgmlType::Q2_K => blocks.for_each(|(b, y)| crate::quant::q2_k::dequantize_block(b, y)),
        GgmlType::Q3_K => blocks.for_each(|(b, y)| crate::quant::q3_k::dequantize_block(b, y)),
        GgmlType::Q4_K => blocks.for_each(|(b, y)| q4_k(b, y)),
        GgmlType::Q5_K => blocks.for_each(|(b, y)| q5_k(b, y)),
        GgmlType::Q6_K => blocks.for_each(|(b, y)| q6_k(b, y)),
        GgmlType::IQ4_NL => blocks.for_each(|(b, y)| crate::quant::iq4_nl::dequantize_block(b, y)),
        GgmlType::IQ4_XS => blocks.for_each(|(b, y)| crate::quant::iq4_xs::dequantize_block(b, y)),
        GgmlType::IQ2_XXS => blocks.for_each(|(b, y)| crate::quant::iq2::dequantize_xxs(b, y)),
        GgmlType::IQ2_XS => blocks.for_each(|(b, y)| crate::quant::iq2::dequantize_xs(b, y)),
        GgmlType::IQ3_XXS => blocks.for_each(|(b, y)| crate::quant::iq3::dequantize_xxs(b, y)),
        GgmlType::IQ1_S => blocks.for_each(|(b, y)| crate::quant::iq1::dequantize_s(b, y)),
        GgmlType::IQ3_S => blocks.for_each(|(b, y)| crate::quant::iq3::dequantize_s(b, y)),
        GgmlType::IQ2_S => blocks.for_each(|(b, y)| crate::quant::iq2::dequantize_s(b, y)),
        GgmlType::IQ1_M => blocks.for_each(|(b, y)| crate::quant::iq1::dequantize_m(b, y)),
        GgmlType::TQ1_0 => blocks.for_each(|(b, y)| crate::quant::ternary::dequantize_tq1(b, y)),
        GgmlType::TQ2_0 => blocks.for_each(|(b, y)| crate::quant::ternary::dequantize_tq2(b, y)),
        GgmlType::MXFP4 => blocks.for_each(|(b, y)| crate::quant::mxfp4::dequantize_block(b, y)),
    }
}

fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

/// block_q8_0 { d: f16, qs: [i8; 32] }: y = d * q.
fn q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (yi, &q) in y.iter_mut().zip(&b[2..34]) {
        *yi = d * f32::from(q as i8);
    }
}

/// block_q4_0 { d, qs: [u8; 16] }: low nibbles are values 0..16, high nibbles 16..32; y = d * (q - 8).
fn q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for (j, &q) in b[2..18].iter().enumerate() {
        y[j] = d * (f32::from(q & 0x0f) - 8.0);
        y[j + 16] = d * (f32::from(q >> 4) - 8.0);
    }
}

/// block_q4_1 { d, m, qs: [u8; 16] }: y = d * q + m.
fn q4_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    for (j, &q) in b[4..20].iter().enumerate() {
        y[j] = d * f32::from(q & 0x0f) + m;
        y[j + 16] = d * f32::from(q >> 4) + m;
    }
}

/// The fifth bits of a Q5 block: bit j of `qh` belongs to value j.
fn q5_high(qh: u32, j: usize) -> (u8, u8) {
    let lo = (((qh >> j) << 4) & 0x10) as u8;
    let hi = ((qh >> (j + 12)) & 0x10) as u8;
    (lo, hi)
}

/// block_q5_0 { d, qh: u32, qs: [u8; 16] }: y = d * (q5 - 16).
fn q5_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    for (j, &q) in b[6..22].iter().enumerate() {
        let (h0, h1) = q5_high(qh, j);
        y[j] = d * (f32::from((q & 0x0f) | h0) - 16.0);
        y[j + 16] = d * (f32::from((q >> 4) | h1) - 16.0);
    }
}

/// block_q5_1 { d, m, qh: u32, qs: [u8; 16] }: y = d * q5 + m.
fn q5_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    for (j, &q) in b[8..24].iter().enumerate() {
        let (h0, h1) = q5_high(qh, j);
        y[j] = d * f32::from((q & 0x0f) | h0) + m;
        y[j + 16] = d * f32::from((q >> 4) | h1) + m;
    }
}

/// Sub-block `j` (0..8) scale and minimum of a Q4_K/Q5_K super-block: 6-bit values packed in
/// 12 bytes (ggml's `get_scale_min_k4`).
fn scale_min_k4(j: usize, s: &[u8]) -> (f32, f32) {
    let (sc, m) = if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0f) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    };
    (f32::from(sc), f32::from(m))
}

/// block_q4_K { d, dmin, scales: [u8; 12], qs: [u8; 128] }: eight sub-blocks of 32,
/// y = d * sc * q - dmin * m; each 32 bytes of `qs` hold two sub-blocks (low then high nibbles).
fn q4_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let scales = &b[4..16];
    let qs = &b[16..16 + QK_K / 2];
    for chunk in 0..QK_K / 64 {
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let q = &qs[32 * chunk..32 * chunk + 32];
        let y = &mut y[64 * chunk..64 * chunk + 64];
        for l in 0..32 {
            y[l] = d * sc1 * f32::from(q[l] & 0x0f) - dmin * m1;
            y[l + 32] = d * sc2 * f32::from(q[l] >> 4) - dmin * m2;
        }
    }
}

/// block_q5_K { d, dmin, scales: [u8; 12], qh: [u8; 32], qs: [u8; 128] }: as Q4_K plus a fifth bit
/// per value from `qh` (bit 2*chunk for the low nibbles, 2*chunk+1 for the high ones).
fn q5_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let scales = &b[4..16];
    let qh = &b[16..16 + QK_K / 8];
    let qs = &b[16 + QK_K / 8..16 + QK_K / 8 + QK_K / 2];
    for chunk in 0..QK_K / 64 {
        let (sc1, m1) = scale_min_k4(2 * chunk, scales);
        let (sc2, m2) = scale_min_k4(2 * chunk + 1, scales);
        let (u1, u2) = (1u8 << (2 * chunk), 2u8 << (2 * chunk));
        let q = &qs[32 * chunk..32 * chunk + 32];
        let y = &mut y[64 * chunk..64 * chunk + 64];
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            y[l] = d * sc1 * f32::from((q[l] & 0x0f) + h1) - dmin * m1;
            y[l + 32] = d * sc2 * f32::from((q[l] >> 4) + h2) - dmin * m2;
        }
    }
}

/// block_q6_K { ql: [u8; 128], qh: [u8; 64], scales: [i8; 16], d }: 6-bit values (4 low bits in
/// `ql`, 2 high bits in `qh`) minus 32, sixteen sub-blocks of 16 with signed 8-bit scales.
fn q6_k(b: &[u8], y: &mut [f32]) {
    let ql_all = &b[0..QK_K / 2];
    let qh_all = &b[QK_K / 2..QK_K / 2 + QK_K / 4];
    let sc_all = &b[QK_K / 2 + QK_K / 4..QK_K / 2 + QK_K / 4 + QK_K / 16];
    let d = f16_at(b, QK_K / 2 + QK_K / 4 + QK_K / 16);
    for half in 0..QK_K / 128 {
        let ql = &ql_all[64 * half..64 * half + 64];
        let qh = &qh_all[32 * half..32 * half + 32];
        let sc = &sc_all[8 * half..8 * half + 8];
        let y = &mut y[128 * half..128 * half + 128];
        let scale = |i: usize| d * f32::from(sc[i] as i8);
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            y[l] = scale(is) * q1 as f32;
            y[l + 32] = scale(is + 2) * q2 as f32;
            y[l + 64] = scale(is + 4) * q3 as f32;
            y[l + 96] = scale(is + 6) * q4 as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn quant_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/quant")
    }

    /// Compare against gguf-py's dequantization of the same bytes (tests/fixtures/quant).
    fn check(ty: GgmlType) {
        let dir = quant_dir();
        let bytes = std::fs::read(dir.join(format!("{}.bin", ty.name()))).unwrap();
        let doc: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("{}.json", ty.name()))).unwrap(),
        )
        .unwrap();
        assert_eq!(
            doc["block_size"].as_u64().unwrap() as usize,
            ty.block_size()
        );
        assert_eq!(doc["type_size"].as_u64().unwrap() as usize, ty.type_size());
        let expected: Vec<f32> = doc["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(ty.byte_len(expected.len()), Some(bytes.len()));
        let mut got = vec![0f32; expected.len()];
        dequantize(ty, &bytes, &mut got);
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            // gguf-py computes in f32 as well; allow one ulp-ish of reassociation.
            let tol = 1e-6 * e.abs().max(1.0);
            assert!(
                (g - e).abs() <= tol,
                "{} value {i}: got {g}, expected {e}",
                ty.name()
            );
        }
    }

    /// The i-quants, ternary types and MXFP4 against llama.cpp's own `dequantize_row_*` (the
    /// fixtures' values), and bit for bit on a generated stream that uses every codebook row
    /// (tests/fixtures/quant/IQ_stream.json keeps the sha256 of llama.cpp's output).
    #[test]
    fn i_quants_ternary_and_mxfp4_match_llama_cpp() {
        use sha2::{Digest, Sha256};
        let types = [
            GgmlType::IQ2_XXS,
            GgmlType::IQ2_XS,
            GgmlType::IQ2_S,
            GgmlType::IQ3_XXS,
            GgmlType::IQ3_S,
            GgmlType::IQ1_S,
            GgmlType::IQ1_M,
            GgmlType::TQ1_0,
            GgmlType::TQ2_0,
            GgmlType::MXFP4,
        ];
        let doc: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(quant_dir().join("IQ_stream.json")).unwrap(),
        )
        .unwrap();
        let n_blocks = doc["n_blocks"].as_u64().unwrap() as usize;
        for ty in types {
            check(ty);
            let bytes = iq_stream(ty, n_blocks);
            let mut values = vec![0f32; n_blocks * ty.block_size()];
            dequantize(ty, &bytes, &mut values);
            let le: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            let hex: String = Sha256::digest(&le)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(
                hex,
                doc["sha256"][ty.name()].as_str().unwrap(),
                "{}",
                ty.name()
            );
        }
    }

    /// scripts/fixture_quant.py's `iq_stream`: LCG bytes, then valid scales (its docstring).
    fn iq_stream(ty: GgmlType, n_blocks: usize) -> Vec<u8> {
        let mut raw = crate::quant::recode::lcg_bytes(&mut 0x1D_5EED, n_blocks * ty.type_size());
        let f16_fields: &[usize] = match ty {
            GgmlType::TQ1_0 => &[52],
            GgmlType::TQ2_0 => &[64],
            GgmlType::IQ1_M | GgmlType::MXFP4 => &[],
            _ => &[0],
        };
        let scale_bits =
            |b: &[u8], at: usize| 0x1C00 | (u16::from_le_bytes([b[at], b[at + 1]]) & 0x3FF);
        for block in raw.chunks_exact_mut(ty.type_size()) {
            for &at in f16_fields {
                let bits = scale_bits(block, at);
                block[at..at + 2].copy_from_slice(&bits.to_le_bytes());
            }
            if ty == GgmlType::IQ1_M {
                let bits = scale_bits(block, 48);
                for k in 0..4 {
                    let at = 48 + 2 * k;
                    let word = u16::from_le_bytes([block[at], block[at + 1]]);
                    let word = (word & 0x0FFF) | ((bits >> (4 * k)) & 0xF) << 12;
                    block[at..at + 2].copy_from_slice(&word.to_le_bytes());
                }
            }
            if ty == GgmlType::MXFP4 {
                block[0] = 104 + block[0] % 32;
            }
        }
        raw
    }

    #[test]
    fn q8_0_matches_gguf_py() {
        check(GgmlType::Q8_0);
    }
    #[test]
    fn q4_0_matches_gguf_py() {
        check(GgmlType::Q4_0);
    }
    #[test]
    fn q4_1_matches_gguf_py() {
        check(GgmlType::Q4_1);
    }
    #[test]
    fn q5_0_matches_gguf_py() {
        check(GgmlType::Q5_0);
    }
    #[test]
    fn q5_1_matches_gguf_py() {
        check(GgmlType::Q5_1);
    }
    #[test]
    fn q4_k_matches_gguf_py() {
        check(GgmlType::Q4_K);
    }
    #[test]
    fn q5_k_matches_gguf_py() {
        check(GgmlType::Q5_K);
    }
    #[test]
    fn q6_k_matches_gguf_py() {
        check(GgmlType::Q6_K);
    }
    #[test]
    fn q2_k_matches_gguf_py() {
        check(GgmlType::Q2_K);
    }
    #[test]
    fn q3_k_matches_gguf_py() {
        check(GgmlType::Q3_K);
    }
    #[test]
    fn iq4_nl_matches_gguf_py() {
        check(GgmlType::IQ4_NL);
    }
    #[test]
    fn iq4_xs_matches_gguf_py() {
        check(GgmlType::IQ4_XS);
    }

    #[test]
    fn plain_floats() {
        let mut out = [0f32; 2];
        let f16s: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_bits().to_le_bytes())
            .collect();
        dequantize(GgmlType::F16, &f16s, &mut out);
        assert_eq!(out, [1.5, -2.0]);
        let bf16s: Vec<u8> = [0.25f32, 3.0]
            .iter()
            .flat_map(|v| bf16::from_f32(*v).to_bits().to_le_bytes())
            .collect();
        dequantize(GgmlType::BF16, &bf16s, &mut out);
        assert_eq!(out, [0.25, 3.0]);
    }

    #[test]
    fn sizes_and_names() {
        assert_eq!(GgmlType::Q4_K.type_size(), 144);
        assert_eq!(GgmlType::Q5_K.type_size(), 176);
        assert_eq!(GgmlType::Q6_K.type_size(), 210);
        assert_eq!(GgmlType::Q3_K.type_size(), 110);
        assert_eq!(GgmlType::IQ4_XS.type_size(), 136);
        assert_eq!(GgmlType::Q5_1.type_size(), 24);
        assert_eq!(GgmlType::from_id(30), Some(GgmlType::BF16));
        assert_eq!(GgmlType::Q2_K.type_size(), 84);
        assert_eq!(GgmlType::from_id(10), Some(GgmlType::Q2_K));
        assert_eq!(GgmlType::from_id(16), Some(GgmlType::IQ2_XXS));
        assert_eq!(GgmlType::MXFP4.type_size(), 17);
        assert_eq!(GgmlType::from_id(40), None);
        assert_eq!(ggml_type_name(40), "NVFP4");
        assert_eq!(ggml_type_name(10), "Q2_K");
        assert_eq!(GgmlType::Q8_0.byte_len(33), None);
    }
}
