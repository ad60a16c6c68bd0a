//! Aggregation of a run into per-cell and per-(cell, category) statistics.
//!
//! polars does the relational work: a frame of one row per request is grouped by cell (and by
//! cell × category) for counts, medians, means, standard deviations, acceptance sums and the
//! member rows of each group; per-position acceptance is a group-by over a long frame of
//! (cell, position) rows; the speedup pairs come from an inner join of every speculative request
//! with its paired baseline request (`baseline_cell_id`, same prompt, same repetition). What
//! polars does not do is done in [`crate::stats`]: bootstrap CIs of the medians, the paired
//! bootstrap CI of the ratio of medians, inter-token-latency quantiles and Wilson intervals.

use std::collections::{BTreeMap, HashMap};

use polars::prelude::*;

use crate::error::{ReportError, Result};
use crate::load::Run;
use crate::schema::{CellConfig, RequestRecord};
use crate::stats::{self, Bootstrap, Estimate};

/// Location, spread and a bootstrap CI of the median of one metric.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Metric {
    pub median: f64,
    pub mean: f64,
    pub std_dev: f64,
    /// Bootstrap CI of the median.
    pub median_lo: f64,
    pub median_hi: f64,
}

/// Inter-token latency quantiles over every token of the group (ms).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// Speculation statistics of a group (absent for the no-speculation control).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Acceptance {
    pub rounds: u64,
    pub drafted: u64,
    pub accepted: u64,
    /// accepted / drafted with a Wilson 95 % interval.
    pub rate: Estimate,
    /// τ = 1 + accepted / rounds.
    pub mean_acceptance_length: f64,
    /// Entry i: Σ accepted at position i / Σ drafted at position i.
    pub per_position: Vec<f64>,
}

/// All statistics of one group: a cell, or a cell restricted to one prompt category.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GroupStats {
    pub cell_id: String,
    /// `None` for the all-categories row of a cell.
    pub category: Option<String>,
    pub config: CellConfig,
    pub baseline_cell_id: Option<String>,
    pub requests: u64,
    /// Failure records of the cell (cell-level rows only; 0 on category rows).
    pub failures: u64,
    pub decode_tok_per_s: Metric,
    pub prefill_tok_per_s: Metric,
    pub ttft_ms: Metric,
    pub itl_ms: Latency,
    pub acceptance: Option<Acceptance>,
    /// Ratio of median decode tok/s over the paired baseline, with a paired bootstrap CI.
    pub speedup: Option<Estimate>,
    /// Ratio of the paired baseline's median end-to-end request time over this cell's (prompt,
    /// drafting and decoding: what a user waits for), with a paired bootstrap CI — unlike
    /// `speedup` it cannot move by shifting work between the prompt phase and decoding. `None`
    /// without a baseline or when a record lacks its end-to-end time.
    pub e2e_speedup: Option<Estimate>,
    /// Requests compared with their paired baseline, and how many of them diverged.
    pub outputs_checked: u64,
    pub outputs_diverged: u64,
}

impl GroupStats {
    /// `Some(true)` when every checked output matched its baseline, `None` when none was checked.
    pub fn output_identical(&self) -> Option<bool> {
        (self.outputs_checked > 0).then_some(self.outputs_diverged == 0)
    }
}

/// The aggregated run.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Summary {
    pub sweep: String,
    /// One row per cell (including cells that only failed), sorted by configuration.
    pub cells: Vec<GroupStats>,
    /// One row per (cell, category), sorted by configuration then category.
    pub categories: Vec<GroupStats>,
    /// Greedy plain cells against the same configuration at the most precise `quant` and
    /// `kv_type` present (`crate::agreement`).
    pub agreement: Vec<crate::agreement::Agreement>,
}

fn pe(context: &'static str) -> impl Fn(PolarsError) -> ReportError {
    move |e| ReportError::polars(context, e)
}

/// One row per request, with `req` = index into `run.requests`.
fn requests_frame(requests: &[RequestRecord]) -> Result<DataFrame> {
    let n = requests.len();
    let mut req = Vec::with_capacity(n);
    let (mut cell, mut category, mut prompt) = (Vec::new(), Vec::new(), Vec::new());
    let (mut rep, mut base) = (Vec::new(), Vec::new());
    let (mut decode, mut prefill, mut ttft) = (Vec::new(), Vec::new(), Vec::new());
    let mut e2e = Vec::new();
    let (mut rounds, mut drafted, mut accepted) = (Vec::new(), Vec::new(), Vec::new());
    let mut identical = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        req.push(i as u64);
        cell.push(r.key.cell_id.as_str());
        category.push(r.category.as_str());
        prompt.push(r.prompt_id.as_str());
        rep.push(r.key.repetition);
        base.push(r.key.baseline_cell_id.as_deref());
        decode.push(r.decode_tok_per_s);
        prefill.push(r.prefill_tok_per_s);
        ttft.push(r.ttft_ms);
        e2e.push(r.e2e_ms);
        rounds.push(r.spec.as_ref().map(|s| s.rounds));
        drafted.push(r.spec.as_ref().map(|s| s.drafted));
        accepted.push(r.spec.as_ref().map(|s| s.accepted));
        identical.push(r.output_identical);
    }
    DataFrame::new_infer_height(vec![
        Column::new("req".into(), req),
        Column::new("cell_id".into(), cell),
        Column::new("category".into(), category),
        Column::new("prompt_id".into(), prompt),
        Column::new("repetition".into(), rep),
        Column::new("baseline_cell_id".into(), base),
        Column::new("decode".into(), decode),
        Column::new("prefill".into(), prefill),
        Column::new("ttft".into(), ttft),
        Column::new("e2e".into(), e2e),
        Column::new("rounds".into(), rounds),
        Column::new("drafted".into(), drafted),
        Column::new("accepted".into(), accepted),
        Column::new("identical".into(), identical),
    ])
    .map_err(pe("building the request frame"))
}

/// Long frame: one row per (request, draft position) of speculative requests.
fn positions_frame(requests: &[RequestRecord]) -> Result<DataFrame> {
    let (mut cell, mut category, mut pos) = (Vec::new(), Vec::new(), Vec::new());
    let (mut acc, mut dra) = (Vec::new(), Vec::new());
    for r in requests {
        let Some(spec) = &r.spec else { continue };
        for (i, &d) in spec.drafted_per_position.iter().enumerate() {
            cell.push(r.key.cell_id.as_str());
            category.push(r.category.as_str());
            pos.push(i as u32);
            dra.push(d);
            acc.push(spec.accepted_per_position.get(i).copied().unwrap_or(0));
        }
    }
    DataFrame::new_infer_height(vec![
        Column::new("cell_id".into(), cell),
        Column::new("category".into(), category),
        Column::new("position".into(), pos),
        Column::new("accepted".into(), acc),
        Column::new("drafted".into(), dra),
    ])
    .map_err(pe("building the per-position frame"))
}

fn strings(df: &DataFrame, name: &str) -> Result<Vec<String>> {
    let ca = df
        .column(name)
        .and_then(|c| c.str())
        .map_err(pe("reading a string column"))?;
    Ok(ca
        .iter()
        .map(|s| s.unwrap_or_default().to_string())
        .collect())
}

fn counts(df: &DataFrame, name: &str) -> Result<Vec<u64>> {
    let col = df
        .column(name)
        .and_then(|c| c.cast(&DataType::UInt64))
        .map_err(pe("reading a count column"))?;
    let ca = col.u64().map_err(pe("reading a count column"))?;
    Ok(ca.iter().map(|x| x.unwrap_or(0)).collect())
}

/// A list column of numbers as one `Vec<f64>` per row.
fn float_lists(df: &DataFrame, name: &str) -> Result<Vec<Vec<f64>>> {
    let ca = df
        .column(name)
        .and_then(|c| c.list())
        .map_err(pe("reading a list column"))?;
    ca.series_iter()
        .map(|s| match s {
            None => Ok(Vec::new()),
            Some(s) => {
                let s = s
                    .cast(&DataType::Float64)
                    .map_err(pe("reading a list column"))?;
                let f = s.f64().map_err(pe("reading a list column"))?;
                Ok(f.iter().map(|x| x.unwrap_or(f64::NAN)).collect())
            }
        })
        .collect()
}

/// Group key of a row: the cell and, at the category level, the category.
type Key = (String, Option<String>);

fn keys(df: &DataFrame, by_category: bool) -> Result<Vec<Key>> {
    let cells = strings(df, "cell_id")?;
    if by_category {
        let cats = strings(df, "category")?;
        Ok(cells.into_iter().zip(cats.into_iter().map(Some)).collect())
    } else {
        Ok(cells.into_iter().map(|c| (c, None)).collect())
    }
}

fn metric(xs: &[f64], cfg: &Bootstrap) -> Metric {
    let ci = stats::median_ci(xs, cfg);
    Metric {
        median: ci.point,
        mean: stats::mean(xs),
        std_dev: stats::std_dev(xs),
        median_lo: ci.lo,
        median_hi: ci.hi,
    }
}

/// Aggregate at one level: per cell (`by_category == false`) or per cell × category.
fn aggregate_level(
    run: &Run,
    requests: &DataFrame,
    positions: &DataFrame,
    by_category: bool,
    cfg: &Bootstrap,
) -> Result<Vec<GroupStats>> {
    let group: Vec<Expr> = if by_category {
        vec![col("cell_id"), col("category")]
    } else {
        vec![col("cell_id")]
    };
    let grouped = requests
        .clone()
        .lazy()
        .group_by(group.clone())
        .agg([
            col("req").implode(true).alias("members"),
            col("rounds").sum(),
            col("drafted").sum(),
            col("accepted").sum(),
            col("drafted").count().alias("spec_requests"),
            col("identical").count().alias("checked"),
            col("identical").eq(lit(false)).sum().alias("diverged"),
        ])
        .collect()
        .map_err(pe("grouping requests"))?;

    // Paired speedup: each speculative request joined with its baseline request.
    let base = requests.clone().lazy().select([
        col("cell_id").alias("b_cell"),
        col("prompt_id"),
        col("repetition"),
        col("decode").alias("b_decode"),
        col("e2e").alias("b_e2e"),
    ]);
    let pairs = requests
        .clone()
        .lazy()
        .filter(col("baseline_cell_id").is_not_null())
        .join(
            base,
            [col("baseline_cell_id"), col("prompt_id"), col("repetition")],
            [col("b_cell"), col("prompt_id"), col("repetition")],
            JoinArgs::new(JoinType::Inner),
        )
        .group_by(group.clone())
        .agg([
            col("decode").implode(true).alias("spec"),
            col("b_decode").implode(true).alias("base"),
            col("e2e").implode(true).alias("spec_e2e"),
            col("b_e2e").implode(true).alias("base_e2e"),
        ])
        .collect()
        .map_err(pe("pairing speculative requests with their baselines"))?;
    // (decode speedup, end-to-end speedup); the latter only where every pair has both times
    let mut speedups: HashMap<Key, (Estimate, Option<Estimate>)> = HashMap::new();
    for ((((key, spec), base), spec_e2e), base_e2e) in keys(&pairs, by_category)?
        .into_iter()
        .zip(float_lists(&pairs, "spec")?)
        .zip(float_lists(&pairs, "base")?)
        .zip(float_lists(&pairs, "spec_e2e")?)
        .zip(float_lists(&pairs, "base_e2e")?)
    {
        let timed = spec_e2e.iter().chain(&base_e2e).all(|&t| t > 0.0);
        let e2e = timed.then(|| stats::paired_ratio_of_medians(&base_e2e, &spec_e2e, cfg));
        speedups.insert(
            key,
            (stats::paired_ratio_of_medians(&spec, &base, cfg), e2e),
        );
    }

    // Per-position acceptance.
    let pos = positions
        .clone()
        .lazy()
        .group_by(group)
        .agg([
            col("position").implode(true),
            col("accepted").implode(true),
            col("drafted").implode(true),
        ])
        .collect()
        .map_err(pe("grouping per-position acceptance"))?;
    let mut per_position: HashMap<Key, Vec<f64>> = HashMap::new();
    for (((key, p), a), d) in keys(&pos, by_category)?
        .into_iter()
        .zip(float_lists(&pos, "position")?)
        .zip(float_lists(&pos, "accepted")?)
        .zip(float_lists(&pos, "drafted")?)
    {
        let len = p.iter().fold(0usize, |m, &x| m.max(x as usize + 1));
        let (mut acc, mut dra) = (vec![0.0; len], vec![0.0; len]);
        for ((&p, &a), &d) in p.iter().zip(&a).zip(&d) {
            acc[p as usize] += a;
            dra[p as usize] += d;
        }
        let rates = acc.iter().zip(&dra).map(|(a, d)| a / d).collect();
        per_position.insert(key, rates);
    }

    let members = float_lists(&grouped, "members")?;
    let rounds = counts(&grouped, "rounds")?;
    let drafted = counts(&grouped, "drafted")?;
    let accepted = counts(&grouped, "accepted")?;
    let spec_requests = counts(&grouped, "spec_requests")?;
    let checked = counts(&grouped, "checked")?;
    let diverged = counts(&grouped, "diverged")?;
    let mut out = Vec::new();
    for (i, key) in keys(&grouped, by_category)?.into_iter().enumerate() {
        let rows: Vec<&RequestRecord> = members[i]
            .iter()
            .map(|&m| &run.requests[m as usize])
            .collect();
        let pick = |f: fn(&RequestRecord) -> f64| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
        let itl: Vec<f64> = rows.iter().flat_map(|r| r.itl_ms.iter().copied()).collect();
        let first = rows[0];
        let acceptance = (spec_requests[i] > 0).then(|| Acceptance {
            rounds: rounds[i],
            drafted: drafted[i],
            accepted: accepted[i],
            rate: stats::wilson(accepted[i], drafted[i], 0.95),
            mean_acceptance_length: if rounds[i] == 0 {
                1.0
            } else {
                1.0 + accepted[i] as f64 / rounds[i] as f64
            },
            per_position: per_position.get(&key).cloned().unwrap_or_default(),
        });
        out.push(GroupStats {
            config: first.key.cell.clone(),
            baseline_cell_id: first.key.baseline_cell_id.clone(),
            requests: rows.len() as u64,
            failures: 0,
            decode_tok_per_s: metric(&pick(|r| r.decode_tok_per_s), cfg),
            prefill_tok_per_s: metric(&pick(|r| r.prefill_tok_per_s), cfg),
            ttft_ms: metric(&pick(|r| r.ttft_ms), cfg),
            itl_ms: Latency {
                p50: stats::quantile(&itl, 0.5),
                p90: stats::quantile(&itl, 0.9),
                p99: stats::quantile(&itl, 0.99),
                max: stats::max(&itl),
            },
            acceptance,
            speedup: speedups.get(&key).map(|s| s.0),
            e2e_speedup: speedups.get(&key).and_then(|s| s.1),
            outputs_checked: checked[i],
            outputs_diverged: diverged[i],
            cell_id: key.0,
            category: key.1,
        });
    }
    Ok(out)
}

/// Total order on configurations: by their values key by key (numbers numerically).
pub fn config_order(a: &CellConfig, b: &CellConfig) -> std::cmp::Ordering {
    use serde_json::Value;
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    for k in keys {
        let ord = match (a.get(k), b.get(k)) {
            (None, None) => std::cmp::Ordering::Equal,
            (None, Some(_)) => std::cmp::Ordering::Less,
            (Some(_), None) => std::cmp::Ordering::Greater,
            (Some(Value::Number(x)), Some(Value::Number(y))) => {
                let (x, y) = (x.as_f64().unwrap_or(0.0), y.as_f64().unwrap_or(0.0));
                x.total_cmp(&y)
            }
            (Some(x), Some(y)) => x.to_string().cmp(&y.to_string()),
        };
        if ord != std::cmp::Ordering::Equal {
            return ord;
        }
    }
    std::cmp::Ordering::Equal
}

fn empty_group(cell_id: &str, config: &CellConfig, base: Option<String>) -> GroupStats {
    let nan = Metric {
        median: f64::NAN,
        mean: f64::NAN,
        std_dev: f64::NAN,
        median_lo: f64::NAN,
        median_hi: f64::NAN,
    };
    GroupStats {
        cell_id: cell_id.to_string(),
        category: None,
        config: config.clone(),
        baseline_cell_id: base,
        requests: 0,
        failures: 0,
        decode_tok_per_s: nan,
        prefill_tok_per_s: nan,
        ttft_ms: nan,
        itl_ms: Latency {
            p50: f64::NAN,
            p90: f64::NAN,
            p99: f64::NAN,
            max: f64::NAN,
        },
        acceptance: None,
        speedup: None,
        e2e_speedup: None,
        outputs_checked: 0,
        outputs_diverged: 0,
    }
}

/// Aggregate a run at the cell and the cell × category level.
pub fn aggregate(run: &Run, cfg: &Bootstrap) -> Result<Summary> {
    let requests = requests_frame(&run.requests)?;
    let positions = positions_frame(&run.requests)?;
    let mut cells = aggregate_level(run, &requests, &positions, false, cfg)?;
    let mut categories = aggregate_level(run, &requests, &positions, true, cfg)?;

    let mut failures: BTreeMap<&str, u64> = BTreeMap::new();
    for f in &run.failures {
        *failures.entry(f.key.cell_id.as_str()).or_default() += 1;
    }
    for cell in &mut cells {
        cell.failures = failures.remove(cell.cell_id.as_str()).unwrap_or(0);
    }
    // Cells that produced no request at all still get a row.
    for (id, n) in failures {
        if let Some(f) = run.failures.iter().find(|f| f.key.cell_id == id) {
            let mut row = empty_group(id, &f.key.cell, f.key.baseline_cell_id.clone());
            row.failures = n;
            cells.push(row);
        }
    }
    // Controls (no paired baseline) first, then by configuration.
    let order = |a: &GroupStats, b: &GroupStats| {
        (a.baseline_cell_id
            .is_some()
            .cmp(&b.baseline_cell_id.is_some()))
        .then_with(|| config_order(&a.config, &b.config))
        .then_with(|| a.cell_id.cmp(&b.cell_id))
        .then_with(|| a.category.cmp(&b.category))
    };
    cells.sort_by(order);
    categories.sort_by(order);
    let mut agreement = crate::agreement::precision_agreement(run);
    agreement.sort_by(|a, b| config_order(&a.config, &b.config));
    Ok(Summary {
        sweep: run.manifest.sweep.clone(),
        cells,
        categories,
        agreement,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{FailureCause, FailureRecord, Manifest, RecordKey, SpecStats};
    use serde_json::json;

    fn key(cell: &str, base: Option<&str>, rep: u32) -> RecordKey {
        let mut config = CellConfig::new();
        config.insert(
            "spec".into(),
            json!(if base.is_some() {
                "ngram-cache"
            } else {
                "none"
            }),
        );
        RecordKey {
            schema_version: 1,
            sweep: "t".into(),
            cell_id: cell.into(),
            cell: config,
            baseline_cell_id: base.map(str::to_string),
            repetition: rep,
        }
    }

    fn request(
        key: RecordKey,
        prompt: &str,
        decode: f64,
        spec: Option<SpecStats>,
    ) -> RequestRecord {
        RequestRecord {
            key,
            prompt_id: prompt.into(),
            category: if prompt.starts_with("code") {
                "code"
            } else {
                "chat"
            }
            .into(),
            suite: "s".into(),
            suite_sha256: String::new(),
            prompt_tokens: 10,
            output_tokens: 4,
            prefill_tok_per_s: 100.0,
            decode_tok_per_s: decode,
            ttft_ms: 100.0,
            itl_ms: vec![decode, decode * 2.0],
            e2e_ms: 100.0 + 4000.0 / decode,
            output_token_ids: vec![1, 2, 3, 4],
            output_identical: spec.as_ref().map(|_| prompt != "chat-1"),
            first_divergence: None,
            spec,
            experts: None,
            peak_rss_bytes: 0,
        }
    }

    fn spec(accepted: Vec<u64>, drafted: Vec<u64>, rounds: u64) -> SpecStats {
        SpecStats {
            mode: "ngram-cache".into(),
            rounds,
            drafted: drafted.iter().sum(),
            accepted: accepted.iter().sum(),
            accepted_per_position: accepted,
            drafted_per_position: drafted,
            ..SpecStats::default()
        }
    }

    fn run() -> Run {
        let requests = vec![
            request(key("base", None, 0), "code-1", 10.0, None),
            request(key("base", None, 0), "chat-1", 20.0, None),
            request(key("base", None, 0), "chat-2", 30.0, None),
            request(
                key("spec", Some("base"), 0),
                "code-1",
                30.0,
                Some(spec(vec![3, 1], vec![4, 2], 4)),
            ),
            request(
                key("spec", Some("base"), 0),
                "chat-1",
                30.0,
                Some(spec(vec![1, 0], vec![4, 4], 4)),
            ),
            request(
                key("spec", Some("base"), 0),
                "chat-2",
                60.0,
                Some(spec(vec![2, 1], vec![2, 2], 2)),
            ),
        ];
        let failures = vec![FailureRecord {
            key: key("broken", Some("base"), 0),
            cause: FailureCause::Crash,
            message: "signal 11".into(),
        }];
        Run {
            dir: "t".into(),
            manifest: Manifest {
                sweep: "t".into(),
                ..Manifest::default()
            },
            requests,
            failures,
        }
    }

    #[test]
    fn cell_statistics_match_hand_computation() {
        let cfg = Bootstrap {
            resamples: 200,
            ..Bootstrap::default()
        };
        let s = aggregate(&run(), &cfg).expect("aggregate");
        // Sorted by configuration: spec "none" < "ngram-cache"; the failure-only cell has a row.
        let ids: Vec<&str> = s.cells.iter().map(|g| g.cell_id.as_str()).collect();
        assert_eq!(ids, ["base", "broken", "spec"]);
        let base = &s.cells[0];
        assert_eq!(base.requests, 3);
        assert_eq!(base.decode_tok_per_s.median, 20.0);
        assert_eq!(base.decode_tok_per_s.mean, 20.0);
        assert!((base.decode_tok_per_s.std_dev - 10.0).abs() < 1e-12);
        assert!(base.acceptance.is_none() && base.speedup.is_none());
        // ITL pooled over requests: [10, 20, 20, 40, 30, 60] → statrs quantiles.
        let itl = [10.0, 20.0, 20.0, 40.0, 30.0, 60.0];
        assert_eq!(base.itl_ms.p90, stats::quantile(&itl, 0.9));
        assert_eq!(base.itl_ms.max, 60.0);
        assert_eq!((s.cells[1].requests, s.cells[1].failures), (0, 1));

        let spec = &s.cells[2];
        // Speedup: median(30, 30, 60) / median(10, 20, 30) = 30 / 20.
        assert_eq!(spec.speedup.map(|e| e.point), Some(1.5));
        // End to end: median(500, 300, 233.3) / median(233.3, 233.3, 166.7) = 300 / 233.3.
        let e2e = spec.e2e_speedup.expect("e2e speedup").point;
        assert!(
            (e2e - 300.0 / (100.0 + 4000.0 / 30.0)).abs() < 1e-12,
            "{e2e}"
        );
        assert!(base.e2e_speedup.is_none());
        let acc = spec.acceptance.as_ref().expect("acceptance");
        assert_eq!((acc.accepted, acc.drafted, acc.rounds), (8, 18, 10));
        assert_eq!(acc.rate, stats::wilson(8, 18, 0.95));
        assert!((acc.mean_acceptance_length - 1.8).abs() < 1e-12);
        // Position 1: (3 + 1 + 2) / (4 + 4 + 2); position 2: (1 + 0 + 1) / (2 + 4 + 2).
        assert_eq!(acc.per_position, vec![0.6, 0.25]);
        assert_eq!((spec.outputs_checked, spec.outputs_diverged), (3, 1));
        assert_eq!(spec.output_identical(), Some(false));

        // By category: chat pairs (30/20, 60/30) → medians 45 / 25.
        let chat = s
            .categories
            .iter()
            .find(|g| g.cell_id == "spec" && g.category.as_deref() == Some("chat"))
            .expect("chat row");
        assert_eq!(chat.speedup.map(|e| e.point), Some(45.0 / 25.0));
        assert_eq!(chat.requests, 2);
        assert_eq!(
            chat.acceptance.as_ref().map(|a| a.per_position.clone()),
            Some(vec![0.5, 1.0 / 6.0])
        );
    }
}
