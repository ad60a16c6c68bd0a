//! Charts of a run with plotters, as SVG text and PNG files.
//!
//! Six charts, each skipped with a note when the run lacks its axis: speedup by arm × prompt
//! category (bars with the paired-bootstrap CI as whiskers); acceptance rate by draft position;
//! the draft-size sweep (speedup and τ against `draft_max`); the inter-token-latency CDF per arm;
//! decode tok/s against context `depth`; and distinct MoE experts touched per layer against the
//! verify batch size (from `ExpertStats`). Chart data ([`ChartSpec`]) is built from the summary
//! first, then drawn by one function generic over the plotters backend.
//!
//! Text needs a font: [`register_font`] loads a system TrueType font (DejaVu Sans or similar) for
//! plotters' `ab_glyph` renderer. Without one, charts are drawn without any text (titles are
//! still given by the HTML page around them) and PNGs are skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::aggregate::{GroupStats, Summary};
use crate::error::{ReportError, Result};
use crate::load::Run;
use crate::stats::Estimate;
use crate::table::{config_columns, show_value};

/// Pixel size of every chart.
pub const SIZE: (u32, u32) = (900, 520);
const FONT: &str = "sans-serif";

/// Font files tried in order by [`register_font`].
const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/freefont/FreeSans.ttf",
];

/// Register a system font with plotters once per process; returns whether one is available.
pub fn register_font() -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    *REGISTERED.get_or_init(|| {
        FONT_CANDIDATES
            .iter()
            .any(|path| match std::fs::read(path) {
                Ok(bytes) => {
                    // plotters keeps fonts for the life of the process: leaking once is intended.
                    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                    plotters::style::register_font(FONT, FontStyle::Normal, bytes).is_ok()
                }
                Err(_) => false,
            })
    })
}

/// One named line of a line chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// What a chart shows.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    /// Lines (with point markers) over a numeric x axis.
    Lines(Vec<Series>),
    /// Grouped bars: one group per category, one bar per series, optional CI whiskers.
    Bars {
        categories: Vec<String>,
        series: Vec<(String, Vec<Option<Estimate>>)>,
    },
}

/// A chart ready to draw.
#[derive(Debug, Clone, PartialEq)]
pub struct ChartSpec {
    /// File stem (`speedup_by_category`).
    pub name: String,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub body: Body,
}

/// A short label of a cell from its varying keys, leaving out `exclude`.
fn label(g: &GroupStats, varying: &[String], exclude: &[&str]) -> String {
    // The mode first, then the other varying keys in key order.
    let keys = varying
        .iter()
        .filter(|k| k.as_str() == "spec")
        .chain(varying.iter().filter(|k| k.as_str() != "spec"));
    let parts: Vec<String> = keys
        .filter(|k| !exclude.contains(&k.as_str()))
        .filter_map(|k| {
            let v = g.config.get(k)?;
            Some(if k == "spec" {
                show_value(Some(v))
            } else {
                format!("{k}={}", show_value(Some(v)))
            })
        })
        .collect();
    if parts.is_empty() {
        g.cell_id.chars().take(8).collect()
    } else {
        parts.join(" ")
    }
}

fn number(g: &GroupStats, key: &str) -> Option<f64> {
    g.config.get(key)?.as_f64()
}

/// Build every chart the data supports; the second list says which were skipped and why.
pub fn chart_specs(run: &Run, summary: &Summary) -> (Vec<ChartSpec>, Vec<String>) {
    let varying = config_columns(summary.cells.iter().map(|g| &g.config)).varying;
    let mut specs = Vec::new();
    let mut notes = Vec::new();
    let mut push = |spec: Option<ChartSpec>, why: &str| match spec {
        Some(s) => specs.push(s),
        None => notes.push(why.to_string()),
    };
    push(
        speedup_by_category(summary, &varying),
        "chart speedup_by_category skipped: no speculative cell with a paired baseline",
    );
    push(
        acceptance_by_position(summary, &varying),
        "chart acceptance_by_position skipped: no per-position acceptance",
    );
    push(
        draft_size_sweep(summary, &varying),
        "chart draft_size_sweep skipped: fewer than two draft_max values",
    );
    push(
        itl_cdf(run, summary, &varying),
        "chart itl_cdf skipped: no inter-token latencies",
    );
    push(
        tok_per_s_by_depth(summary, &varying),
        "chart tok_per_s_by_depth skipped: fewer than two depth values",
    );
    push(
        experts_by_batch(run, summary, &varying),
        "chart experts_by_batch skipped: no MoE expert statistics",
    );
    (specs, notes)
}

fn speedup_by_category(summary: &Summary, varying: &[String]) -> Option<ChartSpec> {
    let rows: Vec<&GroupStats> = summary
        .categories
        .iter()
        .filter(|g| g.speedup.is_some())
        .collect();
    if rows.is_empty() {
        return None;
    }
    let categories: Vec<String> = rows
        .iter()
        .filter_map(|g| g.category.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut series: Vec<(String, Vec<Option<Estimate>>)> = Vec::new();
    for cell in summary.cells.iter().filter(|g| g.speedup.is_some()) {
        let values = categories
            .iter()
            .map(|c| {
                rows.iter()
                    .find(|g| g.cell_id == cell.cell_id && g.category.as_ref() == Some(c))
                    .and_then(|g| g.speedup)
            })
            .collect();
        series.push((label(cell, varying, &[]), values));
    }
    Some(ChartSpec {
        name: "speedup_by_category".into(),
        title: "Speedup over the paired baseline by prompt category".into(),
        x_label: "category".into(),
        y_label: "speedup (×)".into(),
        body: Body::Bars { categories, series },
    })
}

fn acceptance_by_position(summary: &Summary, varying: &[String]) -> Option<ChartSpec> {
    let series: Vec<Series> = summary
        .cells
        .iter()
        .filter_map(|g| {
            let a = g.acceptance.as_ref()?;
            (!a.per_position.is_empty()).then(|| Series {
                name: label(g, varying, &[]),
                points: a
                    .per_position
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.is_finite())
                    .map(|(i, r)| ((i + 1) as f64, *r))
                    .collect(),
            })
        })
        .collect();
    (!series.is_empty()).then(|| ChartSpec {
        name: "acceptance_by_position".into(),
        title: "Acceptance rate by draft position".into(),
        x_label: "draft position".into(),
        y_label: "acceptance rate".into(),
        body: Body::Lines(series),
    })
}

fn draft_size_sweep(summary: &Summary, varying: &[String]) -> Option<ChartSpec> {
    type Curves = (Vec<(f64, f64)>, Vec<(f64, f64)>);
    let mut groups: BTreeMap<String, Curves> = BTreeMap::new();
    for g in &summary.cells {
        let (Some(dmax), Some(speedup), Some(acc)) =
            (number(g, "draft_max"), g.speedup, g.acceptance.as_ref())
        else {
            continue;
        };
        let entry = groups.entry(label(g, varying, &["draft_max"])).or_default();
        entry.0.push((dmax, speedup.point));
        entry.1.push((dmax, acc.mean_acceptance_length));
    }
    groups.retain(|_, (s, _)| s.len() >= 2);
    if groups.is_empty() {
        return None;
    }
    let mut series = Vec::new();
    for (name, (mut speedup, mut tau)) in groups {
        speedup.sort_by(|a, b| a.0.total_cmp(&b.0));
        tau.sort_by(|a, b| a.0.total_cmp(&b.0));
        series.push(Series {
            name: format!("{name} speedup"),
            points: speedup,
        });
        series.push(Series {
            name: format!("{name} τ"),
            points: tau,
        });
    }
    Some(ChartSpec {
        name: "draft_size_sweep".into(),
        title: "Draft-size sweep: speedup and mean acceptance length τ".into(),
        x_label: "draft_max".into(),
        y_label: "speedup (×) / τ (tokens)".into(),
        body: Body::Lines(series),
    })
}

fn itl_cdf(run: &Run, summary: &Summary, varying: &[String]) -> Option<ChartSpec> {
    let mut series = Vec::new();
    for g in summary.cells.iter().filter(|g| g.requests > 0) {
        let mut itl: Vec<f64> = run
            .requests
            .iter()
            .filter(|r| r.key.cell_id == g.cell_id)
            .flat_map(|r| r.itl_ms.iter().copied())
            .filter(|x| x.is_finite())
            .collect();
        if itl.is_empty() {
            continue;
        }
        itl.sort_by(f64::total_cmp);
        let n = itl.len();
        let step = n.div_ceil(200).max(1);
        let mut points: Vec<(f64, f64)> = (0..n)
            .step_by(step)
            .map(|i| (itl[i], (i + 1) as f64 / n as f64))
            .collect();
        points.push((itl[n - 1], 1.0));
        series.push(Series {
            name: label(g, varying, &[]),
            points,
        });
    }
    (!series.is_empty()).then(|| ChartSpec {
        name: "itl_cdf".into(),
        title: "Inter-token latency CDF per arm".into(),
        x_label: "inter-token latency (ms)".into(),
        y_label: "fraction of tokens".into(),
        body: Body::Lines(series),
    })
}

fn tok_per_s_by_depth(summary: &Summary, varying: &[String]) -> Option<ChartSpec> {
    let depths: BTreeSet<u64> = summary
        .cells
        .iter()
        .filter_map(|g| number(g, "depth").map(|d| d as u64))
        .collect();
    if depths.len() < 2 {
        return None;
    }
    let mut groups: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for g in summary.cells.iter().filter(|g| g.requests > 0) {
        if let Some(depth) = number(g, "depth") {
            groups
                .entry(label(g, varying, &["depth"]))
                .or_default()
                .push((depth, g.decode_tok_per_s.median));
        }
    }
    let series = groups
        .into_iter()
        .map(|(name, mut points)| {
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            Series { name, points }
        })
        .collect();
    Some(ChartSpec {
        name: "tok_per_s_by_depth".into(),
        title: "Decode throughput against context depth".into(),
        x_label: "context depth (tokens)".into(),
        y_label: "decode tok/s (median)".into(),
        body: Body::Lines(series),
    })
}

fn experts_by_batch(run: &Run, summary: &Summary, varying: &[String]) -> Option<ChartSpec> {
    let mut series = Vec::new();
    for g in &summary.cells {
        // batch size -> (Σ forwards · mean, Σ forwards)
        let mut acc: BTreeMap<u32, (f64, f64)> = BTreeMap::new();
        for r in run.requests.iter().filter(|r| r.key.cell_id == g.cell_id) {
            for b in r.experts.iter().flat_map(|e| &e.by_batch_size) {
                let e = acc.entry(b.batch_tokens).or_default();
                e.0 += b.forwards as f64 * b.mean_experts_touched;
                e.1 += b.forwards as f64;
            }
        }
        let points: Vec<(f64, f64)> = acc
            .into_iter()
            .filter(|(_, (_, n))| *n > 0.0)
            .map(|(b, (s, n))| (f64::from(b), s / n))
            .collect();
        if !points.is_empty() {
            series.push(Series {
                name: label(g, varying, &[]),
                points,
            });
        }
    }
    (!series.is_empty()).then(|| ChartSpec {
        name: "experts_by_batch".into(),
        title: "MoE: distinct experts touched per layer against verify batch size".into(),
        x_label: "tokens per forward (verify batch)".into(),
        y_label: "mean experts touched per layer".into(),
        body: Body::Lines(series),
    })
}

/// Padded axis range over `values` (never empty or degenerate).
fn range(values: impl Iterator<Item = f64>, from_zero: bool) -> std::ops::Range<f64> {
    let (mut lo, mut hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        });
    if !lo.is_finite() {
        return 0.0..1.0;
    }
    if from_zero {
        lo = lo.min(0.0);
    }
    if hi - lo < 1e-9 {
        hi = lo + 1.0;
    }
    let pad = (hi - lo) * 0.06;
    (if from_zero && lo >= 0.0 { lo } else { lo - pad })..(hi + pad)
}

fn color(i: usize) -> RGBColor {
    let c = Palette99::pick(i).to_rgba();
    RGBColor(c.0, c.1, c.2)
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    spec: &ChartSpec,
    text: bool,
) -> std::result::Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(err)?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(14);
    if text {
        builder
            .caption(&spec.title, (FONT, 22))
            .x_label_area_size(46)
            .y_label_area_size(64);
    }
    match &spec.body {
        Body::Lines(series) => {
            let xs = range(
                series.iter().flat_map(|s| s.points.iter().map(|p| p.0)),
                false,
            );
            let ys = range(
                series.iter().flat_map(|s| s.points.iter().map(|p| p.1)),
                true,
            );
            let mut chart = builder.build_cartesian_2d(xs, ys).map_err(err)?;
            let mut mesh = chart.configure_mesh();
            if text {
                mesh.x_desc(&spec.x_label)
                    .y_desc(&spec.y_label)
                    .label_style((FONT, 14));
            } else {
                mesh.x_labels(0).y_labels(0);
            }
            mesh.draw().map_err(err)?;
            for (i, s) in series.iter().enumerate() {
                let c = color(i);
                let drawn = chart
                    .draw_series(LineSeries::new(s.points.clone(), c.stroke_width(2)))
                    .map_err(err)?;
                if text {
                    drawn.label(s.name.clone()).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(3))
                    });
                }
                if s.points.len() <= 60 {
                    chart
                        .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, c.filled())))
                        .map_err(err)?;
                }
            }
            if text {
                chart
                    .configure_series_labels()
                    .label_font((FONT, 13))
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .draw()
                    .map_err(err)?;
            }
        }
        Body::Bars { categories, series } => {
            let n = categories.len() as f64;
            let ys = range(
                series
                    .iter()
                    .flat_map(|(_, v)| v.iter().flatten().flat_map(|e| [e.hi, e.point])),
                true,
            );
            // Headroom above the tallest whisker for the legend.
            let ys = ys.start..ys.end + (ys.end - ys.start) * 0.35;
            let mut chart = builder.build_cartesian_2d(-0.5..n - 0.5, ys).map_err(err)?;
            let formatter = |x: &f64| {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < categories.len() {
                    categories[i as usize].clone()
                } else {
                    String::new()
                }
            };
            let mut mesh = chart.configure_mesh();
            mesh.disable_x_mesh();
            if text {
                mesh.x_labels(categories.len() * 2 + 1)
                    .x_label_formatter(&formatter)
                    .x_desc(&spec.x_label)
                    .y_desc(&spec.y_label)
                    .label_style((FONT, 14));
            } else {
                mesh.x_labels(0).y_labels(0);
            }
            mesh.draw().map_err(err)?;
            let width = 0.8 / series.len().max(1) as f64;
            for (si, (name, values)) in series.iter().enumerate() {
                let c = color(si);
                let x0 = |ci: usize| ci as f64 - 0.4 + si as f64 * width;
                let bars = values.iter().enumerate().filter_map(|(ci, v)| {
                    v.map(|e| {
                        Rectangle::new([(x0(ci), 0.0), (x0(ci) + width * 0.9, e.point)], c.filled())
                    })
                });
                let drawn = chart.draw_series(bars).map_err(err)?;
                if text {
                    drawn.label(name.clone()).legend(move |(x, y)| {
                        Rectangle::new([(x, y - 5), (x + 14, y + 5)], c.filled())
                    });
                }
                let whiskers = values.iter().enumerate().filter_map(|(ci, v)| {
                    let e = (*v)?;
                    let mid = x0(ci) + width * 0.45;
                    (e.lo.is_finite() && e.hi.is_finite()).then(|| {
                        PathElement::new(vec![(mid, e.lo), (mid, e.hi)], BLACK.stroke_width(2))
                    })
                });
                chart.draw_series(whiskers).map_err(err)?;
            }
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(-0.5, 1.0), (n - 0.5, 1.0)],
                    BLACK.mix(0.5).stroke_width(1),
                )))
                .map_err(err)?;
            if text {
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperLeft)
                    .label_font((FONT, 13))
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .draw()
                    .map_err(err)?;
            }
        }
    }
    root.present().map_err(err)
}

/// Draw `spec` as SVG text; `text` false draws no text at all (for machines without a font).
pub fn render_svg(spec: &ChartSpec, text: bool) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        draw(root, spec, text).map_err(|message| ReportError::Chart {
            chart: spec.name.clone(),
            message,
        })?;
    }
    Ok(svg)
}

/// Draw `spec` into a PNG file (needs a registered font).
pub fn render_png(spec: &ChartSpec, path: &Path) -> Result<()> {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    draw(root, spec, true).map_err(|message| ReportError::Chart {
        chart: spec.name.clone(),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines() -> ChartSpec {
        ChartSpec {
            name: "t".into(),
            title: "Chart title".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            body: Body::Lines(vec![Series {
                name: "series one".into(),
                points: vec![(1.0, 0.5), (2.0, 0.25)],
            }]),
        }
    }

    #[test]
    fn svg_without_text_needs_no_font() {
        let svg = render_svg(&lines(), false).expect("svg");
        assert!(svg.starts_with("<svg") && !svg.contains("<text"), "{svg}");
        assert!(svg.contains("<polyline"), "{svg}");
    }

    #[test]
    fn svg_with_text_labels_the_chart_when_a_font_exists() {
        if !register_font() {
            // No system font on this machine: the no-text path above is what runs here.
            return;
        }
        let svg = render_svg(&lines(), true).expect("svg");
        assert!(svg.contains("<text"), "{svg}");
        assert!(
            svg.contains("Chart title") && svg.contains("series one"),
            "{svg}"
        );
    }

    #[test]
    fn ranges_are_padded_and_never_degenerate() {
        assert_eq!(range(std::iter::empty(), true), 0.0..1.0);
        let r = range([2.0, 2.0].into_iter(), false);
        assert!(r.start < 2.0 && r.end > 3.0);
        let r = range([0.5, 2.0].into_iter(), true);
        assert_eq!(r.start, 0.0);
    }
}
