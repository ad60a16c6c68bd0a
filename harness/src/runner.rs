//! The runner: executes a sweep's units in schedule order through an [`Executor`], pushes every
//! record into a [`Sink`], skips units a previous (interrupted) run already completed, and fills
//! the output check of each greedy speculative request against its paired control.
//!
//! Invariants: a unit's records reach the sink only after the unit finished, all together; a
//! failed unit yields exactly one `FailureRecord` and the sweep goes on; the stop flag (Ctrl-C) is
//! checked between units and inside the executor, and an interrupted unit records nothing.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use specsweep_reports::schema::{
    FailureCause, FailureRecord, Record, RecordKey, RequestRecord, SCHEMA_VERSION,
};

use crate::executor::{Executor, UnitOutcome};
use crate::job::{JobPrompt, UnitJob};
use crate::matrix::Cell;
use crate::schedule::{Unit, block_seed, schedule};
use crate::sink::{Recovered, Sink, SinkError};
use crate::suite::Suite;

/// What the runner needs to know about the sweep.
#[derive(Debug, Clone)]
pub struct RunSpec<'a> {
    pub sweep: &'a str,
    pub cells: &'a [Cell],
    /// Suites, already cut to `max_prompts`.
    pub suites: &'a [Suite],
    pub repetitions: u32,
    pub seed: u64,
    pub warmup: u32,
    /// Model name → local path, for every model the cells name.
    pub model_paths: &'a BTreeMap<String, PathBuf>,
}

/// Progress reporting (an indicatif implementation lives in [`crate::progress`]).
pub trait Progress {
    /// The run starts: `total` units, of which `done` were completed before.
    fn start(&self, total: u64, done: u64);
    /// A unit starts.
    fn unit_started(&self, cell: &Cell, repetition: u32);
    /// `n` tokens were generated.
    fn tokens(&self, n: u64);
    /// The running unit ended.
    fn unit_finished(&self);
}

/// Progress that reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: u64, _: u64) {}
    fn unit_started(&self, _: &Cell, _: u32) {}
    fn tokens(&self, _: u64) {}
    fn unit_finished(&self) {}
}

/// Counts and timings of one `run_units` call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunSummary {
    pub units_total: usize,
    /// Units completed by an earlier run and skipped now.
    pub units_skipped: usize,
    pub units_run: usize,
    pub units_failed: usize,
    pub records_written: usize,
    /// Stopped by the stop flag before the end.
    pub interrupted: bool,
    /// Wall time of the successful units, and the part of it spent inside requests (Σ e2e) and
    /// loading models (as the workers reported it): the difference is the harness's own overhead.
    pub unit_wall_s: f64,
    pub request_s: f64,
    pub load_s: f64,
}

/// Build the job of one unit.
pub fn build_job(spec: &RunSpec, cell: &Cell, repetition: u32) -> UnitJob {
    let prompts = spec
        .suites
        .iter()
        .flat_map(|s| {
            s.prompts.iter().map(|p| JobPrompt {
                suite: s.name.clone(),
                suite_sha256: s.sha256.clone(),
                prompt: p.clone(),
            })
        })
        .collect();
    let model_paths = ["model", "draft_model"]
        .iter()
        .filter_map(|k| cell.config.get(*k).and_then(|v| v.as_str()))
        .filter_map(|name| {
            spec.model_paths
                .get(name)
                .map(|p| (name.to_string(), p.clone()))
        })
        .collect();
    UnitJob {
        sweep: spec.sweep.to_string(),
        cell_id: cell.id.clone(),
        cell: cell.config.clone(),
        baseline_cell_id: cell.baseline_id.clone(),
        repetition,
        seed: block_seed(spec.seed, repetition),
        warmup: spec.warmup,
        model_paths,
        prompts,
    }
}

/// Request records a complete unit of any cell has (the same for every cell of a sweep).
pub fn expected_records(spec: &RunSpec) -> usize {
    spec.suites
        .iter()
        .flat_map(|s| &s.prompts)
        .map(|p| p.generation_points())
        .sum()
}

type OutputKey = (String, u32, String);

/// Run every unit not already done, in schedule order.
pub fn run_units(
    spec: &RunSpec,
    executor: &mut dyn Executor,
    sink: &mut dyn Sink,
    recovered: &Recovered,
    stop: &AtomicBool,
    progress: &dyn Progress,
) -> Result<RunSummary, SinkError> {
    let units = schedule(spec.cells, spec.repetitions, spec.seed);
    let mut summary = RunSummary {
        units_total: units.len(),
        ..RunSummary::default()
    };
    let is_done = |u: &Unit| {
        recovered
            .done
            .contains(&(spec.cells[u.cell].id.clone(), u.repetition))
    };
    let already = units.iter().filter(|u| is_done(u)).count();
    progress.start(units.len() as u64, already as u64);
    // Outputs of controls, for the output check: (cell id, repetition, prompt id) → token ids.
    let mut control_outputs: HashMap<OutputKey, Vec<u32>> = HashMap::new();
    for record in &recovered.records {
        if let Record::Request(r) = record {
            remember_control(&mut control_outputs, r);
        }
    }
    let expected = expected_records(spec);
    for unit in &units {
        if is_done(unit) {
            summary.units_skipped += 1;
            continue;
        }
        if stop.load(Ordering::SeqCst) {
            summary.interrupted = true;
            break;
        }
        let cell = &spec.cells[unit.cell];
        let job = build_job(spec, cell, unit.repetition);
        progress.unit_started(cell, unit.repetition);
        let started = Instant::now();
        let outcome = executor.run(&job, &mut |n| progress.tokens(n));
        let wall_s = started.elapsed().as_secs_f64();
        progress.unit_finished();
        let key = RecordKey {
            schema_version: SCHEMA_VERSION,
            sweep: spec.sweep.to_string(),
            cell_id: cell.id.clone(),
            cell: cell.config.clone(),
            baseline_cell_id: cell.baseline_id.clone(),
            repetition: unit.repetition,
        };
        let failure = |cause, message| {
            Record::Failure(FailureRecord {
                key: key.clone(),
                cause,
                message,
            })
        };
        let records: Vec<Record> = match outcome {
            UnitOutcome::Interrupted => {
                summary.interrupted = true;
                break;
            }
            UnitOutcome::Failed { cause, message } => vec![failure(cause, message)],
            UnitOutcome::Done { records, .. } if records.len() != expected => vec![failure(
                FailureCause::Error,
                format!(
                    "worker returned {} records, expected {expected}",
                    records.len()
                ),
            )],
            UnitOutcome::Done {
                mut records,
                load_ms,
            } => {
                summary.unit_wall_s += wall_s;
                summary.request_s += records.iter().map(|r| r.e2e_ms).sum::<f64>() / 1e3;
                summary.load_s += load_ms.unwrap_or(0.0) / 1e3;
                for r in &mut records {
                    r.key = key.clone();
                    check_output(r, cell, &control_outputs);
                    remember_control(&mut control_outputs, r);
                }
                records.into_iter().map(Record::Request).collect()
            }
        };
        if matches!(records.first(), Some(Record::Failure(_))) {
            summary.units_failed += 1;
        }
        for record in &records {
            sink.append(record)?;
        }
        summary.records_written += records.len();
        summary.units_run += 1;
    }
    Ok(summary)
}

fn remember_control(outputs: &mut HashMap<OutputKey, Vec<u32>>, r: &RequestRecord) {
    if r.key.baseline_cell_id.is_none() {
        outputs.insert(
            (r.key.cell_id.clone(), r.key.repetition, r.prompt_id.clone()),
            r.output_token_ids.clone(),
        );
    }
}

/// Compare a greedy speculative request with its control's output for the same prompt and
/// repetition: identical, or the first position where they differ (a length difference counts as
/// a divergence at the shorter length).
fn check_output(r: &mut RequestRecord, cell: &Cell, controls: &HashMap<OutputKey, Vec<u32>>) {
    let Some(baseline) = &cell.baseline_id else {
        return;
    };
    if !cell.is_greedy() {
        return;
    }
    let Some(expected) = controls.get(&(baseline.clone(), r.key.repetition, r.prompt_id.clone()))
    else {
        return;
    };
    match first_divergence(expected, &r.output_token_ids) {
        None => {
            r.output_identical = Some(true);
            r.first_divergence = None;
        }
        Some(at) => {
            r.output_identical = Some(false);
            r.first_divergence = Some(at as u64);
        }
    }
}

/// First index where `a` and `b` differ, `None` when they are equal.
pub fn first_divergence(a: &[u32], b: &[u32]) -> Option<usize> {
    match a.iter().zip(b).position(|(x, y)| x != y) {
        Some(i) => Some(i),
        None if a.len() == b.len() => None,
        None => Some(a.len().min(b.len())),
    }
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
