//! The engine's error type: one enum with context fields, lowercase one-line messages.

use std::path::PathBuf;

/// Result alias for engine operations.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;

/// Everything that can go wrong inside the engine. Messages are one line and name the file,
/// field or tensor concerned.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error("{path}: field `{field}`: {message}")]
    Config {
        path: PathBuf,
        field: String,
        message: String,
    },
    #[error("tensor `{tensor}` is missing from {path}")]
    MissingTensor { path: PathBuf, tensor: String },
    #[error("tensor `{tensor}` has shape {got:?}, expected {expected:?}")]
    Shape {
        tensor: String,
        expected: Vec<usize>,
        got: Vec<usize>,
    },
    #[error("tensor `{tensor}`: unsupported dtype {dtype}")]
    DType { tensor: String, dtype: String },
    #[error("unsupported architecture `{arch}` (supported: {supported})")]
    Architecture { arch: String, supported: String },
    #[error("token id {id} is outside the vocabulary (size {vocab})")]
    TokenOutOfRange { id: u32, vocab: usize },
    #[error("kv cache: cannot truncate to {requested}, length is {len}")]
    CacheRollback { len: usize, requested: usize },
    #[error("kv cache: {needed} positions needed, capacity is {capacity}")]
    CacheFull { needed: usize, capacity: usize },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("device `{0}` is not available in this build (enable its cargo feature)")]
    Device(String),
    #[error("device `{device}`: {message}")]
    DeviceFailed { device: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

impl EngineError {
    /// Wrap an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            error: source,
        }
    }
}
