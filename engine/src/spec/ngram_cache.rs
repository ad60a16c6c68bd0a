//! `ngram-cache`: llama.cpp's lookup decoding (`common/ngram-cache.cpp`, `examples/lookup`;
//! shared/reference/speculation.md §1.3, llama.cpp 88a39274e).
//!
//! Three n-gram → {next token → count} tables: the *context* cache built from the current
//! history for n = 1..4, an optional *dynamic* cache loaded from `--lookup-cache-dynamic` and an
//! optional *static* cache (2-grams over a corpus) from `--lookup-cache-static`. Drafting is
//! greedy, token by token, up to n_draft (8, hard-coded in llama-server): for n = 4 down to 1 try
//! the context cache with the lax thresholds, then the dynamic cache with the strict thresholds,
//! then the static cache alone; a candidate's score is count × (100·static count if the static
//! 2-gram distribution contains it, else 1); the best is taken only if the n-gram's total count
//! reaches `min_samples[n]` and 100·count_best ≥ `min_pct[n]`·total. Ties go to the lowest token id
//! (llama.cpp's iteration order over an `unordered_map` is unspecified).
//!
//! # Cache file format
//! llama.cpp's `common_ngram_cache_save` layout, so files from `llama-lookup-create` load as-is:
//! a sequence of records, all integers little-endian `i32`:
//! `ngram[4]` (tokens, unused slots −1), `n_entries`, then `n_entries × (token, count)`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::{Draft, Drafter};
use crate::{EngineError, Result};

/// Shortest n-gram of the context/dynamic caches.
pub const NGRAM_MIN: usize = 1;
/// Longest n-gram (also the key width).
pub const NGRAM_MAX: usize = 4;
/// n of the static cache.
pub const NGRAM_STATIC: usize = 2;
/// Draft length of llama-server's ngram-cache (a hard-coded TODO there).
pub const N_DRAFT: usize = 8;
/// Lax thresholds by n = 1..4 (context cache; static-only path uses n = 2).
pub const MIN_SAMPLES_LAX: [u32; 4] = [2, 2, 1, 1];
/// Lax minimum percentage of the best token by n = 1..4.
pub const MIN_PCT_LAX: [u32; 4] = [66, 50, 50, 50];
/// Strict thresholds by n = 1..4 (dynamic cache).
pub const MIN_SAMPLES_STRICT: [u32; 4] = [4, 3, 2, 2];
/// Strict minimum percentage by n = 1..4.
pub const MIN_PCT_STRICT: [u32; 4] = [75, 66, 66, 66];

/// An n-gram key: up to 4 tokens, unused slots −1.
pub type NgramKey = [i32; NGRAM_MAX];
/// Next-token counts of one n-gram (ordered, so ties resolve deterministically).
pub type TokenCounts = BTreeMap<u32, u32>;

/// An n-gram statistics table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NgramCache {
    /// n-gram → next-token counts.
    pub map: HashMap<NgramKey, TokenCounts>,
}

fn key(tokens: &[u32]) -> NgramKey {
    let mut k = [-1; NGRAM_MAX];
    for (slot, &t) in k.iter_mut().zip(tokens) {
        *slot = t as i32;
    }
    k
}

impl NgramCache {
    /// Count, for every n in `n_min..=n_max` and every position i ≥ n in `first_new..tokens.len()`,
    /// the token at i under the key tokens[i−n..i].
    pub fn update(&mut self, tokens: &[u32], first_new: usize, n_min: usize, n_max: usize) {
        for n in n_min..=n_max.min(NGRAM_MAX) {
            for i in first_new.max(n)..tokens.len() {
                *self
                    .map
                    .entry(key(&tokens[i - n..i]))
                    .or_default()
                    .entry(tokens[i])
                    .or_insert(0) += 1;
            }
        }
    }

    /// Read a cache file (format in the module docs).
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| EngineError::io(path, e))?;
        let bad = |message: String| EngineError::Format {
            path: path.to_path_buf(),
            message,
        };
        let mut words = bytes
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]));
        if bytes.len() % 4 != 0 {
            return Err(bad(format!(
                "ngram cache: length {} is not a multiple of 4 bytes",
                bytes.len()
            )));
        }
        let mut map = HashMap::new();
        let mut offset = 0usize;
        while let Some(first) = words.next() {
            let mut k = [first; NGRAM_MAX];
            for slot in k.iter_mut().skip(1) {
                *slot = words.next().ok_or_else(|| {
                    bad(format!("ngram cache: record at byte {offset} is truncated"))
                })?;
            }
            let n = words
                .next()
                .ok_or_else(|| bad(format!("ngram cache: record at byte {offset} is truncated")))?;
            let n = usize::try_from(n).map_err(|_| {
                bad(format!(
                    "ngram cache: negative entry count at byte {offset}"
                ))
            })?;
            let mut counts = TokenCounts::new();
            for _ in 0..n {
                let (Some(t), Some(c)) = (words.next(), words.next()) else {
                    return Err(bad(format!(
                        "ngram cache: record at byte {offset} is truncated"
                    )));
                };
                let (Ok(t), Ok(c)) = (u32::try_from(t), u32::try_from(c)) else {
                    return Err(bad(format!(
                        "ngram cache: negative token or count at byte {offset}"
                    )));
                };
                counts.insert(t, c);
            }
            offset += 4 * (NGRAM_MAX + 1 + 2 * n);
            map.insert(k, counts);
        }
        Ok(Self { map })
    }

    /// Write the cache in the file format (records sorted by key, so output is deterministic).
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut keys: Vec<&NgramKey> = self.map.keys().collect();
        keys.sort();
        let mut out = Vec::new();
        for k in keys {
            let counts = &self.map[k];
            for &t in k {
                out.extend_from_slice(&t.to_le_bytes());
            }
            out.extend_from_slice(&(counts.len() as i32).to_le_bytes());
            for (&t, &c) in counts {
                out.extend_from_slice(&(t as i32).to_le_bytes());
                out.extend_from_slice(&(c as i32).to_le_bytes());
            }
        }
        std::fs::write(path, out).map_err(|e| EngineError::io(path, e))
    }
}

/// Best token of `counts` scored against the static distribution, if it passes the thresholds.
fn pick(
    counts: &TokenCounts,
    statics: Option<&TokenCounts>,
    min_samples: u32,
    min_pct: u32,
) -> Option<u32> {
    let mut best: Option<(u32, u64, u64)> = None; // (token, count, static weight)
    let mut sum: u64 = 0;
    for (&token, &count) in counts {
        let weight = match statics.and_then(|s| s.get(&token)) {
            Some(&c) => 100 * c as u64,
            None => 1,
        };
        let count = count as u64;
        if best.is_none_or(|(_, bc, bw)| count * weight > bc * bw) {
            best = Some((token, count, weight));
        }
        sum += count;
    }
    let (token, count, _) = best?;
    (sum >= min_samples as u64 && 100 * count >= min_pct as u64 * sum).then_some(token)
}

/// Parameters of ngram-cache.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NgramCacheParams {
    /// Longest draft (llama-server: 8).
    pub n_draft: usize,
    /// `--lookup-cache-static` file.
    pub static_path: Option<std::path::PathBuf>,
    /// `--lookup-cache-dynamic` file (read, never written, as llama-server does).
    pub dynamic_path: Option<std::path::PathBuf>,
    /// Clear the context cache at the start of every request.
    pub reset_per_request: bool,
}

/// The lookup-decoding drafter.
#[derive(Debug, Clone)]
pub struct NgramCacheDrafter {
    params: NgramCacheParams,
    context: NgramCache,
    dynamic: NgramCache,
    statics: NgramCache,
    /// History tokens already counted into the context cache in this request.
    n_ingested: usize,
}

impl NgramCacheDrafter {
    /// A drafter, loading the static and dynamic cache files if given.
    pub fn new(params: NgramCacheParams) -> Result<Self> {
        let load = |p: &Option<std::path::PathBuf>| match p {
            Some(p) => NgramCache::load(p),
            None => Ok(NgramCache::default()),
        };
        Ok(Self {
            statics: load(&params.static_path)?,
            dynamic: load(&params.dynamic_path)?,
            context: NgramCache::default(),
            n_ingested: 0,
            params,
        })
    }

    /// Draft up to `n_max` tokens after `history` from the three caches.
    fn lookup(&self, history: &[u32], n_max: usize) -> Vec<u32> {
        let mut seq = history.to_vec();
        let mut out = Vec::new();
        while out.len() < n_max {
            let len = seq.len();
            let statics = (len >= NGRAM_STATIC)
                .then(|| self.statics.map.get(&key(&seq[len - NGRAM_STATIC..])))
                .flatten();
            let try_cache = |cache: &NgramCache, samples: &[u32; 4], pct: &[u32; 4]| {
                (NGRAM_MIN..=NGRAM_MAX.min(len)).rev().find_map(|n| {
                    let counts = cache.map.get(&key(&seq[len - n..]))?;
                    pick(counts, statics, samples[n - 1], pct[n - 1])
                })
            };
            let token = try_cache(&self.context, &MIN_SAMPLES_LAX, &MIN_PCT_LAX)
                .or_else(|| try_cache(&self.dynamic, &MIN_SAMPLES_STRICT, &MIN_PCT_STRICT))
                .or_else(|| {
                    statics.and_then(|s| pick(s, Some(s), MIN_SAMPLES_LAX[1], MIN_PCT_LAX[1]))
                });
            match token {
                Some(t) => {
                    out.push(t);
                    seq.push(t);
                }
                None => break,
            }
        }
        out
    }
}

impl Drafter for NgramCacheDrafter {
    fn name(&self) -> &'static str {
        "ngram-cache"
    }

    fn begin(&mut self, _prompt: &[u32]) -> Result<()> {
        if self.params.reset_per_request {
            self.context = NgramCache::default();
        }
        self.n_ingested = 0;
        Ok(())
    }

    fn draft(&mut self, history: &[u32], n_max: usize) -> Result<Draft> {
        // llama-server updates the context cache with prompt + id_last before each draft.
        if history.len() > self.n_ingested {
            self.context
                .update(history, self.n_ingested, NGRAM_MIN, NGRAM_MAX);
            self.n_ingested = history.len();
        }
        Ok(Draft::tokens(
            self.lookup(history, n_max.min(self.params.n_draft)),
        ))
    }

    fn accept(&mut self, _n_accepted: usize) -> Result<()> {
        Ok(())
    }

    fn extra_stats(&self) -> BTreeMap<String, serde_json::Value> {
        BTreeMap::from([
            (
                "reset_per_request".to_string(),
                self.params.reset_per_request.into(),
            ),
            (
                "static_ngrams".to_string(),
                (self.statics.map.len() as u64).into(),
            ),
            (
                "dynamic_ngrams".to_string(),
                (self.dynamic.map.len() as u64).into(),
            ),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drafter() -> NgramCacheDrafter {
        NgramCacheDrafter::new(NgramCacheParams {
            n_draft: N_DRAFT,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn update_counts_every_n() {
        let mut c = NgramCache::default();
        c.update(&[5, 6, 5, 6], 0, 1, 4);
        assert_eq!(c.map[&key(&[5])], TokenCounts::from([(6, 2)]));
        assert_eq!(c.map[&key(&[6])], TokenCounts::from([(5, 1)]));
        assert_eq!(c.map[&key(&[5, 6])], TokenCounts::from([(5, 1)]));
        assert_eq!(c.map[&key(&[5, 6, 5])], TokenCounts::from([(6, 1)]));
        assert!(!c.map.contains_key(&key(&[5, 6, 5, 6])));
    }

    #[test]
    fn thresholds_table() {
        let counts = |v: &[(u32, u32)]| v.iter().copied().collect::<TokenCounts>();
        // n = 1 lax: ≥ 2 samples and ≥ 66 %.
        assert_eq!(pick(&counts(&[(7, 2)]), None, 2, 66), Some(7));
        assert_eq!(pick(&counts(&[(7, 1)]), None, 2, 66), None);
        assert_eq!(pick(&counts(&[(7, 2), (8, 2)]), None, 2, 66), None); // 50 % < 66 %
        assert_eq!(pick(&counts(&[(7, 2), (8, 2)]), None, 2, 50), Some(7)); // tie: lowest id
        // The static distribution reweights: 8 wins on score, then must pass the % test itself.
        let statics = counts(&[(8, 1)]);
        assert_eq!(
            pick(&counts(&[(7, 3), (8, 1)]), Some(&statics), 1, 50),
            None
        );
        assert_eq!(
            pick(&counts(&[(7, 1), (8, 1)]), Some(&statics), 1, 50),
            Some(8)
        );
    }

    #[test]
    fn repeated_passage_drafts_its_continuation() {
        let mut d = drafter();
        let mut history: Vec<u32> = (100..120).collect();
        history.extend(100..104);
        d.begin(&history).unwrap();
        let draft = d.draft(&history, 16).unwrap();
        assert_eq!(
            draft.tokens,
            (104..112).collect::<Vec<_>>(),
            "n_draft caps at 8"
        );
    }

    #[test]
    fn single_observation_of_a_short_chain_is_not_drafted() {
        // After [9] the only evidence is one occurrence: n = 1 needs 2 samples (lax).
        let mut d = drafter();
        let history = vec![9, 4, 1, 2, 3, 9];
        d.begin(&history).unwrap();
        assert!(d.draft(&history, 8).unwrap().tokens.is_empty());
    }

    #[test]
    fn dynamic_cache_needs_strict_thresholds_and_files_round_trip() {
        let dir = std::env::temp_dir().join(format!("specsweep-ngc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dynamic.bin");
        let mut c = NgramCache::default();
        c.update(&[1, 2, 3, 1, 2, 3, 1, 2, 3], 0, 1, 4);
        c.save(&path).unwrap();
        assert_eq!(NgramCache::load(&path).unwrap(), c);
        let mut d = NgramCacheDrafter::new(NgramCacheParams {
            n_draft: 4,
            dynamic_path: Some(path.clone()),
            ..Default::default()
        })
        .unwrap();
        d.begin(&[7, 1, 2]).unwrap();
        // The context cache (from [7,1,2]) has nothing for these keys; the dynamic cache with
        // strict thresholds: [1,2] → 3 ×3 (n=2: 3 samples), [1,2,3] → 1 ×2 (n=3: 2 samples),
        // [1,2,3,1] → 2 ×2 and [2,3,1,2] → 3 ×2 (n=4: 2 samples), all at 100 %.
        assert_eq!(d.draft(&[7, 1, 2], 4).unwrap().tokens, vec![3, 1, 2, 3]);
        std::fs::write(&path, [1u8, 2, 3]).unwrap();
        let err = NgramCache::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("dynamic.bin") && err.contains("multiple of 4"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
