//! The statistics behind every number in a report, compare or gate.
//!
//! - Location and spread: median, mean, sample standard deviation and quantiles come from statrs
//!   (`Data`/`OrderStatistics`, whose quantile is Hyndman & Fan's type 8, the median-unbiased one).
//! - Confidence intervals: the percentile bootstrap (Efron & Tibshirani 1993, ch. 13), seeded,
//!   so the same input always gives the same interval. Speedups use a *paired* bootstrap: the
//!   (spec, baseline) pairs of one prompt and repetition are resampled together, and the statistic
//!   is the ratio of medians.
//! - Proportions: the Wilson score interval (Wilson 1927) with the normal quantile from statrs.
//! - Tests: the one-sided Mann–Whitney U test with the normal approximation, average ranks for ties
//!   and the tie-corrected variance (ranks from statrs), and Holm's step-down correction (Holm 1979)
//!   for testing many cells at once; for paired samples the one-sided sign test with the exact
//!   binomial tail from statrs (Dixon & Mood 1946).

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use statrs::distribution::{Binomial, ContinuousCDF, DiscreteCDF, Normal};
use statrs::statistics::{Data, OrderStatistics, RankTieBreaker, Statistics};

/// A point estimate with a confidence interval `[lo, hi]`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Estimate {
    pub point: f64,
    pub lo: f64,
    pub hi: f64,
}

impl Estimate {
    /// An estimate with no interval information (all three NaN).
    pub const NAN: Estimate = Estimate {
        point: f64::NAN,
        lo: f64::NAN,
        hi: f64::NAN,
    };
}

/// Settings of the percentile bootstrap.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bootstrap {
    /// Number of resamples.
    pub resamples: usize,
    /// Confidence level of the interval, e.g. 0.95.
    pub confidence: f64,
    /// Seed of the resampling RNG.
    pub seed: u64,
}

impl Default for Bootstrap {
    fn default() -> Self {
        Bootstrap {
            resamples: 10_000,
            confidence: 0.95,
            seed: 0x5eed,
        }
    }
}

/// Median of `xs` (NaN when empty).
pub fn median(xs: &[f64]) -> f64 {
    Data::new(xs.to_vec()).median()
}

/// Arithmetic mean of `xs` (NaN when empty).
pub fn mean(xs: &[f64]) -> f64 {
    xs.mean()
}

/// Sample standard deviation (n − 1 denominator) of `xs` (NaN with fewer than two values).
pub fn std_dev(xs: &[f64]) -> f64 {
    xs.std_dev()
}

/// Quantile `tau` in [0, 1] of `xs` (statrs type 8; NaN when empty).
pub fn quantile(xs: &[f64], tau: f64) -> f64 {
    Data::new(xs.to_vec()).quantile(tau)
}

/// Maximum of `xs` (NaN when empty).
pub fn max(xs: &[f64]) -> f64 {
    if xs.is_empty() {
        f64::NAN
    } else {
        Statistics::max(xs)
    }
}

/// The `(lo, hi)` percentiles of a bootstrap distribution for the given confidence.
fn percentile_interval(mut stats: Vec<f64>, confidence: f64) -> (f64, f64) {
    stats.retain(|x| x.is_finite());
    let alpha = 1.0 - confidence;
    let mut data = Data::new(stats);
    (data.quantile(alpha / 2.0), data.quantile(1.0 - alpha / 2.0))
}

/// Percentile-bootstrap CI of the median of `xs`.
pub fn median_ci(xs: &[f64], cfg: &Bootstrap) -> Estimate {
    if xs.is_empty() {
        return Estimate::NAN;
    }
    let point = median(xs);
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut buf = vec![0.0; xs.len()];
    let stats: Vec<f64> = (0..cfg.resamples)
        .map(|_| {
            for slot in buf.iter_mut() {
                *slot = xs[rng.random_range(0..xs.len())];
            }
            Data::new(buf.as_mut_slice()).median()
        })
        .collect();
    let (lo, hi) = percentile_interval(stats, cfg.confidence);
    Estimate { point, lo, hi }
}

/// Paired-bootstrap CI of `median(num) / median(den)`, resampling index pairs `(num[i], den[i])`.
///
/// Used for the speedup of a speculative arm over its paired baseline (same prompt, same
/// repetition). `num` and `den` must have the same length; NaN when empty or mismatched.
pub fn paired_ratio_of_medians(num: &[f64], den: &[f64], cfg: &Bootstrap) -> Estimate {
    if num.is_empty() || num.len() != den.len() {
        return Estimate::NAN;
    }
    let point = median(num) / median(den);
    let n = num.len();
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let (mut a, mut b) = (vec![0.0; n], vec![0.0; n]);
    let stats: Vec<f64> = (0..cfg.resamples)
        .map(|_| {
            for k in 0..n {
                let i = rng.random_range(0..n);
                a[k] = num[i];
                b[k] = den[i];
            }
            Data::new(a.as_mut_slice()).median() / Data::new(b.as_mut_slice()).median()
        })
        .collect();
    let (lo, hi) = percentile_interval(stats, cfg.confidence);
    Estimate { point, lo, hi }
}

/// Bootstrap CI of the relative change `median(new) / median(old) − 1` of two independent
/// samples (each resampled on its own), as criterion does for a benchmark against its baseline.
pub fn relative_change_of_medians(old: &[f64], new: &[f64], cfg: &Bootstrap) -> Estimate {
    if old.is_empty() || new.is_empty() {
        return Estimate::NAN;
    }
    let point = median(new) / median(old) - 1.0;
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let (mut a, mut b) = (vec![0.0; old.len()], vec![0.0; new.len()]);
    let stats: Vec<f64> = (0..cfg.resamples)
        .map(|_| {
            for slot in a.iter_mut() {
                *slot = old[rng.random_range(0..old.len())];
            }
            for slot in b.iter_mut() {
                *slot = new[rng.random_range(0..new.len())];
            }
            Data::new(b.as_mut_slice()).median() / Data::new(a.as_mut_slice()).median() - 1.0
        })
        .collect();
    let (lo, hi) = percentile_interval(stats, cfg.confidence);
    Estimate { point, lo, hi }
}

/// Wilson score interval of a binomial proportion `successes / trials` at `confidence`.
///
/// NaN when `trials` is zero.
pub fn wilson(successes: u64, trials: u64, confidence: f64) -> Estimate {
    if trials == 0 {
        return Estimate::NAN;
    }
    let n = trials as f64;
    let p = successes as f64 / n;
    let z = standard_normal().inverse_cdf(1.0 - (1.0 - confidence) / 2.0);
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = z / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Estimate {
        point: p,
        lo: (center - half).max(0.0),
        hi: (center + half).min(1.0),
    }
}

fn standard_normal() -> Normal {
    // Mean 0 and standard deviation 1 are valid parameters: this cannot fail.
    Normal::standard()
}

/// One-sided Mann–Whitney U test: p-value of "`x` tends to be smaller than `y`".
///
/// Normal approximation with a continuity correction, average ranks for ties and the
/// tie-corrected variance. Returns 1 when either sample is empty or all values are equal.
pub fn mann_whitney_less(x: &[f64], y: &[f64]) -> f64 {
    let (nx, ny) = (x.len() as f64, y.len() as f64);
    if x.is_empty() || y.is_empty() {
        return 1.0;
    }
    let combined: Vec<f64> = x.iter().chain(y.iter()).copied().collect();
    let ranks = Data::new(combined.clone()).ranks(RankTieBreaker::Average);
    let rank_sum_x: f64 = ranks[..x.len()].iter().sum();
    let u_x = rank_sum_x - nx * (nx + 1.0) / 2.0;
    let n = nx + ny;
    // Tie correction: Σ (t³ − t) over groups of equal values.
    let mut sorted = combined;
    sorted.sort_by(f64::total_cmp);
    let mut ties = 0.0;
    let mut i = 0;
    while i < sorted.len() {
        let mut j = i + 1;
        while j < sorted.len() && sorted[j] == sorted[i] {
            j += 1;
        }
        let t = (j - i) as f64;
        ties += t * t * t - t;
        i = j;
    }
    let variance = nx * ny / 12.0 * ((n + 1.0) - ties / (n * (n - 1.0)));
    if variance <= 0.0 || !variance.is_finite() {
        return 1.0;
    }
    let z = (u_x - nx * ny / 2.0 + 0.5) / variance.sqrt();
    standard_normal().cdf(z)
}

/// One-sided sign test on pairs `(x[i], y[i])`: p-value of "x tends to be smaller than y".
///
/// Ties are dropped; p = P(B ≥ k) for B ~ Binomial(n, ½), k = pairs with x < y, n = untied pairs.
/// Returns 1 when there is no untied pair.
pub fn sign_test_less(x: &[f64], y: &[f64]) -> f64 {
    let below = x.iter().zip(y).filter(|(a, b)| a < b).count() as u64;
    let above = x.iter().zip(y).filter(|(a, b)| a > b).count() as u64;
    let n = below + above;
    if n == 0 || below == 0 {
        return 1.0;
    }
    match Binomial::new(0.5, n) {
        Ok(b) => b.sf(below - 1),
        Err(_) => 1.0,
    }
}

/// Holm's step-down adjustment: adjusted p-values, in the input order, monotone and capped at 1.
pub fn holm(p_values: &[f64]) -> Vec<f64> {
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p_values[a].total_cmp(&p_values[b]));
    let mut adjusted = vec![1.0; m];
    let mut running = 0.0_f64;
    for (rank, &index) in order.iter().enumerate() {
        let scaled = ((m - rank) as f64 * p_values[index]).min(1.0);
        running = running.max(scaled);
        adjusted[index] = running;
    }
    adjusted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn location_and_spread_match_hand_values() {
        let xs = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(median(&xs), 2.5);
        assert_eq!(mean(&xs), 2.5);
        // Σ(x − 2.5)² = 5, / (n − 1) = 5/3.
        assert!(close(std_dev(&xs), (5.0f64 / 3.0).sqrt(), 1e-12));
        assert_eq!(max(&xs), 4.0);
        assert!(median(&[]).is_nan());
        // Type 8: h = (n + 1/3)·τ + 1/3 = 4/3·... for τ = 0.5, n = 4: h = 2.5 → 2 + 0.5·(3 − 2).
        assert!(close(quantile(&xs, 0.5), 2.5, 1e-12));
        // τ = 0.9: h = 4.333·0.9 + 0.333 = 4.233 ≥ n → max.
        assert_eq!(quantile(&xs, 0.9), 4.0);
    }

    #[test]
    fn wilson_matches_published_interval() {
        // 8 of 10 at 95 %: the textbook Wilson interval is [0.4902, 0.9433].
        let e = wilson(8, 10, 0.95);
        assert!(close(e.point, 0.8, 1e-12));
        assert!(close(e.lo, 0.4902, 5e-4), "{e:?}");
        assert!(close(e.hi, 0.9433, 5e-4), "{e:?}");
        // 0 of 20: the lower bound is exactly 0 and the upper one z²/(n + z²).
        let e = wilson(0, 20, 0.95);
        let z2 = 1.959_963_984_540_054_f64.powi(2);
        assert!(close(e.lo, 0.0, 1e-12), "{e:?}");
        assert!(close(e.hi, z2 / (20.0 + z2), 1e-9), "{e:?}");
        assert!(wilson(0, 0, 0.95).point.is_nan());
    }

    #[test]
    fn bootstrap_median_ci_is_seeded_and_brackets_the_point() {
        let xs: Vec<f64> = (0..50).map(|i| 100.0 + (i * 37 % 23) as f64).collect();
        let cfg = Bootstrap::default();
        let a = median_ci(&xs, &cfg);
        let b = median_ci(&xs, &cfg);
        assert_eq!(a, b);
        assert!(a.lo <= a.point && a.point <= a.hi, "{a:?}");
        assert!(a.hi - a.lo > 0.0);
        let constant = median_ci(&[5.0; 8], &cfg);
        assert_eq!((constant.lo, constant.point, constant.hi), (5.0, 5.0, 5.0));
    }

    #[test]
    fn bootstrap_of_the_mean_approaches_the_normal_interval() {
        // For a smooth statistic with many samples the percentile bootstrap approaches
        // mean ± z·s/√n; check the median-of-a-symmetric-sample version of it loosely through the
        // ratio statistic: ratio of medians of identical samples paired is exactly 1.
        let xs: Vec<f64> = (0..200).map(|i| ((i * 7919) % 1000) as f64).collect();
        let e = paired_ratio_of_medians(&xs, &xs, &Bootstrap::default());
        assert_eq!((e.lo, e.point, e.hi), (1.0, 1.0, 1.0));
        let doubled: Vec<f64> = xs.iter().map(|x| 2.0 * x).collect();
        let e = paired_ratio_of_medians(&doubled, &xs, &Bootstrap::default());
        assert!(close(e.point, 2.0, 1e-12) && close(e.lo, 2.0, 1e-9) && close(e.hi, 2.0, 1e-9));
    }

    #[test]
    fn relative_change_detects_a_shift() {
        let old: Vec<f64> = (0..40).map(|i| 100.0 + (i % 7) as f64).collect();
        let new: Vec<f64> = old.iter().map(|x| x * 0.8).collect();
        let e = relative_change_of_medians(&old, &new, &Bootstrap::default());
        assert!(close(e.point, -0.2, 1e-12), "{e:?}");
        assert!(e.hi < 0.0 && e.lo > -0.3, "{e:?}");
    }

    #[test]
    fn mann_whitney_matches_hand_computation() {
        // x entirely below y: U = 0, mean 4.5, var = 3·3/12·7 = 5.25.
        let p = mann_whitney_less(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]);
        let z = (0.0 - 4.5 + 0.5) / 5.25f64.sqrt();
        assert!(close(p, Normal::standard().cdf(z), 1e-12));
        assert!(close(p, 0.0404, 1e-3), "{p}");
        // With ties: x = [1, 2, 2], y = [2, 3, 4]; ranks 1, 3, 3 | 3, 5, 6 → U = 7 − 6 = 1.
        // Ties: one group of 3 → Σ(t³ − t) = 24; var = 9/12·(7 − 24/30) = 4.65.
        let p = mann_whitney_less(&[1.0, 2.0, 2.0], &[2.0, 3.0, 4.0]);
        let z = (1.0 - 4.5 + 0.5) / 4.65f64.sqrt();
        assert!(close(p, Normal::standard().cdf(z), 1e-12), "{p}");
        assert_eq!(mann_whitney_less(&[1.0; 4], &[1.0; 4]), 1.0);
        assert_eq!(mann_whitney_less(&[], &[1.0]), 1.0);
    }

    #[test]
    fn sign_test_matches_the_binomial_tail() {
        // 5 of 6 untied pairs below (one tie dropped): P(B ≥ 5 | n = 6) = (6 + 1) / 64.
        let x = [1.0, 1.0, 1.0, 1.0, 1.0, 3.0, 2.0];
        let y = [2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0];
        assert!(close(sign_test_less(&x, &y), 7.0 / 64.0, 1e-12));
        assert!(close(
            sign_test_less(&[1.0; 10], &[2.0; 10]),
            0.5f64.powi(10),
            1e-15
        ));
        assert_eq!(sign_test_less(&[2.0; 3], &[1.0; 3]), 1.0);
        assert_eq!(sign_test_less(&[1.0; 3], &[1.0; 3]), 1.0);
    }

    #[test]
    fn holm_matches_hand_computation() {
        let adjusted = holm(&[0.01, 0.04, 0.03, 0.005]);
        let expected = [0.03, 0.06, 0.06, 0.02];
        for (a, e) in adjusted.iter().zip(expected) {
            assert!(close(*a, e, 1e-12), "{adjusted:?}");
        }
        // [0.5, 0.2]: 0.2·2 = 0.4, then max(0.4, 0.5·1) = 0.5.
        assert_eq!(holm(&[0.5, 0.2]), vec![0.5, 0.4]);
        assert_eq!(holm(&[0.9, 0.8]), vec![1.0, 1.0]);
        assert!(holm(&[]).is_empty());
    }
}
