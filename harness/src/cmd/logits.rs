//! `specsweep logits` (not implemented yet).

use std::process::ExitCode;

/// Arguments of `specsweep logits`.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Run `specsweep logits`.
pub fn run(_args: Args) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`logits` is not implemented yet")
}
