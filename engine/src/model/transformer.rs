//! The decoder-only transformer (pre-norm, as HF `LlamaModel` / `Qwen2Model` / `Qwen3Model`):
//! embeddings → N × [x + attn(norm(x)); x + ffn(norm(x))] → final RMSNorm → LM head (tied to the
//! embeddings or separate).
//!
//! `forward` runs `k` new tokens at once against the cache (prefill and speculative verify share
//! the path) and returns the final hidden states; [`Model::logits`] applies the LM head to only the
//! rows asked for.

use burn::tensor::{DType, Int, Tensor, TensorData, backend::Backend};

use crate::config::ModelConfig;
use crate::error::{EngineError, Result};
use crate::kv_cache::{KvTypes, LayerCache};
use crate::model::attention::AttentionInputs;
use crate::model::moe::{SparseMoe, is_sparse_layer};
use crate::model::mtp::MtpModule;
use crate::model::{Attention, Ffn, Linear, Loader, Mlp, RmsNorm, Rope};
use crate::weights::WeightSource;

/// One pre-norm decoder layer.
#[derive(Debug, Clone)]
pub struct DecoderLayer<B: Backend> {
    pub input_layernorm: RmsNorm<B>,
    pub self_attn: Attention<B>,
    pub post_attention_layernorm: RmsNorm<B>,
    pub ffn: Ffn<B>,
}

impl<B: Backend> DecoderLayer<B> {
    /// Load `{prefix}.{input_layernorm, self_attn, post_attention_layernorm, mlp}`; the FFN is a
    /// sparse mixture of experts when `sparse`, else a dense MLP of `intermediate_size`.
    pub fn load(
        loader: &Loader<'_, B>,
        prefix: &str,
        config: &ModelConfig,
        sparse: bool,
    ) -> Result<Self> {
        let (h, eps) = (config.hidden_size, config.rms_norm_eps);
        let mlp = format!("{prefix}.mlp");
        let ffn = if sparse {
            Ffn::Sparse(SparseMoe::load(loader, &mlp, config)?)
        } else {
            Ffn::Dense(Mlp::load(
                loader,
                &mlp,
                h,
                config.intermediate_size,
                config.mlp_bias,
            )?)
        };
        Ok(Self {
            input_layernorm: RmsNorm::load(
                loader,
                &format!("{prefix}.input_layernorm.weight"),
                h,
                eps,
            )?,
            self_attn: Attention::load(loader, &format!("{prefix}.self_attn"), config)?,
            post_attention_layernorm: RmsNorm::load(
                loader,
                &format!("{prefix}.post_attention_layernorm.weight"),
                h,
                eps,
            )?,
            ffn,
        })
    }

    /// A sparse FFN pushes its experts-touched count onto `experts_touched`.
    ///
    /// # Shapes
    /// - `x`: `[k, hidden]` → `[k, hidden]`
    pub fn forward(
        &self,
        x: Tensor<B, 2>,
        cache: &mut LayerCache<B>,
        inputs: &AttentionInputs<B>,
        experts_touched: &mut Vec<u32>,
    ) -> Tensor<B, 2> {
        let h = x.clone()
            + self
                .self_attn
                .forward(self.input_layernorm.forward(x), cache, inputs);
        if let Ffn::Dense(mlp) = &self.ffn {
            return mlp.forward_residual(h, &self.post_attention_layernorm);
        }
        h.clone()
            + self
                .ffn
                .forward(self.post_attention_layernorm.forward(h), experts_touched)
    }
}

/// The gate, up and down projections of `m` under their checkpoint names below `prefix`.
fn mlp_linears<'a, B: Backend>(
    prefix: &str,
    m: &'a mut Mlp<B>,
) -> [(String, &'a mut Linear<B>); 3] {
    [
        ("gate", &mut m.gate_proj),
        ("up", &mut m.up_proj),
        ("down", &mut m.down_proj),
    ]
    .map(|(n, l)| (format!("{prefix}.{n}_proj.weight"), l))
}

/// A causal language model on backend `B`.
/// The token embedding table: a dense device tensor, or (CPU kernels) a block-format matrix whose
/// rows are dequantized per looked-up token — shared with a tied LM head.
#[derive(Debug, Clone)]
pub enum Embedding<B: Backend> {
    Dense(Tensor<B, 2>),
    Quant(std::sync::Arc<crate::quant::QuantLinear>),
}

#[derive(Debug, Clone)]
pub struct Model<B: Backend> {
    pub config: ModelConfig,
    /// `[vocab, hidden]`
    pub embed_tokens: Embedding<B>,
    pub layers: Vec<DecoderLayer<B>>,
    pub norm: RmsNorm<B>,
    /// `[hidden, vocab]` (a transposed view; the embeddings when tied)
    pub lm_head: Linear<B>,
    /// Whether `lm_head` is the embedding table's storage (a tied checkpoint without its own
    /// `lm_head.weight`, not re-quantized since), so [`Model::weight_bytes`] counts it once.
    pub head_shares_embeddings: bool,
    pub rope: Rope,
    /// The multi-token-prediction head, when the checkpoint has one (`model::mtp`).
    pub mtp: Option<MtpModule<B>>,
    pub device: B::Device,
    pub dtype: DType,
    /// Keep KV caches on the host and attend with `model::cpu_attention` (the CPU backend).
    pub host_kv: bool,
    /// Buffers of the CPU host path (`model::host`).
    pub host: crate::model::host::SharedHostBuffers,
}

impl<B: Backend> Model<B> {
    /// Build from any weight source (safetensors or GGUF) with HF tensor names, checking shapes.
    pub fn load(
        config: &ModelConfig,
        source: &dyn WeightSource,
        device: &B::Device,
        dtype: DType,
    ) -> Result<Self> {
        Self::load_quantized(config, source, device, dtype, None)
    }

    /// [`Model::load`] with the projections, the LM head and the embedding table built for the
    /// quantized CPU kernels as `quant` says (see [`Loader::matrix`]); `None` is [`Model::load`].
    pub fn load_quantized(
        config: &ModelConfig,
        source: &dyn WeightSource,
        device: &B::Device,
        dtype: DType,
        quant: Option<crate::quant::WeightQuant>,
    ) -> Result<Self> {
        let loader = Loader::<B> {
            source,
            device: device.clone(),
            dtype,
            quant,
        };
        let (h, v) = (config.hidden_size, config.vocab_size);
        let embed_name = "model.embed_tokens.weight";
        // Tied checkpoints usually omit lm_head.weight; some write it anyway (then it is used).
        let head_shares_embeddings =
            config.tie_word_embeddings && !source.contains("lm_head.weight");
        let embed_tokens = match loader.matrix(embed_name, v, h)? {
            // a table the LM head multiplies by takes the kernels' layout; one only read row by
            // row keeps its own (a GGUF table then stays mapped, its rows faulted in as tokens
            // use them, instead of an interleaved copy of the whole table)
            Some(m) => Embedding::Quant(std::sync::Arc::new(if head_shares_embeddings {
                crate::quant::QuantLinear::new(m)
            } else {
                crate::quant::QuantLinear::in_own_layout(m)
            })),
            None => Embedding::Dense(loader.tensor2(embed_name, v, h)?),
        };
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let sparse = config.architecture.is_moe() && is_sparse_layer(config, i);
            layers.push(DecoderLayer::load(
                &loader,
                &format!("model.layers.{i}"),
                config,
                sparse,
            )?);
        }
        let mtp = MtpModule::load(&loader, config)?;
        let norm = RmsNorm::load(&loader, "model.norm.weight", h, config.rms_norm_eps)?;
        let lm_head = if head_shares_embeddings {
            match &embed_tokens {
                Embedding::Dense(w) => Linear::new(w.clone(), None),
                Embedding::Quant(q) => Linear::from_quant(q.clone(), None, device, dtype),
            }
        } else {
            loader.linear("lm_head", h, v, false)?
        };
        Ok(Self {
            config: config.clone(),
            embed_tokens,
            layers,
            norm,
            lm_head,
            head_shares_embeddings,
            rope: Rope::new(config),
            mtp,
            device: device.clone(),
            dtype,
            host_kv: false,
            host: Default::default(),
        })
    }

    /// CPU backends: keep every dense projection and the LM head quantized to `format` on the host
    /// and multiply with `crate::quant`'s kernels (issue #8). Sparse experts and the MTP head stay
    /// as they are.
    pub fn quantize_linears(
        &mut self,
        format: crate::quant::QuantFormat,
        path: crate::quant::QuantPath,
    ) -> Result<()> {
        for (i, layer) in self.layers.iter_mut().enumerate() {
            let a = &mut layer.self_attn;
            for (n, l) in [
                ("q", &mut a.q_proj),
                ("k", &mut a.k_proj),
                ("v", &mut a.v_proj),
                ("o", &mut a.o_proj),
            ] {
                l.quantize(
                    &format!("model.layers.{i}.self_attn.{n}_proj.weight"),
                    format,
                    path,
                )?;
            }
            // every projection of the FFN, dense or sparse (router, experts, shared expert and
            // its gate), under its checkpoint name
            let prefix = format!("model.layers.{i}.mlp");
            let mut linears: Vec<(String, &mut Linear<B>)> = Vec::new();
            match &mut layer.ffn {
                Ffn::Dense(mlp) => linears.extend(mlp_linears(&prefix, mlp)),
                Ffn::Sparse(moe) => {
                    linears.push((format!("{prefix}.gate.weight"), &mut moe.router));
                    for (e, expert) in moe.experts.iter_mut().enumerate() {
                        linears.extend(mlp_linears(&format!("{prefix}.experts.{e}"), expert));
                    }
                    if let Some(shared) = &mut moe.shared {
                        let p = format!("{prefix}.shared_expert");
                        linears.extend(mlp_linears(&p, &mut shared.mlp));
                        let gate = format!("{prefix}.shared_expert_gate.weight");
                        linears.push((gate, &mut shared.gate));
                    }
                }
            }
            for (name, l) in linears {
                l.quantize(&name, format, path)?;
            }
        }
        self.lm_head.quantize("lm_head.weight", format, path)?;
        // the head now holds its own quantized copy, whatever the table becomes below
        self.head_shares_embeddings = false;
        // The embedding table as a load with `LoadOptions::quant` holds it: rows of the
        // quantized matrix (kept dense where the kernels cannot take its width).
        if let Embedding::Dense(table) = &self.embed_tokens {
            let [v, h] = table.dims();
            if crate::quant::kernel_cols_ok(format, h) {
                let values = table
                    .clone()
                    .into_data()
                    .convert::<f32>()
                    .into_vec::<f32>()
                    .map_err(|e| EngineError::Invalid(format!("embedding table: {e:?}")))?;
                let m = crate::quant::QuantMatrix::quantize(
                    "model.embed_tokens.weight",
                    format,
                    v,
                    h,
                    &values,
                )?;
                self.embed_tokens = match path {
                    crate::quant::QuantPath::Kernels => {
                        Embedding::Quant(std::sync::Arc::new(crate::quant::QuantLinear::new(m)))
                    }
                    crate::quant::QuantPath::DequantizedF32 => Embedding::Dense(Tensor::from_data(
                        TensorData::new(m.dequantize(), [v, h]),
                        (&self.device, table.dtype()),
                    )),
                };
            }
        }
        Ok(())
    }

    /// CPU backends: let the dense projections and the LM head split small products across the
    /// rayon pool ([`Linear::forward`]). Sparse experts keep their own scheduling.
    pub fn enable_column_split(&mut self) {
        for layer in &mut self.layers {
            let a = &mut layer.self_attn;
            for l in [&mut a.q_proj, &mut a.k_proj, &mut a.v_proj, &mut a.o_proj] {
                l.split_columns = true;
            }
            if let Ffn::Dense(mlp) = &mut layer.ffn {
                for l in [&mut mlp.gate_proj, &mut mlp.up_proj, &mut mlp.down_proj] {
                    l.split_columns = true;
                }
            }
        }
        self.lm_head.split_columns = true;
    }

    /// `n_layers` fresh layer caches of this model's KV shape (the MTP head uses one).
    pub fn new_cache_layers(
        &self,
        n_layers: usize,
        capacity: usize,
        kv_type: KvTypes,
    ) -> Vec<LayerCache<B>> {
        let c = &self.config;
        let new = if self.host_kv {
            LayerCache::new_host
        } else {
            LayerCache::new
        };
        (0..n_layers)
            .map(|_| {
                new(
                    c.num_key_value_heads,
                    capacity,
                    c.head_dim,
                    &self.device,
                    self.dtype,
                    kv_type,
                )
            })
            .collect()
    }

    /// Fresh per-layer caches for `capacity` positions.
    pub fn new_cache(&self, capacity: usize, kv_type: KvTypes) -> Vec<LayerCache<B>> {
        self.new_cache_layers(self.config.num_hidden_layers, capacity, kv_type)
    }

    /// Check token ids against the vocabulary.
    pub fn check_tokens(&self, tokens: &[u32]) -> Result<()> {
        let vocab = self.config.vocab_size;
        match tokens.iter().find(|&&t| t as usize >= vocab) {
            Some(&id) => Err(EngineError::TokenOutOfRange { id, vocab }),
            None => Ok(()),
        }
    }

    /// Embedding rows for `tokens` (ids already checked).
    ///
    /// # Shapes
    /// → `[k, hidden]`
    pub fn embed(&self, tokens: &[u32]) -> Tensor<B, 2> {
        match &self.embed_tokens {
            Embedding::Dense(table) => {
                let ids: Vec<i32> = tokens.iter().map(|&t| t as i32).collect();
                let ids = Tensor::<B, 1, Int>::from_data(
                    TensorData::new(ids, [tokens.len()]),
                    &self.device,
                );
                table.clone().select(0, ids)
            }
            Embedding::Quant(q) => {
                let m = q.matrix();
                let h = m.cols();
                let mut rows = vec![0.0f32; tokens.len() * h];
                for (&t, row) in tokens.iter().zip(rows.chunks_exact_mut(h)) {
                    // Ids were checked against the vocabulary (`check_tokens`) by every caller.
                    if let Err(e) = m.dequantize_row(t as usize, row) {
                        panic!("embedding lookup of token {t}: {e}");
                    }
                }
                Tensor::from_data(
                    TensorData::new(rows, [tokens.len(), h]),
                    (&self.device, self.dtype),
                )
            }
        }
    }

    /// Run `tokens` at positions `start..start+k`, writing their K/V into `cache`; returns the
    /// final hidden states after the final norm. The caller checks ids and capacity.
    ///
    /// # Shapes
    /// → `[k, hidden]`
    pub fn forward(
        &self,
        tokens: &[u32],
        cache: &mut [LayerCache<B>],
        start: usize,
    ) -> Tensor<B, 2> {
        self.forward_traced(tokens, cache, start, &mut Vec::new())
    }

    /// Like [`Model::forward`], also pushing each MoE layer's experts-touched count (in layer
    /// order) onto `experts_touched`.
    pub fn forward_traced(
        &self,
        tokens: &[u32],
        cache: &mut [LayerCache<B>],
        start: usize,
        experts_touched: &mut Vec<u32>,
    ) -> Tensor<B, 2> {
        let x = self.embed(tokens);
        self.forward_embeddings(x, cache, start, experts_touched)
    }

    /// Like [`Model::forward_traced`] from precomputed input embeddings (`[k, hidden]`).
    pub fn forward_embeddings(
        &self,
        mut x: Tensor<B, 2>,
        cache: &mut [LayerCache<B>],
        start: usize,
        experts_touched: &mut Vec<u32>,
    ) -> Tensor<B, 2> {
        let [k, h] = x.dims();
        if crate::model::host::ready(self, cache) {
            let rows = crate::model::host::forward_layers(
                self,
                crate::kv_cache::host_f32(x),
                k,
                cache,
                start,
                experts_touched,
            );
            let x = Tensor::from_data(TensorData::new(rows, [k, h]), (&self.device, self.dtype));
            return self.norm.forward(x);
        }
        let inputs = self.attention_inputs(start, k);
        for (layer, layer_cache) in self.layers.iter().zip(cache.iter_mut()) {
            x = layer.forward(x, layer_cache, &inputs, experts_touched);
        }
        self.norm.forward(x)
    }

    /// RoPE tables and causal mask for `k` tokens starting at `start`.
    pub fn attention_inputs(&self, start: usize, k: usize) -> AttentionInputs<B> {
        let (cos, sin) = self.rope.tables::<B>(start, k, &self.device, self.dtype);
        let mask = (k > 1).then(|| {
            let groups = self.config.gqa_groups();
            let total = start + k;
            let mut m = vec![0.0f32; groups * k * total];
            for g in 0..groups {
                for i in 0..k {
                    let row = &mut m[(g * k + i) * total..(g * k + i + 1) * total];
                    // query i sits at start+i and sees keys 0..=start+i
                    row[start + i + 1..].fill(f32::NEG_INFINITY);
                }
            }
            Tensor::from_data(
                TensorData::new(m, [1, groups * k, total]),
                (&self.device, self.dtype),
            )
        });
        AttentionInputs {
            start,
            cos,
            sin,
            mask,
        }
    }

    /// LM head over the hidden states.
    ///
    /// # Shapes
    /// - `hidden`: `[rows, hidden]` → `[rows, vocab]`
    pub fn logits(&self, hidden: Tensor<B, 2>) -> Tensor<B, 2> {
        self.lm_head.forward(hidden)
    }

    /// Bytes of the projection and embedding weights the model holds, every expert of a mixture
    /// and an MTP module included (norms left out): what peak memory is compared with when there
    /// is no weight file (random weights, `--quant` formats other than the file's).
    pub fn weight_bytes(&self) -> usize {
        let layers: usize = self
            .layers
            .iter()
            .map(|l| l.self_attn.weight_bytes() + l.ffn.weight_bytes())
            .sum();
        let mtp = self.mtp.as_ref().map_or(0, MtpModule::weight_bytes);
        // a tied head shares the table's storage: count it once
        let embed = match &self.embed_tokens {
            _ if self.head_shares_embeddings => 0,
            Embedding::Quant(e) => e.matrix().bytes().len(),
            Embedding::Dense(t) => t.shape().num_elements() * t.dtype().size(),
        };
        layers + mtp + embed + self.lm_head.weight_bytes()
    }

    /// Weight bytes read to decode one token (all layers + LM head; the embedding row is negligible).
    pub fn weight_bytes_per_token(&self) -> usize {
        let layers: usize = self
            .layers
            .iter()
            .map(|l| l.self_attn.weight_bytes() + l.ffn.weight_bytes_per_token())
            .sum();
        layers + self.lm_head.weight_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::{RandomWeights, preset_config};
    use crate::weights::HostTensor;
    use burn::backend::Flex;

    /// Random weights of `config` plus an `lm_head.weight` of their own, as some tied
    /// checkpoints carry.
    struct WithHead(RandomWeights, Vec<usize>);

    impl WeightSource for WithHead {
        fn origin(&self) -> String {
            self.0.origin()
        }
        fn contains(&self, name: &str) -> bool {
            name == "lm_head.weight" || self.0.contains(name)
        }
        fn load(&self, name: &str) -> Result<HostTensor> {
            if name != "lm_head.weight" {
                return self.0.load(name);
            }
            let n = self.1.iter().product();
            Ok(HostTensor {
                shape: self.1.clone(),
                data: (0..n).map(|i| (i % 7) as f32 * 1e-3).collect(),
            })
        }
        fn names(&self) -> Vec<String> {
            let mut names = self.0.names();
            names.push("lm_head.weight".into());
            names
        }
    }

    /// `weight_bytes` is the f32 size of every 2-D tensor the checkpoint holds, the table once
    /// when the head is tied to it and twice when the checkpoint carries its own head — also
    /// after the model is quantized, when the head holds its own copy.
    #[test]
    fn weight_bytes_count_a_tied_head_once_and_an_own_head_twice() {
        let mut cfg = preset_config("qwen3-0.1b").unwrap();
        (
            cfg.num_hidden_layers,
            cfg.hidden_size,
            cfg.intermediate_size,
        ) = (2, 64, 128);
        (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        ) = (4, 2, 16);
        cfg.vocab_size = 512;
        assert!(cfg.tie_word_embeddings);
        let matrices: usize = cfg
            .tensor_shapes()
            .iter()
            .filter(|(_, s)| s.len() == 2)
            .map(|(_, s)| 4 * s[0] * s[1])
            .sum();
        let table = 4 * cfg.vocab_size * cfg.hidden_size;
        let dev = Default::default();
        let tied = Model::<Flex>::load(&cfg, &RandomWeights::new(&cfg, 3), &dev, DType::F32)
            .expect("tied model");
        assert!(tied.head_shares_embeddings);
        assert_eq!(tied.weight_bytes(), matrices);
        let own = WithHead(
            RandomWeights::new(&cfg, 3),
            vec![cfg.vocab_size, cfg.hidden_size],
        );
        let own = Model::<Flex>::load(&cfg, &own, &dev, DType::F32).expect("own head");
        assert!(!own.head_shares_embeddings);
        assert_eq!(own.weight_bytes(), matrices + table);
        // quantized after loading, the tied head gets its own Q8_0 copy next to the table's
        let mut q = tied.clone();
        q.quantize_linears(
            crate::quant::QuantFormat::Q8_0,
            crate::quant::QuantPath::Kernels,
        )
        .expect("quantize");
        assert!(!q.head_shares_embeddings);
        let q8 = |s: &[usize]| s[0] * s[1] / 32 * 34;
        let want: usize = cfg
            .tensor_shapes()
            .iter()
            .filter(|(_, s)| s.len() == 2)
            .map(|(_, s)| q8(s))
            .sum::<usize>()
            + q8(&[cfg.vocab_size, cfg.hidden_size]);
        assert_eq!(q.weight_bytes(), want);
    }

    /// An embedding table the head shares takes the kernels' layout (the head multiplies by it);
    /// one beside a head of its own is only read row by row and keeps its layout (a GGUF table
    /// then stays mapped: only the rows tokens use become resident).
    #[test]
    fn only_a_shared_embedding_table_takes_the_kernel_layout() {
        use crate::quant::{QuantFormat, QuantMatrix, WeightQuant};
        let mut cfg = preset_config("qwen3-0.1b").unwrap();
        (
            cfg.num_hidden_layers,
            cfg.hidden_size,
            cfg.intermediate_size,
        ) = (1, 64, 128);
        (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        ) = (4, 2, 16);
        cfg.vocab_size = 512;
        let x16 = QuantMatrix::takes_kernel_layout(QuantFormat::Q8_0, 512, 64);
        let quant = Some(WeightQuant::Format(QuantFormat::Q8_0));
        let dev = Default::default();
        let table = |m: &Model<Flex>| match &m.embed_tokens {
            Embedding::Quant(q) => q.matrix().is_interleaved(),
            Embedding::Dense(_) => panic!("a quantized load keeps a quantized table"),
        };
        let head = |m: &Model<Flex>| m.lm_head.quant.as_ref().unwrap().matrix().is_interleaved();
        let tied = RandomWeights::new(&cfg, 5);
        let tied = Model::<Flex>::load_quantized(&cfg, &tied, &dev, DType::F32, quant).unwrap();
        assert!(tied.head_shares_embeddings);
        assert_eq!((table(&tied), head(&tied)), (x16, x16));
        let own = WithHead(
            RandomWeights::new(&cfg, 5),
            vec![cfg.vocab_size, cfg.hidden_size],
        );
        let own = Model::<Flex>::load_quantized(&cfg, &own, &dev, DType::F32, quant).unwrap();
        assert!(!own.head_shares_embeddings);
        assert_eq!((table(&own), head(&own)), (false, x16));
    }
}
