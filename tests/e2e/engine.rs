//! End-to-end tests of the engine commands through the binary: `logits`, `generate`, `tokenize`,
//! `bench`, and one-line errors (naming the file or tensor, non-zero exit, no panic) for bad input.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::support::{fixture, specsweep};

fn run(args: &[&str]) -> Output {
    specsweep().args(args).output().expect("running specsweep")
}

fn ok_json(args: &[&str]) -> Value {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

fn expected(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name).join("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids_arg(v: &Value) -> String {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The command fails with exit status 2 and one stderr line containing every `needles` item.
fn check_error(args: &[&str], needles: &[&str]) {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "{args:?}: not one line: {stderr}"
    );
    for n in needles {
        assert!(stderr.contains(n), "{args:?}: `{n}` missing from: {stderr}");
    }
}

/// A scratch copy of a fixture directory.
fn scratch_copy(name: &str, tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("specsweep-e2e-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn logits_command_matches_the_reference_at_every_position() {
    for name in ["qwen3-tiny", "llama-tiny", "qwen2-tiny"] {
        let exp = expected(name);
        let model = fixture(name);
        let got = ok_json(&[
            "logits",
            "--model",
            s(&model),
            "--token-ids",
            &ids_arg(&exp["token_ids"]),
            "--json",
        ]);
        let rows = got["logits"].as_array().unwrap();
        let want = exp["logits"].as_array().unwrap();
        assert_eq!(rows.len(), want.len(), "{name}");
        for (i, (r, w)) in rows.iter().zip(want).enumerate() {
            let (r, w) = (r.as_array().unwrap(), w.as_array().unwrap());
            assert_eq!(r.len(), 320);
            for (a, b) in r.iter().zip(w) {
                let d = (a.as_f64().unwrap() - b.as_f64().unwrap()).abs();
                assert!(d <= 1e-4, "{name} position {i}: {d}");
            }
        }
    }
}

#[test]
fn generate_greedy_is_token_identical_and_reports_timings() {
    let exp = expected("qwen3-tiny");
    let g = &exp["greedy"];
    let model = fixture("qwen3-tiny");
    let n = g["max_new_tokens"].to_string();
    let got = ok_json(&[
        "generate",
        "--model",
        s(&model),
        "--token-ids",
        &ids_arg(&g["prompt_ids"]),
        "--max-new-tokens",
        &n,
        "--ignore-eos",
        "--json",
    ]);
    assert_eq!(got["output_token_ids"], g["output_ids"]);
    assert_eq!(got["prompt_token_ids"], g["prompt_ids"]);
    assert_eq!(
        got["prompt_tokens"].as_u64(),
        Some(g["prompt_ids"].as_array().unwrap().len() as u64)
    );
    let n_out = g["output_ids"].as_array().unwrap().len();
    assert_eq!(got["itl_ms"].as_array().unwrap().len(), n_out - 1);
    for key in ["prefill_tok_per_s", "decode_tok_per_s", "ttft_ms", "e2e_ms"] {
        assert!(got[key].as_f64().unwrap() > 0.0, "{key}");
    }
    assert!(got["text"].is_string());
}

#[test]
fn generate_from_text_and_seeded_sampling_is_reproducible() {
    let model = fixture("qwen3-tiny");
    let ids = ok_json(&[
        "tokenize",
        "--model",
        s(&model),
        "--text",
        "hello world",
        "--json",
    ]);
    let ids = ids["token_ids"].as_array().unwrap().clone();
    assert!(!ids.is_empty());
    let from_text = ok_json(&[
        "generate",
        "--model",
        s(&model),
        "--prompt",
        "hello world",
        "-n",
        "8",
        "--ignore-eos",
        "--json",
    ]);
    let from_ids = ok_json(&[
        "generate",
        "--model",
        s(&model),
        "--token-ids",
        &ids_arg(&Value::Array(ids.clone())),
        "-n",
        "8",
        "--ignore-eos",
        "--json",
    ]);
    assert_eq!(from_text["output_token_ids"], from_ids["output_token_ids"]);
    let sample = |seed: &str| {
        ok_json(&[
            "generate",
            "--model",
            s(&model),
            "--prompt",
            "hello world",
            "-n",
            "16",
            "--ignore-eos",
            "--temperature",
            "1.5",
            "--top-p",
            "0.95",
            "--top-k",
            "50",
            "--seed",
            seed,
            "--json",
        ])["output_token_ids"]
            .clone()
    };
    assert_eq!(sample("7"), sample("7"));
    assert_ne!(
        sample("7"),
        sample("8"),
        "different seeds should differ over 16 tokens at T=1.5"
    );
    // --threads 1 gives the greedy tokens of the default pool.
    let one = ok_json(&[
        "generate",
        "--model",
        s(&model),
        "--prompt",
        "hello world",
        "-n",
        "8",
        "--ignore-eos",
        "--threads",
        "1",
        "--json",
    ]);
    assert_eq!(one["output_token_ids"], from_text["output_token_ids"]);
}

#[test]
fn bench_reports_llama_bench_fields_and_the_roofline() {
    let config = fixture("qwen3-tiny").join("config.json");
    let got = ok_json(&[
        "bench",
        "--random",
        s(&config),
        "-p",
        "8,16",
        "-n",
        "4",
        "-d",
        "0,8",
        "-r",
        "2",
        "-o",
        "json",
        "--bandwidth-mib",
        "8",
    ]);
    let rows = got.as_array().unwrap();
    let tests: Vec<(&str, u64)> = rows
        .iter()
        .map(|r| (r["test"].as_str().unwrap(), r["n_depth"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        tests,
        vec![
            ("pp8", 0),
            ("pp16", 0),
            ("tg4", 0),
            ("pp8", 8),
            ("pp16", 8),
            ("tg4", 8)
        ]
    );
    for r in rows {
        assert_eq!(r["samples_ts"].as_array().unwrap().len(), 2);
        assert!(r["avg_ts"].as_f64().unwrap() > 0.0);
        assert!(r["stddev_ts"].as_f64().unwrap() >= 0.0);
        assert!(r["n_threads"].as_u64().unwrap() >= 1);
        let is_tg = r["n_gen"].as_u64().unwrap() > 0;
        assert_eq!(r["roofline_ts"].is_number(), is_tg);
        assert_eq!(r["roofline_fraction"].is_number(), is_tg);
    }
    let md = run(&[
        "bench",
        "--random",
        s(&config),
        "-p",
        "8",
        "-n",
        "2",
        "-r",
        "1",
        "--bandwidth-mib",
        "8",
    ]);
    assert!(md.status.success());
    let text = String::from_utf8_lossy(&md.stdout);
    assert!(
        text.contains("| pp8 |") && text.contains("| tg2 |") && text.contains("memory bandwidth"),
        "{text}"
    );
}

/// `--kv-type f32,f16,q8_0,q4_0,q4_1,q5_0,q5_1,iq4_nl` is a matrix axis (llama-bench's `-ctk/-ctv`): every test once per
/// type, named in `type_k` / `type_v`, and the largest cache counted at the type's bytes.
#[test]
fn bench_kv_type_is_an_axis() {
    let config = fixture("qwen3-tiny").join("config.json");
    // pp8 and tg2 of the random qwen3-tiny at `depths` with `kv_types`, then `extra`
    let bench = |depths: &str, kv_types: &str, extra: &[&str]| {
        let mut args = vec![
            "bench",
            "--random",
            s(&config),
            "-p",
            "8",
            "-n",
            "2",
            "-d",
            depths,
            "-r",
            "1",
            "--kv-type",
            kv_types,
            "-o",
            "json",
            "--bandwidth-mib",
            "8",
        ];
        args.extend_from_slice(extra);
        ok_json(&args)
    };
    let got = bench(
        "0,16",
        "f32,f16,q8_0,q4_0,q4_1,q5_0,q5_1,iq4_nl",
        &["-v", "2"],
    );
    let rows: Vec<(String, u64, String)> = got
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["type_k"], r["type_v"]);
            (
                r["test"].as_str().unwrap().to_string(),
                r["n_depth"].as_u64().unwrap(),
                r["type_k"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut want = Vec::new();
    for d in [0, 16] {
        for t in [
            "f32", "f16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl",
        ] {
            for test in ["pp8", "tg2", "verify1", "verify3"] {
                want.push((test.to_string(), d, t.to_string()));
            }
        }
    }
    assert_eq!(rows, want);
    // qwen3-tiny's cache at its largest (depth 16 + pp8 = 24 positions) in f32
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let n = |k: &str| cfg[k].as_u64().unwrap();
    let head_dim = cfg["head_dim"]
        .as_u64()
        .unwrap_or(n("hidden_size") / n("num_attention_heads"));
    let want_bytes = 2 * n("num_hidden_layers") * n("num_key_value_heads") * head_dim * 24 * 4;
    assert_eq!(got[0]["kv_cache_bytes"].as_u64(), Some(want_bytes));
    // the same cache in q8_0 alone: 34 bytes per 32 values
    let q8 = bench("16", "q8_0", &[]);
    assert_eq!(q8[0]["type_k"], "q8_0");
    assert_eq!(
        q8[0]["kv_cache_bytes"].as_u64(),
        Some(want_bytes / 4 / 32 * 34)
    );
    // q4_0 / q4_1 / q5_0 / q5_1 / iq4_nl: 18 / 20 / 22 / 24 / 18 bytes per 32 values
    for (t, bytes) in [
        ("q4_0", 18),
        ("q4_1", 20),
        ("q5_0", 22),
        ("q5_1", 24),
        ("iq4_nl", 18),
    ] {
        let q4 = bench("16", t, &[]);
        assert_eq!(q4[0]["type_v"], t);
        assert_eq!(
            q4[0]["kv_cache_bytes"].as_u64(),
            Some(want_bytes / 4 / 32 * bytes)
        );
    }
    // K/V of different types (`-ctk q8_0 -ctv q4_0`): each half at its own bytes, 34 + 18 per
    // 32 values of K and V; f16/f32 is half f16, half f32
    // (kv_cache_bytes is the run's largest cache: one type pair per run)
    let (a, b) = (
        &bench("16", "q8_0/q4_0", &[])[0],
        &bench("16", "f16/f32", &[])[0],
    );
    assert_eq!(
        (&a["type_k"], &a["type_v"]),
        (&"q8_0".into(), &"q4_0".into())
    );
    assert_eq!(
        a["kv_cache_bytes"].as_u64(),
        Some(want_bytes / 8 / 32 * (34 + 18))
    );
    assert_eq!((&b["type_k"], &b["type_v"]), (&"f16".into(), &"f32".into()));
    assert_eq!(b["kv_cache_bytes"].as_u64(), Some(want_bytes / 8 * (2 + 4)));
    for (kv, named) in [("iq4_xs", "unknown"), ("q8_0/iq4_xs", "V type")] {
        check_error(
            &[
                "bench",
                "--random",
                s(&config),
                "-p",
                "8",
                "-n",
                "0",
                "--kv-type",
                kv,
            ],
            &["--kv-type", kv, named],
        );
    }
    // q8_0 blocks need heads of whole blocks: llama-tiny's are 16 wide
    check_error(
        &[
            "bench",
            "--random",
            s(&fixture("llama-tiny").join("config.json")),
            "-p",
            "8",
            "-n",
            "0",
            "--kv-type",
            "q8_0",
        ],
        &["q8_0", "head_dim", "16"],
    );
}

#[test]
fn bench_kernels_selects_a_family_and_rejects_unknown_ones() {
    let config = fixture("qwen3-tiny").join("config.json");
    let base = [
        "bench",
        "--random",
        s(&config),
        "-p",
        "8",
        "-n",
        "2",
        "-r",
        "1",
        "--bandwidth-mib",
        "8",
        "--quant",
        "q8_0",
        "-o",
        "json",
    ];
    let got = ok_json(&[&base[..], &["--kernels", "scalar"]].concat());
    for r in got.as_array().unwrap() {
        assert_eq!(r["kernels"], "scalar", "{r}");
    }
    check_error(
        &[&base[..], &["--kernels", "sse9"]].concat(),
        &["--kernels sse9", "expected one of", "avx512vnni"],
    );
}

#[test]
fn bad_inputs_give_one_line_errors_naming_the_culprit() {
    fn logits(model: &Path) -> Vec<String> {
        [
            "logits",
            "--model",
            s(model),
            "--token-ids",
            "1,2,3",
            "--json",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    }
    fn args(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    // Fixtures written by the reference generator.
    check_error(
        &args(&logits(&fixture("broken-config"))),
        &["config.json", "malformed"],
    );
    check_error(
        &args(&logits(&fixture("broken-missing-tensor"))),
        &["model.layers.1.mlp.down_proj.weight"],
    );
    check_error(
        &args(&logits(&fixture("broken-shape"))),
        &["model.layers.0.self_attn.q_proj.weight", "[120, 64]"],
    );
    check_error(
        &args(&logits(Path::new("/nonexistent/model"))),
        &["/nonexistent/model"],
    );

    // Token ids outside the vocabulary.
    check_error(
        &[
            "logits",
            "--model",
            s(&fixture("qwen3-tiny")),
            "--token-ids",
            "1,320",
            "--json",
        ],
        &["320", "vocabulary"],
    );
    check_error(
        &[
            "logits",
            "--model",
            s(&fixture("qwen3-tiny")),
            "--token-ids",
            "1,x",
        ],
        &["--token-ids"],
    );

    // Unsupported architecture, malformed field, missing and truncated files: built in temp dirs.
    let dir = scratch_copy("qwen3-tiny", "arch");
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        cfg.replace("Qwen3ForCausalLM", "GPT2LMHeadModel"),
    )
    .unwrap();
    check_error(&args(&logits(&dir)), &["GPT2LMHeadModel"]);
    std::fs::write(
        dir.join("config.json"),
        cfg.replace("\"hidden_size\": 64", "\"hidden_size\": \"64\""),
    )
    .unwrap();
    check_error(&args(&logits(&dir)), &["config.json", "hidden_size"]);
    std::fs::remove_file(dir.join("config.json")).unwrap();
    check_error(&args(&logits(&dir)), &["config.json"]);
    std::fs::write(dir.join("config.json"), &cfg).unwrap();
    let st = std::fs::read(dir.join("model.safetensors")).unwrap();
    std::fs::write(dir.join("model.safetensors"), &st[..st.len() / 2]).unwrap();
    check_error(&args(&logits(&dir)), &["model.safetensors"]);
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
    check_error(&args(&logits(&dir)), &["model.safetensors"]);
    std::fs::remove_dir_all(&dir).ok();

    // A sharded checkpoint missing one shard names the shard.
    let dir = scratch_copy("qwen2-tiny", "shard");
    std::fs::remove_file(dir.join("model-00002-of-00003.safetensors")).unwrap();
    check_error(&args(&logits(&dir)), &["model-00002-of-00003.safetensors"]);
    std::fs::remove_dir_all(&dir).ok();

    // Devices not compiled in, bad sampling flags.
    if !cfg!(feature = "cuda") {
        check_error(
            &[
                "generate",
                "--model",
                s(&fixture("qwen3-tiny")),
                "--token-ids",
                "1",
                "--device",
                "cuda:0",
            ],
            &["cuda"],
        );
    }
    check_error(
        &[
            "generate",
            "--model",
            s(&fixture("qwen3-tiny")),
            "--token-ids",
            "1",
            "--temperature",
            "0",
        ],
        &["temperature"],
    );
}
