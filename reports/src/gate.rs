//! The CI gate: is the current run as correct and as fast as the committed baseline?
//!
//! Hard gates (any violation fails the gate):
//! - output identity: every speculative request whose record says it diverged from its paired
//!   baseline request, and every greedy request whose output token ids hash differently from the
//!   baseline's for the same cell and prompt;
//! - exact acceptance counts: for deterministic drafters (`ngram-cache`, `ngram-mod`,
//!   `ngram-simple`, whose drafts are a pure function of the token history) under greedy decoding,
//!   (accepted, drafted) per prompt must equal the baseline's;
//! - failures: any failure record (crash, timeout, OOM, error) of a baseline cell.
//!
//! Statistical gates: per cell, a one-sided test of "current is smaller than baseline" on the
//! per-request speedup ratios (spec over its paired baseline, measured in the same run — the primary gate, robust to
//! machine changes) and, only when the run and baseline come from the same machine, on the
//! per-request decode tok/s. Samples are paired by prompt and repetition index when both sides
//! cover the same ones (the same suite and repetitions): then the exact sign test
//! ([`stats::sign_test_less`]) and change = median(current)/median(baseline) − 1 over the pairs;
//! otherwise the Mann–Whitney U test ([`stats::mann_whitney_less`]). All p-values are Holm-corrected together; a metric regresses when its
//! adjusted p is below alpha *and* its median dropped by more than the noise threshold.

use std::collections::{BTreeMap, HashMap};

use crate::baseline::{Baseline, output_hash, to_samples};
use crate::compare::{Samples, align, decode_samples, paired_ratios};
use crate::error::{ReportError, Result};
use crate::load::Run;
use crate::schema::{CellConfig, RequestRecord};
use crate::stats;
use crate::table::{Table, config_columns, num, show_value};

/// Thresholds of the gate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GateOptions {
    /// Smallest relative drop of a median that counts as a regression, in percent.
    pub noise_pct: f64,
    /// Family-wise significance level (Holm).
    pub alpha: f64,
}

impl Default for GateOptions {
    fn default() -> Self {
        GateOptions {
            noise_pct: 5.0,
            alpha: 0.01,
        }
    }
}

/// One statistical test of one metric of one cell.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StatTest {
    pub cell_id: String,
    /// True for a no-speculation control (a cell without a paired baseline).
    pub control: bool,
    pub config: CellConfig,
    /// `speedup` or `decode tok/s`.
    pub metric: String,
    pub baseline_median: f64,
    pub current_median: f64,
    /// `current / baseline − 1` of the medians.
    pub change: f64,
    pub p: f64,
    pub p_holm: f64,
    pub regressed: bool,
}

/// The gate's findings.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GateReport {
    pub sweep: String,
    pub options_noise_pct: f64,
    pub options_alpha: f64,
    /// One line per violated hard gate.
    pub hard_failures: Vec<String>,
    /// Requests checked by the output-identity and acceptance-count gates.
    pub outputs_checked: u64,
    pub acceptance_checked: u64,
    pub tests: Vec<StatTest>,
    pub notes: Vec<String>,
}

impl GateReport {
    /// True when no hard gate failed and no metric regressed.
    pub fn passed(&self) -> bool {
        self.hard_failures.is_empty() && !self.tests.iter().any(|t| t.regressed)
    }
}

/// Greedy decoding: temperature absent or zero.
fn greedy(config: &CellConfig) -> bool {
    config
        .get("temperature")
        .and_then(|v| v.as_f64())
        .is_none_or(|t| t == 0.0)
}

fn deterministic_drafter(r: &RequestRecord) -> bool {
    r.spec.as_ref().is_some_and(|s| {
        matches!(
            s.mode.as_str(),
            "ngram-cache" | "ngram-mod" | "ngram-simple"
        )
    })
}

/// Output-identity violations inside one run: speculative requests that diverged from their
/// paired baseline (as recorded, or recomputed from the token ids for greedy cells).
pub fn run_hard_failures(run: &Run) -> Vec<String> {
    let outputs: HashMap<(&str, &str, u32), &[u32]> = run
        .requests
        .iter()
        .map(|r| {
            (
                (
                    r.key.cell_id.as_str(),
                    r.prompt_id.as_str(),
                    r.key.repetition,
                ),
                r.output_token_ids.as_slice(),
            )
        })
        .collect();
    let mut out = Vec::new();
    for r in &run.requests {
        let Some(base) = r.key.baseline_cell_id.as_deref() else {
            continue;
        };
        let identical = r.output_identical.or_else(|| {
            greedy(&r.key.cell)
                .then(|| outputs.get(&(base, r.prompt_id.as_str(), r.key.repetition)))
                .flatten()
                .map(|b| *b == r.output_token_ids.as_slice())
        });
        if identical == Some(false) {
            out.push(format!(
                "output of cell {} (prompt {}, repetition {}) differs from its paired baseline{}",
                r.key.cell_id,
                r.prompt_id,
                r.key.repetition,
                r.first_divergence
                    .map(|i| format!(" at token {i}"))
                    .unwrap_or_default()
            ));
        }
    }
    out
}

/// Gate `run` against `baseline`. An `Err` means the inputs cannot be compared (exit 2).
pub fn gate(baseline: &Baseline, run: &Run, options: &GateOptions) -> Result<GateReport> {
    if baseline.sweep != run.manifest.sweep {
        return Err(ReportError::Incompatible(format!(
            "baseline is for sweep `{}` but the run is sweep `{}`",
            baseline.sweep, run.manifest.sweep
        )));
    }
    let mut hard = run_hard_failures(run);
    let mut notes = Vec::new();
    let decode = decode_samples(&run.requests);
    let ratios = paired_ratios(&run.requests);
    let mut by_cell: BTreeMap<&str, Vec<&RequestRecord>> = BTreeMap::new();
    for r in &run.requests {
        by_cell.entry(r.key.cell_id.as_str()).or_default().push(r);
    }
    let same_machine = baseline.machine.cpu_model == run.manifest.cpu_model
        && baseline.machine.gpus == run.manifest.gpus;
    if !same_machine {
        notes.push(format!(
            "decode tok/s not gated: baseline measured on `{}`, run on `{}` (speedup ratios are)",
            baseline.machine.cpu_model, run.manifest.cpu_model
        ));
    }
    let (mut outputs_checked, mut acceptance_checked) = (0u64, 0u64);
    let mut tests = Vec::new();
    for (id, cell) in &baseline.cells {
        let failures: Vec<_> = run
            .failures
            .iter()
            .filter(|f| &f.key.cell_id == id)
            .collect();
        if let Some(f) = failures.first() {
            hard.push(format!(
                "cell {id}: {} failure record(s), first {:?} at repetition {}: {}",
                failures.len(),
                f.cause,
                f.key.repetition,
                f.message
            ));
        }
        let Some(requests) = by_cell.get(id.as_str()) else {
            if !failures.is_empty() {
                continue;
            }
            return Err(ReportError::Incompatible(format!(
                "cell {id} of the baseline is missing from run {}",
                run.dir.display()
            )));
        };
        for r in requests {
            if greedy(&r.key.cell)
                && let Some(expected) = cell.outputs.get(&r.prompt_id)
            {
                outputs_checked += 1;
                if *expected != output_hash(&r.output_token_ids) {
                    hard.push(format!(
                        "output of cell {id} (prompt {}, repetition {}) differs from the baseline's",
                        r.prompt_id, r.key.repetition
                    ));
                }
            }
            if greedy(&r.key.cell)
                && deterministic_drafter(r)
                && let (Some(spec), Some(expected)) = (&r.spec, cell.acceptance.get(&r.prompt_id))
            {
                acceptance_checked += 1;
                if [spec.accepted, spec.drafted] != *expected {
                    hard.push(format!(
                        "acceptance of cell {id} (prompt {}, repetition {}) is {}/{} drafted, baseline {}/{}",
                        r.prompt_id, r.key.repetition, spec.accepted, spec.drafted, expected[0], expected[1]
                    ));
                }
            }
        }
        let mut push = |metric: &str, base: &Samples, current: Option<&Samples>| {
            let Some(current) = current.filter(|c| !c.is_empty()) else {
                return;
            };
            if base.is_empty() {
                return;
            }
            // Current samples re-keyed by repetition index within their prompt, as the baseline.
            let mut reps: BTreeMap<&str, u32> = BTreeMap::new();
            let current: Samples = current
                .iter()
                .map(|((p, _), x)| {
                    let i = reps.entry(p.as_str()).or_default();
                    *i += 1;
                    ((p.clone(), *i - 1), *x)
                })
                .collect();
            let (p, bm, cm) = match align(base, &current) {
                Some((b, c)) => (
                    stats::sign_test_less(&c, &b),
                    stats::median(&b),
                    stats::median(&c),
                ),
                None => {
                    let b: Vec<f64> = base.values().copied().collect();
                    let c: Vec<f64> = current.values().copied().collect();
                    (
                        stats::mann_whitney_less(&c, &b),
                        stats::median(&b),
                        stats::median(&c),
                    )
                }
            };
            tests.push(StatTest {
                cell_id: id.clone(),
                control: cell.baseline_cell_id.is_none(),
                config: cell.config.clone(),
                metric: metric.into(),
                baseline_median: bm,
                current_median: cm,
                change: cm / bm - 1.0,
                p,
                p_holm: 1.0,
                regressed: false,
            });
        };
        push("speedup", &to_samples(&cell.speedup_ratios), ratios.get(id));
        if same_machine {
            push(
                "decode tok/s",
                &to_samples(&cell.decode_tok_per_s),
                decode.get(id),
            );
        }
    }
    for id in by_cell
        .keys()
        .filter(|id| !baseline.cells.contains_key(**id))
    {
        notes.push(format!("cell {id} is new (not in the baseline): not gated"));
    }
    let adjusted = stats::holm(&tests.iter().map(|t| t.p).collect::<Vec<_>>());
    let noise = options.noise_pct / 100.0;
    for (t, p) in tests.iter_mut().zip(adjusted) {
        t.p_holm = p;
        t.regressed = p < options.alpha && t.change < -noise;
    }
    tests.sort_by(|a, b| {
        b.control
            .cmp(&a.control)
            .then_with(|| crate::aggregate::config_order(&a.config, &b.config))
            .then_with(|| a.cell_id.cmp(&b.cell_id))
            .then_with(|| b.metric.cmp(&a.metric))
    });
    Ok(GateReport {
        sweep: run.manifest.sweep.clone(),
        options_noise_pct: options.noise_pct,
        options_alpha: options.alpha,
        hard_failures: hard,
        outputs_checked,
        acceptance_checked,
        tests,
        notes,
    })
}

fn p_value(p: f64) -> String {
    if p < 1e-4 {
        format!("{p:.1e}")
    } else {
        format!("{p:.4}")
    }
}

/// The gate's findings as a Markdown summary (also appended to `$GITHUB_STEP_SUMMARY`).
pub fn render_markdown(report: &GateReport) -> String {
    let verdict = if report.passed() { "PASS" } else { "FAIL" };
    let mut out = format!("## specsweep gate: {verdict} ({})\n\n", report.sweep);
    out.push_str(&format!(
        "Noise threshold {} %, alpha {} (one-sided sign test on pairs of the same prompt and repetition, Mann–Whitney U when unpaired; Holm-corrected over {} tests).\n\n",
        num(report.options_noise_pct, 1),
        report.options_alpha,
        report.tests.len()
    ));
    out.push_str("### Hard gates\n\n");
    if report.hard_failures.is_empty() {
        out.push_str(&format!(
            "- outputs identical ({} requests checked against the baseline, and every speculative request against its paired baseline)\n- acceptance counts exact ({} deterministic-drafter requests)\n",
            report.outputs_checked, report.acceptance_checked
        ));
    } else {
        for f in &report.hard_failures {
            out.push_str(&format!("- FAIL: {f}\n"));
        }
    }
    out.push_str("\n### Statistical gates\n\n");
    let cols = config_columns(report.tests.iter().map(|t| &t.config));
    let mut columns = cols.varying.clone();
    columns.extend(
        [
            "metric",
            "baseline median",
            "current median",
            "change %",
            "p (Holm)",
            "verdict",
        ]
        .map(String::from),
    );
    let rows = report
        .tests
        .iter()
        .map(|t| {
            let mut row: Vec<String> = cols
                .varying
                .iter()
                .map(|k| show_value(t.config.get(k)))
                .collect();
            row.extend([
                t.metric.clone(),
                num(t.baseline_median, 3),
                num(t.current_median, 3),
                num(t.change * 100.0, 1),
                p_value(t.p_holm),
                if t.regressed {
                    "REGRESSED".into()
                } else {
                    "ok".into()
                },
            ]);
            row
        })
        .collect();
    let table = Table {
        title: String::new(),
        columns,
        rows,
    };
    out.push_str(&table.to_markdown());
    for note in &report.notes {
        out.push_str(&format!("\nNote: {note}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baseline::baseline_from_run;
    use crate::synthetic::Synth;

    fn check(current: Synth) -> GateReport {
        let baseline = baseline_from_run(&Synth::default().run());
        gate(&baseline, &current.run(), &GateOptions::default()).expect("comparable")
    }

    #[test]
    fn unchanged_rerun_passes() {
        let report = check(Synth {
            seed: 8,
            ..Synth::default()
        });
        assert!(report.passed(), "{}", render_markdown(&report));
        // 4 cells: 4 decode tests (same machine) + 3 speedup tests.
        assert_eq!(report.tests.len(), 7);
        assert!(report.tests[0].control, "controls come first");
    }

    #[test]
    fn twenty_percent_slowdown_regresses_every_speculative_arm() {
        let report = check(Synth {
            seed: 8,
            spec_slowdown: 0.2,
            ..Synth::default()
        });
        assert!(!report.passed());
        let regressed: Vec<&StatTest> = report.tests.iter().filter(|t| t.regressed).collect();
        assert_eq!(
            regressed.iter().filter(|t| t.metric == "speedup").count(),
            3
        );
        assert!(
            regressed
                .iter()
                .all(|t| !t.control && (t.change + 0.2).abs() < 0.05)
        );
        assert!(report.hard_failures.is_empty());
    }

    #[test]
    fn other_machine_gates_only_ratios() {
        let mut baseline = baseline_from_run(&Synth::default().run());
        baseline.machine.cpu_model = "another cpu".into();
        let report = gate(&baseline, &Synth::default().run(), &GateOptions::default()).expect("ok");
        assert!(report.tests.iter().all(|t| t.metric == "speedup"));
        assert!(
            report.notes[0].contains("decode tok/s not gated"),
            "{:?}",
            report.notes
        );
    }

    #[test]
    fn changed_output_and_acceptance_are_hard_failures() {
        let report = check(Synth {
            diverge_arm: Some(0),
            ..Synth::default()
        });
        assert!(!report.passed());
        assert!(
            report
                .hard_failures
                .iter()
                .any(|f| f.contains("differs from its paired baseline at token 3"))
        );
        let mut baseline = baseline_from_run(&Synth::default().run());
        let cell = baseline
            .cells
            .values_mut()
            .find(|c| !c.acceptance.is_empty())
            .expect("spec cell");
        cell.acceptance.values_mut().for_each(|a| a[0] += 1);
        let report = gate(&baseline, &Synth::default().run(), &GateOptions::default()).expect("ok");
        assert!(
            report
                .hard_failures
                .iter()
                .any(|f| f.contains("acceptance of cell")),
            "{:?}",
            report.hard_failures
        );
    }

    #[test]
    fn other_sweep_is_incompatible() {
        let baseline = baseline_from_run(&Synth::default().run());
        let other = Synth {
            sweep: "other".into(),
            ..Synth::default()
        };
        let err = gate(&baseline, &other.run(), &GateOptions::default()).unwrap_err();
        assert!(
            err.to_string()
                .contains("sweep `synthetic` but the run is sweep `other`"),
            "{err}"
        );
    }
}
