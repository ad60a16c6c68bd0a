//! The `Executor` boundary: something that runs one [`UnitJob`] and returns its records or the
//! reason it failed. The real executor runs a child `specsweep worker` ([`crate::process`]); the
//! scripted [`MockExecutor`] lets the runner, sink, resume logic and reports be tested without
//! weights (hyperfine's `Executor` + `MockExecutor` split).

use std::collections::BTreeMap;

use specsweep_reports::schema::{FailureCause, RecordKey, RequestRecord, SCHEMA_VERSION};

use crate::job::{UnitJob, request_prompt_id};

/// What running one unit produced.
#[derive(Debug, Clone, PartialEq)]
pub enum UnitOutcome {
    /// Every request's record, in suite order, and the worker's load time (ms) if it reported one.
    Done {
        records: Vec<RequestRecord>,
        load_ms: Option<f64>,
    },
    /// The unit produced no usable results.
    Failed {
        cause: FailureCause,
        message: String,
    },
    /// Stopped on request (Ctrl-C): nothing is recorded and the unit runs again on resume.
    Interrupted,
}

/// Runs units of work.
pub trait Executor {
    /// Run `job`, calling `on_tokens(n)` as tokens are generated.
    fn run(&mut self, job: &UnitJob, on_tokens: &mut dyn FnMut(u64)) -> UnitOutcome;
}

/// What the mock does for one (cell, repetition).
#[derive(Debug, Clone, PartialEq)]
pub enum MockAction {
    /// Produce deterministic records (identical outputs for every cell).
    Succeed,
    /// Produce records whose outputs differ from the others from this token on.
    Diverge(usize),
    /// Fail with this cause.
    Fail(FailureCause),
    /// Return fewer records than expected (a worker bug the runner must catch).
    ShortRecords,
    /// Behave as if Ctrl-C was pressed during this unit.
    Interrupt,
}

/// A scripted executor: `script[(cell_id, repetition)]` says what happens (default: succeed).
#[derive(Debug, Default)]
pub struct MockExecutor {
    pub script: BTreeMap<(String, u32), MockAction>,
    /// Every (cell_id, repetition) run, in order.
    pub calls: Vec<(String, u32)>,
}

impl Executor for MockExecutor {
    fn run(&mut self, job: &UnitJob, on_tokens: &mut dyn FnMut(u64)) -> UnitOutcome {
        self.calls.push((job.cell_id.clone(), job.repetition));
        let action = self
            .script
            .get(&(job.cell_id.clone(), job.repetition))
            .cloned()
            .unwrap_or(MockAction::Succeed);
        match action {
            MockAction::Succeed => done(mock_records(job, None), on_tokens),
            MockAction::Diverge(at) => done(mock_records(job, Some(at)), on_tokens),
            MockAction::ShortRecords => {
                let mut records = mock_records(job, None);
                records.pop();
                done(records, on_tokens)
            }
            MockAction::Fail(cause) => UnitOutcome::Failed {
                cause,
                message: format!("scripted {cause:?}"),
            },
            MockAction::Interrupt => UnitOutcome::Interrupted,
        }
    }
}

fn done(records: Vec<RequestRecord>, on_tokens: &mut dyn FnMut(u64)) -> UnitOutcome {
    for r in &records {
        on_tokens(r.output_tokens);
    }
    UnitOutcome::Done {
        records,
        load_ms: Some(1.0),
    }
}

/// Deterministic synthetic records for `job`: output ids depend only on the prompt, the
/// generation point and the repetition (so every arm agrees with its control), unless `diverge_at`
/// changes the tokens from that position on. Timings are fixed, plausible numbers.
pub fn mock_records(job: &UnitJob, diverge_at: Option<usize>) -> Vec<RequestRecord> {
    let mut out = Vec::new();
    for p in &job.prompts {
        let points = p.prompt.generation_points();
        for k in 0..points {
            let prompt_id = request_prompt_id(&p.prompt.id, k, points);
            let seed =
                crate::hashing::sha256_hex(format!("{prompt_id}/{}", job.repetition).as_bytes());
            let n = 8;
            let ids: Vec<u32> = (0..n)
                .map(|i| {
                    let base = u32::from_str_radix(&seed[i * 2..i * 2 + 2], 16).unwrap_or(0);
                    if diverge_at.is_some_and(|d| i >= d) {
                        base + 1000
                    } else {
                        base
                    }
                })
                .collect();
            out.push(RequestRecord {
                key: RecordKey {
                    schema_version: SCHEMA_VERSION,
                    sweep: job.sweep.clone(),
                    cell_id: job.cell_id.clone(),
                    cell: job.cell.clone(),
                    baseline_cell_id: job.baseline_cell_id.clone(),
                    repetition: job.repetition,
                },
                prompt_id,
                category: p.prompt.category.clone(),
                suite: p.suite.clone(),
                suite_sha256: p.suite_sha256.clone(),
                prompt_tokens: 16,
                output_tokens: n as u64,
                prefill_tok_per_s: 160.0,
                decode_tok_per_s: 80.0,
                ttft_ms: 100.0,
                itl_ms: vec![12.5; n - 1],
                e2e_ms: 100.0 + 12.5 * (n - 1) as f64,
                output_token_ids: ids,
                spec: None,
                experts: None,
                peak_rss_bytes: 1 << 20,
                output_identical: None,
                first_divergence: None,
            });
        }
    }
    out
}
