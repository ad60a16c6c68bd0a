//! Options shared by the commands that load a model (`logits`, `generate`, `bench`): the model
//! path, device, CPU threads and dtype, plus the `3,17,42` token-id list syntax.

use std::path::{Path, PathBuf};

use anyhow::Context;
use specsweep_engine::quant::{QuantFormat, WeightQuant};
use specsweep_engine::{DType, DeviceSpec, Engine, KvTypes, LoadOptions};

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
    // `[:N]` is help text (clap shows the doc comment), not an intra-doc link
    #[allow(rustdoc::broken_intra_doc_links)]
    /// cpu | wgpu[:N] | cuda[:N]
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// CPU threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Compute / storage dtype: f32 | f16 | bf16.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
    /// Weights: `native` (a GGUF file's own blocks on the quantized CPU kernels — the default for
    /// .gguf on the cpu), q8_0 | q4_0 | q4_1 | q5_0 | q5_1 | iq4_nl | iq4_xs | q2_k | q3_k | q4_k |
    /// q5_k | q6_k (quantized at load as llama-quantize does, on the kernels),
    /// f32-kernel |
    /// f16-kernel | bf16-kernel, or f32 | f16 | bf16 (burn's dense path).
    #[arg(long)]
    pub quant: Option<String>,
    /// KV cache element type: f32 (the reference numerics) | f16 (half the cache bytes; llama.cpp's
    /// default `-ctk/-ctv f16`) | q8_0 | q4_0 | q4_1 | q5_0 | q5_1 | iq4_nl (ggml's blocks of 32:
    /// 34 / 18 / 20 / 22 / 24 / 18 bytes per 32 values against f32's 128; CPU only, head_dim a
    /// multiple of 32);
    /// `K/V` for different key and value types (`q8_0/q4_0` = `-ctk q8_0 -ctv q4_0`).
    #[arg(long, default_value = "f32")]
    pub kv_type: String,
}

/// What the sweep's `quant` axis and `--quant` select.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum QuantChoice {
    /// burn's dense path with tensors of this dtype (`f32`, `f16`, `bf16`).
    Dense(DType),
    /// The quantized CPU kernels: the file's own blocks (`native`) or a format applied at load
    /// (`q8_0`, `q4_0`, `q4_1`, `q5_0`, `q5_1`, `iq4_nl`, `iq4_xs`, `q2_k` ... `q6_k`, with
    /// `q8` and `q4` as aliases;
    /// `f32-kernel`, `f16-kernel`,
    /// `bf16-kernel` for the dense formats on the same kernels).
    Kernels(WeightQuant),
}

impl QuantChoice {
    /// The default for a model: a GGUF file on the CPU runs its own blocks on the kernels, as
    /// llama.cpp does; anything else runs burn's dense path in `dtype`.
    pub fn default_for(model: &Path, device: DeviceSpec, dtype: DType) -> QuantChoice {
        let gguf = model.extension().and_then(|e| e.to_str()) == Some("gguf");
        if gguf && device == DeviceSpec::Cpu {
            QuantChoice::Kernels(WeightQuant::Native)
        } else {
            QuantChoice::Dense(dtype)
        }
    }

    /// Load options for this choice.
    pub fn options(self, device: DeviceSpec, threads: Option<usize>) -> LoadOptions {
        let (dtype, quant) = match self {
            QuantChoice::Dense(d) => (d, None),
            QuantChoice::Kernels(q) => (DType::F32, Some(q)),
        };
        LoadOptions {
            device,
            threads,
            dtype,
            quant,
            ..Default::default()
        }
    }

    /// How records and tables name it (`f32`, `native`, `q4_1`, `f32-kernel`).
    pub fn label(self) -> String {
        match self {
            QuantChoice::Dense(d) => d.to_string(),
            QuantChoice::Kernels(WeightQuant::Format(f)) if !f.is_block_quantized() => {
                format!("{}-kernel", f.name().to_ascii_lowercase())
            }
            QuantChoice::Kernels(q) => q.to_string(),
        }
    }
}

/// Parse a `quant` axis value or `--quant` flag (see [`QuantChoice`]).
pub fn parse_quant_axis(value: &str) -> anyhow::Result<QuantChoice> {
    if value.eq_ignore_ascii_case("native") {
        return Ok(QuantChoice::Kernels(WeightQuant::Native));
    }
    if let Some(dense) = value.strip_suffix("-kernel") {
        let format: QuantFormat = dense.parse().map_err(|e: String| anyhow::anyhow!(e))?;
        anyhow::ensure!(
            !format.is_block_quantized(),
            "`{value}`: only f32, f16 and bf16 take the -kernel suffix"
        );
        return Ok(QuantChoice::Kernels(WeightQuant::Format(format)));
    }
    if let Ok(dtype) = value.parse::<DType>() {
        return Ok(QuantChoice::Dense(dtype));
    }
    let format: QuantFormat = value.parse().map_err(|e: String| {
        anyhow::anyhow!("{e}, native, or f32-kernel / f16-kernel / bf16-kernel")
    })?;
    Ok(QuantChoice::Kernels(WeightQuant::Format(format)))
}

impl DeviceOpts {
    /// The `--device` value, parsed.
    pub fn device_spec(&self) -> anyhow::Result<DeviceSpec> {
        Ok(self.device.parse()?)
    }

    /// Resolve into engine load options for `model` (whose kind picks the default `--quant`).
    pub fn load_options(&self, model: &Path) -> anyhow::Result<LoadOptions> {
        let mut opts = self
            .quant_choice(model)?
            .options(self.device_spec()?, self.threads);
        opts.kv_type = self.kv_type()?;
        Ok(opts)
    }

    /// The `--kv-type` value, parsed.
    pub fn kv_type(&self) -> anyhow::Result<KvTypes> {
        self.kv_type
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--kv-type: {e}"))
    }

    /// The weights `--quant` (or its default for `model`) selects.
    pub fn quant_choice(&self, model: &Path) -> anyhow::Result<QuantChoice> {
        let device = self.device_spec()?;
        let dtype: DType = self.dtype.parse()?;
        let choice = match &self.quant {
            Some(q) => parse_quant_axis(q).context("--quant")?,
            None => QuantChoice::default_for(model, device, dtype),
        };
        if let QuantChoice::Kernels(_) = choice {
            anyhow::ensure!(
                dtype == DType::F32,
                "--quant {} runs the CPU kernels on f32 activations: drop --dtype {dtype}",
                choice.label()
            );
        }
        Ok(choice)
    }
}

impl ModelOpts {
    /// Load the engine.
    pub fn load(&self) -> anyhow::Result<Engine> {
        let path = crate::models::resolve_model(&self.model.to_string_lossy())?;
        let opts = self.device.load_options(&path)?;
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
    fn quant_axis_values() {
        assert_eq!(
            parse_quant_axis("bf16").unwrap(),
            QuantChoice::Dense(DType::BF16)
        );
        assert_eq!(
            parse_quant_axis("q8").unwrap(),
            QuantChoice::Kernels(WeightQuant::Format(QuantFormat::Q8_0))
        );
        assert_eq!(
            parse_quant_axis("f32-kernel").unwrap(),
            QuantChoice::Kernels(WeightQuant::Format(QuantFormat::F32))
        );
        assert_eq!(
            parse_quant_axis("native").unwrap(),
            QuantChoice::Kernels(WeightQuant::Native)
        );
        assert_eq!(
            parse_quant_axis("f32-kernel").unwrap().label(),
            "f32-kernel"
        );
        assert_eq!(parse_quant_axis("q4").unwrap().label(), "q4_0");
        assert_eq!(
            parse_quant_axis("iq4_nl").unwrap(),
            QuantChoice::Kernels(WeightQuant::Format(QuantFormat::Iq4Nl))
        );
        assert_eq!(parse_quant_axis("IQ4_NL").unwrap().label(), "iq4_nl");
        assert_eq!(parse_quant_axis("q4_k").unwrap().label(), "q4_k");
        assert_eq!(
            parse_quant_axis("Q6_K").unwrap(),
            QuantChoice::Kernels(WeightQuant::Format(QuantFormat::Q6K))
        );
        assert_eq!(parse_quant_axis("q2_k").unwrap().label(), "q2_k");
        assert!(parse_quant_axis("q9").is_err());
        assert!(parse_quant_axis("x-kernel").is_err());
        assert!(parse_quant_axis("q8_0-kernel").is_err());
    }

    #[test]
    fn gguf_on_the_cpu_defaults_to_native_blocks() {
        let gguf = Path::new("m/model.Q4_K_M.gguf");
        assert_eq!(
            QuantChoice::default_for(gguf, DeviceSpec::Cpu, DType::F32),
            QuantChoice::Kernels(WeightQuant::Native)
        );
        assert_eq!(
            QuantChoice::default_for(Path::new("m/dir"), DeviceSpec::Cpu, DType::BF16),
            QuantChoice::Dense(DType::BF16)
        );
    }

    #[test]
    fn token_id_lists() {
        assert_eq!(parse_token_ids("3,17, 42").unwrap(), vec![3, 17, 42]);
        assert!(parse_token_ids("3,x").is_err());
        assert!(parse_token_ids("").is_err());
        assert!(parse_token_ids("-1").is_err());
    }
}
