//! Machine-readable exports of a summary: one flat polars frame (one row per cell and per
//! cell × category, every statistic its own column, every configuration key a `cfg.` column, the
//! cell rows' output agreement as `agreement_*` columns), written with polars' CSV, JSON and
//! Parquet writers.

use std::fs::File;
use std::path::Path;

use polars::prelude::*;

use crate::aggregate::{GroupStats, Summary};
use crate::error::{ReportError, Result};
use crate::table::{config_columns, show_value};

/// The summary as one flat frame.
pub fn summary_frame(summary: &Summary) -> Result<DataFrame> {
    let rows: Vec<&GroupStats> = summary.cells.iter().chain(&summary.categories).collect();
    let keys = config_columns(summary.cells.iter().map(|g| &g.config));
    let mut columns = vec![
        Column::new(
            "cell_id".into(),
            rows.iter().map(|g| g.cell_id.as_str()).collect::<Vec<_>>(),
        ),
        Column::new(
            "category".into(),
            rows.iter()
                .map(|g| g.category.as_deref())
                .collect::<Vec<_>>(),
        ),
    ];
    let all_keys = keys
        .constant
        .iter()
        .map(|(k, _)| k.clone())
        .chain(keys.varying.iter().cloned());
    for key in all_keys {
        let values: Vec<Option<String>> = rows
            .iter()
            .map(|g| g.config.get(&key).map(|v| show_value(Some(v))))
            .collect();
        columns.push(Column::new(format!("cfg.{key}").into(), values));
    }
    let f = |name: &str, get: &dyn Fn(&GroupStats) -> f64| {
        Column::new(
            name.into(),
            rows.iter().map(|g| get(g)).collect::<Vec<f64>>(),
        )
    };
    let u = |name: &str, get: &dyn Fn(&GroupStats) -> u64| {
        Column::new(
            name.into(),
            rows.iter().map(|g| get(g)).collect::<Vec<u64>>(),
        )
    };
    let o = |name: &str, get: &dyn Fn(&GroupStats) -> Option<f64>| {
        Column::new(
            name.into(),
            rows.iter().map(|g| get(g)).collect::<Vec<Option<f64>>>(),
        )
    };
    columns.extend([
        u("requests", &|g| g.requests),
        u("failures", &|g| g.failures),
        f("decode_tok_per_s_median", &|g| g.decode_tok_per_s.median),
        f("decode_tok_per_s_median_lo", &|g| {
            g.decode_tok_per_s.median_lo
        }),
        f("decode_tok_per_s_median_hi", &|g| {
            g.decode_tok_per_s.median_hi
        }),
        f("decode_tok_per_s_mean", &|g| g.decode_tok_per_s.mean),
        f("decode_tok_per_s_std_dev", &|g| g.decode_tok_per_s.std_dev),
        f("prefill_tok_per_s_median", &|g| g.prefill_tok_per_s.median),
        f("prefill_tok_per_s_median_lo", &|g| {
            g.prefill_tok_per_s.median_lo
        }),
        f("prefill_tok_per_s_median_hi", &|g| {
            g.prefill_tok_per_s.median_hi
        }),
        f("prefill_tok_per_s_mean", &|g| g.prefill_tok_per_s.mean),
        f("prefill_tok_per_s_std_dev", &|g| {
            g.prefill_tok_per_s.std_dev
        }),
        f("ttft_ms_median", &|g| g.ttft_ms.median),
        f("ttft_ms_median_lo", &|g| g.ttft_ms.median_lo),
        f("ttft_ms_median_hi", &|g| g.ttft_ms.median_hi),
        f("ttft_ms_mean", &|g| g.ttft_ms.mean),
        f("ttft_ms_std_dev", &|g| g.ttft_ms.std_dev),
        f("itl_ms_p50", &|g| g.itl_ms.p50),
        f("itl_ms_p90", &|g| g.itl_ms.p90),
        f("itl_ms_p99", &|g| g.itl_ms.p99),
        f("itl_ms_max", &|g| g.itl_ms.max),
        o("acceptance_rate", &|g| {
            g.acceptance.as_ref().map(|a| a.rate.point)
        }),
        o("acceptance_rate_lo", &|g| {
            g.acceptance.as_ref().map(|a| a.rate.lo)
        }),
        o("acceptance_rate_hi", &|g| {
            g.acceptance.as_ref().map(|a| a.rate.hi)
        }),
        o("mean_acceptance_length", &|g| {
            g.acceptance.as_ref().map(|a| a.mean_acceptance_length)
        }),
        o("speedup", &|g| g.speedup.map(|e| e.point)),
        o("speedup_lo", &|g| g.speedup.map(|e| e.lo)),
        o("speedup_hi", &|g| g.speedup.map(|e| e.hi)),
        o("e2e_speedup", &|g| g.e2e_speedup.map(|e| e.point)),
        o("e2e_speedup_lo", &|g| g.e2e_speedup.map(|e| e.lo)),
        o("e2e_speedup_hi", &|g| g.e2e_speedup.map(|e| e.hi)),
        u("outputs_checked", &|g| g.outputs_checked),
        u("outputs_diverged", &|g| g.outputs_diverged),
    ]);
    // the cell's agreement with its group's most precise setting (cell rows that have one)
    let agreement = |g: &GroupStats| {
        g.category
            .is_none()
            .then(|| summary.agreement.iter().find(|a| a.cell_id == g.cell_id))?
    };
    columns.push(Column::new(
        "agreement_reference".into(),
        rows.iter()
            .map(|g| agreement(g).map(|a| a.reference.clone()))
            .collect::<Vec<_>>(),
    ));
    let a = |name: &str, get: &dyn Fn(&crate::agreement::Agreement) -> f64| {
        Column::new(
            name.into(),
            rows.iter()
                .map(|g| agreement(g).map(get))
                .collect::<Vec<Option<f64>>>(),
        )
    };
    columns.extend([
        a("agreement_pairs", &|x| x.pairs as f64),
        a("agreement_identical", &|x| x.identical as f64),
        a("agreement_common_prefix_median", &|x| {
            x.common_prefix_median
        }),
        a("agreement_common_prefix_min", &|x| {
            x.common_prefix_min as f64
        }),
        a("agreement_tokens_median", &|x| x.tokens_median),
        a("agreement_reference_tokens_median", &|x| {
            x.reference_tokens_median
        }),
    ]);
    columns.push(Column::new(
        "acceptance_per_position".into(),
        rows.iter()
            .map(|g| {
                g.acceptance
                    .as_ref()
                    .map(|a| {
                        a.per_position
                            .iter()
                            .map(|r| format!("{r:.4}"))
                            .collect::<Vec<_>>()
                            .join(";")
                    })
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>(),
    ));
    DataFrame::new_infer_height(columns).map_err(|e| ReportError::polars("building the export", e))
}

/// Which machine-readable format to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    Json,
    Parquet,
}

/// Write `frame` to `path` in `format`.
pub fn write_frame(frame: &DataFrame, format: ExportFormat, path: &Path) -> Result<()> {
    let mut df = frame.clone();
    let file = File::create(path).map_err(|e| ReportError::io(path, e))?;
    let context = format!("writing {}", path.display());
    match format {
        ExportFormat::Csv => CsvWriter::new(file).finish(&mut df),
        ExportFormat::Json => JsonWriter::new(file)
            .with_json_format(JsonFormat::Json)
            .finish(&mut df),
        ExportFormat::Parquet => ParquetWriter::new(file).finish(&mut df).map(|_| ()),
    }
    .map_err(|e| ReportError::polars(context, e))
}
