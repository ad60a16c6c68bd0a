//! The resolved plan of a sweep: its cells, suites and models, checked against the file system,
//! and its text rendering for `specsweep plan` (snapshot-tested under tests/fixtures/plans/).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::matrix::{Cell, expand};
use crate::schedule::schedule;
use crate::suite::{Suite, resolve_suite};
use crate::sweep::{Sweep, SweepError};

/// Plans above this many units need `--yes` (a typo in a range can otherwise start a week of work).
pub const DEFAULT_UNIT_LIMIT: usize = 500;

/// A sweep with everything it refers to resolved.
#[derive(Debug, Clone)]
pub struct Plan {
    pub sweep: Sweep,
    pub cells: Vec<Cell>,
    /// Suites in sweep order, cut to `max_prompts`.
    pub suites: Vec<Suite>,
    /// Every model name the cells use → local path.
    pub model_paths: BTreeMap<String, PathBuf>,
}

impl Plan {
    /// Load, expand and resolve a sweep file. `resolve_model` maps a model name to a local path.
    pub fn load(
        path: &Path,
        resolve_model: &dyn Fn(&str) -> Result<PathBuf, String>,
    ) -> Result<Plan, SweepError> {
        let sweep = Sweep::load(path)?;
        let cells = expand(&sweep)?;
        let err = |key: String, message: String| SweepError {
            file: path.to_path_buf(),
            key,
            message,
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut suites = Vec::new();
        for (i, name) in sweep.header.suites.iter().enumerate() {
            let key = format!("suites[{i}]");
            let file = resolve_suite(name, dir).map_err(|m| err(key.clone(), m))?;
            let mut suite =
                Suite::load(name, &file).map_err(|e| err(key.clone(), e.to_string()))?;
            if let Some(n) = sweep.header.max_prompts {
                suite.truncate(n as usize);
            }
            suites.push(suite);
        }
        let mut model_paths = BTreeMap::new();
        for cell in &cells {
            for axis in ["model", "draft_model"] {
                let Some(name) = cell.config.get(axis).and_then(|v| v.as_str()) else {
                    continue;
                };
                if model_paths.contains_key(name) {
                    continue;
                }
                // Relative model paths are relative to the sweep file, like suites.
                let relative = dir.join(name);
                let resolved = if name.contains('/') && relative.exists() {
                    Ok(relative)
                } else {
                    resolve_model(name)
                };
                let resolved = resolved.map_err(|m| err(format!("axes.{axis}"), m))?;
                model_paths.insert(name.to_string(), resolved);
            }
        }
        Ok(Plan {
            sweep,
            cells,
            suites,
            model_paths,
        })
    }

    /// Units (cells × repetitions).
    pub fn units(&self) -> usize {
        self.cells.len() * self.sweep.header.repetitions as usize
    }

    /// Requests per unit (generation points over all suites).
    pub fn requests_per_unit(&self) -> usize {
        self.suites
            .iter()
            .flat_map(|s| &s.prompts)
            .map(|p| p.generation_points())
            .sum()
    }

    /// The text `specsweep plan` prints: a summary, then one line per cell.
    pub fn render(&self) -> String {
        let h = &self.sweep.header;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "sweep {}: {} cells x {} repetitions = {} units",
            h.name,
            self.cells.len(),
            h.repetitions,
            self.units()
        );
        for s in &self.suites {
            let requests: usize = s.prompts.iter().map(|p| p.generation_points()).sum();
            let _ = writeln!(
                out,
                "suite {}: {} prompts, {} requests per unit, sha256 {}",
                s.name,
                s.prompts.len(),
                requests,
                &s.sha256[..12]
            );
        }
        let _ = writeln!(
            out,
            "warmup {} requests per unit, seed {}, timeout {} s per unit, {} requests in all",
            h.warmup,
            h.seed,
            h.timeout_s,
            self.units() * self.requests_per_unit()
        );
        let added = self.cells.iter().filter(|c| c.added_control).count();
        if added > 0 {
            let _ = writeln!(
                out,
                "{added} no-speculation controls added to pair the speculative cells (marked +)"
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:>4}  {:<12}  {:<12}  config",
            "#", "cell", "baseline"
        );
        for (i, c) in self.cells.iter().enumerate() {
            let mark = if c.added_control { "+" } else { " " };
            let _ = writeln!(
                out,
                "{:>3}{mark}  {:<12}  {:<12}  {}",
                i + 1,
                c.id,
                c.baseline_id.as_deref().unwrap_or("-"),
                c.summary()
            );
        }
        out
    }

    /// Execution order, one line per unit (`--dry-run`).
    pub fn render_order(&self) -> String {
        let mut out = String::new();
        for u in schedule(
            &self.cells,
            self.sweep.header.repetitions,
            self.sweep.header.seed,
        ) {
            let c = &self.cells[u.cell];
            let _ = writeln!(out, "r{} {} {}", u.repetition, c.id, c.summary());
        }
        out
    }
}
