//! Output agreement across precision settings: is the text still the same?
//!
//! The `identical` column pairs a speculative cell with its plain cell of the same configuration,
//! so it proves the speculation lossless but says nothing about quantized weights or a smaller
//! KV cache changing the text itself (on Qwen2.5-Coder-1.5B 4- and 5-bit keys break greedy output,
//! in llama.cpp too, while 4-bit values keep it). Here every greedy plain cell that is not at the most precise
//! `quant` and `kv_type` present in its group — the cells whose configurations differ only in
//! those two keys — is paired, request by request (same prompt, same repetition), with the
//! group's *reference*: its most precise cell (`quant` ranked f32, f32-kernel, f16, f16-kernel,
//! bf16, bf16-kernel, q8_0, native, q5_1, q5_0, iq4_nl, q4_1, iq4_xs, q4_0, then anything else;
//! `kv_type` f32,
//! f16, q8_0, q5_1, q5_0, iq4_nl, q4_1, q4_0, an absent one being f32, a `K/V` pair by the sum of its
//! halves' places; `quant` compared first). Per
//! cell: how many outputs are identical to the reference's, and how many tokens the two share
//! before they part.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::load::Run;
use crate::schema::{CellConfig, RequestRecord};
use crate::stats;

/// The precision axes, each with its values from the most precise down and the value an absent
/// key stands for (`None`: ranked after every listed value).
const AXES: [(&str, &[&str], Option<&str>); 2] = [
    (
        "quant",
        &[
            "f32",
            "f32-kernel",
            "f16",
            "f16-kernel",
            "bf16",
            "bf16-kernel",
            "q8_0",
            "native",
            "q5_1",
            "q5_0",
            "iq4_nl",
            "q4_1",
            "iq4_xs",
            "q4_0",
        ],
        None,
    ),
    (
        "kv_type",
        &[
            "f32", "f16", "q8_0", "q5_1", "q5_0", "iq4_nl", "q4_1", "q4_0",
        ],
        Some("f32"),
    ),
];

/// One cell's agreement with its reference cell.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Agreement {
    pub cell_id: String,
    pub config: CellConfig,
    /// The reference's precision settings that differ from this cell's (`kv_type=f16`).
    pub reference: String,
    /// Requests paired with a reference request.
    pub pairs: u64,
    /// Pairs whose output tokens are identical.
    pub identical: u64,
    /// Median and minimum, over the pairs, of the tokens the two outputs share from the start.
    pub common_prefix_median: f64,
    pub common_prefix_min: u64,
    /// Median output length of the reference's requests (what a full agreement would reach).
    pub reference_tokens_median: f64,
    /// Median output length of this cell's paired requests: a text that parts at token 0 may be
    /// another fluent answer or one that stops after a few tokens.
    pub tokens_median: f64,
}

/// A precision axis's value in `config` (its stand-in when absent).
fn value<'a>(config: &'a CellConfig, axis: &str, absent: Option<&'a str>) -> Option<&'a str> {
    config.get(axis).and_then(Value::as_str).or(absent)
}

/// The cell's rank on each precision axis (lower is more precise): a value's position in its
/// order, counted for K and V alike; a `K/V` pair of cache types ranks as the sum of its halves'
/// positions (`q8_0/q4_0` between `q8_0` and `q4_0`).
fn ranks(config: &CellConfig) -> [usize; 2] {
    AXES.map(|(axis, order, absent)| {
        let position = |v: &str| {
            order
                .iter()
                .position(|p| p.eq_ignore_ascii_case(v))
                .unwrap_or(order.len())
        };
        match value(config, axis, absent) {
            None => 2 * order.len(),
            Some(v) => match v.split_once('/') {
                Some((k, v)) => position(k) + position(v),
                None => 2 * position(v),
            },
        }
    })
}

/// `axis=value` for each precision axis on which `reference` differs from `config`.
fn differing(reference: &CellConfig, config: &CellConfig) -> String {
    AXES.iter()
        .filter_map(|&(axis, _, absent)| {
            let r = value(reference, axis, absent);
            (r != value(config, axis, absent)).then(|| format!("{axis}={}", r.unwrap_or("-")))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Greedy and without speculation (whose outputs equal the plain cell's, checked elsewhere).
fn is_plain_greedy(config: &CellConfig) -> bool {
    let plain = matches!(
        config.get("spec").and_then(Value::as_str),
        None | Some("none")
    );
    let greedy = config
        .get("temperature")
        .and_then(Value::as_f64)
        .is_none_or(|t| t == 0.0);
    plain && greedy
}

/// The configuration without its precision axes: cells equal here differ only in those.
fn group(config: &CellConfig) -> String {
    let mut c = config.clone();
    for (axis, _, _) in AXES {
        c.remove(axis);
    }
    serde_json::to_string(&c).unwrap_or_default()
}

fn common_prefix(a: &[u32], b: &[u32]) -> u64 {
    a.iter().zip(b).take_while(|(x, y)| x == y).count() as u64
}

/// Every greedy plain cell with a more precise sibling, against its group's most precise cell,
/// in the order of `run.requests`' first appearance of each cell.
pub fn precision_agreement(run: &Run) -> Vec<Agreement> {
    // cell id → (config, requests by (prompt, repetition)), in first-appearance order
    let mut cells: Vec<(&str, &CellConfig)> = Vec::new();
    let mut requests: BTreeMap<&str, BTreeMap<(&str, u32), &RequestRecord>> = BTreeMap::new();
    for r in &run.requests {
        let config = &r.key.cell;
        if !is_plain_greedy(config) {
            continue;
        }
        let id = r.key.cell_id.as_str();
        if !requests.contains_key(id) {
            cells.push((id, config));
        }
        requests
            .entry(id)
            .or_default()
            .insert((r.prompt_id.as_str(), r.key.repetition), r);
    }
    // per group: the most precise cell present (`quant` first, then `kv_type`)
    let mut reference: BTreeMap<String, (&str, &CellConfig)> = BTreeMap::new();
    for &(id, config) in &cells {
        let slot = reference.entry(group(config)).or_insert((id, config));
        if ranks(config) < ranks(slot.1) {
            *slot = (id, config);
        }
    }
    let mut out = Vec::new();
    for &(id, config) in &cells {
        let Some(&(ref_id, ref_config)) = reference.get(&group(config)) else {
            continue;
        };
        if ref_id == id || ranks(config) == ranks(ref_config) {
            continue;
        }
        let (mine, theirs) = (&requests[id], &requests[ref_id]);
        let mut prefixes = Vec::new();
        let mut lengths = Vec::new();
        let mut own = Vec::new();
        let mut identical = 0;
        for (key, r) in mine {
            let Some(base) = theirs.get(key) else {
                continue;
            };
            let shared = common_prefix(&r.output_token_ids, &base.output_token_ids);
            if r.output_token_ids == base.output_token_ids {
                identical += 1;
            }
            prefixes.push(shared as f64);
            lengths.push(base.output_token_ids.len() as f64);
            own.push(r.output_token_ids.len() as f64);
        }
        if prefixes.is_empty() {
            continue;
        }
        out.push(Agreement {
            cell_id: id.to_string(),
            config: config.clone(),
            reference: differing(ref_config, config),
            pairs: prefixes.len() as u64,
            identical,
            common_prefix_median: stats::median(&prefixes),
            common_prefix_min: prefixes.iter().fold(f64::INFINITY, |m, &p| m.min(p)) as u64,
            reference_tokens_median: stats::median(&lengths),
            tokens_median: stats::median(&own),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Manifest, RecordKey};
    use serde_json::json;

    fn request(kv: Option<&str>, spec: &str, prompt: &str, rep: u32, out: &[u32]) -> RequestRecord {
        with_quant(None, kv, spec, prompt, rep, out)
    }

    fn with_quant(
        quant: Option<&str>,
        kv: Option<&str>,
        spec: &str,
        prompt: &str,
        rep: u32,
        out: &[u32],
    ) -> RequestRecord {
        let mut cell = CellConfig::new();
        cell.insert("model".into(), json!("m"));
        cell.insert("spec".into(), json!(spec));
        cell.insert("temperature".into(), json!(0.0));
        if let Some(kv) = kv {
            cell.insert("kv_type".into(), json!(kv));
        }
        if let Some(q) = quant {
            cell.insert("quant".into(), json!(q));
        }
        RequestRecord {
            key: RecordKey {
                schema_version: 1,
                sweep: "t".into(),
                cell_id: format!("{}-{}-{spec}", quant.unwrap_or("-"), kv.unwrap_or("none")),
                cell,
                repetition: rep,
                baseline_cell_id: None,
            },
            prompt_id: prompt.into(),
            category: "c".into(),
            suite: "s".into(),
            suite_sha256: String::new(),
            prompt_tokens: 3,
            output_tokens: out.len() as u64,
            prefill_tok_per_s: 1.0,
            decode_tok_per_s: 1.0,
            ttft_ms: 1.0,
            itl_ms: vec![],
            e2e_ms: 1.0,
            output_token_ids: out.to_vec(),
            output_identical: None,
            first_divergence: None,
            spec: None,
            experts: None,
            peak_rss_bytes: 0,
        }
    }

    fn run(requests: Vec<RequestRecord>) -> Run {
        Run {
            dir: "t".into(),
            manifest: Manifest::default(),
            requests,
            failures: vec![],
        }
    }

    #[test]
    fn cells_are_compared_with_the_most_precise_cache_type_present() {
        let base = [1, 2, 3, 4, 5, 6];
        let got = precision_agreement(&run(vec![
            request(Some("q8_0"), "none", "a", 0, &base),
            request(Some("q8_0"), "none", "b", 0, &[7, 8, 9]),
            request(Some("f16"), "none", "a", 0, &base),
            request(Some("f16"), "none", "b", 0, &[7, 8, 9, 10]),
            request(Some("q4_0"), "none", "a", 0, &[1, 2, 9, 9, 9, 9]),
            request(Some("q4_0"), "none", "b", 0, &[3]),
            // no reference request for this one: not paired
            request(Some("q4_0"), "none", "c", 0, &[3]),
            // speculative cells are the plain cells' business
            request(Some("q4_0"), "ngram-simple", "a", 0, &[1]),
        ]));
        let by: BTreeMap<&str, &Agreement> = got.iter().map(|a| (a.cell_id.as_str(), a)).collect();
        assert_eq!(by.len(), 2, "{got:?}");
        let q8 = by["--q8_0-none"];
        assert_eq!(
            (q8.reference.as_str(), q8.pairs, q8.identical),
            ("kv_type=f16", 2, 1)
        );
        // prefixes 6 and 3 → median 4.5, min 3; reference lengths 6 and 4
        assert_eq!((q8.common_prefix_median, q8.common_prefix_min), (4.5, 3));
        assert_eq!(q8.reference_tokens_median, 5.0);
        assert_eq!(q8.tokens_median, 4.5);
        let q4 = by["--q4_0-none"];
        assert_eq!((q4.pairs, q4.identical, q4.common_prefix_min), (2, 0, 0));
        assert_eq!(q4.common_prefix_median, 1.0);
        assert_eq!(q4.tokens_median, 3.5);
    }

    /// A `K/V` pair ranks between its halves: `f16` is the reference of `q8_0/q4_0`, and
    /// `q8_0/q4_0` that of `q4_0` when no uniform type above it is there.
    #[test]
    fn kv_pairs_rank_between_their_halves() {
        let got = precision_agreement(&run(vec![
            request(Some("q8_0/q4_0"), "none", "a", 0, &[1, 2, 3]),
            request(Some("f16"), "none", "a", 0, &[1, 2, 4]),
            request(Some("q4_0"), "none", "a", 0, &[1, 9, 9]),
        ]));
        let refs: Vec<(&str, &str)> = got
            .iter()
            .map(|a| (a.cell_id.as_str(), a.reference.as_str()))
            .collect();
        assert_eq!(
            refs,
            [
                ("--q8_0/q4_0-none", "kv_type=f16"),
                ("--q4_0-none", "kv_type=f16")
            ]
        );
        assert_eq!(got[0].common_prefix_median, 2.0);
        let got = precision_agreement(&run(vec![
            request(Some("q4_0"), "none", "a", 0, &[1, 9, 9]),
            request(Some("q4_0/q8_0"), "none", "a", 0, &[1, 2, 3]),
        ]));
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].cell_id.as_str(), got[0].reference.as_str()),
            ("--q4_0-none", "kv_type=q4_0/q8_0")
        );
        // q4_0 counts its place (7) for K and V alike: 14, against the pair's 7 + 2
        assert_eq!(ranks(&got[0].config)[1], 14);
    }

    #[test]
    fn an_absent_kv_type_is_the_f32_reference_and_lone_types_give_nothing() {
        let got = precision_agreement(&run(vec![
            request(None, "none", "a", 0, &[1, 2]),
            request(Some("f16"), "none", "a", 0, &[1, 2]),
        ]));
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].reference.as_str(), got[0].identical),
            ("kv_type=f32", 1)
        );
        let lone = run(vec![request(Some("q4_0"), "none", "a", 0, &[1])]);
        assert!(precision_agreement(&lone).is_empty());
    }

    /// The summary carries the agreement rows, and the export puts them on the cell's row.
    #[test]
    fn the_summary_and_its_export_carry_the_agreement() {
        let r = run(vec![
            request(Some("f16"), "none", "a", 0, &[1, 2, 3]),
            request(Some("q8_0"), "none", "a", 0, &[1, 2, 4]),
        ]);
        let cfg = crate::stats::Bootstrap {
            resamples: 50,
            ..Default::default()
        };
        let summary = crate::aggregate::aggregate(&r, &cfg).expect("aggregate");
        assert_eq!(summary.agreement.len(), 1);
        let frame = crate::export::summary_frame(&summary).expect("frame");
        let ids = frame
            .column("cell_id")
            .expect("cell_id")
            .str()
            .expect("str");
        let category = frame
            .column("category")
            .expect("category")
            .str()
            .expect("str");
        let prefix = frame
            .column("agreement_common_prefix_median")
            .expect("column")
            .f64()
            .expect("f64");
        for i in 0..frame.height() {
            let cell_row = category.get(i).is_none();
            let want = (ids.get(i) == Some("--q8_0-none") && cell_row).then_some(2.0);
            assert_eq!(prefix.get(i), want, "row {i}");
        }
    }

    /// Weights and cache together: the reference is the most precise `quant`, then `kv_type`.
    #[test]
    fn quant_is_an_axis_too_and_ranks_before_the_cache_type() {
        let got = precision_agreement(&run(vec![
            with_quant(Some("native"), Some("f16"), "none", "a", 0, &[1, 2, 3]),
            with_quant(Some("f32"), Some("f16"), "none", "a", 0, &[1, 2, 4]),
            with_quant(Some("f32"), Some("q8_0"), "none", "a", 0, &[1, 2, 4]),
            with_quant(Some("q4_0"), Some("q8_0"), "none", "a", 0, &[5]),
        ]));
        let by: BTreeMap<&str, &Agreement> = got.iter().map(|a| (a.cell_id.as_str(), a)).collect();
        assert_eq!(by.len(), 3, "{got:?}");
        let native = by["native-f16-none"];
        assert_eq!(
            (native.reference.as_str(), native.common_prefix_min),
            ("quant=f32", 2)
        );
        let q8 = by["f32-q8_0-none"];
        assert_eq!((q8.reference.as_str(), q8.identical), ("kv_type=f16", 1));
        let q4 = by["q4_0-q8_0-none"];
        assert_eq!(q4.reference, "quant=f32 kv_type=f16");
    }
}
