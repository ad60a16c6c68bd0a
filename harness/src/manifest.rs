//! `RUN_DIR/manifest.json`: everything needed to reproduce a run's numbers (schema
//! [`specsweep_reports::schema::Manifest`]).
//!
//! Build facts come from build.rs (rustc version of the compiler that built this binary, the
//! locked burn version, cargo features); the git sha and dirty flag are read from the source tree
//! this binary was built from (when it is still a git checkout); machine facts from [`crate::sysinfo`].
//! A resumed run keeps the original manifest; only `ended_at` is updated.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use specsweep_reports::schema::{Manifest, SCHEMA_VERSION};

use crate::sweep::Sweep;
use crate::sysinfo::SysInfo;

/// Build a fresh manifest for a run of `sweep` (models and suites hashed by the caller).
pub fn new_manifest(
    sweep: &Sweep,
    sys: &SysInfo,
    models: std::collections::BTreeMap<String, String>,
    suites: std::collections::BTreeMap<String, String>,
) -> Manifest {
    let (git_sha, git_dirty) = git_state(&Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
    Manifest {
        schema_version: SCHEMA_VERSION,
        sweep: sweep.header.name.clone(),
        sweep_sha256: sweep.sha256.clone(),
        sweep_toml: sweep.text.clone(),
        git_sha,
        git_dirty,
        binary_sha256: std::env::current_exe()
            .ok()
            .and_then(|p| crate::hashing::sha256_file(&p).ok())
            .unwrap_or_else(|| "unknown".into()),
        specsweep_version: env!("CARGO_PKG_VERSION").into(),
        rustc_version: env!("SPECSWEEP_RUSTC_VERSION").into(),
        burn_version: env!("SPECSWEEP_BURN_VERSION").into(),
        cargo_features: env!("SPECSWEEP_FEATURES")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
        cpu_model: sys.cpu_model.clone(),
        cpu_cores: sys.cpu_cores,
        cpu_governor: sys.cpu_governor.clone(),
        memory_bytes: sys.memory_bytes,
        gpus: sys.gpus.clone(),
        os: sys.os.clone(),
        kernel: sys.kernel.clone(),
        models,
        suites,
        seed: sweep.header.seed,
        started_at: rfc3339_now(),
        ended_at: None,
    }
}

/// `git rev-parse HEAD` and whether `git status --porcelain` lists anything, in `dir`.
fn git_state(dir: &Path) -> (Option<String>, Option<bool>) {
    let run = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
    };
    let sha = run(&["rev-parse", "HEAD"]).map(|s| s.trim().to_string());
    let dirty = sha
        .as_ref()
        .and_then(|_| run(&["status", "--porcelain"]))
        .map(|s| !s.trim().is_empty());
    (sha, dirty)
}

/// The current UTC time as RFC 3339 (`2026-11-23T12:00:00Z`).
pub fn rfc3339_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

/// Seconds since the Unix epoch as RFC 3339 UTC (civil-from-days, H. Hinnant's algorithm).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Write `manifest` to `path` atomically (temporary file + rename).
pub fn write_manifest(path: &Path, manifest: &Manifest) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(manifest).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, text + "\n")?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_435_200), "2026-11-23T12:00:00Z");
    }

    #[test]
    fn build_facts_are_recorded() {
        assert!(env!("SPECSWEEP_RUSTC_VERSION").starts_with("rustc "));
        assert_eq!(env!("SPECSWEEP_BURN_VERSION"), "0.21.0");
    }
}
