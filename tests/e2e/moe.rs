//! End-to-end tests: moe.
