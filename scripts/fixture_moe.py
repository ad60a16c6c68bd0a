"""Mixture-of-experts fixtures (issue #4): qwen3moe-tiny, qwen3moe-nonorm, qwen3moe-4e and
qwen2moe-tiny.

Qwen3-MoE routing (transformers' Qwen3MoeTopKRouter): softmax over all experts' router logits,
top-k, then renormalise the k weights when `norm_topk_prob`; a layer is sparse when it is not in
`mlp_only_layers` and (layer + 1) % decoder_sparse_step == 0. Qwen2-MoE adds a shared expert whose
output is scaled by sigmoid(shared_expert_gate(x)). transformers 5 keeps the experts fused in
memory but save_pretrained writes the hub layout (mlp.experts.E.{gate,up,down}_proj.weight).

Because a top-k choice between two nearly equal router probabilities could fairly go either way
in another engine, every fixture is checked for a router margin (ROUTER_MARGIN) on the logits
input and on the greedy sequence; a seed that fails is replaced by the next one.
"""

from __future__ import annotations

from pathlib import Path

import torch
from fixture_common import check_reload, randomise_, save_checkpoint, standard_expected, write_json
from transformers import Qwen2MoeConfig, Qwen2MoeForCausalLM, Qwen3MoeConfig, Qwen3MoeForCausalLM

ROUTER_MARGIN = 1e-4
MOE_TINY = dict(
    hidden_size=64,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    moe_intermediate_size=32,
    num_experts_per_tok=2,
    initializer_range=0.2,
    rms_norm_eps=1e-6,
    max_position_embeddings=512,
    tie_word_embeddings=False,
)


class RouterTrace:
    """Records, per sparse layer, the router's top-k expert ids and its k-th vs (k+1)-th margin."""

    def __init__(self, model):
        self.layers = [i for i, layer in enumerate(model.model.layers) if hasattr(layer.mlp, "gate")]
        self.topk: dict[int, list[list[int]]] = {}
        self.min_margin = float("inf")
        self.handles = [
            model.model.layers[i].mlp.gate.register_forward_hook(self._hook(i, model.config.num_experts_per_tok))
            for i in self.layers
        ]

    def _hook(self, layer: int, k: int):
        def hook(module, inputs, output):
            probs = torch.softmax(output[0].to(torch.float32), dim=-1)  # [tokens, experts]
            sorted_p = probs.sort(dim=-1, descending=True).values
            self.min_margin = min(self.min_margin, float((sorted_p[:, k - 1] - sorted_p[:, k]).min()))
            self.topk[layer] = output[2].tolist()

        return hook

    def close(self) -> None:
        for h in self.handles:
            h.remove()


@torch.no_grad()
def router_check(model, expected: dict) -> list[list[list[int]]]:
    """Returns router top-k ids for expected's token_ids; raises on a near-tie anywhere."""
    trace = RouterTrace(model)
    g = expected["greedy"]
    model(torch.tensor([g["prompt_ids"] + g["output_ids"]]))
    model(torch.tensor([expected["token_ids"]]))
    trace.close()
    if trace.min_margin < ROUTER_MARGIN:
        raise RuntimeError(f"router near-tie ({trace.min_margin:.2e})")
    return [trace.topk[i] for i in trace.layers]


def build_and_save(cls, config, tok, out: Path, seeds: range, notes: str, with_topk: bool = False) -> None:
    for seed in seeds:
        torch.manual_seed(seed)
        model = cls(config)
        randomise_(model, seed, config.initializer_range)
        model.eval()
        try:
            exp = standard_expected(model, tok, notes)
            topk = router_check(model, exp)
        except RuntimeError as err:
            print(f"{out.name} seed {seed}: {err}; next seed")
            continue
        if with_topk:
            layers = [i for i, layer in enumerate(model.model.layers) if hasattr(layer.mlp, "gate")]
            exp["router_topk_layers"] = layers
            exp["router_topk"] = topk
            exp["experts_touched"] = [len({e for pos in per_layer for e in pos}) for per_layer in topk]
        save_checkpoint(model, tok, out)
        write_json(out / "expected.json", exp)
        check_reload(out, exp)
        return
    raise RuntimeError(f"{out}: no seed in {seeds} is free of near-ties")


def qwen3moe(tok, **over) -> Qwen3MoeConfig:
    kw = dict(MOE_TINY, vocab_size=tok.get_vocab_size(), eos_token_id=tok.token_to_id("<|endoftext|>"))
    kw["rope_parameters"] = {"rope_type": "default", "rope_theta": 1000000.0}
    kw.update(over)
    return Qwen3MoeConfig(**kw)


def gen_qwen3moe_tiny(tok, out: Path) -> None:
    cfg = qwen3moe(
        tok, num_hidden_layers=3, num_experts=8, norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[1]
    )
    build_and_save(
        Qwen3MoeForCausalLM,
        cfg,
        tok,
        out,
        range(31, 41),
        "Qwen3MoeForCausalLM, 3 layers: 0 and 2 sparse, 1 dense (mlp_only_layers [1], "
        "decoder_sparse_step 1); 8 experts, top-2, norm_topk_prob true, moe_intermediate_size 32, "
        "dense intermediate_size 128, head_dim 16, untied, f32.",
    )


def gen_qwen3moe_nonorm(tok, out: Path) -> None:
    cfg = qwen3moe(
        tok, num_hidden_layers=3, num_experts=8, norm_topk_prob=False, decoder_sparse_step=2, mlp_only_layers=[]
    )
    build_and_save(
        Qwen3MoeForCausalLM,
        cfg,
        tok,
        out,
        range(41, 51),
        "Qwen3MoeForCausalLM, 3 layers: only layer 1 sparse (decoder_sparse_step 2, no "
        "mlp_only_layers); 8 experts, top-2, norm_topk_prob FALSE (weights are the raw softmax "
        "probabilities of the chosen experts), f32.",
    )


def gen_qwen3moe_4e(tok, out: Path) -> None:
    cfg = qwen3moe(
        tok, num_hidden_layers=2, num_experts=4, norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[]
    )
    build_and_save(
        Qwen3MoeForCausalLM,
        cfg,
        tok,
        out,
        range(51, 61),
        "Qwen3MoeForCausalLM, 2 sparse layers, 4 experts, top-2, norm_topk_prob true, f32. "
        "router_topk[i][p] = expert ids (descending router probability) chosen at position p of "
        "token_ids in sparse layer router_topk_layers[i], for one forward over all of token_ids; "
        "experts_touched[i] = number of distinct experts in router_topk[i].",
        with_topk=True,
    )


def gen_qwen2moe_tiny(tok, out: Path) -> None:
    kw = dict(MOE_TINY, vocab_size=tok.get_vocab_size(), eos_token_id=tok.token_to_id("<|endoftext|>"))
    kw["rope_parameters"] = {"rope_type": "default", "rope_theta": 1000000.0}
    kw.update(
        num_hidden_layers=2,
        num_experts=8,
        norm_topk_prob=False,
        decoder_sparse_step=1,
        mlp_only_layers=[],
        shared_expert_intermediate_size=64,
        qkv_bias=True,
        use_sliding_window=False,
    )
    build_and_save(
        Qwen2MoeForCausalLM,
        Qwen2MoeConfig(**kw),
        tok,
        out,
        range(61, 71),
        "Qwen2MoeForCausalLM, 2 sparse layers, 8 experts, top-2, norm_topk_prob false, shared "
        "expert (intermediate 64) scaled by sigmoid(shared_expert_gate), q/k/v biases, f32.",
    )
