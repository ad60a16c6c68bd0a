//! The backend-erased engine facade: loads a checkpoint onto the device chosen at run time and
//! runs forwards against a [`KvCache`]. A closed enum over `Model<Flex>` / `Model<Wgpu>` /
//! `Model<Cuda>` (the GPU variants behind cargo features) keeps `cfg` out of the model code.
//!
//! CPU threads: burn's `flex` backend parallelises with rayon (its matmuls call `gemm` with
//! `Parallelism::Rayon(0)`, i.e. every thread of the *current* rayon pool). `LoadOptions::threads`
//! therefore builds a private rayon pool and runs every forward inside it (`ThreadPool::install`),
//! so the setting is effective without touching the process-global pool. `gemm` only goes parallel
//! above 192³ multiply-adds, which leaves every decode-shaped product (`1×d · d×d'`) on one thread;
//! on the CPU the dense projections therefore split such products into column blocks across the
//! pool themselves (`model::Linear::forward`).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use burn::tensor::{Tensor, backend::Backend};

use crate::config::ModelConfig;
use crate::device::DeviceSpec;
use crate::error::{EngineError, Result};
use crate::kv_cache::{CacheLayers, KvCache, KvTypes, LayerCache};
use crate::model::Model;
use crate::safetensors::SafetensorsSource;
use crate::tokenizer::Tokenizer;
use crate::weights::WeightSource;

/// Storage / compute dtype of weights, activations and the KV cache on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DType {
    #[default]
    F32,
    F16,
    BF16,
}

impl DType {
    fn burn(self) -> burn::tensor::DType {
        match self {
            Self::F32 => burn::tensor::DType::F32,
            Self::F16 => burn::tensor::DType::F16,
            Self::BF16 => burn::tensor::DType::BF16,
        }
    }
}

impl FromStr for DType {
    type Err = EngineError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" | "float32" => Ok(Self::F32),
            "f16" | "float16" => Ok(Self::F16),
            "bf16" | "bfloat16" => Ok(Self::BF16),
            _ => Err(EngineError::Invalid(format!(
                "unknown dtype `{s}` (expected f32, f16 or bf16)"
            ))),
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::BF16 => "bf16",
        })
    }
}

/// How to load a model.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    pub device: DeviceSpec,
    /// CPU threads for the `flex` backend; `None` = rayon's default (all cores).
    pub threads: Option<usize>,
    pub dtype: DType,
    /// CPU only: hold the projections, LM head and embedding table for the quantized kernels
    /// (`crate::quant`) — the file's own blocks (`Native`) or a format applied at load. `None`:
    /// dense `dtype` tensors multiplied by burn.
    pub quant: Option<crate::quant::WeightQuant>,
    /// Element types of the K and V of the caches [`Engine::new_cache`] makes (`f32` by default;
    /// `f16` as llama.cpp's `-ctk f16 -ctv f16`; `q8_0/q4_0` as `-ctk q8_0 -ctv q4_0`).
    /// [`Engine::new_cache_with`] picks them per cache.
    pub kv_type: KvTypes,
}

/// Which logit rows a forward returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogitRows {
    /// One row per input position (speculative verify, `specsweep logits`).
    All,
    /// Only the last position's row (prefill and plain decoding).
    Last,
}

/// What a forward returns, on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct ForwardOutput {
    /// `rows × vocab`, row-major.
    pub logits: Vec<f32>,
    pub vocab_size: usize,
    /// `rows × hidden_size`: final hidden states after the final norm, when asked for (all rows).
    /// For [`Engine::mtp_forward`]: the MTP head's output hidden states after `mtp.norm`.
    pub hidden: Option<Vec<f32>>,
    /// Distinct experts run by each MoE layer of this forward, in layer order (empty when dense).
    pub experts_touched: Vec<u32>,
}

impl ForwardOutput {
    /// Number of logit rows.
    pub fn rows(&self) -> usize {
        self.logits.len() / self.vocab_size.max(1)
    }

    /// Logits of row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.logits[i * self.vocab_size..(i + 1) * self.vocab_size]
    }

    /// Logits of the last row.
    pub fn last_row(&self) -> &[f32] {
        self.row(self.rows().saturating_sub(1))
    }
}

/// The model on its device.
#[derive(Debug)]
enum Models {
    Flex(Model<burn::backend::Flex>),
    #[cfg(feature = "wgpu")]
    Wgpu(Model<burn::backend::Wgpu>),
    #[cfg(feature = "cuda")]
    Cuda(Model<burn::backend::Cuda>),
}

/// A loaded model with its tokenizer, ready to run forwards.
pub struct Engine {
    config: ModelConfig,
    tokenizer: Option<Tokenizer>,
    device: DeviceSpec,
    dtype: DType,
    pool: Option<Arc<rayon::ThreadPool>>,
    /// Spinning helpers for the CPU kernels' parallel regions (`quant::Team`), one fewer than the
    /// threads; `None` on one thread and on the GPU backends.
    team: Option<Arc<crate::quant::Team>>,
    model: Models,
    origin: PathBuf,
    kv_type: KvTypes,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("origin", &self.origin)
            .field("architecture", &self.config.architecture)
            .field("device", &self.device)
            .finish()
    }
}

impl Engine {
    /// Load a Hugging Face directory (config.json + model.safetensors or sharded index, optional
    /// tokenizer.json and generation_config.json), or a `.gguf` file.
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Engine> {
        if path.is_file() {
            return Self::load_gguf(path, opts);
        }
        if !path.is_dir() {
            return Err(EngineError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "model directory not found"),
            ));
        }
        let config_path = path.join("config.json");
        let mut config = ModelConfig::from_file(&config_path)?;
        merge_generation_eos(&mut config, &path.join("generation_config.json"))?;
        let source = SafetensorsSource::open_dir(path)?;
        let tok_path = path.join("tokenizer.json");
        let tokenizer = if tok_path.is_file() {
            Some(Tokenizer::from_file(
                &tok_path,
                config.eos_token_ids.clone(),
                config.bos_token_id,
            )?)
        } else {
            None
        };
        Self::from_source(config, &source, tokenizer, opts)
    }

    /// Load a GGUF file: config, weights (dequantized to the compute dtype) and tokenizer all come
    /// from the file (`crate::gguf`), through the same model builder as safetensors.
    fn load_gguf(path: &Path, opts: &LoadOptions) -> Result<Engine> {
        if path.extension().and_then(|e| e.to_str()) != Some("gguf") {
            return Err(EngineError::Format {
                path: path.to_path_buf(),
                message: "expected a model directory (config.json + safetensors) or a .gguf file"
                    .into(),
            });
        }
        let gguf = crate::gguf::GgufModel::open(path)?;
        let config = ModelConfig::from_value(gguf.config_json(), path)?;
        let tokenizer = Tokenizer::from_tokenizer(
            gguf.tokenizer()?,
            config.eos_token_ids.clone(),
            config.bos_token_id,
        );
        Self::from_source(config, &gguf, Some(tokenizer), opts)
    }

    /// Build from a parsed config and any weight source (safetensors, GGUF, random).
    pub fn from_source(
        config: ModelConfig,
        source: &dyn WeightSource,
        tokenizer: Option<Tokenizer>,
        opts: &LoadOptions,
    ) -> Result<Engine> {
        let pool = match opts.threads {
            None => None,
            Some(0) => return Err(EngineError::Invalid("threads must be at least 1".into())),
            Some(n) => Some(Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n)
                    .build()
                    .map_err(|e| EngineError::Invalid(format!("cannot start {n} threads: {e}")))?,
            )),
        };
        let threads = opts
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let team = if threads > 1 && opts.device == DeviceSpec::Cpu {
            Some(Arc::new(crate::quant::Team::new(threads - 1).map_err(
                |e| EngineError::Invalid(format!("cannot start {threads} threads: {e}")),
            )?))
        } else {
            None
        };
        let dtype = opts.dtype.burn();
        if let Some(q) = opts.quant
            && opts.device != DeviceSpec::Cpu
        {
            return Err(EngineError::Invalid(format!(
                "weights `{q}` run on the quantized CPU kernels: use --device cpu"
            )));
        }
        // before the weights load: a cache type this engine cannot keep is an error up front
        if let Some(why) = opts
            .kv_type
            .unsupported(config.head_dim, opts.device == DeviceSpec::Cpu)
        {
            return Err(EngineError::Invalid(format!("{}: {why}", source.origin())));
        }
        let model = match opts.device {
            DeviceSpec::Cpu => {
                let mut model =
                    Model::load_quantized(&config, source, &Default::default(), dtype, opts.quant)?;
                model.enable_column_split();
                model.host_kv = true;
                Models::Flex(model)
            }
            #[cfg(feature = "wgpu")]
            DeviceSpec::Wgpu(i) => {
                let dev = DeviceSpec::wgpu_device(i);
                Models::Wgpu(
                    opts.device
                        .guard(|| Model::load(&config, source, &dev, dtype))?,
                )
            }
            #[cfg(feature = "cuda")]
            DeviceSpec::Cuda(i) => {
                let dev = DeviceSpec::cuda_device(i)?;
                Models::Cuda(
                    opts.device
                        .guard(|| Model::load(&config, source, &dev, dtype))?,
                )
            }
            #[allow(unreachable_patterns)]
            other => return Err(EngineError::Device(other.to_string())),
        };
        Ok(Engine {
            config,
            tokenizer,
            device: opts.device,
            dtype: opts.dtype,
            pool,
            team,
            model,
            origin: PathBuf::from(source.origin()),
            kv_type: opts.kv_type,
        })
    }

    /// The model configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The tokenizer, when the checkpoint has one.
    pub fn tokenizer(&self) -> Option<&Tokenizer> {
        self.tokenizer.as_ref()
    }

    /// The device the model runs on.
    pub fn device(&self) -> &DeviceSpec {
        &self.device
    }

    /// The compute dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// CPU threads used (`None`: rayon's default pool).
    pub fn threads(&self) -> Option<usize> {
        self.pool.as_ref().map(|p| p.current_num_threads())
    }

    /// Where the weights came from.
    pub fn origin(&self) -> &Path {
        &self.origin
    }

    /// End-of-sequence ids (config.json + generation_config.json).
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.config.eos_token_ids
    }

    /// CPU only: keep the dense projections and the LM head quantized to `format` in host memory
    /// and run them with the quantized kernels of `crate::quant` (f32 / f16 / bf16 / q8_0 / q4_0 /
    /// q4_1); with `QuantPath::DequantizedF32`, give them their quantized values as dense tensors
    /// instead (the reference the kernels are tested against). Other devices are an error.
    pub fn quantize_weights(
        &mut self,
        format: crate::quant::QuantFormat,
        path: crate::quant::QuantPath,
    ) -> Result<()> {
        match &mut self.model {
            Models::Flex(m) => m.quantize_linears(format, path),
            #[allow(unreachable_patterns)]
            _ => Err(EngineError::Invalid(format!(
                "weight quantization to {format} runs on the cpu device only"
            ))),
        }
    }

    /// Bytes of the weights the model holds (`Model::weight_bytes`).
    pub fn weight_bytes(&self) -> usize {
        match &self.model {
            Models::Flex(m) => m.weight_bytes(),
            #[cfg(feature = "wgpu")]
            Models::Wgpu(m) => m.weight_bytes(),
            #[cfg(feature = "cuda")]
            Models::Cuda(m) => m.weight_bytes(),
        }
    }

    /// Weight bytes read per decoded token (for the memory-bandwidth roofline).
    pub fn weight_bytes_per_token(&self) -> usize {
        match &self.model {
            Models::Flex(m) => m.weight_bytes_per_token(),
            #[cfg(feature = "wgpu")]
            Models::Wgpu(m) => m.weight_bytes_per_token(),
            #[cfg(feature = "cuda")]
            Models::Cuda(m) => m.weight_bytes_per_token(),
        }
    }

    /// A KV cache preallocated for `capacity` positions, of the load options' `kv_type`.
    pub fn new_cache(&self, capacity: usize) -> Result<KvCache> {
        self.new_cache_with(capacity, self.kv_type)
    }

    /// The element types of the caches [`Engine::new_cache`] makes.
    pub fn kv_type(&self) -> KvTypes {
        self.kv_type
    }

    /// A KV cache of `kv_type` preallocated for `capacity` positions.
    pub fn new_cache_with(&self, capacity: usize, kv_type: impl Into<KvTypes>) -> Result<KvCache> {
        let kv_type = kv_type.into();
        if capacity == 0 {
            return Err(EngineError::Invalid(
                "kv cache capacity must be positive".into(),
            ));
        }
        self.check_kv_type(kv_type)?;
        let layers = match &self.model {
            Models::Flex(m) => CacheLayers::Flex(m.new_cache(capacity, kv_type)),
            #[cfg(feature = "wgpu")]
            Models::Wgpu(m) => CacheLayers::Wgpu(m.new_cache(capacity, kv_type)),
            #[cfg(feature = "cuda")]
            Models::Cuda(m) => CacheLayers::Cuda(m.new_cache(capacity, kv_type)),
        };
        Ok(KvCache::new(layers, capacity))
    }

    /// An error naming why this engine cannot keep a cache of `kv_type` (a block type on a GPU
    /// backend, or with a head size that is not whole blocks).
    fn check_kv_type(&self, kv_type: KvTypes) -> Result<()> {
        let host = match &self.model {
            Models::Flex(m) => m.host_kv,
            #[cfg(feature = "wgpu")]
            Models::Wgpu(m) => m.host_kv,
            #[cfg(feature = "cuda")]
            Models::Cuda(m) => m.host_kv,
        };
        match kv_type.unsupported(self.config.head_dim, host) {
            Some(why) => Err(EngineError::Invalid(format!(
                "{}: {why}",
                self.origin.display()
            ))),
            None => Ok(()),
        }
    }

    /// Whether the checkpoint carries a multi-token-prediction head (`model::mtp`).
    pub fn has_mtp(&self) -> bool {
        match &self.model {
            Models::Flex(m) => m.mtp.is_some(),
            #[cfg(feature = "wgpu")]
            Models::Wgpu(m) => m.mtp.is_some(),
            #[cfg(feature = "cuda")]
            Models::Cuda(m) => m.mtp.is_some(),
        }
    }

    /// A KV cache for the MTP head's one decoder layer, preallocated for `capacity` MTP positions.
    /// An error when the model has no MTP head.
    pub fn new_mtp_cache(&self, capacity: usize) -> Result<KvCache> {
        if !self.has_mtp() {
            return Err(EngineError::Invalid(format!(
                "{}: the checkpoint has no MTP head (no mtp.* or model.layers.{}.* tensors)",
                self.origin.display(),
                self.config.num_hidden_layers
            )));
        }
        if capacity == 0 {
            return Err(EngineError::Invalid(
                "kv cache capacity must be positive".into(),
            ));
        }
        self.check_kv_type(self.kv_type)?;
        // One decoder layer's worth of cache (a generic fn: the closure cannot span backends).
        let layers = match &self.model {
            Models::Flex(m) => CacheLayers::Flex(m.new_cache_layers(1, capacity, self.kv_type)),
            #[cfg(feature = "wgpu")]
            Models::Wgpu(m) => CacheLayers::Wgpu(m.new_cache_layers(1, capacity, self.kv_type)),
            #[cfg(feature = "cuda")]
            Models::Cuda(m) => CacheLayers::Cuda(m.new_cache_layers(1, capacity, self.kv_type)),
        };
        Ok(KvCache::new(layers, capacity))
    }

    /// Run the MTP head over `k = tokens.len()` pairs at MTP positions `cache.len()..+k`.
    ///
    /// Pair i is `(tokens[i], hidden row i)`: for the head at position p, `tokens[i]` is
    /// `t_{p+1}` and hidden row i is `h_p`, the main model's final hidden state after its final
    /// norm (`ForwardOutput::hidden` of [`Engine::forward`]), or — when chaining drafts — the
    /// head's own output hidden row from the previous step. `hidden` is `k × hidden_size`,
    /// row-major. Returns one logit row per pair (the prediction of `t_{p+2}`) and, in
    /// `hidden`, the head's output hidden states **after `mtp.norm`** (exactly what its logits
    /// were computed from; feed them back in to chain). The cache must come from
    /// [`Engine::new_mtp_cache`]; `truncate` rolls it back like the main cache.
    pub fn mtp_forward(
        &self,
        tokens: &[u32],
        hidden: &[f32],
        cache: &mut KvCache,
    ) -> Result<ForwardOutput> {
        if tokens.is_empty() {
            return Err(EngineError::Invalid(
                "mtp_forward needs at least one token".into(),
            ));
        }
        let vocab = self.config.vocab_size;
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(EngineError::TokenOutOfRange { id, vocab });
        }
        crate::model::mtp::check_hidden_rows(hidden, tokens.len(), self.config.hidden_size)?;
        cache.reserve(tokens.len())?;
        let start = cache.len();
        let run = || -> Result<ForwardOutput> {
            let (logits, hidden, experts_touched) = match (&self.model, &mut cache.layers) {
                (Models::Flex(m), CacheLayers::Flex(c)) => run_mtp(m, tokens, hidden, c, start),
                #[cfg(feature = "wgpu")]
                (Models::Wgpu(m), CacheLayers::Wgpu(c)) => run_mtp(m, tokens, hidden, c, start),
                #[cfg(feature = "cuda")]
                (Models::Cuda(m), CacheLayers::Cuda(c)) => run_mtp(m, tokens, hidden, c, start),
                #[allow(unreachable_patterns)]
                _ => {
                    return Err(EngineError::Invalid(
                        "kv cache was created by another engine".into(),
                    ));
                }
            }?;
            Ok(ForwardOutput {
                logits,
                vocab_size: vocab,
                hidden,
                experts_touched,
            })
        };
        let out = self.in_pool(start == 0, run)?;
        cache.advance(tokens.len());
        Ok(out)
    }

    /// Run one forward's body on the private pool (if any) with the team's helpers spinning, and
    /// with the AMX tiles off unless `tiles` (`quant::without_tiles`). The tiles sum in another
    /// float order than the batch-invariant kernels, so they are only for forwards whose rows no
    /// one compares with one-token steps: see [`Engine::forward_rows`].
    fn in_pool<R: Send>(&self, tiles: bool, run: impl FnOnce() -> R + Send) -> R {
        let body = || {
            let body = || {
                if tiles {
                    run()
                } else {
                    crate::quant::without_tiles(run)
                }
            };
            match &self.team {
                Some(team) => team.scope(body),
                None => body(),
            }
        };
        match &self.pool {
            Some(pool) => pool.install(body),
            None => body(),
        }
    }

    /// Run `tokens` (k ≥ 1) after the cached prefix; returns one logit row per token and, when
    /// `want_hidden`, the final hidden states.
    pub fn forward(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        want_hidden: bool,
    ) -> Result<ForwardOutput> {
        self.forward_rows(tokens, cache, LogitRows::All, want_hidden)
    }

    /// Like [`Engine::forward`] but returning only the last position's logits (the LM head runs
    /// on that row only).
    pub fn forward_last(&self, tokens: &[u32], cache: &mut KvCache) -> Result<ForwardOutput> {
        self.forward_rows(tokens, cache, LogitRows::Last, false)
    }

    /// Forward with a choice of logit rows.
    ///
    /// [`LogitRows::Last`] is a prefill (a prompt, or more text after a cached prefix) or a
    /// one-token decode step; on the CPU such a forward may use the AMX tiles (from 9 rows).
    /// [`LogitRows::All`] is what a speculative verify asks for: its rows must equal, bit for bit,
    /// the one-token steps of plain decoding at the same positions, so it runs on the
    /// batch-invariant kernels only. A speculative run and its plain control prefill the same
    /// prompt the same way, so their outputs stay identical.
    pub fn forward_rows(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        rows: LogitRows,
        want_hidden: bool,
    ) -> Result<ForwardOutput> {
        if tokens.is_empty() {
            return Err(EngineError::Invalid(
                "forward needs at least one token".into(),
            ));
        }
        let vocab = self.config.vocab_size;
        if let Some(&id) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(EngineError::TokenOutOfRange { id, vocab });
        }
        cache.reserve(tokens.len())?;
        let start = cache.len();
        let run = || -> Result<ForwardOutput> {
            let (logits, hidden, experts_touched) = match (&self.model, &mut cache.layers) {
                (Models::Flex(m), CacheLayers::Flex(c)) => {
                    run_model(m, tokens, c, start, rows, want_hidden)
                }
                #[cfg(feature = "wgpu")]
                (Models::Wgpu(m), CacheLayers::Wgpu(c)) => {
                    run_model(m, tokens, c, start, rows, want_hidden)
                }
                #[cfg(feature = "cuda")]
                (Models::Cuda(m), CacheLayers::Cuda(c)) => {
                    run_model(m, tokens, c, start, rows, want_hidden)
                }
                #[allow(unreachable_patterns)]
                _ => {
                    return Err(EngineError::Invalid(
                        "kv cache was created by another engine".into(),
                    ));
                }
            }?;
            Ok(ForwardOutput {
                logits,
                vocab_size: vocab,
                hidden,
                experts_touched,
            })
        };
        let out = self.in_pool(rows == LogitRows::Last, run)?;
        cache.advance(tokens.len());
        Ok(out)
    }
}

/// Logits, optional hidden rows and experts touched, read back to the host.
type HostOutputs = (Vec<f32>, Option<Vec<f32>>, Vec<u32>);

/// Forward on one backend and read the results back to the host.
fn run_model<B: Backend>(
    model: &Model<B>,
    tokens: &[u32],
    cache: &mut [LayerCache<B>],
    start: usize,
    rows: LogitRows,
    want_hidden: bool,
) -> Result<HostOutputs> {
    let mut experts_touched = Vec::new();
    let hidden = model.forward_traced(tokens, cache, start, &mut experts_touched);
    let [k, h] = hidden.dims();
    let head_in = match rows {
        LogitRows::All => hidden.clone(),
        LogitRows::Last => hidden.clone().slice([k - 1..k, 0..h]),
    };
    let logits = to_host(model.logits(head_in))?;
    let hidden = if want_hidden {
        Some(to_host(hidden)?)
    } else {
        None
    };
    Ok((logits, hidden, experts_touched))
}

/// MTP head forward on one backend: logits for every row and the head's output hidden rows.
fn run_mtp<B: Backend>(
    model: &Model<B>,
    tokens: &[u32],
    hidden: &[f32],
    cache: &mut [LayerCache<B>],
    start: usize,
) -> Result<HostOutputs> {
    let (Some(mtp), [layer_cache]) = (&model.mtp, cache) else {
        return Err(EngineError::Invalid(
            "mtp_forward needs a model with an MTP head and a cache from Engine::new_mtp_cache"
                .into(),
        ));
    };
    let k = tokens.len();
    let h = Tensor::<B, 2>::from_data(
        burn::tensor::TensorData::new(hidden.to_vec(), [k, model.config.hidden_size]),
        (&model.device, model.dtype),
    );
    let mut experts_touched = Vec::new();
    let out = mtp.forward(model, tokens, h, layer_cache, start, &mut experts_touched);
    let logits = to_host(model.logits(out.clone()))?;
    Ok((logits, Some(to_host(out)?), experts_touched))
}

/// Read a device tensor back as f32.
fn to_host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<Vec<f32>> {
    let t = if t.dtype() == burn::tensor::DType::F32 {
        t
    } else {
        t.cast(burn::tensor::DType::F32)
    };
    t.into_data()
        .into_vec::<f32>()
        .map_err(|e| EngineError::Invalid(format!("reading tensor back: {e:?}")))
}

/// Add `eos_token_id` from generation_config.json (HF `generate` stops on those) when present.
fn merge_generation_eos(config: &mut ModelConfig, path: &Path) -> Result<()> {
    if !path.is_file() {
        return Ok(());
    }
    let text = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| EngineError::Format {
            path: path.to_path_buf(),
            message: format!("malformed JSON: {e}"),
        })?;
    let ids: Vec<u32> = match value.get("eos_token_id") {
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_u64())
            .map(|v| v as u32)
            .collect(),
        Some(v) => v.as_u64().map(|v| vec![v as u32]).unwrap_or_default(),
        None => Vec::new(),
    };
    for id in ids {
        if !config.eos_token_ids.contains(&id) {
            config.eos_token_ids.push(id);
        }
    }
    Ok(())
}
