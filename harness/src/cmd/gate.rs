//! `specsweep gate --baseline FILE --current RUN_DIR`: the CI verdict. Exit 0 pass, 1 regression
//! (a hard gate or a statistical gate failed), 2 error (missing or incompatible inputs, a newer
//! schema). Prints a Markdown summary and appends it to `$GITHUB_STEP_SUMMARY` when that is set;
//! `--update-baseline` writes the baseline from the current run instead of gating against it.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use specsweep_reports::baseline::{baseline_from_run, load_baseline, save_baseline};
use specsweep_reports::gate::{GateOptions, gate, render_markdown, run_hard_failures};
use specsweep_reports::load::load_run;

/// Arguments of `specsweep gate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The committed baseline JSON (written by --update-baseline).
    #[arg(long)]
    pub baseline: PathBuf,
    /// The run directory to gate.
    #[arg(long)]
    pub current: PathBuf,
    /// Smallest drop of a median (percent) that counts as a regression.
    #[arg(long, default_value_t = 5.0)]
    pub noise_pct: f64,
    /// Family-wise significance level (Holm-corrected across cells).
    #[arg(long, default_value_t = 0.01)]
    pub alpha: f64,
    /// Write the baseline from the current run (after checking its outputs) instead of gating.
    #[arg(long)]
    pub update_baseline: bool,
}

/// Append `text` to the GitHub Actions job summary when running there.
fn append_step_summary(text: &str) -> anyhow::Result<()> {
    // The CI integration is the one place that reads the environment: GitHub sets this variable.
    let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") else {
        return Ok(());
    };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening $GITHUB_STEP_SUMMARY {}", path.to_string_lossy()))?;
    writeln!(file, "{text}").with_context(|| format!("writing {}", path.to_string_lossy()))
}

/// Run `specsweep gate`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.noise_pct.is_finite() && args.noise_pct >= 0.0,
        "--noise-pct must be a non-negative number"
    );
    anyhow::ensure!(
        args.alpha > 0.0 && args.alpha < 1.0,
        "--alpha must lie strictly between 0 and 1"
    );
    let run = load_run(&args.current)
        .with_context(|| format!("current run {}", args.current.display()))?;
    if args.update_baseline {
        let failures = run_hard_failures(&run);
        if !failures.is_empty() {
            for f in &failures {
                eprintln!("specsweep: gate: FAIL: {f}");
            }
            eprintln!("specsweep: gate: baseline not written: the run's outputs are not identical");
            return Ok(ExitCode::from(1));
        }
        let baseline = baseline_from_run(&run);
        save_baseline(&args.baseline, &baseline)
            .with_context(|| format!("writing baseline {}", args.baseline.display()))?;
        eprintln!(
            "wrote baseline {} ({} cells)",
            args.baseline.display(),
            baseline.cells.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let baseline = load_baseline(&args.baseline)
        .with_context(|| format!("baseline {}", args.baseline.display()))?;
    let options = GateOptions {
        noise_pct: args.noise_pct,
        alpha: args.alpha,
    };
    let report = gate(&baseline, &run, &options)?;
    let markdown = render_markdown(&report);
    print!("{markdown}");
    append_step_summary(&markdown)?;
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
