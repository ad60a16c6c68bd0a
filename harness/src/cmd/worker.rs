//! `specsweep worker` (not implemented yet).

use std::process::ExitCode;

/// Arguments of `specsweep worker`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `specsweep worker`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`worker` is not implemented yet")
}
