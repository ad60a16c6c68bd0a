//! Seeded synthetic run directories, for tests, snapshot fixtures and the report-timing example.
//!
//! Real runs come from `specsweep run`; this module fabricates records with the same schema and
//! plausible structure so that reports, compare and gate can be developed and tested without
//! weights: a no-speculation control plus speculative arms per depth, paired by prompt and
//! repetition, per-position acceptance that decays with the position, speedups that follow
//! τ / (1 + draft cost), deterministic (per prompt) acceptance counts and output tokens, optional
//! MoE expert statistics, injected slowdowns, diverging outputs and failures. Nothing here is
//! used on real data.

use std::fs;
use std::io::Write;
use std::path::Path;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;

use crate::error::{ReportError, Result};
use crate::schema::{
    CellConfig, ExpertStats, ExpertsAtBatch, FailureCause, FailureRecord, Manifest, Record,
    RecordKey, RequestRecord, SCHEMA_VERSION, SpecStats,
};

/// One speculative arm of the synthetic sweep: a mode and its draft_max.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthArm {
    pub mode: String,
    pub draft_max: u32,
}

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct Synth {
    pub seed: u64,
    pub sweep: String,
    pub categories: Vec<String>,
    pub prompts_per_category: usize,
    pub repetitions: u32,
    pub output_tokens: usize,
    pub depths: Vec<u64>,
    pub arms: Vec<SynthArm>,
    /// Decode tok/s of the control at depth 0.
    pub base_decode_tok_per_s: f64,
    /// Relative standard deviation of the per-request measurement noise.
    pub noise: f64,
    /// Fraction by which every speculative arm's decode speed is reduced (0.2 = 20 % slower).
    pub spec_slowdown: f64,
    /// Index into `arms` whose outputs diverge from the control at token 3.
    pub diverge_arm: Option<usize>,
    /// Index into `arms` whose first repetition fails (a failure record instead of requests).
    pub fail_arm: Option<usize>,
    /// Add MoE expert statistics (8 experts, 2 per token).
    pub moe: bool,
}

impl Default for Synth {
    fn default() -> Self {
        Synth {
            seed: 7,
            sweep: "synthetic".into(),
            categories: vec!["coding".into(), "chat".into(), "summarization".into()],
            prompts_per_category: 4,
            repetitions: 3,
            output_tokens: 32,
            depths: vec![0],
            arms: vec![
                SynthArm {
                    mode: "ngram-cache".into(),
                    draft_max: 4,
                },
                SynthArm {
                    mode: "ngram-cache".into(),
                    draft_max: 8,
                },
                SynthArm {
                    mode: "ngram-mod".into(),
                    draft_max: 8,
                },
            ],
            base_decode_tok_per_s: 20.0,
            noise: 0.03,
            spec_slowdown: 0.0,
            diverge_arm: None,
            fail_arm: None,
            moe: false,
        }
    }
}

/// A stable cell id for a configuration: FNV-1a over its JSON text (synthetic runs only).
fn cell_id(config: &CellConfig) -> String {
    let text = serde_json::to_string(config).unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Per-category acceptance probability of the first draft position.
fn category_acceptance(category: &str) -> f64 {
    match category {
        "coding" => 0.85,
        "summarization" => 0.65,
        _ => 0.45,
    }
}

impl Synth {
    fn config(&self, depth: u64, arm: Option<&SynthArm>) -> CellConfig {
        let mut c = CellConfig::new();
        c.insert("device".into(), json!("cpu"));
        c.insert(
            "model".into(),
            json!(if self.moe { "tiny-moe" } else { "tiny-dense" }),
        );
        c.insert("quant".into(), json!("f32"));
        c.insert("depth".into(), json!(depth));
        c.insert("temperature".into(), json!(0.0));
        match arm {
            None => {
                c.insert("spec".into(), json!("none"));
            }
            Some(a) => {
                c.insert("spec".into(), json!(a.mode));
                c.insert("draft_max".into(), json!(a.draft_max));
            }
        }
        c
    }

    /// The manifest of the synthetic run.
    pub fn manifest(&self) -> Manifest {
        Manifest {
            schema_version: SCHEMA_VERSION,
            sweep: self.sweep.clone(),
            sweep_toml: format!("name = \"{}\"\n", self.sweep),
            cpu_model: "synthetic cpu".into(),
            cpu_cores: 2,
            os: "linux".into(),
            seed: self.seed,
            specsweep_version: env!("CARGO_PKG_VERSION").into(),
            started_at: "2026-01-01T00:00:00Z".into(),
            ..Manifest::default()
        }
    }

    /// Generate every record of the run, in execution order.
    pub fn records(&self) -> Vec<Record> {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let mut out = Vec::new();
        for rep in 0..self.repetitions {
            for &depth in &self.depths {
                let base_cfg = self.config(depth, None);
                let base_id = cell_id(&base_cfg);
                let depth_factor = 1.0 / (1.0 + depth as f64 / 4096.0);
                for (ci, category) in self.categories.iter().enumerate() {
                    for p in 0..self.prompts_per_category {
                        let prompt_id = format!("{category}-{p}");
                        // Shared drift of this block (prompt, repetition): cancels in the ratio.
                        let drift = 1.0 + self.noise * (rng.random::<f64>() - 0.5) * 2.0;
                        let base_speed = self.base_decode_tok_per_s * depth_factor * drift;
                        let tokens = self.tokens(ci, p);
                        let base_key = self.key(&base_id, &base_cfg, None, rep);
                        out.push(Record::Request(self.request(
                            &mut rng,
                            base_key,
                            &prompt_id,
                            category,
                            depth,
                            base_speed,
                            tokens.clone(),
                            None,
                            None,
                        )));
                        for (ai, arm) in self.arms.iter().enumerate() {
                            let cfg = self.config(depth, Some(arm));
                            let id = cell_id(&cfg);
                            let key = self.key(&id, &cfg, Some(&base_id), rep);
                            if self.fail_arm == Some(ai) && rep == 0 {
                                if ci == 0 && p == 0 {
                                    out.push(Record::Failure(FailureRecord {
                                        key,
                                        cause: FailureCause::Timeout,
                                        message: "worker exceeded the 60 s cell timeout".into(),
                                    }));
                                }
                                continue;
                            }
                            let spec = self.spec_stats(arm, ci, p);
                            let speedup = spec.mean_acceptance_length
                                / (1.0 + 0.04 * f64::from(arm.draft_max))
                                * (1.0 - self.spec_slowdown);
                            let mut toks = tokens.clone();
                            let diverged = self.diverge_arm == Some(ai);
                            if diverged && toks.len() > 3 {
                                toks[3] = toks[3].wrapping_add(1);
                            }
                            out.push(Record::Request(self.request(
                                &mut rng,
                                key,
                                &prompt_id,
                                category,
                                depth,
                                base_speed * speedup,
                                toks,
                                Some(spec),
                                Some(if diverged { Err(3) } else { Ok(()) }),
                            )));
                        }
                    }
                }
            }
        }
        out
    }

    fn key(&self, id: &str, cfg: &CellConfig, base: Option<&str>, rep: u32) -> RecordKey {
        RecordKey {
            schema_version: SCHEMA_VERSION,
            sweep: self.sweep.clone(),
            cell_id: id.into(),
            cell: cfg.clone(),
            baseline_cell_id: base.map(str::to_string),
            repetition: rep,
        }
    }

    /// The greedy output of a prompt: the same for every arm and repetition.
    fn tokens(&self, category: usize, prompt: usize) -> Vec<u32> {
        // Content depends on the prompt only, never on `seed`: a rerun differs only in timings.
        let mut rng = StdRng::seed_from_u64(((category as u64) << 32) ^ prompt as u64);
        (0..self.output_tokens)
            .map(|_| rng.random_range(3..32_000))
            .collect()
    }

    /// Deterministic acceptance counters of one arm on one prompt (identical across repetitions).
    fn spec_stats(&self, arm: &SynthArm, category: usize, prompt: usize) -> SpecStats {
        let mut rng = StdRng::seed_from_u64(
            0x00ac_ce97
                ^ ((category as u64) << 40)
                ^ ((prompt as u64) << 8)
                ^ u64::from(arm.draft_max),
        );
        let k_max = arm.draft_max as usize;
        let p0 = category_acceptance(&self.categories[category]);
        let p0 = if arm.mode == "ngram-mod" {
            p0 * 0.9
        } else {
            p0
        };
        let (mut accepted_pp, mut drafted_pp) = (vec![0u64; k_max], vec![0u64; k_max]);
        let mut hist = vec![0u64; k_max + 1];
        let (mut rounds, mut drafted, mut accepted, mut generated) = (0u64, 0u64, 0u64, 0usize);
        while generated < self.output_tokens {
            let k = rng.random_range(1..=k_max);
            let mut a = 0;
            while a < k && rng.random::<f64>() < p0 * 0.97f64.powi(a as i32) {
                a += 1;
            }
            for i in 0..k {
                drafted_pp[i] += 1;
                if i < a {
                    accepted_pp[i] += 1;
                }
            }
            hist[a] += 1;
            rounds += 1;
            drafted += k as u64;
            accepted += a as u64;
            generated += a + 1;
        }
        SpecStats {
            mode: arm.mode.clone(),
            rounds,
            drafted,
            accepted,
            acceptance_rate: accepted as f64 / drafted as f64,
            mean_acceptance_length: 1.0 + accepted as f64 / rounds as f64,
            accepted_per_position: accepted_pp,
            drafted_per_position: drafted_pp,
            accepted_length_histogram: hist,
            draft_tokens_per_generated_token: drafted as f64 / self.output_tokens as f64,
            ..SpecStats::default()
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn request(
        &self,
        rng: &mut StdRng,
        key: RecordKey,
        prompt_id: &str,
        category: &str,
        depth: u64,
        speed: f64,
        tokens: Vec<u32>,
        spec: Option<SpecStats>,
        identical: Option<std::result::Result<(), u64>>,
    ) -> RequestRecord {
        let noise = |rng: &mut StdRng| 1.0 + self.noise * (rng.random::<f64>() - 0.5) * 2.0;
        let decode = speed * noise(rng);
        let itl_ms: Vec<f64> = (0..tokens.len())
            .map(|_| 1000.0 / decode * (0.5 + rng.random::<f64>()))
            .collect();
        let experts = self.moe.then(|| {
            let draft = spec
                .as_ref()
                .map_or(0, |s| s.drafted_per_position.len() as u32);
            let touched = |b: u32| 8.0 * (1.0 - (0.75f64).powi(b as i32));
            let mut by = vec![ExpertsAtBatch {
                batch_tokens: 1,
                forwards: tokens.len() as u64,
                mean_experts_touched: touched(1),
            }];
            if draft > 0 {
                by.push(ExpertsAtBatch {
                    batch_tokens: draft + 1,
                    forwards: tokens.len() as u64 / 2,
                    mean_experts_touched: touched(draft + 1),
                });
            }
            ExpertStats {
                n_experts: 8,
                n_experts_per_token: 2,
                by_batch_size: by,
            }
        });
        let prompt_tokens = 40 + depth;
        let prefill = 200.0 * noise(rng);
        RequestRecord {
            key,
            prompt_id: prompt_id.into(),
            category: category.into(),
            suite: "synthetic-suite".into(),
            suite_sha256: "0".repeat(64),
            prompt_tokens,
            output_tokens: tokens.len() as u64,
            prefill_tok_per_s: prefill,
            decode_tok_per_s: decode,
            ttft_ms: prompt_tokens as f64 / prefill * 1000.0,
            e2e_ms: itl_ms.iter().sum::<f64>() + prompt_tokens as f64 / prefill * 1000.0,
            itl_ms,
            output_token_ids: tokens,
            spec,
            experts,
            peak_rss_bytes: 100 << 20,
            output_identical: identical.map(|r| r.is_ok()),
            first_divergence: identical.and_then(|r| r.err()),
        }
    }

    /// The run as if loaded from a directory (no files involved).
    pub fn run(&self) -> crate::load::Run {
        let (mut requests, mut failures) = (Vec::new(), Vec::new());
        for record in self.records() {
            match record {
                Record::Request(r) => requests.push(r),
                Record::Failure(f) => failures.push(f),
            }
        }
        crate::load::Run {
            dir: format!("synthetic-{}", self.seed).into(),
            manifest: self.manifest(),
            requests,
            failures,
        }
    }

    /// Write `results.jsonl` and `manifest.json` into `dir` (created if needed).
    pub fn write_run(&self, dir: &Path) -> Result<()> {
        fs::create_dir_all(dir).map_err(|e| ReportError::io(dir, e))?;
        let manifest_path = dir.join(crate::load::MANIFEST_FILE);
        let manifest = serde_json::to_string_pretty(&self.manifest()).unwrap_or_default();
        fs::write(&manifest_path, manifest + "\n")
            .map_err(|e| ReportError::io(&manifest_path, e))?;
        let path = dir.join(crate::load::RESULTS_FILE);
        let file = fs::File::create(&path).map_err(|e| ReportError::io(&path, e))?;
        let mut w = std::io::BufWriter::new(file);
        for record in self.records() {
            let line = serde_json::to_string(&record).unwrap_or_default();
            writeln!(w, "{line}").map_err(|e| ReportError::io(&path, e))?;
        }
        w.flush().map_err(|e| ReportError::io(&path, e))
    }
}

/// The committed fixture runs under `tests/fixtures/runs/`, by directory name.
///
/// `small`: the default sweep with the ngram-mod arm failing its first repetition;
/// `slower`: a rerun (other noise seed) whose speculative arms are 20 % slower.
pub fn fixture_runs() -> Vec<(&'static str, Synth)> {
    vec![
        (
            "small",
            Synth {
                fail_arm: Some(2),
                ..Synth::default()
            },
        ),
        (
            "slower",
            Synth {
                seed: 8,
                spec_slowdown: 0.2,
                fail_arm: Some(2),
                ..Synth::default()
            },
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_paired() {
        let synth = Synth::default();
        let a = synth.records();
        assert_eq!(a, synth.records());
        let requests: Vec<&RequestRecord> = a
            .iter()
            .filter_map(|r| match r {
                Record::Request(q) => Some(q),
                Record::Failure(_) => None,
            })
            .collect();
        // 3 reps × 3 categories × 4 prompts × (control + 3 arms).
        assert_eq!(requests.len(), 3 * 3 * 4 * 4);
        for q in &requests {
            if let Some(spec) = &q.spec {
                assert_eq!(
                    spec.accepted,
                    spec.accepted_per_position.iter().sum::<u64>()
                );
                assert!(q.key.baseline_cell_id.is_some());
            }
        }
    }
}
