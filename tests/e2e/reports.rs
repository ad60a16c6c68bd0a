//! End-to-end tests: reports.
