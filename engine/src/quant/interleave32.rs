//! The row-interleaved layout ("x16") of the 32-weight block formats — Q8_0, Q4_0, Q4_1, Q5_0,
//! Q5_1 and IQ4_NL — on the pattern of `super::interleave` (Q4_K / Q6_K): 16 weight rows side by side, so a
//! vector register holds 4 consecutive weights of each of 8 or 16 rows and each activation row's 4
//! bytes, broadcast, multiply all of them at once, with no horizontal sums.
//!
//! # Why
//! On ggml's row-major blocks the AVX2 kernel (`super::avx2`) decodes one block of one row at a
//! time, applies its scale per (row, activation row) and ends every row in a horizontal sum.
//! Interleaved, the AVX2 kernel (`super::x16_avx2`) applies the scales of 8 rows with one
//! multiply and one FMA per activation row and block. One thread, 8960 × 1536 on a 2-core AMD EPYC
//! (`quant_kernels`, CPU time): Q4_1 at 1 activation row 900 → 265 µs, Q5_0 1550 → 467 µs, and
//! at 9 rows 5.7 → 1.7 ms and 6.4 → 1.9 ms. What it is for: Qwen2.5-0.5B's Q5_0 layers and Q8_0
//! output (the draft model) and SmolLM2's Q4_1. AVX-512 VNNI CPUs run the same units through
//! `vpdpbusd`, 16 rows per vector (`super::x16`): Q4_1 1000 → 333 µs against ggml's rows there.
//!
//! # Arithmetic (every kernel of this layout, so results are bit-identical whatever the number of
//! activation rows)
//! For weight row `n`, activation row `t` (scale `d_a`, ggml's Q8_1 sum `s_a`, integer sum `Σa`
//! per 32-block) and block `b`:
//! - the exact integer `C = Σ_k u_k·a_k − OFF·Σa`, where `u_k` is the stored unsigned weight
//!   (Q8_0: `w + 128`, `OFF` 128; Q4_0: `OFF` 8; Q5_0: `OFF` 16; Q4_1 / Q5_1: `OFF` 0; IQ4_NL:
//!   its level `GRID[q] + 128`, 1 ..= 241, looked up from the stored nibble, `OFF` 128) — a kernel
//!   starts the integer sum from `−OFF·Σa`;
//! - `acc = fma(C·d, d_a, acc)`, then for Q4_1 / Q5_1 `acc = fma(m, s_a, acc)`, block after block
//!   from `acc = 0`.
//!
//! # Layout
//! A matrix of `rows` (a multiple of 16) × `cols` is `rows / 16` groups of `cols / 32` units, group
//! after group; unit `(g, b)` holds block `b` of rows `16g .. 16g + 16`, in exactly the bytes of
//! ggml's 16 blocks: `d` ×16 (f16), Q4_1 / Q5_1 `m` ×16 (f16), Q5_0 / Q5_1 fifth bits (8 masks of
//! 64 bits), then the weights in 64-byte *chunks* whose byte `4n + e` belongs to row `n`.
//! - Weight chunk `c` (0..8) holds columns `4c .. 4c + 4`. Q8_0 stores the 8 chunks as bytes
//!   `w ^ 0x80`; the nibble formats store 4 chunks, chunk `i` holding columns `4i + e` in the low
//!   nibbles and `16 + 4i + e` in the high ones — which is ggml's own byte `4i + e` of the row's
//!   block, so repacking the nibbles copies 4-byte words.
//! - Fifth-bit mask `q` (0..8) has bit `4n + e` set when column `4q + e` of row `n` has its fifth
//!   bit: nibble `q` of ggml's `qh` word of row `n`.

use std::ops::Range;

use half::f16;

use super::format::QuantFormat;
use super::interleave::ROWS;
use super::quantize::ActBlocks;

/// Offset of `d` ×16 (f16), which opens every unit.
pub(crate) const D: usize = 0;

/// Where a format's other fields lie in its unit, and its offset.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    /// `m` ×16 (f16) of Q4_1 / Q5_1.
    pub(crate) m: Option<usize>,
    /// 8 fifth-bit masks of Q5_0 / Q5_1.
    pub(crate) qh: Option<usize>,
    /// The weight chunks.
    pub(crate) qs: usize,
    /// Bytes of a unit (16 × ggml's block).
    pub(crate) unit: usize,
    /// Whether the chunks hold bytes (Q8_0) rather than two nibbles.
    pub(crate) bytes: bool,
    /// The integer offset subtracted through `−OFF·Σa`.
    pub(crate) off: i32,
    /// Whether each nibble indexes [`IQ4_NL_U`] (IQ4_NL) rather than being the weight itself.
    pub(crate) lut: bool,
}

/// IQ4_NL's grid levels plus 128 (`super::iq4_nl::GRID`), the unsigned weights its kernels
/// multiply: a byte table for one `vpshufb`.
pub(crate) const IQ4_NL_U: [u8; 16] = {
    let mut t = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        t[i] = (super::iq4_nl::GRID[i] as i16 + 128) as u8;
        i += 1;
    }
    t
};

/// The layout of `format`, if it is one of the 32-weight formats.
pub(crate) const fn layout(format: QuantFormat) -> Option<Layout> {
    const fn l(
        m: Option<usize>,
        qh: Option<usize>,
        qs: usize,
        unit: usize,
        bytes: bool,
        off: i32,
    ) -> Layout {
        Layout {
            m,
            qh,
            qs,
            unit,
            bytes,
            off,
            lut: false,
        }
    }
    Some(match format {
        QuantFormat::Q8_0 => l(None, None, 32, 544, true, 128),
        QuantFormat::Q4_0 => l(None, None, 32, 288, false, 8),
        QuantFormat::Q4_1 => l(Some(32), None, 64, 320, false, 0),
        QuantFormat::Q5_0 => l(None, Some(32), 96, 352, false, 16),
        QuantFormat::Q5_1 => l(Some(32), Some(64), 128, 384, false, 0),
        QuantFormat::Iq4Nl => Layout {
            lut: true,
            ..l(None, None, 32, 288, false, 128)
        },
        _ => return None,
    })
}

/// The 32-weight formats as const-generic arguments of the vector kernels (`super::x16`,
/// `super::x16_avx2`), which read their [`Layout`] through [`layout_of`], and of the KV cache's
/// blocks (`crate::model::cpu_attention::Block32`).
pub(crate) const Q4_0: u8 = 0;
pub(crate) const Q4_1: u8 = 1;
pub(crate) const Q5_0: u8 = 2;
pub(crate) const Q5_1: u8 = 3;
pub(crate) const Q8_0: u8 = 4;
pub(crate) const IQ4_NL: u8 = 5;

/// The format numbered `f` ([`Q4_0`] … [`IQ4_NL`]).
pub(crate) const fn format_of(f: u8) -> QuantFormat {
    match f {
        Q4_0 => QuantFormat::Q4_0,
        Q4_1 => QuantFormat::Q4_1,
        Q5_0 => QuantFormat::Q5_0,
        Q5_1 => QuantFormat::Q5_1,
        IQ4_NL => QuantFormat::Iq4Nl,
        _ => QuantFormat::Q8_0,
    }
}

/// The [`Layout`] of the format numbered `f` ([`Q4_0`] … [`IQ4_NL`]), at compile time.
pub(crate) const fn layout_of(f: u8) -> Layout {
    match layout(format_of(f)) {
        Some(l) => l,
        None => panic!("not a 32-weight format"),
    }
}

/// Byte offsets in a ggml block of a 32-weight `format`, after its `f16` scale at 0: (`m`, `qh`,
/// weights), 0 for a field the format lacks.
pub(crate) const fn ggml_fields(format: QuantFormat) -> (usize, usize, usize) {
    match format {
        QuantFormat::Q8_0 | QuantFormat::Q4_0 | QuantFormat::Iq4Nl => (0, 0, 2),
        QuantFormat::Q4_1 => (2, 0, 4),
        QuantFormat::Q5_0 => (0, 2, 6),
        _ => (2, 4, 8),
    }
}

/// Four bytes at `b[at..]` as a little-endian word.
#[inline(always)]
fn word(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Row `n`'s ggml block `blk` into unit `u` (whose mask bytes start zeroed).
pub(crate) fn put(format: QuantFormat, blk: &[u8], n: usize, u: &mut [u8]) {
    let Some(l) = layout(format) else { return };
    let (m_at, qh_at, qs_at) = ggml_fields(format);
    u[D + 2 * n..D + 2 * n + 2].copy_from_slice(&blk[0..2]);
    if let Some(m) = l.m {
        u[m + 2 * n..m + 2 * n + 2].copy_from_slice(&blk[m_at..m_at + 2]);
    }
    if let Some(qh) = l.qh {
        let h = word(blk, qh_at);
        for q in 0..8 {
            u[qh + 8 * q + n / 2] |= (((h >> (4 * q)) & 0xF) as u8) << (4 * (n % 2));
        }
    }
    let (chunks, flip) = if l.bytes { (8, 0x8080_8080) } else { (4, 0) };
    for c in 0..chunks {
        let v = word(blk, qs_at + 4 * c) ^ flip;
        let at = l.qs + 64 * c + 4 * n;
        u[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
}

/// Row `n`'s ggml block back from unit `u` into `blk` (the inverse of [`put`]).
pub(crate) fn get(format: QuantFormat, u: &[u8], n: usize, blk: &mut [u8]) {
    let Some(l) = layout(format) else { return };
    let (m_at, qh_at, qs_at) = ggml_fields(format);
    blk[0..2].copy_from_slice(&u[D + 2 * n..D + 2 * n + 2]);
    if let Some(m) = l.m {
        blk[m_at..m_at + 2].copy_from_slice(&u[m + 2 * n..m + 2 * n + 2]);
    }
    if let Some(qh) = l.qh {
        let h = (0..8).fold(0u32, |h, q| {
            h | ((u32::from(u[qh + 8 * q + n / 2] >> (4 * (n % 2))) & 0xF) << (4 * q))
        });
        blk[qh_at..qh_at + 4].copy_from_slice(&h.to_le_bytes());
    }
    let (chunks, flip) = if l.bytes { (8, 0x8080_8080) } else { (4, 0) };
    for c in 0..chunks {
        let v = word(u, l.qs + 64 * c + 4 * n) ^ flip;
        blk[qs_at + 4 * c..qs_at + 4 * c + 4].copy_from_slice(&v.to_le_bytes());
    }
}

/// The stored unsigned weight of column `k` (0..32) of row `n` in unit `u`, fifth bit included
/// (what the kernels multiply: Q8_0 `w + 128`, IQ4_NL its level + 128, the others the ggml value
/// before its offset).
fn stored(l: &Layout, u: &[u8], n: usize, k: usize) -> i32 {
    if l.bytes {
        return i32::from(u[l.qs + 64 * (k / 4) + 4 * n + k % 4]);
    }
    let (c, e, high) = ((k % 16) / 4, k % 4, k >= 16);
    let byte = u[l.qs + 64 * c + 4 * n + e];
    let mut q = i32::from(if high { byte >> 4 } else { byte & 0x0F });
    if let Some(qh) = l.qh {
        let bit = 4 * n + e;
        let mask = &u[qh + 8 * (k / 4)..qh + 8 * (k / 4) + 8];
        q |= i32::from((mask[bit / 8] >> (bit % 8)) & 1) << 4;
    }
    if l.lut {
        q = i32::from(IQ4_NL_U[q as usize]);
    }
    q
}

/// Half-precision bits at `u[at..]` as f32.
#[inline(always)]
fn half(u: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([u[at], u[at + 1]])).to_f32()
}

/// The integer sum `Σa` of every 32-block of `m` activation rows (32-block activations), which the
/// kernels of this layout start from (`−OFF·Σa`).
pub(crate) fn fill_sums(act: &ActBlocks, m: usize, cols: usize, out: &mut Vec<i32>) {
    debug_assert_eq!(act.block, 32);
    out.clear();
    out.extend(
        act.bsums[..m * cols / 16]
            .chunks_exact(2)
            .map(|p| i32::from(p[0]) + i32::from(p[1])),
    );
}

/// The portable reference: `out[t·n_rows + r]` for `r ∈ rows` (whole groups) and `t < m`, with
/// exactly the arithmetic of the vector kernels (see the module docs).
///
/// # Safety
/// `out` points to `m × n_rows` floats of which no other thread writes the elements of `rows`.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn rows_scalar(
    format: QuantFormat,
    data: &[u8],
    cols: usize,
    act: &ActBlocks,
    sums: &[i32],
    m: usize,
    rows: Range<usize>,
    out: *mut f32,
    n_rows: usize,
) {
    let Some(l) = layout(format) else { return };
    let nb = cols / 32;
    for g in rows.start / ROWS..rows.end / ROWS {
        for t in 0..m {
            let mut acc = [0.0f32; ROWS];
            for b in 0..nb {
                let u = &data[(g * nb + b) * l.unit..(g * nb + b + 1) * l.unit];
                let a = &act.qs[t * cols + 32 * b..t * cols + 32 * (b + 1)];
                let (da, sa, seed) = (
                    act.d[t * nb + b],
                    act.s[t * nb + b],
                    -l.off * sums[t * nb + b],
                );
                for (n, acc) in acc.iter_mut().enumerate() {
                    let c = seed
                        + (0..32)
                            .map(|k| stored(&l, u, n, k) * i32::from(a[k]))
                            .sum::<i32>();
                    let s = c as f32 * half(u, D + 2 * n);
                    *acc = s.mul_add(da, *acc);
                    if let Some(mo) = l.m {
                        *acc = half(u, mo + 2 * n).mul_add(sa, *acc);
                    }
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
    use super::super::interleave::{bytes_for, repack, row_blocks};
    use super::*;

    const FORMATS: [QuantFormat; 6] = [
        QuantFormat::Q8_0,
        QuantFormat::Q4_0,
        QuantFormat::Q4_1,
        QuantFormat::Q5_0,
        QuantFormat::Q5_1,
        QuantFormat::Iq4Nl,
    ];

    /// Random bytes as blocks (every bit pattern is a valid block apart from the scales, which
    /// the layout copies as they are).
    fn blocks(format: QuantFormat, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
        let mut s = seed;
        (0..format.bytes_for(rows, cols))
            .map(|_| {
                s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                (s >> 33) as u8
            })
            .collect()
    }

    /// Same size as ggml's blocks, and every row comes back byte for byte.
    #[test]
    fn repacking_round_trips_every_row_bytewise() {
        for format in FORMATS {
            let (rows, cols) = (48, 96);
            let src = blocks(format, rows, cols, 5);
            let packed = repack(format, rows, cols, &src);
            assert_eq!(packed.len(), src.len(), "{format}: unit = 16 ggml blocks");
            assert_eq!(packed.len(), bytes_for(format, rows, cols));
            let rb = format.bytes_for(1, cols);
            let mut row = vec![0u8; rb];
            for r in 0..rows {
                row_blocks(format, cols, &packed, r, &mut row);
                assert_eq!(row, src[r * rb..(r + 1) * rb], "{format} row {r}");
            }
        }
    }

    /// The stored weight of every column is ggml's quant (plus 128 for Q8_0; IQ4_NL's level plus
    /// 128), read through the
    /// chunk and mask addressing the kernels use — against a decoding written from ggml's
    /// definition (weight `k < 16` in the low nibble of byte `k`, `k ≥ 16` in the high nibble of
    /// byte `k − 16`, fifth bit `k` of `qh`).
    #[test]
    fn stored_weights_follow_ggml_definitions() {
        for format in FORMATS {
            let l = layout(format).expect("32-weight format");
            let (_, qh_at, qs_at) = ggml_fields(format);
            let src = blocks(format, 16, 32, 9);
            let unit = repack(format, 16, 32, &src);
            let bb = format.block_bytes();
            for n in 0..16 {
                let blk = &src[n * bb..(n + 1) * bb];
                for k in 0..32 {
                    let want = if l.bytes {
                        i32::from(blk[qs_at + k] as i8) + 128
                    } else {
                        let byte = blk[qs_at + k % 16];
                        let mut q = i32::from(if k < 16 { byte & 0xF } else { byte >> 4 });
                        if l.qh.is_some() {
                            q |= (((word(blk, qh_at) >> k) & 1) as i32) << 4;
                        }
                        if l.lut {
                            q = i32::from(super::super::iq4_nl::GRID[q as usize]) + 128;
                        }
                        q
                    };
                    assert_eq!(stored(&l, &unit, n, k), want, "{format} row {n} col {k}");
                }
            }
        }
    }
}
