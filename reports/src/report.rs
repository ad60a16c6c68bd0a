//! `report`: the whole pipeline from a run directory to files — load, aggregate, then write the
//! requested formats (Markdown, CSV, JSON, Parquet, HTML with charts, plus SVG and PNG charts).

use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::aggregate::aggregate;
use crate::chart::{chart_specs, register_font, render_png, render_svg};
use crate::error::{ReportError, Result};
use crate::export::{ExportFormat, summary_frame, write_frame};
use crate::html::render_html;
use crate::load::load_run;
use crate::stats::Bootstrap;
use crate::table::render_markdown;

/// An output format of `specsweep report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Markdown,
    Csv,
    Json,
    Parquet,
    Html,
}

impl FromStr for Format {
    type Err = ReportError;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim() {
            "md" | "markdown" => Ok(Format::Markdown),
            "csv" => Ok(Format::Csv),
            "json" => Ok(Format::Json),
            "parquet" => Ok(Format::Parquet),
            "html" => Ok(Format::Html),
            other => Err(ReportError::Incompatible(format!(
                "unknown format `{other}` (expected md, csv, json, parquet or html)"
            ))),
        }
    }
}

/// What to produce.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportOptions {
    pub formats: Vec<Format>,
    /// Output directory; `None` prints Markdown to stdout (other formats then need a directory).
    pub out_dir: Option<PathBuf>,
    pub bootstrap: Bootstrap,
}

/// What was produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportOutcome {
    /// Markdown for stdout when no output directory was given.
    pub stdout: Option<String>,
    pub written: Vec<PathBuf>,
    /// Skipped charts, missing font, ...
    pub notes: Vec<String>,
}

fn write(path: PathBuf, bytes: &[u8], written: &mut Vec<PathBuf>) -> Result<()> {
    fs::write(&path, bytes).map_err(|e| ReportError::io(&path, e))?;
    written.push(path);
    Ok(())
}

/// Load `run_dir`, aggregate it and write the requested formats.
pub fn write_report(run_dir: &Path, options: &ReportOptions) -> Result<ReportOutcome> {
    let run = load_run(run_dir)?;
    let summary = aggregate(&run, &options.bootstrap)?;
    let mut outcome = ReportOutcome::default();
    let Some(out) = &options.out_dir else {
        if let Some(f) = options.formats.iter().find(|f| **f != Format::Markdown) {
            return Err(ReportError::Incompatible(format!(
                "format {f:?} needs an output directory (--out DIR)"
            )));
        }
        outcome.stdout = Some(render_markdown(&summary));
        return Ok(outcome);
    };
    fs::create_dir_all(out).map_err(|e| ReportError::io(out, e))?;
    let mut frame = None;
    for format in &options.formats {
        let export = match format {
            Format::Markdown => {
                write(
                    out.join("report.md"),
                    render_markdown(&summary).as_bytes(),
                    &mut outcome.written,
                )?;
                continue;
            }
            Format::Html => {
                write_html(&run, &summary, out, &mut outcome)?;
                continue;
            }
            Format::Csv => (ExportFormat::Csv, "summary.csv"),
            Format::Json => (ExportFormat::Json, "summary.json"),
            Format::Parquet => (ExportFormat::Parquet, "summary.parquet"),
        };
        if frame.is_none() {
            frame = Some(summary_frame(&summary)?);
        }
        if let Some(frame) = &frame {
            let path = out.join(export.1);
            write_frame(frame, export.0, &path)?;
            outcome.written.push(path);
        }
    }
    Ok(outcome)
}

/// The HTML page plus every chart as `charts/NAME.svg` and (with a font) `charts/NAME.png`.
fn write_html(
    run: &crate::load::Run,
    summary: &crate::aggregate::Summary,
    out: &Path,
    outcome: &mut ReportOutcome,
) -> Result<()> {
    let (specs, mut notes) = chart_specs(run, summary);
    let font = register_font();
    if !font {
        notes.push(
            "no TrueType font found (install fonts-dejavu-core): charts drawn without text, PNG \
             skipped"
                .into(),
        );
    }
    let charts_dir = out.join("charts");
    fs::create_dir_all(&charts_dir).map_err(|e| ReportError::io(&charts_dir, e))?;
    let mut inline = Vec::new();
    for spec in &specs {
        let svg = render_svg(spec, font)?;
        write(
            charts_dir.join(format!("{}.svg", spec.name)),
            svg.as_bytes(),
            &mut outcome.written,
        )?;
        if font {
            let path = charts_dir.join(format!("{}.png", spec.name));
            render_png(spec, &path)?;
            outcome.written.push(path);
        }
        inline.push((spec.title.clone(), svg));
    }
    let html = render_html(run, summary, &inline, &notes);
    write(
        out.join("report.html"),
        html.as_bytes(),
        &mut outcome.written,
    )?;
    outcome.notes.extend(notes);
    Ok(())
}
