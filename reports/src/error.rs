//! The error type of the `reports` library: every variant names the file, line, field or cell it
//! is about, so the CLI can print it as one line (`specsweep: error: ...`) and exit non-zero.

use std::path::PathBuf;

/// Everything that can go wrong while reading runs, aggregating, charting or gating.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file could not be read or written.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A line of `results.jsonl` (or a JSON file) is not valid for the schema.
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// The input was written by a newer specsweep than this one.
    #[error(
        "{path}:{line}: schema_version {found} is newer than this build understands ({supported}); \
         upgrade specsweep"
    )]
    NewerSchema {
        path: PathBuf,
        line: usize,
        found: u32,
        supported: u32,
    },
    /// Inputs that cannot be put together (different sweeps, a cell missing from a run, ...).
    #[error("{0}")]
    Incompatible(String),
    /// A run directory holds no request records at all.
    #[error("{path}: no request records")]
    Empty { path: PathBuf },
    /// polars failed while aggregating or exporting.
    #[error("{context}: {error}")]
    Polars {
        context: String,
        error: polars::error::PolarsError,
    },
    /// plotters failed while drawing a chart.
    #[error("chart `{chart}`: {message}")]
    Chart { chart: String, message: String },
}

impl ReportError {
    /// Wrap an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ReportError::Io {
            path: path.into(),
            error: source,
        }
    }

    /// Wrap a polars error with what was being done.
    pub fn polars(context: impl Into<String>, source: polars::error::PolarsError) -> Self {
        ReportError::Polars {
            context: context.into(),
            error: source,
        }
    }
}

/// Result alias of the `reports` library.
pub type Result<T, E = ReportError> = std::result::Result<T, E>;
