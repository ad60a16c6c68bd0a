//! `SpecConfig`: which speculative mode runs and with which parameters, built from sweep
//! parameters named like the CLI flags (snake_case).
//!
//! Defaults are llama.cpp's at upstream commit 88a39274e (2026-06-12; shared/reference/
//! speculation.md §1.1): draft/MTP `draft_max` 3, `draft_min` 0, `draft_p_min` 0.0; ngram-mod
//! n_match 24, n_min 48, n_max 64; ngram-cache n_draft 8. Prompt lookup (`ngram-simple`) follows
//! vLLM: `prompt_lookup_min/max` both 5 when neither is given, one copies the other when only one
//! is; its k (`draft_max`) defaults to 5, the value of vLLM's documented example, because vLLM
//! has no default for `num_speculative_tokens`.
//!
//! The older llama.cpp spelling (January–April 2026) is accepted for ngram-mod:
//! `spec_ngram_size_n` is n_match and `draft_min`/`draft_max` are n_min/n_max, so
//! `--spec-ngram-size-n 24 --draft-min 12 --draft-max 48` reads as n_match 24, n_min 12,
//! n_max 48. Giving both spellings of one parameter is an error.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::{EngineError, Result};

/// The speculation mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SpecMode {
    /// No speculation.
    None,
    /// llama.cpp lookup decoding.
    NgramCache,
    /// llama.cpp's hash-pool n-gram drafter.
    NgramMod,
    /// Prompt lookup decoding (vLLM `ngram`).
    NgramSimple,
    /// A separate draft model.
    Draft,
    /// The target's MTP head.
    Mtp,
}

impl SpecMode {
    /// Every mode, in CLI order.
    pub const ALL: [SpecMode; 6] = [
        SpecMode::None,
        SpecMode::NgramCache,
        SpecMode::NgramMod,
        SpecMode::NgramSimple,
        SpecMode::Draft,
        SpecMode::Mtp,
    ];

    /// The CLI / record name.
    pub fn name(self) -> &'static str {
        match self {
            SpecMode::None => "none",
            SpecMode::NgramCache => "ngram-cache",
            SpecMode::NgramMod => "ngram-mod",
            SpecMode::NgramSimple => "ngram-simple",
            SpecMode::Draft => "draft",
            SpecMode::Mtp => "mtp",
        }
    }

    /// Parse a CLI / sweep name.
    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == name)
            .ok_or_else(|| {
                EngineError::Invalid(format!(
                    "unknown speculation mode `{name}` (expected none, ngram-cache, ngram-mod, ngram-simple, draft or mtp)"
                ))
            })
    }

    /// Parameter keys this mode accepts.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            SpecMode::None => &[],
            SpecMode::NgramCache => &[
                "lookup_cache_static",
                "lookup_cache_dynamic",
                "reset_per_request",
                "draft_max",
                "verify",
            ],
            SpecMode::NgramMod => &[
                "spec_ngram_mod_n_match",
                "spec_ngram_mod_n_min",
                "spec_ngram_mod_n_max",
                "spec_ngram_size_n",
                "draft_min",
                "draft_max",
                "reset_per_request",
                "verify",
            ],
            SpecMode::NgramSimple => &[
                "prompt_lookup_min",
                "prompt_lookup_max",
                "draft_max",
                "verify",
            ],
            SpecMode::Draft => &[
                "draft_model",
                "draft_min",
                "draft_max",
                "draft_p_min",
                "verify",
            ],
            SpecMode::Mtp => &["draft_min", "draft_max", "draft_p_min", "verify"],
        }
    }
}

/// The acceptance rule at temperature > 0 (greedy requests always use argmax matching).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerifyRule {
    /// Leviathan/Chen rejection sampling; p(x) acceptance for drafters without probabilities.
    #[default]
    Rejection,
    /// llama.cpp's sample-and-match.
    SampleAndMatch,
}

/// A resolved speculation configuration: every parameter has its value (defaults filled in).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecConfig {
    pub mode: SpecMode,
    /// Longest draft per round (draft, mtp, ngram-simple, ngram-cache).
    pub draft_max: usize,
    /// Drafts shorter than this are dropped (draft, mtp).
    pub draft_min: usize,
    /// Stop drafting when the draft model's top candidate has p < draft_p_min (draft, mtp).
    pub draft_p_min: f32,
    /// Draft model: a directory, a .gguf file or a fetched model name (resolved by the harness).
    pub draft_model: Option<String>,
    /// ngram-mod window length.
    pub ngram_mod_n_match: usize,
    /// ngram-mod shortest draft.
    pub ngram_mod_n_min: usize,
    /// ngram-mod longest draft.
    pub ngram_mod_n_max: usize,
    /// Prompt lookup: shortest suffix.
    pub prompt_lookup_min: usize,
    /// Prompt lookup: longest suffix.
    pub prompt_lookup_max: usize,
    /// ngram-cache static cache file.
    pub lookup_cache_static: Option<PathBuf>,
    /// ngram-cache dynamic cache file.
    pub lookup_cache_dynamic: Option<PathBuf>,
    /// Clear n-gram state at each request (ngram-mod pool, ngram-cache context cache).
    pub reset_per_request: bool,
    /// Acceptance rule at temperature > 0.
    pub verify: VerifyRule,
}

impl SpecConfig {
    /// The defaults of `mode`.
    pub fn defaults(mode: SpecMode) -> Self {
        let draft_max = match mode {
            SpecMode::NgramCache => 8,
            SpecMode::NgramSimple => 5,
            SpecMode::NgramMod => 64,
            _ => 3,
        };
        Self {
            mode,
            draft_max,
            draft_min: 0,
            draft_p_min: 0.0,
            draft_model: None,
            ngram_mod_n_match: 24,
            ngram_mod_n_min: 48,
            ngram_mod_n_max: 64,
            prompt_lookup_min: 5,
            prompt_lookup_max: 5,
            lookup_cache_static: None,
            lookup_cache_dynamic: None,
            reset_per_request: false,
            verify: VerifyRule::Rejection,
        }
    }

    /// Build from a mode name and parameters keyed by the snake_case flag names. A key the mode
    /// does not accept, a value of the wrong type or an inconsistent combination is an error
    /// naming the key.
    pub fn from_params(mode: &str, params: &BTreeMap<String, serde_json::Value>) -> Result<Self> {
        let mode = SpecMode::parse(mode)?;
        let mut c = Self::defaults(mode);
        for key in params.keys() {
            if !mode.keys().contains(&key.as_str()) {
                return Err(invalid(
                    key,
                    &format!(
                        "not a parameter of --spec {} (accepted: {})",
                        mode.name(),
                        if mode.keys().is_empty() {
                            "none".to_string()
                        } else {
                            mode.keys().join(", ")
                        }
                    ),
                ));
            }
        }
        let get = |k: &str| params.get(k);
        if let Some(v) = get("verify") {
            c.verify = match as_str(v, "verify")? {
                "rejection" => VerifyRule::Rejection,
                "sample-and-match" => VerifyRule::SampleAndMatch,
                other => {
                    return Err(invalid(
                        "verify",
                        &format!("`{other}` is neither `rejection` nor `sample-and-match`"),
                    ));
                }
            };
        }
        if let Some(v) = get("reset_per_request") {
            c.reset_per_request = as_bool(v, "reset_per_request")?;
        }
        if let Some(v) = get("lookup_cache_static") {
            c.lookup_cache_static = Some(PathBuf::from(as_str(v, "lookup_cache_static")?));
        }
        if let Some(v) = get("lookup_cache_dynamic") {
            c.lookup_cache_dynamic = Some(PathBuf::from(as_str(v, "lookup_cache_dynamic")?));
        }
        if let Some(v) = get("draft_model") {
            c.draft_model = Some(as_str(v, "draft_model")?.to_string());
        }
        if let Some(v) = get("draft_p_min") {
            let p = as_f64(v, "draft_p_min")?;
            if !(0.0..=1.0).contains(&p) {
                return Err(invalid("draft_p_min", &format!("{p} is outside [0, 1]")));
            }
            c.draft_p_min = p as f32;
        }
        let usize_of = |k: &str| get(k).map(|v| as_usize(v, k)).transpose();
        match mode {
            SpecMode::NgramMod => {
                // Each ngram-mod bound has today's name and llama.cpp's Jan–Apr 2026 spelling.
                let spelled = |new: &str, old: &str| -> Result<Option<usize>> {
                    pick_spelling(usize_of(new)?, usize_of(old)?, new, old)
                };
                c.ngram_mod_n_match = spelled("spec_ngram_mod_n_match", "spec_ngram_size_n")?
                    .unwrap_or(c.ngram_mod_n_match);
                c.ngram_mod_n_min =
                    spelled("spec_ngram_mod_n_min", "draft_min")?.unwrap_or(c.ngram_mod_n_min);
                c.ngram_mod_n_max =
                    spelled("spec_ngram_mod_n_max", "draft_max")?.unwrap_or(c.ngram_mod_n_max);
                c.draft_max = c.ngram_mod_n_max;
                c.draft_min = c.ngram_mod_n_min;
            }
            _ => {
                if let Some(n) = usize_of("draft_max")? {
                    c.draft_max = n;
                }
                if let Some(n) = usize_of("draft_min")? {
                    c.draft_min = n;
                }
            }
        }
        match (
            usize_of("prompt_lookup_min")?,
            usize_of("prompt_lookup_max")?,
        ) {
            (Some(lo), Some(hi)) => (c.prompt_lookup_min, c.prompt_lookup_max) = (lo, hi),
            (Some(n), None) | (None, Some(n)) => {
                (c.prompt_lookup_min, c.prompt_lookup_max) = (n, n)
            }
            (None, None) => {}
        }
        c.validate()?;
        Ok(c)
    }

    /// Check the cross-parameter constraints of the mode.
    pub fn validate(&self) -> Result<()> {
        match self.mode {
            SpecMode::NgramMod => {
                if self.ngram_mod_n_match == 0 {
                    return Err(invalid("spec_ngram_mod_n_match", "must be at least 1"));
                }
                if self.ngram_mod_n_min > self.ngram_mod_n_max {
                    return Err(invalid(
                        "spec_ngram_mod_n_min",
                        &format!(
                            "{} is larger than spec_ngram_mod_n_max {}",
                            self.ngram_mod_n_min, self.ngram_mod_n_max
                        ),
                    ));
                }
            }
            SpecMode::NgramSimple => {
                if self.prompt_lookup_min == 0 || self.prompt_lookup_min > self.prompt_lookup_max {
                    return Err(invalid(
                        "prompt_lookup_min",
                        &format!(
                            "need 1 ≤ prompt_lookup_min ({}) ≤ prompt_lookup_max ({})",
                            self.prompt_lookup_min, self.prompt_lookup_max
                        ),
                    ));
                }
            }
            SpecMode::Draft | SpecMode::Mtp => {
                if self.mode == SpecMode::Draft && self.draft_model.is_none() {
                    return Err(invalid("draft_model", "--spec draft needs a draft model"));
                }
                if self.draft_min > self.draft_max {
                    return Err(invalid(
                        "draft_min",
                        &format!(
                            "{} is larger than draft_max {}",
                            self.draft_min, self.draft_max
                        ),
                    ));
                }
            }
            SpecMode::None | SpecMode::NgramCache => {}
        }
        if self.mode != SpecMode::None && self.draft_max == 0 {
            return Err(invalid("draft_max", "must be at least 1"));
        }
        Ok(())
    }
}

fn invalid(key: &str, message: &str) -> EngineError {
    EngineError::Invalid(format!("speculation parameter `{key}`: {message}"))
}

fn pick_spelling(
    new: Option<usize>,
    old: Option<usize>,
    new_key: &str,
    old_key: &str,
) -> Result<Option<usize>> {
    match (new, old) {
        (Some(_), Some(_)) => Err(invalid(
            new_key,
            &format!("given together with its older spelling `{old_key}`; use one"),
        )),
        (n, o) => Ok(n.or(o)),
    }
}

fn as_usize(v: &serde_json::Value, key: &str) -> Result<usize> {
    let n = match v {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    n.and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| invalid(key, &format!("expected a non-negative integer, got {v}")))
}

fn as_f64(v: &serde_json::Value, key: &str) -> Result<f64> {
    let n = match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    n.filter(|x| x.is_finite())
        .ok_or_else(|| invalid(key, &format!("expected a number, got {v}")))
}

fn as_bool(v: &serde_json::Value, key: &str) -> Result<bool> {
    match v {
        serde_json::Value::Bool(b) => Ok(*b),
        serde_json::Value::String(s) if s == "true" || s == "false" => Ok(s == "true"),
        _ => Err(invalid(key, &format!("expected true or false, got {v}"))),
    }
}

fn as_str<'a>(v: &'a serde_json::Value, key: &str) -> Result<&'a str> {
    v.as_str()
        .ok_or_else(|| invalid(key, &format!("expected a string, got {v}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(pairs: &[(&str, serde_json::Value)]) -> BTreeMap<String, serde_json::Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn defaults_follow_llama_cpp_and_vllm() {
        let c = SpecConfig::from_params("ngram-mod", &BTreeMap::new()).unwrap();
        assert_eq!(
            (c.ngram_mod_n_match, c.ngram_mod_n_min, c.ngram_mod_n_max),
            (24, 48, 64)
        );
        assert!(!c.reset_per_request);
        let c = SpecConfig::from_params("mtp", &BTreeMap::new()).unwrap();
        assert_eq!((c.draft_min, c.draft_max, c.draft_p_min), (0, 3, 0.0));
        let c = SpecConfig::from_params("ngram-cache", &BTreeMap::new()).unwrap();
        assert_eq!(c.draft_max, 8);
        let c = SpecConfig::from_params("ngram-simple", &BTreeMap::new()).unwrap();
        assert_eq!((c.prompt_lookup_min, c.prompt_lookup_max), (5, 5));
        assert_eq!(c.verify, VerifyRule::Rejection);
    }

    #[test]
    fn old_ngram_mod_spelling_maps_onto_the_new_one() {
        let old = params(&[
            ("spec_ngram_size_n", json!(24)),
            ("draft_min", json!(12)),
            ("draft_max", json!(48)),
        ]);
        let new = params(&[
            ("spec_ngram_mod_n_match", json!(24)),
            ("spec_ngram_mod_n_min", json!(12)),
            ("spec_ngram_mod_n_max", json!(48)),
        ]);
        let a = SpecConfig::from_params("ngram-mod", &old).unwrap();
        let b = SpecConfig::from_params("ngram-mod", &new).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            (a.ngram_mod_n_match, a.ngram_mod_n_min, a.ngram_mod_n_max),
            (24, 12, 48)
        );
        let both = params(&[
            ("spec_ngram_size_n", json!(8)),
            ("spec_ngram_mod_n_match", json!(8)),
        ]);
        let err = SpecConfig::from_params("ngram-mod", &both)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("spec_ngram_mod_n_match") && err.contains("spec_ngram_size_n"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        type Case<'a> = (&'a str, &'a [(&'a str, serde_json::Value)], &'a str);
        let cases: &[Case] = &[
            (
                "ngram-simple",
                &[("spec_ngram_mod_n_min", json!(3))],
                "spec_ngram_mod_n_min",
            ),
            ("none", &[("draft_max", json!(3))], "draft_max"),
            ("draft", &[], "draft_model"),
            ("mtp", &[("draft_max", json!(-1))], "draft_max"),
            ("mtp", &[("draft_p_min", json!(1.5))], "draft_p_min"),
            ("mtp", &[("verify", json!("maybe"))], "verify"),
            (
                "ngram-mod",
                &[("reset_per_request", json!(3))],
                "reset_per_request",
            ),
            (
                "ngram-simple",
                &[
                    ("prompt_lookup_min", json!(6)),
                    ("prompt_lookup_max", json!(2)),
                ],
                "prompt_lookup_min",
            ),
            ("bogus", &[], "bogus"),
        ];
        for (mode, pairs, key) in cases {
            let err = SpecConfig::from_params(mode, &params(pairs))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{mode} {pairs:?}: {err}");
        }
    }

    #[test]
    fn values_parse_from_numbers_strings_and_bools() {
        let c = SpecConfig::from_params(
            "draft",
            &params(&[
                ("draft_model", json!("models/d")),
                ("draft_max", json!("16")),
                ("draft_p_min", json!(0.75)),
                ("verify", json!("sample-and-match")),
            ]),
        )
        .unwrap();
        assert_eq!(c.draft_max, 16);
        assert_eq!(c.draft_p_min, 0.75);
        assert_eq!(c.verify, VerifyRule::SampleAndMatch);
        let c =
            SpecConfig::from_params("ngram-simple", &params(&[("prompt_lookup_max", json!(3))]))
                .unwrap();
        assert_eq!(
            (c.prompt_lookup_min, c.prompt_lookup_max),
            (3, 3),
            "one bound copies the other"
        );
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<SpecConfig>(&json).unwrap(), c);
    }
}
