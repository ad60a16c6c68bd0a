//! `specsweep compare` (not implemented yet).

use std::process::ExitCode;

/// Arguments of `specsweep compare`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `specsweep compare`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`compare` is not implemented yet")
}
