"""Dense fixtures (issue #2): qwen3-tiny, llama-tiny, llama-tiny-f16, qwen2-tiny and the broken
checkpoints used by the error tests.

Each covers one loading or arithmetic feature the engine must get right: Qwen3's per-head q/k
RMSNorm and head_dim != hidden/heads with tied embeddings; Llama-3 `rope_scaling` (llama3 rope
type, small original context so the frequency rescaling matters) in the transformers 4.x hub
spelling with an untied lm_head; Qwen2's q/k/v biases with bf16 weights in a sharded checkpoint;
f16 storage.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from fixture_common import (
    check_reload,
    edit_config,
    randomise_,
    round_weights_,
    save_checkpoint,
    standard_expected,
    write_json,
)
from safetensors.torch import load_file, save_file
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

TINY = dict(
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=128,
    initializer_range=0.2,
    rms_norm_eps=1e-6,
    max_position_embeddings=512,
)


def qwen3_config(vocab_size: int, eos_id: int, **over) -> Qwen3Config:
    kw = dict(TINY, vocab_size=vocab_size, head_dim=32, tie_word_embeddings=True, eos_token_id=eos_id)
    kw["rope_parameters"] = {"rope_type": "default", "rope_theta": 1000000.0}
    kw.update(over)
    return Qwen3Config(**kw)


def make_model(cls, config, seed: int, store_dtype: torch.dtype = torch.float32):
    torch.manual_seed(seed)
    model = cls(config)
    randomise_(model, seed, config.initializer_range)
    if store_dtype != torch.float32:
        round_weights_(model, store_dtype)
    return model.eval()


def save_with_expected(model, tok, out: Path, notes: str, store_dtype=torch.float32, shard=None) -> dict:
    expected = standard_expected(model, tok, notes)
    save_checkpoint(model.to(store_dtype), tok, out, max_shard_size=shard)
    model.to(torch.float32)
    write_json(out / "expected.json", expected)
    return expected


def gen_qwen3_tiny(tok, out: Path) -> None:
    cfg = qwen3_config(tok.get_vocab_size(), tok.token_to_id("<|endoftext|>"))
    model = make_model(Qwen3ForCausalLM, cfg, seed=1)
    exp = save_with_expected(
        model,
        tok,
        out,
        "Qwen3ForCausalLM, 2 layers, GQA 4 q / 2 kv heads, head_dim 32 != hidden/heads, q/k norm, "
        "tied embeddings, f32 weights, transformers 5.x config spelling (rope_parameters, dtype).",
    )
    check_reload(out, exp)


def to_hub_4x_spelling(cfg: dict) -> None:
    """Rewrites a transformers 5.x config dict into the 4.x hub spelling."""
    rope = dict(cfg.pop("rope_parameters"))
    cfg["rope_theta"] = rope.pop("rope_theta")
    if rope.get("rope_type", "default") != "default":
        cfg["rope_scaling"] = rope
    cfg["torch_dtype"] = cfg.pop("dtype")


def llama_config(vocab_size: int, eos_id: int) -> LlamaConfig:
    kw = dict(TINY, vocab_size=vocab_size, tie_word_embeddings=False, eos_token_id=eos_id, bos_token_id=None)
    kw["rope_parameters"] = {
        "rope_type": "llama3",
        "rope_theta": 10000.0,
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16,
    }
    return LlamaConfig(**kw)


def gen_llama_tiny(tok, out: Path) -> None:
    cfg = llama_config(tok.get_vocab_size(), tok.token_to_id("<|endoftext|>"))
    model = make_model(LlamaForCausalLM, cfg, seed=2)
    exp = save_with_expected(
        model,
        tok,
        out,
        "LlamaForCausalLM, 2 layers, GQA 4/2, untied lm_head, Llama-3 rope_scaling (factor 8, "
        "low 1, high 4, original_max_position_embeddings 16), f32 weights, config hand-edited to "
        "the transformers 4.x hub spelling (rope_theta, rope_scaling, torch_dtype).",
    )
    edit_config(out, to_hub_4x_spelling)
    check_reload(out, exp)


def gen_llama_tiny_f16(tok, out: Path) -> None:
    cfg = llama_config(tok.get_vocab_size(), tok.token_to_id("<|endoftext|>"))
    model = make_model(LlamaForCausalLM, cfg, seed=3, store_dtype=torch.float16)
    exp = save_with_expected(
        model,
        tok,
        out,
        "LlamaForCausalLM as llama-tiny (other seed), weights STORED as f16; expected logits computed "
        "in f32 from the f16 weights; transformers 5.x config spelling (rope_parameters, dtype).",
        store_dtype=torch.float16,
    )
    check_reload(out, exp)


def gen_qwen2_tiny(tok, out: Path) -> None:
    kw = dict(TINY, vocab_size=tok.get_vocab_size(), tie_word_embeddings=False)
    kw.update(eos_token_id=tok.token_to_id("<|endoftext|>"), use_sliding_window=False)
    kw["rope_parameters"] = {"rope_type": "default", "rope_theta": 1000000.0}
    model = make_model(Qwen2ForCausalLM, Qwen2Config(**kw), seed=4, store_dtype=torch.bfloat16)
    exp = save_with_expected(
        model,
        tok,
        out,
        "Qwen2ForCausalLM, 2 layers, GQA 4/2, q/k/v biases, untied, weights STORED as bf16 in a "
        "sharded checkpoint (index.json + shards); expected logits computed in f32 from the "
        "bf16-rounded weights.",
        store_dtype=torch.bfloat16,
        shard="100KB",
    )
    shards = sorted(out.glob("model-*-of-*.safetensors"))
    if len(shards) < 2 or not (out / "model.safetensors.index.json").exists():
        raise RuntimeError(f"{out}: expected a sharded checkpoint, got {[p.name for p in shards]}")
    check_reload(out, exp)


def gen_broken(src: Path, out_root: Path) -> None:
    """Broken copies of `src` (qwen3-tiny) for the error tests; no expected.json."""
    tensors = load_file(src / "model.safetensors")
    files = ["config.json", "tokenizer.json", "tokenizer_config.json", "generation_config.json"]

    def fresh(name: str) -> Path:
        d = out_root / name
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        for f in files:
            shutil.copy(src / f, d / f)
        return d

    d = fresh("broken-missing-tensor")
    missing = {k: v for k, v in tensors.items() if k != "model.layers.1.mlp.down_proj.weight"}
    save_file(missing, d / "model.safetensors", metadata={"format": "pt"})
    (d / "README").write_text("model.safetensors lacks model.layers.1.mlp.down_proj.weight\n")

    d = fresh("broken-shape")
    bad = dict(tensors)
    bad["model.layers.0.self_attn.q_proj.weight"] = bad["model.layers.0.self_attn.q_proj.weight"][:120].clone()
    save_file(bad, d / "model.safetensors", metadata={"format": "pt"})
    (d / "README").write_text("model.layers.0.self_attn.q_proj.weight is [120, 64] instead of [128, 64]\n")

    d = fresh("broken-config")
    shutil.copy(src / "model.safetensors", d / "model.safetensors")
    text = (src / "config.json").read_text()
    (d / "config.json").write_text(text[: len(text) // 2])
    try:
        json.loads((d / "config.json").read_text())
        raise RuntimeError("broken-config/config.json unexpectedly parses")
    except json.JSONDecodeError:
        pass
    (d / "README").write_text("config.json is truncated in the middle (malformed JSON)\n")
