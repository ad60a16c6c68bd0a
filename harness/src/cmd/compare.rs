//! `specsweep compare A B`: cell by cell, Improved / Regressed / No change of run B against run A
//! (criterion's rule: bootstrap CI of the relative change against a noise threshold), as Markdown.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use specsweep_reports::compare::{compare_runs, render_markdown};
use specsweep_reports::load::load_run;
use specsweep_reports::stats::Bootstrap;

/// Arguments of `specsweep compare`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The reference run directory.
    pub a: PathBuf,
    /// The run directory compared against A.
    pub b: PathBuf,
    /// Changes smaller than this (percent) are "No change" even when significant.
    #[arg(long, default_value_t = 5.0)]
    pub noise_pct: f64,
    /// Bootstrap resamples for the confidence intervals.
    #[arg(long, default_value_t = 10_000)]
    pub resamples: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0x5eed)]
    pub seed: u64,
}

/// Run `specsweep compare`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        args.noise_pct.is_finite() && args.noise_pct >= 0.0,
        "--noise-pct must be a non-negative number"
    );
    let a = load_run(&args.a).with_context(|| format!("run A {}", args.a.display()))?;
    let b = load_run(&args.b).with_context(|| format!("run B {}", args.b.display()))?;
    let cfg = Bootstrap {
        resamples: args.resamples,
        seed: args.seed,
        ..Bootstrap::default()
    };
    let cmp = compare_runs(&a, &b, args.noise_pct / 100.0, &cfg);
    anyhow::ensure!(
        !cmp.rows.is_empty(),
        "runs {} and {} have no cell in common",
        args.a.display(),
        args.b.display()
    );
    print!(
        "{}",
        render_markdown(
            &cmp,
            &args.a.display().to_string(),
            &args.b.display().to_string()
        )
    );
    Ok(ExitCode::SUCCESS)
}
