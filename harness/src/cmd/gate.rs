//! `specsweep gate` (not implemented yet).

use std::process::ExitCode;

/// Arguments of `specsweep gate`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `specsweep gate`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`gate` is not implemented yet")
}
