//! Speculative-decoding flags shared by `generate` (and anything else that runs one
//! configuration): `--spec MODE` plus the mode's parameters under llama.cpp's / vLLM's flag names
//! (shared/reference/speculation.md §1.1, §2.1). The flags are turned into the same snake_case
//! parameter map a sweep cell carries, so `SpecConfig::from_params` is the single place where
//! defaults, old spellings and per-mode validity are decided.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;
use specsweep_engine::spec::SpecConfig;

/// `--spec` and its parameters.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SpecArgs {
    /// Speculation mode: none | ngram-cache | ngram-mod | ngram-simple | draft | mtp.
    #[arg(long, default_value = "none", value_parser = ["none", "ngram-cache", "ngram-mod", "ngram-simple", "draft", "mtp"])]
    pub spec: String,
    /// Draft model for `--spec draft`: a directory, a .gguf file or a fetched model NAME.
    #[arg(long, visible_alias = "md")]
    pub draft_model: Option<String>,
    /// Shortest draft kept (draft, mtp); for ngram-mod the old spelling of n_min.
    #[arg(long)]
    pub draft_min: Option<usize>,
    /// Longest draft (draft, mtp, ngram-simple, ngram-cache); for ngram-mod the old n_max.
    #[arg(long)]
    pub draft_max: Option<usize>,
    /// Stop drafting before a token with probability below P (draft, mtp).
    #[arg(long)]
    pub draft_p_min: Option<f64>,
    /// ngram-mod: tokens hashed per lookup.
    #[arg(long)]
    pub spec_ngram_mod_n_match: Option<usize>,
    /// ngram-mod: drafts shorter than this are discarded.
    #[arg(long)]
    pub spec_ngram_mod_n_min: Option<usize>,
    /// ngram-mod: longest draft.
    #[arg(long)]
    pub spec_ngram_mod_n_max: Option<usize>,
    /// ngram-mod n_match, llama.cpp's spelling of January–April 2026.
    #[arg(long)]
    pub spec_ngram_size_n: Option<usize>,
    /// ngram-simple: shortest suffix to match.
    #[arg(long)]
    pub prompt_lookup_min: Option<usize>,
    /// ngram-simple: longest suffix to match.
    #[arg(long)]
    pub prompt_lookup_max: Option<usize>,
    /// ngram-cache: static n-gram cache file (llama-lookup-create format).
    #[arg(long, visible_alias = "lcs")]
    pub lookup_cache_static: Option<PathBuf>,
    /// ngram-cache: dynamic n-gram cache file (read only).
    #[arg(long, visible_alias = "lcd")]
    pub lookup_cache_dynamic: Option<PathBuf>,
    /// Clear n-gram state (ngram-mod pool, ngram-cache context) at every request.
    #[arg(long)]
    pub reset_per_request: bool,
    /// Acceptance rule when sampling: rejection | sample-and-match.
    #[arg(long, value_parser = ["rejection", "sample-and-match"])]
    pub verify: Option<String>,
}

impl SpecArgs {
    /// Whether speculation is on.
    pub fn enabled(&self) -> bool {
        self.spec != "none"
    }

    /// The given flags as sweep parameters (snake_case flag names → values).
    pub fn params(&self) -> BTreeMap<String, Value> {
        let mut p = BTreeMap::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                p.insert(k.to_string(), v);
            }
        };
        put("draft_model", self.draft_model.clone().map(Value::from));
        put("draft_min", self.draft_min.map(Value::from));
        put("draft_max", self.draft_max.map(Value::from));
        put("draft_p_min", self.draft_p_min.map(Value::from));
        put(
            "spec_ngram_mod_n_match",
            self.spec_ngram_mod_n_match.map(Value::from),
        );
        put(
            "spec_ngram_mod_n_min",
            self.spec_ngram_mod_n_min.map(Value::from),
        );
        put(
            "spec_ngram_mod_n_max",
            self.spec_ngram_mod_n_max.map(Value::from),
        );
        put("spec_ngram_size_n", self.spec_ngram_size_n.map(Value::from));
        put("prompt_lookup_min", self.prompt_lookup_min.map(Value::from));
        put("prompt_lookup_max", self.prompt_lookup_max.map(Value::from));
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| Value::from(p.to_string_lossy().into_owned()))
        };
        put("lookup_cache_static", path(&self.lookup_cache_static));
        put("lookup_cache_dynamic", path(&self.lookup_cache_dynamic));
        put(
            "reset_per_request",
            self.reset_per_request.then_some(Value::Bool(true)),
        );
        put("verify", self.verify.clone().map(Value::from));
        p
    }

    /// The resolved configuration; a flag the mode does not take is an error naming it.
    pub fn config(&self) -> anyhow::Result<SpecConfig> {
        SpecConfig::from_params(&self.spec, &self.params()).map_err(|e| {
            // Name the flags as typed: `draft_p_min` → `--draft-p-min`.
            let mut text = e.to_string().replace("speculation parameter ", "flag ");
            for key in specsweep_engine::spec::SpecMode::ALL
                .iter()
                .flat_map(|m| m.keys())
            {
                text = text.replace(
                    &format!("`{key}`"),
                    &format!("`--{}`", key.replace('_', "-")),
                );
            }
            anyhow::anyhow!("{text}")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        spec: SpecArgs,
    }

    fn config(args: &[&str]) -> anyhow::Result<SpecConfig> {
        let mut argv = vec!["x"];
        argv.extend(args);
        Cli::try_parse_from(argv)?.spec.config()
    }

    #[test]
    fn old_and_new_ngram_mod_spellings_agree() {
        let old = config(&[
            "--spec",
            "ngram-mod",
            "--spec-ngram-size-n",
            "24",
            "--draft-min",
            "12",
            "--draft-max",
            "48",
        ])
        .unwrap();
        let new = config(&[
            "--spec",
            "ngram-mod",
            "--spec-ngram-mod-n-match",
            "24",
            "--spec-ngram-mod-n-min",
            "12",
            "--spec-ngram-mod-n-max",
            "48",
        ])
        .unwrap();
        assert_eq!(old, new);
        assert_eq!(
            (
                new.ngram_mod_n_match,
                new.ngram_mod_n_min,
                new.ngram_mod_n_max
            ),
            (24, 12, 48)
        );
    }

    #[test]
    fn aliases_and_errors() {
        let c = config(&["--spec", "ngram-cache", "-lcs", "a.bin", "-lcd", "b.bin"]);
        // clap's aliases are long flags: `--lcs`.
        assert!(c.is_err());
        let c = config(&["--spec", "ngram-cache", "--lcs", "a.bin", "--lcd", "b.bin"]).unwrap();
        assert_eq!(c.lookup_cache_static, Some(PathBuf::from("a.bin")));
        let err = config(&["--spec", "ngram-simple", "--draft-p-min", "0.5"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--draft-p-min"), "{err}");
        let err = config(&["--spec", "draft"]).unwrap_err().to_string();
        assert!(err.contains("--draft-model"), "{err}");
    }
}
