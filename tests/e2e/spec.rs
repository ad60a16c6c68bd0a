//! End-to-end tests of speculative decoding through `specsweep generate --spec MODE`: greedy
//! output is token-identical to `--spec none` for every mode on the fixtures, the statistics are
//! printed under names containing `accept`, and bad speculation input is a one-line error.

use std::process::Output;

use serde_json::Value;

use crate::support::{fixture, specsweep};

fn run(args: &[&str]) -> Output {
    specsweep().args(args).output().expect("running specsweep")
}

fn generate(model: &str, prompt: &str, n: usize, spec: &[&str]) -> Value {
    let model = fixture(model);
    let n = n.to_string();
    let mut args = vec![
        "generate",
        "-m",
        model.to_str().unwrap(),
        "--prompt",
        prompt,
        "-n",
        &n,
        "--ignore-eos",
        "--json",
    ];
    args.extend_from_slice(spec);
    let out = run(&args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

/// Prompts with repeated passages (code), where n-gram drafters have something to find.
const PROMPTS: [&str; 3] = [
    "def fib(n): return fib(n-1) + fib(n-2) def fib(n):",
    "for i in range(10): print(i) for i in range(10): print(i) for",
    "The cat sat on the mat. The cat sat on the",
];

fn modes() -> Vec<Vec<String>> {
    let draft = fixture("default-draft");
    [
        vec!["--spec", "ngram-cache"],
        vec![
            "--spec",
            "ngram-mod",
            "--spec-ngram-mod-n-match",
            "2",
            "--spec-ngram-mod-n-min",
            "1",
            "--spec-ngram-mod-n-max",
            "8",
        ],
        vec![
            "--spec",
            "ngram-mod",
            "--spec-ngram-size-n",
            "3",
            "--draft-min",
            "2",
            "--draft-max",
            "6",
        ],
        vec![
            "--spec",
            "ngram-simple",
            "--prompt-lookup-min",
            "1",
            "--prompt-lookup-max",
            "3",
            "--draft-max",
            "6",
        ],
        vec![
            "--spec",
            "draft",
            "--draft-model",
            draft.to_str().unwrap(),
            "--draft-max",
            "4",
        ],
        vec!["--spec", "mtp", "--draft-max", "3"],
    ]
    .into_iter()
    .map(|v| v.into_iter().map(String::from).collect())
    .collect()
}

#[test]
fn greedy_speculative_output_equals_plain_greedy_for_every_mode() {
    for prompt in PROMPTS {
        let plain = generate("default", prompt, 48, &[]);
        assert!(plain.get("spec").is_none_or(Value::is_null));
        for mode in modes() {
            let flags: Vec<&str> = mode.iter().map(String::as_str).collect();
            let spec = generate("default", prompt, 48, &flags);
            assert_eq!(
                spec["output_token_ids"], plain["output_token_ids"],
                "{flags:?} on {prompt:?}"
            );
            let s = &spec["spec"];
            for key in [
                "acceptance_rate",
                "mean_acceptance_length",
                "accepted_per_position",
                "accepted_length_histogram",
            ] {
                assert!(s.get(key).is_some(), "{flags:?}: no `{key}` in {s}");
            }
            let rounds = s["rounds"].as_u64().unwrap();
            let accepted = s["accepted"].as_u64().unwrap();
            let tau = s["mean_acceptance_length"].as_f64().unwrap();
            if rounds > 0 {
                assert!((tau - (1.0 + accepted as f64 / rounds as f64)).abs() < 1e-9);
            }
        }
    }
}

/// With an `f16`, `q8_0`, `q4_0`, `q4_1`, `q5_0` or `q5_1` KV cache, or different K and V types
/// (`q8_0/q4_0`, `f16/q5_1`; `--kv-type`, also the draft model's and the MTP head's) the
/// speculative output is still plain greedy decoding's over the same cache type, token for
/// token: a verify writes and reads the same rounded rows a step at a time would.
#[test]
fn greedy_speculative_output_with_a_rounded_cache_equals_plain_greedy() {
    for kv in [
        "f16",
        "q8_0",
        "q4_0",
        "q4_1",
        "q5_0",
        "q5_1",
        "iq4_nl",
        "q8_0/q4_0",
        "f16/q5_1",
        "q8_0/iq4_nl",
    ] {
        let kv_flags = ["--kv-type", kv];
        for prompt in PROMPTS {
            let plain = generate("default", prompt, 48, &kv_flags);
            assert_eq!(plain["kv_type"], kv);
            for mode in modes() {
                let flags: Vec<&str> = mode.iter().map(String::as_str).chain(kv_flags).collect();
                let spec = generate("default", prompt, 48, &flags);
                assert_eq!(
                    spec["output_token_ids"], plain["output_token_ids"],
                    "{flags:?} on {prompt:?}"
                );
            }
        }
    }
    check_error(
        &[
            "generate",
            "-m",
            fixture("default").to_str().unwrap(),
            "--prompt",
            "hi",
            "--kv-type",
            "iq4_xs",
        ],
        &["--kv-type", "iq4_xs"],
    );
    // q8_0 blocks are 32 values of one head's row: llama-tiny's heads are 16 wide; a block type
    // for V alone is refused the same way
    for (kv, block) in [("q8_0", "q8_0"), ("f16/q4_0", "q4_0")] {
        check_error(
            &[
                "generate",
                "-m",
                fixture("llama-tiny").to_str().unwrap(),
                "--prompt",
                "hi",
                "--kv-type",
                kv,
            ],
            &[block, "head_dim", "16", "llama-tiny"],
        );
    }
}

#[test]
fn models_drafts_are_accepted_on_the_demo_pair() {
    // The demo draft agrees with the target's greedy token ~74 % of the time (fixtures README),
    // so a working draft loop must accept a sizeable share; a broken rollback accepts ~nothing.
    let draft = fixture("default-draft");
    let spec = generate(
        "default",
        PROMPTS[0],
        48,
        &[
            "--spec",
            "draft",
            "--draft-model",
            draft.to_str().unwrap(),
            "--draft-max",
            "4",
        ],
    );
    let rate = spec["spec"]["acceptance_rate"].as_f64().unwrap();
    assert!(rate > 0.2, "acceptance_rate {rate}");
}

#[test]
fn mtp_fixture_output_is_unchanged_and_matches_the_reference() {
    let text = std::fs::read_to_string(fixture("qwen3-mtp-tiny").join("expected.json")).unwrap();
    let expected: Value = serde_json::from_str(&text).unwrap();
    let ids: Vec<String> = expected["greedy"]["prompt_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect();
    let model = fixture("qwen3-mtp-tiny");
    for draft_max in ["1", "2", "4"] {
        let out = run(&[
            "generate",
            "-m",
            model.to_str().unwrap(),
            "--token-ids",
            &ids.join(","),
            "-n",
            "40",
            "--ignore-eos",
            "--json",
            "--spec",
            "mtp",
            "--draft-max",
            draft_max,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            v["output_token_ids"], expected["greedy"]["output_ids"],
            "draft_max {draft_max}"
        );
        assert!(v["spec"]["rounds"].as_u64().unwrap() > 0);
    }
}

/// One stderr line with every needle, exit status 2.
fn check_error(args: &[&str], needles: &[&str]) {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "{args:?}: `{n}` not in {stderr}");
    }
}

#[test]
fn bad_speculation_input_is_a_one_line_error() {
    let target = fixture("default");
    let t = target.to_str().unwrap();
    let other = fixture("qwen3-tiny");
    check_error(
        &[
            "generate",
            "-m",
            t,
            "--prompt",
            "hi",
            "--spec",
            "draft",
            "--draft-model",
            other.to_str().unwrap(),
        ],
        &["vocab", "qwen3-tiny"],
    );
    check_error(
        &[
            "generate",
            "-m",
            t,
            "--prompt",
            "hi",
            "--spec",
            "ngram-simple",
            "--draft-p-min",
            "0.5",
        ],
        &["--draft-p-min"],
    );
    check_error(
        &["generate", "-m", t, "--prompt", "hi", "--spec", "draft"],
        &["--draft-model"],
    );
    check_error(
        &[
            "generate",
            "-m",
            t,
            "--prompt",
            "hi",
            "--spec",
            "ngram-mod",
            "--spec-ngram-size-n",
            "8",
            "--spec-ngram-mod-n-match",
            "8",
        ],
        &["--spec-ngram-size-n"],
    );
    let no_mtp = fixture("qwen3-tiny");
    check_error(
        &[
            "generate",
            "-m",
            no_mtp.to_str().unwrap(),
            "--prompt",
            "hi",
            "--spec",
            "mtp",
        ],
        &["MTP"],
    );
    check_error(
        &[
            "generate",
            "-m",
            t,
            "--prompt",
            "hi",
            "--spec",
            "ngram-cache",
            "--lcs",
            "/nonexistent/cache.bin",
        ],
        &["/nonexistent/cache.bin"],
    );
}
