//! `specsweep generate` (not implemented yet).

use std::process::ExitCode;

/// Arguments of `specsweep generate`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `specsweep generate`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`generate` is not implemented yet")
}
