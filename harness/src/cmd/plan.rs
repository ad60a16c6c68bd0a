//! `specsweep plan FILE`: expand a sweep and print its cells and their count.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::plan::{DEFAULT_UNIT_LIMIT, Plan};

/// Arguments of `specsweep plan`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The sweep file (TOML).
    pub file: PathBuf,
    /// Accept a plan with more units than --limit.
    #[arg(long)]
    pub yes: bool,
    /// Units (cells x repetitions) allowed without --yes.
    #[arg(long, default_value_t = DEFAULT_UNIT_LIMIT)]
    pub limit: usize,
}

/// Run `specsweep plan`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let plan = Plan::load(&args.file, &resolve_model)?;
    print!("{}", plan.render());
    check_limit(&plan, args.limit, args.yes)?;
    Ok(ExitCode::SUCCESS)
}

/// Refuse a plan over `limit` units unless `yes`.
pub fn check_limit(plan: &Plan, limit: usize, yes: bool) -> anyhow::Result<()> {
    if plan.units() > limit && !yes {
        anyhow::bail!(
            "{}: the plan has {} units (more than --limit {limit}); pass --yes to accept it",
            plan.sweep.path.display(),
            plan.units()
        );
    }
    Ok(())
}

/// Resolve a model name of a sweep: `default` and `default-draft` are the built-in demo models,
/// anything else goes through the model registry (paths, fetched NAMEs).
pub fn resolve_model(name: &str) -> Result<PathBuf, String> {
    if name == "default-draft" {
        return Ok(crate::models::default_model_dir().with_file_name("default-draft"));
    }
    crate::models::resolve_model(name).map_err(|e| format!("{e:#}"))
}
