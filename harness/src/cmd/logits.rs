//! `specsweep logits`: one forward over the given token ids, printing every position's logits
//! (`{"logits": [[...], ...]}`, one row of vocab-size floats per input position). With `--mtp`,
//! also the model's MTP head over the same ids (`"mtp_logits"`: n−1 rows, row p = the head's
//! logits for t_{p+2} given h_p and t_{p+1}, attending causally over MTP positions 0..p).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;

use super::model_opts::{ModelOpts, parse_token_ids};

/// Arguments of `specsweep logits`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelOpts,
    /// Comma-separated token ids, e.g. `3,17,42`.
    #[arg(long)]
    pub token_ids: String,
    /// Print JSON (`{"logits": [[...], ...]}`); otherwise the argmax and max logit per position.
    #[arg(long)]
    pub json: bool,
    /// Also run the multi-token-prediction head (`"mtp_logits"`); an error without one.
    #[arg(long)]
    pub mtp: bool,
}

/// Run `specsweep logits`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let ids = parse_token_ids(&args.token_ids)?;
    let engine = args.model.load()?;
    if args.mtp && !engine.has_mtp() {
        anyhow::bail!(
            "{}: the checkpoint has no MTP head",
            args.model.model.display()
        );
    }
    let mut cache = engine.new_cache(ids.len())?;
    let out = engine.forward(&ids, &mut cache, args.mtp)?;
    let rows: Vec<&[f32]> = (0..out.rows()).map(|i| out.row(i)).collect();
    // MTP row p pairs t_{p+1} with h_p: tokens ids[1..], hidden rows 0..n-1.
    let mtp = match (args.mtp, ids.len()) {
        (false, _) => None,
        (true, 1) => Some(Vec::new()),
        (true, n) => {
            let d = engine.config().hidden_size;
            let hidden = out
                .hidden
                .as_deref()
                .context("forward returned no hidden states")?;
            let mut mtp_cache = engine.new_mtp_cache(n - 1)?;
            let m = engine.mtp_forward(&ids[1..], &hidden[..(n - 1) * d], &mut mtp_cache)?;
            Some((0..m.rows()).map(|i| m.row(i).to_vec()).collect::<Vec<_>>())
        }
    };
    let mut stdout = std::io::stdout().lock();
    if args.json {
        let value = match &mtp {
            Some(m) => serde_json::json!({ "logits": rows, "mtp_logits": m }),
            None => serde_json::json!({ "logits": rows }),
        };
        serde_json::to_writer(&mut stdout, &value).context("writing JSON")?;
        writeln!(stdout)?;
    } else {
        for (i, row) in rows.iter().enumerate() {
            let best = specsweep_engine::sampling::argmax(row);
            writeln!(
                stdout,
                "{i}\ttoken {}\targmax {best}\tlogit {}",
                ids[i], row[best as usize]
            )?;
        }
        for (p, row) in mtp.iter().flatten().enumerate() {
            let best = specsweep_engine::sampling::argmax(row);
            writeln!(
                stdout,
                "mtp {p}\tpredicts t{}\targmax {best}\tlogit {}",
                p + 2,
                row[best as usize]
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
