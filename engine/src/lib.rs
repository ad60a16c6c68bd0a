//! specsweep's inference engine: dense (Qwen3 / Llama / Qwen2) and MoE (Qwen3-MoE) transformers on
//! burn, loaded from Hugging Face checkpoints or GGUF files, with a caller-owned truncatable KV cache,
//! samplers outside the model, and lossless speculative decoding (`spec`).
//!
//! The engine never reads environment variables or files other than weights and tokenizers.

pub mod config;
pub mod device;
pub mod engine;
pub mod error;
pub mod generate;
pub mod gguf;
pub mod kv_cache;
pub mod model;
pub mod quant;
pub mod random;
pub mod roofline;
pub mod safetensors;
pub mod sampling;
pub mod spec;
pub mod tokenizer;
pub mod weights;

pub use config::{Architecture, ModelConfig};
pub use device::DeviceSpec;
pub use engine::{DType, Engine, ForwardOutput, LoadOptions, LogitRows};
pub use error::{EngineError, Result};
pub use generate::{GenerateOptions, Generation, StopReason, generate};
pub use kv_cache::{KvCache, KvType, KvTypes};
pub use sampling::{Sampler, Sampling};
pub use tokenizer::Tokenizer;
