//! `specsweep models` (not implemented yet).

use std::process::ExitCode;

/// Arguments of `specsweep models`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `specsweep models`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`models` is not implemented yet")
}
