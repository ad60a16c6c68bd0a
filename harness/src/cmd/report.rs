//! `specsweep report` (not implemented yet).

use std::process::ExitCode;

/// Arguments of `specsweep report`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `specsweep report`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`report` is not implemented yet")
}
