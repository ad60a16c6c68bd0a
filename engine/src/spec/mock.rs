//! Deterministic tiny models for testing the loop without weights: a "target" whose logits are a
//! hashed function of the last two context tokens (so greedy text falls into repeating cycles that
//! n-gram drafters can exploit), a noisy copy of it as a draft model, and an MTP head that reads
//! the target's hidden rows.

use super::run::{Target, TargetOutput};
use crate::{EngineError, Result};

fn mix(mut x: u64) -> u64 {
    // splitmix64 finaliser.
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn unit(seed: u64, a: u32, b: u32, j: usize) -> f32 {
    let h = mix(seed ^ mix((a as u64) << 32 | b as u64) ^ mix(j as u64 + 17));
    (h >> 40) as f32 / (1u64 << 24) as f32
}

/// Logits after context (a, b): peaked so that sampling at T = 1 is not uniform.
pub fn bigram_logits(
    seed: u64,
    noise_seed: u64,
    noise: f32,
    a: u32,
    b: u32,
    vocab: usize,
) -> Vec<f32> {
    (0..vocab)
        .map(|j| 4.0 * unit(seed, a, b, j).powi(3) + noise * unit(noise_seed, a, b, j))
        .collect()
}

/// A mock model: the cache is the token list itself.
#[derive(Debug, Clone)]
pub struct MockModel {
    pub vocab: usize,
    pub seed: u64,
    pub noise_seed: u64,
    pub noise: f32,
    pub capacity: usize,
    pub tokens: Vec<u32>,
    pub forwards: usize,
}

impl MockModel {
    /// The target.
    pub fn target(vocab: usize, seed: u64) -> Self {
        Self {
            vocab,
            seed,
            noise_seed: 0,
            noise: 0.0,
            capacity: 4096,
            tokens: Vec::new(),
            forwards: 0,
        }
    }

    /// A draft model that agrees with `target(vocab, seed)` more often as `noise` shrinks.
    pub fn draft(vocab: usize, seed: u64, noise: f32) -> Self {
        Self {
            noise_seed: seed ^ 0xD1AF7,
            noise,
            ..Self::target(vocab, seed)
        }
    }

    fn context(&self, i: usize) -> (u32, u32) {
        let a = if i == 0 { u32::MAX } else { self.tokens[i - 1] };
        (a, self.tokens[i])
    }
}

impl Target for MockModel {
    fn vocab_size(&self) -> usize {
        self.vocab
    }
    fn len(&self) -> usize {
        self.tokens.len()
    }
    fn capacity(&self) -> usize {
        self.capacity
    }
    fn forward(&mut self, tokens: &[u32], want_hidden: bool) -> Result<TargetOutput> {
        if self.tokens.len() + tokens.len() > self.capacity {
            return Err(EngineError::CacheFull {
                needed: self.tokens.len() + tokens.len(),
                capacity: self.capacity,
            });
        }
        self.forwards += 1;
        let start = self.tokens.len();
        self.tokens.extend_from_slice(tokens);
        let mut logits = Vec::with_capacity(tokens.len() * self.vocab);
        let mut hidden = Vec::new();
        for i in start..self.tokens.len() {
            let (a, b) = self.context(i);
            logits.extend(bigram_logits(
                self.seed,
                self.noise_seed,
                self.noise,
                a,
                b,
                self.vocab,
            ));
            // Hidden row: the context itself, as the mock MTP head expects.
            hidden.extend([a as f32, b as f32]);
        }
        Ok(TargetOutput {
            logits,
            hidden: want_hidden.then_some(hidden),
        })
    }
    fn truncate(&mut self, len: usize) -> Result<()> {
        if len > self.tokens.len() {
            return Err(EngineError::CacheRollback {
                len: self.tokens.len(),
                requested: len,
            });
        }
        self.tokens.truncate(len);
        Ok(())
    }
}

/// A mock MTP head: given (token x_{p+1}, hidden h_p = (a, b)) it predicts the token after x from
/// the context (b, x) with the target's table plus noise, and outputs the hidden row (b, x).
#[derive(Debug, Clone)]
pub struct MockMtp {
    pub model: MockModel,
    pub entries: usize,
}

impl MockMtp {
    pub fn new(vocab: usize, seed: u64, noise: f32) -> Self {
        Self {
            model: MockModel::draft(vocab, seed, noise),
            entries: 0,
        }
    }
}

impl super::mtp::MtpHead for MockMtp {
    fn vocab_size(&self) -> usize {
        self.model.vocab
    }
    fn len(&self) -> usize {
        self.entries
    }
    fn forward(&mut self, tokens: &[u32], hidden: &[f32]) -> Result<TargetOutput> {
        let m = &self.model;
        let mut logits = Vec::new();
        let mut out_hidden = Vec::new();
        for (i, &x) in tokens.iter().enumerate() {
            let b = hidden[2 * i + 1] as u32;
            logits.extend(bigram_logits(m.seed, m.noise_seed, m.noise, b, x, m.vocab));
            out_hidden.extend([b as f32, x as f32]);
        }
        self.entries += tokens.len();
        Ok(TargetOutput {
            logits,
            hidden: Some(out_hidden),
        })
    }
    fn truncate(&mut self, len: usize) -> Result<()> {
        if len > self.entries {
            return Err(EngineError::CacheRollback {
                len: self.entries,
                requested: len,
            });
        }
        self.entries = len;
        Ok(())
    }
}

/// Plain decoding on a mock (the reference for losslessness).
pub fn plain_greedy(model: &mut MockModel, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut out = Vec::new();
    let mut logits = model.forward(prompt, false).unwrap().logits;
    while out.len() < n {
        let row = &logits[logits.len() - model.vocab..];
        let t = crate::sampling::argmax(row);
        out.push(t);
        logits = model.forward(&[t], false).unwrap().logits;
    }
    out
}
