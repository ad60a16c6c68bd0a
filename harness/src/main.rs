//! The `specsweep` command line: parses arguments with clap and dispatches to `cmd::*`.
//!
//! Every error is printed as one line (`specsweep: error: ...`) with a non-zero exit status;
//! commands that have their own exit-code contract (`gate`) return it as an `ExitCode`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use specsweep::cmd;

/// Which local decoding configuration is fastest on this hardware — and is the output the same?
#[derive(Parser)]
#[command(name = "specsweep", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the logits of every input position (and the MTP head's, with --mtp).
    Logits(cmd::logits::Args),
    /// Generate text, optionally with speculative decoding, and report timings.
    Generate(cmd::generate::Args),
    /// Tokenize text with the model's tokenizer.
    Tokenize(cmd::tokenize::Args),
    /// Prefill / decode throughput in the manner of llama-bench.
    Bench(cmd::bench::Args),
    /// Known real models: list, fetch, path.
    Models(cmd::models::Args),
    /// Expand a sweep file into cells and print them.
    Plan(cmd::plan::Args),
    /// Run a sweep into a run directory (resumable).
    Run(cmd::run::Args),
    /// Run one cell in an isolated child process (used by `run`).
    #[command(hide = true)]
    Worker(cmd::worker::Args),
    /// Aggregate a run directory into tables and charts.
    Report(cmd::report::Args),
    /// Compare two run directories cell by cell.
    Compare(cmd::compare::Args),
    /// Gate a run against a baseline: exit 0 pass, 1 regression, 2 error.
    Gate(cmd::gate::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Logits(args) => cmd::logits::run(args),
        Command::Generate(args) => cmd::generate::run(args),
        Command::Tokenize(args) => cmd::tokenize::run(args),
        Command::Bench(args) => cmd::bench::run(args),
        Command::Models(args) => cmd::models::run(args),
        Command::Plan(args) => cmd::plan::run(args),
        Command::Run(args) => cmd::run::run(args),
        Command::Worker(args) => cmd::worker::run(args),
        Command::Report(args) => cmd::report::run(args),
        Command::Compare(args) => cmd::compare::run(args),
        Command::Gate(args) => cmd::gate::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            // `{:#}` joins the context chain on one line: "reading x.toml: key `foo`: ...".
            eprintln!("specsweep: error: {err:#}");
            ExitCode::from(2)
        }
    }
}
