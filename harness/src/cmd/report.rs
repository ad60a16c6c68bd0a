//! `specsweep report RUN_DIR`: aggregate a run directory into tables (Markdown, CSV, JSON,
//! Parquet) and an HTML page with charts. The work is done by `specsweep_reports`; this file only
//! parses arguments and writes files.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use specsweep_reports::report::{Format, ReportOptions, write_report};

/// Arguments of `specsweep report`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run directory holding `results.jsonl` and `manifest.json`.
    pub run_dir: PathBuf,
    /// Output formats, comma-separated: md, csv, json, parquet, html.
    #[arg(long, value_delimiter = ',', default_value = "md")]
    pub format: Vec<String>,
    /// Directory for the output files; without it, Markdown goes to stdout (other formats need it).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Bootstrap resamples for confidence intervals.
    #[arg(long, default_value_t = 10_000)]
    pub resamples: usize,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0x5eed)]
    pub seed: u64,
}

/// Run `specsweep report`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let formats = args
        .format
        .iter()
        .map(|f| f.parse::<Format>())
        .collect::<Result<Vec<_>, _>>()
        .context("--format")?;
    let options = ReportOptions {
        formats,
        out_dir: args.out.clone(),
        bootstrap: specsweep_reports::stats::Bootstrap {
            resamples: args.resamples,
            seed: args.seed,
            ..Default::default()
        },
    };
    let outcome = write_report(&args.run_dir, &options)
        .with_context(|| format!("report of {}", args.run_dir.display()))?;
    if let Some(markdown) = outcome.stdout {
        print!("{markdown}");
    }
    for note in &outcome.notes {
        eprintln!("specsweep: note: {note}");
    }
    for path in &outcome.written {
        eprintln!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
