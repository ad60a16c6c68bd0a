//! Reports: aggregate specsweep run directories (versioned JSONL) into tables, charts, comparisons
//! and a CI gate. Depends on neither the engine nor the harness: its only input is [`schema`].

pub mod aggregate;
pub mod error;
pub mod load;
pub mod schema;
pub mod stats;
pub mod synthetic;

pub use error::{ReportError, Result};
