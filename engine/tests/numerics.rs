//! Numerical faithfulness against the reference fixtures (tests/fixtures/*, written by
//! scripts/ with transformers): every position's logits within 1e-4, greedy generation
//! token-identical, incremental decoding == one full forward, truncate + re-append == fresh prefill.

use std::path::PathBuf;

use specsweep_engine::{Engine, GenerateOptions, LoadOptions, Sampling, generate};

/// Logit tolerance against transformers (f32 compute).
const TOL: f32 = 1e-4;
/// Tolerance between two engine paths that should agree up to summation order.
const SELF_TOL: f32 = 2e-5;

const FIXTURES: &[&str] = &[
    "qwen3-tiny",
    "llama-tiny",
    "qwen2-tiny",
    "llama-tiny-f16",
    "default",
];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(name)
}

struct Expected {
    token_ids: Vec<u32>,
    logits: Vec<Vec<f32>>,
    prompt_ids: Vec<u32>,
    max_new_tokens: usize,
    output_ids: Vec<u32>,
}

fn expected(name: &str) -> Expected {
    let text = std::fs::read_to_string(fixture(name).join("expected.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    Expected {
        token_ids: ids(&v["token_ids"]),
        logits: v["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect()
            })
            .collect(),
        prompt_ids: ids(&v["greedy"]["prompt_ids"]),
        max_new_tokens: v["greedy"]["max_new_tokens"].as_u64().unwrap() as usize,
        output_ids: ids(&v["greedy"]["output_ids"]),
    }
}

fn load(name: &str) -> Engine {
    Engine::load(&fixture(name), &LoadOptions::default()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn logits_match_transformers_at_every_position() {
    for name in FIXTURES {
        let exp = expected(name);
        let engine = load(name);
        let mut cache = engine.new_cache(exp.token_ids.len()).unwrap();
        let out = engine.forward(&exp.token_ids, &mut cache, false).unwrap();
        assert_eq!(out.rows(), exp.logits.len(), "{name}");
        for (i, row) in exp.logits.iter().enumerate() {
            let d = max_diff(out.row(i), row);
            assert!(d <= TOL, "{name}: position {i}: max |Δlogit| = {d}");
        }
    }
}

#[test]
fn greedy_generation_matches_transformers() {
    for name in FIXTURES {
        let exp = expected(name);
        assert!(exp.output_ids.len() >= 32, "{name}: fixture too short");
        let engine = load(name);
        let opts = GenerateOptions {
            max_new_tokens: exp.max_new_tokens,
            sampling: Sampling::Greedy,
            // The reference generated with EOS ignored.
            ignore_eos: true,
            cache_capacity: None,
        };
        let g = generate(&engine, &exp.prompt_ids, &opts).unwrap();
        assert_eq!(g.output_token_ids, exp.output_ids, "{name}");
        assert_eq!(g.itl_ms.len(), g.output_token_ids.len() - 1);
    }
}

#[test]
fn incremental_decoding_equals_one_full_forward() {
    for name in ["qwen3-tiny", "llama-tiny", "qwen2-tiny"] {
        let exp = expected(name);
        let engine = load(name);
        let ids = &exp.token_ids;
        let mut full_cache = engine.new_cache(ids.len()).unwrap();
        let full = engine.forward(ids, &mut full_cache, true).unwrap();
        // One token at a time.
        let mut cache = engine.new_cache(ids.len()).unwrap();
        for (i, &t) in ids.iter().enumerate() {
            let out = engine.forward(&[t], &mut cache, true).unwrap();
            let d = max_diff(out.row(0), full.row(i));
            assert!(d <= SELF_TOL, "{name}: token {i}: {d}");
        }
        assert_eq!(cache.len(), ids.len());
        // Uneven chunks (prefill 5, verify 4, then 3).
        let mut cache = engine.new_cache(ids.len()).unwrap();
        let mut at = 0;
        for n in [5, 4, 3] {
            let out = engine.forward(&ids[at..at + n], &mut cache, true).unwrap();
            for j in 0..n {
                let d = max_diff(out.row(j), full.row(at + j));
                assert!(d <= SELF_TOL, "{name}: chunk row {}: {d}", at + j);
            }
            let h = engine.config().hidden_size;
            let hid = out.hidden.as_ref().unwrap();
            let full_hid = full.hidden.as_ref().unwrap();
            assert!(max_diff(hid, &full_hid[at * h..(at + n) * h]) <= SELF_TOL);
            at += n;
        }
    }
}

#[test]
fn truncate_and_reappend_equals_fresh_prefill() {
    let exp = expected("qwen3-tiny");
    let engine = load("qwen3-tiny");
    let ids = &exp.token_ids;
    let mut fresh = engine.new_cache(ids.len()).unwrap();
    let reference = engine.forward(ids, &mut fresh, false).unwrap();

    let mut cache = engine.new_cache(ids.len()).unwrap();
    engine.forward(&ids[..8], &mut cache, false).unwrap();
    // A rejected draft: 4 wrong tokens appended, then rolled back.
    engine.forward(&[1, 2, 3, 4], &mut cache, false).unwrap();
    cache.truncate(8).unwrap();
    let out = engine.forward(&ids[8..], &mut cache, false).unwrap();
    for j in 0..ids.len() - 8 {
        let d = max_diff(out.row(j), reference.row(8 + j));
        assert!(d <= SELF_TOL, "row {}: {d}", 8 + j);
    }
    // Rolling back to 0 and replaying reproduces the whole prefill.
    cache.truncate(0).unwrap();
    let again = engine.forward(ids, &mut cache, false).unwrap();
    assert!(max_diff(&again.logits, &reference.logits) <= SELF_TOL);
    assert!(cache.truncate(ids.len() + 1).is_err());
}

#[test]
fn cache_overflow_and_bad_tokens_are_errors() {
    let engine = load("qwen3-tiny");
    let mut cache = engine.new_cache(4).unwrap();
    let e = engine
        .forward(&[1, 2, 3, 4, 5], &mut cache, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("capacity is 4"), "{e}");
    assert_eq!(
        cache.len(),
        0,
        "a failed forward leaves the cache untouched"
    );
    let e = engine
        .forward(&[1, 320], &mut cache, false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("320") && e.contains("vocabulary"), "{e}");
    engine.forward(&[1, 2, 3], &mut cache, false).unwrap();
    assert!(engine.forward(&[1, 2], &mut cache, false).is_err());
}

#[test]
fn last_row_forward_equals_the_last_of_all_rows() {
    let exp = expected("llama-tiny");
    let engine = load("llama-tiny");
    let mut a = engine.new_cache(16).unwrap();
    let mut b = engine.new_cache(16).unwrap();
    let all = engine.forward(&exp.token_ids, &mut a, false).unwrap();
    let last = engine.forward_last(&exp.token_ids, &mut b).unwrap();
    assert_eq!(last.rows(), 1);
    assert!(max_diff(last.row(0), all.last_row()) <= SELF_TOL);
}

#[test]
fn threads_option_gives_the_same_logits() {
    let exp = expected("qwen3-tiny");
    let one = Engine::load(
        &fixture("qwen3-tiny"),
        &LoadOptions {
            threads: Some(1),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(one.threads(), Some(1));
    let mut cache = one.new_cache(16).unwrap();
    let out = one.forward(&exp.token_ids, &mut cache, false).unwrap();
    assert!(max_diff(out.row(0), &exp.logits[0]) <= TOL);
}

#[test]
fn half_precision_compute_stays_close_to_f32() {
    use specsweep_engine::DType;
    let exp = expected("qwen3-tiny");
    // Tolerances from the formats' epsilons (f16 2⁻¹¹, bf16 2⁻⁸) scaled by logits of magnitude ~10
    // through two layers; measured max |Δ|: see the assertion message.
    for (dtype, tol) in [(DType::F16, 0.05f32), (DType::BF16, 0.5)] {
        let engine = Engine::load(
            &fixture("qwen3-tiny"),
            &LoadOptions {
                dtype,
                ..Default::default()
            },
        )
        .unwrap();
        let mut cache = engine.new_cache(exp.token_ids.len()).unwrap();
        let out = engine.forward(&exp.token_ids, &mut cache, false).unwrap();
        let d = (0..exp.logits.len())
            .map(|i| max_diff(out.row(i), &exp.logits[i]))
            .fold(0.0, f32::max);
        assert!(d <= tol, "{dtype}: max |Δlogit| = {d} > {tol}");
        eprintln!("{dtype}: max |Δlogit| = {d}");
    }
}
