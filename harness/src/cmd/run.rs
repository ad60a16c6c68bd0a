//! `specsweep run FILE --out DIR`: run a sweep into a run directory, resumably.
//!
//! RUN_DIR holds `manifest.json` (written once, at the first start; `ended_at` set when the sweep
//! completes), `results.jsonl` (one record per line, appended unit by unit) and `logs/` (each
//! unit's worker stderr). Starting again on the same directory resumes: completed units are
//! skipped, damage from a kill is repaired (see [`crate::sink::recover`]). A different sweep file
//! (by sha256) is refused unless `--force`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::Context;
use specsweep_reports::schema::Manifest;

use crate::cmd::plan::{check_limit, resolve_model};
use crate::manifest::{new_manifest, rfc3339_now, write_manifest};
use crate::plan::{DEFAULT_UNIT_LIMIT, Plan};
use crate::process::ProcessExecutor;
use crate::progress::RunProgress;
use crate::runner::{RunSpec, expected_records, run_units};
use crate::sink::{JsonlSink, recover};

/// Arguments of `specsweep run`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The sweep file (TOML).
    pub file: PathBuf,
    /// Run directory (created if needed; an existing one is resumed).
    #[arg(long)]
    pub out: PathBuf,
    /// Print the plan and the execution order, run nothing, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Accept a plan with more units than --limit.
    #[arg(long)]
    pub yes: bool,
    /// Units (cells x repetitions) allowed without --yes.
    #[arg(long, default_value_t = DEFAULT_UNIT_LIMIT)]
    pub limit: usize,
    /// Resume even though the sweep file changed since the run directory was started.
    #[arg(long)]
    pub force: bool,
}

/// Run `specsweep run`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let plan = Plan::load(&args.file, &resolve_model)?;
    check_limit(&plan, args.limit, args.yes)?;
    if args.dry_run {
        print!("{}", plan.render());
        println!("\nexecution order:");
        print!("{}", plan.render_order());
        return Ok(ExitCode::SUCCESS);
    }
    let wall = Instant::now();
    let out = &args.out;
    std::fs::create_dir_all(out.join("logs"))
        .with_context(|| format!("creating run directory {}", out.display()))?;
    let manifest_path = out.join("manifest.json");
    let mut manifest = open_manifest(&manifest_path, &plan, args.force)?;

    let results = out.join("results.jsonl");
    let per_unit = expected_records(&spec(&plan));
    let recovered = recover(&results, &|_| Some(per_unit))?;
    if recovered.truncated_bytes > 0 {
        eprintln!(
            "specsweep: repaired {}: removed {} bytes of an interrupted unit",
            results.display(),
            recovered.truncated_bytes
        );
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("installing the Ctrl-C handler")?;
    }
    let timeout = Duration::from_secs_f64(plan.sweep.header.timeout_s);
    let mut executor =
        ProcessExecutor::this_binary(timeout, Arc::clone(&stop), Some(out.join("logs")))
            .context("locating the specsweep binary for workers")?;
    let mut sink = JsonlSink::open(&results)?;
    let progress = RunProgress::stderr();
    let summary = run_units(
        &spec(&plan),
        &mut executor,
        &mut sink,
        &recovered,
        &stop,
        &progress,
    )?;
    progress.finish();

    let wall_s = wall.elapsed().as_secs_f64();
    eprintln!(
        "specsweep: {} units: {} run now ({} failed), {} done before; {} records in {}",
        summary.units_total,
        summary.units_run,
        summary.units_failed,
        summary.units_skipped,
        summary.records_written,
        results.display()
    );
    let ok_units = summary.units_run - summary.units_failed;
    if ok_units > 0 {
        let n = ok_units as f64;
        eprintln!(
            "specsweep: per unit: {:.2} s wall = {:.2} s in requests + {:.2} s model load/warmup/spawn ({:.2} s of it loading); wall time {:.1} s",
            summary.unit_wall_s / n,
            summary.request_s / n,
            (summary.unit_wall_s - summary.request_s) / n,
            summary.load_s / n,
            wall_s
        );
    }
    if summary.interrupted {
        eprintln!("specsweep: interrupted; run the same command again to resume");
        return Ok(ExitCode::from(130));
    }
    manifest.ended_at = Some(rfc3339_now());
    write_manifest(&manifest_path, &manifest)
        .with_context(|| format!("writing {}", manifest_path.display()))?;
    eprintln!("specsweep: done; see `specsweep report {}`", out.display());
    Ok(ExitCode::SUCCESS)
}

fn spec(plan: &Plan) -> RunSpec<'_> {
    let h = &plan.sweep.header;
    RunSpec {
        sweep: &h.name,
        cells: &plan.cells,
        suites: &plan.suites,
        repetitions: h.repetitions,
        seed: h.seed,
        warmup: h.warmup,
        model_paths: &plan.model_paths,
    }
}

/// The run directory's manifest: the existing one (checked against the sweep) or a new one.
fn open_manifest(path: &Path, plan: &Plan, force: bool) -> anyhow::Result<Manifest> {
    if path.exists() {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let manifest: Manifest = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a run manifest", path.display()))?;
        if manifest.sweep_sha256 != plan.sweep.sha256 && !force {
            anyhow::bail!(
                "{}: this run directory was started from a different sweep file (sha256 {} , now {}); pass --force to resume anyway",
                path.display(),
                &manifest.sweep_sha256[..12.min(manifest.sweep_sha256.len())],
                &plan.sweep.sha256[..12]
            );
        }
        return Ok(manifest);
    }
    let mut models = std::collections::BTreeMap::new();
    for (name, model_path) in &plan.model_paths {
        let digest = crate::hashing::sha256_path(model_path)
            .with_context(|| format!("hashing model {}", model_path.display()))?;
        models.insert(name.clone(), digest);
    }
    let suites = plan
        .suites
        .iter()
        .map(|s| (s.name.clone(), s.sha256.clone()))
        .collect();
    let manifest = new_manifest(&plan.sweep, &crate::sysinfo::collect(), models, suites);
    write_manifest(path, &manifest).with_context(|| format!("writing {}", path.display()))?;
    Ok(manifest)
}
