//! The acceptance rules of speculative decoding, as pure functions over plain slices.
//!
//! A round drafts k tokens d_1..d_k; the target's forward over [last token, d_1..d_k] yields k+1
//! rows. Every rule returns how many drafts were accepted (a) and the one extra token the target
//! contributes (its own token at the first mismatch, or the bonus token when all k pass), so a
//! round emits a+1 tokens (shared/reference/speculation.md §0).
//!
//! - [`verify_greedy`]: longest prefix equal to the target's argmax — token-identical to greedy.
//! - [`verify_rejection`]: Leviathan, Kalman & Matias 2023 / Chen et al. 2023 — accept d_i with
//!   probability min(1, p_i(d_i) / q_i(d_i)), else draw from norm(max(0, p_i − q_i)). For drafters
//!   without probabilities q_i is one-hot at d_i, which is vLLM's n-gram rule: accept with
//!   probability p_i(d_i), else draw from p_i with d_i removed (vllm/v1/sample/rejection_sampler.py).
//! - [`verify_sample_and_match`]: llama.cpp's `common_sampler_sample_and_accept_n` — sample the
//!   target at each position, accept while the sample equals the draft, keep the first differing
//!   sample. Exact for any sampler, accepts less often than the rejection rule at T > 0.
//!
//! The RNG is owned by the caller, so a fixed seed gives a reproducible round.

use rand::{Rng, RngExt};

use crate::sampling::sample_index;

/// Draw an index from non-negative `weights` (need not sum to 1) with the caller's RNG; all-zero
/// weights give 0.
pub fn draw<R: Rng + ?Sized>(weights: &[f32], rng: &mut R) -> u32 {
    let total: f32 = weights.iter().map(|w| w.max(0.0)).sum();
    if total <= 0.0 {
        return 0;
    }
    let u: f32 = rng.random();
    sample_index(weights, u * total)
}

/// The outcome of verifying one draft.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Number of draft tokens accepted (a prefix of the draft), 0..=k.
    pub n_accepted: usize,
    /// The target's token after the accepted prefix: the correction at the first rejected
    /// position, or the bonus token when every draft passed.
    pub next_token: u32,
}

/// Greedy verification. `target_argmax` holds the target's argmax for each of the k+1 rows
/// (row i predicts the token after d_i; row 0 after the last emitted token).
///
/// # Panics
/// Never; a `target_argmax` shorter than `drafts.len() + 1` is a caller bug reported by
/// `debug_assert` and treated as if the missing rows rejected.
pub fn verify_greedy(drafts: &[u32], target_argmax: &[u32]) -> Verdict {
    debug_assert!(target_argmax.len() > drafts.len());
    let n_accepted = drafts
        .iter()
        .zip(target_argmax)
        .take_while(|(d, t)| d == t)
        .count();
    let next_token = target_argmax
        .get(n_accepted)
        .or(target_argmax.last())
        .copied()
        .unwrap_or(0);
    Verdict {
        n_accepted,
        next_token,
    }
}

/// Rejection-sampling verification (Leviathan/Chen).
///
/// - `target_probs`: (k+1) × vocab rows of the target's distribution p_i (already tempered and
///   filtered exactly as plain sampling would).
/// - `draft_probs`: k × vocab rows of the drafter's distribution q_i from which d_i was drawn, or
///   `None` when the drafter is deterministic (q_i one-hot at d_i: the n-gram rule).
pub fn verify_rejection<R: Rng + ?Sized>(
    drafts: &[u32],
    draft_probs: Option<&[f32]>,
    target_probs: &[f32],
    vocab: usize,
    rng: &mut R,
) -> Verdict {
    let k = drafts.len();
    debug_assert_eq!(target_probs.len(), (k + 1) * vocab);
    for (i, &d) in drafts.iter().enumerate() {
        let p_row = &target_probs[i * vocab..(i + 1) * vocab];
        let p = p_row.get(d as usize).copied().unwrap_or(0.0);
        let q_row = draft_probs.map(|q| &q[i * vocab..(i + 1) * vocab]);
        let q = match q_row {
            Some(row) => row.get(d as usize).copied().unwrap_or(0.0),
            None => 1.0,
        };
        let u: f64 = rng.random();
        // Accept with probability min(1, p/q); u < p/q written without the division.
        let accepted = if q > 0.0 {
            u * (q as f64) < p as f64
        } else {
            p > 0.0
        };
        if accepted {
            continue;
        }
        let residual: Vec<f32> = match q_row {
            Some(q_row) => p_row
                .iter()
                .zip(q_row)
                .map(|(&p, &q)| (p - q).max(0.0))
                .collect(),
            None => {
                let mut r = p_row.to_vec();
                if let Some(x) = r.get_mut(d as usize) {
                    *x = 0.0;
                }
                r
            }
        };
        // A zero residual only happens when p ≤ q everywhere, i.e. p = q, where rejection has
        // probability 0; fall back to p for robustness against rounding.
        let next_token = if residual.iter().any(|&r| r > 0.0) {
            draw(&residual, rng)
        } else {
            draw(p_row, rng)
        };
        return Verdict {
            n_accepted: i,
            next_token,
        };
    }
    let bonus = &target_probs[k * vocab..(k + 1) * vocab];
    Verdict {
        n_accepted: k,
        next_token: draw(bonus, rng),
    }
}

/// llama.cpp's sample-and-match: draw t_i ~ p_i at each position, accept while t_i = d_i, and
/// keep the first t_i that differs (or the bonus draw from p_k when all match).
pub fn verify_sample_and_match<R: Rng + ?Sized>(
    drafts: &[u32],
    target_probs: &[f32],
    vocab: usize,
    rng: &mut R,
) -> Verdict {
    let k = drafts.len();
    debug_assert_eq!(target_probs.len(), (k + 1) * vocab);
    for i in 0..=k {
        let t = draw(&target_probs[i * vocab..(i + 1) * vocab], rng);
        if i == k || t != drafts[i] {
            return Verdict {
                n_accepted: i,
                next_token: t,
            };
        }
    }
    unreachable!("the loop returns at i == k")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn check_greedy(drafts: &[u32], target: &[u32], n_accepted: usize, next_token: u32) {
        assert_eq!(
            verify_greedy(drafts, target),
            Verdict {
                n_accepted,
                next_token
            },
            "drafts {drafts:?} target {target:?}"
        );
    }

    #[test]
    fn greedy_table() {
        check_greedy(&[], &[7], 0, 7);
        check_greedy(&[1, 2, 3], &[1, 2, 3, 9], 3, 9); // all pass: bonus token
        check_greedy(&[1, 2, 3], &[1, 5, 3, 9], 1, 5); // mismatch at 2
        check_greedy(&[1, 2, 3], &[4, 2, 3, 9], 0, 4); // first rejected
        check_greedy(&[1, 2, 3], &[1, 2, 4, 9], 2, 4); // a later match does not count
        check_greedy(&[5], &[5, 5], 1, 5);
    }

    /// Rows for a 3-token vocabulary.
    fn rows(rows: &[[f32; 3]]) -> Vec<f32> {
        rows.iter().flatten().copied().collect()
    }

    #[test]
    fn rejection_accepts_certain_tokens_and_emits_bonus() {
        let mut rng = StdRng::seed_from_u64(1);
        let target = rows(&[[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]);
        let q = rows(&[[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);
        for _ in 0..50 {
            let v = verify_rejection(&[1, 2], Some(&q), &target, 3, &mut rng);
            assert_eq!(
                v,
                Verdict {
                    n_accepted: 2,
                    next_token: 0
                }
            );
            let v = verify_rejection(&[1, 2], None, &target, 3, &mut rng);
            assert_eq!(
                v,
                Verdict {
                    n_accepted: 2,
                    next_token: 0
                }
            );
        }
    }

    #[test]
    fn rejection_of_impossible_token_resamples_from_residual() {
        let mut rng = StdRng::seed_from_u64(2);
        // p(1) = 0: the draft is always rejected; the residual max(0, p − q) is p itself here.
        let target = rows(&[[0.5, 0.0, 0.5], [1.0, 0.0, 0.0]]);
        let q = rows(&[[0.0, 1.0, 0.0]]);
        for _ in 0..50 {
            let v = verify_rejection(&[1], Some(&q), &target, 3, &mut rng);
            assert_eq!(v.n_accepted, 0);
            assert_ne!(v.next_token, 1);
        }
    }

    #[test]
    fn ngram_rule_never_resamples_the_rejected_draft() {
        let mut rng = StdRng::seed_from_u64(3);
        let target = rows(&[[0.2, 0.5, 0.3], [1.0, 0.0, 0.0]]);
        let mut accepted: i32 = 0;
        for _ in 0..4000 {
            let v = verify_rejection(&[1], None, &target, 3, &mut rng);
            if v.n_accepted == 1 {
                accepted += 1;
                assert_eq!(v.next_token, 0);
            } else {
                assert_ne!(v.next_token, 1, "the residual excludes the draft token");
            }
        }
        // Acceptance probability p(1) = 0.5; 4000 draws: sd ≈ 32, allow 5 sd.
        assert!((accepted - 2000).abs() < 160, "{accepted}");
    }

    #[test]
    fn rejection_acceptance_probability_is_min_one_p_over_q() {
        let mut rng = StdRng::seed_from_u64(4);
        // p(0) = 0.3, q(0) = 0.6 → accept with 0.5; residual = (0, 0.3, 0.1)/0.4 never gives 0.
        let target = rows(&[[0.3, 0.4, 0.3], [0.0, 0.0, 1.0]]);
        let q = rows(&[[0.6, 0.1, 0.3]]);
        let mut accepted: i32 = 0;
        let mut residual = [0u32; 3];
        for _ in 0..8000 {
            let v = verify_rejection(&[0], Some(&q), &target, 3, &mut rng);
            if v.n_accepted == 1 {
                accepted += 1;
                assert_eq!(v.next_token, 2);
            } else {
                residual[v.next_token as usize] += 1;
            }
        }
        assert!((accepted - 4000).abs() < 230, "{accepted}"); // sd ≈ 45
        assert_eq!(residual[0], 0);
        assert_eq!(residual[2], 0, "max(0, 0.3 − 0.3) = 0 for token 2");
    }

    #[test]
    fn sample_and_match_stops_at_first_differing_sample() {
        let mut rng = StdRng::seed_from_u64(5);
        let target = rows(&[[0.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);
        for _ in 0..20 {
            let v = verify_sample_and_match(&[1, 2], &target, 3, &mut rng);
            assert_eq!(
                v,
                Verdict {
                    n_accepted: 1,
                    next_token: 1
                }
            );
            let v = verify_sample_and_match(&[1, 1], &target, 3, &mut rng);
            assert_eq!(
                v,
                Verdict {
                    n_accepted: 2,
                    next_token: 2
                }
            );
            let v = verify_sample_and_match(&[], &target[6..], 3, &mut rng);
            assert_eq!(
                v,
                Verdict {
                    n_accepted: 0,
                    next_token: 2
                }
            );
        }
    }
}
