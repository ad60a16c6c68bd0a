//! The gate's committed baseline: a compact JSON file written by `specsweep gate
//! --update-baseline` from a run, and read by every later gate.
//!
//! Per cell it keeps what the gate needs and nothing else: the configuration, per-request decode
//! tok/s and per-request speedup ratios over the paired baseline (the samples of the statistical
//! gates), the sha256 of the output token ids of every prompt (the output-identity gate) and the
//! exact (accepted, drafted) counts per prompt (the acceptance gate).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::compare::{Samples, decode_samples, paired_ratios};
use crate::error::{ReportError, Result};
use crate::load::Run;
use crate::schema::{CellConfig, SCHEMA_VERSION};

/// Value of the `format` field of a baseline file.
pub const BASELINE_FORMAT: &str = "specsweep-gate-baseline";

/// The machine a baseline was measured on (absolute tok/s is only compared on the same one).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    pub cpu_model: String,
    pub gpus: Vec<String>,
}

/// One cell of the baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineCell {
    pub config: CellConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_cell_id: Option<String>,
    /// Per-request decode tok/s: prompt id → one value per repetition, in repetition order.
    pub decode_tok_per_s: BTreeMap<String, Vec<f64>>,
    /// Per-request decode tok/s over the paired baseline request (speculative cells only):
    /// prompt id → one value per repetition.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub speedup_ratios: BTreeMap<String, Vec<f64>>,
    /// prompt id → sha256 (hex) of the output token ids (little-endian u32).
    pub outputs: BTreeMap<String, String>,
    /// prompt id → [accepted, drafted] (speculative cells only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub acceptance: BTreeMap<String, [u64; 2]>,
}

/// The baseline file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    pub format: String,
    pub schema_version: u32,
    pub sweep: String,
    pub machine: Machine,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_sha: Option<String>,
    pub cells: BTreeMap<String, BaselineCell>,
}

/// sha256 (hex) of a token id sequence.
pub fn output_hash(ids: &[u32]) -> String {
    let mut hasher = Sha256::new();
    for id in ids {
        hasher.update(id.to_le_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn round(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

/// Samples keyed by (prompt, repetition) as prompt → values in repetition order, rounded.
fn by_prompt(samples: &Samples, decimals: i32) -> BTreeMap<String, Vec<f64>> {
    let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for ((prompt, _), x) in samples {
        out.entry(prompt.clone())
            .or_default()
            .push(round(*x, decimals));
    }
    out
}

/// The baseline's samples keyed by (prompt, repetition index), as [`Samples`].
pub fn to_samples(by_prompt: &BTreeMap<String, Vec<f64>>) -> Samples {
    by_prompt
        .iter()
        .flat_map(|(p, v)| {
            v.iter()
                .enumerate()
                .map(move |(i, x)| ((p.clone(), i as u32), *x))
        })
        .collect()
}

/// Build a baseline from a run. Outputs and counts come from the lowest repetition of a prompt.
pub fn baseline_from_run(run: &Run) -> Baseline {
    let decode = decode_samples(&run.requests);
    let ratios = paired_ratios(&run.requests);
    let mut cells: BTreeMap<String, BaselineCell> = BTreeMap::new();
    let mut first_rep: BTreeMap<(String, String), u32> = BTreeMap::new();
    for r in &run.requests {
        let key = (r.key.cell_id.clone(), r.prompt_id.clone());
        let rep = first_rep.entry(key).or_insert(r.key.repetition);
        *rep = (*rep).min(r.key.repetition);
    }
    for r in &run.requests {
        let id = &r.key.cell_id;
        let cell = cells.entry(id.clone()).or_insert_with(|| BaselineCell {
            config: r.key.cell.clone(),
            baseline_cell_id: r.key.baseline_cell_id.clone(),
            decode_tok_per_s: decode.get(id).map(|s| by_prompt(s, 3)).unwrap_or_default(),
            speedup_ratios: ratios.get(id).map(|s| by_prompt(s, 4)).unwrap_or_default(),
            outputs: BTreeMap::new(),
            acceptance: BTreeMap::new(),
        });
        if first_rep.get(&(id.clone(), r.prompt_id.clone())) == Some(&r.key.repetition) {
            cell.outputs
                .insert(r.prompt_id.clone(), output_hash(&r.output_token_ids));
            if let Some(spec) = &r.spec {
                cell.acceptance
                    .insert(r.prompt_id.clone(), [spec.accepted, spec.drafted]);
            }
        }
    }
    Baseline {
        format: BASELINE_FORMAT.into(),
        schema_version: SCHEMA_VERSION,
        sweep: run.manifest.sweep.clone(),
        machine: Machine {
            cpu_model: run.manifest.cpu_model.clone(),
            gpus: run.manifest.gpus.clone(),
        },
        git_sha: run.manifest.git_sha.clone(),
        cells,
    }
}

/// Read a baseline file, refusing other formats and newer schema versions.
pub fn load_baseline(path: &Path) -> Result<Baseline> {
    let text = fs::read_to_string(path).map_err(|e| ReportError::io(path, e))?;
    #[derive(Deserialize)]
    struct Probe {
        format: Option<String>,
        schema_version: Option<u32>,
    }
    let parse_err = |e: serde_json::Error| ReportError::Parse {
        path: path.to_path_buf(),
        line: e.line(),
        message: e.to_string(),
    };
    let probe: Probe = serde_json::from_str(&text).map_err(parse_err)?;
    if probe.format.as_deref() != Some(BASELINE_FORMAT) {
        return Err(ReportError::Parse {
            path: path.to_path_buf(),
            line: 1,
            message: format!("not a gate baseline (field `format` must be \"{BASELINE_FORMAT}\")"),
        });
    }
    if let Some(found) = probe.schema_version.filter(|v| *v > SCHEMA_VERSION) {
        return Err(ReportError::NewerSchema {
            path: path.to_path_buf(),
            line: 1,
            found,
            supported: SCHEMA_VERSION,
        });
    }
    serde_json::from_str(&text).map_err(parse_err)
}

/// Write a baseline file (pretty JSON, trailing newline).
pub fn save_baseline(path: &Path, baseline: &Baseline) -> Result<()> {
    let text = serde_json::to_string_pretty(baseline).map_err(|e| ReportError::Parse {
        path: path.to_path_buf(),
        line: 0,
        message: e.to_string(),
    })?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|e| ReportError::io(dir, e))?;
    }
    fs::write(path, text + "\n").map_err(|e| ReportError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_hash_is_sha256_of_little_endian_ids() {
        // sha256 of the empty input.
        assert_eq!(
            output_hash(&[]),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_ne!(output_hash(&[1, 2]), output_hash(&[2, 1]));
    }
}
