//! End-to-end tests of the mixture-of-experts engine and the multi-token-prediction heads
//! (issue #4), against transformers' numbers committed under tests/fixtures:
//!
//! - logits of every position within 1e-4 and greedy generation token-identical (40 tokens) for
//!   Qwen3-MoE (mixed dense/sparse layers, `norm_topk_prob` both ways) and Qwen2-MoE (shared
//!   expert), through the `specsweep` binary;
//! - the experts-touched counters checked against the router choices transformers recorded on a
//!   4-expert model, and reported by `generate --json`;
//! - `logits --mtp` for both MTP weight namings, the MTP cache (incremental = batched, truncate);
//! - partial or mis-shaped expert / MTP tensors and bad MoE configs as one-line errors.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use specsweep_engine::{Engine, LoadOptions};

use crate::support::{fixture, specsweep};

const TOL: f32 = 1e-4;
const MOE_FIXTURES: [&str; 4] = [
    "qwen3moe-tiny",
    "qwen3moe-nonorm",
    "qwen3moe-4e",
    "qwen2moe-tiny",
];
/// Both MTP weight namings, and the demo model (bf16 weights, 1024-token vocabulary).
const MTP_FIXTURES: [&str; 3] = ["qwen3-mtp-tiny", "qwen3-mtp-deepseek-names", "default"];

fn expected(name: &str) -> Value {
    let path = fixture(name).join("expected.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("expected.json is JSON")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("a list of ids")
        .iter()
        .map(|x| x.as_u64().expect("an id") as u32)
        .collect()
}

fn csv(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

fn rows(v: &Value) -> Vec<Vec<f32>> {
    v.as_array()
        .expect("a list of rows")
        .iter()
        .map(|r| {
            r.as_array()
                .expect("a row")
                .iter()
                .map(|x| x.as_f64().expect("a float") as f32)
                .collect()
        })
        .collect()
}

/// Every row and column of `got` within `TOL` of `want`.
fn assert_rows_close(what: &str, got: &[Vec<f32>], want: &[Vec<f32>]) {
    assert_eq!(got.len(), want.len(), "{what}: row count");
    for (p, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), w.len(), "{what}: row {p} width");
        let (j, diff) = g
            .iter()
            .zip(w)
            .map(|(a, b)| (a - b).abs())
            .enumerate()
            .fold(
                (0, 0.0f32),
                |best, (j, d)| if d > best.1 { (j, d) } else { best },
            );
        assert!(
            diff <= TOL,
            "{what}: position {p} column {j} differs by {diff}"
        );
    }
}

/// Run the binary, require success and parse its stdout as JSON.
fn run_json(args: &[&str]) -> Value {
    let out = specsweep().args(args).output().expect("run specsweep");
    assert!(
        out.status.success(),
        "specsweep {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

/// Run the binary, require a non-zero exit and return its stderr (one line, no panic).
fn run_err(args: &[&str]) -> String {
    let out = specsweep().args(args).output().expect("run specsweep");
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert!(!out.status.success(), "specsweep {args:?} should fail");
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one-line error: {stderr}");
    stderr
}

fn load(name: &str) -> Engine {
    Engine::load(&fixture(name), &LoadOptions::default()).expect("fixture loads")
}

#[test]
fn moe_logits_match_transformers_at_every_position() {
    for name in MOE_FIXTURES {
        let exp = expected(name);
        let dir = fixture(name);
        let got = run_json(&[
            "logits",
            "--model",
            dir.to_str().unwrap(),
            "--token-ids",
            &csv(&ids(&exp["token_ids"])),
            "--json",
        ]);
        assert_rows_close(name, &rows(&got["logits"]), &rows(&exp["logits"]));
    }
}

#[test]
fn moe_greedy_generation_is_token_identical_and_reports_experts() {
    for name in MOE_FIXTURES {
        let exp = expected(name);
        let greedy = &exp["greedy"];
        let prompt = ids(&greedy["prompt_ids"]);
        let want = ids(&greedy["output_ids"]);
        let n = want.len().to_string();
        let dir = fixture(name);
        let got = run_json(&[
            "generate",
            "--model",
            dir.to_str().unwrap(),
            "--token-ids",
            &csv(&prompt),
            "--max-new-tokens",
            &n,
            "--ignore-eos",
            "--json",
        ]);
        assert_eq!(ids(&got["output_token_ids"]), want, "{name}: greedy tokens");

        // Expert statistics: one prefill forward over the prompt, then one forward per token.
        let config: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap())
                .unwrap();
        let n_experts = config
            .get("num_experts")
            .or(config.get("num_local_experts"))
            .unwrap();
        let experts = &got["experts"];
        assert_eq!(&experts["n_experts"], n_experts, "{name}");
        assert_eq!(
            experts["n_experts_per_token"], config["num_experts_per_tok"],
            "{name}"
        );
        let by = experts["by_batch_size"].as_array().expect("by_batch_size");
        let find = |b: usize| {
            by.iter()
                .find(|r| r["batch_tokens"] == b)
                .unwrap_or_else(|| panic!("{name}: batch {b}"))
        };
        assert_eq!(find(prompt.len())["forwards"], 1, "{name}");
        assert_eq!(find(1)["forwards"], want.len() as u64 - 1, "{name}");
        // One token with top-K always touches exactly K experts per layer.
        assert_eq!(
            find(1)["mean_experts_touched"].as_f64(),
            config["num_experts_per_tok"].as_f64()
        );
        let prefill = find(prompt.len())["mean_experts_touched"].as_f64().unwrap();
        assert!(
            prefill >= 2.0 && prefill <= n_experts.as_f64().unwrap(),
            "{name}: {prefill}"
        );
    }
}

#[test]
fn dense_generate_reports_no_experts() {
    let dir = fixture("qwen3-tiny");
    let got = run_json(&[
        "generate",
        "--model",
        dir.to_str().unwrap(),
        "--token-ids",
        "5,6,7",
        "--max-new-tokens",
        "3",
        "--ignore-eos",
        "--json",
    ]);
    assert!(got["experts"].is_null(), "{}", got["experts"]);
}

/// The counters against the router choices transformers recorded (qwen3moe-4e `router_topk`):
/// feed `token_ids` through the cache in chunks of 1..=4 tokens; each chunk's count in each
/// sparse layer must be the number of distinct experts those positions chose.
#[test]
fn expert_counters_match_the_recorded_router_choices() {
    let exp = expected("qwen3moe-4e");
    let tokens = ids(&exp["token_ids"]);
    let topk: Vec<Vec<Vec<u64>>> = serde_json::from_value(exp["router_topk"].clone()).unwrap();
    let engine = load("qwen3moe-4e");

    // One forward over everything: the committed totals.
    let mut cache = engine.new_cache(tokens.len()).unwrap();
    let all = engine.forward(&tokens, &mut cache, false).unwrap();
    let want_all: Vec<u32> = serde_json::from_value(exp["experts_touched"].clone()).unwrap();
    assert_eq!(all.experts_touched, want_all);

    for chunk in 1..=4 {
        let mut cache = engine.new_cache(tokens.len()).unwrap();
        let mut start = 0;
        while start < tokens.len() {
            let end = (start + chunk).min(tokens.len());
            let out = engine
                .forward(&tokens[start..end], &mut cache, false)
                .unwrap();
            let want: Vec<u32> = topk
                .iter()
                .map(|layer| {
                    layer[start..end]
                        .iter()
                        .flatten()
                        .collect::<BTreeSet<_>>()
                        .len() as u32
                })
                .collect();
            assert_eq!(
                out.experts_touched, want,
                "chunk {chunk}, positions {start}..{end}"
            );
            start = end;
        }
    }
}

#[test]
fn mtp_logits_match_for_both_namings_and_the_demo_model() {
    for name in MTP_FIXTURES {
        let exp = expected(name);
        let dir = fixture(name);
        let got = run_json(&[
            "logits",
            "--model",
            dir.to_str().unwrap(),
            "--token-ids",
            &csv(&ids(&exp["token_ids"])),
            "--mtp",
            "--json",
        ]);
        assert_rows_close(name, &rows(&got["logits"]), &rows(&exp["logits"]));
        assert_rows_close(
            &format!("{name} mtp"),
            &rows(&got["mtp_logits"]),
            &rows(&exp["mtp_logits"]),
        );
    }
}

/// The MTP cache: one pair at a time equals the batched forward; truncate + re-append equals it.
#[test]
fn mtp_incremental_and_rollback_equal_the_batched_head() {
    let exp = expected("qwen3-mtp-tiny");
    let tokens = ids(&exp["token_ids"]);
    let want = rows(&exp["mtp_logits"]);
    let engine = load("qwen3-mtp-tiny");
    assert!(engine.has_mtp());
    let d = engine.config().hidden_size;
    let n = tokens.len();
    let mut cache = engine.new_cache(n).unwrap();
    let main = engine.forward(&tokens, &mut cache, true).unwrap();
    let hidden = main.hidden.expect("hidden rows");

    let mut mtp_cache = engine.new_mtp_cache(n - 1).unwrap();
    let mut got = Vec::new();
    for p in 0..n - 1 {
        let out = engine
            .mtp_forward(
                &tokens[p + 1..p + 2],
                &hidden[p * d..(p + 1) * d],
                &mut mtp_cache,
            )
            .unwrap();
        let h = out.hidden.as_ref().expect("mtp output hidden");
        assert_eq!(h.len(), d);
        got.push(out.logits);
    }
    assert_rows_close("incremental mtp", &got, &want);

    // Roll back to 4 MTP positions, re-append the rest in one batch.
    mtp_cache.truncate(4).unwrap();
    let out = engine
        .mtp_forward(&tokens[5..], &hidden[4 * d..(n - 1) * d], &mut mtp_cache)
        .unwrap();
    let again: Vec<Vec<f32>> = (0..out.rows()).map(|i| out.row(i).to_vec()).collect();
    assert_rows_close("mtp after truncate", &again, &want[4..]);
    assert!(
        mtp_cache.truncate(n).is_err(),
        "growing by truncate is refused"
    );
    // A full cache is an error, not a silent overwrite.
    assert!(
        engine
            .mtp_forward(&tokens[..1], &hidden[..d], &mut mtp_cache)
            .is_err()
    );
    // Hidden rows of the wrong width are an error naming them.
    let mut fresh = engine.new_mtp_cache(4).unwrap();
    let e = engine
        .mtp_forward(&tokens[..2], &hidden[..d], &mut fresh)
        .unwrap_err()
        .to_string();
    assert!(e.contains("hidden"), "{e}");
}

/// Chaining: the head's own output hidden state fed back gives the same numbers as feeding the
/// same (token, hidden) pairs as one batch — the contract the MTP drafter relies on.
#[test]
fn mtp_chaining_feeds_back_the_output_hidden() {
    let engine = load("qwen3-mtp-tiny");
    let d = engine.config().hidden_size;
    let prompt = [276u32, 269, 70, 70];
    let mut cache = engine.new_cache(prompt.len()).unwrap();
    let main = engine.forward(&prompt, &mut cache, true).unwrap();
    let h_last = main.hidden.unwrap()[(prompt.len() - 1) * d..].to_vec();

    // Three chained steps starting from (t_next, h_last).
    let mut mtp_cache = engine.new_mtp_cache(8).unwrap();
    let (mut tok, mut h) = (10u32, h_last.clone());
    let (mut fed_tokens, mut fed_hidden, mut chained) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..3 {
        fed_tokens.push(tok);
        fed_hidden.extend_from_slice(&h);
        let out = engine.mtp_forward(&[tok], &h, &mut mtp_cache).unwrap();
        chained.push(out.logits.clone());
        h = out.hidden.unwrap();
        tok = specsweep_engine::sampling::argmax(&out.logits);
    }
    let mut batch_cache = engine.new_mtp_cache(8).unwrap();
    let batch = engine
        .mtp_forward(&fed_tokens, &fed_hidden, &mut batch_cache)
        .unwrap();
    let batched: Vec<Vec<f32>> = (0..batch.rows()).map(|i| batch.row(i).to_vec()).collect();
    assert_rows_close("chained vs batched", &chained, &batched);
}

#[test]
fn a_checkpoint_without_mtp_weights_has_no_head() {
    let engine = load("qwen3-tiny");
    assert!(!engine.has_mtp());
    assert!(engine.new_mtp_cache(4).is_err());
    let dir = fixture("qwen3-tiny");
    let e = run_err(&[
        "logits",
        "--model",
        dir.to_str().unwrap(),
        "--token-ids",
        "1,2,3",
        "--mtp",
        "--json",
    ]);
    assert!(e.contains("MTP"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Edited checkpoints (broken ones, and an MoE model given an MTP head), written to a temporary
// directory from a fixture.

/// A copy of fixture `name` whose safetensors header is edited by `edit` (tensor name → entry;
/// an added entry may point at any byte range of the original data, which is then copied).
struct FixtureCopy {
    dir: PathBuf,
}

impl FixtureCopy {
    fn new(name: &str, tag: &str, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Self {
        let dir =
            std::env::temp_dir().join(format!("specsweep-e2e-moe-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(fixture(name)).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
        rewrite_safetensors(&dir.join("model.safetensors"), edit);
        Self { dir }
    }

    fn with_config(self, edit: impl FnOnce(&mut Value)) -> Self {
        let path = self.dir.join("config.json");
        let mut config: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        edit(&mut config);
        std::fs::write(&path, serde_json::to_string(&config).unwrap()).unwrap();
        self
    }

    fn path(&self) -> &Path {
        &self.dir
    }

    fn logits_error(&self) -> String {
        run_err(&[
            "logits",
            "--model",
            self.path().to_str().unwrap(),
            "--token-ids",
            "1,2",
        ])
    }
}

impl Drop for FixtureCopy {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// Rewrite a safetensors file after `edit` changed its header entries: the data section is rebuilt
/// from the remaining entries (in their original order) so the file stays contiguous and valid.
fn rewrite_safetensors(path: &Path, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let data = &bytes[8 + n..];
    let mut header: serde_json::Map<String, Value> =
        serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    edit(&mut header);
    let offsets = |v: &Value| -> (usize, usize) {
        let o = v["data_offsets"].as_array().unwrap();
        (
            o[0].as_u64().unwrap() as usize,
            o[1].as_u64().unwrap() as usize,
        )
    };
    let mut names: Vec<String> = header
        .keys()
        .filter(|k| *k != "__metadata__")
        .cloned()
        .collect();
    names.sort_by_key(|k| offsets(&header[k]).0);
    let mut new_data = Vec::new();
    for name in names {
        let (a, b) = offsets(&header[&name]);
        let start = new_data.len();
        new_data.extend_from_slice(&data[a..b]);
        header.get_mut(&name).unwrap()["data_offsets"] = serde_json::json!([start, new_data.len()]);
    }
    let h = serde_json::to_vec(&header).unwrap();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(&new_data);
    std::fs::write(path, out).unwrap();
}

/// Swap a 2-D tensor's shape (same element count, so the file stays valid).
fn transpose_shape(header: &mut serde_json::Map<String, Value>, name: &str) {
    let shape = header[name]["shape"].as_array().unwrap().clone();
    header.get_mut(name).unwrap()["shape"] = Value::Array(vec![shape[1].clone(), shape[0].clone()]);
}

/// An MTP head whose decoder layer is a sparse MoE layer (as on Qwen3.5-MoE checkpoints): the
/// 4-expert model gets DeepSeek-named MTP tensors (layer 1's weights copied to layer 2, `eh_proj`
/// taken from embedding bytes). No reference exists for it, so the checks are structural: the main
/// model is unchanged, the head's layer dispatches sparsely (one token → exactly top-k experts) and
/// its cache gives the same rows incrementally as batched.
#[test]
fn an_moe_mtp_layer_dispatches_sparsely_and_caches_consistently() {
    let copy = FixtureCopy::new("qwen3moe-4e", "moe-mtp", |h| {
        let layer1: Vec<String> = h.keys().filter(|k| k.starts_with("model.layers.1.")).cloned().collect();
        for name in layer1 {
            let entry = h[&name].clone();
            h.insert(name.replacen("model.layers.1.", "model.layers.2.", 1), entry);
        }
        let norm = h["model.norm.weight"].clone();
        for n in ["enorm", "hnorm", "shared_head.norm"] {
            h.insert(format!("model.layers.2.{n}.weight"), norm.clone());
        }
        let start = h["model.embed_tokens.weight"]["data_offsets"][0].as_u64().unwrap();
        h.insert(
            "model.layers.2.eh_proj.weight".into(),
            serde_json::json!({"dtype": "F32", "shape": [64, 128], "data_offsets": [start, start + 64 * 128 * 4]}),
        );
    })
    .with_config(|c| c["num_nextn_predict_layers"] = 1.into());
    let exp = expected("qwen3moe-4e");
    let tokens = ids(&exp["token_ids"]);
    let engine =
        Engine::load(copy.path(), &LoadOptions::default()).expect("loads with an MTP head");
    assert!(engine.has_mtp());
    let n = tokens.len();
    let d = engine.config().hidden_size;
    let mut cache = engine.new_cache(n).unwrap();
    let main = engine.forward(&tokens, &mut cache, true).unwrap();
    let main_rows: Vec<Vec<f32>> = (0..n).map(|i| main.row(i).to_vec()).collect();
    assert_rows_close(
        "main model with an MTP head",
        &main_rows,
        &rows(&exp["logits"]),
    );
    let hidden = main.hidden.unwrap();

    let mut batched_cache = engine.new_mtp_cache(n - 1).unwrap();
    let batched = engine
        .mtp_forward(&tokens[1..], &hidden[..(n - 1) * d], &mut batched_cache)
        .unwrap();
    assert_eq!(
        batched.experts_touched.len(),
        1,
        "one MoE layer in the head"
    );
    assert!(batched.experts_touched[0] >= 2 && batched.experts_touched[0] <= 4);
    let mut cache = engine.new_mtp_cache(n - 1).unwrap();
    let mut incremental = Vec::new();
    for p in 0..n - 1 {
        let out = engine
            .mtp_forward(
                &tokens[p + 1..p + 2],
                &hidden[p * d..(p + 1) * d],
                &mut cache,
            )
            .unwrap();
        assert_eq!(out.experts_touched, vec![2], "one token, top-2");
        incremental.push(out.logits);
    }
    let batched_rows: Vec<Vec<f32>> = (0..batched.rows())
        .map(|i| batched.row(i).to_vec())
        .collect();
    assert_rows_close(
        "moe mtp incremental vs batched",
        &incremental,
        &batched_rows,
    );
}

#[test]
fn partial_or_misshaped_expert_tensors_are_errors_naming_them() {
    let missing = "model.layers.1.mlp.experts.3.up_proj.weight";
    let copy = FixtureCopy::new("qwen3moe-4e", "missing-expert", |h| {
        h.remove(missing);
    });
    let e = copy.logits_error();
    assert!(e.contains(missing), "{e}");

    let shaped = "model.layers.0.mlp.experts.2.down_proj.weight";
    let copy = FixtureCopy::new("qwen3moe-4e", "shape-expert", |h| {
        transpose_shape(h, shaped)
    });
    let e = copy.logits_error();
    assert!(e.contains(shaped), "{e}");

    let router = "model.layers.0.mlp.gate.weight";
    let copy = FixtureCopy::new("qwen3moe-tiny", "missing-router", |h| {
        h.remove(router);
    });
    let e = copy.logits_error();
    assert!(e.contains(router), "{e}");

    let shared_gate = "model.layers.1.mlp.shared_expert_gate.weight";
    let copy = FixtureCopy::new("qwen2moe-tiny", "missing-shared-gate", |h| {
        h.remove(shared_gate);
    });
    let e = copy.logits_error();
    assert!(e.contains(shared_gate), "{e}");
}

#[test]
fn partial_or_misshaped_mtp_tensors_are_errors_naming_them() {
    for (fixture_name, missing) in [
        ("qwen3-mtp-tiny", "mtp.norm.weight"),
        ("qwen3-mtp-tiny", "mtp.layers.0.self_attn.k_proj.weight"),
        ("qwen3-mtp-deepseek-names", "model.layers.2.hnorm.weight"),
    ] {
        let copy = FixtureCopy::new(fixture_name, &format!("missing-{missing}"), |h| {
            h.remove(missing);
        });
        let e = copy.logits_error();
        assert!(e.contains(missing), "{fixture_name}: {e}");
    }
    for (fixture_name, shaped) in [
        ("qwen3-mtp-tiny", "mtp.fc.weight"),
        ("qwen3-mtp-deepseek-names", "model.layers.2.eh_proj.weight"),
    ] {
        let copy = FixtureCopy::new(fixture_name, &format!("shape-{shaped}"), |h| {
            transpose_shape(h, shaped)
        });
        let e = copy.logits_error();
        assert!(e.contains(shaped), "{fixture_name}: {e}");
    }
}

#[test]
fn bad_moe_configs_are_errors_naming_the_field() {
    let copy = FixtureCopy::new("qwen3moe-4e", "topk", |_| {})
        .with_config(|c| c["num_experts_per_tok"] = 5.into());
    let e = copy.logits_error();
    assert!(
        e.contains("num_experts_per_tok") && e.contains("config.json"),
        "{e}"
    );
    let copy = FixtureCopy::new("qwen3moe-4e", "no-experts", |_| {}).with_config(|c| {
        c.as_object_mut().unwrap().remove("num_local_experts");
    });
    let e = copy.logits_error();
    assert!(e.contains("num_experts"), "{e}");
}
