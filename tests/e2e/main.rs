//! End-to-end tests of the `specsweep` binary: one test binary, fixtures under tests/fixtures.

mod engine;
mod gguf;
mod harness;
mod moe;
mod reports;
mod spec;
mod support;
