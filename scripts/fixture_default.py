"""The default demo model (`default/`) and its draft model (`default-draft/`).

The README's main job sweeps speculative-decoding modes on these without any download, so they
must make every mode do something measurable:
- `default`: Qwen3ForCausalLM (hidden 192, 4 layers, GQA 6/2, ffn 512, bf16, tied embeddings)
  with a Qwen3.5-style MTP head. Its layers after the first have their residual writers
  (o_proj, down_proj) scaled down by LATE_LAYER_SCALE, so the model is close to its first layer.
- `default-draft`: the same embedding, first layer, final norm and (tied) head: a draft
  whose greedy predictions often agree with the target's, as a distilled draft would.
- The MTP head starts from a copy of the target's first layer reading the embedding of t_{p+1}
  (init_mtp_from_target), so it behaves like the one-layer draft run one position ahead and its
  drafts get accepted. (Briefly training it on the target's samples was tried and made agreement
  worse: a few thousand samples cannot teach a random model's next-token map.)
Agreement figures are printed and stored in expected.json "notes".
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from fixture_common import (
    add_tensors,
    check_reload,
    edit_config,
    randomise_,
    round_weights_,
    save_checkpoint,
    standard_expected,
    write_json,
)
from fixture_dense import qwen3_config
from fixture_mtp import make_mtp, mtp_expected
from transformers import Qwen3ForCausalLM

LATE_LAYER_SCALE = 0.1
N_DRAFT_LAYERS = 1
EVAL_PROMPTS = [
    "def fibonacci(n):",
    "The quick brown fox",
    "Speculative decoding drafts several tokens",
    "class Stack:\n    def push(self, item):",
    "for i in range(10):",
    "It was the best of times,",
    "import json\n\nwith open('data.json') as f:",
    "A language model predicts the next token",
]


def default_config(vocab_size: int, eos_id: int, n_layers: int):
    return qwen3_config(
        vocab_size,
        eos_id,
        hidden_size=192,
        num_hidden_layers=n_layers,
        num_attention_heads=6,
        num_key_value_heads=2,
        head_dim=32,
        intermediate_size=512,
        max_position_embeddings=4096,
    )


def build_target(vocab_size: int, eos_id: int, seed: int) -> Qwen3ForCausalLM:
    cfg = default_config(vocab_size, eos_id, 4)
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(cfg)
    randomise_(model, seed, cfg.initializer_range)
    with torch.no_grad():
        for layer in model.model.layers[N_DRAFT_LAYERS:]:
            layer.self_attn.o_proj.weight.mul_(LATE_LAYER_SCALE)
            layer.mlp.down_proj.weight.mul_(LATE_LAYER_SCALE)
    round_weights_(model, torch.bfloat16)
    return model.eval()


def build_draft(target: Qwen3ForCausalLM) -> Qwen3ForCausalLM:
    cfg = copy.deepcopy(target.config)
    cfg.num_hidden_layers = N_DRAFT_LAYERS
    cfg.layer_types = cfg.layer_types[:N_DRAFT_LAYERS]
    draft = Qwen3ForCausalLM(cfg)
    state = {k: v for k, v in target.state_dict().items() if k in draft.state_dict()}
    draft.load_state_dict(state, strict=True)
    draft.tie_weights()
    return draft.eval()


@torch.no_grad()
def greedy_ids(model, prompt: list[int], n_new: int) -> list[int]:
    ids = list(prompt)
    for _ in range(n_new):
        ids.append(int(model(torch.tensor([ids])).logits[0, -1].argmax()))
    return ids


def init_mtp_from_target(target, mtp) -> None:
    """Starts the MTP head as a copy of the target's first layer reading the embedding of t_{p+1}
    (fc maps RMSNorm_emb(e) back to about e; the hidden-state half is kept small but random), so
    that it behaves like a one-layer model run one position ahead."""
    d = target.config.hidden_size
    with torch.no_grad():
        mtp.layers[0].load_state_dict(target.model.layers[0].state_dict())
        mtp.norm.weight.copy_(target.model.norm.weight)
        emb_rms = target.model.embed_tokens.weight.pow(2).mean().sqrt()
        mtp.fc.weight[:, :d] = torch.diag(emb_rms / mtp.pre_fc_norm_embedding.weight)
        mtp.fc.weight[:, d:].mul_(0.01)


@torch.no_grad()
def agreement(target, draft, mtp, tok) -> tuple[float, float]:
    """Teacher-forced greedy agreement on the target's greedy continuations of EVAL_PROMPTS:
    (draft argmax == target argmax, MTP argmax for t_{p+2} == target argmax at p+1)."""
    n_draft = n_mtp = hits_draft = hits_mtp = 0
    for prompt in EVAL_PROMPTS:
        p_ids = tok.encode(prompt, add_special_tokens=False).ids
        ids = torch.tensor(greedy_ids(target, p_ids, 64))
        t_arg = target(ids[None]).logits[0].argmax(-1)
        d_arg = draft(ids[None]).logits[0].argmax(-1)
        m_arg = mtp(target, ids).argmax(-1)
        start = len(p_ids) - 1
        hits_draft += int((t_arg[start:] == d_arg[start:]).sum())
        n_draft += len(ids) - start
        hits_mtp += int((m_arg[start:] == t_arg[start + 1 :]).sum())
        n_mtp += len(ids) - 1 - start
    return hits_draft / n_draft, hits_mtp / n_mtp


def gen_default(tok, out_root: Path) -> None:
    vocab, eos = tok.get_vocab_size(), tok.token_to_id("<|endoftext|>")
    target = None
    for seed in range(21, 121, 10):  # first seed whose greedy reference has no near-tie
        target = build_target(vocab, eos, seed=seed)
        try:
            standard_expected(target, tok, "")
            break
        except RuntimeError as err:
            print(f"seed {seed}: {err}")
    draft = build_draft(target)
    mtp = make_mtp(target.config, seed=22)
    init_mtp_from_target(target, mtp)
    round_weights_(mtp, torch.bfloat16)
    draft_agree, mtp_agree = agreement(target, draft, mtp, tok)
    facts = (
        f"Teacher-forced greedy agreement on the target's greedy text of {len(EVAL_PROMPTS)} prompts "
        f"x 64 tokens: draft {draft_agree:.3f}, MTP head {mtp_agree:.3f}."
    )
    print(facts)

    out = out_root / "default"
    exp = mtp_expected(
        target,
        mtp,
        tok,
        f"Default demo model: Qwen3ForCausalLM, hidden 192, 4 layers (layers 1-3 o_proj/down_proj "
        f"scaled by {LATE_LAYER_SCALE}), GQA 6/2, head_dim 32, ffn 512, vocab {vocab} byte-level BPE, "
        f"tied embeddings, bf16 weights (expected computed in f32 from them), MTP head initialised "
        f"from a copy of layer 0 (see scripts/fixture_default.py). {facts}",
    )
    save_checkpoint(target.to(torch.bfloat16), tok, out)
    target.to(torch.float32)
    add_tensors(out, mtp.qwen35_tensors(), torch.bfloat16)
    edit_config(out, lambda c: c.__setitem__("mtp_num_hidden_layers", 1))
    write_json(out / "expected.json", exp)
    check_reload(out, exp)

    out = out_root / "default-draft"
    exp = standard_expected(
        draft,
        tok,
        f"Draft for default/: its embedding, first {N_DRAFT_LAYERS} layers, final norm and tied head, "
        f"bf16, same tokenizer. {facts}",
    )
    save_checkpoint(draft.to(torch.bfloat16), tok, out)
    write_json(out / "expected.json", exp)
    check_reload(out, exp)
