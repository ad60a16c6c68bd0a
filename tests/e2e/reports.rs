//! End-to-end tests: `specsweep report`, `compare` and `gate` on synthetic run directories.
//!
//! The committed runs under tests/fixtures/runs are written by `specsweep_reports::synthetic`
//! (`cargo run -p specsweep-reports --example synth_run -- --fixtures tests/fixtures/runs`); the
//! snapshots next to them are the expected tables. Other runs are generated into temp dirs.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use specsweep_reports::synthetic::{Synth, fixture_runs};

use crate::support::{fixture, specsweep};

/// A fresh, empty directory under the system temp dir, unique to this process and `name`.
fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "specsweep-e2e-reports-{}-{name}",
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

fn runs() -> PathBuf {
    fixture("runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Compare `actual` with the committed snapshot; on mismatch write `<snapshot>.new` and fail.
fn check_snapshot(actual: &str, snapshot: &Path) {
    let expected = fs::read_to_string(snapshot).unwrap_or_default();
    if actual != expected {
        let new = snapshot.with_extension("new");
        fs::write(&new, actual).expect("write .new snapshot");
        panic!(
            "output differs from {}; the actual output is in {} (review, then move it over)",
            snapshot.display(),
            new.display()
        );
    }
}

#[test]
fn fixture_runs_are_what_the_generator_writes() {
    for (name, synth) in fixture_runs() {
        let dir = temp_dir(&format!("gen-{name}"));
        synth.write_run(&dir).expect("write run");
        for file in ["results.jsonl", "manifest.json"] {
            let fresh = fs::read_to_string(dir.join(file)).expect("fresh");
            let committed = fs::read_to_string(runs().join(name).join(file)).expect("committed");
            assert!(
                fresh == committed,
                "tests/fixtures/runs/{name}/{file} is stale"
            );
        }
    }
}

#[test]
fn report_markdown_matches_snapshot() {
    let out = specsweep()
        .arg("report")
        .arg(runs().join("small"))
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    check_snapshot(&stdout(&out), &runs().join("expected-report.md"));
}

#[test]
fn compare_flags_the_slower_run_and_matches_snapshot() {
    let out = specsweep()
        .args(["compare"])
        .arg(runs().join("small"))
        .arg(runs().join("slower"))
        .current_dir(crate::support::repo_root())
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out).replace(&runs().display().to_string(), "tests/fixtures/runs");
    check_snapshot(&text, &runs().join("expected-compare.md"));
    assert!(text.contains("| ngram-cache | speedup |") && text.contains("Regressed"));
}

#[test]
fn report_writes_every_format_and_every_chart() {
    let run = temp_dir("all-formats-run");
    Synth {
        depths: vec![0, 2048],
        moe: true,
        repetitions: 2,
        ..Synth::default()
    }
    .write_run(&run)
    .expect("write run");
    let out_dir = temp_dir("all-formats-out");
    let out = specsweep()
        .arg("report")
        .arg(&run)
        .args(["--format", "md,csv,json,parquet,html", "--out"])
        .arg(&out_dir)
        .args(["--resamples", "500"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    for file in [
        "report.md",
        "summary.csv",
        "summary.json",
        "summary.parquet",
        "report.html",
    ] {
        assert!(out_dir.join(file).is_file(), "{file} missing");
    }
    let csv = fs::read_to_string(out_dir.join("summary.csv")).expect("csv");
    let header = csv.lines().next().unwrap_or_default();
    for column in [
        "cell_id",
        "category",
        "cfg.spec",
        "decode_tok_per_s_median_lo",
        "itl_ms_p99",
        "speedup_hi",
        "e2e_speedup",
        "agreement_common_prefix_median",
    ] {
        assert!(
            header.split(',').any(|c| c == column),
            "column {column} missing: {header}"
        );
    }
    // 8 cells + 8 × 3 category rows.
    assert_eq!(csv.lines().count(), 1 + 8 + 24);
    let json: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out_dir.join("summary.json")).expect("json"))
            .expect("valid json");
    assert_eq!(json.as_array().map(Vec::len), Some(32));
    let parquet = fs::read(out_dir.join("summary.parquet")).expect("parquet");
    assert!(parquet.starts_with(b"PAR1") && parquet.ends_with(b"PAR1"));
    let html = fs::read_to_string(out_dir.join("report.html")).expect("html");
    let charts = [
        "speedup_by_category",
        "acceptance_by_position",
        "draft_size_sweep",
        "itl_cdf",
        "tok_per_s_by_depth",
        "experts_by_batch",
    ];
    for chart in charts {
        let svg =
            fs::read_to_string(out_dir.join("charts").join(format!("{chart}.svg"))).expect(chart);
        assert!(svg.starts_with("<svg"), "{chart}");
    }
    assert_eq!(html.matches("<svg").count(), charts.len());
    assert!(
        !html.contains("src=\"http") && !html.contains("<script"),
        "html must be self-contained"
    );
    assert!(html.contains("<h2>Cells</h2>") && html.contains("<h2>By category</h2>"));
}

#[test]
fn report_skips_charts_without_their_axis() {
    let out_dir = temp_dir("skip-out");
    let out = specsweep()
        .arg("report")
        .arg(runs().join("small"))
        .args(["--format", "html", "--out"])
        .arg(&out_dir)
        .args(["--resamples", "200"])
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("tok_per_s_by_depth skipped: fewer than two depth values"),
        "{err}"
    );
    assert!(err.contains("experts_by_batch skipped"), "{err}");
    assert!(!out_dir.join("charts/experts_by_batch.svg").exists());
}

fn gate(baseline: &Path, current: &Path, extra: &[&str]) -> Output {
    specsweep()
        .arg("gate")
        .arg("--baseline")
        .arg(baseline)
        .arg("--current")
        .arg(current)
        .args(extra)
        .env_remove("GITHUB_STEP_SUMMARY")
        .output()
        .expect("run gate")
}

/// A baseline written from the default synthetic run (seed 7).
fn baseline_file(name: &str) -> PathBuf {
    let run = temp_dir(&format!("{name}-base-run"));
    Synth::default().write_run(&run).expect("write");
    let file = temp_dir(&format!("{name}-base")).join("ci-gate.json");
    let out = gate(&file, &run, &["--update-baseline"]);
    assert!(out.status.success(), "{}", stderr(&out));
    file
}

#[test]
fn gate_passes_an_unchanged_rerun() {
    let baseline = baseline_file("rerun");
    let rerun = temp_dir("rerun-current");
    Synth {
        seed: 8,
        ..Synth::default()
    }
    .write_run(&rerun)
    .expect("write");
    let summary = temp_dir("rerun-summary").join("summary.md");
    let out = specsweep()
        .arg("gate")
        .arg("--baseline")
        .arg(&baseline)
        .arg("--current")
        .arg(&rerun)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(
        text.starts_with("## specsweep gate: PASS (synthetic)"),
        "{text}"
    );
    assert!(!text.contains("REGRESSED"), "{text}");
    assert_eq!(
        fs::read_to_string(&summary).expect("step summary"),
        format!("{text}\n")
    );
}

#[test]
fn gate_flags_a_20_percent_slowdown() {
    let baseline = baseline_file("slow");
    let slow = temp_dir("slow-current");
    Synth {
        seed: 9,
        spec_slowdown: 0.2,
        ..Synth::default()
    }
    .write_run(&slow)
    .expect("write");
    let out = gate(&baseline, &slow, &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(text.starts_with("## specsweep gate: FAIL"), "{text}");
    // Every speculative arm regresses on its speedup ratio; the control does not.
    let regressed: Vec<&str> = text.lines().filter(|l| l.contains("REGRESSED")).collect();
    assert_eq!(
        regressed
            .iter()
            .filter(|l| l.contains("| speedup |"))
            .count(),
        3,
        "{text}"
    );
    assert!(!regressed.iter().any(|l| l.contains("| none |")), "{text}");
    // A slowdown within the noise threshold passes.
    let out = gate(&baseline, &slow, &["--noise-pct", "30"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn gate_flags_a_changed_output() {
    let baseline = baseline_file("diverge");
    let diverged = temp_dir("diverge-current");
    Synth {
        seed: 10,
        diverge_arm: Some(1),
        ..Synth::default()
    }
    .write_run(&diverged)
    .expect("write");
    let out = gate(&baseline, &diverged, &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(
        text.contains("differs from its paired baseline at token 3"),
        "{text}"
    );
    assert!(text.contains("differs from the baseline's"), "{text}");
    // The same run cannot become a baseline.
    let refused = temp_dir("diverge-refused").join("b.json");
    let out = gate(&refused, &diverged, &["--update-baseline"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!refused.exists());
}

/// Rewrite the first line of `results.jsonl` in a copy of the small fixture.
fn edited_run(name: &str, edit: impl Fn(&mut serde_json::Value)) -> PathBuf {
    let dir = temp_dir(name);
    fs::copy(
        runs().join("small/manifest.json"),
        dir.join("manifest.json"),
    )
    .expect("copy");
    let text = fs::read_to_string(runs().join("small/results.jsonl")).expect("read");
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let mut first: serde_json::Value = serde_json::from_str(&lines[0]).expect("json");
    edit(&mut first);
    lines[0] = first.to_string();
    fs::write(dir.join("results.jsonl"), lines.join("\n") + "\n").expect("write");
    dir
}

#[test]
fn newer_schema_or_missing_columns_are_clear_errors() {
    let newer = edited_run("newer", |v| v["schema_version"] = serde_json::json!(99));
    let out = specsweep().arg("report").arg(&newer).output().expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("results.jsonl:1: schema_version 99 is newer"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");

    let missing = edited_run("missing", |v| {
        v.as_object_mut().map(|o| o.remove("decode_tok_per_s"));
    });
    let out = specsweep()
        .arg("report")
        .arg(&missing)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("results.jsonl:1: missing field `decode_tok_per_s`"),
        "{err}"
    );

    // The gate: a newer run is exit 2, so are a missing baseline and a newer baseline.
    let baseline = baseline_file("errors");
    assert_eq!(gate(&baseline, &newer, &[]).status.code(), Some(2));
    let nowhere = temp_dir("errors-nowhere").join("none.json");
    let out = gate(&nowhere, &runs().join("small"), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("none.json"), "{}", stderr(&out));
    let text = fs::read_to_string(&baseline).expect("baseline");
    let newer_baseline = baseline.with_file_name("newer.json");
    fs::write(
        &newer_baseline,
        text.replacen("\"schema_version\": 1", "\"schema_version\": 7", 1),
    )
    .expect("write");
    let out = gate(&newer_baseline, &runs().join("small"), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("schema_version 7 is newer"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn gate_refuses_a_run_missing_a_baseline_cell() {
    let baseline = baseline_file("missing-cell");
    let fewer = temp_dir("missing-cell-current");
    Synth {
        arms: Synth::default().arms[..2].to_vec(),
        ..Synth::default()
    }
    .write_run(&fewer)
    .expect("write");
    let out = gate(&baseline, &fewer, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("of the baseline is missing from run"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn gate_fails_a_run_with_failure_records() {
    let baseline = baseline_file("failures");
    // The small fixture is the default run with the ngram-mod arm timing out in repetition 0.
    let out = gate(&baseline, &runs().join("small"), &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(
        text.contains("1 failure record(s), first Timeout at repetition 0: worker exceeded"),
        "{text}"
    );
}

#[test]
fn report_rejects_bad_arguments_in_one_line() {
    let out = specsweep()
        .arg("report")
        .arg(runs().join("small"))
        .args(["--format", "md,pdf"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("unknown format `pdf`") && err.lines().count() == 1,
        "{err}"
    );
    let out = specsweep()
        .arg("report")
        .arg(runs().join("small"))
        .args(["--format", "csv"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("needs an output directory (--out DIR)"),
        "{}",
        stderr(&out)
    );
    let out = specsweep()
        .arg("report")
        .arg(runs().join("nonexistent"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("manifest.json"), "{}", stderr(&out));
}
