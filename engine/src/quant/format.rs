//! Weight storage formats of a [`QuantMatrix`](super::QuantMatrix): the dense float formats and the
//! ggml/GGUF block formats, with their block geometry and GGUF type ids.
//!
//! Block layouts follow ggml (`ggml-common.h` in llama.cpp): a row of `cols` weights is stored as
//! `cols / block_elems` consecutive blocks of `block_bytes` bytes, little-endian, every scale an
//! IEEE half. The dense formats are "blocks" of one element.

use std::fmt;
use std::str::FromStr;

/// How the weights of a [`QuantMatrix`](super::QuantMatrix) are stored in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantFormat {
    /// IEEE single precision.
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16 (upper half of an f32).
    Bf16,
    /// 32 weights: f16 scale `d`, 32 × i8 `q`; `w = d·q`.
    Q8_0,
    /// 32 weights: f16 `d`, 16 bytes of nibbles; `w = d·(q − 8)`.
    Q4_0,
    /// 32 weights: f16 `d`, f16 `m`, 16 bytes of nibbles; `w = d·q + m`.
    Q4_1,
    /// 32 weights: f16 `d`, u32 of fifth bits, 16 bytes of nibbles; `w = d·(q − 16)`.
    Q5_0,
    /// 32 weights: f16 `d`, f16 `m`, u32 of fifth bits, 16 bytes of nibbles; `w = d·q + m`.
    Q5_1,
    /// 32 weights: f16 `d`, 16 bytes of nibbles indexing a fixed grid of 16 int8 levels;
    /// `w = d·GRID[q]` (`super::iq4_nl`).
    Iq4Nl,
    /// 256 weights: 16 bytes of 4-bit sub-block scales and mins, 64 bytes of 2-bit weights, f16
    /// `d`, f16 `dmin`; 16 sub-blocks of 16, `w = d·sc·q − dmin·m` (`super::q2_k`).
    Q2K,
    /// 256 weights: 32 bytes of high bits, 64 bytes of 2-bit lows, 12 bytes of 6-bit scales, f16
    /// `d`; 16 sub-blocks of 16, `w = d·(ls − 32)·(q − 4)` (`super::q3_k`).
    Q3K,
    /// 256 weights: f16 `d`, f16 `dmin`, 12 bytes of 6-bit sub-block scales and mins, 128 bytes of
    /// nibbles; 8 sub-blocks of 32, `w = d·sc·q − dmin·m`.
    Q4K,
    /// As [`QuantFormat::Q4K`] with 32 bytes of fifth bits: 176 bytes per 256 weights.
    Q5K,
    /// 256 weights: 128 bytes of low nibbles, 64 bytes of 2-bit highs, 16 × i8 scales, f16 `d`;
    /// 16 sub-blocks of 16, `w = d·sc·(q − 32)`.
    Q6K,
    /// 256 weights: f16 `d`, 6-bit scales of 8 sub-blocks of 32, 128 bytes of nibbles indexing
    /// IQ4_NL's grid; `w = d·(ls − 32)·GRID[q]` (`super::iq4_xs`).
    Iq4Xs,
    /// 256 weights in 106 bytes: f16 `d`, 16 4-bit scales `ls` (one per 16 weights), 256 sign
    /// bits and 256 2-bit codes of the magnitudes 0, 8, 25, 43; `w = d·(2ls + 1)·(±level)`
    /// (IQ2's values times 8). Not a ggml type:
    /// the exact copy of IQ2_XXS / IQ2_XS / IQ2_S blocks the loader makes for the kernels
    /// (`super::iq_codes`); no quantizer.
    Iq2Planes,
    /// 256 weights in 138 bytes: f16 `d`, 16 4-bit scales `ls`, 256 4-bit codes of ± half
    /// IQ3_XXS's magnitudes; `w = d·(2ls + 1)·level` (IQ3_XXS's values times 2). The loader's
    /// exact copy of IQ3_XXS blocks (`super::iq_codes`); not a ggml type, no quantizer.
    Iq3XxsNib,
    /// As [`QuantFormat::Iq3XxsNib`] with the levels ±1, ±3, …, ±15: IQ3_S's values.
    Iq3SNib,
    /// 256 weights in 78 bytes: f16 `d`, 16 4-bit scales `ls`, one shift sign per group of 8
    /// and 256 2-bit codes of grid values −1 / 0 / 1; `w = d·(2ls + 1)·(8·grid ± 1)` (IQ1_S /
    /// IQ1_M's values times 8). The loader's exact copy of IQ1 blocks (`super::iq_codes`); not a
    /// ggml type, no quantizer.
    Iq1Shift,
}

impl QuantFormat {
    /// Every supported format, dense first.
    pub const ALL: [QuantFormat; 19] = [
        QuantFormat::F32,
        QuantFormat::F16,
        QuantFormat::Bf16,
        QuantFormat::Q8_0,
        QuantFormat::Q4_0,
        QuantFormat::Q4_1,
        QuantFormat::Q5_0,
        QuantFormat::Q5_1,
        QuantFormat::Iq4Nl,
        QuantFormat::Q2K,
        QuantFormat::Q3K,
        QuantFormat::Q4K,
        QuantFormat::Q5K,
        QuantFormat::Q6K,
        QuantFormat::Iq4Xs,
        QuantFormat::Iq2Planes,
        QuantFormat::Iq3XxsNib,
        QuantFormat::Iq3SNib,
        QuantFormat::Iq1Shift,
    ];

    /// Weights per block.
    pub const fn block_elems(self) -> usize {
        match self {
            QuantFormat::F32 | QuantFormat::F16 | QuantFormat::Bf16 => 1,
            QuantFormat::Q8_0
            | QuantFormat::Q4_0
            | QuantFormat::Q4_1
            | QuantFormat::Q5_0
            | QuantFormat::Q5_1
            | QuantFormat::Iq4Nl => 32,
            QuantFormat::Q2K
            | QuantFormat::Q3K
            | QuantFormat::Q4K
            | QuantFormat::Q5K
            | QuantFormat::Q6K
            | QuantFormat::Iq4Xs
            | QuantFormat::Iq2Planes
            | QuantFormat::Iq3XxsNib
            | QuantFormat::Iq3SNib
            | QuantFormat::Iq1Shift => 256,
        }
    }

    /// Bytes per block.
    pub const fn block_bytes(self) -> usize {
        match self {
            QuantFormat::F32 => 4,
            QuantFormat::F16 | QuantFormat::Bf16 => 2,
            QuantFormat::Q8_0 => 34,
            QuantFormat::Q4_0 | QuantFormat::Iq4Nl => 18,
            QuantFormat::Q4_1 => 20,
            QuantFormat::Q5_0 => 22,
            QuantFormat::Q5_1 => 24,
            QuantFormat::Q2K => 84,
            QuantFormat::Q3K => 110,
            QuantFormat::Q4K => 144,
            QuantFormat::Q5K => 176,
            QuantFormat::Q6K => 210,
            QuantFormat::Iq4Xs => 136,
            QuantFormat::Iq2Planes => super::iq_codes::PLANES_BYTES,
            QuantFormat::Iq1Shift => super::iq_codes::SHIFT_BYTES,
            QuantFormat::Iq3XxsNib | QuantFormat::Iq3SNib => super::iq_codes::NIB_BYTES,
        }
    }

    /// Byte offsets of a block's f16 fields (`d`, and `m` / `dmin` where the format has one):
    /// what must hold finite values for random bytes to be a valid block (tests, benchmarks).
    pub const fn f16_fields(self) -> &'static [usize] {
        match self {
            QuantFormat::F32 | QuantFormat::F16 | QuantFormat::Bf16 => &[],
            QuantFormat::Q8_0
            | QuantFormat::Q4_0
            | QuantFormat::Q5_0
            | QuantFormat::Iq4Nl
            | QuantFormat::Iq4Xs
            | QuantFormat::Iq2Planes
            | QuantFormat::Iq3XxsNib
            | QuantFormat::Iq3SNib
            | QuantFormat::Iq1Shift => &[0],
            QuantFormat::Q4_1 | QuantFormat::Q5_1 | QuantFormat::Q4K | QuantFormat::Q5K => &[0, 2],
            QuantFormat::Q2K => &[80, 82],
            QuantFormat::Q3K => &[108],
            QuantFormat::Q6K => &[208],
        }
    }

    /// The format a row of `cols` weights is quantized to when `self` is asked for: rows that
    /// are not whole 256-blocks take `llama-quantize`'s fallback (`tensor_type_fallback`):
    /// IQ4_XS → IQ4_NL (its 32-blocks, the same grid), Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0,
    /// Q2_K / Q3_K → Q4_0; every other format is itself.
    pub const fn for_row_len(self, cols: usize) -> QuantFormat {
        if cols.is_multiple_of(256) {
            return self;
        }
        match self {
            QuantFormat::Iq4Xs => QuantFormat::Iq4Nl,
            QuantFormat::Q4K => QuantFormat::Q5_0,
            QuantFormat::Q5K => QuantFormat::Q5_1,
            QuantFormat::Q6K => QuantFormat::Q8_0,
            QuantFormat::Q2K | QuantFormat::Q3K => QuantFormat::Q4_0,
            f => f,
        }
    }

    /// Whether `self` is one of specsweep's own layouts for codebook i-quants
    /// (`super::iq_codes`): IQ2_PLANES, IQ3_XXS_NIB, IQ3_S_NIB, IQ1_SHIFT.
    pub const fn is_code_copy(self) -> bool {
        matches!(
            self,
            QuantFormat::Iq2Planes
                | QuantFormat::Iq3XxsNib
                | QuantFormat::Iq3SNib
                | QuantFormat::Iq1Shift
        )
    }

    /// Whether specsweep can quantize f32 weights to `self` (`--quant`, the sweep's `quant`
    /// axis): every format but the code copies ([`QuantFormat::is_code_copy`]), which only
    /// hold i-quant blocks loaded from GGUF files.
    pub const fn has_quantizer(self) -> bool {
        !self.is_code_copy()
    }

    /// Whether the kernels quantize the activations to 8-bit blocks and use integer dot products
    /// (every block format), rather than multiplying in f32 (the dense formats).
    pub const fn is_block_quantized(self) -> bool {
        self.block_elems() > 1
    }

    /// Bytes of storage for `rows × cols` weights (`cols` a multiple of [`Self::block_elems`]).
    pub const fn bytes_for(self, rows: usize, cols: usize) -> usize {
        rows * (cols / self.block_elems()) * self.block_bytes()
    }

    /// Average bits per weight.
    pub fn bits_per_weight(self) -> f64 {
        8.0 * self.block_bytes() as f64 / self.block_elems() as f64
    }

    /// The ggml type id used in GGUF tensor infos (none for the code copies,
    /// [`QuantFormat::is_code_copy`]: layouts of specsweep's own).
    pub const fn ggml_type(self) -> Option<u32> {
        Some(match self {
            QuantFormat::F32 => 0,
            QuantFormat::F16 => 1,
            QuantFormat::Q4_0 => 2,
            QuantFormat::Q4_1 => 3,
            QuantFormat::Q5_0 => 6,
            QuantFormat::Q5_1 => 7,
            QuantFormat::Q8_0 => 8,
            QuantFormat::Q2K => 10,
            QuantFormat::Q3K => 11,
            QuantFormat::Q4K => 12,
            QuantFormat::Q5K => 13,
            QuantFormat::Q6K => 14,
            QuantFormat::Iq4Nl => 20,
            QuantFormat::Iq4Xs => 23,
            QuantFormat::Bf16 => 30,
            QuantFormat::Iq2Planes
            | QuantFormat::Iq3XxsNib
            | QuantFormat::Iq3SNib
            | QuantFormat::Iq1Shift => return None,
        })
    }

    /// The format of a ggml type id, if it is one the kernels support.
    pub fn from_ggml_type(id: u32) -> Option<QuantFormat> {
        QuantFormat::ALL
            .into_iter()
            .find(|f| f.ggml_type() == Some(id))
    }

    /// The format whose name is `name`, case-insensitively (every format, the code copies
    /// included: `FromStr` is the parser for formats to quantize to).
    pub fn from_name(name: &str) -> Option<QuantFormat> {
        QuantFormat::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
    }

    /// The name ggml uses (`Q4_K`, `BF16`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            QuantFormat::F32 => "F32",
            QuantFormat::F16 => "F16",
            QuantFormat::Bf16 => "BF16",
            QuantFormat::Q8_0 => "Q8_0",
            QuantFormat::Q4_0 => "Q4_0",
            QuantFormat::Q4_1 => "Q4_1",
            QuantFormat::Q5_0 => "Q5_0",
            QuantFormat::Q5_1 => "Q5_1",
            QuantFormat::Iq4Nl => "IQ4_NL",
            QuantFormat::Q2K => "Q2_K",
            QuantFormat::Q3K => "Q3_K",
            QuantFormat::Q4K => "Q4_K",
            QuantFormat::Q5K => "Q5_K",
            QuantFormat::Q6K => "Q6_K",
            QuantFormat::Iq4Xs => "IQ4_XS",
            QuantFormat::Iq2Planes => "IQ2_PLANES",
            QuantFormat::Iq3XxsNib => "IQ3_XXS_NIB",
            QuantFormat::Iq3SNib => "IQ3_S_NIB",
            QuantFormat::Iq1Shift => "IQ1_SHIFT",
        }
    }
}

impl fmt::Display for QuantFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for QuantFormat {
    type Err = String;

    /// Case-insensitive ggml name of a format specsweep can quantize to (`q4_k`, `Q8_0`,
    /// `bf16`); `q8` and `q4` are accepted as the quantization-axis spellings of `q8_0` and
    /// `q4_0`. The code copies (IQ2_PLANES …), which only hold blocks loaded from GGUF files,
    /// are refused by name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        let alias = match lower.as_str() {
            "q8" => "q8_0",
            "q4" => "q4_0",
            other => other,
        };
        match QuantFormat::from_name(alias) {
            Some(f) if f.has_quantizer() => Ok(f),
            Some(f) => Err(format!(
                "weight format `{s}`: {f} holds i-quant blocks, which can only be loaded from a GGUF file (no quantizer)"
            )),
            None => {
                let names: Vec<&str> = QuantFormat::ALL
                    .iter()
                    .filter(|f| f.has_quantizer())
                    .map(|f| f.name())
                    .collect();
                Err(format!(
                    "unknown weight format `{s}` (expected one of {})",
                    names.join(", ")
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ggml_ids_round_trip_and_names_parse() {
        for f in QuantFormat::ALL {
            if let Some(id) = f.ggml_type() {
                assert_eq!(QuantFormat::from_ggml_type(id), Some(f));
            }
            if f.has_quantizer() {
                assert_eq!(f.name().parse::<QuantFormat>(), Ok(f));
                assert_eq!(f.name().to_lowercase().parse::<QuantFormat>(), Ok(f));
            }
        }
        assert_eq!("q8".parse::<QuantFormat>(), Ok(QuantFormat::Q8_0));
        assert_eq!("q4".parse::<QuantFormat>(), Ok(QuantFormat::Q4_0));
        let refused = "iq2_planes".parse::<QuantFormat>().unwrap_err();
        assert!(
            refused.contains("only be loaded from a GGUF file"),
            "{refused}"
        );
        assert!("iq2_xs".parse::<QuantFormat>().is_err());
        assert!(!"q9".parse::<QuantFormat>().unwrap_err().contains("IQ2"));
        assert_eq!(QuantFormat::from_ggml_type(10), Some(QuantFormat::Q2K));
        assert_eq!(QuantFormat::from_ggml_type(16), None);
        assert_eq!(QuantFormat::Iq2Planes.ggml_type(), None);
    }

    #[test]
    fn block_geometry_matches_ggml() {
        // Bits per weight as llama.cpp documents them.
        assert_eq!(QuantFormat::Q4K.bits_per_weight(), 4.5);
        assert_eq!(QuantFormat::Q5K.bits_per_weight(), 5.5);
        assert_eq!(QuantFormat::Q6K.bits_per_weight(), 6.5625);
        assert_eq!(QuantFormat::Q8_0.bits_per_weight(), 8.5);
        assert_eq!(QuantFormat::Iq4Nl.bits_per_weight(), 4.5);
        assert_eq!(QuantFormat::Iq4Xs.bits_per_weight(), 4.25);
        assert_eq!(QuantFormat::Q2K.bits_per_weight(), 2.625);
        assert_eq!(QuantFormat::Iq2Planes.bits_per_weight(), 3.3125);
        assert_eq!(QuantFormat::Iq3SNib.bits_per_weight(), 4.3125);
        assert_eq!(QuantFormat::Iq1Shift.bits_per_weight(), 2.4375);
        // llama-quantize's fallback for rows that are not whole IQ4_XS super-blocks
        assert_eq!(QuantFormat::Iq4Xs.for_row_len(1536), QuantFormat::Iq4Xs);
        assert_eq!(QuantFormat::Iq4Xs.for_row_len(896), QuantFormat::Iq4Nl);
        assert_eq!(QuantFormat::Q4_0.for_row_len(96), QuantFormat::Q4_0);
        assert_eq!(QuantFormat::Q4K.for_row_len(576), QuantFormat::Q5_0);
        assert_eq!(QuantFormat::Q5K.for_row_len(576), QuantFormat::Q5_1);
        assert_eq!(QuantFormat::Q6K.for_row_len(576), QuantFormat::Q8_0);
        assert_eq!(QuantFormat::Q6K.for_row_len(1536), QuantFormat::Q6K);
        assert_eq!(QuantFormat::Q4_1.bytes_for(2, 64), 80);
    }
}
