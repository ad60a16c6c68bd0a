//! Sweep files: the TOML a person writes, parsed into a validated [`Sweep`].
//!
//! Parsing follows ripgrep's "low form → high form" split: the TOML is read as a raw table, then
//! every key is checked by hand against the schema below so that an unknown key, a wrong type or an
//! empty axis is a one-line error naming the file and the full key path (`axes.depth[1]`). This is
//! `deny_unknown_fields` with better messages than serde's (which do not name the key of a type
//! error). The schema itself is documented in README.md ("Sweep files").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;
use thiserror::Error;

use crate::axes::{AXES, AxisKind, MODES, axis_def};
use crate::range::parse_int_range;

/// A sweep file that cannot be used: the file, the offending key path, and why.
#[derive(Debug, Error)]
#[error("{}: key `{key}`: {message}", file.display())]
pub struct SweepError {
    pub file: PathBuf,
    pub key: String,
    pub message: String,
}

/// The header of a sweep: everything that is the same for every cell.
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    pub name: String,
    /// Suite names (resolved under suites/) or paths to JSONL files.
    pub suites: Vec<String>,
    pub repetitions: u32,
    /// Unrecorded warmup requests run by each worker after loading, before measuring.
    pub warmup: u32,
    pub seed: u64,
    pub max_new_tokens: u32,
    /// Temperature used when `temperature` is not an axis.
    pub temperature: f64,
    pub timeout_s: f64,
    /// Use only the first N prompts of each suite.
    pub max_prompts: Option<u32>,
}

/// One dimension of the product: a single axis, or a group of linked axes that vary together.
#[derive(Debug, Clone, PartialEq)]
pub struct Dim {
    /// Axis names in this dimension (one for a plain axis).
    pub keys: Vec<String>,
    /// One row per point of the dimension; each row holds one value per key.
    pub rows: Vec<Vec<Value>>,
}

/// A match rule of `[[exclude]]`: every key must hold one of the listed values.
pub type Rule = BTreeMap<String, Vec<Value>>;

/// A validated sweep file (the "high form"), ready for [`crate::matrix::expand`].
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    pub path: PathBuf,
    /// The file's text and its sha256 (for the manifest and resume checks).
    pub text: String,
    pub sha256: String,
    pub header: Header,
    /// Speculation modes in file order (`spec` axis; `["none"]` when absent).
    pub modes: Vec<String>,
    /// Axes and linked groups shared by all modes, in file order (without `spec`).
    pub dims: Vec<Dim>,
    /// `[modes.<mode>]` axes that replace the shared axis of the same name for that mode.
    pub mode_dims: BTreeMap<String, Vec<Dim>>,
    pub exclude: Vec<Rule>,
    /// `[[include]]` cells: key → single value.
    pub include: Vec<BTreeMap<String, Value>>,
}

const HEADER_KEYS: &[&str] = &[
    "name",
    "suites",
    "repetitions",
    "warmup",
    "seed",
    "max_new_tokens",
    "temperature",
    "timeout_s",
    "max_prompts",
    "axes",
    "modes",
    "exclude",
    "include",
    "linked",
];

impl Sweep {
    /// Read and validate a sweep file.
    pub fn load(path: &Path) -> Result<Sweep, SweepError> {
        let text = std::fs::read_to_string(path).map_err(|e| SweepError {
            file: path.to_path_buf(),
            key: "-".into(),
            message: format!("cannot read the file: {e}"),
        })?;
        Sweep::parse(path, &text)
    }

    /// Validate sweep `text` (whose file name is used in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Sweep, SweepError> {
        let p = Parser { file: path };
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let line = e.span().map(|s| 1 + text[..s.start].matches('\n').count());
            SweepError {
                file: path.to_path_buf(),
                key: line.map_or("-".into(), |l| format!("line {l}")),
                message: format!("invalid TOML: {}", e.message().trim()),
            }
        })?;
        for key in table.keys() {
            if !HEADER_KEYS.contains(&key.as_str()) {
                return Err(p.err(
                    key,
                    format!("unknown key (known: {})", HEADER_KEYS.join(", ")),
                ));
            }
        }
        let header = p.header(&table)?;
        let axes = match table.get("axes") {
            Some(toml::Value::Table(t)) => t.clone(),
            Some(_) => return Err(p.err("axes", "expected a table".into())),
            None => {
                return Err(p.err(
                    "axes",
                    "missing: a sweep needs at least `axes.model`".into(),
                ));
            }
        };
        let mut dims = Vec::new();
        let mut modes = vec!["none".to_string()];
        for (key, value) in &axes {
            let path = format!("axes.{key}");
            let values = p.axis_values(&path, key, value)?;
            if key == "spec" {
                modes = values
                    .iter()
                    .map(|v| v.as_str().unwrap_or_default().to_string())
                    .collect();
                if let Some(dup) = first_duplicate(&modes) {
                    return Err(p.err(&path, format!("mode `{dup}` is listed twice")));
                }
                continue;
            }
            if key == "temperature" && table.contains_key("temperature") {
                return Err(p.err(
                    &path,
                    "set `temperature` in the header or as an axis, not both".into(),
                ));
            }
            dims.push(Dim {
                keys: vec![key.clone()],
                rows: values.into_iter().map(|v| vec![v]).collect(),
            });
        }
        if let Some(linked) = table.get("linked") {
            let groups = linked.as_array().ok_or_else(|| {
                p.err("linked", "expected an array of tables ([[linked]])".into())
            })?;
            for (i, group) in groups.iter().enumerate() {
                dims.push(p.linked(i, group, &dims)?);
            }
        }
        if !dims.iter().any(|d| d.keys.iter().any(|k| k == "model")) {
            return Err(p.err(
                "axes.model",
                "missing: every sweep needs a model axis".into(),
            ));
        }
        let mut mode_dims = BTreeMap::new();
        if let Some(section) = table.get("modes") {
            let section = section
                .as_table()
                .ok_or_else(|| p.err("modes", "expected a table".into()))?;
            for (mode, axes) in section {
                let path = format!("modes.{mode}");
                if !MODES.contains(&mode.as_str()) {
                    return Err(p.err(
                        &path,
                        format!("unknown speculation mode (known: {})", MODES.join(", ")),
                    ));
                }
                if !modes.contains(mode) {
                    return Err(p.err(
                        &path,
                        format!("impossible combination: mode `{mode}` is not in axes.spec"),
                    ));
                }
                let axes = axes
                    .as_table()
                    .ok_or_else(|| p.err(&path, "expected a table".into()))?;
                let mut list = Vec::new();
                for (key, value) in axes {
                    let kpath = format!("{path}.{key}");
                    let values = p.axis_values(&kpath, key, value)?;
                    if !axis_def(key).is_some_and(|d| d.applies_to(mode)) || key == "spec" {
                        return Err(p.err(
                            &kpath,
                            format!("impossible combination: mode `{mode}` does not take `{key}`"),
                        ));
                    }
                    list.push(Dim {
                        keys: vec![key.clone()],
                        rows: values.into_iter().map(|v| vec![v]).collect(),
                    });
                }
                mode_dims.insert(mode.clone(), list);
            }
        }
        // A mode-specific axis that no listed mode takes can only be a mistake.
        for dim in &dims {
            for key in &dim.keys {
                let def = axis_def(key).expect("validated");
                if !modes.iter().any(|m| def.applies_to(m)) {
                    return Err(p.err(
                        &format!("axes.{key}"),
                        format!(
                            "impossible combination: no mode in axes.spec ({}) takes `{key}`",
                            modes.join(", ")
                        ),
                    ));
                }
            }
        }
        let exclude = p.rules(&table, "exclude")?;
        let include = p
            .rules(&table, "include")?
            .into_iter()
            .enumerate()
            .map(|(i, rule)| {
                rule.into_iter()
                    .map(|(k, mut v)| {
                        if v.len() != 1 {
                            return Err(p.err(
                                &format!("include[{i}].{k}"),
                                "expected a single value".into(),
                            ));
                        }
                        Ok((k, v.remove(0)))
                    })
                    .collect::<Result<BTreeMap<_, _>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Sweep {
            path: path.to_path_buf(),
            text: text.to_string(),
            sha256: crate::hashing::sha256_hex(text.as_bytes()),
            header,
            modes,
            dims,
            mode_dims,
            exclude,
            include,
        })
    }
}

fn first_duplicate(items: &[String]) -> Option<&String> {
    items
        .iter()
        .enumerate()
        .find(|(i, x)| items[..*i].contains(x))
        .map(|(_, x)| x)
}

struct Parser<'a> {
    file: &'a Path,
}

impl Parser<'_> {
    fn err(&self, key: &str, message: String) -> SweepError {
        SweepError {
            file: self.file.to_path_buf(),
            key: key.to_string(),
            message,
        }
    }

    fn header(&self, t: &toml::Table) -> Result<Header, SweepError> {
        let name = match t.get("name") {
            Some(toml::Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(toml::Value::String(_)) => {
                return Err(self.err("name", "must not be empty".into()));
            }
            Some(v) => {
                return Err(self.err("name", format!("expected a string, got {}", v.type_str())));
            }
            None => return Err(self.err("name", "missing".into())),
        };
        let suites = match t.get("suites") {
            Some(toml::Value::Array(a)) if a.is_empty() => {
                return Err(self.err("suites", "must list at least one suite".into()));
            }
            Some(toml::Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str().map(str::to_string).ok_or_else(|| {
                        self.err(
                            &format!("suites[{i}]"),
                            format!("expected a string, got {}", v.type_str()),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(v) => {
                return Err(self.err(
                    "suites",
                    format!("expected an array of suite names, got {}", v.type_str()),
                ));
            }
            None => return Err(self.err("suites", "missing".into())),
        };
        let int = |key: &str, default: i64, min: i64| -> Result<i64, SweepError> {
            match t.get(key) {
                None => Ok(default),
                Some(toml::Value::Integer(i)) if *i >= min => Ok(*i),
                Some(toml::Value::Integer(i)) => {
                    Err(self.err(key, format!("must be at least {min}, got {i}")))
                }
                Some(v) => Err(self.err(key, format!("expected an integer, got {}", v.type_str()))),
            }
        };
        let float = |key: &str, default: f64| -> Result<f64, SweepError> {
            match t.get(key) {
                None => Ok(default),
                Some(toml::Value::Float(f)) if *f >= 0.0 && f.is_finite() => Ok(*f),
                Some(toml::Value::Integer(i)) if *i >= 0 => Ok(*i as f64),
                Some(toml::Value::Float(_) | toml::Value::Integer(_)) => {
                    Err(self.err(key, "must be a finite number ≥ 0".into()))
                }
                Some(v) => Err(self.err(key, format!("expected a number, got {}", v.type_str()))),
            }
        };
        let timeout_s = float("timeout_s", 600.0)?;
        if timeout_s <= 0.0 {
            return Err(self.err("timeout_s", "must be positive".into()));
        }
        Ok(Header {
            name,
            suites,
            repetitions: int("repetitions", 1, 1)? as u32,
            warmup: int("warmup", 0, 0)? as u32,
            seed: int("seed", 0, 0)? as u64,
            max_new_tokens: int("max_new_tokens", 64, 1)? as u32,
            temperature: float("temperature", 0.0)?,
            timeout_s,
            max_prompts: if t.contains_key("max_prompts") {
                Some(int("max_prompts", 1, 1)? as u32)
            } else {
                None
            },
        })
    }

    /// Check one axis: known name, non-empty array, every element of the right type; ranges expanded.
    fn axis_values(
        &self,
        path: &str,
        key: &str,
        value: &toml::Value,
    ) -> Result<Vec<Value>, SweepError> {
        let Some(def) = axis_def(key) else {
            let known: Vec<&str> = AXES.iter().map(|a| a.name).collect();
            return Err(self.err(path, format!("unknown axis (known: {})", known.join(", "))));
        };
        let items = match value {
            toml::Value::Array(a) if a.is_empty() => {
                return Err(self.err(path, "empty axis: list at least one value".into()));
            }
            toml::Value::Array(a) => a,
            v => {
                return Err(self.err(
                    path,
                    format!(
                        "expected a list of values, got {} (write `{key} = [...]`)",
                        v.type_str()
                    ),
                ));
            }
        };
        let mut out: Vec<Value> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let ipath = format!("{path}[{i}]");
            let wrong = |expected: &str| {
                self.err(
                    &ipath,
                    format!("expected {expected}, got {}", item.type_str()),
                )
            };
            match (def.kind, item) {
                (AxisKind::Int, toml::Value::Integer(n)) => out.push(Value::from(*n)),
                (AxisKind::Int, toml::Value::String(s)) => {
                    let values = parse_int_range(s).map_err(|e| self.err(&ipath, e.to_string()))?;
                    out.extend(values.into_iter().map(Value::from));
                }
                (AxisKind::Int, _) => {
                    return Err(wrong("an integer or a range string like \"1..8+1\""));
                }
                (AxisKind::Float, toml::Value::Float(f)) if f.is_finite() => {
                    out.push(Value::from(*f))
                }
                (AxisKind::Float, toml::Value::Integer(n)) => out.push(Value::from(*n as f64)),
                (AxisKind::Float, _) => return Err(wrong("a number")),
                (AxisKind::Bool, toml::Value::Boolean(b)) => out.push(Value::from(*b)),
                (AxisKind::Bool, _) => return Err(wrong("a boolean")),
                (AxisKind::Str, toml::Value::String(s)) if !s.is_empty() => {
                    out.push(Value::from(s.clone()))
                }
                (AxisKind::Str, _) => return Err(wrong("a non-empty string")),
            }
            if let Some(Value::Number(n)) = out.last()
                && def.kind == AxisKind::Int
                && n.as_i64().is_some_and(|n| n < 0)
            {
                return Err(self.err(&ipath, "must not be negative".into()));
            }
        }
        if key == "spec" {
            for (i, v) in out.iter().enumerate() {
                let mode = v.as_str().unwrap_or_default();
                if !MODES.contains(&mode) {
                    return Err(self.err(
                        &format!("{path}[{i}]"),
                        format!(
                            "unknown speculation mode `{mode}` (known: {})",
                            MODES.join(", ")
                        ),
                    ));
                }
            }
        }
        let mut seen: Vec<&Value> = Vec::new();
        for v in &out {
            if seen.contains(&v) {
                return Err(self.err(path, format!("value {v} is listed twice")));
            }
            seen.push(v);
        }
        Ok(out)
    }

    fn linked(&self, i: usize, group: &toml::Value, dims: &[Dim]) -> Result<Dim, SweepError> {
        let path = format!("linked[{i}]");
        let group = group
            .as_table()
            .ok_or_else(|| self.err(&path, "expected a table of equally long lists".into()))?;
        if group.len() < 2 {
            return Err(self.err(&path, "a linked group needs at least two axes".into()));
        }
        let mut keys = Vec::new();
        let mut columns = Vec::new();
        for (key, value) in group {
            let kpath = format!("{path}.{key}");
            if key == "spec" {
                return Err(self.err(
                    &kpath,
                    "`spec` cannot be linked (use [modes.<mode>] sections)".into(),
                ));
            }
            if dims.iter().any(|d| d.keys.contains(key)) {
                return Err(self.err(&kpath, "this axis is already given elsewhere".into()));
            }
            let column = self.axis_values(&kpath, key, value)?;
            if let Some(first) = columns.first().map(Vec::len)
                && first != column.len()
            {
                return Err(self.err(
                    &kpath,
                    format!(
                        "linked axes must have equal lengths ({first} vs {})",
                        column.len()
                    ),
                ));
            }
            keys.push(key.clone());
            columns.push(column);
        }
        let rows = (0..columns[0].len())
            .map(|r| columns.iter().map(|c| c[r].clone()).collect())
            .collect();
        Ok(Dim { keys, rows })
    }

    fn rules(&self, t: &toml::Table, section: &str) -> Result<Vec<Rule>, SweepError> {
        let Some(value) = t.get(section) else {
            return Ok(Vec::new());
        };
        let rules = value.as_array().ok_or_else(|| {
            self.err(
                section,
                format!("expected an array of tables ([[{section}]])"),
            )
        })?;
        let mut out = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            let path = format!("{section}[{i}]");
            let rule = rule
                .as_table()
                .ok_or_else(|| self.err(&path, "expected a table".into()))?;
            if rule.is_empty() {
                return Err(self.err(&path, "an empty rule would match every cell".into()));
            }
            let mut parsed = Rule::new();
            for (key, value) in rule {
                let kpath = format!("{path}.{key}");
                let list = match value {
                    toml::Value::Array(_) => value.clone(),
                    scalar => toml::Value::Array(vec![scalar.clone()]),
                };
                parsed.insert(key.clone(), self.axis_values(&kpath, key, &list)?);
            }
            out.push(parsed);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Sweep, SweepError> {
        Sweep::parse(Path::new("s.toml"), text)
    }

    const OK: &str = "name = \"t\"\nsuites = [\"tiny\"]\n[axes]\nmodel = [\"default\"]\n";

    #[test]
    fn minimal_sweep_parses_with_defaults() {
        let s = parse(OK).unwrap();
        assert_eq!(s.header.repetitions, 1);
        assert_eq!(s.header.max_new_tokens, 64);
        assert_eq!(s.modes, vec!["none"]);
        assert_eq!(s.dims.len(), 1);
        assert_eq!(s.sha256.len(), 64);
    }

    #[test]
    fn ranges_and_linked_axes() {
        let s = parse(&format!("{OK}depth = [0, \"512..2048*2\"]\n[[linked]]\nthreads = [1, 2]\nquant = [\"f32\", \"f16\"]\n")).unwrap();
        let depth = s.dims.iter().find(|d| d.keys == ["depth"]).unwrap();
        let values: Vec<i64> = depth.rows.iter().map(|r| r[0].as_i64().unwrap()).collect();
        assert_eq!(values, [0, 512, 1024, 2048]);
        let linked = s.dims.iter().find(|d| d.keys.len() == 2).unwrap();
        assert_eq!(linked.keys, ["quant", "threads"]);
        assert_eq!(linked.rows[1], vec![Value::from("f16"), Value::from(2)]);
    }
}
