//! End-to-end tests: gguf.
