//! Execution order: blocks of interleaved arms with their paired controls.
//!
//! Each repetition is a block, and every block runs every cell once, so each speculative arm is
//! measured minutes from its no-speculation control rather than hours (asv-style interleaving,
//! which cancels slow drift such as thermal state). Within a block the cells are shuffled by a
//! Fisher–Yates shuffle driven by splitmix64 seeded from (sweep seed, block), then each control is
//! moved to just before the first of its arms when it would otherwise come later — so the output
//! check can compare an arm against its control as soon as the arm finishes. The order is a pure
//! function of the cells, the seed and the repetition count (no `rand` version can change it).

use crate::depth::splitmix64;
use crate::matrix::Cell;

/// One unit of work: a cell (index into the cell list) in one block (repetition).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Unit {
    pub cell: usize,
    pub repetition: u32,
}

/// The seed of block `repetition` of a sweep with seed `seed`.
pub fn block_seed(seed: u64, repetition: u32) -> u64 {
    let mut state = seed ^ (u64::from(repetition) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    splitmix64(&mut state)
}

/// All units of a sweep, in execution order.
pub fn schedule(cells: &[Cell], repetitions: u32, seed: u64) -> Vec<Unit> {
    let mut units = Vec::with_capacity(cells.len() * repetitions as usize);
    for repetition in 0..repetitions {
        let mut order: Vec<usize> = (0..cells.len()).collect();
        let mut state = block_seed(seed, repetition);
        for i in (1..order.len()).rev() {
            let j = (splitmix64(&mut state) % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        let mut placed = vec![false; cells.len()];
        for &index in &order {
            if placed[index] {
                continue;
            }
            if let Some(control) = cells[index]
                .baseline_id
                .as_ref()
                .and_then(|id| cells.iter().position(|c| &c.id == id))
                && !placed[control]
            {
                placed[control] = true;
                units.push(Unit {
                    cell: control,
                    repetition,
                });
            }
            placed[index] = true;
            units.push(Unit {
                cell: index,
                repetition,
            });
        }
    }
    units
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::matrix::expand;
    use crate::sweep::Sweep;

    fn cells() -> Vec<Cell> {
        let text = "name = \"t\"\nsuites = [\"tiny\"]\n[axes]\nmodel = [\"a\", \"b\"]\nspec = [\"none\", \"ngram-mod\", \"ngram-simple\", \"mtp\"]\n";
        expand(&Sweep::parse(Path::new("s.toml"), text).unwrap()).unwrap()
    }

    #[test]
    fn every_block_runs_every_cell_once_with_controls_first() {
        let cells = cells();
        let units = schedule(&cells, 3, 42);
        assert_eq!(units.len(), cells.len() * 3);
        for rep in 0..3 {
            let block: Vec<usize> = units
                .iter()
                .filter(|u| u.repetition == rep)
                .map(|u| u.cell)
                .collect();
            let mut sorted = block.clone();
            sorted.sort();
            assert_eq!(sorted, (0..cells.len()).collect::<Vec<_>>());
            for (pos, &c) in block.iter().enumerate() {
                if let Some(b) = &cells[c].baseline_id {
                    let control = cells.iter().position(|x| &x.id == b).unwrap();
                    assert!(block[..pos].contains(&control), "control after its arm");
                }
            }
        }
        // Blocks are contiguous: all of repetition 0 before repetition 1.
        assert!(units.windows(2).all(|w| w[0].repetition <= w[1].repetition));
    }

    #[test]
    fn order_is_seeded_and_varies_between_blocks() {
        let cells = cells();
        assert_eq!(schedule(&cells, 2, 7), schedule(&cells, 2, 7));
        assert_ne!(schedule(&cells, 1, 7), schedule(&cells, 1, 8));
        let units = schedule(&cells, 2, 7);
        let (a, b) = units.split_at(cells.len());
        assert_ne!(
            a.iter().map(|u| u.cell).collect::<Vec<_>>(),
            b.iter().map(|u| u.cell).collect::<Vec<_>>()
        );
    }
}
