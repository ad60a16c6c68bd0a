//! Weights kept quantized in memory and the CPU kernels that multiply with them: the decode path at
//! memory bandwidth (issue #8).
//!
//! A [`QuantMatrix`] holds a weight matrix in one of the [`QuantFormat`]s — the dense f32 / f16 /
//! bf16, the formats we quantize any checkpoint to (q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl, iq4_xs),
//! and the GGUF block formats as loaded (those and Q2_K, Q3_K, Q4_K, Q5_K, Q6_K; the GGUF types
//! without kernels, IQ1 … IQ3, TQ1_0 / TQ2_0 and MXFP4, as exact copies in one of these or in
//! specsweep's own IQ2_PLANES / IQ3_*_NIB / IQ1_SHIFT, `iq_codes`; see `recode`). [`matmul`]
//! computes `x · Wᵀ` for a few activation rows (decode, speculative verify) or many (prefill),
//! dequantizing inside the dot products as
//! llama.cpp's CPU backend does: activations are quantized once per call to 8-bit blocks (of 32, as
//! ggml's Q8_1; of 256 for the K-quants, as Q8_K) and
//! multiplied with integer dot products (AVX2 where the CPU has it, portable Rust otherwise), output
//! rows are split across rayon's current thread pool, and buffers live in a caller-owned
//! [`MatmulScratch`].
//!
//! Exactness: integer sums are exact; the only differences from "dequantize, then f32 matmul" are the
//! rounding of the activations to 8 bits (at most `d/2 = max|x_block| / 254` per element) and f32
//! summation order. The tests bound the first per element.

#[cfg(target_arch = "x86_64")]
mod amx;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod dequant;
mod format;
mod interleave;
pub(crate) mod interleave32;
pub mod iq1;
pub mod iq2;
pub mod iq3;
pub mod iq4_nl;
pub mod iq4_xs;
pub mod iq_codes;
mod iq_grid;
mod k_quantize;
mod linear;
mod matmul;
mod matrix;
pub mod mxfp4;
pub mod q2_k;
pub mod q3_k;
mod quantize;
pub(crate) mod recode;
mod scalar;
mod team;
pub mod ternary;
#[cfg(target_arch = "x86_64")]
mod x16;
#[cfg(target_arch = "x86_64")]
mod x16_avx2;

pub use dequant::dequantize_into;
pub use format::QuantFormat;
pub use linear::{HostSwiGlu, QuantLinear, QuantPath, SwiGluBuffers, WeightQuant, swiglu_block};
pub use matmul::{
    Isa, MAX_MANY, MatmulScratch, matmul, matmul_many, matmul_many_with, matmul_with, without_tiles,
};
pub(crate) use matrix::release_pages;
pub use matrix::{QuantMatrix, kernel_cols_ok, kernel_layout, set_interleaving};
pub use quantize::{ActBlocks, quantize_block, quantize_into};
pub use team::Team;
pub(crate) use team::{current_threads as team_threads, for_each as team_for_each};

#[cfg(test)]
mod tests;
