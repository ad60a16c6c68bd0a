//! `specsweep run` (not implemented yet).

use std::process::ExitCode;

/// Arguments of `specsweep run`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `specsweep run`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`run` is not implemented yet")
}
