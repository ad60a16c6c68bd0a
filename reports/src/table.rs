//! Tables of a summary, rendered as Markdown (and as HTML by [`crate::html`]).
//!
//! As llama-bench does, configuration keys whose value is the same in every row are folded into a
//! header line (`model: tiny · quant: f32`) and only the keys that vary become columns. Numbers
//! are shown as `median [lo, hi]` with the bootstrap 95 % interval; a dash marks a value that does
//! not apply (no speculation, nothing checked) or could not be computed.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::aggregate::{GroupStats, Summary};
use crate::schema::CellConfig;
use crate::stats::Estimate;

/// A rendered table: header line of constant keys, column names and rows of cells.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// Configuration keys split into those constant across `configs` and those that vary.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigColumns {
    /// `(key, value)` of every key with one value in every configuration.
    pub constant: Vec<(String, String)>,
    /// Keys that differ (or are missing somewhere), in key order.
    pub varying: Vec<String>,
}

/// A configuration value as shown in a table (strings without quotes).
pub fn show_value(value: Option<&Value>) -> String {
    match value {
        None => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

/// Split the keys of `configs` into constant and varying ones.
pub fn config_columns<'a>(configs: impl IntoIterator<Item = &'a CellConfig>) -> ConfigColumns {
    let configs: Vec<&CellConfig> = configs.into_iter().collect();
    let keys: BTreeSet<&String> = configs.iter().flat_map(|c| c.keys()).collect();
    let mut constant = Vec::new();
    let mut varying = Vec::new();
    for key in keys {
        let first = configs[0].get(key);
        if first.is_some() && configs.iter().all(|c| c.get(key) == first) {
            constant.push((key.clone(), show_value(first)));
        } else {
            varying.push(key.clone());
        }
    }
    ConfigColumns { constant, varying }
}

/// `12.3` with one decimal, or `-` when not finite.
pub fn num(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        let s = format!("{x:.decimals$}");
        // No "-0.0": a value that rounds to zero is shown without a sign.
        if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
            s[1..].to_string()
        } else {
            s
        }
    } else {
        "-".into()
    }
}

/// `point [lo, hi]`, or `-`.
pub fn ci(e: &Estimate, decimals: usize, scale: f64) -> String {
    if !e.point.is_finite() {
        return "-".into();
    }
    format!(
        "{} [{}, {}]",
        num(e.point * scale, decimals),
        num(e.lo * scale, decimals),
        num(e.hi * scale, decimals)
    )
}

fn median_ci(m: &crate::aggregate::Metric, decimals: usize) -> String {
    ci(
        &Estimate {
            point: m.median,
            lo: m.median_lo,
            hi: m.median_hi,
        },
        decimals,
        1.0,
    )
}

fn mean_sd(m: &crate::aggregate::Metric, decimals: usize) -> String {
    if !m.mean.is_finite() {
        return "-".into();
    }
    format!("{} ± {}", num(m.mean, decimals), num(m.std_dev, decimals))
}

fn identical(g: &GroupStats) -> String {
    match g.output_identical() {
        None => "-".into(),
        Some(true) => format!("yes ({})", g.outputs_checked),
        Some(false) => format!("NO ({}/{})", g.outputs_diverged, g.outputs_checked),
    }
}

fn config_cells(config: &CellConfig, cols: &ConfigColumns) -> Vec<String> {
    cols.varying
        .iter()
        .map(|k| show_value(config.get(k)))
        .collect()
}

/// The per-cell table: every statistic of every cell.
pub fn cell_table(summary: &Summary, cols: &ConfigColumns) -> Table {
    let mut columns = cols.varying.clone();
    columns.extend(
        [
            "n",
            "fail",
            "decode tok/s",
            "decode mean ± sd",
            "prefill tok/s",
            "prefill mean ± sd",
            "TTFT ms",
            "TTFT mean ± sd",
            "ITL p50/p90/p99/max ms",
            "accept %",
            "τ",
            "speedup",
            "e2e speedup",
            "identical",
        ]
        .map(String::from),
    );
    let rows = summary
        .cells
        .iter()
        .map(|g| {
            let mut row = config_cells(&g.config, cols);
            let acc = g.acceptance.as_ref();
            row.extend([
                g.requests.to_string(),
                g.failures.to_string(),
                median_ci(&g.decode_tok_per_s, 2),
                mean_sd(&g.decode_tok_per_s, 2),
                median_ci(&g.prefill_tok_per_s, 1),
                mean_sd(&g.prefill_tok_per_s, 1),
                median_ci(&g.ttft_ms, 1),
                mean_sd(&g.ttft_ms, 1),
                format!(
                    "{} / {} / {} / {}",
                    num(g.itl_ms.p50, 1),
                    num(g.itl_ms.p90, 1),
                    num(g.itl_ms.p99, 1),
                    num(g.itl_ms.max, 1)
                ),
                acc.map_or("-".into(), |a| ci(&a.rate, 1, 100.0)),
                acc.map_or("-".into(), |a| num(a.mean_acceptance_length, 2)),
                g.speedup.as_ref().map_or("-".into(), |e| ci(e, 2, 1.0)),
                g.e2e_speedup.as_ref().map_or("-".into(), |e| ci(e, 2, 1.0)),
                identical(g),
            ]);
            row
        })
        .collect();
    Table {
        title: "Cells".into(),
        columns,
        rows,
    }
}

/// The per-(cell, category) table: the headline numbers by prompt category.
pub fn category_table(summary: &Summary, cols: &ConfigColumns) -> Table {
    let mut columns = cols.varying.clone();
    columns.extend(
        [
            "category",
            "n",
            "decode tok/s",
            "TTFT ms",
            "accept %",
            "τ",
            "speedup",
            "e2e speedup",
            "identical",
        ]
        .map(String::from),
    );
    let rows = summary
        .categories
        .iter()
        .map(|g| {
            let mut row = config_cells(&g.config, cols);
            let acc = g.acceptance.as_ref();
            row.extend([
                g.category.clone().unwrap_or_default(),
                g.requests.to_string(),
                median_ci(&g.decode_tok_per_s, 2),
                median_ci(&g.ttft_ms, 1),
                acc.map_or("-".into(), |a| ci(&a.rate, 1, 100.0)),
                acc.map_or("-".into(), |a| num(a.mean_acceptance_length, 2)),
                g.speedup.as_ref().map_or("-".into(), |e| ci(e, 2, 1.0)),
                g.e2e_speedup.as_ref().map_or("-".into(), |e| ci(e, 2, 1.0)),
                identical(g),
            ]);
            row
        })
        .collect();
    Table {
        title: "By category".into(),
        columns,
        rows,
    }
}

/// Acceptance rate (%) at each draft position, one row per speculative cell.
pub fn position_table(summary: &Summary, cols: &ConfigColumns) -> Option<Table> {
    let spec: Vec<&GroupStats> = summary
        .cells
        .iter()
        .filter(|g| g.acceptance.is_some())
        .collect();
    let width = spec
        .iter()
        .filter_map(|g| g.acceptance.as_ref().map(|a| a.per_position.len()))
        .max()?;
    if width == 0 {
        return None;
    }
    let mut columns = cols.varying.clone();
    columns.extend((1..=width).map(|i| format!("pos {i}")));
    let rows = spec
        .iter()
        .map(|g| {
            let mut row = config_cells(&g.config, cols);
            let rates = g
                .acceptance
                .as_ref()
                .map(|a| a.per_position.clone())
                .unwrap_or_default();
            row.extend((0..width).map(|i| rates.get(i).map_or("-".into(), |r| num(r * 100.0, 1))));
            row
        })
        .collect();
    Some(Table {
        title: "Acceptance by draft position (%)".into(),
        columns,
        rows,
    })
}

/// Output agreement of cells at less precise weights or KV cache (`crate::agreement`), when the
/// run has any.
pub fn agreement_table(summary: &Summary, cols: &ConfigColumns) -> Option<Table> {
    if summary.agreement.is_empty() {
        return None;
    }
    let mut columns = cols.varying.clone();
    columns.extend(
        [
            "against",
            "pairs",
            "identical",
            "common prefix median / min (tokens)",
            "tokens: this / reference (median)",
        ]
        .map(String::from),
    );
    let rows = summary
        .agreement
        .iter()
        .map(|a| {
            let mut row = config_cells(&a.config, cols);
            row.extend([
                a.reference.clone(),
                a.pairs.to_string(),
                a.identical.to_string(),
                format!(
                    "{} / {}",
                    num(a.common_prefix_median, 1),
                    a.common_prefix_min
                ),
                format!(
                    "{} / {}",
                    num(a.tokens_median, 1),
                    num(a.reference_tokens_median, 1)
                ),
            ]);
            row
        })
        .collect();
    Some(Table {
        title: "Output agreement across weight and KV cache precision (greedy, plain decoding)"
            .into(),
        columns,
        rows,
    })
}

/// Every table of a summary, and the constant configuration keys.
pub fn tables(summary: &Summary) -> (ConfigColumns, Vec<Table>) {
    let cols = config_columns(summary.cells.iter().map(|g| &g.config));
    let mut out = vec![cell_table(summary, &cols), category_table(summary, &cols)];
    out.extend(position_table(summary, &cols));
    out.extend(agreement_table(summary, &cols));
    (cols, out)
}

fn escape_md(s: &str) -> String {
    s.replace('|', "\\|")
}

impl Table {
    /// A GitHub-flavoured Markdown table (no title).
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let line = |cells: &[String]| {
            let cells: Vec<String> = cells.iter().map(|c| escape_md(c)).collect();
            format!("| {} |\n", cells.join(" | "))
        };
        out.push_str(&line(&self.columns));
        let rule: Vec<String> = self.columns.iter().map(|_| "---".to_string()).collect();
        out.push_str(&format!("|{}|\n", rule.join("|")));
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

/// The header line of constant configuration keys: `model: tiny · quant: f32`.
pub fn header_line(cols: &ConfigColumns) -> String {
    cols.constant
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(" · ")
}

/// The whole report as Markdown: title, header line and every table.
pub fn render_markdown(summary: &Summary) -> String {
    let (cols, tables) = tables(summary);
    let mut out = format!("# specsweep report: {}\n\n", summary.sweep);
    if !cols.constant.is_empty() {
        out.push_str(&format!("{}\n\n", header_line(&cols)));
    }
    for table in tables {
        out.push_str(&format!("## {}\n\n{}\n", table.title, table.to_markdown()));
    }
    out.push_str(
        "Medians with bootstrap 95 % CIs; acceptance with Wilson 95 % intervals; speedup = ratio \
         of median decode tok/s over the paired baseline (paired bootstrap CI); e2e speedup = \
         ratio of the baseline's median request time (prompt + decoding) over the cell's; τ = \
         mean acceptance length.\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(pairs: &[(&str, Value)]) -> CellConfig {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn constant_keys_fold_into_the_header() {
        let a = cfg(&[("model", json!("m")), ("spec", json!("none"))]);
        let b = cfg(&[
            ("model", json!("m")),
            ("spec", json!("ngram-cache")),
            ("draft_max", json!(8)),
        ]);
        let cols = config_columns([&a, &b]);
        assert_eq!(cols.constant, vec![("model".into(), "m".into())]);
        assert_eq!(cols.varying, vec!["draft_max".to_string(), "spec".into()]);
        assert_eq!(header_line(&cols), "model: m");
    }

    #[test]
    fn markdown_escapes_pipes_and_shows_dashes() {
        let t = Table {
            title: "t".into(),
            columns: vec!["a".into(), "b".into()],
            rows: vec![vec!["x|y".into(), num(f64::NAN, 1)]],
        };
        assert_eq!(t.to_markdown(), "| a | b |\n|---|---|\n| x\\|y | - |\n");
        let e = Estimate {
            point: 1.234,
            lo: 1.1,
            hi: 1.5,
        };
        assert_eq!(ci(&e, 2, 1.0), "1.23 [1.10, 1.50]");
    }
}
