//! End-to-end tests: spec.
