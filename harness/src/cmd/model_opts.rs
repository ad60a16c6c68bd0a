//! Options shared by the commands that load a model (`logits`, `generate`, `bench`): the model
//! path, device, CPU threads and dtype, plus the `3,17,42` token-id list syntax.

use std::path::PathBuf;

use anyhow::Context;
use specsweep_engine::{DType, DeviceSpec, Engine, LoadOptions};

/// Where and how to load the model.
#[derive(Debug, Clone, clap::Args)]
pub struct ModelOpts {
    /// Model: a directory (config.json + model.safetensors [+ index] + tokenizer.json), a .gguf
    /// file, a fetched model NAME (`specsweep models list`) or `default` (the demo model).
    #[arg(long, short = 'm')]
    pub model: PathBuf,
    #[command(flatten)]
    pub device: DeviceOpts,
}

/// Device, threads and dtype.
#[derive(Debug, Clone, clap::Args)]
pub struct DeviceOpts {
    /// cpu | wgpu[:N] | cuda[:N]
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Compute / storage dtype: f32 | f16 | bf16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

impl DeviceOpts {
    /// Resolve into engine load options.
    pub fn load_options(&self) -> anyhow::Result<LoadOptions> {
        let device: DeviceSpec = self.device.parse()?;
        let dtype: DType = self.dtype.parse()?;
        Ok(LoadOptions {
            device,
            threads: self.threads,
            dtype,
        })
    }
}

impl ModelOpts {
    /// Load the engine.
    pub fn load(&self) -> anyhow::Result<Engine> {
        let opts = self.device.load_options()?;
        let path = crate::models::resolve_model(&self.model.to_string_lossy())?;
        Engine::load(&path, &opts)
            .with_context(|| format!("loading model {}", self.model.display()))
    }
}

/// Parse `3,17,42` into token ids.
pub fn parse_token_ids(text: &str) -> anyhow::Result<Vec<u32>> {
    let ids = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<u32>()
                .with_context(|| format!("--token-ids: `{s}` is not a token id"))
        })
        .collect::<anyhow::Result<Vec<u32>>>()?;
    anyhow::ensure!(!ids.is_empty(), "--token-ids: no token ids given");
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_id_lists() {
        assert_eq!(parse_token_ids("3,17, 42").unwrap(), vec![3, 17, 42]);
        assert!(parse_token_ids("3,x").is_err());
        assert!(parse_token_ids("").is_err());
        assert!(parse_token_ids("-1").is_err());
    }
}
