//! The speculative generation loop — the one place where a round is verified and the caches are
//! rolled back (shared/reference/speculation.md §0, llama.cpp `speculative-simple`).
//!
//! Per round: the drafter proposes k ≤ n_max tokens; the target runs once over
//! [last token, d_1..d_k] and yields k+1 rows; [`super::verify`] accepts a prefix of a drafts and
//! contributes one token; the target's cache is truncated to keep [last token, d_1..d_a]; the
//! drafter rolls back its own state in `accept(a)` and mirrors the kept tokens in `process`.
//! An empty draft makes the step a plain decode step (not a round). A round never drafts more
//! tokens than remain to be generated or fit in the target's cache, so the emitted tokens are
//! exactly plain decoding's under greedy and follow the target's distribution when sampling.
//!
//! Timing follows plain generation: ttft is the prefill plus the first token; each later token's
//! latency is its round's wall time split evenly over the tokens the round emitted.

use std::time::Instant;

use rand::Rng;

use super::verify::draw;
use super::verify::{Verdict, verify_greedy, verify_rejection, verify_sample_and_match};
use super::{Drafter, SpecStats, VerifyRule};
use crate::sampling::{Sampling, argmax, probabilities};
use crate::{EngineError, Result};

/// The target's output for a batch of `n` tokens.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetOutput {
    /// `n × vocab` logits, row-major.
    pub logits: Vec<f32>,
    /// `n × d` hidden rows when requested (the rows the MTP head consumes).
    pub hidden: Option<Vec<f32>>,
}

/// A model with a caller-visible, truncatable cache: the loop's view of the target (and of a
/// draft model).
pub trait Target {
    /// Vocabulary size (columns of the logits).
    fn vocab_size(&self) -> usize;
    /// Positions currently in the cache.
    fn len(&self) -> usize;
    /// Whether the cache is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Positions the cache can hold.
    fn capacity(&self) -> usize;
    /// Append `tokens` to the cache and return one row of logits per token (and hidden rows if
    /// `want_hidden`).
    fn forward(&mut self, tokens: &[u32], want_hidden: bool) -> Result<TargetOutput>;
    /// Like `forward`, but only the last row of logits is needed (the prompt); hidden rows, when
    /// requested, are still returned for every token.
    fn prefill(&mut self, tokens: &[u32], want_hidden: bool) -> Result<TargetOutput> {
        let mut out = self.forward(tokens, want_hidden)?;
        let vocab = self.vocab_size();
        let n = out.logits.len();
        if n >= vocab {
            out.logits.drain(..n - vocab);
        }
        Ok(out)
    }
    /// Keep the first `len` positions; a `len` beyond the current length is an error.
    fn truncate(&mut self, len: usize) -> Result<()>;
}

/// Options of one speculative request.
#[derive(Debug, Clone, PartialEq)]
pub struct LoopOptions {
    /// Tokens to generate at most.
    pub max_new_tokens: usize,
    /// Generation stops after emitting any of these (the stop token is kept in the output).
    pub stop_tokens: Vec<u32>,
    /// The target's sampler.
    pub sampling: Sampling,
    /// Acceptance rule when sampling.
    pub verify: VerifyRule,
    /// Longest draft per round.
    pub draft_max: usize,
}

/// The result of one speculative request.
#[derive(Debug, Clone, PartialEq)]
pub struct LoopOutput {
    /// Generated tokens (without the prompt).
    pub tokens: Vec<u32>,
    /// Prefill time (ms): the forward over the prompt.
    pub prefill_ms: f64,
    /// Per generated token: its latency (ms). Entry 0 is the time to first token.
    pub token_ms: Vec<f64>,
    /// Round statistics (ratios computed).
    pub stats: SpecStats,
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

fn check_logits(out: &TargetOutput, n: usize, vocab: usize) -> Result<()> {
    if out.logits.len() != n * vocab {
        return Err(EngineError::Shape {
            tensor: "logits".to_string(),
            expected: vec![n, vocab],
            got: vec![out.logits.len()],
        });
    }
    Ok(())
}

/// Pick the token of one row (plain decoding's rule).
fn pick<R: Rng + ?Sized>(row: &[f32], sampling: &Sampling, rng: &mut R) -> u32 {
    match sampling {
        Sampling::Greedy => argmax(row),
        s => draw(&probabilities(row, s), rng),
    }
}

/// Verify `drafts` against the target's `logits` ((k+1) × vocab).
fn verify_round<R: Rng + ?Sized>(
    drafts: &[u32],
    draft_probs: Option<&[f32]>,
    logits: &[f32],
    vocab: usize,
    opts: &LoopOptions,
    rng: &mut R,
) -> Verdict {
    if matches!(opts.sampling, Sampling::Greedy) {
        let target: Vec<u32> = logits.chunks_exact(vocab).map(argmax).collect();
        return verify_greedy(drafts, &target);
    }
    let probs: Vec<f32> = logits
        .chunks_exact(vocab)
        .flat_map(|row| probabilities(row, &opts.sampling))
        .collect();
    match opts.verify {
        VerifyRule::Rejection => verify_rejection(drafts, draft_probs, &probs, vocab, rng),
        VerifyRule::SampleAndMatch => verify_sample_and_match(drafts, &probs, vocab, rng),
    }
}

/// Generate up to `opts.max_new_tokens` tokens after `prompt` with speculative decoding.
/// The target's cache must be empty; `rng` draws every sample (target and verification).
pub fn speculative_loop<T, D, R>(
    target: &mut T,
    drafter: &mut D,
    prompt: &[u32],
    opts: &LoopOptions,
    rng: &mut R,
) -> Result<LoopOutput>
where
    T: Target + ?Sized,
    D: Drafter + ?Sized,
    R: Rng + ?Sized,
{
    if prompt.is_empty() {
        return Err(EngineError::Invalid("the prompt is empty".to_string()));
    }
    if !target.is_empty() {
        return Err(EngineError::Invalid(format!(
            "speculative generation needs an empty cache, it holds {} positions",
            target.len()
        )));
    }
    let vocab = target.vocab_size();
    let want_hidden = drafter.needs_hidden();
    let mut stats = SpecStats::new(drafter.name());
    let mut out = LoopOutput {
        tokens: Vec::new(),
        prefill_ms: 0.0,
        token_ms: Vec::new(),
        stats: SpecStats::default(),
    };
    if opts.max_new_tokens == 0 {
        out.stats = stats;
        return Ok(out);
    }

    let start = Instant::now();
    drafter.begin(prompt)?;
    let prefill = target.prefill(prompt, want_hidden)?;
    check_logits(&prefill, 1, vocab)?;
    out.prefill_ms = ms(start);
    let mut last = pick(&prefill.logits, &opts.sampling, rng);
    drafter.process(prompt, prefill.hidden.as_deref())?;
    out.tokens.push(last);
    out.token_ms.push(ms(start));
    let mut history: Vec<u32> = prompt.to_vec();
    history.push(last);

    while out.tokens.len() < opts.max_new_tokens && !opts.stop_tokens.contains(&last) {
        let round_start = Instant::now();
        let remaining = opts.max_new_tokens - out.tokens.len();
        // Room after `last` itself: the round writes 1 + k positions.
        let room = target
            .capacity()
            .saturating_sub(target.len())
            .saturating_sub(1);
        let n_max = opts.draft_max.min(remaining - 1).min(room);

        let t = Instant::now();
        let mut draft = if n_max > 0 {
            drafter.draft(&history, n_max)?
        } else {
            super::Draft::empty()
        };
        stats.draft_ms += ms(t);
        if draft.tokens.len() > n_max {
            draft.tokens.truncate(n_max);
            if let Some(p) = draft.probs.as_mut() {
                p.truncate(n_max * vocab);
            }
        }
        if let Some(&bad) = draft.tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(EngineError::TokenOutOfRange { id: bad, vocab });
        }
        let k = draft.tokens.len();
        if let Some(p) = &draft.probs
            && p.len() != k * vocab
        {
            return Err(EngineError::Shape {
                tensor: "draft probabilities".to_string(),
                expected: vec![k, vocab],
                got: vec![p.len()],
            });
        }

        let len_before = target.len();
        let mut batch = Vec::with_capacity(k + 1);
        batch.push(last);
        batch.extend_from_slice(&draft.tokens);
        let t = Instant::now();
        let result = target.forward(&batch, want_hidden)?;
        check_logits(&result, batch.len(), vocab)?;
        stats.verify_ms += ms(t);

        let t = Instant::now();
        let verdict = verify_round(
            &draft.tokens,
            draft.probs.as_deref(),
            &result.logits,
            vocab,
            opts,
            rng,
        );
        stats.sampling_ms += ms(t);
        let a = verdict.n_accepted;

        if k > 0 {
            let t = Instant::now();
            target.truncate(len_before + 1 + a)?;
            drafter.accept(a)?;
            stats.rollback_ms += ms(t);
            stats.record_round(k, a);
        }
        let t = Instant::now();
        let hidden = match &result.hidden {
            Some(h) => {
                let d = h.len() / batch.len();
                Some(&h[..(a + 1) * d])
            }
            None => None,
        };
        drafter.process(&batch[..a + 1], hidden)?;
        stats.draft_ms += ms(t);

        let mut emitted: Vec<u32> = draft.tokens[..a].to_vec();
        emitted.push(verdict.next_token);
        let mut n_emitted = 0;
        for tok in emitted {
            out.tokens.push(tok);
            history.push(tok);
            last = tok;
            n_emitted += 1;
            if out.tokens.len() == opts.max_new_tokens || opts.stop_tokens.contains(&tok) {
                break;
            }
        }
        let per_token = ms(round_start) / n_emitted as f64;
        out.token_ms
            .extend(std::iter::repeat_n(per_token, n_emitted));
    }

    stats.finish(out.tokens.len());
    stats.extra = drafter.extra_stats();
    out.stats = stats;
    Ok(out)
}
