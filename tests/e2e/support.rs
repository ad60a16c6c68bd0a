//! Helpers shared by the end-to-end tests: locating the binary, fixtures and ../shared.

use std::path::PathBuf;
use std::process::Command;

/// The repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A fixture under tests/fixtures.
pub fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests").join("fixtures").join(name)
}

/// A `Command` for the built `specsweep` binary.
pub fn specsweep() -> Command {
    Command::new(env!("CARGO_BIN_EXE_specsweep"))
}
