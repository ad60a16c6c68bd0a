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

    /// burn's wgpu device for adapter `i` (0: the default adapter).
    #[cfg(feature = "wgpu")]
    pub(crate) fn wgpu_device(i: usize) -> burn::backend::wgpu::WgpuDevice {
        if i == 0 {
            burn::backend::wgpu::WgpuDevice::DefaultDevice
        } else {
            burn::backend::wgpu::WgpuDevice::DiscreteGpu(i)
        }
    }

    /// burn's CUDA device `i`, once the CUDA driver library is known to load: cubecl loads it
    /// lazily on a runtime thread and panics there when it is missing, so a machine without an
    /// NVIDIA driver gets this one-line error instead.
    #[cfg(feature = "cuda")]
    pub(crate) fn cuda_device(i: usize) -> Result<burn::backend::cuda::CudaDevice, EngineError> {
        let loads = |name: &str| {
            let name = std::ffi::CString::new(name).expect("no NUL in a library name");
            // SAFETY: dlopen with a valid C string; the handle is kept (the runtime loads the
            // same library again), so the library is never unloaded under anyone.
            !unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL) }.is_null()
        };
        if !(loads("libcuda.so.1") || loads("libcuda.so")) {
            return Err(EngineError::DeviceFailed {
                device: Self::Cuda(i).to_string(),
                message: "the CUDA driver library (libcuda.so.1) cannot be loaded: no NVIDIA \
                          driver on this machine, or it is not on the loader's path"
                    .into(),
            });
        }
        Ok(burn::backend::cuda::CudaDevice::new(i))
    }

    /// Run `f`, which first touches a GPU device, turning a panic inside the GPU runtime (a
    /// device index that does not exist, a driver error) into an error naming the device.
    #[cfg_attr(not(any(feature = "wgpu", feature = "cuda")), allow(dead_code))]
    pub(crate) fn guard<T>(
        self,
        f: impl FnOnce() -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(result) => result,
            Err(payload) => {
                let message = payload
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| payload.downcast_ref::<&str>().copied())
                    .unwrap_or("the GPU runtime panicked")
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                Err(EngineError::DeviceFailed {
                    device: self.to_string(),
                    message,
                })
            }
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

    #[test]
    fn guard_turns_a_runtime_panic_into_an_error_naming_the_device() {
        let err = DeviceSpec::Cuda(7)
            .guard::<()>(|| panic!("invalid device ordinal\nsecond line"))
            .unwrap_err();
        assert_eq!(err.to_string(), "device `cuda:7`: invalid device ordinal");
        assert_eq!(DeviceSpec::Cpu.guard(|| Ok(3)).unwrap(), 3);
    }
}
