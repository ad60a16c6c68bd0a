//! The feed-forward block: SwiGLU (Shazeer 2020, "GLU Variants Improve Transformer"),
//! `down(silu(gate(x)) ⊙ up(x))`, plus [`Ffn`], the closed enum the decoder layer dispatches on
//! (dense here; the sparse mixture-of-experts variant lives in `model::moe`).

use burn::tensor::{Tensor, activation::silu, backend::Backend};

use crate::error::Result;
use crate::model::moe::SparseMoe;
use crate::model::{Linear, Loader, RmsNorm};

/// SwiGLU MLP with gate, up and down projections.
#[derive(Debug, Clone)]
pub struct Mlp<B: Backend> {
    pub gate_proj: Linear<B>,
    pub up_proj: Linear<B>,
    pub down_proj: Linear<B>,
    /// Buffers of the host path taken when all three projections are on the quantized kernels.
    pub host: std::sync::Arc<crate::quant::HostSwiGlu>,
}

impl<B: Backend> Mlp<B> {
    /// Load `{prefix}.{gate,up,down}_proj`.
    pub fn load(
        loader: &Loader<'_, B>,
        prefix: &str,
        hidden: usize,
        intermediate: usize,
        bias: bool,
    ) -> Result<Self> {
        Ok(Self {
            gate_proj: loader.linear(&format!("{prefix}.gate_proj"), hidden, intermediate, bias)?,
            up_proj: loader.linear(&format!("{prefix}.up_proj"), hidden, intermediate, bias)?,
            down_proj: loader.linear(&format!("{prefix}.down_proj"), intermediate, hidden, bias)?,
            host: Default::default(),
        })
    }

    /// The pre-norm sub-block `h + self(norm(h))` — on the host in one pass when all three
    /// projections are on the quantized kernels, else with backend ops.
    ///
    /// # Shapes
    /// - `h`: `[tokens, hidden]` → `[tokens, hidden]`
    pub fn forward_residual(&self, h: Tensor<B, 2>, norm: &RmsNorm<B>) -> Tensor<B, 2> {
        let (g, u, d) = (&self.gate_proj, &self.up_proj, &self.down_proj);
        if let (Some(gq), Some(uq), Some(dq)) = (&g.quant, &u.quant, &d.quant)
            && g.bias.is_none()
            && u.bias.is_none()
            && d.bias.is_none()
        {
            let apply = |x: &[f32], out: &mut [f32]| norm.apply_host(x, out);
            return self.host.forward_residual(h, &apply, gq, uq, dq);
        }
        h.clone() + self.forward(norm.forward(h))
    }

    /// # Shapes
    /// - `x`: `[tokens, hidden]` → `[tokens, hidden]`
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let (g, u, d) = (&self.gate_proj, &self.up_proj, &self.down_proj);
        if let (Some(gq), Some(uq), Some(dq)) = (&g.quant, &u.quant, &d.quant)
            && g.bias.is_none()
            && u.bias.is_none()
            && d.bias.is_none()
        {
            return self.host.forward(x, gq, uq, dq);
        }
        // 1. [tokens, intermediate] each
        let gate = silu(self.gate_proj.forward(x.clone()));
        let up = self.up_proj.forward(x);
        // 2. [tokens, hidden]
        self.down_proj.forward(gate * up)
    }

    /// Bytes of weights read per token.
    pub fn weight_bytes(&self) -> usize {
        self.gate_proj.weight_bytes() + self.up_proj.weight_bytes() + self.down_proj.weight_bytes()
    }
}

/// The FFN of one decoder layer. A closed enum (no `dyn`): new kinds add a variant.
#[derive(Debug, Clone)]
pub enum Ffn<B: Backend> {
    /// A dense SwiGLU MLP.
    Dense(Mlp<B>),
    /// A sparse mixture of experts (`model::moe`).
    Sparse(SparseMoe<B>),
}

impl<B: Backend> Ffn<B> {
    /// A sparse FFN pushes the number of distinct experts it ran onto `experts_touched`.
    ///
    /// # Shapes
    /// - `x`: `[tokens, hidden]` → `[tokens, hidden]`
    pub fn forward(&self, x: Tensor<B, 2>, experts_touched: &mut Vec<u32>) -> Tensor<B, 2> {
        match self {
            Ffn::Dense(mlp) => mlp.forward(x),
            Ffn::Sparse(moe) => {
                let out = moe.forward(x);
                experts_touched.push(out.experts_touched);
                out.hidden
            }
        }
    }

    /// Bytes of weights held (every expert of a sparse FFN).
    pub fn weight_bytes(&self) -> usize {
        match self {
            Ffn::Dense(mlp) => mlp.weight_bytes(),
            Ffn::Sparse(moe) => moe.weight_bytes(),
        }
    }

    /// Bytes of weights read per decoded token (for the roofline).
    pub fn weight_bytes_per_token(&self) -> usize {
        match self {
            Ffn::Dense(mlp) => mlp.weight_bytes(),
            Ffn::Sparse(moe) => moe.weight_bytes_per_token(),
        }
    }
}
