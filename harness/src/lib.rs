//! The harness: sweep files → cells → isolated, resumable runs over prompt suites, with every
//! number recorded next to the manifest that reproduces it. Also hosts the CLI commands (`cmd`).

pub mod axes;
pub mod chat;
pub mod cmd;
pub mod depth;
pub mod executor;
pub mod hashing;
pub mod job;
pub mod manifest;
pub mod matrix;
pub mod measure;
pub mod models;
pub mod plan;
pub mod process;
pub mod progress;
pub mod range;
pub mod runner;
pub mod schedule;
pub mod sink;
pub mod spec_args;
pub mod suite;
pub mod sweep;
pub mod sysinfo;
#[cfg(test)]
mod testdir;
