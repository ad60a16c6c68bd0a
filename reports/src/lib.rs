//! Reports: aggregate specsweep run directories (versioned JSONL) into tables, charts, comparisons
//! and a CI gate. Depends on neither the engine nor the harness: its only input is [`schema`].

pub mod aggregate;
pub mod agreement;
pub mod baseline;
pub mod chart;
pub mod compare;
pub mod error;
pub mod export;
pub mod gate;
pub mod html;
pub mod load;
pub mod report;
pub mod schema;
pub mod stats;
pub mod synthetic;
pub mod table;

pub use error::{ReportError, Result};
