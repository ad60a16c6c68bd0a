//! ggml's `iq4_nl`: blocks of 32 values stored as 4-bit indices into a fixed non-linear grid of
//! 16 int8 levels, with one `f16` scale (18 bytes: `d`, then 16 bytes of nibbles, value `j` in
//! the low nibble of byte `j` and value `16 + j` in its high nibble). A value is `d · GRID[q]`.
//!
//! The quantizer is the one llama.cpp's CPU backend applies when it writes an `iq4_nl` KV cache
//! (`-ctk/-ctv iq4_nl`: `quantize_row_iq4_nl_ref`, no importance weights, no scale search):
//! the signed value of largest magnitude maps to the grid's first level, every value takes its
//! nearest level (ties to the upper one), and the scale is then the least-squares fit of those
//! levels weighted by `x²`. Weights (`--quant iq4_nl`) take llama.cpp's weight quantizer instead,
//! with its search over 15 trial scales ([`quantize_weights_block`]).
//! `tests/fixtures/quantize/IQ4_NL.json` and `IQ4_NL_weights.json` hold blocks made by llama.cpp's
//! own library (`scripts/gen_reference.py --only quantize`).

use half::f16;

/// Bytes of one block.
pub const BLOCK_BYTES: usize = 18;

/// The 16 levels (ggml's `kvalues_iq4nl`), ascending.
pub const GRID: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// Index of the level nearest to `x` (the upper one on a tie; the ends beyond the grid).
pub(crate) fn nearest(x: f32) -> u8 {
    let level = |i: usize| f32::from(GRID[i]);
    if x <= level(0) {
        return 0;
    }
    if x >= level(15) {
        return 15;
    }
    // the first level above x (bisection over the ascending grid, as ggml's best_index_int8)
    let (mut lo, mut hi) = (0, 15);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if x < level(mid) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    if x - level(hi - 1) < level(hi) - x {
        (hi - 1) as u8
    } else {
        hi as u8
    }
}

/// One block of 32 values into `out` (18 bytes).
///
/// # Panics
/// When `x` is not 32 values or `out` not 18 bytes.
pub fn quantize_block(x: &[f32], out: &mut [u8]) {
    assert!(
        x.len() == 32 && out.len() == BLOCK_BYTES,
        "one iq4_nl block"
    );
    // the value of largest magnitude, the first of equals
    let max = x
        .iter()
        .fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
    let mut q = [0u8; 32];
    let mut d = 0.0f32;
    if max.abs() >= 1e-15 {
        let id = 1.0 / (max / f32::from(GRID[0]));
        let (mut sumqx, mut sumq2) = (0.0f32, 0.0f32);
        for (l, &v) in q.iter_mut().zip(x) {
            *l = nearest(id * v);
            let level = f32::from(GRID[*l as usize]);
            let w = v * v;
            sumqx += w * level * v;
            sumq2 += w * level * level;
        }
        if sumq2 > 0.0 {
            d = sumqx / sumq2;
        }
    }
    out[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
    pack_indices(&q, &mut out[2..]);
}

/// One block of 32 weights into `out` (18 bytes), as llama.cpp quantizes weights to `iq4_nl`
/// (`quantize_iq4_nl` without an importance matrix: what `llama-quantize … IQ4_NL` writes):
/// importance `x²`; a first fit that maps the value of largest magnitude onto the grid's top end
/// (`d = max / 127`), then 15 trial scales `id = (t − 127) / max` for `t = −7 … 7`, keeping the
/// least-squares scale with the largest `(Σw·q·x)² / Σw·q²`; finally every value takes its level
/// nearest to `x / d` under that (unrounded) scale. An all-zero block is scale 0 with every index
/// at level 8 (the level nearest 0).
///
/// # Panics
/// When `x` is not 32 values or `out` not 18 bytes.
pub fn quantize_weights_block(x: &[f32], out: &mut [u8]) {
    assert!(
        x.len() == 32 && out.len() == BLOCK_BYTES,
        "one iq4_nl block"
    );
    let d = weight_scale(x);
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let q: [u8; 32] = std::array::from_fn(|j| nearest(id * x[j]));
    out[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
    pack_indices(&q, &mut out[2..]);
}

/// The scale [`quantize_weights_block`] chooses for 32 values (0 for a block below 1e-15): the
/// search of llama.cpp's `quantize_row_iq4_nl_impl` with `ntry = 7` and importance `x²`, also
/// the per-sub-block scale of its IQ4_XS quantizer (`super::iq4_xs::quantize_block`).
pub(crate) fn weight_scale(x: &[f32]) -> f32 {
    const TRIES: i32 = 7;
    let max = x
        .iter()
        .fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
    // Σw·q·x and Σw·q² of the levels nearest to id·x (ggml's order of operations: w·q·x as
    // (w·q)·x, w = x²)
    let fit = |id: f32| {
        x.iter().fold((0.0f32, 0.0f32), |(sqx, sq2), &v| {
            let level = f32::from(GRID[nearest(id * v) as usize]);
            let w = v * v;
            (sqx + w * level * v, sq2 + w * level * level)
        })
    };
    let mut d = 0.0f32;
    if max.abs() >= 1e-15 {
        let (mut sumqx, sumq2) = fit(1.0 / (-max / f32::from(GRID[0])));
        d = if sumq2 > 0.0 { sumqx / sumq2 } else { 0.0 };
        let mut best = d * sumqx;
        for t in -TRIES..=TRIES {
            let q2;
            (sumqx, q2) = fit((t + i32::from(GRID[0])) as f32 / max);
            if q2 > 0.0 && sumqx * sumqx > best * q2 {
                d = sumqx / q2;
                best = d * sumqx;
            }
        }
    }
    d
}

/// The 32 values of one block (`d · GRID[q]`, exact in `f32`).
///
/// # Panics
/// When `block` is not 18 bytes or `out` not 32 values.
pub fn dequantize_block(block: &[u8], out: &mut [f32]) {
    assert!(
        block.len() == BLOCK_BYTES && out.len() == 32,
        "one iq4_nl block"
    );
    let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
    dequantize_indices(&block[2..], d, out);
}

/// 32 indices into 16 bytes (`out`), index `i` in the low nibble of byte `i` and index `16 + i`
/// in its high nibble — the packing of IQ4_NL's blocks and of each IQ4_XS sub-block.
pub(crate) fn pack_indices(q: &[u8; 32], out: &mut [u8]) {
    for j in 0..16 {
        out[j] = q[j] | (q[16 + j] << 4);
    }
}

/// The 32 values `scale · GRID[q]` of 16 bytes of packed indices ([`pack_indices`]) into `out`.
pub(crate) fn dequantize_indices(qs: &[u8], scale: f32, out: &mut [f32]) {
    for (j, &b) in qs[..16].iter().enumerate() {
        out[j] = scale * f32::from(GRID[usize::from(b & 0x0F)]);
        out[16 + j] = scale * f32::from(GRID[usize::from(b >> 4)]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_level_rounds_to_the_closer_and_ties_up() {
        assert_eq!(nearest(-200.0), 0);
        assert_eq!(nearest(500.0), 15);
        for (i, &g) in GRID.iter().enumerate() {
            assert_eq!(nearest(f32::from(g)), i as u8);
        }
        // halfway between -10 and 1 is -4.5: a tie goes to the upper level (as ggml's
        // `x - lo < hi - x ? lo : hi`)
        assert_eq!(nearest(-4.5), 8);
        assert_eq!(nearest(-4.6), 7);
        assert_eq!(nearest(101.0), 15);
        assert_eq!(nearest(100.9), 14);
    }

    #[test]
    fn the_largest_magnitude_lands_on_the_first_level_and_values_round_trip_closely() {
        let x: Vec<f32> = (0..32)
            .map(|i| ((i * 7) as f32 * 0.9).sin() * 3.0)
            .collect();
        let mut b = [0u8; BLOCK_BYTES];
        quantize_block(&x, &mut b);
        let mut y = [0.0f32; 32];
        dequantize_block(&b, &mut y);
        let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let imax = x.iter().position(|v| v.abs() == amax).unwrap();
        let q = |j: usize| {
            if j < 16 {
                b[2 + j] & 15
            } else {
                b[2 + j - 16] >> 4
            }
        };
        assert_eq!(q(imax), 0);
        // half the widest gap (24 levels) or the clamp at 113 (14 levels), scale ≈ amax / 127
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() <= amax * 16.0 / 127.0, "{a} vs {b}");
        }
        // an all-zero block is a zero scale
        quantize_block(&[0.0; 32], &mut b);
        dequantize_block(&b, &mut y);
        assert_eq!(&b[..2], &[0, 0]);
        assert!(y.iter().all(|&v| v == 0.0));
    }
}
