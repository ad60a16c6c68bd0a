//! The closed set of sweep axes: each axis's name, value type, and the speculation modes it applies
//! to. This table is what makes "mode-specific parameters apply only to their mode" work: a cell
//! never carries a key its mode ignores, so no two cells differ only in an ignored parameter.
//!
//! Parameter names are the `specsweep generate` flag names in snake_case, which is also what
//! `specsweep_engine::spec::SpecConfig::from_params` reads (see shared/reference/speculation.md §1
//! for the meaning and llama.cpp defaults of each).

/// Value type of an axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AxisKind {
    Str,
    Int,
    Float,
    Bool,
}

/// One known axis.
#[derive(Debug, Clone, Copy)]
pub struct AxisDef {
    pub name: &'static str,
    pub kind: AxisKind,
    /// Modes that take this parameter; `None` = every mode (a hardware/model/workload axis).
    pub modes: Option<&'static [&'static str]>,
    /// One-line description for docs and `plan`.
    pub help: &'static str,
}

impl AxisDef {
    /// Whether a cell of speculation mode `mode` carries this axis.
    pub fn applies_to(&self, mode: &str) -> bool {
        self.modes.is_none_or(|modes| modes.contains(&mode))
    }
}

/// Speculation modes, as `generate --spec` spells them. `none` is the no-speculation control.
pub const MODES: &[&str] = &[
    "none",
    "ngram-cache",
    "ngram-mod",
    "ngram-simple",
    "draft",
    "mtp",
];

/// The no-speculation mode (the paired control of every block).
pub const CONTROL_MODE: &str = "none";

const DRAFTING: &[&str] = &["draft", "mtp"];
const SPECULATIVE: &[&str] = &["ngram-cache", "ngram-mod", "ngram-simple", "draft", "mtp"];

/// Every axis a sweep may use, in the order cells print their configuration.
pub const AXES: &[AxisDef] = &[
    AxisDef {
        name: "device",
        kind: AxisKind::Str,
        modes: None,
        help: "cpu, wgpu, cuda[:N]",
    },
    AxisDef {
        name: "model",
        kind: AxisKind::Str,
        modes: None,
        help: "target model: NAME, directory or .gguf",
    },
    AxisDef {
        name: "quant",
        kind: AxisKind::Str,
        modes: None,
        help: "weights: native (a .gguf file's own blocks on the CPU kernels), q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl, iq4_xs, q2_k, q3_k, q4_k, q5_k, q6_k (rows not a multiple of 256 take llama-quantize's fallback: iq4_xs -> iq4_nl, q2_k / q3_k -> q4_0, q4_k -> q5_0, q5_k -> q5_1, q6_k -> q8_0), f32-kernel, f16-kernel, bf16-kernel (CPU kernels), f32, f16, bf16 (burn dense); absent = native for .gguf on the cpu, f32 otherwise",
    },
    AxisDef {
        name: "kv_type",
        kind: AxisKind::Str,
        modes: None,
        help: "KV cache element type: f32 (absent; the reference numerics), f16 (llama.cpp's default), or ggml's blocks of 32 (CPU only, head_dim a multiple of 32): q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl; K/V for different key and value types (q8_0/q4_0 = llama.cpp's -ctk q8_0 -ctv q4_0)",
    },
    AxisDef {
        name: "threads",
        kind: AxisKind::Int,
        modes: None,
        help: "CPU threads (absent = all cores)",
    },
    AxisDef {
        name: "depth",
        kind: AxisKind::Int,
        modes: None,
        help: "context tokens before the prompt",
    },
    AxisDef {
        name: "temperature",
        kind: AxisKind::Float,
        modes: None,
        help: "0 = greedy",
    },
    AxisDef {
        name: "max_new_tokens",
        kind: AxisKind::Int,
        modes: None,
        help: "tokens to generate per request (default: header)",
    },
    AxisDef {
        name: "spec",
        kind: AxisKind::Str,
        modes: None,
        help: "none, ngram-cache, ngram-mod, ngram-simple, draft, mtp",
    },
    AxisDef {
        name: "draft_model",
        kind: AxisKind::Str,
        modes: Some(&["draft"]),
        help: "draft model: NAME, directory or .gguf",
    },
    AxisDef {
        name: "draft_min",
        kind: AxisKind::Int,
        modes: Some(&["draft", "mtp", "ngram-mod"]),
        help: "drop drafts shorter than this (ngram-mod: old spelling of n_min)",
    },
    AxisDef {
        name: "draft_max",
        kind: AxisKind::Int,
        modes: Some(SPECULATIVE),
        help: "most draft tokens per round (ngram-mod: old spelling of n_max)",
    },
    AxisDef {
        name: "draft_p_min",
        kind: AxisKind::Float,
        modes: Some(DRAFTING),
        help: "stop drafting below this top-token probability",
    },
    AxisDef {
        name: "spec_ngram_mod_n_match",
        kind: AxisKind::Int,
        modes: Some(&["ngram-mod"]),
        help: "ngram-mod key length",
    },
    AxisDef {
        name: "spec_ngram_mod_n_min",
        kind: AxisKind::Int,
        modes: Some(&["ngram-mod"]),
        help: "ngram-mod minimum draft",
    },
    AxisDef {
        name: "spec_ngram_mod_n_max",
        kind: AxisKind::Int,
        modes: Some(&["ngram-mod"]),
        help: "ngram-mod maximum draft",
    },
    AxisDef {
        name: "spec_ngram_size_n",
        kind: AxisKind::Int,
        modes: Some(&["ngram-mod"]),
        help: "old llama.cpp spelling of the ngram-mod key length",
    },
    AxisDef {
        name: "verify",
        kind: AxisKind::Str,
        modes: Some(SPECULATIVE),
        help: "acceptance rule when sampling: rejection, sample-and-match",
    },
    AxisDef {
        name: "reset_per_request",
        kind: AxisKind::Bool,
        modes: Some(&["ngram-mod", "ngram-cache"]),
        help: "clear drafter state between requests",
    },
    AxisDef {
        name: "prompt_lookup_min",
        kind: AxisKind::Int,
        modes: Some(&["ngram-simple"]),
        help: "shortest suffix match",
    },
    AxisDef {
        name: "prompt_lookup_max",
        kind: AxisKind::Int,
        modes: Some(&["ngram-simple"]),
        help: "longest suffix match",
    },
    AxisDef {
        name: "lookup_cache_static",
        kind: AxisKind::Str,
        modes: Some(&["ngram-cache"]),
        help: "static n-gram cache file",
    },
    AxisDef {
        name: "lookup_cache_dynamic",
        kind: AxisKind::Str,
        modes: Some(&["ngram-cache"]),
        help: "dynamic n-gram cache file",
    },
];

/// The definition of axis `name`, if it is one.
pub fn axis_def(name: &str) -> Option<&'static AxisDef> {
    AXES.iter().find(|a| a.name == name)
}

/// Position of `name` in [`AXES`] (unknown names sort last).
pub fn axis_order(name: &str) -> usize {
    AXES.iter()
        .position(|a| a.name == name)
        .unwrap_or(AXES.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_specific_axes_name_known_modes() {
        for axis in AXES {
            for mode in axis.modes.unwrap_or(&[]) {
                assert!(
                    MODES.contains(mode),
                    "{} names unknown mode {mode}",
                    axis.name
                );
                assert_ne!(
                    *mode, CONTROL_MODE,
                    "the control takes no speculation parameter"
                );
            }
        }
        assert!(axis_def("draft_max").unwrap().applies_to("draft"));
        assert!(!axis_def("draft_max").unwrap().applies_to("none"));
        assert!(axis_def("depth").unwrap().applies_to("none"));
    }

    #[test]
    fn mode_parameters_match_the_engine() {
        use specsweep_engine::spec::SpecMode;
        for mode in MODES {
            let keys = SpecMode::parse(mode).unwrap().keys();
            for axis in AXES.iter().filter(|a| a.modes.is_some()) {
                assert_eq!(
                    axis.applies_to(mode),
                    keys.contains(&axis.name),
                    "axis {} / mode {mode}",
                    axis.name
                );
            }
            for key in keys {
                assert!(
                    axis_def(key).is_some(),
                    "engine key {key} is not a sweep axis"
                );
            }
        }
    }
}
