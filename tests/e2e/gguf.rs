//! End-to-end tests of GGUF loading and the model registry through the binary: logits and greedy
//! tokens of llama.cpp conversions of the tiny fixtures against transformers' numbers, the
//! tokenizer rebuilt from GGUF metadata, one-line errors for broken files, and `models`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::{fixture, specsweep};

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("running specsweep")
}

fn ok_json(args: &[&str]) -> Value {
    let out = run(specsweep().args(args));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

fn gguf(stem: &str) -> PathBuf {
    fixture("gguf").join(format!("{stem}.gguf"))
}

fn expected(stem: &str) -> Value {
    let p = fixture("gguf").join(format!("{stem}.expected.json"));
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn ids_arg(v: &Value) -> String {
    let ids: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.to_string())
        .collect();
    ids.join(",")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Largest |a - b| over two logit matrices of the same shape.
fn max_abs_diff(got: &Value, want: &Value) -> f64 {
    let (g, w) = (got.as_array().unwrap(), want.as_array().unwrap());
    assert_eq!(g.len(), w.len(), "row count");
    let mut worst: f64 = 0.0;
    for (r, e) in g.iter().zip(w) {
        let (r, e) = (r.as_array().unwrap(), e.as_array().unwrap());
        assert_eq!(r.len(), e.len(), "row length");
        for (a, b) in r.iter().zip(e) {
            worst = worst.max((a.as_f64().unwrap() - b.as_f64().unwrap()).abs());
        }
    }
    worst
}

fn logits_of(model: &Path, ids: &Value) -> Value {
    ok_json(&[
        "logits",
        "--model",
        s(model),
        "--token-ids",
        &ids_arg(ids),
        // the dequantized reference path (the default for .gguf keeps the blocks: `native`)
        "--quant",
        "f32",
        "--json",
    ])["logits"]
        .clone()
}

/// f32 conversions (llama with permuted Q/K and Llama-3 rope_freqs, qwen2 with biases, qwen3,
/// qwen3moe) give transformers' logits at every position within 1e-4.
#[test]
fn f32_gguf_logits_match_transformers() {
    for stem in ["llama-tiny", "qwen2-tiny", "qwen3-tiny", "qwen3moe-4e"] {
        let exp = expected(stem);
        let got = logits_of(&gguf(stem), &exp["token_ids"]);
        let d = max_abs_diff(&got, &exp["logits"]);
        assert!(d <= 1e-4, "{stem}: max |logit diff| {d}");
    }
}

/// The q8_0 conversion equals transformers run on the dequantized weights within 1e-4, and the
/// HF model itself within the quantization gap between the two references plus 1e-4.
#[test]
fn q8_0_gguf_logits_match_the_dequantized_reference() {
    let stem = "qwen2-tiny-q8_0";
    let exp = expected(stem);
    let got = logits_of(&gguf(stem), &exp["token_ids"]);
    let d = max_abs_diff(&got, &exp["logits_dequantized"]);
    assert!(
        d <= 1e-4,
        "{stem}: max |logit diff| vs dequantized reference {d}"
    );
    let gap = max_abs_diff(&exp["logits_dequantized"], &exp["logits"]);
    let d_hf = max_abs_diff(&got, &exp["logits"]);
    assert!(
        d_hf <= gap + 1e-4,
        "{stem}: {d_hf} vs HF, quantization gap {gap}"
    );
}

/// Greedy decoding from the GGUF files reproduces transformers' tokens.
#[test]
fn gguf_greedy_tokens_match_transformers() {
    for stem in ["llama-tiny", "qwen3-tiny", "qwen2-tiny-q8_0"] {
        let exp = expected(stem);
        let (g, want) = if stem.ends_with("q8_0") {
            (&exp["greedy"], &exp["greedy_dequantized_output_ids"])
        } else {
            (&exp["greedy"], &exp["greedy"]["output_ids"])
        };
        let n = g["max_new_tokens"].to_string();
        let out = ok_json(&[
            "generate",
            "--model",
            s(&gguf(stem)),
            "--token-ids",
            &ids_arg(&g["prompt_ids"]),
            "-n",
            &n,
            "--ignore-eos",
            "--quant",
            "f32",
            "--json",
        ]);
        let got = out["output_token_ids"]
            .as_array()
            .unwrap_or_else(|| panic!("{stem}: no output_token_ids in {out}"));
        assert_eq!(got, want.as_array().unwrap(), "{stem}");
    }
}

/// `tokenize` with a .gguf builds the tokenizer from metadata and gives the HF tokenizer's ids.
#[test]
fn gguf_tokenizer_matches_the_hf_tokenizer() {
    for stem in ["qwen3-tiny", "llama-tiny"] {
        let exp = expected(stem);
        for case in exp["tokenize"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let got = ok_json(&[
                "tokenize",
                "--model",
                s(&gguf(stem)),
                "--text",
                text,
                "--json",
            ]);
            assert_eq!(got["token_ids"], case["ids"], "{stem}: {text:?}");
        }
    }
}

/// A scratch file path unique to this test process.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("specsweep-e2e-gguf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Exit status 2, one stderr line containing every needle, no panic.
fn check_error(cmd: &mut Command, needles: &[&str]) {
    let out = run(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "not one line: {stderr}"
    );
    for n in needles {
        assert!(stderr.contains(n), "`{n}` missing from: {stderr}");
    }
}

/// The offset of the first tensor info's type field: found by locating the first tensor name.
fn first_tensor_type_offset(bytes: &[u8], name: &str) -> usize {
    let pos = bytes
        .windows(name.len())
        .position(|w| w == name.as_bytes())
        .expect("tensor name in file");
    let n_dims_at = pos + name.len();
    let n_dims = u32::from_le_bytes(bytes[n_dims_at..n_dims_at + 4].try_into().unwrap()) as usize;
    n_dims_at + 4 + 8 * n_dims
}

#[test]
fn broken_gguf_files_give_one_line_errors() {
    let good = std::fs::read(gguf("qwen3-tiny")).unwrap();

    let truncated = scratch("truncated.gguf");
    std::fs::write(&truncated, &good[..good.len() / 2]).unwrap();
    check_error(
        specsweep().args(["logits", "--model", s(&truncated), "--token-ids", "1,2"]),
        &["truncated.gguf", "truncated file"],
    );

    let bad_magic = scratch("bad-magic.gguf");
    let mut bytes = good.clone();
    bytes[..4].copy_from_slice(b"GGUX");
    std::fs::write(&bad_magic, &bytes).unwrap();
    check_error(
        specsweep().args(["logits", "--model", s(&bad_magic), "--token-ids", "1,2"]),
        &["bad-magic.gguf", "not a GGUF file"],
    );

    // Rewrite the type of token_embd.weight to 10 (Q2_K, which the engine does not read).
    let unknown = scratch("unknown-type.gguf");
    let mut bytes = good.clone();
    let at = first_tensor_type_offset(&bytes, "token_embd.weight");
    bytes[at..at + 4].copy_from_slice(&10u32.to_le_bytes());
    std::fs::write(&unknown, &bytes).unwrap();
    check_error(
        specsweep().args(["logits", "--model", s(&unknown), "--token-ids", "1,2"]),
        &["unknown-type.gguf", "token_embd.weight", "Q2_K"],
    );
}

#[test]
fn models_list_path_and_unfetched_names() {
    let cache = scratch("empty-cache");
    std::fs::create_dir_all(&cache).unwrap();
    let out = run(specsweep().args(["models", "list", "--json", "--cache-dir", s(&cache)]));
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = lines.iter().map(|l| l["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"]
    );
    assert_eq!(lines[0]["size_bytes"], 98_362_432);
    assert!(lines.iter().all(|l| l["present"] == false));

    check_error(
        specsweep().args(["models", "path", "smollm2-135m", "--cache-dir", s(&cache)]),
        &["specsweep models fetch smollm2-135m"],
    );
    check_error(
        specsweep().args(["models", "fetch", "no-such-model", "--cache-dir", s(&cache)]),
        &["unknown model `no-such-model`", "smollm2-135m"],
    );
    // A --model NAME that is not fetched says how to fetch it (cache located through XDG).
    check_error(
        specsweep().env("XDG_CACHE_HOME", &cache).args([
            "tokenize",
            "--model",
            "qwen2.5-coder-0.5b",
            "--text",
            "x",
        ]),
        &["specsweep models fetch qwen2.5-coder-0.5b"],
    );
    // A present file is listed with its path.
    let dir = cache.join("specsweep").join("models");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        gguf("qwen3-tiny"),
        dir.join("SmolLM2-135M-Instruct.Q4_1.gguf"),
    )
    .unwrap();
    let out =
        run(specsweep()
            .env("XDG_CACHE_HOME", &cache)
            .args(["models", "path", "smollm2-135m"]));
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .ends_with("SmolLM2-135M-Instruct.Q4_1.gguf")
    );
    // ...and `--model NAME` then loads it.
    let got = ok_json_env(
        &cache,
        &[
            "tokenize",
            "--model",
            "smollm2-135m",
            "--text",
            "def",
            "--json",
        ],
    );
    assert!(!got["token_ids"].as_array().unwrap().is_empty());
}

fn ok_json_env(xdg: &Path, args: &[&str]) -> Value {
    let out = run(specsweep().env("XDG_CACHE_HOME", xdg).args(args));
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
