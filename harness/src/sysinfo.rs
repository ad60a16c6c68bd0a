//! What machine a run is on: CPU, cores, governor, memory, GPUs, OS and kernel (pyperf's and
//! llama-bench's metadata). Everything is read from /proc, /sys, /etc/os-release and `nvidia-smi`;
//! a missing source gives "unknown" (or none), never an error, so a run can start on any Linux box.

use std::process::Command;

/// Facts about this machine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SysInfo {
    pub cpu_model: String,
    pub cpu_cores: u32,
    pub cpu_governor: Option<String>,
    pub memory_bytes: u64,
    /// One entry per GPU: "name, driver version, memory".
    pub gpus: Vec<String>,
    pub os: String,
    pub kernel: String,
}

/// Collect [`SysInfo`] for this machine.
pub fn collect() -> SysInfo {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    SysInfo {
        cpu_model: cpu_model(&cpuinfo),
        cpu_cores: std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1),
        cpu_governor: read_trimmed("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        memory_bytes: field(&meminfo, "MemTotal", ':')
            .and_then(|v| v.trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024),
        gpus: nvidia_gpus(),
        os: field(&os_release, "PRETTY_NAME", '=')
            .map(|s| s.trim_matches('"').to_string())
            .unwrap_or_else(|| std::env::consts::OS.into()),
        kernel: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_else(|| "unknown".into()),
    }
}

/// The CPU's name and, where /proc/cpuinfo gives them, its family / model / stepping: a VM guest
/// often sees only a product line ("AMD EPYC" names five generations), and `specsweep gate`
/// compares absolute tok/s only between runs whose CPU is the same by this string.
fn cpu_model(cpuinfo: &str) -> String {
    let name = field(cpuinfo, "model name", ':').unwrap_or_else(|| "unknown".into());
    match (
        field(cpuinfo, "cpu family", ':'),
        field(cpuinfo, "model", ':'),
        field(cpuinfo, "stepping", ':'),
    ) {
        (Some(f), Some(m), Some(s)) => format!("{name} (family {f}, model {m}, stepping {s})"),
        _ => name,
    }
}

/// The value of the first `key<sep>value` line of `text`.
fn field(text: &str, key: &str, sep: char) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(sep)?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// GPUs as `nvidia-smi` reports them; empty when there is no NVIDIA driver.
fn nvidia_gpus() -> Vec<String> {
    let output = Command::new("nvidia-smi")
        .args([
            "--query-gpu=name,driver_version,memory.total",
            "--format=csv,noheader",
        ])
        .output();
    match output {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_key_value_files() {
        assert_eq!(
            field(
                "processor\t: 0\nmodel name\t: Some CPU @ 2GHz\n",
                "model name",
                ':'
            )
            .as_deref(),
            Some("Some CPU @ 2GHz")
        );
        assert_eq!(
            field("NAME=x\nPRETTY_NAME=\"Debian 13\"\n", "PRETTY_NAME", '=').as_deref(),
            Some("\"Debian 13\"")
        );
        assert_eq!(
            cpu_model("model name\t: AMD EPYC\ncpu family\t: 25\nmodel\t\t: 1\nstepping\t: 1\n"),
            "AMD EPYC (family 25, model 1, stepping 1)"
        );
        assert_eq!(cpu_model("model name\t: Some CPU\n"), "Some CPU");
        let info = collect();
        assert!(info.cpu_cores >= 1);
        assert!(info.memory_bytes > 0, "/proc/meminfo is readable on Linux");
    }
}
