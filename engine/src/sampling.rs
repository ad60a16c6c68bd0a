//! Token selection outside the model: greedy argmax, or temperature / top-k / top-p (nucleus,
//! Holtzman et al. 2019) sampling with an explicit seed. Filters apply in Hugging Face's order
//! (temperature, then top-k, then top-p). The probability functions are pure so the speculative
//! verifier can reuse them.

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::error::{EngineError, Result};

/// How to pick the next token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// Highest logit (first index on ties, like `torch.argmax`).
    Greedy,
    /// Draw from the filtered distribution.
    Sample {
        temperature: f32,
        top_k: Option<usize>,
        top_p: Option<f32>,
        seed: u64,
    },
}

impl Sampling {
    /// Reject temperatures ≤ 0, top-k = 0 and top-p outside (0, 1].
    pub fn validate(&self) -> Result<()> {
        if let Sampling::Sample {
            temperature,
            top_k,
            top_p,
            ..
        } = *self
        {
            if !(temperature > 0.0 && temperature.is_finite()) {
                return Err(EngineError::Invalid(format!(
                    "temperature must be > 0, got {temperature}"
                )));
            }
            if top_k == Some(0) {
                return Err(EngineError::Invalid("top-k must be at least 1".into()));
            }
            if let Some(p) = top_p
                && !(p > 0.0 && p <= 1.0)
            {
                return Err(EngineError::Invalid(format!(
                    "top-p must be in (0, 1], got {p}"
                )));
            }
        }
        Ok(())
    }
}

/// Index of the largest logit (first on ties; NaN never wins).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > best_v {
            best_v = v;
            best = i;
        }
    }
    best as u32
}

/// The greedy token of `logits` and its probability under a softmax (T = 1) restricted to the
/// `k` largest logits — what `probabilities(logits, top_k = k)` gives that token, in one pass
/// over the vocabulary without materialising the distribution: the draft models' `p_min` test
/// (llama.cpp's top-10 draft sampling), which runs for every drafted token.
pub fn top_k_probability(logits: &[f32], k: usize) -> (u32, f32) {
    let top = argmax(logits);
    let Some(&max) = logits.get(top as usize) else {
        return (0, 0.0);
    };
    // the k largest logits, descending (ties: any of equal value, the sum is the same)
    let mut best: Vec<f32> = Vec::with_capacity(k + 1);
    for &l in logits {
        if best.len() == k && best.last().is_none_or(|&last| l.total_cmp(&last).is_le()) {
            continue;
        }
        let at = best.partition_point(|&b| b.total_cmp(&l).is_ge());
        best.insert(at, l);
        best.truncate(k);
    }
    let sum: f32 = best.iter().map(|&l| (l - max).exp()).sum();
    (top, if sum > 0.0 { 1.0 / sum } else { 0.0 })
}

/// `softmax(logits / temperature)`, computed stably.
pub fn softmax_with_temperature(logits: &[f32], temperature: f32) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut probs: Vec<f32> = logits
        .iter()
        .map(|&l| ((l - max) / temperature).exp())
        .collect();
    let sum: f32 = probs.iter().sum();
    if sum > 0.0 {
        probs.iter_mut().for_each(|p| *p /= sum);
    }
    probs
}

/// Token indices sorted by descending probability (stable: lower index first on ties).
fn order(probs: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    idx
}

/// Keep the `k` most probable tokens (lower index first on ties), zero the rest and renormalise.
///
/// A selection, not a sort: the order is total, so the `k` first tokens are the same set a full
/// sort gives, in O(vocab) instead of O(vocab log vocab) — this runs for every drafted token
/// (the draft model's `draft_p_min` check), where sorting 152k probabilities cost milliseconds.
pub fn filter_top_k(probs: &mut [f32], k: usize) {
    if k >= probs.len() {
        return;
    }
    let mut idx: Vec<usize> = (0..probs.len()).collect();
    idx.select_nth_unstable_by(k, |&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
    for &i in &idx[k..] {
        probs[i] = 0.0;
    }
    renormalise(probs);
}

/// Keep the smallest set of most probable tokens whose mass reaches `p` (at least one token),
/// zero the rest and renormalise.
pub fn filter_top_p(probs: &mut [f32], p: f32) {
    if p >= 1.0 {
        return;
    }
    let idx = order(probs);
    let mut mass = 0.0f32;
    let mut keep = 0;
    for &i in &idx {
        if keep > 0 && mass >= p {
            break;
        }
        mass += probs[i];
        keep += 1;
    }
    for &i in &idx[keep..] {
        probs[i] = 0.0;
    }
    renormalise(probs);
}

fn renormalise(probs: &mut [f32]) {
    let sum: f32 = probs.iter().sum();
    if sum > 0.0 {
        probs.iter_mut().for_each(|q| *q /= sum);
    }
}

/// The distribution a sampler draws from: one-hot on the argmax for greedy, else the tempered,
/// top-k then top-p filtered softmax.
pub fn probabilities(logits: &[f32], sampling: &Sampling) -> Vec<f32> {
    match *sampling {
        Sampling::Greedy => {
            let mut p = vec![0.0; logits.len()];
            if !p.is_empty() {
                p[argmax(logits) as usize] = 1.0;
            }
            p
        }
        Sampling::Sample {
            temperature,
            top_k,
            top_p,
            ..
        } => {
            let mut p = softmax_with_temperature(logits, temperature);
            if let Some(k) = top_k {
                filter_top_k(&mut p, k);
            }
            if let Some(tp) = top_p {
                filter_top_p(&mut p, tp);
            }
            p
        }
    }
}

/// Inverse-CDF draw: the first index whose cumulative probability exceeds `u ∈ [0, 1)`.
pub fn sample_index(probs: &[f32], u: f32) -> u32 {
    let mut acc = 0.0f32;
    let mut last_nonzero = 0;
    for (i, &p) in probs.iter().enumerate() {
        if p > 0.0 {
            acc += p;
            last_nonzero = i;
            if u < acc {
                return i as u32;
            }
        }
    }
    last_nonzero as u32
}

/// A sampler with its own seeded RNG (same seed → same tokens).
#[derive(Debug)]
pub struct Sampler {
    sampling: Sampling,
    rng: StdRng,
}

impl Sampler {
    /// A sampler for `sampling` (the seed comes from `Sampling::Sample`; greedy uses none).
    pub fn new(sampling: Sampling) -> Self {
        let seed = match sampling {
            Sampling::Sample { seed, .. } => seed,
            Sampling::Greedy => 0,
        };
        Self {
            sampling,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The sampling settings.
    pub fn sampling(&self) -> &Sampling {
        &self.sampling
    }

    /// A uniform draw in [0, 1) from the sampler's RNG (the speculative verifier's coin).
    pub fn uniform(&mut self) -> f32 {
        self.rng.random::<f32>()
    }

    /// Pick the next token from one row of logits.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        match self.sampling {
            Sampling::Greedy => argmax(logits),
            Sampling::Sample { .. } => {
                let probs = probabilities(logits, &self.sampling);
                let u = self.uniform();
                sample_index(&probs, u)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
    }

    /// The next state of a 64-bit LCG (Knuth's MMIX constants): cheap test values.
    fn lcg(state: &mut u64) -> u64 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *state
    }

    #[test]
    fn top_k_probability_is_the_filtered_softmax_of_the_argmax() {
        let mut state = 11u64;
        for trial in 0..40 {
            let n = 3 + trial * 13;
            // coarse values so ties sit at the k-th place, and a few very negative logits
            let logits: Vec<f32> = (0..n)
                .map(|_| {
                    ((lcg(&mut state) >> 59) as f32 - 16.0)
                        * if trial % 3 == 0 { 4.0 } else { 0.25 }
                })
                .collect();
            for k in [1, 2, 10, n - 1, n, n + 5] {
                let full = probabilities(
                    &logits,
                    &Sampling::Sample {
                        temperature: 1.0,
                        top_k: Some(k),
                        top_p: None,
                        seed: 0,
                    },
                );
                let (tok, p) = top_k_probability(&logits, k);
                assert_eq!(tok, argmax(&logits), "trial {trial} k {k}");
                let want = full[tok as usize];
                assert!(
                    (p - want).abs() <= 1e-6 * want.max(1e-30) + 1e-7,
                    "trial {trial} k {k}: {p} vs {want}"
                );
            }
        }
        assert_eq!(top_k_probability(&[], 10), (0, 0.0));
        assert_eq!(top_k_probability(&[2.0, 2.0], 1), (0, 1.0));
    }

    #[test]
    fn argmax_takes_first_of_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
        assert_eq!(argmax(&[f32::NAN, 0.5]), 1);
    }

    #[test]
    fn top_k_keeps_what_a_full_sort_keeps_ties_by_lower_index() {
        // probabilities on a coarse grid, so many ties sit at the k-th place
        let mut state = 7u64;
        for trial in 0..50 {
            let n = 5 + trial * 7;
            let p: Vec<f32> = (0..n)
                .map(|_| ((lcg(&mut state) >> 60) as f32 + 1.0) / 16.0)
                .collect();
            for k in [1, 2, n / 3, n - 1] {
                let mut got = p.clone();
                filter_top_k(&mut got, k);
                let mut want = p.clone();
                for &i in &order(&p)[k..] {
                    want[i] = 0.0;
                }
                renormalise(&mut want);
                assert_eq!(got, want, "n {n} k {k}");
            }
        }
    }

    #[test]
    fn softmax_and_filters() {
        let logits = [0.0f32, (2.0f32).ln(), (3.0f32).ln(), (4.0f32).ln()];
        let p = softmax_with_temperature(&logits, 1.0);
        assert!(close(&p, &[0.1, 0.2, 0.3, 0.4]));
        let mut k = p.clone();
        filter_top_k(&mut k, 2);
        assert!(close(&k, &[0.0, 0.0, 3.0 / 7.0, 4.0 / 7.0]));
        // top-p 0.5: 0.4 < 0.5 so 0.3 joins; mass 0.7 ≥ 0.5 stops.
        let mut tp = p.clone();
        filter_top_p(&mut tp, 0.5);
        assert!(close(&tp, &[0.0, 0.0, 3.0 / 7.0, 4.0 / 7.0]));
        let mut tp = p.clone();
        filter_top_p(&mut tp, 0.4);
        assert!(close(&tp, &[0.0, 0.0, 0.0, 1.0]));
        // Temperature 2 halves the log-ratios: p ∝ sqrt(1, 2, 3, 4).
        let t = softmax_with_temperature(&logits, 2.0);
        let s: f32 = [1.0f32, 2.0, 3.0, 4.0].iter().map(|v| v.sqrt()).sum();
        assert!(close(
            &t,
            &[1.0 / s, 2f32.sqrt() / s, 3f32.sqrt() / s, 2.0 / s]
        ));
    }

    #[test]
    fn inverse_cdf_and_seeded_sampler() {
        let p = [0.1f32, 0.0, 0.5, 0.4];
        assert_eq!(sample_index(&p, 0.05), 0);
        assert_eq!(sample_index(&p, 0.1), 2);
        assert_eq!(sample_index(&p, 0.99), 3);
        let s = Sampling::Sample {
            temperature: 1.0,
            top_k: None,
            top_p: None,
            seed: 7,
        };
        let logits = [0.1f32, 0.2, 0.3, 0.4, 0.5];
        let a: Vec<u32> = {
            let mut x = Sampler::new(s);
            (0..50).map(|_| x.sample(&logits)).collect()
        };
        let b: Vec<u32> = {
            let mut x = Sampler::new(s);
            (0..50).map(|_| x.sample(&logits)).collect()
        };
        assert_eq!(a, b);
        assert!(a.iter().any(|&t| t != a[0]), "a real distribution varies");
        let k1 = Sampling::Sample {
            temperature: 1.0,
            top_k: Some(1),
            top_p: None,
            seed: 3,
        };
        let mut x = Sampler::new(k1);
        assert!((0..20).all(|_| x.sample(&logits) == 4));
        assert!(
            Sampling::Sample {
                temperature: 0.0,
                top_k: None,
                top_p: None,
                seed: 0
            }
            .validate()
            .is_err()
        );
    }
}
