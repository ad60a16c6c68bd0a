//! Where weights come from: a [`WeightSource`] maps Hugging Face tensor names to host f32 data.
//!
//! Both the safetensors loader and the GGUF loader implement it, so the model builder has one code
//! path. GGUF sources translate names (`blk.N.attn_q.weight` → `model.layers.N.self_attn.q_proj.weight`)
//! and undo llama.cpp's Q/K row permutation before handing data out.

use crate::error::Result;

/// A tensor materialised on the host as f32, row-major, with its shape (HF/PyTorch order).
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    /// Number of elements implied by the shape.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A read-only collection of named tensors using Hugging Face names.
pub trait WeightSource {
    /// Human-readable origin (file path) for error messages.
    fn origin(&self) -> String;
    /// Whether a tensor with this HF name exists.
    fn contains(&self, name: &str) -> bool;
    /// Load a tensor as f32, converting from its stored dtype (f16, bf16, quantized blocks ...).
    /// A missing tensor is `EngineError::MissingTensor`.
    fn load(&self, name: &str) -> Result<HostTensor>;
    /// All tensor names (HF naming).
    fn names(&self) -> Vec<String>;
    /// A 2-D weight in the block format it is stored in, ready for the quantized kernels without
    /// a dequantize/requantize round trip (GGUF). `Ok(None)`: this source or this tensor's storage
    /// has no such form; load it with [`WeightSource::load`] instead.
    fn quant_matrix(&self, name: &str) -> Result<Option<crate::quant::QuantMatrix>> {
        let _ = name;
        Ok(None)
    }
}
