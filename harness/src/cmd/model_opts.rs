//! Options shared by the commands that load a model (`logits`, `generate`, `bench`): the model
//! path, device, CPU threads and dtype, plus the `3,17,42` token-id list syntax.

use std::path::PathBuf;

use anyhow::Context;
use specsweep_engine::quant::{QuantFormat, QuantPath};
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
    /// CPU: keep the projections quantized in host memory and run them on the quantized kernels
    /// (q8_0 | q4_0 | q4_1, or q8 | q4; f32 | f16 | bf16 select the kernels' dense formats).
    #[arg(long)]
    pub quant: Option<String>,
}

/// The sweep's `quant` axis: a dense dtype for burn's path (`f32`, `f16`, `bf16`), or a format run
/// on the quantized CPU kernels (`q8_0`, `q4_0`, `q4_1`, with `q8` and `q4` as aliases; and
/// `f32-kernel`, `f16-kernel`, `bf16-kernel` for the dense formats on the same kernels).
pub fn parse_quant_axis(value: &str) -> anyhow::Result<(DType, Option<QuantFormat>)> {
    if let Some(dense) = value.strip_suffix("-kernel") {
        let format: QuantFormat = dense.parse().map_err(|e: String| anyhow::anyhow!(e))?;
        return Ok((DType::F32, Some(format)));
    }
    if let Ok(dtype) = value.parse::<DType>() {
        return Ok((dtype, None));
    }
    let format: QuantFormat = value.parse().map_err(|e: String| anyhow::anyhow!(e))?;
    Ok((DType::F32, Some(format)))
}

/// Quantize `engine`'s projections to `format` for the CPU kernels (no-op for `None`).
pub fn apply_quant(engine: &mut Engine, format: Option<QuantFormat>) -> anyhow::Result<()> {
    if let Some(format) = format {
        engine
            .quantize_weights(format, QuantPath::Kernels)
            .with_context(|| format!("quantizing the weights to {format}"))?;
    }
    Ok(())
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
        let mut engine = Engine::load(&path, &opts)
            .with_context(|| format!("loading model {}", self.model.display()))?;
        let format = match &self.device.quant {
            Some(q) => {
                let format: QuantFormat = q
                    .parse()
                    .map_err(|e: String| anyhow::anyhow!("--quant: {e}"))?;
                Some(format)
            }
            None => None,
        };
        apply_quant(&mut engine, format)?;
        Ok(engine)
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
    fn quant_axis_values() {
        assert_eq!(parse_quant_axis("bf16").unwrap(), (DType::BF16, None));
        assert_eq!(
            parse_quant_axis("q8").unwrap(),
            (DType::F32, Some(QuantFormat::Q8_0))
        );
        assert_eq!(
            parse_quant_axis("f32-kernel").unwrap(),
            (DType::F32, Some(QuantFormat::F32))
        );
        assert!(parse_quant_axis("q9").is_err());
        assert!(parse_quant_axis("x-kernel").is_err());
    }

    #[test]
    fn token_id_lists() {
        assert_eq!(parse_token_ids("3,17, 42").unwrap(), vec![3, 17, 42]);
        assert!(parse_token_ids("3,x").is_err());
        assert!(parse_token_ids("").is_err());
        assert!(parse_token_ids("-1").is_err());
    }
}
