//! `specsweep tokenize`: encode text with the model's tokenizer.json (`{"token_ids": [...]}`).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use specsweep_engine::Tokenizer;

/// Arguments of `specsweep tokenize`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Model directory holding tokenizer.json, a tokenizer.json, a .gguf file, a fetched model
    /// NAME or `default`.
    #[arg(long, short = 'm')]
    pub model: std::path::PathBuf,
    /// Text to encode.
    #[arg(long)]
    pub text: String,
    /// Add the tokenizer's special tokens (e.g. BOS).
    #[arg(long)]
    pub add_special: bool,
    /// Print JSON; otherwise one id per line.
    #[arg(long)]
    pub json: bool,
}

/// Run `specsweep tokenize`.
pub fn run(mut args: Args) -> anyhow::Result<ExitCode> {
    args.model = crate::models::resolve_model(&args.model.to_string_lossy())?;
    let tokenizer = if args.model.extension().and_then(|e| e.to_str()) == Some("gguf") {
        let gguf = specsweep_engine::gguf::GgufModel::open(&args.model)?;
        Tokenizer::from_tokenizer(gguf.tokenizer()?, Vec::new(), None)
    } else if args.model.is_dir() {
        Tokenizer::from_file(&args.model.join("tokenizer.json"), Vec::new(), None)?
    } else {
        Tokenizer::from_file(&args.model, Vec::new(), None)?
    };
    let ids = tokenizer.encode(&args.text, args.add_special)?;
    let mut stdout = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer(&mut stdout, &serde_json::json!({ "token_ids": ids }))
            .context("writing JSON")?;
        writeln!(stdout)?;
    } else {
        for id in ids {
            writeln!(stdout, "{id}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
