//! Portable kernels: one weight row against a tile of activation rows, in plain Rust.
//!
//! They define the arithmetic every SIMD kernel must reproduce. Block formats are multiplied as
//! ggml's `vec_dot_*_q8_*` do: each weight group of 32 is decoded to small integers `q` with
//! `w = a·q + c` (one `a` per 16 for Q6_K), the activation block is `x ≈ dx·qx` ([`ActBlocks`]),
//! and `Σ w·x = dx·Σ_h a_h·Σ q·qx + c·s` with the integer sums exact. Dense formats multiply in
//! f32. Used where AVX2 is absent and as the oracle of the SIMD kernels' tests.

use super::dequant::{f16_at, scale_min_k4};
use super::format::QuantFormat;
use super::matmul::{ActTile, FloatTile};
use half::{bf16, f16};

/// A group of 32 weights as integers: `w_j = a[j / 16]·q_j + c + c16[j / 16]`. `c` (one per 32,
/// the 32-weight formats' and Q4_K's) multiplies the activation block's sum `s`; `c16` (Q2_K's
/// mins, one per 16) multiplies the integer sums of the halves, scaled by the block's `d`.
#[derive(Clone, Copy)]
struct Group {
    q: [i8; 32],
    a: [f32; 2],
    c: f32,
    c16: [f32; 2],
}

impl Default for Group {
    fn default() -> Self {
        Group {
            q: [0; 32],
            a: [0.0; 2],
            c: 0.0,
            c16: [0.0; 2],
        }
    }
}

/// Decode one block of a block format into `groups` (`block_elems / 32` of them).
fn decode_groups(format: QuantFormat, b: &[u8], groups: &mut [Group; 8]) {
    let nib = |g: &mut Group, qs: &[u8], high: &[u8], offset: i8| {
        for j in 0..16 {
            g.q[j] = (qs[j] & 0x0F | high[j]) as i8 - offset;
            g.q[j + 16] = (qs[j] >> 4 | high[j + 16]) as i8 - offset;
        }
    };
    let fifth = |qh: u32| -> [u8; 32] { std::array::from_fn(|j| (((qh >> j) & 1) as u8) << 4) };
    let g = &mut groups[0];
    match format {
        QuantFormat::Q8_0 => {
            g.a = [f16_at(b, 0); 2];
            g.c = 0.0;
            g.q = std::array::from_fn(|j| b[2 + j] as i8);
        }
        QuantFormat::Q4_0 => {
            g.a = [f16_at(b, 0); 2];
            g.c = 0.0;
            nib(g, &b[2..18], &[0; 32], 8);
        }
        QuantFormat::Q4_1 => {
            g.a = [f16_at(b, 0); 2];
            g.c = f16_at(b, 2);
            nib(g, &b[4..20], &[0; 32], 0);
        }
        QuantFormat::Q5_0 => {
            g.a = [f16_at(b, 0); 2];
            g.c = 0.0;
            let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
            nib(g, &b[6..22], &fifth(qh), 16);
        }
        QuantFormat::Q5_1 => {
            g.a = [f16_at(b, 0); 2];
            g.c = f16_at(b, 2);
            let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
            nib(g, &b[8..24], &fifth(qh), 0);
        }
        QuantFormat::Iq4Nl => {
            g.a = [f16_at(b, 0); 2];
            g.c = 0.0;
            let level = |i: u8| super::iq4_nl::GRID[usize::from(i)];
            for j in 0..16 {
                g.q[j] = level(b[2 + j] & 0x0F);
                g.q[j + 16] = level(b[2 + j] >> 4);
            }
        }
        QuantFormat::Iq4Xs => {
            let d = f16_at(b, 0);
            for (j, g) in groups.iter_mut().enumerate() {
                g.a = [d * f32::from(super::iq4_xs::sub_scale(b, j)); 2];
                g.c = 0.0;
                let qs = &b[8 + 16 * j..8 + 16 * (j + 1)];
                let level = |i: u8| super::iq4_nl::GRID[usize::from(i)];
                for (l, &byte) in qs.iter().enumerate() {
                    g.q[l] = level(byte & 0x0F);
                    g.q[l + 16] = level(byte >> 4);
                }
            }
        }
        QuantFormat::Q2K => {
            use super::q2_k;
            let (d, dmin) = (f16_at(b, q2_k::D), f16_at(b, q2_k::DMIN));
            for (k, g) in groups.iter_mut().enumerate() {
                let [(sc0, m0), (sc1, m1)] = [0, 1].map(|h| q2_k::scale_min(b, 2 * k + h));
                g.a = [d * f32::from(sc0), d * f32::from(sc1)];
                g.c16 = [-dmin * f32::from(m0), -dmin * f32::from(m1)];
                for l in 0..32 {
                    g.q[l] = q2_k::weight(b, 32 * k + l) as i8;
                }
            }
        }
        QuantFormat::Q3K => {
            let d = f16_at(b, 108);
            let sc = super::q3_k::scales(b);
            for (k, g) in groups.iter_mut().enumerate() {
                g.a = [d * f32::from(sc[2 * k]), d * f32::from(sc[2 * k + 1])];
                g.c = 0.0;
                for l in 0..32 {
                    g.q[l] = super::q3_k::weight(b, 32 * k + l) as i8 - 4;
                }
            }
        }
        QuantFormat::Q4K | QuantFormat::Q5K => {
            let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
            let scales = &b[4..16];
            let (qh, qs) = if format == QuantFormat::Q5K {
                (&b[16..48], &b[48..176])
            } else {
                (&[0u8; 32][..], &b[16..144])
            };
            for (k, g) in groups.iter_mut().enumerate() {
                let (sc, m) = scale_min_k4(k, scales);
                g.a = [d * f32::from(sc); 2];
                g.c = -dmin * f32::from(m);
                let (chunk, high_nibble) = (k / 2, k % 2 == 1);
                for l in 0..32 {
                    let byte = qs[32 * chunk + l];
                    let lo = if high_nibble { byte >> 4 } else { byte & 0x0F };
                    g.q[l] = (lo | (((qh[l] >> k) & 1) << 4)) as i8;
                }
            }
        }
        QuantFormat::Q6K => {
            let (ql, qh, sc) = (&b[0..128], &b[128..192], &b[192..208]);
            let d = f16_at(b, 208);
            for (k, g) in groups.iter_mut().enumerate() {
                let (half, part) = (k / 4, k % 4);
                let ql = &ql[64 * half + 32 * (part % 2)..];
                let qh = &qh[32 * half..];
                for l in 0..32 {
                    let lo = if part < 2 { ql[l] & 0x0F } else { ql[l] >> 4 };
                    let hi = (qh[l] >> (2 * part)) & 3;
                    g.q[l] = (lo | (hi << 4)) as i8 - 32;
                }
                g.a = [
                    d * f32::from(sc[2 * k] as i8),
                    d * f32::from(sc[2 * k + 1] as i8),
                ];
                g.c = 0.0;
            }
        }
        QuantFormat::F32 | QuantFormat::F16 | QuantFormat::Bf16 => {
            unreachable!("dense formats have no integer groups")
        }
        QuantFormat::Iq2Planes
        | QuantFormat::Iq3XxsNib
        | QuantFormat::Iq3SNib
        | QuantFormat::Iq1Shift => {
            unreachable!("{format} rows go to iq_codes")
        }
    }
}

/// `out[i] = Σ_j w_j · x_ij` for one row `w` of a block format and every row `i` of `act`.
pub(crate) fn row_dot_blocks(format: QuantFormat, w: &[u8], act: &ActTile<'_>, out: &mut [f32]) {
    if format.is_code_copy() {
        return super::iq_codes::row_dot_scalar(format, w, act, out);
    }
    let groups_per_block = format.block_elems() / 32;
    let mut groups = [Group::default(); 8];
    out[..act.m].iter_mut().for_each(|o| *o = 0.0);
    for (blk_idx, blk) in w.chunks_exact(format.block_bytes()).enumerate() {
        decode_groups(format, blk, &mut groups);
        for (k, g) in groups[..groups_per_block].iter().enumerate() {
            let ab = blk_idx * groups_per_block + k;
            for (i, o) in out[..act.m].iter_mut().enumerate() {
                let (qx, dx, sx) = act.block(i, ab);
                let (mut s0, mut s1, mut h0, mut h1) = (0i32, 0i32, 0i32, 0i32);
                for j in 0..16 {
                    s0 += i32::from(g.q[j]) * i32::from(qx[j]);
                    s1 += i32::from(g.q[j + 16]) * i32::from(qx[j + 16]);
                    h0 += i32::from(qx[j]);
                    h1 += i32::from(qx[j + 16]);
                }
                let halves = g.c16[0] * h0 as f32 + g.c16[1] * h1 as f32;
                *o += dx * (g.a[0] * s0 as f32 + g.a[1] * s1 as f32 + halves) + g.c * sx;
            }
        }
    }
}

/// `out[i] = Σ_j w_j · x_ij` for one row `w` of a dense format and every row of `x`.
pub(crate) fn row_dot_dense(format: QuantFormat, w: &[u8], x: &FloatTile<'_>, out: &mut [f32]) {
    let weight = |j: usize| -> f32 {
        match format {
            QuantFormat::F32 => {
                f32::from_le_bytes([w[4 * j], w[4 * j + 1], w[4 * j + 2], w[4 * j + 3]])
            }
            QuantFormat::F16 => {
                f16::from_bits(u16::from_le_bytes([w[2 * j], w[2 * j + 1]])).to_f32()
            }
            _ => bf16::from_bits(u16::from_le_bytes([w[2 * j], w[2 * j + 1]])).to_f32(),
        }
    };
    out[..x.m].iter_mut().for_each(|o| *o = 0.0);
    for j in 0..x.cols {
        let wj = weight(j);
        for (i, o) in out[..x.m].iter_mut().enumerate() {
            *o += wj * x.row(i)[j];
        }
    }
}
