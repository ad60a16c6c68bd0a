//! End-to-end tests: harness. `plan` against a committed snapshot, malformed sweep files (each a
//! one-line error naming the file and the key), and a tiny sweep run through the binary and its
//! child workers on the demo models — then resumed, repaired and refused as the contract says.

use std::path::{Path, PathBuf};
use std::process::Output;

use specsweep_reports::schema::{Manifest, Record};

use crate::support::{fixture, repo_root, specsweep};

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("harness-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn plan_matches_the_committed_snapshot() {
    let out = specsweep()
        .arg("plan")
        .arg(fixture("plans/mixed.toml"))
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let expected = std::fs::read_to_string(fixture("plans/mixed.plan.txt")).unwrap();
    assert_eq!(
        stdout, expected,
        "plan output changed; if intended, update tests/fixtures/plans/mixed.plan.txt"
    );
}

#[test]
fn plan_over_the_limit_needs_yes() {
    let out = specsweep()
        .arg("plan")
        .arg(fixture("plans/mixed.toml"))
        .args(["--limit", "10"])
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("--yes"), "{stderr}");
    let out = specsweep()
        .arg("plan")
        .arg(fixture("plans/mixed.toml"))
        .args(["--limit", "10", "--yes"])
        .output()
        .unwrap();
    assert!(out.status.success());
}

/// Every sweep shipped in `matrices/` expands: the files the README points users at parse, name
/// known axes and values (`kv_type = "q8_0"` included) and give cells. A sweep over a suite that
/// `scripts/build-suites.sh` generates at setup time (not committed) may instead fail with
/// exactly that one-line error when the suite has not been built.
#[test]
fn every_shipped_matrix_plans() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo_root().join("matrices"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut planned = 0;
    for path in &files {
        let out = specsweep()
            .arg("plan")
            .arg(path)
            .arg("--yes")
            .output()
            .unwrap();
        let (stdout, stderr) = text(&out);
        if !out.status.success() && stderr.contains("scripts/build-suites.sh") {
            assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
            continue;
        }
        assert!(out.status.success(), "{}: {stderr}", path.display());
        assert!(
            stdout.lines().any(|l| l.contains("model=")),
            "{}: no cells in {stdout}",
            path.display()
        );
        planned += 1;
    }
    assert!(planned >= 7, "{planned} of {files:?} planned");
}

/// Each malformed sweep must fail with exit 2 and one stderr line naming the file and the key.
#[test]
fn malformed_sweeps_give_one_line_errors_naming_file_and_key() {
    let dir = scratch("malformed");
    let head = "name = \"bad\"\nsuites = [\"tiny\"]\n";
    let cases: &[(&str, String, &str)] = &[
        (
            "unknown-axis",
            format!("{head}[axes]\nmodel = [\"default\"]\ncolour = [\"red\"]\n"),
            "axes.colour",
        ),
        (
            "unknown-header",
            format!("{head}repetitons = 3\n[axes]\nmodel = [\"default\"]\n"),
            "repetitons",
        ),
        (
            "wrong-type",
            format!("{head}[axes]\nmodel = [\"default\"]\ndepth = [0, \"deep\"]\n"),
            "axes.depth[1]",
        ),
        (
            "wrong-header-type",
            format!("{head}repetitions = \"three\"\n[axes]\nmodel = [\"default\"]\n"),
            "repetitions",
        ),
        (
            "scalar-axis",
            format!("{head}[axes]\nmodel = \"default\"\n"),
            "axes.model",
        ),
        (
            "empty-axis",
            format!("{head}[axes]\nmodel = [\"default\"]\nthreads = []\n"),
            "axes.threads",
        ),
        (
            "bad-range",
            format!("{head}[axes]\nmodel = [\"default\"]\ndepth = [\"0..512*2\"]\n"),
            "axes.depth[0]",
        ),
        (
            "unknown-mode",
            format!("{head}[axes]\nmodel = [\"default\"]\nspec = [\"eagle\"]\n"),
            "axes.spec[0]",
        ),
        (
            "draft-without-model",
            format!("{head}[axes]\nmodel = [\"default\"]\nspec = [\"draft\"]\n"),
            "axes.draft_model",
        ),
        (
            "mode-param-on-none",
            format!(
                "{head}[axes]\nmodel = [\"default\"]\nspec = [\"none\", \"mtp\"]\n[modes.none]\ndraft_max = [2]\n"
            ),
            "modes.none.draft_max",
        ),
        (
            "unused-mode-param",
            format!("{head}[axes]\nmodel = [\"default\"]\ndraft_max = [2]\n"),
            "axes.draft_max",
        ),
        (
            "min-above-max",
            format!(
                "{head}[axes]\nmodel = [\"default\"]\nspec = [\"mtp\"]\ndraft_min = [4]\ndraft_max = [2]\n"
            ),
            "draft_min",
        ),
        (
            "missing-suite",
            "name = \"bad\"\nsuites = [\"no-such-suite\"]\n[axes]\nmodel = [\"default\"]\n"
                .to_string(),
            "suites[0]",
        ),
        (
            "missing-model",
            format!("{head}[axes]\nmodel = [\"no/such/model\"]\n"),
            "axes.model",
        ),
        (
            "missing-name",
            "suites = [\"tiny\"]\n[axes]\nmodel = [\"default\"]\n".to_string(),
            "name",
        ),
        ("not-toml", format!("{head}[axes\n"), "line 3"),
    ];
    for (name, body, key) in cases {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, body).unwrap();
        let out = specsweep().arg("plan").arg(&path).output().unwrap();
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{name}: {stdout}{stderr}");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{name}: not one line: {stderr}"
        );
        assert!(
            stderr.contains(&format!("{name}.toml")),
            "{name}: file not named: {stderr}"
        );
        assert!(
            stderr.contains(&format!("`{key}`")) || stderr.contains(key),
            "{name}: key {key} not named: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
}

fn records(dir: &Path) -> Vec<Record> {
    std::fs::read_to_string(dir.join("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn tiny_sweep_runs_resumes_and_repairs() {
    let dir = scratch("run");
    let out_dir = dir.join("run");
    let sweep = fixture("plans/run-tiny.toml");

    // --dry-run writes nothing.
    let out = specsweep()
        .arg("run")
        .arg(&sweep)
        .arg("--out")
        .arg(&out_dir)
        .arg("--dry-run")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(text(&out).0.contains("execution order:"));
    assert!(!out_dir.exists());

    let out = specsweep()
        .arg("run")
        .arg(&sweep)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let first = records(&out_dir);
    // 4 cells x 2 repetitions x 4 prompts of the tiny suite.
    let requests: Vec<_> = first
        .iter()
        .filter_map(|r| {
            if let Record::Request(r) = r {
                Some(r)
            } else {
                None
            }
        })
        .collect();
    let failures: Vec<_> = first
        .iter()
        .filter_map(|r| {
            if let Record::Failure(f) = r {
                Some(f)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(
        requests.len() + 4 * failures.len(),
        4 * 2 * 4,
        "failures: {failures:?}"
    );
    assert!(failures.is_empty(), "{failures:?}");
    for r in &requests {
        assert!(
            r.output_tokens > 0 && r.output_tokens <= 12,
            "{}",
            r.output_tokens
        );
        assert_eq!(r.output_token_ids.len() as u64, r.output_tokens);
        assert_eq!(r.suite, "tiny");
        assert_eq!(r.suite_sha256.len(), 64);
        assert!(r.peak_rss_bytes > 0);
        assert_eq!(r.itl_ms.len() as u64, r.output_tokens - 1);
        if r.key.baseline_cell_id.is_some() {
            // Greedy speculation is lossless: every arm matches its control.
            assert_eq!(
                r.output_identical,
                Some(true),
                "{} {:?}",
                r.key.cell_id,
                r.first_divergence
            );
        } else {
            assert_eq!(r.output_identical, None);
        }
    }
    let manifest: Manifest =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(manifest.sweep, "run-tiny");
    assert!(manifest.ended_at.is_some());
    assert_eq!(manifest.burn_version, "0.21.0");
    assert!(
        manifest.models.contains_key("default") && manifest.models.contains_key("default-draft")
    );
    assert_eq!(manifest.suites.len(), 1);

    // Running again resumes: nothing is measured twice.
    let before = std::fs::read(out_dir.join("results.jsonl")).unwrap();
    let out = specsweep()
        .arg("run")
        .arg(&sweep)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    assert_eq!(
        std::fs::read(out_dir.join("results.jsonl")).unwrap(),
        before
    );

    // A kill mid-append (a partial trailing unit and a partial line) is repaired on resume.
    let lines: Vec<&[u8]> = before.split_inclusive(|&b| b == b'\n').collect();
    let mut damaged: Vec<u8> = lines[..lines.len() - 2].concat();
    damaged.extend_from_slice(&lines[lines.len() - 2][..10]);
    std::fs::write(out_dir.join("results.jsonl"), &damaged).unwrap();
    let out = specsweep()
        .arg("run")
        .arg(&sweep)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    assert!(text(&out).1.contains("repaired"));
    let repaired = records(&out_dir);
    assert_eq!(repaired.len(), first.len());

    // A changed sweep file is refused without --force.
    let changed = dir.join("run-tiny.toml");
    let body = std::fs::read_to_string(&sweep)
        .unwrap()
        .replace("seed = 1", "seed = 2");
    std::fs::write(&changed, body).unwrap();
    let out = specsweep()
        .arg("run")
        .arg(&changed)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("--force"), "{}", text(&out).1);
    let _ = std::fs::remove_dir_all(&dir);
}

fn unit_keys(records: &[Record]) -> Vec<(String, u32, String)> {
    let mut keys: Vec<(String, u32, String)> = records
        .iter()
        .map(|r| match r {
            Record::Request(r) => (r.key.cell_id.clone(), r.key.repetition, r.prompt_id.clone()),
            Record::Failure(f) => (f.key.cell_id.clone(), f.key.repetition, "<failure>".into()),
        })
        .collect();
    keys.sort();
    keys
}

/// Wait until `path` has at least `n` lines (or the child exits).
fn wait_for_lines(path: &Path, n: usize, child: &mut std::process::Child) {
    for _ in 0..6000 {
        let lines = std::fs::read_to_string(path)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if lines >= n || child.try_wait().unwrap().is_some() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// SIGKILL of the harness itself at several points, then resume: every record exactly once.
/// SIGINT: a clean stop with exit status 130, and a resume that completes the sweep.
#[test]
fn killed_or_interrupted_runs_resume_without_loss_or_duplicates() {
    let dir = scratch("kill");
    let sweep = fixture("plans/run-tiny.toml");
    let reference_dir = dir.join("reference");
    let out = specsweep()
        .arg("run")
        .arg(&sweep)
        .arg("--out")
        .arg(&reference_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    let reference = unit_keys(&records(&reference_dir));

    for (i, (signal, after_lines)) in [
        ("-KILL", 1),
        ("-KILL", 6),
        ("-INT", 9),
        ("-KILL", 17),
        ("-INT", 25),
    ]
    .iter()
    .enumerate()
    {
        let out_dir = dir.join(format!("run{i}"));
        let mut child = specsweep()
            .arg("run")
            .arg(&sweep)
            .arg("--out")
            .arg(&out_dir)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        wait_for_lines(&out_dir.join("results.jsonl"), *after_lines, &mut child);
        let status = std::process::Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let code = child.wait().unwrap();
        if *signal == "-INT" && code.code().is_some() {
            // Stopped cleanly (unless the sweep had already finished).
            assert!(matches!(code.code(), Some(130) | Some(0)), "{code:?}");
        }
        let out = specsweep()
            .arg("run")
            .arg(&sweep)
            .arg("--out")
            .arg(&out_dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out).1);
        assert_eq!(
            unit_keys(&records(&out_dir)),
            reference,
            "kill {signal} after {after_lines} lines"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A unit that exceeds the cell timeout becomes a `timeout` failure record; the sweep goes on.
#[test]
fn timeouts_become_failure_records() {
    let dir = scratch("timeout");
    let sweep = dir.join("slow.toml");
    std::fs::write(
        &sweep,
        "name = \"slow\"\nsuites = [\"tiny\"]\nrepetitions = 2\ntimeout_s = 0.001\n[axes]\nmodel = [\"default\"]\nspec = [\"none\", \"ngram-simple\"]\n",
    )
    .unwrap();
    let out_dir = dir.join("run");
    let out = specsweep()
        .arg("run")
        .arg(&sweep)
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out).1);
    let all = records(&out_dir);
    assert_eq!(all.len(), 4);
    for r in &all {
        match r {
            Record::Failure(f) => assert_eq!(
                f.cause,
                specsweep_reports::schema::FailureCause::Timeout,
                "{}",
                f.message
            ),
            Record::Request(_) => panic!("a 1 ms unit cannot succeed"),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
