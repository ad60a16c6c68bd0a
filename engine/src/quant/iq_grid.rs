//! The codebooks of ggml's i-quants (`iq1s_grid`, `iq2xxs_grid`, `iq2xs_grid`, `iq2s_grid`,
//! `iq3xxs_grid`, `iq3s_grid` in `ggml-common.h`) and the sign patterns of IQ2 / IQ3.
//!
//! An IQ1 / IQ2 / IQ3 block stores, for each group of 8 (IQ1, IQ2) or 4 (IQ3) weights, an index
//! into a fixed table of magnitude patterns; the tables are part of the format (found by an
//! optimisation, not derivable), so a reader must carry them. `iq_grids.bin` holds them as signed
//! bytes, one table after the other in the order of [`Grid`]; it is generated from gguf-py's
//! copies by `scripts/fixture_quant.py` (`gen_iq_grids`), and the dequantizers built on it are
//! checked against llama.cpp's `dequantize_row_*` on a stream that uses every row
//! (tests/fixtures/quant/IQ_stream.json).

static GRIDS: &[u8; 33_792] = include_bytes!("iq_grids.bin");

/// One codebook: its rows, values per row and where it starts in `iq_grids.bin`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Grid {
    /// 2048 rows of 8 values in −1, 0, 1 (IQ1_S, IQ1_M).
    Iq1s,
    /// 256 rows of 8 magnitudes in 8, 25, 43.
    Iq2xxs,
    /// 512 rows of 8 magnitudes in 8, 25, 43.
    Iq2xs,
    /// 1024 rows of 8 magnitudes in 8, 25, 43.
    Iq2s,
    /// 256 rows of 4 magnitudes in 4, 12, …, 52, 62.
    Iq3xxs,
    /// 512 rows of 4 magnitudes in 1, 3, …, 15.
    Iq3s,
}

impl Grid {
    /// (rows, values per row, byte offset in `iq_grids.bin`).
    const fn geometry(self) -> (usize, usize, usize) {
        match self {
            Grid::Iq1s => (2048, 8, 0),
            Grid::Iq2xxs => (256, 8, 16_384),
            Grid::Iq2xs => (512, 8, 18_432),
            Grid::Iq2s => (1024, 8, 22_528),
            Grid::Iq3xxs => (256, 4, 30_720),
            Grid::Iq3s => (512, 4, 31_744),
        }
    }

    /// Row `index` (taken modulo the number of rows, as the packed indices cannot exceed it);
    /// `N` must be the table's values per row.
    pub(crate) fn row<const N: usize>(self, index: usize) -> [i8; N] {
        let (rows, per_row, at) = self.geometry();
        debug_assert_eq!(N, per_row, "{self:?} has {per_row} values per row");
        let start = at + (index % rows) * per_row;
        std::array::from_fn(|j| GRIDS[start + j] as i8)
    }
}

/// ggml's `ksigns_iq2xs`: a 7-bit sign index expands to 8 sign bits, the eighth the parity of
/// the seven (every group of 8 has an even number of minus signs).
pub(crate) fn ksigns(index: u32) -> u8 {
    let low = (index & 0x7F) as u8;
    low | (((low.count_ones() & 1) as u8) << 7)
}

/// `+1` or `−1` for bit `j` of a sign byte.
#[inline]
pub(crate) fn sign(bits: u8, j: usize) -> f32 {
    if bits >> j & 1 == 0 { 1.0 } else { -1.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_hold_only_their_levels_and_the_file_is_exactly_all_of_them() {
        let levels: [(Grid, &[i8]); 6] = [
            (Grid::Iq1s, &[-1, 0, 1]),
            (Grid::Iq2xxs, &[8, 25, 43]),
            (Grid::Iq2xs, &[8, 25, 43]),
            (Grid::Iq2s, &[8, 25, 43]),
            (Grid::Iq3xxs, &[4, 12, 20, 28, 36, 44, 52, 62]),
            (Grid::Iq3s, &[1, 3, 5, 7, 9, 11, 13, 15]),
        ];
        let mut end = 0;
        for (grid, allowed) in levels {
            let (rows, per_row, at) = grid.geometry();
            assert_eq!(at, end, "{grid:?} follows the previous table");
            end = at + rows * per_row;
            for r in 0..rows {
                let row = &GRIDS[at + r * per_row..at + (r + 1) * per_row];
                assert!(
                    row.iter().all(|&v| allowed.contains(&(v as i8))),
                    "{grid:?} row {r}"
                );
            }
        }
        assert_eq!(end, GRIDS.len());
    }

    #[test]
    fn sign_patterns_have_even_parity() {
        assert_eq!(ksigns(0), 0x00);
        assert_eq!(ksigns(1), 0x81);
        assert_eq!(ksigns(3), 0x03);
        assert_eq!(ksigns(127), 0xFF);
        for i in 0..128 {
            assert_eq!(ksigns(i).count_ones() % 2, 0);
            assert_eq!(u32::from(ksigns(i) & 0x7F), i);
        }
    }
}
