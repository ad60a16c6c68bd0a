//! Mock-executor tests of the runner: ordering, failure handling, the output check, and resume
//! after kills at random points (no record lost or duplicated).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::*;
use crate::depth::splitmix64;
use crate::executor::{MockAction, MockExecutor};
use crate::matrix::expand;
use crate::sink::{JsonlSink, MemorySink, recover};
use crate::sweep::Sweep;
use crate::testdir::TestDir;

const SWEEP: &str = "name = \"mock\"\nsuites = [\"s\"]\nrepetitions = 3\nseed = 5\n[axes]\nmodel = [\"a\", \"b\"]\nspec = [\"none\", \"ngram-mod\", \"draft\"]\ndraft_model = [\"d\"]\n";

struct Fixture {
    _dir: TestDir,
    cells: Vec<Cell>,
    suites: Vec<Suite>,
    models: BTreeMap<String, PathBuf>,
}

fn fixture() -> Fixture {
    let dir = TestDir::new("runner");
    let path = dir.path().join("s.jsonl");
    std::fs::write(
        &path,
        "{\"id\":\"p1\",\"category\":\"code\",\"prompt\":\"x\"}\n{\"question_id\":2,\"category\":\"chat\",\"turns\":[\"a\",\"b\"]}\n",
    )
    .unwrap();
    let suites = vec![Suite::load("s", &path).unwrap()];
    let cells = expand(&Sweep::parse(Path::new("m.toml"), SWEEP).unwrap()).unwrap();
    Fixture {
        _dir: dir,
        cells,
        suites,
        models: BTreeMap::new(),
    }
}

fn spec(f: &Fixture) -> RunSpec<'_> {
    RunSpec {
        sweep: "mock",
        cells: &f.cells,
        suites: &f.suites,
        repetitions: 3,
        seed: 5,
        warmup: 0,
        model_paths: &f.models,
    }
}

fn requests(records: &[Record]) -> Vec<&RequestRecord> {
    records
        .iter()
        .filter_map(|r| {
            if let Record::Request(r) = r {
                Some(r)
            } else {
                None
            }
        })
        .collect()
}

#[test]
fn runs_every_unit_in_schedule_order_and_checks_outputs() {
    let f = fixture();
    let spec = spec(&f);
    let mut exec = MockExecutor::default();
    let draft_a = f
        .cells
        .iter()
        .find(|c| c.mode() == "draft")
        .unwrap()
        .id
        .clone();
    exec.script
        .insert((draft_a.clone(), 1), MockAction::Diverge(3));
    let mut sink = MemorySink::default();
    let summary = run_units(
        &spec,
        &mut exec,
        &mut sink,
        &Recovered::default(),
        &AtomicBool::new(false),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(summary.units_run, 18);
    assert_eq!(summary.units_failed, 0);
    let expected_order: Vec<(String, u32)> = schedule(&f.cells, 3, 5)
        .iter()
        .map(|u| (f.cells[u.cell].id.clone(), u.repetition))
        .collect();
    assert_eq!(exec.calls, expected_order);
    // 3 requests per unit (p1, 2#turn1, 2#turn2).
    let reqs = requests(&sink.records);
    assert_eq!(reqs.len(), 18 * 3);
    for r in &reqs {
        match (
            &r.key.baseline_cell_id,
            r.key.cell_id == draft_a && r.key.repetition == 1,
        ) {
            (None, _) => assert_eq!(r.output_identical, None, "controls are not checked"),
            (Some(_), false) => {
                assert_eq!((r.output_identical, r.first_divergence), (Some(true), None))
            }
            (Some(_), true) => assert_eq!(
                (r.output_identical, r.first_divergence),
                (Some(false), Some(3))
            ),
        }
    }
    assert!(reqs.iter().any(|r| r.prompt_id == "2#turn2"));
}

#[test]
fn failures_become_records_and_the_sweep_goes_on() {
    let f = fixture();
    let spec = spec(&f);
    let mut exec = MockExecutor::default();
    let id = |i: usize| f.cells[i].id.clone();
    exec.script
        .insert((id(1), 0), MockAction::Fail(FailureCause::Crash));
    exec.script
        .insert((id(2), 2), MockAction::Fail(FailureCause::Timeout));
    exec.script
        .insert((id(3), 1), MockAction::Fail(FailureCause::OutOfMemory));
    exec.script.insert((id(4), 0), MockAction::ShortRecords);
    let mut sink = MemorySink::default();
    let summary = run_units(
        &spec,
        &mut exec,
        &mut sink,
        &Recovered::default(),
        &AtomicBool::new(false),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(summary.units_run, 18);
    assert_eq!(summary.units_failed, 4);
    let failures: BTreeMap<(String, u32), FailureCause> = sink
        .records
        .iter()
        .filter_map(|r| {
            if let Record::Failure(f) = r {
                Some(((f.key.cell_id.clone(), f.key.repetition), f.cause))
            } else {
                None
            }
        })
        .collect();
    assert_eq!(failures[&(id(1), 0)], FailureCause::Crash);
    assert_eq!(failures[&(id(2), 2)], FailureCause::Timeout);
    assert_eq!(failures[&(id(3), 1)], FailureCause::OutOfMemory);
    assert_eq!(failures[&(id(4), 0)], FailureCause::Error);
    assert_eq!(requests(&sink.records).len(), 14 * 3);
}

#[test]
fn stop_flag_stops_between_units() {
    let f = fixture();
    let spec = spec(&f);
    let mut exec = MockExecutor::default();
    let mut sink = MemorySink::default();
    let summary = run_units(
        &spec,
        &mut exec,
        &mut sink,
        &Recovered::default(),
        &AtomicBool::new(true),
        &NoProgress,
    )
    .unwrap();
    assert!(summary.interrupted);
    assert!(exec.calls.is_empty() && sink.records.is_empty());
}

/// A sink that dies after `budget` bytes, leaving a partial line behind (as a kill mid-write does).
struct DyingSink {
    file: std::fs::File,
    budget: usize,
}

impl Sink for DyingSink {
    fn append(&mut self, record: &Record) -> Result<(), SinkError> {
        let mut line = serde_json::to_vec(record).unwrap();
        line.push(b'\n');
        let dead = || SinkError {
            path: PathBuf::from("dying"),
            message: "killed".into(),
        };
        if line.len() > self.budget {
            self.file.write_all(&line[..self.budget]).unwrap();
            self.budget = 0;
            return Err(dead());
        }
        self.budget -= line.len();
        self.file.write_all(&line).unwrap();
        Ok(())
    }
}

fn record_ids(records: &[Record]) -> Vec<(String, u32, String)> {
    let mut ids: Vec<(String, u32, String)> = records
        .iter()
        .map(|r| match r {
            Record::Request(r) => (r.key.cell_id.clone(), r.key.repetition, r.prompt_id.clone()),
            Record::Failure(f) => (f.key.cell_id.clone(), f.key.repetition, "<failure>".into()),
        })
        .collect();
    ids.sort();
    ids
}

#[test]
fn resume_after_kills_at_random_points_loses_and_duplicates_nothing() {
    let f = fixture();
    let spec = spec(&f);
    let expected_per_unit = expected_records(&spec);
    // The reference: one uninterrupted run, with one scripted failure.
    let failing = (f.cells[2].id.clone(), 1);
    let mut reference = MemorySink::default();
    let mut exec = MockExecutor::default();
    exec.script
        .insert(failing.clone(), MockAction::Fail(FailureCause::Crash));
    run_units(
        &spec,
        &mut exec,
        &mut reference,
        &Recovered::default(),
        &AtomicBool::new(false),
        &NoProgress,
    )
    .unwrap();
    let reference_ids = record_ids(&reference.records);
    let total_bytes: usize = reference
        .records
        .iter()
        .map(|r| serde_json::to_vec(r).unwrap().len() + 1)
        .sum();

    let mut rng = 0xfeed_u64;
    for trial in 0..20 {
        let dir = TestDir::new("resume");
        let path = dir.path().join("results.jsonl");
        let mut attempts = 0;
        loop {
            attempts += 1;
            assert!(attempts < 200, "trial {trial} never finished");
            let recovered = recover(&path, &|_| Some(expected_per_unit)).unwrap();
            let mut exec = MockExecutor::default();
            exec.script
                .insert(failing.clone(), MockAction::Fail(FailureCause::Crash));
            // Kill either inside the executor (Ctrl-C / SIGKILL before the append) or mid-write.
            let r = splitmix64(&mut rng);
            if r.is_multiple_of(3) {
                let units = schedule(&f.cells, 3, 5);
                let u = units[(r as usize / 3) % units.len()];
                exec.script.insert(
                    (f.cells[u.cell].id.clone(), u.repetition),
                    MockAction::Interrupt,
                );
            }
            let budget = if r % 3 == 1 {
                (splitmix64(&mut rng) as usize) % total_bytes
            } else {
                usize::MAX
            };
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap();
            let mut sink = DyingSink { file, budget };
            match run_units(
                &spec,
                &mut exec,
                &mut sink,
                &recovered,
                &AtomicBool::new(false),
                &NoProgress,
            ) {
                Ok(s) if !s.interrupted => break,
                _ => continue,
            }
        }
        let final_records = recover(&path, &|_| Some(expected_per_unit)).unwrap();
        assert_eq!(final_records.truncated_bytes, 0);
        assert_eq!(
            record_ids(&final_records.records),
            reference_ids,
            "trial {trial}"
        );
        // The JSONL sink produces the same bytes as records appended in one go would.
        let mut check = JsonlSink::open(&dir.path().join("check.jsonl")).unwrap();
        for r in &final_records.records {
            check.append(r).unwrap();
        }
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(dir.path().join("check.jsonl")).unwrap()
        );
    }
}
