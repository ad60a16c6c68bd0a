//! Write a seeded synthetic run directory (`results.jsonl` + `manifest.json`) for trying
//! `specsweep report`, `compare` and `gate` without weights, and for timing the report of a large
//! run.
//!
//! Usage: `cargo run -p specsweep-reports --example synth_run -- DIR [OUTPUT_TOKENS [PROMPTS_PER_CATEGORY]]`
//! (defaults 32 and 4). Token events = output tokens × requests; e.g. `DIR 1000 21` gives
//! 3 reps × 3 categories × 21 prompts × 4 arms × 2 depths × 1000 = 1,512,000 ITL events.

use std::path::PathBuf;
use std::process::ExitCode;

use specsweep_reports::synthetic::Synth;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first().map(PathBuf::from) else {
        eprintln!("usage: synth_run DIR [OUTPUT_TOKENS [PROMPTS_PER_CATEGORY]]");
        return ExitCode::from(2);
    };
    let parse = |i: usize, default: usize| match args.get(i) {
        None => Ok(default),
        Some(s) => s.parse::<usize>().map_err(|e| format!("argument `{s}`: {e}")),
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
