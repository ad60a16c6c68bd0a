//! `specsweep worker` (hidden): run one unit of a sweep in this process. Reads a
//! [`UnitJob`] as JSON on stdin and writes one
//! [`WorkerMessage`](crate::job::WorkerMessage) per line on stdout; started by `specsweep run`.

use std::io::{Read, Write};
use std::process::ExitCode;

use anyhow::Context;

use crate::job::UnitJob;

/// Arguments of `specsweep worker`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `specsweep worker`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    let mut input = String::new();
    std::io::stdin()
        .read_to_string(&mut input)
        .context("reading the job from stdin")?;
    let job: UnitJob = serde_json::from_str(&input).context("stdin is not a unit job")?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    crate::measure::run_job(&job, &mut |message| {
        serde_json::to_writer(&mut out, &message).context("writing to stdout")?;
        out.write_all(b"\n").context("writing to stdout")?;
        out.flush().context("writing to stdout")
    })?;
    Ok(ExitCode::SUCCESS)
}
