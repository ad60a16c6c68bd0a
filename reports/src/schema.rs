//! The versioned result schema: one JSON object per line of `results.jsonl`.
//!
//! The harness writes these records and `reports` reads them; this module is the single definition
//! of the format (the harness depends on `reports` for it, `reports` depends on nothing of ours).
//! Every record carries [`SCHEMA_VERSION`]; a reader refuses a newer version with a clear error.
//! Field names carry their units (`_ms`, `_tok_per_s`, `_bytes`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of the record format written by this build. Bump on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// One line of `results.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
// records are read and written one line at a time, so the unboxed request costs nothing
#[allow(clippy::large_enum_variant)]
pub enum Record {
    /// One measured request (one prompt of the suite, one repetition, one cell).
    Request(RequestRecord),
    /// A cell (or one repetition of it) that did not produce results: crash, timeout, OOM, error.
    Failure(FailureRecord),
}

/// The resolved configuration of one sweep cell, flattened to `axis name -> value`.
///
/// Keys are the sweep's axis and parameter names (`device`, `model`, `draft_model`, `quant`,
/// `depth`, `spec`, `draft_min`, `draft_max`, `ngram_n`, `threads`, `temperature`, mode flags ...).
/// Parameters a mode ignores are absent, never null.
pub type CellConfig = BTreeMap<String, serde_json::Value>;

/// Identity of a record: which cell, which block/repetition, which prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordKey {
    pub schema_version: u32,
    /// Name of the sweep (the TOML `name`).
    pub sweep: String,
    /// Stable id of the cell: hash of its resolved configuration.
    pub cell_id: String,
    /// The resolved configuration of the cell.
    pub cell: CellConfig,
    /// Cell id of the paired no-speculation control in the same block (absent for the control).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_cell_id: Option<String>,
    /// Repetition index (0-based); blocks are repetitions: every arm of a block runs once per rep.
    pub repetition: u32,
}

/// Speculation counters of one request, with the names of shared/reference/speculation.md §0.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpecStats {
    /// Speculation mode (`ngram-cache`, `ngram-mod`, `ngram-simple`, `draft`, `mtp`).
    pub mode: String,
    /// Verification rounds (target forwards over last token + k drafts, k ≥ 1).
    pub rounds: u64,
    /// Draft tokens sent to verification (Σk).
    pub drafted: u64,
    /// Draft tokens accepted (Σa).
    pub accepted: u64,
    /// accepted / drafted (0 when nothing was drafted).
    pub acceptance_rate: f64,
    /// τ = 1 + accepted / rounds (1 when there were no rounds).
    pub mean_acceptance_length: f64,
    /// Per-position counts: entry i = rounds whose i-th draft token was accepted.
    pub accepted_per_position: Vec<u64>,
    /// Per-position counts: entry i = rounds that drafted at least i+1 tokens.
    pub drafted_per_position: Vec<u64>,
    /// Histogram: entry a = rounds that accepted exactly a draft tokens.
    pub accepted_length_histogram: Vec<u64>,
    /// drafted / generated tokens.
    pub draft_tokens_per_generated_token: f64,
    /// Time split of the decode phase.
    pub draft_ms: f64,
    pub verify_ms: f64,
    pub rollback_ms: f64,
    pub sampling_ms: f64,
    /// Mode-specific details (e.g. `reset_per_request`, ngram-mod resets), free-form.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// MoE routing statistics of one request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExpertStats {
    /// Experts per MoE layer (N) and experts per token (K).
    pub n_experts: u32,
    pub n_experts_per_token: u32,
    /// For each forward batch size b seen (tokens per forward), the mean number of distinct experts
    /// touched per MoE layer, and how many forwards of that size were seen.
    pub by_batch_size: Vec<ExpertsAtBatch>,
}

/// Mean distinct experts touched per MoE layer for forwards over `batch_tokens` tokens.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExpertsAtBatch {
    pub batch_tokens: u32,
    pub forwards: u64,
    pub mean_experts_touched: f64,
}

/// One measured request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    #[serde(flatten)]
    pub key: RecordKey,
    /// Prompt id within the suite, and its category.
    pub prompt_id: String,
    pub category: String,
    /// Suite name and sha256 of the suite file.
    pub suite: String,
    pub suite_sha256: String,
    /// Tokens of context before decoding (prompt + depth filler).
    pub prompt_tokens: u64,
    /// Generated tokens.
    pub output_tokens: u64,
    pub prefill_tok_per_s: f64,
    pub decode_tok_per_s: f64,
    pub ttft_ms: f64,
    /// Every inter-token latency (ms), in emission order. Tokens emitted by one verify round split
    /// that round's time evenly, so the sum equals the decode time.
    pub itl_ms: Vec<f64>,
    pub e2e_ms: f64,
    pub output_token_ids: Vec<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<SpecStats>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experts: Option<ExpertStats>,
    pub peak_rss_bytes: u64,
    /// Compared with the paired baseline's output for the same prompt and repetition (greedy only):
    /// `Some(true)` identical, `Some(false)` diverged at `first_divergence`; absent when not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_identical: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_divergence: Option<u64>,
}

/// Why a cell produced no results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureCause {
    Crash,
    Timeout,
    OutOfMemory,
    Error,
}

/// A cell (one repetition) that failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureRecord {
    #[serde(flatten)]
    pub key: RecordKey,
    pub cause: FailureCause,
    /// One-line description (exit status, signal, last stderr line).
    pub message: String,
}

/// `manifest.json` of a run directory: everything needed to reproduce its numbers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema_version: u32,
    pub sweep: String,
    /// sha256 of the sweep file and its full text, so the run can be repeated exactly.
    pub sweep_sha256: String,
    pub sweep_toml: String,
    pub git_sha: Option<String>,
    pub git_dirty: Option<bool>,
    pub binary_sha256: String,
    pub specsweep_version: String,
    pub rustc_version: String,
    pub burn_version: String,
    pub cargo_features: Vec<String>,
    pub cpu_model: String,
    pub cpu_cores: u32,
    pub cpu_governor: Option<String>,
    pub memory_bytes: u64,
    pub gpus: Vec<String>,
    pub os: String,
    pub kernel: String,
    /// name -> sha256 of every model and suite file the sweep uses.
    pub models: BTreeMap<String, String>,
    pub suites: BTreeMap<String, String>,
    pub seed: u64,
    pub started_at: String,
    pub ended_at: Option<String>,
}
