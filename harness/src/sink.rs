//! Result sinks: where records go as they are produced (ripgrep's push-style `Sink`).
//!
//! [`JsonlSink`] appends one JSON object per line to `results.jsonl` and flushes and fsyncs after
//! every record, so a crash of the harness loses nothing already reported. [`recover`] is the other
//! half of crash safety: it reads an existing file, cuts a partially written last line, and cuts a
//! trailing unit (cell × repetition) that has fewer records than it should — the only damage an
//! interrupted append can leave, because units are appended whole and one at a time.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use specsweep_reports::schema::{Record, RecordKey};
use thiserror::Error;

/// A sink failure, naming the file.
#[derive(Debug, Error)]
#[error("{}: {message}", path.display())]
pub struct SinkError {
    pub path: PathBuf,
    pub message: String,
}

/// Receives each record as soon as it exists.
pub trait Sink {
    /// Durably store one record.
    fn append(&mut self, record: &Record) -> Result<(), SinkError>;
}

/// Appends records to a JSONL file (flush + fsync per record).
#[derive(Debug)]
pub struct JsonlSink {
    path: PathBuf,
    file: File,
}

impl JsonlSink {
    /// Open `path` for appending, creating it if needed.
    pub fn open(path: &Path) -> Result<JsonlSink, SinkError> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| SinkError {
                path: path.to_path_buf(),
                message: format!("cannot open for appending: {e}"),
            })?;
        Ok(JsonlSink {
            path: path.to_path_buf(),
            file,
        })
    }
}

impl Sink for JsonlSink {
    fn append(&mut self, record: &Record) -> Result<(), SinkError> {
        let err = |e: std::io::Error| SinkError {
            path: self.path.clone(),
            message: e.to_string(),
        };
        let mut line = serde_json::to_vec(record).map_err(|e| SinkError {
            path: self.path.clone(),
            message: e.to_string(),
        })?;
        line.push(b'\n');
        self.file.write_all(&line).map_err(err)?;
        self.file.flush().map_err(err)?;
        self.file.sync_data().map_err(err)
    }
}

/// Collects records in memory (tests, `--dry-run`).
#[derive(Debug, Default)]
pub struct MemorySink {
    pub records: Vec<Record>,
}

impl Sink for MemorySink {
    fn append(&mut self, record: &Record) -> Result<(), SinkError> {
        self.records.push(record.clone());
        Ok(())
    }
}

/// The key of a record.
pub fn record_key(record: &Record) -> &RecordKey {
    match record {
        Record::Request(r) => &r.key,
        Record::Failure(f) => &f.key,
    }
}

/// What [`recover`] found in an existing results file.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The records kept, in file order.
    pub records: Vec<Record>,
    /// Units (cell id, repetition) that are complete: all their records, or a failure.
    pub done: BTreeSet<(String, u32)>,
    /// Bytes cut from the end of the file (a partial line and/or an incomplete unit).
    pub truncated_bytes: u64,
}

/// Read `path` (absent = empty), cut damage at its end, and report the complete units.
/// `expected(cell_id)` is the number of request records a complete unit of that cell has.
pub fn recover(
    path: &Path,
    expected: &dyn Fn(&str) -> Option<usize>,
) -> Result<Recovered, SinkError> {
    let err = |line: usize, message: String| SinkError {
        path: path.to_path_buf(),
        message: if line > 0 {
            format!("line {line}: {message}")
        } else {
            message
        },
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Recovered::default()),
        Err(e) => return Err(err(0, format!("cannot read: {e}"))),
    };
    // Parse complete lines; a last line without '\n' (or that does not parse) is a partial write.
    let mut parsed: Vec<(usize, Record)> = Vec::new(); // (start offset, record)
    let mut offset = 0usize;
    let mut keep = 0usize;
    let mut line_no = 0;
    while offset < bytes.len() {
        line_no += 1;
        let Some(len) = bytes[offset..].iter().position(|&b| b == b'\n') else {
            break;
        };
        let line = &bytes[offset..offset + len];
        let is_last = offset + len + 1 >= bytes.len();
        match serde_json::from_slice::<Record>(line) {
            Ok(record) => parsed.push((offset, record)),
            Err(_) if is_last => break,
            Err(e) => return Err(err(line_no, format!("not a result record: {e}"))),
        }
        offset += len + 1;
        keep = offset;
    }
    // Group contiguous records by unit; only the trailing group may be incomplete.
    let mut recovered = Recovered::default();
    let mut start = 0;
    while start < parsed.len() {
        let unit = unit_of(&parsed[start].1);
        let mut end = start + 1;
        while end < parsed.len() && unit_of(&parsed[end].1) == unit {
            end += 1;
        }
        let group = &parsed[start..end];
        let failed = group.iter().any(|(_, r)| matches!(r, Record::Failure(_)));
        let complete = failed || expected(&unit.0).is_none_or(|n| group.len() >= n);
        if !complete {
            if end == parsed.len() {
                keep = group[0].0;
                break;
            }
            return Err(err(
                0,
                format!(
                    "unit {} repetition {} is incomplete in the middle of the file",
                    unit.0, unit.1
                ),
            ));
        }
        if recovered.done.contains(&unit) {
            return Err(err(
                0,
                format!("unit {} repetition {} appears twice", unit.0, unit.1),
            ));
        }
        recovered.done.insert(unit);
        recovered
            .records
            .extend(group.iter().map(|(_, r)| r.clone()));
        start = end;
    }
    if keep < bytes.len() {
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| err(0, format!("cannot open to repair: {e}")))?;
        file.set_len(keep as u64)
            .map_err(|e| err(0, format!("cannot truncate: {e}")))?;
        file.sync_all()
            .map_err(|e| err(0, format!("cannot sync: {e}")))?;
        recovered.truncated_bytes = (bytes.len() - keep) as u64;
    }
    Ok(recovered)
}

fn unit_of(record: &Record) -> (String, u32) {
    let key = record_key(record);
    (key.cell_id.clone(), key.repetition)
}

#[cfg(test)]
mod tests {
    use super::*;
    use specsweep_reports::schema::{FailureCause, FailureRecord, SCHEMA_VERSION};

    fn failure(cell: &str, rep: u32) -> Record {
        Record::Failure(FailureRecord {
            key: RecordKey {
                schema_version: SCHEMA_VERSION,
                sweep: "t".into(),
                cell_id: cell.into(),
                cell: Default::default(),
                baseline_cell_id: None,
                repetition: rep,
            },
            cause: FailureCause::Timeout,
            message: "m".into(),
        })
    }

    #[test]
    fn partial_last_line_is_cut() {
        let dir = crate::testdir::TestDir::new("sink-partial");
        let path = dir.path().join("results.jsonl");
        let mut sink = JsonlSink::open(&path).unwrap();
        sink.append(&failure("a", 0)).unwrap();
        sink.append(&failure("b", 0)).unwrap();
        let full = std::fs::read(&path).unwrap();
        std::fs::write(&path, &full[..full.len() - 7]).unwrap();
        let r = recover(&path, &|_| Some(1)).unwrap();
        assert_eq!(r.records.len(), 1);
        assert!(r.done.contains(&("a".to_string(), 0)) && !r.done.contains(&("b".to_string(), 0)));
        assert_eq!(std::fs::read(&path).unwrap().len(), full.len() / 2);
    }

    #[test]
    fn corrupt_middle_line_is_an_error() {
        let dir = crate::testdir::TestDir::new("sink-corrupt");
        let path = dir.path().join("results.jsonl");
        std::fs::write(&path, "garbage\n{}\n").unwrap();
        let e = recover(&path, &|_| Some(1)).unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
    }
}
