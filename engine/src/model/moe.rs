//! The sparse mixture-of-experts FFN of Qwen3-MoE and Qwen2-MoE (Shazeer et al. 2017, "Outrageously
//! Large Neural Networks"; Fedus et al. 2021, "Switch Transformers"), with transformers' exact
//! order of operations (`Qwen3MoeSparseMoeBlock` / `Qwen2MoeSparseMoeBlock`):
//!
//! 1. router logits `x·Gᵀ` (`mlp.gate.weight`, `[n_experts, hidden]`);
//! 2. softmax in f32 over **all** experts;
//! 3. top-k of those probabilities (descending);
//! 4. when `norm_topk_prob`, the k weights are divided by their sum;
//! 5. each chosen expert (a SwiGLU MLP, `mlp.experts.E.{gate,up,down}_proj`) runs on the rows routed
//!    to it, its output is scaled by the routing weight and added back to those rows, experts in
//!    increasing index order;
//! 6. Qwen2-MoE / Qwen3-Next add a shared expert scaled by `sigmoid(shared_expert_gate(x))`.
//!
//! Dispatch is sparse: routing is decided on the host, and only the experts some token chose are
//! run, on exactly the rows routed to them (gather with `select`, scatter-add with
//! `select_assign`). The number of distinct experts a forward touched is returned with the output —
//! it is the quantity behind MoE speculation costs (MoESD): verifying k tokens with top-K of N
//! experts touches about `N·(1 − (1 − K/N)^k)` experts under uniform routing. [`ExpertTally`]
//! aggregates those counts by forward batch size for `generate --json` and the run records.

use std::collections::BTreeMap;

use burn::tensor::{
    IndexingUpdateOp, Int, Tensor, TensorData, activation::sigmoid, backend::Backend,
};

use crate::config::ModelConfig;
use crate::error::{EngineError, Result};
use crate::model::{Linear, Loader, Mlp};

/// Whether decoder layer `layer` has a sparse MoE FFN (transformers' rule): the model has experts,
/// the layer is not in `mlp_only_layers`, and `(layer + 1) % decoder_sparse_step == 0`.
pub fn is_sparse_layer(config: &ModelConfig, layer: usize) -> bool {
    config.num_experts > 0
        && config.decoder_sparse_step > 0
        && !config.mlp_only_layers.contains(&layer)
        && (layer + 1).is_multiple_of(config.decoder_sparse_step)
}

/// One token's routing decision: `(expert, weight)` pairs in descending router probability.
pub type TokenRoute = Vec<(usize, f32)>;

/// Route every token from its router logits (`tokens × n_experts`, row-major): softmax over all
/// experts in f32, top-`top_k` by probability (ties go to the lower expert index), then optional
/// renormalisation of the chosen weights to sum to one.
pub fn route(
    logits: &[f32],
    n_experts: usize,
    top_k: usize,
    norm_topk_prob: bool,
) -> Vec<TokenRoute> {
    logits
        .chunks_exact(n_experts)
        .map(|row| {
            // 1. softmax over all experts (max-subtracted, as torch does)
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exp: Vec<f32> = row.iter().map(|&l| (l - max).exp()).collect();
            let sum: f32 = exp.iter().sum();
            let probs: Vec<f32> = exp.iter().map(|&e| e / sum).collect();
            // 2. top-k, descending; a stable sort keeps the lower index first on ties
            let mut order: Vec<usize> = (0..n_experts).collect();
            order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
            let mut chosen: TokenRoute = order.iter().take(top_k).map(|&e| (e, probs[e])).collect();
            // 3. optional renormalisation of the k weights
            if norm_topk_prob {
                let total: f32 = chosen.iter().map(|c| c.1).sum();
                chosen.iter_mut().for_each(|c| c.1 /= total);
            }
            chosen
        })
        .collect()
}

/// The rows routed to one expert and their weights, in increasing row order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExpertBatch {
    pub rows: Vec<usize>,
    pub weights: Vec<f32>,
}

/// Invert per-token routes into per-expert batches (`n_experts` entries; unused experts are empty).
pub fn dispatch(routes: &[TokenRoute], n_experts: usize) -> Vec<ExpertBatch> {
    let mut batches = vec![ExpertBatch::default(); n_experts];
    for (row, route) in routes.iter().enumerate() {
        for &(expert, weight) in route {
            batches[expert].rows.push(row);
            batches[expert].weights.push(weight);
        }
    }
    batches
}

/// The shared expert of Qwen2-MoE / Qwen3-Next and its scalar sigmoid gate.
#[derive(Debug, Clone)]
pub struct SharedExpert<B: Backend> {
    pub mlp: Mlp<B>,
    /// `hidden → 1`
    pub gate: Linear<B>,
}

/// A sparse mixture-of-experts FFN.
#[derive(Debug, Clone)]
pub struct SparseMoe<B: Backend> {
    /// Router `hidden → n_experts` (`mlp.gate`).
    pub router: Linear<B>,
    pub experts: Vec<Mlp<B>>,
    pub shared: Option<SharedExpert<B>>,
    pub top_k: usize,
    pub norm_topk_prob: bool,
}

/// The output of one MoE forward.
#[derive(Debug, Clone)]
pub struct MoeOutput<B: Backend> {
    /// `[tokens, hidden]`
    pub hidden: Tensor<B, 2>,
    /// Distinct experts run by this forward.
    pub experts_touched: u32,
}

impl<B: Backend> SparseMoe<B> {
    /// Load `{prefix}.gate`, `{prefix}.experts.{0..N}.{gate,up,down}_proj` and, when the config
    /// sizes one (`shared_expert_intermediate_size`), the shared expert with
    /// `{prefix}.shared_expert_gate`. Missing or mis-shaped tensors are errors naming them.
    pub fn load(loader: &Loader<'_, B>, prefix: &str, config: &ModelConfig) -> Result<Self> {
        let (h, n) = (config.hidden_size, config.num_experts);
        let top_k = config.num_experts_per_tok;
        if top_k == 0 || top_k > n {
            return Err(EngineError::Invalid(format!(
                "config: num_experts_per_tok {top_k} must be in 1..={n} (num_experts)"
            )));
        }
        if config.moe_intermediate_size == 0 {
            return Err(EngineError::Invalid(
                "config: moe_intermediate_size is missing or zero for a mixture-of-experts model"
                    .into(),
            ));
        }
        let router = loader.linear(&format!("{prefix}.gate"), h, n, false)?;
        let experts = (0..n)
            .map(|e| {
                Mlp::load(
                    loader,
                    &format!("{prefix}.experts.{e}"),
                    h,
                    config.moe_intermediate_size,
                    false,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let shared_size = config.shared_expert_intermediate_size;
        let shared_name = format!("{prefix}.shared_expert.gate_proj.weight");
        let shared = if shared_size > 0 {
            Some(SharedExpert {
                mlp: Mlp::load(
                    loader,
                    &format!("{prefix}.shared_expert"),
                    h,
                    shared_size,
                    false,
                )?,
                gate: loader.linear(&format!("{prefix}.shared_expert_gate"), h, 1, false)?,
            })
        } else if loader.source.contains(&shared_name) {
            return Err(EngineError::Invalid(format!(
                "tensor `{shared_name}` is present but config.json has no shared_expert_intermediate_size"
            )));
        } else {
            None
        };
        Ok(Self {
            router,
            experts,
            shared,
            top_k,
            norm_topk_prob: config.norm_topk_prob,
        })
    }

    /// Number of routed experts.
    pub fn n_experts(&self) -> usize {
        self.experts.len()
    }

    /// # Shapes
    /// - `x`: `[tokens, hidden]` → `[tokens, hidden]`
    pub fn forward(&self, x: Tensor<B, 2>) -> MoeOutput<B> {
        let [n, h] = x.dims();
        let device = x.device();
        let dtype = x.dtype();
        // 1. router logits on the host: [n, n_experts]
        let logits = to_host_f32(self.router.forward(x.clone()));
        // 2–4. softmax, top-k, renormalisation; then per-expert batches
        let routes = route(&logits, self.n_experts(), self.top_k, self.norm_topk_prob);
        let batches = dispatch(&routes, self.n_experts());

        // 5. run only the experts that were chosen, on their rows: [n, h]
        let mut out = Tensor::<B, 2>::zeros([n, h], (&device, dtype));
        let mut touched = 0u32;
        for (expert, batch) in self.experts.iter().zip(&batches) {
            let m = batch.rows.len();
            if m == 0 {
                continue;
            }
            touched += 1;
            let weights = Tensor::<B, 2>::from_data(
                TensorData::new(batch.weights.clone(), [m, 1]),
                (&device, dtype),
            );
            if m == n {
                // Every row routed here (rows are 0..n in order): no gather or scatter needed.
                out = out + expert.forward(x.clone()) * weights;
            } else {
                let rows: Vec<i32> = batch.rows.iter().map(|&r| r as i32).collect();
                let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(rows, [m]), &device);
                // [m, h] gathered → expert → weighted → scattered back with addition
                let y = expert.forward(x.clone().select(0, idx.clone())) * weights;
                out = out.select_assign(0, idx, y, IndexingUpdateOp::Add);
            }
        }
        // 6. shared expert, scaled by its sigmoid gate: [n, h] · [n, 1]
        if let Some(shared) = &self.shared {
            let gate = sigmoid(shared.gate.forward(x.clone()));
            out = out + shared.mlp.forward(x) * gate;
        }
        MoeOutput {
            hidden: out,
            experts_touched: touched,
        }
    }

    /// Bytes of weights held: router, every expert and the shared expert with its gate.
    pub fn weight_bytes(&self) -> usize {
        let experts: usize = self.experts.iter().map(Mlp::weight_bytes).sum();
        let shared = self
            .shared
            .as_ref()
            .map_or(0, |s| s.mlp.weight_bytes() + s.gate.weight_bytes());
        self.router.weight_bytes() + experts + shared
    }

    /// Bytes of weights one decoded token reads: router, `top_k` experts and the shared expert.
    pub fn weight_bytes_per_token(&self) -> usize {
        let expert = self.experts.first().map_or(0, Mlp::weight_bytes);
        let shared = self
            .shared
            .as_ref()
            .map_or(0, |s| s.mlp.weight_bytes() + s.gate.weight_bytes());
        self.router.weight_bytes() + self.top_k * expert + shared
    }
}

/// Read a device tensor back as f32 (converting from the device dtype).
fn to_host_f32<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().iter::<f32>().collect()
}

/// Distinct experts touched per MoE layer, aggregated by forward batch size (tokens per forward).
/// Mirrors `ExpertStats` of the run records (reports/src/schema.rs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExpertTally {
    pub n_experts: u32,
    pub n_experts_per_token: u32,
    /// batch tokens → (forwards, Σ experts touched over forwards and layers, layer samples)
    by_batch: BTreeMap<u32, (u64, u64, u64)>,
}

/// The serialisable form of an [`ExpertTally`], field for field the run records' `ExpertStats`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ExpertSummary {
    pub n_experts: u32,
    pub n_experts_per_token: u32,
    pub by_batch_size: Vec<ExpertsAtBatch>,
}

/// Mean distinct experts touched per MoE layer for forwards over `batch_tokens` tokens.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ExpertsAtBatch {
    pub batch_tokens: u32,
    pub forwards: u64,
    pub mean_experts_touched: f64,
}

impl ExpertTally {
    /// A tally for a model with `n_experts` routed experts, `n_experts_per_token` chosen per token.
    pub fn new(n_experts: usize, n_experts_per_token: usize) -> Self {
        Self {
            n_experts: n_experts as u32,
            n_experts_per_token: n_experts_per_token as u32,
            by_batch: BTreeMap::new(),
        }
    }

    /// The tally for `config`, or `None` for a dense model.
    pub fn for_config(config: &ModelConfig) -> Option<Self> {
        (config.num_experts > 0).then(|| Self::new(config.num_experts, config.num_experts_per_tok))
    }

    /// Record one forward over `batch_tokens` tokens that touched `per_layer[i]` experts in MoE
    /// layer `i`. A forward without MoE layers records nothing.
    pub fn record(&mut self, batch_tokens: usize, per_layer: &[u32]) {
        if per_layer.is_empty() {
            return;
        }
        let entry = self.by_batch.entry(batch_tokens as u32).or_default();
        entry.0 += 1;
        entry.1 += per_layer.iter().map(|&t| t as u64).sum::<u64>();
        entry.2 += per_layer.len() as u64;
    }

    /// Per batch size: forwards seen and mean experts touched per MoE layer, by batch size.
    pub fn by_batch_size(&self) -> Vec<ExpertsAtBatch> {
        self.by_batch
            .iter()
            .map(
                |(&batch_tokens, &(forwards, sum, samples))| ExpertsAtBatch {
                    batch_tokens,
                    forwards,
                    mean_experts_touched: sum as f64 / samples.max(1) as f64,
                },
            )
            .collect()
    }

    /// The tally as `ExpertStats`-shaped data for JSON output.
    pub fn summary(&self) -> ExpertSummary {
        ExpertSummary {
            n_experts: self.n_experts,
            n_experts_per_token: self.n_experts_per_token,
            by_batch_size: self.by_batch_size(),
        }
    }

    /// Expected distinct experts for `k` tokens under uniform independent routing:
    /// `N·(1 − (1 − K/N)^k)` (the MoESD estimate), for comparison with the measured mean.
    pub fn uniform_expectation(&self, k: usize) -> f64 {
        let n = self.n_experts as f64;
        if n == 0.0 {
            return 0.0;
        }
        n * (1.0 - (1.0 - self.n_experts_per_token as f64 / n).powi(k as i32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Linear;
    use burn::backend::Flex;

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn route_is_softmax_then_topk_then_optional_renormalisation() {
        // logits ln(1), ln(2), ln(3), ln(4): probabilities 0.1, 0.2, 0.3, 0.4
        let logits: Vec<f32> = [1.0f32, 2.0, 3.0, 4.0].iter().map(|v| v.ln()).collect();
        let raw = route(&logits, 4, 2, false);
        assert_eq!(raw[0].iter().map(|r| r.0).collect::<Vec<_>>(), vec![3, 2]);
        assert!(
            close(raw[0][0].1, 0.4) && close(raw[0][1].1, 0.3),
            "{raw:?}"
        );
        let norm = route(&logits, 4, 2, true);
        assert!(
            close(norm[0][0].1, 0.4 / 0.7) && close(norm[0][1].1, 0.3 / 0.7),
            "{norm:?}"
        );
        // two tokens, ties go to the lower index
        let two = route(&[0.0, 0.0, 0.0, 5.0, 1.0, 1.0], 3, 1, true);
        assert_eq!(two[0], vec![(0, 1.0)]);
        assert_eq!(two[1][0].0, 0);
    }

    #[test]
    fn dispatch_groups_rows_per_expert_in_row_order() {
        let routes = vec![
            vec![(2, 0.6), (0, 0.4)],
            vec![(0, 0.9), (1, 0.1)],
            vec![(2, 1.0)],
        ];
        let b = dispatch(&routes, 4);
        assert_eq!(
            b[0],
            ExpertBatch {
                rows: vec![0, 1],
                weights: vec![0.4, 0.9]
            }
        );
        assert_eq!(b[1].rows, vec![1]);
        assert_eq!(b[2].rows, vec![0, 2]);
        assert!(b[3].rows.is_empty());
    }

    #[test]
    fn sparse_layer_rule_matches_transformers() {
        let v = serde_json::json!({"architectures": ["Qwen3MoeForCausalLM"], "hidden_size": 8,
            "num_hidden_layers": 6, "num_attention_heads": 2, "vocab_size": 8, "num_experts": 4,
            "num_experts_per_tok": 2, "moe_intermediate_size": 4, "decoder_sparse_step": 2,
            "mlp_only_layers": [3]});
        let c = ModelConfig::from_value(v, std::path::Path::new("config.json")).unwrap();
        let sparse: Vec<usize> = (0..6).filter(|&l| is_sparse_layer(&c, l)).collect();
        assert_eq!(sparse, vec![1, 5]);
    }

    /// A dense reference for the sparse forward: every token × every chosen expert, on the host.
    #[test]
    fn sparse_forward_equals_a_per_token_reference() {
        let dev = Default::default();
        let (h, inter, n_exp, n) = (4usize, 3usize, 4usize, 5usize);
        let mut seed = 7u32;
        let mut rnd = |len: usize| -> Vec<f32> {
            (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
                })
                .collect()
        };
        let t2 = |v: Vec<f32>, r: usize, c: usize| {
            Tensor::<Flex, 2>::from_data(TensorData::new(v, [r, c]), &dev)
        };
        let router_w = rnd(n_exp * h);
        let mut host_experts = Vec::new();
        let mut experts = Vec::new();
        for _ in 0..n_exp {
            let (g, u, d) = (rnd(inter * h), rnd(inter * h), rnd(h * inter));
            experts.push(Mlp {
                gate_proj: Linear::new(t2(g.clone(), inter, h), None),
                up_proj: Linear::new(t2(u.clone(), inter, h), None),
                down_proj: Linear::new(t2(d.clone(), h, inter), None),
                host: Default::default(),
            });
            host_experts.push((g, u, d));
        }
        let moe = SparseMoe {
            router: Linear::new(t2(router_w.clone(), n_exp, h), None),
            experts,
            shared: None,
            top_k: 2,
            norm_topk_prob: true,
        };
        let x = rnd(n * h);
        let out = moe.forward(t2(x.clone(), n, h));
        let got = out.hidden.into_data().into_vec::<f32>().unwrap();

        let matvec = |w: &[f32], v: &[f32], rows: usize, cols: usize| -> Vec<f32> {
            (0..rows)
                .map(|r| (0..cols).map(|c| w[r * cols + c] * v[c]).sum())
                .collect()
        };
        let mut used = std::collections::BTreeSet::new();
        for t in 0..n {
            let xt = &x[t * h..(t + 1) * h];
            let logits = matvec(&router_w, xt, n_exp, h);
            let mut want = vec![0.0f32; h];
            for (e, w) in &route(&logits, n_exp, 2, true)[0] {
                used.insert(*e);
                let (g, u, d) = &host_experts[*e];
                let (gv, uv) = (matvec(g, xt, inter, h), matvec(u, xt, inter, h));
                let act: Vec<f32> = gv
                    .iter()
                    .zip(&uv)
                    .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                    .collect();
                for (o, y) in want.iter_mut().zip(matvec(d, &act, h, inter)) {
                    *o += w * y;
                }
            }
            for i in 0..h {
                assert!((got[t * h + i] - want[i]).abs() < 1e-5, "token {t} dim {i}");
            }
        }
        assert_eq!(out.experts_touched as usize, used.len());
    }

    #[test]
    fn tally_means_by_batch_size() {
        let mut t = ExpertTally::new(8, 2);
        t.record(1, &[2, 2]);
        t.record(1, &[2, 2]);
        t.record(4, &[5, 7]);
        t.record(3, &[]);
        let rows = t.by_batch_size();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (
                rows[0].batch_tokens,
                rows[0].forwards,
                rows[0].mean_experts_touched
            ),
            (1, 2, 2.0)
        );
        assert_eq!(
            (
                rows[1].batch_tokens,
                rows[1].forwards,
                rows[1].mean_experts_touched
            ),
            (4, 1, 6.0)
        );
        assert!((t.uniform_expectation(1) - 2.0).abs() < 1e-12);
        assert!((t.uniform_expectation(2) - 8.0 * (1.0 - 0.75f64 * 0.75)).abs() < 1e-12);
    }
}
