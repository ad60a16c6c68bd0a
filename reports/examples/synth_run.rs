//! Write seeded synthetic run directories (`results.jsonl` + `manifest.json`) for trying
//! `specsweep report`, `compare` and `gate` without weights, for the committed fixtures, and for
//! timing the report of a large run.
//!
//! Usage:
//! - `synth_run DIR [OUTPUT_TOKENS [PROMPTS_PER_CATEGORY]]` (defaults 32 and 4; with more than 32
//!   tokens, two depths): token events = output tokens × requests, e.g. `DIR 1000 21` gives
//!   3 reps × 3 categories × 21 prompts × 4 arms × 2 depths × 1000 = 1,512,000 ITL events.
//! - `synth_run --fixtures DIR`: (re)write the fixture runs of `synthetic::fixture_runs` under DIR
//!   (tests/fixtures/runs).

use std::path::PathBuf;
use std::process::ExitCode;

use specsweep_reports::synthetic::{Synth, fixture_runs};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--fixtures") {
        let Some(root) = args.get(1).map(PathBuf::from) else {
            eprintln!("usage: synth_run --fixtures DIR");
            return ExitCode::from(2);
        };
        for (name, synth) in fixture_runs() {
            if let Err(e) = synth.write_run(&root.join(name)) {
                eprintln!("synth_run: error: {e}");
                return ExitCode::from(2);
            }
            println!("wrote {}", root.join(name).display());
        }
        return ExitCode::SUCCESS;
    }
    let Some(dir) = args.first().map(PathBuf::from) else {
        eprintln!("usage: synth_run DIR [OUTPUT_TOKENS [PROMPTS_PER_CATEGORY]] | --fixtures DIR");
        return ExitCode::from(2);
    };
    let parse = |i: usize, default: usize| match args.get(i) {
        None => Ok(default),
        Some(s) => s
            .parse::<usize>()
            .map_err(|e| format!("argument `{s}`: {e}")),
    };
    let (tokens, prompts) = match (parse(1, 32), parse(2, 4)) {
        (Ok(t), Ok(p)) => (t, p),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("synth_run: error: {e}");
            return ExitCode::from(2);
        }
    };
    let synth = Synth {
        output_tokens: tokens,
        prompts_per_category: prompts,
        depths: if tokens > 32 { vec![0, 2048] } else { vec![0] },
        ..Synth::default()
    };
    match synth.write_run(&dir) {
        Ok(()) => {
            let events = synth.records().len() * tokens;
            println!("wrote {} (≈{events} token events)", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("synth_run: error: {e}");
            ExitCode::from(2)
        }
    }
}
