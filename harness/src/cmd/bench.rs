//! `specsweep bench` (not implemented yet).

use std::process::ExitCode;

/// Arguments of `specsweep bench`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `specsweep bench`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`bench` is not implemented yet")
}
