//! Per-request speculation statistics, with the definitions of shared/reference/speculation.md §0
//! (vLLM `v1/spec_decode/metrics.py` and llama.cpp PR #24536 use the same ones).
//!
//! Field names mirror `specsweep_reports::schema::SpecStats` exactly (the engine does not depend
//! on `reports`; the harness converts through serde), so a serialised [`SpecStats`] is a valid
//! record field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What happened in one request's speculative rounds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpecStats {
    /// Speculation mode (`ngram-cache`, `ngram-mod`, `ngram-simple`, `draft`, `mtp`).
    pub mode: String,
    /// Verification rounds: target forwards over the last token plus k ≥ 1 drafts.
    pub rounds: u64,
    /// Draft tokens sent to verification (Σk).
    pub drafted: u64,
    /// Draft tokens accepted (Σa).
    pub accepted: u64,
    /// accepted / drafted (0 when nothing was drafted).
    pub acceptance_rate: f64,
    /// τ = 1 + accepted / rounds (1 when there were no rounds).
    pub mean_acceptance_length: f64,
    /// Entry i = rounds whose (i+1)-th draft token was accepted.
    pub accepted_per_position: Vec<u64>,
    /// Entry i = rounds that drafted at least i+1 tokens.
    pub drafted_per_position: Vec<u64>,
    /// Entry a = rounds that accepted exactly a draft tokens.
    pub accepted_length_histogram: Vec<u64>,
    /// drafted / generated tokens.
    pub draft_tokens_per_generated_token: f64,
    /// Time in the drafter's `draft` (ms).
    pub draft_ms: f64,
    /// Time in target forwards of the decode phase (ms).
    pub verify_ms: f64,
    /// Time rolling back the target's and the drafter's caches (ms).
    pub rollback_ms: f64,
    /// Time turning logits into tokens and applying the acceptance rule (ms).
    pub sampling_ms: f64,
    /// Mode-specific details (e.g. `reset_per_request`, ngram-mod resets), free-form.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, serde_json::Value>,
}

impl SpecStats {
    /// Empty statistics for `mode`.
    pub fn new(mode: &str) -> Self {
        Self {
            mode: mode.to_string(),
            mean_acceptance_length: 1.0,
            ..Self::default()
        }
    }

    /// Count one round that verified `n_drafted ≥ 1` tokens and accepted `n_accepted` of them.
    pub fn record_round(&mut self, n_drafted: usize, n_accepted: usize) {
        debug_assert!(n_accepted <= n_drafted);
        self.rounds += 1;
        self.drafted += n_drafted as u64;
        self.accepted += n_accepted as u64;
        grow(&mut self.drafted_per_position, n_drafted);
        grow(&mut self.accepted_per_position, n_drafted);
        grow(&mut self.accepted_length_histogram, n_drafted + 1);
        for slot in &mut self.drafted_per_position[..n_drafted] {
            *slot += 1;
        }
        for slot in &mut self.accepted_per_position[..n_accepted] {
            *slot += 1;
        }
        self.accepted_length_histogram[n_accepted] += 1;
    }

    /// Compute the derived ratios once the request has produced `n_generated` tokens.
    pub fn finish(&mut self, n_generated: usize) {
        self.acceptance_rate = ratio(self.accepted, self.drafted);
        self.mean_acceptance_length = 1.0 + ratio(self.accepted, self.rounds);
        self.draft_tokens_per_generated_token = ratio(self.drafted, n_generated as u64);
    }

    /// Per-position acceptance rate p_i = `accepted_per_position[i]` / rounds (non-increasing).
    pub fn acceptance_rate_per_position(&self) -> Vec<f64> {
        self.accepted_per_position
            .iter()
            .map(|&n| ratio(n, self.rounds))
            .collect()
    }
}

fn grow(v: &mut Vec<u64>, len: usize) {
    if v.len() < len {
        v.resize(len, 0);
    }
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_follow_the_reference_definitions() {
        let mut s = SpecStats::new("ngram-mod");
        s.record_round(3, 3);
        s.record_round(3, 1);
        s.record_round(1, 0);
        s.finish(9); // Σ(a+1) = 4 + 2 + 1 over the rounds plus 2 plain steps
        assert_eq!((s.rounds, s.drafted, s.accepted), (3, 7, 4));
        assert_eq!(s.drafted_per_position, vec![3, 2, 2]);
        assert_eq!(s.accepted_per_position, vec![2, 1, 1]);
        assert_eq!(s.accepted_length_histogram, vec![1, 1, 0, 1]);
        assert!((s.acceptance_rate - 4.0 / 7.0).abs() < 1e-12);
        assert!((s.mean_acceptance_length - (1.0 + 4.0 / 3.0)).abs() < 1e-12);
        assert!((s.draft_tokens_per_generated_token - 7.0 / 9.0).abs() < 1e-12);
        let p = s.acceptance_rate_per_position();
        assert!(p.windows(2).all(|w| w[0] >= w[1]), "{p:?}");
    }

    #[test]
    fn no_rounds_gives_tau_one_and_zero_rate() {
        let mut s = SpecStats::new("ngram-simple");
        s.finish(10);
        assert_eq!(s.acceptance_rate, 0.0);
        assert_eq!(s.mean_acceptance_length, 1.0);
        assert_eq!(s.draft_tokens_per_generated_token, 0.0);
    }

    #[test]
    fn serialises_with_the_schema_field_names() {
        let json = serde_json::to_value(SpecStats::new("draft")).unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        for name in [
            "mode",
            "rounds",
            "drafted",
            "accepted",
            "acceptance_rate",
            "mean_acceptance_length",
            "accepted_per_position",
            "drafted_per_position",
            "accepted_length_histogram",
            "draft_tokens_per_generated_token",
            "draft_ms",
            "verify_ms",
            "rollback_ms",
            "sampling_ms",
        ] {
            assert!(keys.contains(&name), "missing {name}");
        }
        assert_eq!(keys.len(), 14, "`extra` is skipped when empty");
    }
}
