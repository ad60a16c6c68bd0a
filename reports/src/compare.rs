//! Cell-by-cell comparison of two runs, with criterion's decision rule.
//!
//! For every cell present in both runs, and for each metric (median decode tok/s; for speculative
//! cells also the median of the per-request speedup ratios over the paired baseline), the relative
//! change `median(B) / median(A) − 1` gets a bootstrap CI: the runs are resampled as pairs of the
//! same prompt and repetition when both cover the same ones (same suite and repetitions), and
//! independently otherwise ([`stats::relative_change_of_medians`]).
//! As in criterion's `compare_to_threshold`, a change counts only if its CI excludes zero *and*
//! the point estimate lies beyond ± the noise threshold; higher is better for both metrics.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::aggregate::config_order;
use crate::load::Run;
use crate::schema::{CellConfig, RequestRecord};
use crate::stats::{self, Bootstrap, Estimate};
use crate::table::{Table, config_columns, header_line, num, show_value};

/// The verdict of one comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Verdict {
    Improved,
    Regressed,
    NoChange,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Improved => "Improved",
            Verdict::Regressed => "Regressed",
            Verdict::NoChange => "No change",
        })
    }
}

/// criterion's rule for a higher-is-better metric: the CI of the relative change must exclude 0
/// and the point estimate must exceed the noise threshold (a fraction, 0.05 = 5 %).
pub fn verdict(change: &Estimate, noise: f64) -> Verdict {
    if change.lo > 0.0 && change.point > noise {
        Verdict::Improved
    } else if change.hi < 0.0 && change.point < -noise {
        Verdict::Regressed
    } else {
        Verdict::NoChange
    }
}

/// One metric of one cell in both runs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MetricComparison {
    pub cell_id: String,
    /// True for a no-speculation control (a cell without a paired baseline).
    pub control: bool,
    pub config: CellConfig,
    /// `decode tok/s` or `speedup`.
    pub metric: String,
    pub a_median: f64,
    pub b_median: f64,
    pub change: Estimate,
    pub verdict: Verdict,
}

/// The comparison of two runs.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Comparison {
    pub rows: Vec<MetricComparison>,
    /// Cells with requests in only one of the runs.
    pub only_a: Vec<String>,
    pub only_b: Vec<String>,
    pub noise: f64,
}

/// Samples of one cell keyed by (prompt id, repetition).
pub type Samples = BTreeMap<(String, u32), f64>;

/// Per-request speedup ratios of every speculative cell: decode tok/s over that of the paired
/// baseline request (same baseline cell, prompt and repetition).
pub fn paired_ratios(requests: &[RequestRecord]) -> HashMap<String, Samples> {
    let by_key: HashMap<(&str, &str, u32), f64> = requests
        .iter()
        .map(|r| {
            (
                (
                    r.key.cell_id.as_str(),
                    r.prompt_id.as_str(),
                    r.key.repetition,
                ),
                r.decode_tok_per_s,
            )
        })
        .collect();
    let mut out: HashMap<String, Samples> = HashMap::new();
    for r in requests {
        let Some(base) = r.key.baseline_cell_id.as_deref() else {
            continue;
        };
        if let Some(b) = by_key.get(&(base, r.prompt_id.as_str(), r.key.repetition)) {
            out.entry(r.key.cell_id.clone()).or_default().insert(
                (r.prompt_id.clone(), r.key.repetition),
                r.decode_tok_per_s / b,
            );
        }
    }
    out
}

/// Decode tok/s samples of every cell.
pub fn decode_samples(requests: &[RequestRecord]) -> HashMap<String, Samples> {
    let mut out: HashMap<String, Samples> = HashMap::new();
    for r in requests {
        out.entry(r.key.cell_id.clone())
            .or_default()
            .insert((r.prompt_id.clone(), r.key.repetition), r.decode_tok_per_s);
    }
    out
}

/// The two samples as aligned vectors when every key is in both (a paired design), else `None`.
pub fn align(a: &Samples, b: &Samples) -> Option<(Vec<f64>, Vec<f64>)> {
    (a.len() == b.len() && a.keys().all(|k| b.contains_key(k)))
        .then(|| a.iter().map(|(k, x)| (*x, b[k])).unzip())
}

/// Relative change `median(b) / median(a) − 1` with a bootstrap CI: paired resampling when the
/// samples cover the same (prompt, repetition) keys, independent resampling otherwise.
pub fn relative_change(a: &Samples, b: &Samples, cfg: &Bootstrap) -> Estimate {
    match align(a, b) {
        Some((xa, xb)) => {
            let e = stats::paired_ratio_of_medians(&xb, &xa, cfg);
            Estimate {
                point: e.point - 1.0,
                lo: e.lo - 1.0,
                hi: e.hi - 1.0,
            }
        }
        None => {
            let xa: Vec<f64> = a.values().copied().collect();
            let xb: Vec<f64> = b.values().copied().collect();
            stats::relative_change_of_medians(&xa, &xb, cfg)
        }
    }
}

fn values(s: &Samples) -> Vec<f64> {
    s.values().copied().collect()
}

/// Compare run `b` against run `a`.
pub fn compare_runs(a: &Run, b: &Run, noise: f64, cfg: &Bootstrap) -> Comparison {
    let (da, db) = (decode_samples(&a.requests), decode_samples(&b.requests));
    let (ra, rb) = (paired_ratios(&a.requests), paired_ratios(&b.requests));
    let configs: HashMap<&str, (&CellConfig, bool)> = a
        .requests
        .iter()
        .map(|r| {
            let control = r.key.baseline_cell_id.is_none();
            (r.key.cell_id.as_str(), (&r.key.cell, control))
        })
        .collect();
    let ids_a: BTreeSet<&String> = da.keys().collect();
    let ids_b: BTreeSet<&String> = db.keys().collect();
    let mut rows = Vec::new();
    for id in ids_a.intersection(&ids_b) {
        let (config, control) = configs
            .get(id.as_str())
            .map(|(c, control)| ((*c).clone(), *control))
            .unwrap_or_default();
        let metrics = [
            ("decode tok/s", da.get(*id), db.get(*id)),
            ("speedup", ra.get(*id), rb.get(*id)),
        ];
        for (metric, sa, sb) in metrics {
            let (Some(sa), Some(sb)) = (sa, sb) else {
                continue;
            };
            let change = relative_change(sa, sb, cfg);
            rows.push(MetricComparison {
                cell_id: (*id).clone(),
                control,
                config: config.clone(),
                metric: metric.into(),
                a_median: stats::median(&values(sa)),
                b_median: stats::median(&values(sb)),
                change,
                verdict: verdict(&change, noise),
            });
        }
    }
    rows.sort_by(|x, y| {
        y.control
            .cmp(&x.control)
            .then_with(|| config_order(&x.config, &y.config))
            .then_with(|| x.cell_id.cmp(&y.cell_id))
            .then_with(|| x.metric.cmp(&y.metric))
    });
    Comparison {
        rows,
        only_a: ids_a.difference(&ids_b).map(|s| (*s).clone()).collect(),
        only_b: ids_b.difference(&ids_a).map(|s| (*s).clone()).collect(),
        noise,
    }
}

/// The comparison as a table (varying configuration keys as columns).
pub fn comparison_table(cmp: &Comparison) -> (String, Table) {
    let cols = config_columns(cmp.rows.iter().map(|r| &r.config));
    let mut columns = cols.varying.clone();
    columns.extend(
        [
            "metric",
            "A median",
            "B median",
            "change % [95 % CI]",
            "verdict",
        ]
        .map(String::from),
    );
    let rows = cmp
        .rows
        .iter()
        .map(|r| {
            let mut row: Vec<String> = cols
                .varying
                .iter()
                .map(|k| show_value(r.config.get(k)))
                .collect();
            row.extend([
                r.metric.clone(),
                num(r.a_median, 3),
                num(r.b_median, 3),
                crate::table::ci(&r.change, 1, 100.0),
                r.verdict.to_string(),
            ]);
            row
        })
        .collect();
    (
        header_line(&cols),
        Table {
            title: "Comparison".into(),
            columns,
            rows,
        },
    )
}

/// The comparison as Markdown.
pub fn render_markdown(cmp: &Comparison, a: &str, b: &str) -> String {
    let (header, table) = comparison_table(cmp);
    let mut out = format!("# specsweep compare\n\nA: {a}\nB: {b}\n\n");
    if !header.is_empty() {
        out.push_str(&format!("{header}\n\n"));
    }
    out.push_str(&table.to_markdown());
    let count = |v: Verdict| cmp.rows.iter().filter(|r| r.verdict == v).count();
    out.push_str(&format!(
        "\n{} improved, {} regressed, {} no change (noise threshold ±{} %, change = median(B)/median(A) − 1 with a bootstrap 95 % CI).\n",
        count(Verdict::Improved),
        count(Verdict::Regressed),
        count(Verdict::NoChange),
        num(cmp.noise * 100.0, 1),
    ));
    for (which, ids) in [("A", &cmp.only_a), ("B", &cmp.only_b)] {
        if !ids.is_empty() {
            out.push_str(&format!("Cells only in {which}: {}\n", ids.join(", ")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(point: f64, lo: f64, hi: f64) -> Estimate {
        Estimate { point, lo, hi }
    }

    #[test]
    fn criterion_rule_needs_both_significance_and_size() {
        let noise = 0.05;
        assert_eq!(verdict(&e(0.10, 0.06, 0.14), noise), Verdict::Improved);
        assert_eq!(verdict(&e(-0.10, -0.14, -0.06), noise), Verdict::Regressed);
        // Significant but within the noise threshold.
        assert_eq!(verdict(&e(0.03, 0.01, 0.05), noise), Verdict::NoChange);
        // Large but the CI includes zero.
        assert_eq!(verdict(&e(-0.20, -0.40, 0.01), noise), Verdict::NoChange);
        assert_eq!(verdict(&Estimate::NAN, noise), Verdict::NoChange);
    }
}
