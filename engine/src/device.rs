//! Which device the engine runs on, chosen at run time (`--device cpu|wgpu[:N]|cuda[:N]`) because
//! it is the sweep's hardware axis. GPU devices exist only when their cargo feature is compiled.

use std::fmt;
use std::str::FromStr;

use crate::error::EngineError;

/// A compute device: the CPU (burn `flex`), a wgpu adapter or a CUDA GPU, by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    #[default]
    Cpu,
    Wgpu(usize),
    Cuda(usize),
}

impl DeviceSpec {
    /// Whether this build can run on the device (its cargo feature is compiled in).
    pub fn is_compiled(self) -> bool {
        match self {
            Self::Cpu => true,
            Self::Wgpu(_) => cfg!(feature = "wgpu"),
            Self::Cuda(_) => cfg!(feature = "cuda"),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = EngineError;

    /// Parse `cpu`, `wgpu`, `wgpu:N`, `cuda`, `cuda:N`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, index) = match s.split_once(':') {
            Some((k, i)) => {
                let n = i.parse::<usize>().map_err(|_| {
                    EngineError::Invalid(format!("device `{s}`: index `{i}` is not a number"))
                })?;
                (k, n)
            }
            None => (s, 0),
        };
        match kind.to_ascii_lowercase().as_str() {
            "cpu" if !s.contains(':') => Ok(Self::Cpu),
            "wgpu" => Ok(Self::Wgpu(index)),
            "cuda" => Ok(Self::Cuda(index)),
            _ => Err(EngineError::Invalid(format!(
                "unknown device `{s}` (expected cpu, wgpu[:N] or cuda[:N])"
            ))),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => write!(f, "cpu"),
            Self::Wgpu(i) => write!(f, "wgpu:{i}"),
            Self::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for (s, d) in [
            ("cpu", DeviceSpec::Cpu),
            ("wgpu", DeviceSpec::Wgpu(0)),
            ("wgpu:1", DeviceSpec::Wgpu(1)),
            ("cuda:0", DeviceSpec::Cuda(0)),
            ("CUDA:2", DeviceSpec::Cuda(2)),
        ] {
            assert_eq!(s.parse::<DeviceSpec>().unwrap(), d, "{s}");
        }
        assert_eq!(DeviceSpec::Cuda(3).to_string(), "cuda:3");
        for bad in ["gpu", "cuda:x", "cpu:1", ""] {
            assert!(bad.parse::<DeviceSpec>().is_err(), "{bad}");
        }
    }
}
