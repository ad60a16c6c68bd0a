//! The harness: sweep files → cells → isolated, resumable runs over prompt suites, with every
//! number recorded next to the manifest that reproduces it. Also hosts the CLI commands (`cmd`).

pub mod cmd;
