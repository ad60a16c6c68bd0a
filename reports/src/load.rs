//! Reading a run directory: `results.jsonl` (one [`Record`] per line) and `manifest.json`.
//!
//! Every line is first probed for its `schema_version` so that a file written by a newer
//! specsweep is refused with a clear error instead of a confusing "missing field"; then it is
//! parsed strictly against [`crate::schema`]. Errors name the file and the line.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{ReportError, Result};
use crate::schema::{FailureRecord, Manifest, Record, RequestRecord, SCHEMA_VERSION};

/// File name of the records inside a run directory.
pub const RESULTS_FILE: &str = "results.jsonl";
/// File name of the manifest inside a run directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// A loaded run directory.
#[derive(Debug, Clone)]
pub struct Run {
    /// The directory it was read from.
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// Measured requests, in file order.
    pub requests: Vec<RequestRecord>,
    /// Failed cells (or repetitions), in file order.
    pub failures: Vec<FailureRecord>,
}

/// Only the version, read before the full record.
#[derive(Deserialize)]
struct VersionProbe {
    schema_version: Option<u32>,
}

/// Refuse versions newer than [`SCHEMA_VERSION`]; a missing version is a parse error.
fn check_version(path: &Path, line: usize, text: &str) -> Result<()> {
    let probe: VersionProbe = serde_json::from_str(text).map_err(|e| ReportError::Parse {
        path: path.to_path_buf(),
        line,
        message: e.to_string(),
    })?;
    match probe.schema_version {
        None => Err(ReportError::Parse {
            path: path.to_path_buf(),
            line,
            message: "missing field `schema_version`".into(),
        }),
        Some(found) if found > SCHEMA_VERSION => Err(ReportError::NewerSchema {
            path: path.to_path_buf(),
            line,
            found,
            supported: SCHEMA_VERSION,
        }),
        Some(_) => Ok(()),
    }
}

/// Parse the text of a `results.jsonl` file (`path` is only used in error messages).
pub fn parse_records(path: &Path, text: &str) -> Result<Vec<Record>> {
    let mut records = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_no = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        check_version(path, line_no, line)?;
        let record: Record = serde_json::from_str(line).map_err(|e| ReportError::Parse {
            path: path.to_path_buf(),
            line: line_no,
            message: e.to_string(),
        })?;
        records.push(record);
    }
    Ok(records)
}

/// Read and check `manifest.json`.
pub fn load_manifest(path: &Path) -> Result<Manifest> {
    let text = fs::read_to_string(path).map_err(|e| ReportError::io(path, e))?;
    check_version(path, 1, &text)?;
    serde_json::from_str(&text).map_err(|e| ReportError::Parse {
        path: path.to_path_buf(),
        line: e.line(),
        message: e.to_string(),
    })
}

/// Load a run directory. It must hold a manifest and at least one request record.
pub fn load_run(dir: &Path) -> Result<Run> {
    let manifest = load_manifest(&dir.join(MANIFEST_FILE))?;
    let results_path = dir.join(RESULTS_FILE);
    let text = fs::read_to_string(&results_path).map_err(|e| ReportError::io(&results_path, e))?;
    let mut requests = Vec::new();
    let mut failures = Vec::new();
    for record in parse_records(&results_path, &text)? {
        match record {
            Record::Request(r) => requests.push(r),
            Record::Failure(f) => failures.push(f),
        }
    }
    if requests.is_empty() {
        return Err(ReportError::Empty { path: results_path });
    }
    Ok(Run {
        dir: dir.to_path_buf(),
        manifest,
        requests,
        failures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_schema_is_refused_with_line_number() {
        let text = format!(
            "\n{{\"kind\":\"failure\",\"schema_version\":{}}}\n",
            SCHEMA_VERSION + 1
        );
        let err = parse_records(Path::new("r.jsonl"), &text).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("r.jsonl:2: schema_version"), "{msg}");
        assert!(msg.contains("newer"), "{msg}");
    }

    #[test]
    fn missing_column_names_the_field() {
        let text = r#"{"kind":"failure","schema_version":1,"sweep":"s","cell_id":"c","cell":{},"repetition":0,"cause":"crash"}"#;
        let err = parse_records(Path::new("r.jsonl"), text).unwrap_err();
        assert!(err.to_string().contains("missing field `message`"), "{err}");
    }

    #[test]
    fn missing_version_is_an_error() {
        let err = parse_records(Path::new("r.jsonl"), "{\"kind\":\"failure\"}").unwrap_err();
        assert!(err.to_string().contains("schema_version"), "{err}");
    }
}
