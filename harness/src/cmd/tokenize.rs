//! `specsweep tokenize` (not implemented yet).

use std::process::ExitCode;

/// Arguments of `specsweep tokenize`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `specsweep tokenize`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`tokenize` is not implemented yet")
}
