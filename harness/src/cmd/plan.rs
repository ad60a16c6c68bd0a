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
    let plan = Plan::load(&args.file, &resolve_model_lenient)?;
    print!("{}", plan.render());
    for (name, path) in &plan.model_paths {
        if !path.exists() {
            println!(
                "note: model `{name}` is not fetched yet: run `specsweep models fetch {name}` before `specsweep run`"
            );
        }
    }
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

/// Like [`resolve_model`], but a known model NAME that is not fetched yet resolves to the path it
/// will have, so `plan` can show a sweep before its models are downloaded.
pub fn resolve_model_lenient(name: &str) -> Result<PathBuf, String> {
    match (resolve_model(name), crate::models::find_model(name)) {
        (Ok(path), _) => Ok(path),
        (Err(e), Some(entry)) => crate::models::cache_dir(None)
            .map(|dir| dir.join(entry.file_name))
            .map_err(|_| e),
        (Err(e), None) => Err(e),
    }
}
