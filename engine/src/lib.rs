//! specsweep's inference engine: dense (Qwen3 / Llama / Qwen2) and MoE (Qwen3-MoE) transformers on
//! burn, loaded from Hugging Face checkpoints or GGUF files, with a caller-owned truncatable KV cache,
//! samplers outside the model, and lossless speculative decoding (`spec`).
//!
//! The engine never reads environment variables or files other than weights and tokenizers.

pub mod error;
pub mod weights;

pub use error::{EngineError, Result};
