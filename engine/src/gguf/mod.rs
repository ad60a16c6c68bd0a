//! GGUF checkpoints (llama.cpp's file format): a memory-mapped file read as a [`WeightSource`]
//! with Hugging Face tensor names and f32 data, plus the model config and tokenizer rebuilt from
//! its metadata.
//!
//! Supported: GGUF v2/v3, architectures llama, qwen2, qwen3 and qwen3moe, every tensor type
//! llama.cpp's CPU backend reads but NVFP4 and the integer types ([`GgmlType::ALL`]: F32, F16,
//! BF16, the 32-blocks, the k-quants, IQ4_NL / IQ4_XS, the IQ1 … IQ3 i-quants, TQ1_0 / TQ2_0,
//! MXFP4), either dequantized on load or handed to the quantized kernels as stored
//! ([`GgufModel::quant_matrix`]; types without kernels as exact copies in one that has them,
//! `crate::quant::recode`). Shapes are handed
//! out in PyTorch order (GGUF lists the innermost dimension first), stacked expert tensors are
//! split per expert, and the Q/K rows llama.cpp's converter permutes for llama-architecture models
//! are put back in HF order, so that the model builder sees exactly what a safetensors checkpoint
//! of the same weights would give.

pub mod dequant;
pub mod hparams;
pub mod names;
pub mod reader;
pub mod spm;
pub mod tokenizer;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;

use crate::error::{EngineError, Result};
use crate::quant::{QuantFormat, QuantMatrix, kernel_cols_ok};
use crate::weights::{HostTensor, WeightSource};
pub use dequant::GgmlType;
use dequant::dequantize;
use names::HfName;
pub use reader::{MetaValue, TensorInfo};

/// Where an HF tensor lives in the file.
#[derive(Debug, Clone)]
struct Entry {
    /// Index into the tensor infos.
    tensor: usize,
    /// For stacked expert tensors: which expert.
    expert: Option<usize>,
    /// For llama-architecture q/k projections: undo the converter's row permutation over this
    /// many heads.
    unpermute_heads: Option<usize>,
}

/// A tensor's stored bytes (ggml blocks along the innermost dimension) with its HF shape.
#[derive(Debug, Clone)]
pub struct RawTensor<'a> {
    /// The block type.
    pub ggml_type: GgmlType,
    /// HF (PyTorch) shape.
    pub shape: Vec<usize>,
    /// Row-major blocks, rows in HF order.
    pub bytes: Cow<'a, [u8]>,
    /// Where in the file they were read from (one expert's slice of a stacked tensor).
    pub range: std::ops::Range<usize>,
}

/// An opened GGUF file.
pub struct GgufModel {
    path: PathBuf,
    mmap: Arc<Mmap>,
    header: reader::GgufHeader,
    config: serde_json::Value,
    entries: HashMap<String, Entry>,
    /// HF names in file order (experts expanded).
    order: Vec<String>,
}

impl std::fmt::Debug for GgufModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufModel")
            .field("path", &self.path)
            .field("tensors", &self.header.tensors.len())
            .finish()
    }
}

impl GgufModel {
    /// Memory-map `path` and parse its header, metadata and tensor infos; build the config.
    pub fn open(path: &Path) -> Result<GgufModel> {
        let file = File::open(path).map_err(|e| EngineError::io(path, e))?;
        // SAFETY: the map is read-only; as with every mmap-based loader, the file must not be
        // truncated while it is open (all reads are bounds-checked against the mapped length
        // taken at open time).
        let mmap = Arc::new(unsafe { Mmap::map(&file) }.map_err(|e| EngineError::io(path, e))?);
        let fail = |message: String| EngineError::Format {
            path: path.to_path_buf(),
            message,
        };
        let header = reader::parse_header(&mmap).map_err(fail)?;
        let mut model = GgufModel {
            path: path.to_path_buf(),
            mmap,
            header,
            config: serde_json::Value::Null,
            entries: HashMap::new(),
            order: Vec::new(),
        };
        let rope_freqs = match model.tensor_index("rope_freqs.weight") {
            Some(i) => Some(model.dequantize_range(i, None)?),
            None => None,
        };
        model.config = hparams::config_json(
            &model.header.metadata,
            &model.header.tensors,
            rope_freqs.as_deref(),
        )
        .map_err(fail)?;
        model.index_names().map_err(fail)?;
        Ok(model)
    }

    /// The file this model was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.header.version
    }

    /// All metadata key/values.
    pub fn metadata(&self) -> &BTreeMap<String, MetaValue> {
        &self.header.metadata
    }

    /// The tensor infos, with GGUF names and ggml dims.
    pub fn tensor_infos(&self) -> &[TensorInfo] {
        &self.header.tensors
    }

    /// An HF-style config.json built from the metadata (see [`hparams`]).
    pub fn config_json(&self) -> serde_json::Value {
        self.config.clone()
    }

    /// The tokenizer described by the `tokenizer.ggml.*` metadata (see [`tokenizer`]).
    pub fn tokenizer(&self) -> Result<tokenizers::Tokenizer> {
        tokenizer::build(&self.header.metadata).map_err(|message| EngineError::Format {
            path: self.path.clone(),
            message,
        })
    }

    /// A summary for listings and manifests: architecture, name, file type, tensor-type counts.
    pub fn summary(&self) -> serde_json::Value {
        let mut types: BTreeMap<&str, usize> = BTreeMap::new();
        for t in &self.header.tensors {
            *types.entry(t.ggml_type.name()).or_default() += 1;
        }
        let meta = |k: &str| {
            self.header
                .metadata
                .get(k)
                .map(|v| v.to_json(16))
                .unwrap_or(serde_json::Value::Null)
        };
        serde_json::json!({
            "gguf_version": self.header.version,
            "architecture": meta("general.architecture"),
            "name": meta("general.name"),
            "file_type": meta("general.file_type"),
            "tensor_types": types,
            "n_tensors": self.header.tensors.len(),
        })
    }

    fn tensor_index(&self, gguf_name: &str) -> Option<usize> {
        self.header.tensors.iter().position(|t| t.name == gguf_name)
    }

    fn cfg_usize(&self, key: &str) -> usize {
        self.config[key].as_u64().unwrap_or(0) as usize
    }

    /// Map every GGUF tensor to its HF name(s).
    fn index_names(&mut self) -> std::result::Result<(), String> {
        let n_layers = self.cfg_usize("num_hidden_layers");
        let heads = self.cfg_usize("num_attention_heads");
        let kv_heads = self.cfg_usize("num_key_value_heads");
        let permuted = self
            .header
            .metadata
            .get("general.architecture")
            .and_then(MetaValue::as_str)
            == Some("llama");
        for (i, t) in self.header.tensors.iter().enumerate() {
            match names::hf_name(&t.name, n_layers) {
                None => {}
                Some(HfName::Plain(hf)) => {
                    let unpermute_heads = if permuted {
                        names::permuted_heads(&hf, heads, kv_heads)
                    } else {
                        None
                    };
                    self.order.push(hf.clone());
                    self.entries.insert(
                        hf,
                        Entry {
                            tensor: i,
                            expert: None,
                            unpermute_heads,
                        },
                    );
                }
                Some(HfName::Experts { layer, proj }) => {
                    if t.dims.len() != 3 {
                        return Err(format!(
                            "tensor `{}`: expected 3 dims [cols, rows, n_expert], got {:?}",
                            t.name, t.dims
                        ));
                    }
                    for e in 0..t.dims[2] as usize {
                        let hf = names::expert_name(layer, e, proj);
                        self.order.push(hf.clone());
                        self.entries.insert(
                            hf,
                            Entry {
                                tensor: i,
                                expert: Some(e),
                                unpermute_heads: None,
                            },
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// Dequantize tensor `i` (or one expert slice of it) to f32.
    fn dequantize_range(&self, i: usize, expert: Option<usize>) -> Result<Vec<f32>> {
        let t = &self.header.tensors[i];
        let (start, len) = match expert {
            None => (t.offset, t.byte_len),
            Some(e) => {
                let per = t.byte_len / t.dims[2] as usize;
                (t.offset + e * per, per)
            }
        };
        let bytes = &self.mmap[start..start + len];
        let n = len / t.ggml_type.type_size() * t.ggml_type.block_size();
        let mut out = vec![0f32; n];
        dequantize(t.ggml_type, bytes, &mut out);
        if out.iter().any(|v| !v.is_finite()) {
            return Err(EngineError::Format {
                path: self.path.clone(),
                message: format!(
                    "tensor `{}`: non-finite values after dequantization",
                    t.name
                ),
            });
        }
        Ok(out)
    }

    /// The stored (still quantized) blocks behind an HF name, rows in HF order: for kernels that
    /// compute on ggml blocks directly instead of dequantized f32. Each row of a 2-D weight is a
    /// whole number of blocks, so llama's Q/K un-permutation moves row bytes.
    pub fn raw(&self, hf_name: &str) -> Result<RawTensor<'_>> {
        let entry = self
            .entries
            .get(hf_name)
            .ok_or_else(|| EngineError::MissingTensor {
                path: self.path.clone(),
                tensor: hf_name.to_string(),
            })?;
        let t = &self.header.tensors[entry.tensor];
        let mut shape = t.hf_shape();
        let (mut start, mut len) = (t.offset, t.byte_len);
        if let Some(e) = entry.expert {
            shape.remove(0);
            len /= t.dims[2] as usize;
            start += e * len;
        }
        let bytes = &self.mmap[start..start + len];
        let bytes = match entry.unpermute_heads {
            None => Cow::Borrowed(bytes),
            Some(heads) => {
                let rows = shape[0];
                let row_bytes = len / rows;
                let index: Vec<f32> = (0..rows).map(|r| r as f32).collect();
                let order = names::unpermute_rows(&index, rows, 1, heads).ok_or_else(|| {
                    EngineError::Format {
                        path: self.path.clone(),
                        message: format!(
                            "tensor `{}`: {rows} rows do not split into {heads} heads",
                            t.name
                        ),
                    }
                })?;
                let mut out = Vec::with_capacity(len);
                for src in order {
                    let src = src as usize;
                    out.extend_from_slice(&bytes[src * row_bytes..(src + 1) * row_bytes]);
                }
                Cow::Owned(out)
            }
        };
        Ok(RawTensor {
            ggml_type: t.ggml_type,
            shape,
            bytes,
            range: start..start + len,
        })
    }

    /// The 2-D weight behind an HF name as a [`QuantMatrix`] in its stored block format, for the
    /// quantized kernels: borrowed from the file map (no copy) unless llama's Q/K rows must be
    /// reordered. `None` when the kernels cannot take it as stored (a block type they lack, or a
    /// column count that is not a whole number of kernel blocks) — the caller then dequantizes.
    pub fn quant_matrix(&self, hf_name: &str) -> Result<Option<QuantMatrix>> {
        let Some(entry) = self.entries.get(hf_name) else {
            return Err(EngineError::MissingTensor {
                path: self.path.clone(),
                tensor: hf_name.to_string(),
            });
        };
        let t = &self.header.tensors[entry.tensor];
        let Some(format) = QuantFormat::from_ggml_type(t.ggml_type as u32) else {
            // the i-quants, ternary types and MXFP4: exact copies in a kernel format
            return self.recoded(hf_name, t.ggml_type, &t.name);
        };
        let mut shape = t.hf_shape();
        if entry.expert.is_some() {
            shape.remove(0);
        }
        let [rows, cols] = shape[..] else {
            return Ok(None);
        };
        if format == QuantFormat::Q3K && !QuantMatrix::takes_kernel_layout(format, rows, cols) {
            // only the interleaved layout has vector Q3_K kernels
            return self.recoded(hf_name, t.ggml_type, &t.name);
        }
        if !kernel_cols_ok(format, cols) {
            return Ok(None);
        }
        if entry.unpermute_heads.is_some() || entry.expert.is_some() {
            let raw = self.raw(hf_name)?;
            let owned = raw.bytes.into_owned();
            // the copy is all the model keeps: hand the file pages it was read from back, as
            // `QuantMatrix::interleave` does for mapped matrices (otherwise they stay resident
            // until the map is dropped and add to the load's peak)
            crate::quant::release_pages(&self.mmap, raw.range);
            return QuantMatrix::from_raw(&t.name, format, rows, cols, owned).map(Some);
        }
        QuantMatrix::from_mapped(
            &t.name,
            format,
            rows,
            cols,
            Arc::clone(&self.mmap),
            t.offset..t.offset + t.byte_len,
        )
        .map(Some)
    }

    /// A weight whose stored type the kernels lack as blocks of a kernel format holding the
    /// same values (`quant::recode`): where the code copies' vector kernels run (AVX-512 VNNI or
    /// AVX2, `quant::iq_codes::native`) IQ2_* as IQ2_PLANES, IQ3_XXS / IQ3_S as IQ3_*_NIB and
    /// IQ1_S / IQ1_M as IQ1_SHIFT, elsewhere IQ3 / IQ1 as Q6_K; TQ1_0 / TQ2_0 as Q2_K, MXFP4 as Q8_0,
    /// and Q3_K as Q6_K where it will not be interleaved (`--layout rows`, rows not a multiple
    /// of 16, CPUs without AVX2: the row-major Q3_K product is the portable one only). IQ2
    /// tensors without the code kernel, and MXFP4 tensors with a scale outside f16's range, are
    /// kept as f32: exact, at 32 bits per weight.
    fn recoded(&self, hf_name: &str, ty: GgmlType, name: &str) -> Result<Option<QuantMatrix>> {
        let raw = self.raw(hf_name)?;
        let [rows, cols] = raw.shape[..] else {
            return Ok(None);
        };
        if let Some(r) = crate::quant::recode::recode_for(ty, crate::quant::iq_codes::native())
            && kernel_cols_ok(r.target, cols)
        {
            let to_bytes = r.target.block_bytes();
            let src_row = raw.bytes.len() / rows;
            // blocks in parallel on the current rayon pool (the IQ2 codebook lookups of a 1.5B
            // model took seconds on one thread), a chunk of rows at a time (interleaved as it
            // comes where the kernels take that layout)
            use rayon::prelude::*;
            let copy = QuantMatrix::from_row_chunks(name, r.target, rows, cols, |span, out| {
                raw.bytes[span.start * src_row..span.end * src_row]
                    .par_chunks_exact(r.from_bytes)
                    .zip(out.par_chunks_exact_mut(to_bytes))
                    .with_min_len(256)
                    .all(|(b, o)| (r.convert)(b, o))
            })?;
            if let Some(m) = copy {
                crate::quant::release_pages(&self.mmap, raw.range);
                return Ok(Some(m.with_out_scale(r.out_scale)));
            }
        }
        if !kernel_cols_ok(QuantFormat::F32, cols) {
            return Ok(None);
        }
        // row by row into the f32 bytes the matrix keeps: no second full-size copy
        let row_bytes = raw.bytes.len() / rows;
        let mut row = vec![0f32; cols];
        let mut data = Vec::with_capacity(rows * cols * 4);
        for blocks in raw.bytes.chunks_exact(row_bytes) {
            crate::gguf::dequant::dequantize(ty, blocks, &mut row);
            data.extend(row.iter().flat_map(|v| v.to_le_bytes()));
        }
        crate::quant::release_pages(&self.mmap, raw.range);
        QuantMatrix::from_raw(name, QuantFormat::F32, rows, cols, data).map(Some)
    }

    /// The ggml type of the GGUF tensor behind an HF name (for reports).
    pub fn ggml_type_of(&self, hf_name: &str) -> Option<GgmlType> {
        self.entries
            .get(hf_name)
            .map(|e| self.header.tensors[e.tensor].ggml_type)
    }
}

impl WeightSource for GgufModel {
    fn origin(&self) -> String {
        self.path.display().to_string()
    }

    fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    fn load(&self, name: &str) -> Result<HostTensor> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| EngineError::MissingTensor {
                path: self.path.clone(),
                tensor: name.to_string(),
            })?;
        let t = &self.header.tensors[entry.tensor];
        let mut shape = t.hf_shape();
        if entry.expert.is_some() {
            shape.remove(0);
        }
        let mut data = self.dequantize_range(entry.tensor, entry.expert)?;
        if let Some(heads) = entry.unpermute_heads {
            let rows = shape[0];
            let cols: usize = shape[1..].iter().product();
            data = names::unpermute_rows(&data, rows, cols, heads).ok_or_else(|| {
                EngineError::Format {
                    path: self.path.clone(),
                    message: format!(
                        "tensor `{}`: {rows} rows do not split into {heads} heads of even size",
                        t.name
                    ),
                }
            })?;
        }
        Ok(HostTensor { shape, data })
    }

    fn names(&self) -> Vec<String> {
        self.order.clone()
    }

    fn quant_matrix(&self, name: &str) -> Result<Option<QuantMatrix>> {
        GgufModel::quant_matrix(self, name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reader::tests::Writer;

    fn write(bytes: &[u8], name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("specsweep-gguf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn tiny(arch: &str) -> Writer {
        let w = Writer::default()
            .string("general.architecture", arch)
            .u32(&format!("{arch}.block_count"), 1)
            .u32(&format!("{arch}.embedding_length"), 4)
            .u32(&format!("{arch}.feed_forward_length"), 8)
            .u32(&format!("{arch}.attention.head_count"), 2)
            .u32(&format!("{arch}.attention.head_count_kv"), 1)
            .f32(&format!("{arch}.attention.layer_norm_rms_epsilon"), 1e-6)
            .u32(&format!("{arch}.context_length"), 64);
        let q: Vec<f32> = (0..16).map(|v| v as f32).collect();
        w.tensor("token_embd.weight", &[4, 3], &[0.0; 12])
            .tensor("blk.0.attn_q.weight", &[4, 4], &q)
            .tensor("blk.0.attn_k.weight", &[4, 2], &q[..8])
            .tensor("rope_freqs.weight", &[1], &[1.0])
    }

    #[test]
    fn config_and_names_of_a_llama_file() {
        let p = write(&tiny("llama").build(), "llama.gguf");
        let m = GgufModel::open(&p).unwrap();
        let c = m.config_json();
        assert_eq!(c["architectures"][0], "LlamaForCausalLM");
        assert_eq!(c["head_dim"], 2);
        assert_eq!(c["rms_norm_eps"], 1e-6);
        assert_eq!(c["vocab_size"], 3);
        assert_eq!(c["tie_word_embeddings"], true);
        assert!(c.get("rope_scaling").is_none());
        let mut names = m.names();
        names.sort();
        assert_eq!(
            names,
            [
                "model.embed_tokens.weight",
                "model.layers.0.self_attn.k_proj.weight",
                "model.layers.0.self_attn.q_proj.weight"
            ]
        );
        let e = m.load("model.embed_tokens.weight").unwrap();
        assert_eq!(e.shape, vec![3, 4]);
        // q: 2 heads of head_dim 2: the pair swap is a no-op within 2 rows.
        let q = m.load("model.layers.0.self_attn.q_proj.weight").unwrap();
        assert_eq!(q.shape, vec![4, 4]);
        assert_eq!(q.data[4..8], [4.0, 5.0, 6.0, 7.0]);
        let err = m.load("lm_head.weight").unwrap_err().to_string();
        assert!(err.contains("lm_head.weight"), "{err}");
    }

    #[test]
    fn open_errors_name_the_file() {
        let p = write(b"GGUF\x03\x00\x00\x00", "short.gguf");
        let e = GgufModel::open(&p).unwrap_err().to_string();
        assert!(e.contains("short.gguf") && e.contains("truncated"), "{e}");
        let p = write(&tiny("gpt2").build(), "gpt2.gguf");
        let e = GgufModel::open(&p).unwrap_err().to_string();
        assert!(e.contains("unsupported architecture `gpt2`"), "{e}");
    }

    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
    }

    /// All f32 tensors of an HF checkpoint directory (f32 / bf16 / f16 safetensors, any shards).
    fn hf_tensors(dir: &Path) -> HashMap<String, HostTensor> {
        let mut out = HashMap::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_none_or(|e| e != "safetensors") {
                continue;
            }
            let bytes = std::fs::read(&p).unwrap();
            let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            for (name, view) in st.tensors() {
                let raw = view.data();
                let data: Vec<f32> = match view.dtype() {
                    safetensors::Dtype::F32 => raw
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect(),
                    safetensors::Dtype::BF16 => raw
                        .chunks_exact(2)
                        .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                        .collect(),
                    safetensors::Dtype::F16 => raw
                        .chunks_exact(2)
                        .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                        .collect(),
                    other => panic!("{name}: dtype {other:?}"),
                };
                let shape = view.shape().to_vec();
                out.insert(name, HostTensor { shape, data });
            }
        }
        out
    }

    /// The f32 GGUF conversions hand out exactly the HF checkpoint's tensors (names, shapes,
    /// values — so the Q/K un-permutation of llama-tiny is right) and an equivalent config.
    #[test]
    fn f32_conversions_equal_the_hf_checkpoints() {
        for name in ["llama-tiny", "qwen2-tiny", "qwen3-tiny", "qwen3moe-4e"] {
            let m = GgufModel::open(&fixtures().join("gguf").join(format!("{name}.gguf"))).unwrap();
            let hf = hf_tensors(&fixtures().join(name));
            let mut ours = m.names();
            ours.sort();
            let mut theirs: Vec<String> = hf.keys().cloned().collect();
            theirs.sort();
            assert_eq!(ours, theirs, "{name}: tensor names");
            for (tname, want) in &hf {
                let got = m.load(tname).unwrap();
                assert_eq!(got.shape, want.shape, "{name}: {tname}");
                assert_eq!(got.data, want.data, "{name}: {tname}");
            }
            let cfg_text =
                std::fs::read_to_string(fixtures().join(name).join("config.json")).unwrap();
            let want: serde_json::Value = serde_json::from_str(&cfg_text).unwrap();
            let got = m.config_json();
            for key in [
                "hidden_size",
                "num_hidden_layers",
                "num_attention_heads",
                "num_key_value_heads",
                "vocab_size",
                "tie_word_embeddings",
                "rms_norm_eps",
            ] {
                assert_eq!(got[key], want[key], "{name}: {key}");
            }
            let theta = want["rope_theta"]
                .as_f64()
                .or(want["rope_parameters"]["rope_theta"].as_f64())
                .unwrap();
            assert_eq!(
                got["rope_theta"].as_f64(),
                Some(theta),
                "{name}: rope_theta"
            );
            let head_dim = got["head_dim"].as_u64().unwrap() as usize;
            if let Some(hd) = want["head_dim"].as_u64() {
                assert_eq!(head_dim, hd as usize, "{name}: head_dim");
            }
            if want["rope_scaling"]["rope_type"] == "llama3" {
                let a = hparams::llama3_divisors(&got["rope_scaling"], theta, head_dim);
                let b = hparams::llama3_divisors(&want["rope_scaling"], theta, head_dim);
                for (x, y) in a.iter().zip(&b) {
                    assert!(
                        (x - y).abs() <= 1e-6 * y,
                        "{name}: rope divisors {a:?} vs {b:?}"
                    );
                }
            }
            if name == "qwen3moe-4e" {
                for key in [
                    "num_experts_per_tok",
                    "moe_intermediate_size",
                    "norm_topk_prob",
                ] {
                    assert_eq!(got[key], want[key], "{name}: {key}");
                }
                let experts = want["num_experts"]
                    .as_u64()
                    .or(want["num_local_experts"].as_u64());
                assert_eq!(got["num_experts"].as_u64(), experts);
            }
        }
    }

    /// `raw` hands out the same values as `load`, in the same row order (llama's permuted q/k and
    /// a split expert included).
    #[test]
    fn raw_blocks_follow_hf_row_order() {
        for (stem, name) in [
            ("llama-tiny", "model.layers.1.self_attn.q_proj.weight"),
            ("llama-tiny", "model.layers.0.self_attn.k_proj.weight"),
            (
                "qwen3moe-4e",
                "model.layers.1.mlp.experts.2.down_proj.weight",
            ),
        ] {
            let m = GgufModel::open(&fixtures().join("gguf").join(format!("{stem}.gguf"))).unwrap();
            let raw = m.raw(name).unwrap();
            let loaded = m.load(name).unwrap();
            assert_eq!(raw.ggml_type, GgmlType::F32);
            assert_eq!(raw.shape, loaded.shape);
            let mut values = vec![0f32; loaded.data.len()];
            dequantize(raw.ggml_type, &raw.bytes, &mut values);
            assert_eq!(values, loaded.data, "{stem}: {name}");
        }
    }

    /// The q8_0 conversion stays within Q8_0's rounding of the HF weights: |error| ≤ d/2 per block
    /// with d = max|w|/127, plus up to 127 × d's own f16 rounding (2^-11 relative): relative to the
    /// tensor's largest value, (0.5 + 127/2048)/127 < 0.57/127.
    #[test]
    fn q8_0_conversion_is_within_quantization_error() {
        let dir = fixtures().join("gguf");
        let Some(file) = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.to_string_lossy().ends_with("-q8_0.gguf"))
        else {
            panic!("no *-q8_0.gguf fixture in {}", dir.display());
        };
        let stem = file
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .replace("-q8_0", "");
        let m = GgufModel::open(&file).unwrap();
        let hf = hf_tensors(&fixtures().join(&stem));
        let mut n_q8 = 0;
        for (tname, want) in &hf {
            let got = m.load(tname).unwrap();
            assert_eq!(got.shape, want.shape, "{tname}");
            let max = want.data.iter().fold(0f32, |a, v| a.max(v.abs()));
            let err = got
                .data
                .iter()
                .zip(&want.data)
                .fold(0f32, |a, (g, w)| a.max((g - w).abs()));
            if m.ggml_type_of(tname) == Some(GgmlType::Q8_0) {
                n_q8 += 1;
                assert!(err <= max * 0.57 / 127.0, "{tname}: error {err}, max {max}");
            } else {
                assert!(err <= 1e-6 * max.max(1.0), "{tname}: error {err}");
            }
        }
        assert!(n_q8 > 0, "{}: no Q8_0 tensors", file.display());
    }
}
