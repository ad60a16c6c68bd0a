//! The row-interleaved layout of Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS and specsweep's code
//! formats IQ3_XXS_NIB / IQ3_S_NIB / IQ2_PLANES / IQ1_SHIFT (`super::iq_codes`) matrices
//! ("x16"): 16 weight rows side by side, so
//! that a 512-bit register holds 4 consecutive weights of each of 16 rows and the kernels compute
//! 16 output rows per vector instruction with no horizontal sums — the layout that makes a
//! speculative verify of k + 1 tokens cost little more than one decode step (issue #8).
//!
//! # Why
//! With rows stored one after another (ggml's layout), a kernel's vector lanes run along one row
//! and every row ends in a horizontal sum; a product with `m` activation rows pays ~14 vector
//! operations per 256 weights *per activation row*. Interleaved, a weight register is reused by
//! every activation row through one `vpdpbusd` with the activation's 4 bytes broadcast (an embedded
//! broadcast from memory), and the integer sums of 16 rows come out lane by lane: ~6 operations
//! per 256 weights and activation row.
//!
//! # Batch-invariant arithmetic
//! Every kernel of this layout computes, for weight row `n`, activation row `t` and super-block
//! `b`, the exact integer sub-block sums `C_j = Σ_{k∈j} q_k·a_k` (Q6_K: `C_j − 32·Σ_{k∈j} a_k`,
//! the offset of `q − 32`), and then the same float operations in the same order:
//! - `isum = fma(C_j, sc_j, isum)` for j = 0, 1, … from `isum = 0` (8 sub-blocks of 32 for Q4_K,
//!   16 of 16 for Q6_K). Each product is exact (at most 2²³); so is the sum while it stays below
//!   2²⁴, which is every realistic block.
//! - Q4_K (and Q5_K, whose weights are 0 ..= 31): `s = fma(isum, d, −(msum·dmin))` with the
//!   exact integer `msum = Σ_j m_j · Σ_{k∈j} a_k`;
//!   Q6_K: `s = isum·d`.
//! - Q2_K: as Q4_K over 16 sub-blocks of 16: `s = fma(isum, d, −(msum·dmin))` with
//!   `isum = Σ_j sc_j · Σ_{k∈j} q_k·a_k` (`q` = 0 ..= 3, no offset) and the exact integer `msum =
//!   Σ_j m_j · Σ_{k∈j} a_k` from the activations' own 16-group sums.
//! - Q3_K: as Q6_K with `C_j = Σ_{k∈j} q_k·a_k − 4·Σ_{k∈j} a_k` (`q` = 0 ..= 7, 16 sub-blocks of
//!   16) and `sc_j = ls_j − 32`.
//! - IQ4_XS: as Q6_K over 8 sub-blocks of 32 with `C_j = Σ_{k∈j} u_k·a_k − 128·Σ_{k∈j} a_k`,
//!   where `u = GRID[q] + 128` (`super::interleave32::IQ4_NL_U`, looked up from the stored index)
//!   and `sc_j = ls_j − 32`.
//! - IQ3_XXS_NIB / IQ3_S_NIB: as Q6_K (16 sub-blocks of 16 from `−32·Σa`) with `u = level + 32`
//!   (1 ..= 63, `super::iq_codes::nib_levels_plus32`, looked up from the stored 4-bit code) and
//!   `sc_j = 2·ls_j + 1`.
//! - IQ2_PLANES / IQ1_SHIFT: the same from `−64·Σa` with `u = level + 64` (21 ..= 107,
//!   `super::iq_codes::index_levels` of the code and its sign / shift bit).
//! - `acc = fma(s, d_a, acc)`, super-block after super-block from `acc = 0`.
//!
//! The scale chain runs in floats because `vcvtdq2ps` + `vfmadd` cost fewer vector-port
//! operations than `vpmulld` + `vpaddd` (measured: Q4_K at 16 activation rows 15 % faster). Since
//! every kernel does exactly these operations, the scalar reference here and the VNNI kernels
//! (`super::x16`) give bit-identical results for any number of activation rows: a speculative
//! verify reproduces single-token steps bit for bit. `tests.rs` checks equality, not closeness.
//!
//! # Tiles
//! The chunks are also AMX's weight-tile layout, and a tile kernel with exactly this arithmetic
//! was written and tested bit-identical (one `tdpbsud` per sub-block, the scales applied to the
//! stored sums in integers). It was slower than these VNNI kernels at every batch size measured,
//! and so was a second one pipelined by unit, because on the machine measured each tile
//! instruction of a sub-block waits for the previous one (`examples/amx_costs.rs`); neither is
//! kept: ARCHITECTURE.md ("AMX tiles on the interleaved layout") has the figures.
//!
//! # Layout
//! A matrix of `rows` (a multiple of 16) × `cols` is `rows / 16` groups of `cols / 256` units,
//! group after group; unit `(g, b)` holds super-block `b` of rows `16g .. 16g + 16`. In a 64-byte
//! *chunk*, byte `4n + e` belongs to row `n` (lanes of 4 bytes, one per row). Chunk `c` (0..32) of
//! the weights holds, as its low nibbles, columns `32·(c/4) + 4·(c%4) + e` and as its high nibbles
//! the same columns + 16.
//! - Q4_K unit, 2368 bytes (ggml: 16 × 144 = 2304): `d` ×16 (f16), `dmin` ×16 (f16), scales
//!   `[j][n]` (u8, 6 bits), mins `[p][n][2]` (u8 pairs `m_2p, m_2p+1`), 32 weight chunks.
//! - Q6_K unit, 3360 bytes (as ggml): `d` ×16 (f16), scales `[j][n]` (i8), 32 chunks of the low
//!   four bits, 16 chunks of the high two bits: chunk `h` holds, at bits 0–1 / 2–3 / 4–5 / 6–7,
//!   the high bits of the low / high nibbles of low-bit chunk `2h`, then of chunk `2h + 1`.
//! - Q3_K unit, 1824 bytes (ggml: 16 × 110 = 1760): `d` ×16 (f16), scales `ls − 32` `[j][n]`
//!   (i8), 16 chunks of low bits — for 32-column block `j`, chunk `2j + h` holds at bits
//!   `2i, 2i + 1` of lane byte `4n + e` the low two bits of column `32j + 4(4h + i) + e` — then 8
//!   chunks of high bits: chunk `j` bit `k` of lane byte `4n + e` is the third bit of column
//!   `32j + 4k + e`.
//! - Q5_K unit, 2880 bytes (ggml: 16 × 176 = 2816): Q4_K's unit of the low four bits, then 8
//!   chunks of fifth bits: chunk `j` bit `k` of lane byte `4n + e` is the fifth bit of column
//!   `32j + 4k + e` (as Q3_K's third bits).
//! - Q2_K unit, 1344 bytes (= ggml's 16 × 84): `d` ×16 (f16), `dmin` ×16, ggml's scale bytes
//!   (`sc | m << 4`) as `[p][n][2]` (sub-blocks `2p`, `2p + 1` of row `n` side by side: one
//!   widening load gives each row's pair of mins as i16 for `vpdpwssd`), then 16 chunks of 2-bit
//!   weights laid out as Q3_K's low bits.
//! - IQ4_XS unit, 2208 bytes (ggml: 16 × 136 = 2176): `d` ×16 (f16), scales `ls − 32` `[j][n]`
//!   (i8, unpacked from ggml's 6 bits), 32 chunks of indices — ggml's own bytes of each
//!   sub-block, four at a time (chunk `4j + i` lane `n` is bytes `16j + 4i ..` of row `n`'s
//!   index array).
//! - IQ3_XXS_NIB / IQ3_S_NIB unit, 2208 bytes (= 16 × 138, the row-major blocks' size): `d` ×16
//!   (f16), the scale nibbles `[jj][n]` (byte `16·jj + n`: row `n`'s nibbles of sub-blocks
//!   `2jj` (low) and `2jj + 1` (high), the very byte of its row-major block), 32 chunks of the
//!   4-bit codes laid out as Q4_K's nibbles (so the low nibbles of chunks `4jj .. 4jj + 4` are
//!   sub-block `2jj`, their high nibbles `2jj + 1`).
//! - IQ2_PLANES unit, 1696 bytes (= 16 × 106) and IQ1_SHIFT unit, 1248 bytes (= 16 × 78): `d`
//!   and the scale nibbles as above, then 64 code chunks of 16 bytes — chunk `c` holds columns
//!   `4c .. 4c + 4` of the 16 rows, the weight of lane byte `p = 4n + e` (row `n`, column
//!   `4c + e`) at bits `2·(p / 16)` of byte `p % 16`, so that the chunk broadcast to the four
//!   128-bit lanes and shifted by 0 / 2 / 4 / 6 puts each code in its lane byte; then IQ2_PLANES's
//!   sign bits, 8 bytes per chunk (bit `p`: lane byte `p`), or IQ1_SHIFT's shift bits, 2 bytes
//!   per group of 8 columns (bit `n`: row `n`).
//!
//! Only the scales cost memory: Q4_K's unpacked 6-bit scales and mins take 2.8 % more than
//! ggml's packing, bought back by not unpacking them per row and activation in the kernels.

use std::ops::Range;

use half::f16;

use super::dequant::scale_min_k4;
use super::format::QuantFormat;
use super::interleave32;
use super::iq_codes;
use super::q2_k;
use super::quantize::ActBlocks;

/// Weight rows per group.
pub(crate) const ROWS: usize = 16;

/// Q4_K unit offsets.
pub(crate) mod q4k {
    pub(crate) const D: usize = 0;
    pub(crate) const DMIN: usize = 32;
    pub(crate) const SC: usize = 64;
    pub(crate) const MINS: usize = 192;
    pub(crate) const QS: usize = 320;
    pub(crate) const UNIT: usize = 2368;
}

/// Q5_K unit offsets: Q4_K's, then the fifth bits.
pub(crate) mod q5k {
    pub(crate) const QH: usize = super::q4k::UNIT;
    pub(crate) const UNIT: usize = QH + 8 * 64;
}

/// Q2_K unit offsets.
pub(crate) mod q2k {
    pub(crate) const D: usize = 0;
    pub(crate) const DMIN: usize = 32;
    pub(crate) const SC: usize = 64;
    pub(crate) const QL: usize = 320;
    pub(crate) const UNIT: usize = 1344;
}

/// Q3_K unit offsets.
pub(crate) mod q3k {
    pub(crate) const D: usize = 0;
    pub(crate) const SC: usize = 32;
    pub(crate) const QL: usize = 288;
    pub(crate) const QH: usize = 1312;
    pub(crate) const UNIT: usize = 1824;
}

/// IQ4_XS unit offsets.
pub(crate) mod iq4xs {
    pub(crate) const D: usize = 0;
    pub(crate) const SC: usize = 32;
    pub(crate) const QS: usize = 160;
    pub(crate) const UNIT: usize = 2208;
}

/// IQ3_XXS_NIB / IQ3_S_NIB unit offsets.
pub(crate) mod nib {
    pub(crate) const D: usize = 0;
    pub(crate) const SC: usize = 32;
    pub(crate) const QS: usize = 160;
    pub(crate) const UNIT: usize = 2208;
}

/// IQ2_PLANES / IQ1_SHIFT unit offsets.
pub(crate) mod planes {
    pub(crate) const D: usize = 0;
    pub(crate) const SC: usize = 32;
    pub(crate) const CODES: usize = 160;
    /// The sign bits (IQ2_PLANES) or shift bits (IQ1_SHIFT).
    pub(crate) const BITS: usize = 1184;
    pub(crate) const UNIT: usize = BITS + 64 * 8;
    pub(crate) const SHIFT_UNIT: usize = BITS + 32 * 2;
}

// the code formats' units share `d` and the scales (`put_code_head`, `get_code_scales`)
const _: () = assert!(nib::D == planes::D && nib::SC == planes::SC);

/// Q6_K unit offsets.
pub(crate) mod q6k {
    pub(crate) const D: usize = 0;
    pub(crate) const SC: usize = 32;
    pub(crate) const QL: usize = 288;
    pub(crate) const QH: usize = 2336;
    pub(crate) const UNIT: usize = 3360;
}

/// Whether `format` has an interleaved layout: Q2_K / Q3_K / Q4_K / Q5_K / Q6_K / IQ4_XS and
/// the code formats here,
/// the 32-weight formats (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL) in `super::interleave32`. The vector kernels (`super::x16`,
/// `super::x16_avx2`) take every one of them.
pub(crate) fn has_layout(format: QuantFormat) -> bool {
    matches!(
        format,
        QuantFormat::Q2K
            | QuantFormat::Q3K
            | QuantFormat::Q4K
            | QuantFormat::Q5K
            | QuantFormat::Q6K
            | QuantFormat::Iq4Xs
            | QuantFormat::Iq3XxsNib
            | QuantFormat::Iq3SNib
            | QuantFormat::Iq2Planes
            | QuantFormat::Iq1Shift
    ) || interleave32::layout(format).is_some()
}

/// Whether a `rows × cols` matrix of `format` can take the layout ([`has_layout`], whole groups
/// of 16 rows, whole blocks).
pub(crate) fn supports(format: QuantFormat, rows: usize, cols: usize) -> bool {
    if !has_layout(format) {
        return false;
    }
    let block = format.block_elems();
    rows > 0 && rows.is_multiple_of(ROWS) && cols > 0 && cols.is_multiple_of(block)
}

/// Bytes of one unit (16 rows × one block).
pub(crate) fn unit_bytes(format: QuantFormat) -> usize {
    match format {
        QuantFormat::Q4K => q4k::UNIT,
        QuantFormat::Q5K => q5k::UNIT,
        QuantFormat::Q6K => q6k::UNIT,
        QuantFormat::Iq4Xs => iq4xs::UNIT,
        QuantFormat::Iq3XxsNib | QuantFormat::Iq3SNib => nib::UNIT,
        QuantFormat::Iq2Planes => planes::UNIT,
        QuantFormat::Iq1Shift => planes::SHIFT_UNIT,
        QuantFormat::Q3K => q3k::UNIT,
        QuantFormat::Q2K => q2k::UNIT,
        _ => interleave32::layout(format).map_or(0, |l| l.unit),
    }
}

/// Bytes of a whole `rows × cols` matrix in the layout.
pub(crate) fn bytes_for(format: QuantFormat, rows: usize, cols: usize) -> usize {
    rows / ROWS * (cols / format.block_elems()) * unit_bytes(format)
}

/// Column of the low (`high == false`) or high nibble of lane byte `e` of weight chunk `c`.
#[inline(always)]
fn column(c: usize, e: usize, high: bool) -> usize {
    32 * (c / 4) + 4 * (c % 4) + e + if high { 16 } else { 0 }
}

/// One ggml block, decoded to its integers.
struct Block {
    /// The 256 weights as stored (Q2_K 0..=3, Q3_K 0..=7, Q4_K 0..=15, Q5_K 0..=31, Q6_K 0..=63,
    /// IQ4_XS the grid index 0..=15, the nibble formats their code 0..=15, IQ2_PLANES /
    /// IQ1_SHIFT their `iq_codes::code_index` 0..=7).
    q: [u8; 256],
    /// Q4_K / Q5_K: 8 scales; Q6_K: 16 signed scales; IQ4_XS: 8 / Q3_K: 16 signed scales
    /// `ls − 32` (as bytes); Q2_K: ggml's 16 scale bytes `sc | m << 4`; the code formats: 16
    /// `ls` (0..=15).
    sc: [u8; 16],
    /// Q4_K / Q5_K: 8 mins.
    m: [u8; 8],
    /// f16 bits of `d` (and Q4_K's / Q2_K's `dmin`).
    d: [u8; 2],
    dmin: [u8; 2],
}

impl Block {
    #[cfg(test)]
    fn decode(format: QuantFormat, b: &[u8]) -> Block {
        let mut out = Block {
            q: [0; 256],
            sc: [0; 16],
            m: [0; 8],
            d: [0; 2],
            dmin: [0; 2],
        };
        match format {
            QuantFormat::Q4K | QuantFormat::Q5K => {
                out.d = [b[0], b[1]];
                out.dmin = [b[2], b[3]];
                let (qs, qh) = if format == QuantFormat::Q5K {
                    (48, Some(&b[16..48]))
                } else {
                    (16, None)
                };
                for j in 0..8 {
                    (out.sc[j], out.m[j]) = scale_min_k4(j, &b[4..16]);
                    let (chunk, high) = (j / 2, j % 2 == 1);
                    for l in 0..32 {
                        let byte = b[qs + 32 * chunk + l];
                        let fifth = qh.map_or(0, |qh| ((qh[l] >> j) & 1) << 4);
                        out.q[32 * j + l] = fifth | if high { byte >> 4 } else { byte & 0x0F };
                    }
                }
            }
            QuantFormat::Q2K => {
                out.d = [b[q2_k::D], b[q2_k::D + 1]];
                out.dmin = [b[q2_k::DMIN], b[q2_k::DMIN + 1]];
                out.sc.copy_from_slice(&b[..16]);
                for (k, q) in out.q.iter_mut().enumerate() {
                    *q = q2_k::weight(b, k);
                }
            }
            QuantFormat::Q3K => {
                out.d = [b[108], b[109]];
                for (o, s) in out.sc.iter_mut().zip(super::q3_k::scales(b)) {
                    *o = s as u8;
                }
                for (k, q) in out.q.iter_mut().enumerate() {
                    *q = super::q3_k::weight(b, k);
                }
            }
            QuantFormat::Iq4Xs => {
                out.d = [b[0], b[1]];
                for j in 0..8 {
                    out.sc[j] = super::iq4_xs::sub_scale(b, j) as u8;
                    for l in 0..16 {
                        let byte = b[8 + 16 * j + l];
                        out.q[32 * j + l] = byte & 0x0F;
                        out.q[32 * j + 16 + l] = byte >> 4;
                    }
                }
            }
            QuantFormat::Iq3XxsNib
            | QuantFormat::Iq3SNib
            | QuantFormat::Iq2Planes
            | QuantFormat::Iq1Shift => {
                out.d = [b[0], b[1]];
                for (g, sc) in out.sc.iter_mut().enumerate() {
                    *sc = iq_codes::scale_nibble(b, g);
                }
                let nibbles = matches!(format, QuantFormat::Iq3XxsNib | QuantFormat::Iq3SNib);
                for (j, q) in out.q.iter_mut().enumerate() {
                    *q = if nibbles {
                        iq_codes::nib_code(b, j)
                    } else {
                        iq_codes::code_index(format, b, j)
                    };
                }
            }
            _ => {
                let (ql, qh) = (&b[0..128], &b[128..192]);
                out.sc.copy_from_slice(&b[192..208]);
                out.d = [b[208], b[209]];
                for k in 0..256 {
                    let (half, part, l) = (k / 128, (k % 128) / 32, k % 32);
                    let byte = ql[64 * half + 32 * (part % 2) + l];
                    let lo = if part < 2 { byte & 0x0F } else { byte >> 4 };
                    let hi = (qh[32 * half + l] >> (2 * part)) & 3;
                    out.q[k] = lo | (hi << 4);
                }
            }
        }
        out
    }

    /// The ggml block bytes (the inverse of [`Block::decode`]).
    fn encode(&self, format: QuantFormat, b: &mut [u8]) {
        match format {
            QuantFormat::Q4K | QuantFormat::Q5K => {
                b[0..2].copy_from_slice(&self.d);
                b[2..4].copy_from_slice(&self.dmin);
                let s = &mut b[4..16];
                s.fill(0);
                for j in 0..8 {
                    let (sc, m) = (self.sc[j], self.m[j]);
                    if j < 4 {
                        s[j] |= sc & 63;
                        s[j + 4] |= m & 63;
                    } else {
                        s[j + 4] = (sc & 0x0F) | ((m & 0x0F) << 4);
                        s[j - 4] |= (sc >> 4) << 6;
                        s[j] |= (m >> 4) << 6;
                    }
                }
                let qs = if format == QuantFormat::Q5K {
                    b[16..48].fill(0);
                    for (k, &q) in self.q.iter().enumerate() {
                        b[16 + k % 32] |= (q >> 4) << (k / 32);
                    }
                    48
                } else {
                    16
                };
                for chunk in 0..4 {
                    for l in 0..32 {
                        b[qs + 32 * chunk + l] = (self.q[64 * chunk + l] & 0x0F)
                            | ((self.q[64 * chunk + 32 + l] & 0x0F) << 4);
                    }
                }
            }
            QuantFormat::Q2K => {
                b.fill(0);
                b[..16].copy_from_slice(&self.sc);
                for (k, &q) in self.q.iter().enumerate() {
                    let (h, j, l) = (k / 128, (k % 128) / 32, k % 32);
                    b[q2_k::QS + 32 * h + l] |= q << (2 * j);
                }
                b[q2_k::D..q2_k::D + 2].copy_from_slice(&self.d);
                b[q2_k::DMIN..q2_k::DMIN + 2].copy_from_slice(&self.dmin);
            }
            QuantFormat::Q3K => {
                b.fill(0);
                for (k, &q) in self.q.iter().enumerate() {
                    let (h, j, l) = (k / 128, (k % 128) / 32, k % 32);
                    b[32 + 32 * h + l] |= (q & 3) << (2 * j);
                    b[l] |= (q >> 2) << (4 * h + j);
                }
                let scales: [i8; 16] = std::array::from_fn(|s| self.sc[s] as i8);
                super::q3_k::set_scales(b, &scales);
                b[108..110].copy_from_slice(&self.d);
            }
            QuantFormat::Iq4Xs => {
                b[0..2].copy_from_slice(&self.d);
                let scales: [i8; 8] = std::array::from_fn(|j| self.sc[j] as i8);
                super::iq4_xs::set_sub_scales(b, &scales);
                for j in 0..8 {
                    for l in 0..16 {
                        b[8 + 16 * j + l] = self.q[32 * j + l] | (self.q[32 * j + 16 + l] << 4);
                    }
                }
            }
            QuantFormat::Iq3XxsNib
            | QuantFormat::Iq3SNib
            | QuantFormat::Iq2Planes
            | QuantFormat::Iq1Shift => {
                iq_codes::write_head(u16::from_le_bytes(self.d), &self.sc, b);
                let nibbles = matches!(format, QuantFormat::Iq3XxsNib | QuantFormat::Iq3SNib);
                for (j, &q) in self.q.iter().enumerate() {
                    if nibbles {
                        iq_codes::put_nib_code(b, j, q);
                    } else {
                        iq_codes::put_code_index(format, b, j, q);
                    }
                }
            }
            _ => {
                b[..192].fill(0);
                for k in 0..256 {
                    let (half, part, l) = (k / 128, (k % 128) / 32, k % 32);
                    let (lo, hi) = (self.q[k] & 0x0F, self.q[k] >> 4);
                    let at = 64 * half + 32 * (part % 2) + l;
                    b[at] |= if part < 2 { lo } else { lo << 4 };
                    b[128 + 32 * half + l] |= hi << (2 * part);
                }
                b[192..208].copy_from_slice(&self.sc);
                b[208..210].copy_from_slice(&self.d);
            }
        }
    }
}

/// `src` (ggml blocks of a `rows × cols` matrix, row after row) in the interleaved layout, into
/// `out` (`bytes_for(format, rows, cols)` bytes). Each unit is built in a buffer and copied, so
/// every byte of `out` is written once and never read first.
pub(crate) fn repack_into(
    format: QuantFormat,
    rows: usize,
    cols: usize,
    src: &[u8],
    out: &mut [u8],
) {
    debug_assert!(supports(format, rows, cols));
    let (nb, bb, ub) = (
        cols / format.block_elems(),
        format.block_bytes(),
        unit_bytes(format),
    );
    debug_assert_eq!(src.len(), rows * nb * bb);
    debug_assert_eq!(out.len(), bytes_for(format, rows, cols));
    let mut unit = [0u8; q6k::UNIT]; // the largest unit of either layout
    let buf = &mut unit[..ub];
    for (k, dst) in out.chunks_exact_mut(ub).enumerate() {
        let (g, b) = (k / nb, k % nb);
        buf.fill(0);
        for n in 0..ROWS {
            let at = ((ROWS * g + n) * nb + b) * bb;
            let blk = &src[at..at + bb];
            match format {
                QuantFormat::Q4K => put_q4k(blk, &blk[16..144], n, buf),
                QuantFormat::Q5K => put_q5k(blk, n, buf),
                QuantFormat::Q6K => put_q6k(blk, n, buf),
                QuantFormat::Iq4Xs => put_iq4xs(blk, n, buf),
                QuantFormat::Iq3XxsNib | QuantFormat::Iq3SNib => put_nib(blk, n, buf),
                QuantFormat::Iq2Planes | QuantFormat::Iq1Shift => put_planes(format, blk, n, buf),
                QuantFormat::Q3K => put_q3k(blk, n, buf),
                QuantFormat::Q2K => put_q2k(blk, n, buf),
                _ => interleave32::put(format, blk, n, buf),
            }
        }
        dst.copy_from_slice(buf);
    }
}

/// [`repack_into`] a new vector.
#[cfg(test)]
pub(crate) fn repack(format: QuantFormat, rows: usize, cols: usize, src: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; bytes_for(format, rows, cols)];
    repack_into(format, rows, cols, src, &mut out);
    out
}

/// Four bytes at `b[at..]` as a little-endian word.
#[inline(always)]
fn word(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Row `n`'s Q4_K block `blk` (or the low four bits of a Q5_K block: its nibbles `qs`) into unit
/// `u`, four weights per word operation (the load path: [`put`] is the readable per-weight
/// equivalent, and the tests hold the two to the same bytes).
fn put_q4k(blk: &[u8], qs: &[u8], n: usize, u: &mut [u8]) {
    u[q4k::D + 2 * n..q4k::D + 2 * n + 2].copy_from_slice(&blk[0..2]);
    u[q4k::DMIN + 2 * n..q4k::DMIN + 2 * n + 2].copy_from_slice(&blk[2..4]);
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, &blk[4..16]);
        u[q4k::SC + 16 * j + n] = sc;
        u[q4k::MINS + 32 * (j / 2) + 2 * n + j % 2] = m;
    }
    const LOW: u32 = 0x0F0F_0F0F;
    for c in 0..32 {
        let (j, i) = (c / 4, c % 4);
        // sub-block j is the low (even j) or high (odd j) nibbles of 32 bytes at 32·(j / 2)
        let lo4 = word(qs, 32 * (j / 2) + 4 * i);
        let hi4 = word(qs, 32 * (j / 2) + 16 + 4 * i);
        let v = if j % 2 == 0 {
            (lo4 & LOW) | ((hi4 & LOW) << 4)
        } else {
            ((lo4 >> 4) & LOW) | (hi4 & !LOW)
        };
        let at = q4k::QS + 64 * c + 4 * n;
        u[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
}

/// Row `n`'s Q6_K block `blk` into unit `u`, four weights per word operation.
fn put_q6k(blk: &[u8], n: usize, u: &mut [u8]) {
    u[q6k::D + 2 * n..q6k::D + 2 * n + 2].copy_from_slice(&blk[208..210]);
    for j in 0..16 {
        u[q6k::SC + 16 * j + n] = blk[192 + j];
    }
    const LOW: u32 = 0x0F0F_0F0F;
    const TWO: u32 = 0x0303_0303;
    // the four 6-bit weights of columns k..k + 4 (k a multiple of 4), one per byte
    let q4 = |k: usize| -> u32 {
        let (half, part, l) = (k / 128, (k % 128) / 32, k % 32);
        let ql = word(blk, 64 * half + 32 * (part % 2) + l);
        let lo = if part < 2 { ql & LOW } else { (ql >> 4) & LOW };
        let hi = (word(blk, 128 + 32 * half + l) >> (2 * part)) & TWO;
        lo | (hi << 4)
    };
    for c in 0..32 {
        let k = 32 * (c / 4) + 4 * (c % 4);
        let (lo, hi) = (q4(k), q4(k + 16));
        let at = q6k::QL + 64 * c + 4 * n;
        u[at..at + 4].copy_from_slice(&((lo & LOW) | ((hi & LOW) << 4)).to_le_bytes());
        let shift = 4 * (c % 2);
        let bits = (((lo >> 4) & TWO) << shift) | (((hi >> 4) & TWO) << (shift + 2));
        let at = q6k::QH + 64 * (c / 2) + 4 * n;
        let old = word(u, at);
        u[at..at + 4].copy_from_slice(&(old | bits).to_le_bytes());
    }
}

/// Row `n`'s IQ4_XS block `blk` into unit `u`: the sub-block scales unpacked, the index bytes
/// copied four at a time.
fn put_iq4xs(blk: &[u8], n: usize, u: &mut [u8]) {
    u[iq4xs::D + 2 * n..iq4xs::D + 2 * n + 2].copy_from_slice(&blk[0..2]);
    for j in 0..8 {
        u[iq4xs::SC + 16 * j + n] = super::iq4_xs::sub_scale(blk, j) as u8;
    }
    for c in 0..32 {
        let at = iq4xs::QS + 64 * c + 4 * n;
        u[at..at + 4].copy_from_slice(&blk[8 + 4 * c..8 + 4 * c + 4]);
    }
}

/// Row `n`'s `d` and scale bytes (two sub-blocks' nibbles each, as they are) of a code-format
/// block `blk` into unit `u` (the nibble formats' and IQ2_PLANES's / IQ1_SHIFT's offsets agree).
fn put_code_head(blk: &[u8], n: usize, u: &mut [u8]) {
    u[nib::D + 2 * n..nib::D + 2 * n + 2].copy_from_slice(&blk[0..2]);
    for jj in 0..8 {
        u[nib::SC + 16 * jj + n] = blk[iq_codes::SCALES + jj];
    }
}

/// Row `n`'s IQ2_PLANES / IQ1_SHIFT block `blk` into unit `u` (whose code and bit bytes start
/// zeroed): four codes per word operation, IQ2_PLANES's signs a nibble at a time.
fn put_planes(format: QuantFormat, blk: &[u8], n: usize, u: &mut [u8]) {
    put_code_head(blk, n, u);
    let (codes, bits) = if format == QuantFormat::Iq2Planes {
        (iq_codes::PLANE_CODES, iq_codes::SIGNS)
    } else {
        (iq_codes::SHIFT_CODES, iq_codes::SHIFTS)
    };
    // lane bytes 4n .. 4n + 4 of a chunk: bytes 4(n % 4) .. of its 16, bits 2(n / 4)
    let (byte, shift) = (4 * (n % 4), 2 * (n / 4));
    for c in 0..64 {
        // columns 4c .. 4c + 4: bytes 16(c / 16) + 4(c % 4) .. of the block, bits 2((c % 16) / 4)
        let src = word(blk, codes + 16 * (c / 16) + 4 * (c % 4)) >> (2 * ((c % 16) / 4));
        let at = planes::CODES + 16 * c + byte;
        let v = word(u, at) | (src & 0x0303_0303) << shift;
        u[at..at + 4].copy_from_slice(&v.to_le_bytes());
        if format == QuantFormat::Iq2Planes {
            let signs = blk[bits + c / 2] >> (4 * (c % 2)) & 0x0F;
            u[planes::BITS + 8 * c + n / 2] |= signs << (4 * (n % 2));
        }
    }
    if format == QuantFormat::Iq1Shift {
        for g in 0..32 {
            let bit = blk[bits + g / 8] >> (g % 8) & 1;
            u[planes::BITS + 2 * g + n / 8] |= bit << (n % 8);
        }
    }
}

/// Row `n`'s IQ3_XXS_NIB / IQ3_S_NIB block `blk` into unit `u`: its `d` and scale bytes, its
/// codes four at a time.
fn put_nib(blk: &[u8], n: usize, u: &mut [u8]) {
    put_code_head(blk, n, u);
    for c in 0..32 {
        // columns 32(c/4) + 4(c%4) + e (and + 16): in the block's 64-weight chunk c/8, half
        // (c/4) % 2, bytes 4(c%4) + e (and + 16)
        let at = iq_codes::NIB_CODES + 32 * (c / 8) + 4 * (c % 4);
        let shift = 4 * ((c / 4) % 2);
        let lo = (word(blk, at) >> shift) & 0x0F0F_0F0F;
        let hi = (word(blk, at + 16) >> shift) & 0x0F0F_0F0F;
        let at = nib::QS + 64 * c + 4 * n;
        u[at..at + 4].copy_from_slice(&(lo | hi << 4).to_le_bytes());
    }
}

/// Row `n`'s Q3_K block `blk` into unit `u` (whose bit chunks start zeroed): the scales
/// unpacked, each weight's two low bits and third bit moved to its chunk lane.
fn put_q3k(blk: &[u8], n: usize, u: &mut [u8]) {
    u[q3k::D + 2 * n..q3k::D + 2 * n + 2].copy_from_slice(&blk[108..110]);
    for (s, v) in super::q3_k::scales(blk).into_iter().enumerate() {
        u[q3k::SC + 16 * s + n] = v as u8;
    }
    for j in 0..8 {
        for k in 0..8 {
            for e in 0..4 {
                let q = super::q3_k::weight(blk, 32 * j + 4 * k + e);
                u[q3k::QL + 64 * (2 * j + k / 4) + 4 * n + e] |= (q & 3) << (2 * (k % 4));
                u[q3k::QH + 64 * j + 4 * n + e] |= (q >> 2) << k;
            }
        }
    }
}

/// Row `n`'s Q5_K block `blk` into unit `u` (whose fifth-bit chunks start zeroed): Q4_K's unit
/// of its low four bits, then the fifth bit of each weight (`qh` byte `l` bit `j` is column
/// `32j + l`'s) to its chunk lane.
fn put_q5k(blk: &[u8], n: usize, u: &mut [u8]) {
    put_q4k(blk, &blk[48..176], n, u);
    let qh = &blk[16..48];
    for j in 0..8 {
        for k in 0..8 {
            for e in 0..4 {
                u[q5k::QH + 64 * j + 4 * n + e] |= ((qh[4 * k + e] >> j) & 1) << k;
            }
        }
    }
}

/// Row `n`'s Q2_K block `blk` into unit `u` (whose weight chunks start zeroed): `d`, `dmin`,
/// the scale bytes to their pair slots, each weight's two bits to its chunk lane (Q3_K's low
/// bits).
fn put_q2k(blk: &[u8], n: usize, u: &mut [u8]) {
    u[q2k::D + 2 * n..q2k::D + 2 * n + 2].copy_from_slice(&blk[q2_k::D..q2_k::D + 2]);
    u[q2k::DMIN + 2 * n..q2k::DMIN + 2 * n + 2].copy_from_slice(&blk[q2_k::DMIN..q2_k::DMIN + 2]);
    for (s, &v) in blk[..16].iter().enumerate() {
        u[q2k::SC + 32 * (s / 2) + 2 * n + s % 2] = v;
    }
    for j in 0..8 {
        for k in 0..8 {
            for e in 0..4 {
                let q = q2_k::weight(blk, 32 * j + 4 * k + e);
                u[q2k::QL + 64 * (2 * j + k / 4) + 4 * n + e] |= q << (2 * (k % 4));
            }
        }
    }
}

/// Write row `n`'s block into unit `u` (the per-weight reference of [`put_q4k`] / [`put_q6k`] /
/// [`put_iq4xs`] / [`put_nib`]; Q3_K's [`put_q3k`] and Q2_K's [`put_q2k`] are per weight already).
#[cfg(test)]
fn put(format: QuantFormat, blk: &Block, n: usize, u: &mut [u8]) {
    match format {
        QuantFormat::Q4K | QuantFormat::Q5K => {
            u[q4k::D + 2 * n..q4k::D + 2 * n + 2].copy_from_slice(&blk.d);
            u[q4k::DMIN + 2 * n..q4k::DMIN + 2 * n + 2].copy_from_slice(&blk.dmin);
            for j in 0..8 {
                u[q4k::SC + 16 * j + n] = blk.sc[j];
                u[q4k::MINS + 32 * (j / 2) + 2 * n + j % 2] = blk.m[j];
            }
            put_nibbles(&blk.q.map(|q| q & 0x0F), q4k::QS, n, u);
            if format == QuantFormat::Q5K {
                for (k, &q) in blk.q.iter().enumerate() {
                    let (j, i, e) = (k / 32, (k % 32) / 4, k % 4);
                    u[q5k::QH + 64 * j + 4 * n + e] |= (q >> 4) << i;
                }
            }
        }
        QuantFormat::Q3K => {
            let mut ggml = [0u8; super::q3_k::BLOCK_BYTES];
            blk.encode(format, &mut ggml);
            put_q3k(&ggml, n, u);
        }
        QuantFormat::Q2K => {
            let mut ggml = [0u8; q2_k::BLOCK_BYTES];
            blk.encode(format, &mut ggml);
            put_q2k(&ggml, n, u);
        }
        QuantFormat::Iq4Xs => {
            u[iq4xs::D + 2 * n..iq4xs::D + 2 * n + 2].copy_from_slice(&blk.d);
            for j in 0..8 {
                u[iq4xs::SC + 16 * j + n] = blk.sc[j];
            }
            put_nibbles(&blk.q, iq4xs::QS, n, u);
        }
        QuantFormat::Iq3XxsNib | QuantFormat::Iq3SNib => {
            put_code_scales(blk, n, u);
            put_nibbles(&blk.q, nib::QS, n, u);
        }
        QuantFormat::Iq2Planes | QuantFormat::Iq1Shift => {
            put_code_scales(blk, n, u);
            for (j, &index) in blk.q.iter().enumerate() {
                let (c, p) = (j / 4, 4 * n + j % 4);
                u[planes::CODES + 16 * c + p % 16] |= (index & 3) << (2 * (p / 16));
                let (at, bit) = planes_bit(format, c, n, p);
                u[at] |= (index >> 2 & 1) << bit;
            }
        }
        _ => {
            u[q6k::D + 2 * n..q6k::D + 2 * n + 2].copy_from_slice(&blk.d);
            for j in 0..16 {
                u[q6k::SC + 16 * j + n] = blk.sc[j];
            }
            for c in 0..32 {
                for e in 0..4 {
                    let (lo, hi) = (blk.q[column(c, e, false)], blk.q[column(c, e, true)]);
                    u[q6k::QL + 64 * c + 4 * n + e] = (lo & 0x0F) | ((hi & 0x0F) << 4);
                    let shift = 4 * (c % 2);
                    u[q6k::QH + 64 * (c / 2) + 4 * n + e] |=
                        ((lo >> 4) << shift) | ((hi >> 4) << (shift + 2));
                }
            }
        }
    }
}

/// Row `n`'s `d` and scale nibbles of a code-format block into unit `u` (the per-weight
/// reference of [`put_code_head`]).
#[cfg(test)]
fn put_code_scales(blk: &Block, n: usize, u: &mut [u8]) {
    u[nib::D + 2 * n..nib::D + 2 * n + 2].copy_from_slice(&blk.d);
    for jj in 0..8 {
        u[nib::SC + 16 * jj + n] = blk.sc[2 * jj] | (blk.sc[2 * jj + 1] << 4);
    }
}

/// Row `n`'s 256 4-bit weights `q` into the 32 nibble chunks at `u[qs..]` (the per-weight
/// reference layout of Q4_K's and IQ4_XS's chunks).
#[cfg(test)]
fn put_nibbles(q: &[u8; 256], qs: usize, n: usize, u: &mut [u8]) {
    for c in 0..32 {
        for e in 0..4 {
            u[qs + 64 * c + 4 * n + e] = q[column(c, e, false)] | (q[column(c, e, true)] << 4);
        }
    }
}

/// Row `n`'s 256 4-bit weights from the 32 nibble chunks at `u[qs..]` (the inverse of
/// `put_nibbles`).
fn get_nibbles(u: &[u8], qs: usize, n: usize, q: &mut [u8; 256]) {
    for c in 0..32 {
        for e in 0..4 {
            let byte = u[qs + 64 * c + 4 * n + e];
            q[column(c, e, false)] = byte & 0x0F;
            q[column(c, e, true)] = byte >> 4;
        }
    }
}

/// Row `n`'s `d` and scale nibbles of a code-format unit (the nibble formats' and IQ2_PLANES's /
/// IQ1_SHIFT's offsets agree).
fn get_code_scales(u: &[u8], n: usize, blk: &mut Block) {
    blk.d = [u[nib::D + 2 * n], u[nib::D + 2 * n + 1]];
    for jj in 0..8 {
        let byte = u[nib::SC + 16 * jj + n];
        (blk.sc[2 * jj], blk.sc[2 * jj + 1]) = (byte & 0x0F, byte >> 4);
    }
}

/// Where the sign (IQ2_PLANES) or shift bit (IQ1_SHIFT) of lane byte `p` = `4n + e` of code
/// chunk `c` lives in a unit: (byte, bit).
fn planes_bit(format: QuantFormat, c: usize, n: usize, p: usize) -> (usize, usize) {
    if format == QuantFormat::Iq2Planes {
        (planes::BITS + 8 * c + p / 8, p % 8)
    } else {
        (planes::BITS + 2 * (c / 2) + n / 8, n % 8)
    }
}

/// Read row `n`'s block back from unit `u`.
fn get(format: QuantFormat, u: &[u8], n: usize) -> Block {
    let mut blk = Block {
        q: [0; 256],
        sc: [0; 16],
        m: [0; 8],
        d: [0; 2],
        dmin: [0; 2],
    };
    match format {
        QuantFormat::Q4K | QuantFormat::Q5K => {
            blk.d = [u[q4k::D + 2 * n], u[q4k::D + 2 * n + 1]];
            blk.dmin = [u[q4k::DMIN + 2 * n], u[q4k::DMIN + 2 * n + 1]];
            for j in 0..8 {
                blk.sc[j] = u[q4k::SC + 16 * j + n];
                blk.m[j] = u[q4k::MINS + 32 * (j / 2) + 2 * n + j % 2];
            }
            get_nibbles(u, q4k::QS, n, &mut blk.q);
            if format == QuantFormat::Q5K {
                for (k, q) in blk.q.iter_mut().enumerate() {
                    let (j, i, e) = (k / 32, (k % 32) / 4, k % 4);
                    *q |= ((u[q5k::QH + 64 * j + 4 * n + e] >> i) & 1) << 4;
                }
            }
        }
        QuantFormat::Q2K => {
            blk.d = [u[q2k::D + 2 * n], u[q2k::D + 2 * n + 1]];
            blk.dmin = [u[q2k::DMIN + 2 * n], u[q2k::DMIN + 2 * n + 1]];
            for s in 0..16 {
                blk.sc[s] = u[q2k::SC + 32 * (s / 2) + 2 * n + s % 2];
            }
            for j in 0..8 {
                for k in 0..8 {
                    for e in 0..4 {
                        let low = u[q2k::QL + 64 * (2 * j + k / 4) + 4 * n + e] >> (2 * (k % 4));
                        blk.q[32 * j + 4 * k + e] = low & 3;
                    }
                }
            }
        }
        QuantFormat::Q3K => {
            blk.d = [u[q3k::D + 2 * n], u[q3k::D + 2 * n + 1]];
            for s in 0..16 {
                blk.sc[s] = u[q3k::SC + 16 * s + n];
            }
            for j in 0..8 {
                for k in 0..8 {
                    for e in 0..4 {
                        let low = u[q3k::QL + 64 * (2 * j + k / 4) + 4 * n + e] >> (2 * (k % 4));
                        let high = u[q3k::QH + 64 * j + 4 * n + e] >> k;
                        blk.q[32 * j + 4 * k + e] = (low & 3) | ((high & 1) << 2);
                    }
                }
            }
        }
        QuantFormat::Iq4Xs => {
            blk.d = [u[iq4xs::D + 2 * n], u[iq4xs::D + 2 * n + 1]];
            for j in 0..8 {
                blk.sc[j] = u[iq4xs::SC + 16 * j + n];
            }
            get_nibbles(u, iq4xs::QS, n, &mut blk.q);
        }
        QuantFormat::Iq3XxsNib | QuantFormat::Iq3SNib => {
            get_code_scales(u, n, &mut blk);
            get_nibbles(u, nib::QS, n, &mut blk.q);
        }
        QuantFormat::Iq2Planes | QuantFormat::Iq1Shift => {
            get_code_scales(u, n, &mut blk);
            for (j, index) in blk.q.iter_mut().enumerate() {
                let (c, p) = (j / 4, 4 * n + j % 4);
                let code = u[planes::CODES + 16 * c + p % 16] >> (2 * (p / 16)) & 3;
                let (at, bit) = planes_bit(format, c, n, p);
                *index = code | (u[at] >> bit & 1) << 2;
            }
        }
        _ => {
            blk.d = [u[q6k::D + 2 * n], u[q6k::D + 2 * n + 1]];
            for j in 0..16 {
                blk.sc[j] = u[q6k::SC + 16 * j + n];
            }
            for c in 0..32 {
                for e in 0..4 {
                    let byte = u[q6k::QL + 64 * c + 4 * n + e];
                    let high = u[q6k::QH + 64 * (c / 2) + 4 * n + e] >> (4 * (c % 2));
                    blk.q[column(c, e, false)] = (byte & 0x0F) | ((high & 3) << 4);
                    blk.q[column(c, e, true)] = (byte >> 4) | (((high >> 2) & 3) << 4);
                }
            }
        }
    }
    blk
}

/// The ggml blocks of row `r` of an interleaved `format` matrix with `cols` columns, into `out`
/// (`cols / block_elems` blocks).
#[cfg(test)]
pub(crate) fn row_blocks(format: QuantFormat, cols: usize, data: &[u8], r: usize, out: &mut [u8]) {
    let bb = format.block_bytes();
    for (b, blk) in out.chunks_exact_mut(bb).enumerate() {
        block(format, cols, data, r, b, blk);
    }
}

/// The ggml block `b` of row `r` of an interleaved `format` matrix with `cols` columns, into
/// `out` (`block_bytes` bytes).
pub(crate) fn block(
    format: QuantFormat,
    cols: usize,
    data: &[u8],
    r: usize,
    b: usize,
    out: &mut [u8],
) {
    let (nb, ub) = (cols / format.block_elems(), unit_bytes(format));
    let (g, n) = (r / ROWS, r % ROWS);
    let u = &data[(g * nb + b) * ub..(g * nb + b + 1) * ub];
    match format {
        QuantFormat::Q2K
        | QuantFormat::Q3K
        | QuantFormat::Q4K
        | QuantFormat::Q5K
        | QuantFormat::Q6K
        | QuantFormat::Iq4Xs
        | QuantFormat::Iq3XxsNib
        | QuantFormat::Iq3SNib
        | QuantFormat::Iq2Planes
        | QuantFormat::Iq1Shift => get(format, u, n).encode(format, out),
        _ => interleave32::get(format, u, n, out),
    }
}

/// What the kernels of this layout need besides [`ActBlocks`] (256-blocks): per activation row and
/// super-block, Q4_K's four pairs of 32-group sums (`Σ_{k∈2p} a | Σ_{k∈2p+1} a << 16`, each fits an
/// i16), Q6_K's (and the nibble formats') `−32 · Σ_{k∈j} a`, IQ2_PLANES's / IQ1_SHIFT's `−64 ·
/// Σ_{k∈j} a` and Q3_K's `−4 · Σ_{k∈j} a` per 16-group and IQ4_XS's `−128 · Σ_{k∈j} a` per 32-group as
/// i32 (negated, so a kernel starts each sub-block's integer sum from it: a broadcast load instead
/// of a subtraction).
#[derive(Debug, Default, Clone)]
pub(crate) struct GroupSums {
    /// `m × (cols / 256) × 4`.
    pub(crate) pairs: Vec<i32>,
    /// `m × (cols / 16)`.
    pub(crate) neg_off: Vec<i32>,
    /// `m × (cols / 16)`.
    pub(crate) neg64: Vec<i32>,
    /// `m × (cols / 32)`.
    pub(crate) neg128: Vec<i32>,
    /// `m × (cols / 16)`.
    pub(crate) neg4: Vec<i32>,
    /// The 32-weight formats (`super::interleave32`): `Σa` per 32-block, `m × (cols / 32)`.
    pub(crate) sum32: Vec<i32>,
}

impl GroupSums {
    /// Fill from 256-block activations the sums of the formats `needs` names (Q4_K: `pairs`,
    /// Q6_K and the nibble formats: `neg_off`, IQ2_PLANES / IQ1_SHIFT: `neg64`, Q3_K: `neg4`, IQ4_XS: `neg128`); the others keep whatever they held, and
    /// no kernel of a format not named reads them.
    pub(crate) fn fill(
        &mut self,
        act: &ActBlocks,
        m: usize,
        cols: usize,
        needs: impl Fn(QuantFormat) -> bool,
    ) {
        debug_assert_eq!(act.block, 256);
        let bsums = &act.bsums[..m * cols / 16];
        let per16 = |out: &mut Vec<i32>, k: i32| {
            out.clear();
            out.extend(bsums.iter().map(|&s| k * i32::from(s)));
        };
        if needs(QuantFormat::Q6K) || needs(QuantFormat::Iq3XxsNib) || needs(QuantFormat::Iq3SNib) {
            per16(&mut self.neg_off, -32);
        }
        if needs(QuantFormat::Iq2Planes) || needs(QuantFormat::Iq1Shift) {
            per16(&mut self.neg64, -64);
        }
        if needs(QuantFormat::Q3K) {
            per16(&mut self.neg4, -4);
        }
        if needs(QuantFormat::Iq4Xs) {
            self.neg128.clear();
            self.neg128.extend(
                bsums
                    .chunks_exact(2)
                    .map(|p| -128 * (i32::from(p[0]) + i32::from(p[1]))),
            );
        }
        if needs(QuantFormat::Q4K) || needs(QuantFormat::Q5K) {
            self.pairs.clear();
            self.pairs.extend(bsums.chunks_exact(4).map(|g| {
                let lo = i32::from(g[0]) + i32::from(g[1]);
                let hi = i32::from(g[2]) + i32::from(g[3]);
                (lo as i16 as u16 as i32) | (hi << 16)
            }));
        }
    }
}

/// Half-precision bits at `u[at..]` as f32.
#[inline(always)]
fn half(u: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([u[at], u[at + 1]])).to_f32()
}

/// The portable reference: `out[t·n_rows + r]` for `r ∈ rows` (whole groups) and `t < m`, with
/// exactly the arithmetic of the vector and tile kernels (see the module docs).
///
/// # Safety
/// `out` points to `m × n_rows` floats of which no other thread writes the elements of `rows`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn rows_scalar(
    format: QuantFormat,
    data: &[u8],
    cols: usize,
    act: &ActBlocks,
    sums: &GroupSums,
    m: usize,
    rows: Range<usize>,
    out: *mut f32,
    n_rows: usize,
) {
    let (nb, ub) = (cols / 256, unit_bytes(format));
    for g in rows.start / ROWS..rows.end / ROWS {
        for t in 0..m {
            let mut acc = [0.0f32; ROWS];
            for b in 0..nb {
                let u = &data[(g * nb + b) * ub..(g * nb + b + 1) * ub];
                let a = &act.qs[t * cols + 256 * b..t * cols + 256 * (b + 1)];
                let da = act.d[t * nb + b];
                for (n, acc) in acc.iter_mut().enumerate() {
                    let mut blk = get(format, u, n);
                    if format == QuantFormat::Iq4Xs {
                        // what the kernels multiply: the index's level + 128
                        for q in blk.q.iter_mut() {
                            *q = interleave32::IQ4_NL_U[usize::from(*q)];
                        }
                    }
                    if matches!(format, QuantFormat::Iq3XxsNib | QuantFormat::Iq3SNib) {
                        // the code's level + 32 under the scale 2ls + 1
                        let u = iq_codes::nib_levels_plus32(format);
                        blk.q.iter_mut().for_each(|q| *q = u[usize::from(*q)]);
                        blk.sc.iter_mut().for_each(|s| *s = 2 * *s + 1);
                    }
                    if matches!(format, QuantFormat::Iq2Planes | QuantFormat::Iq1Shift) {
                        // the code's level + 64 under the scale 2ls + 1
                        let levels = iq_codes::index_levels(format);
                        blk.q
                            .iter_mut()
                            .for_each(|q| *q = (levels[usize::from(*q)] + 64) as u8);
                        blk.sc.iter_mut().for_each(|s| *s = 2 * *s + 1);
                    }
                    let dot = |k0: usize, len: usize| -> i32 {
                        (k0..k0 + len)
                            .map(|k| i32::from(blk.q[k]) * i32::from(a[k]))
                            .sum()
                    };
                    let s = match format {
                        QuantFormat::Q4K | QuantFormat::Q5K => {
                            let pair = &sums.pairs[(t * nb + b) * 4..(t * nb + b) * 4 + 4];
                            let mut isum = 0.0f32;
                            let mut msum = 0i32;
                            for j in 0..8 {
                                let c = dot(32 * j, 32) as f32;
                                isum = c.mul_add(f32::from(blk.sc[j]), isum);
                                let p = pair[j / 2];
                                let group = if j % 2 == 0 {
                                    p as i16
                                } else {
                                    (p >> 16) as i16
                                };
                                msum += i32::from(blk.m[j]) * i32::from(group);
                            }
                            let (d, dmin) = (half(u, q4k::D + 2 * n), half(u, q4k::DMIN + 2 * n));
                            isum.mul_add(d, -((msum as f32) * dmin))
                        }
                        QuantFormat::Q2K => {
                            let bsums = &act.bsums[t * cols / 16 + 16 * b..][..16];
                            let mut isum = 0.0f32;
                            let mut msum = 0i32;
                            for (j, &bsum) in bsums.iter().enumerate() {
                                let (sc, m) = q2_k::scale_min(&blk.sc, j);
                                isum = (dot(16 * j, 16) as f32).mul_add(f32::from(sc), isum);
                                msum += i32::from(m) * i32::from(bsum);
                            }
                            let (d, dmin) = (half(u, q2k::D + 2 * n), half(u, q2k::DMIN + 2 * n));
                            isum.mul_add(d, -((msum as f32) * dmin))
                        }
                        _ => {
                            // Q6_K / the nibble formats / Q3_K: 16 sub-blocks of 16 from −32·Σa /
                            // −4·Σa; IQ4_XS: 8 of 32 from −128·Σa
                            let at16 = t * cols / 16 + 16 * b;
                            let (offs, len, d_at) = match format {
                                QuantFormat::Iq4Xs => {
                                    (&sums.neg128[t * cols / 32 + 8 * b..][..8], 32, iq4xs::D)
                                }
                                QuantFormat::Q3K => (&sums.neg4[at16..at16 + 16], 16, q3k::D),
                                QuantFormat::Iq3XxsNib | QuantFormat::Iq3SNib => {
                                    (&sums.neg_off[at16..at16 + 16], 16, nib::D)
                                }
                                QuantFormat::Iq2Planes | QuantFormat::Iq1Shift => {
                                    (&sums.neg64[at16..at16 + 16], 16, planes::D)
                                }
                                _ => (&sums.neg_off[at16..at16 + 16], 16, q6k::D),
                            };
                            let mut isum = 0.0f32;
                            for (j, &off) in offs.iter().enumerate() {
                                let c = (off + dot(len * j, len)) as f32;
                                isum = c.mul_add(f32::from(blk.sc[j] as i8), isum);
                            }
                            isum * half(u, d_at + 2 * n)
                        }
                    };
                    *acc = s.mul_add(da, *acc);
                }
            }
            for (n, v) in acc.iter().enumerate() {
                // SAFETY: t < m and 16g + n is one of the caller's rows (caller's contract).
                unsafe { *out.add(t * n_rows + ROWS * g + n) = *v };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every format with a layout of this module (256-weight blocks).
    fn super_block_layouts() -> impl Iterator<Item = QuantFormat> {
        QuantFormat::ALL
            .into_iter()
            .filter(|&f| has_layout(f) && f.block_elems() == 256)
    }

    /// Random but valid blocks (finite scales).
    fn blocks(format: QuantFormat, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
        let mut s = seed;
        let mut next = || {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (s >> 33) as u8
        };
        let bb = format.block_bytes();
        let mut out: Vec<u8> = (0..rows * cols / 256 * bb).map(|_| next()).collect();
        let d = f16::from_f32(0.01).to_bits().to_le_bytes();
        for blk in out.chunks_exact_mut(bb) {
            for &at in format.f16_fields() {
                blk[at..at + 2].copy_from_slice(&d);
            }
        }
        out
    }

    /// The word-at-a-time repacking writes the bytes the per-weight reference does.
    #[test]
    fn fast_repacking_equals_the_per_weight_reference() {
        for format in [
            QuantFormat::Q4K,
            QuantFormat::Q5K,
            QuantFormat::Q6K,
            QuantFormat::Iq4Xs,
            QuantFormat::Iq3XxsNib,
            QuantFormat::Iq3SNib,
            QuantFormat::Iq2Planes,
            QuantFormat::Iq1Shift,
        ] {
            // (Q3_K's and Q2_K's put is per weight: their round trip below is the check)
            let (rows, cols) = (16, 768);
            let src = blocks(format, rows, cols, 11);
            let fast = repack(format, rows, cols, &src);
            let (nb, bb, ub) = (cols / 256, format.block_bytes(), unit_bytes(format));
            let mut slow = vec![0u8; fast.len()];
            for (unit, dst) in slow.chunks_exact_mut(ub).enumerate() {
                for n in 0..ROWS {
                    let at = (n * nb + unit) * bb;
                    put(format, &Block::decode(format, &src[at..at + bb]), n, dst);
                }
            }
            assert_eq!(fast, slow, "{format}");
        }
    }

    #[test]
    fn repacking_round_trips_every_row_bytewise() {
        // Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS and the four code formats
        assert_eq!(super_block_layouts().count(), 10);
        for format in super_block_layouts() {
            let (rows, cols) = (32, 512);
            let src = blocks(format, rows, cols, 7);
            let packed = repack(format, rows, cols, &src);
            assert_eq!(packed.len(), bytes_for(format, rows, cols));
            let rb = cols / 256 * format.block_bytes();
            let mut row = vec![0u8; rb];
            for r in 0..rows {
                row_blocks(format, cols, &packed, r, &mut row);
                assert_eq!(row, src[r * rb..(r + 1) * rb], "{format} row {r}");
            }
        }
    }
}
