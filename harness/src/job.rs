//! The unit of work and of atomicity: one cell × one repetition over every prompt of the suites.
//!
//! The parent sends a [`UnitJob`] as JSON on the worker's stdin; the worker answers with one
//! [`WorkerMessage`] per stdout line (progress, load time, then one record per request). The parent
//! appends a unit's records only once the unit has finished, and on resume a trailing unit with
//! fewer than [`UnitJob::expected_records`] records is cut off, so a kill at any point can neither
//! lose nor duplicate a record.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use specsweep_reports::schema::{CellConfig, RequestRecord};

use crate::suite::Prompt;

/// One prompt of a job, with the suite it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobPrompt {
    pub suite: String,
    pub suite_sha256: String,
    #[serde(flatten)]
    pub prompt: Prompt,
}

/// Everything a worker needs to measure one cell for one repetition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitJob {
    pub sweep: String,
    pub cell_id: String,
    pub cell: CellConfig,
    pub baseline_cell_id: Option<String>,
    pub repetition: u32,
    /// Sampling seed of this unit (the sweep seed mixed with the repetition).
    pub seed: u64,
    /// Unrecorded warmup requests after loading (the first prompts, cut to 8 new tokens).
    pub warmup: u32,
    /// Model names of the cell (`model`, `draft_model`) → resolved local paths.
    pub model_paths: BTreeMap<String, PathBuf>,
    pub prompts: Vec<JobPrompt>,
}

impl UnitJob {
    /// Records a successful run of this unit produces: one per generation point of every prompt.
    pub fn expected_records(&self) -> usize {
        self.prompts
            .iter()
            .map(|p| p.prompt.generation_points())
            .sum()
    }
}

/// One line of worker output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum WorkerMessage {
    /// Models loaded (time from process start, ms) — the per-cell cost the harness adds.
    Loaded { load_ms: f64 },
    /// `n` more tokens generated (for the progress bar).
    Tokens { n: u64 },
    /// One measured request.
    Record(Box<RequestRecord>),
}

/// Request id of generation point `k` (0-based) of a prompt with `points` points: the prompt id
/// itself when there is one point, else `id#turnK` (1-based).
pub fn request_prompt_id(prompt_id: &str, k: usize, points: usize) -> String {
    if points == 1 {
        prompt_id.to_string()
    } else {
        format!("{prompt_id}#turn{}", k + 1)
    }
}
