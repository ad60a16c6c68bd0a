//! End-to-end tests: harness.
