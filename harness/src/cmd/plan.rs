//! `specsweep plan` (not implemented yet).

use std::process::ExitCode;

/// Arguments of `specsweep plan`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `specsweep plan`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`plan` is not implemented yet")
}
