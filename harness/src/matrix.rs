//! Matrix expansion: a validated [`Sweep`] → the ordered list of [`Cell`]s to measure.
//!
//! A pure, deterministic function of the sweep (no I/O, no clock, no randomness):
//! 1. the Cartesian product of the shared axes (linked groups count as one axis) in file order,
//!    and inside it, for each mode of `axes.spec`, the product of the mode-specific axes that mode
//!    takes (`[modes.<mode>]` replacing the shared axis of the same name);
//! 2. keys a cell's mode ignores are dropped, and cells that become identical are merged, so a mode
//!    never yields duplicate cells for parameters it does not read;
//! 3. `[[exclude]]` rules remove cells, `[[include]]` rules add cells;
//! 4. every speculative cell is paired with its no-speculation control (same config without the
//!    speculation parameters, `spec = "none"`), which is added when the sweep did not list it.
//!
//! A cell's id is the first 12 hex digits of the sha256 of its canonical JSON (keys sorted), so it
//! is stable across runs, machines and axis order in the file.

use std::collections::BTreeMap;

use serde_json::Value;
use specsweep_reports::schema::CellConfig;

use crate::axes::{CONTROL_MODE, axis_def, axis_order};
use crate::sweep::{Dim, Sweep, SweepError};

/// One configuration to measure.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// Stable id: sha256 prefix of the canonical JSON of `config`.
    pub id: String,
    /// Resolved configuration (`axis name → value`), without keys its mode ignores.
    pub config: CellConfig,
    /// Id of the paired no-speculation control; `None` for a control.
    pub baseline_id: Option<String>,
    /// True for a control the sweep did not list, added to pair a speculative cell.
    pub added_control: bool,
}

impl Cell {
    /// The cell's speculation mode.
    pub fn mode(&self) -> &str {
        self.config
            .get("spec")
            .and_then(Value::as_str)
            .unwrap_or(CONTROL_MODE)
    }

    /// Whether decoding is greedy (the output check applies).
    pub fn is_greedy(&self) -> bool {
        self.config
            .get("temperature")
            .and_then(Value::as_f64)
            .unwrap_or(0.0)
            == 0.0
    }

    /// `key=value` pairs in axis order, for plans and progress lines.
    pub fn summary(&self) -> String {
        summary(&self.config)
    }
}

/// Number of hex digits of the sha256 used as a cell id (48 bits: collisions are not a concern
/// for sweeps of thousands of cells).
pub const CELL_ID_HEX: usize = 12;

/// The stable id of a resolved configuration.
pub fn cell_id(config: &CellConfig) -> String {
    // BTreeMap serializes with sorted keys: the canonical form. Serialization of plain JSON values
    // cannot fail.
    let canonical = serde_json::to_string(config).unwrap_or_default();
    crate::hashing::sha256_hex(canonical.as_bytes())[..CELL_ID_HEX].to_string()
}

/// `key=value` pairs of a configuration in axis order.
pub fn summary(config: &CellConfig) -> String {
    let mut keys: Vec<&String> = config.keys().collect();
    keys.sort_by_key(|k| (axis_order(k), (*k).clone()));
    keys.iter()
        .map(|k| match &config[*k] {
            Value::String(s) => format!("{k}={s}"),
            v => format!("{k}={v}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Expand a sweep into its cells (see the module docs for the rules).
pub fn expand(sweep: &Sweep) -> Result<Vec<Cell>, SweepError> {
    let err = |key: &str, message: String| SweepError {
        file: sweep.path.clone(),
        key: key.into(),
        message,
    };
    let is_shared = |dim: &Dim| {
        dim.keys
            .iter()
            .any(|k| axis_def(k).is_some_and(|d| d.modes.is_none()))
    };
    let shared: Vec<&Dim> = sweep.dims.iter().filter(|d| is_shared(d)).collect();
    let mut configs: Vec<CellConfig> = Vec::new();
    for base in product(&shared) {
        for mode in &sweep.modes {
            let overrides = sweep.mode_dims.get(mode).map(Vec::as_slice).unwrap_or(&[]);
            let mut dims: Vec<&Dim> = Vec::new();
            for dim in sweep.dims.iter().filter(|d| !is_shared(d)) {
                let applies = dim
                    .keys
                    .iter()
                    .any(|k| axis_def(k).is_some_and(|d| d.applies_to(mode)));
                let overridden = dim
                    .keys
                    .iter()
                    .find(|k| overrides.iter().any(|o| o.keys.contains(k)));
                match overridden {
                    Some(key) if dim.keys.len() > 1 => {
                        return Err(err(
                            &format!("modes.{mode}.{key}"),
                            "cannot override an axis of a [[linked]] group".into(),
                        ));
                    }
                    Some(_) => {}
                    None if applies => dims.push(dim),
                    None => {}
                }
            }
            dims.extend(overrides.iter());
            for specific in product(&dims) {
                let mut config = base.clone();
                config.extend(specific);
                config.insert("spec".into(), Value::from(mode.clone()));
                configs.push(config);
            }
        }
    }
    let header = &sweep.header;
    for config in &mut configs {
        complete(config, sweep);
    }
    configs.retain(|c| !sweep.exclude.iter().any(|rule| rule_matches(rule, c)));
    for (i, include) in sweep.include.iter().enumerate() {
        let mut config: CellConfig = include.clone().into_iter().collect();
        let mode = config
            .get("spec")
            .and_then(Value::as_str)
            .unwrap_or(CONTROL_MODE)
            .to_string();
        for key in include.keys() {
            if !axis_def(key).is_some_and(|d| d.applies_to(&mode)) {
                return Err(err(
                    &format!("include[{i}].{key}"),
                    format!("impossible combination: mode `{mode}` does not take `{key}`"),
                ));
            }
        }
        // Unlisted shared axes take their first value, so an include rule only names what differs.
        for dim in sweep.dims.iter().filter(|d| is_shared(d)) {
            for (k, key) in dim.keys.iter().enumerate() {
                config
                    .entry(key.clone())
                    .or_insert_with(|| dim.rows[0][k].clone());
            }
        }
        complete(&mut config, sweep);
        configs.push(config);
    }
    let _ = header;
    if configs.is_empty() {
        return Err(err("exclude", "the exclude rules remove every cell".into()));
    }
    let mut cells: Vec<Cell> = Vec::new();
    for config in configs {
        validate(&config).map_err(|(key, message)| {
            err(&key, format!("cell `{}`: {message}", summary(&config)))
        })?;
        let id = cell_id(&config);
        if !cells.iter().any(|c| c.id == id) {
            cells.push(Cell {
                id,
                config,
                baseline_id: None,
                added_control: false,
            });
        }
    }
    pair_controls(cells)
}

/// Drop keys the mode ignores and fill the header's values (temperature, max_new_tokens) and the
/// defaults every record should carry (device, depth).
fn complete(config: &mut CellConfig, sweep: &Sweep) {
    let mode = config
        .get("spec")
        .and_then(Value::as_str)
        .unwrap_or(CONTROL_MODE)
        .to_string();
    config.retain(|k, _| axis_def(k).is_some_and(|d| d.applies_to(&mode)));
    config
        .entry("spec".into())
        .or_insert_with(|| Value::from(CONTROL_MODE));
    config
        .entry("device".into())
        .or_insert_with(|| Value::from("cpu"));
    config
        .entry("depth".into())
        .or_insert_with(|| Value::from(0));
    config
        .entry("temperature".into())
        .or_insert_with(|| Value::from(sweep.header.temperature));
    config
        .entry("max_new_tokens".into())
        .or_insert_with(|| Value::from(sweep.header.max_new_tokens));
}

fn rule_matches(rule: &BTreeMap<String, Vec<Value>>, config: &CellConfig) -> bool {
    rule.iter()
        .all(|(key, values)| config.get(key).is_some_and(|v| values.contains(v)))
}

/// Per-cell consistency: an error is `(key, message)`.
fn validate(config: &CellConfig) -> Result<(), (String, String)> {
    let int = |k: &str| config.get(k).and_then(Value::as_i64);
    let mode = config
        .get("spec")
        .and_then(Value::as_str)
        .unwrap_or(CONTROL_MODE);
    if let Some(t) = config.get("kv_type").and_then(Value::as_str)
        && let Err(e) = t.parse::<specsweep_engine::KvTypes>()
    {
        return Err(("kv_type".into(), e));
    }
    if mode == "draft" && !config.contains_key("draft_model") {
        return Err((
            "axes.draft_model".into(),
            "impossible combination: spec = \"draft\" needs a draft_model".into(),
        ));
    }
    for (lo, hi) in [
        ("draft_min", "draft_max"),
        ("spec_ngram_mod_n_min", "spec_ngram_mod_n_max"),
        ("prompt_lookup_min", "prompt_lookup_max"),
    ] {
        if let (Some(a), Some(b)) = (int(lo), int(hi))
            && a > b
        {
            return Err((
                lo.into(),
                format!("impossible combination: {lo} {a} > {hi} {b} (add an [[exclude]] rule)"),
            ));
        }
    }
    for key in [
        "draft_max",
        "spec_ngram_mod_n_max",
        "max_new_tokens",
        "threads",
    ] {
        if int(key) == Some(0) {
            return Err((key.into(), format!("{key} must be at least 1")));
        }
    }
    Ok(())
}

/// Give every speculative cell its control, adding controls the sweep did not list just before
/// the first cell that needs them.
fn pair_controls(cells: Vec<Cell>) -> Result<Vec<Cell>, SweepError> {
    let mut out: Vec<Cell> = Vec::with_capacity(cells.len());
    let listed: Vec<String> = cells.iter().map(|c| c.id.clone()).collect();
    for mut cell in cells {
        if cell.mode() != CONTROL_MODE {
            let mut control = cell.config.clone();
            control.retain(|k, _| axis_def(k).is_some_and(|d| d.modes.is_none()));
            control.insert("spec".into(), Value::from(CONTROL_MODE));
            let control_id = cell_id(&control);
            if !listed.contains(&control_id) && !out.iter().any(|c| c.id == control_id) {
                out.push(Cell {
                    id: control_id.clone(),
                    config: control,
                    baseline_id: None,
                    added_control: true,
                });
            }
            cell.baseline_id = Some(control_id);
        }
        out.push(cell);
    }
    Ok(out)
}

/// The Cartesian product of `dims` (first dim outermost), as partial configurations.
fn product(dims: &[&Dim]) -> Vec<CellConfig> {
    let mut acc = vec![CellConfig::new()];
    for dim in dims {
        let mut next = Vec::with_capacity(acc.len() * dim.rows.len());
        for partial in &acc {
            for row in &dim.rows {
                let mut config = partial.clone();
                for (key, value) in dim.keys.iter().zip(row) {
                    config.insert(key.clone(), value.clone());
                }
                next.push(config);
            }
        }
        acc = next;
    }
    acc
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn expand_text(body: &str) -> Result<Vec<Cell>, SweepError> {
        let text = format!("name = \"t\"\nsuites = [\"tiny\"]\n{body}");
        expand(&Sweep::parse(Path::new("s.toml"), &text)?)
    }

    fn modes(cells: &[Cell]) -> Vec<String> {
        cells.iter().map(|c| c.mode().to_string()).collect()
    }

    #[test]
    fn mode_parameters_do_not_duplicate_cells() {
        let cells = expand_text(
            "[axes]\nmodel = [\"m\"]\nspec = [\"none\", \"ngram-simple\", \"draft\"]\ndraft_max = [4, 8]\ndraft_model = [\"d\"]\n",
        )
        .unwrap();
        // none: 1 cell (draft_max ignored); ngram-simple: 2 (takes draft_max); draft: 2.
        assert_eq!(
            modes(&cells),
            ["none", "ngram-simple", "ngram-simple", "draft", "draft"]
        );
        assert!(!cells[0].config.contains_key("draft_max"));
        assert!(!cells[1].config.contains_key("draft_model"));
        assert!(
            cells[1..]
                .iter()
                .all(|c| c.baseline_id.as_deref() == Some(cells[0].id.as_str()))
        );
    }

    #[test]
    fn controls_are_added_and_paired() {
        let cells =
            expand_text("[axes]\nmodel = [\"a\", \"b\"]\nspec = [\"ngram-mod\"]\n").unwrap();
        assert_eq!(modes(&cells), ["none", "ngram-mod", "none", "ngram-mod"]);
        assert!(cells[0].added_control && cells[2].added_control);
        assert_eq!(cells[1].baseline_id.as_ref(), Some(&cells[0].id));
        assert_eq!(cells[3].baseline_id.as_ref(), Some(&cells[2].id));
        assert_eq!(cells[2].config["model"], "b");
    }

    #[test]
    fn exclude_include_and_mode_sections() {
        let cells = expand_text(
            "[axes]\nmodel = [\"m\"]\ndepth = [0, 512]\nspec = [\"none\", \"mtp\"]\n[modes.mtp]\ndraft_max = [1, 2]\n\
             [[exclude]]\nspec = \"mtp\"\ndepth = 512\n[[include]]\nspec = \"mtp\"\ndepth = 512\ndraft_max = 3\n",
        )
        .unwrap();
        let summaries: Vec<String> = cells.iter().map(Cell::summary).collect();
        assert_eq!(
            summaries,
            [
                "device=cpu model=m depth=0 temperature=0.0 max_new_tokens=64 spec=none",
                "device=cpu model=m depth=0 temperature=0.0 max_new_tokens=64 spec=mtp draft_max=1",
                "device=cpu model=m depth=0 temperature=0.0 max_new_tokens=64 spec=mtp draft_max=2",
                "device=cpu model=m depth=512 temperature=0.0 max_new_tokens=64 spec=none",
                "device=cpu model=m depth=512 temperature=0.0 max_new_tokens=64 spec=mtp draft_max=3",
            ]
        );
    }

    #[test]
    fn linked_axes_vary_together() {
        let cells = expand_text("[axes]\nspec = [\"none\", \"draft\"]\n[[linked]]\nmodel = [\"big\", \"huge\"]\ndraft_model = [\"small\", \"tiny\"]\n").unwrap();
        let pairs: Vec<String> = cells.iter().map(Cell::summary).collect();
        assert_eq!(cells.len(), 4);
        assert!(pairs[1].contains("model=big") && pairs[1].contains("draft_model=small"));
        assert!(pairs[3].contains("model=huge") && pairs[3].contains("draft_model=tiny"));
    }

    #[test]
    fn ids_are_stable_and_order_independent() {
        let a = expand_text("[axes]\nmodel = [\"m\"]\nthreads = [2]\n").unwrap();
        let b = expand_text("[axes]\nthreads = [2]\nmodel = [\"m\"]\n").unwrap();
        assert_eq!(a[0].id, b[0].id);
        assert_eq!(a[0].id.len(), CELL_ID_HEX);
        let mut config = CellConfig::new();
        config.insert("model".into(), Value::from("m"));
        // Pinned: a change here means every existing run directory stops resuming.
        assert_eq!(cell_id(&config), "548f58d1c36c");
    }

    #[test]
    fn impossible_combinations_are_errors() {
        let e = expand_text("[axes]\nmodel = [\"m\"]\nspec = [\"draft\"]\n").unwrap_err();
        assert_eq!(e.key, "axes.draft_model");
        let e = expand_text(
            "[axes]\nmodel = [\"m\"]\nspec = [\"mtp\"]\ndraft_min = [8]\ndraft_max = [4]\n",
        )
        .unwrap_err();
        assert_eq!(e.key, "draft_min");
        let e = expand_text("[axes]\nmodel = [\"m\"]\n[[exclude]]\nmodel = \"m\"\n").unwrap_err();
        assert_eq!(e.key, "exclude");
        let e = expand_text("[axes]\nmodel = [\"m\"]\n[[include]]\ndraft_max = 3\n").unwrap_err();
        assert_eq!(e.key, "include[0].draft_max");
        let e =
            expand_text("[axes]\nmodel = [\"m\"]\nkv_type = [\"f16\", \"iq4_xs\"]\n").unwrap_err();
        assert_eq!(e.key, "kv_type");
        assert!(e.to_string().contains("iq4_xs"), "{e}");
        let e = expand_text("[axes]\nmodel = [\"m\"]\nkv_type = [\"q8_0/q3_k\"]\n").unwrap_err();
        assert_eq!(e.key, "kv_type");
        assert!(
            e.to_string().contains("q3_k") && e.to_string().contains("V type"),
            "{e}"
        );
        let cells = expand_text(
            "[axes]\nmodel = [\"m\"]\nkv_type = [\"f32\", \"f16\", \"q8_0\", \"q4_0\", \"q4_1\", \"q8_0/q4_0\"]\n",
        )
        .unwrap();
        assert_eq!(cells.len(), 6);
    }
}
