"""Multi-token-prediction (MTP) head fixtures (issue #4): qwen3-mtp-tiny and
qwen3-mtp-deepseek-names, plus the MTP pieces the default demo model reuses.

transformers does not run MTP heads, so the head is assembled here from transformers' own
Qwen3DecoderLayer, Qwen3RMSNorm and Qwen3RotaryEmbedding following the DeepSeek-V3 / Qwen3.5
module (shared/reference/speculation.md section 3); MTP_DEFINITION below is the exact formula and
is copied into expected.json "notes".
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from fixture_common import (
    add_tensors,
    check_reload,
    edit_config,
    f32_list,
    randomise_,
    save_checkpoint,
    standard_expected,
    write_json,
)
from fixture_dense import make_model, qwen3_config
from torch import nn
from transformers import Qwen3ForCausalLM
from transformers.models.qwen3.modeling_qwen3 import Qwen3DecoderLayer, Qwen3RMSNorm, Qwen3RotaryEmbedding

MTP_DEFINITION = (
    "mtp_logits: for input ids t_0..t_{n-1}, let h_p be the main model's final hidden state AFTER "
    "the final norm at position p. For p = 0..n-2: x_p = fc(concat(RMSNorm_emb(embed(t_{p+1})), "
    "RMSNorm_hid(h_p))) [embedding part first]; the MTP decoder layer runs over x_0..x_{n-2} "
    "causally with rotary positions 0..n-2 (its own attention, no main-model KV), then mtp.norm, "
    "then the shared lm_head: row p = logits for t_{p+2}. Weights: mtp.fc.weight [d, 2d], "
    "mtp.pre_fc_norm_embedding.weight (RMSNorm_emb), mtp.pre_fc_norm_hidden.weight (RMSNorm_hid), "
    "mtp.layers.0.* (a Qwen3 decoder layer), mtp.norm.weight; config mtp_num_hidden_layers = 1."
)


class MtpHead(nn.Module):
    """The MTP module; its parameter names, prefixed by `mtp.`, are the Qwen3.5 checkpoint names."""

    def __init__(self, config):
        super().__init__()
        d = config.hidden_size
        layer_cfg = type(config).from_dict(config.to_dict())
        layer_cfg._attn_implementation = "eager"
        self.fc = nn.Linear(2 * d, d, bias=False)
        self.pre_fc_norm_embedding = Qwen3RMSNorm(d, eps=config.rms_norm_eps)
        self.pre_fc_norm_hidden = Qwen3RMSNorm(d, eps=config.rms_norm_eps)
        self.layers = nn.ModuleList([Qwen3DecoderLayer(layer_cfg, layer_idx=0)])
        self.norm = Qwen3RMSNorm(d, eps=config.rms_norm_eps)
        self.rotary = Qwen3RotaryEmbedding(config=layer_cfg)

    def forward(self, model: Qwen3ForCausalLM, ids: torch.Tensor) -> torch.Tensor:
        """MTP logits [n-1, vocab] for ids [n] (MTP_DEFINITION)."""
        return self.forward_batch(model, ids[None])[0]

    def forward_batch(self, model: Qwen3ForCausalLM, ids: torch.Tensor) -> torch.Tensor:
        """MTP logits [b, n-1, vocab] for ids [b, n]; the main model is not differentiated."""
        with torch.no_grad():
            h = model.model(ids).last_hidden_state  # [b, n, d], after the final norm
            emb = model.model.embed_tokens(ids[:, 1:])  # [b, n-1, d]: t_{p+1}
        x = self.fc(torch.cat([self.pre_fc_norm_embedding(emb), self.pre_fc_norm_hidden(h[:, :-1])], dim=-1))
        m = x.shape[1]
        pos = torch.arange(m)[None]
        cos_sin = self.rotary(x, pos)
        mask = torch.full((m, m), float("-inf")).triu(1)[None, None]
        y = self.layers[0](x, attention_mask=mask, position_ids=pos, position_embeddings=cos_sin)
        if isinstance(y, tuple):
            y = y[0]
        return model.lm_head(self.norm(y)).to(torch.float32)

    def qwen35_tensors(self) -> dict[str, torch.Tensor]:
        return {f"mtp.{k}": v for k, v in self.state_dict().items() if not k.startswith("rotary")}


def deepseek_name(qwen35: str, n_layers: int) -> str:
    """Maps a Qwen3.5 `mtp.*` tensor name to its DeepSeek-V3 `model.layers.{L}.*` name."""
    prefix = f"model.layers.{n_layers}."
    rest = qwen35.removeprefix("mtp.")
    fixed = {
        "fc.weight": "eh_proj.weight",
        "pre_fc_norm_embedding.weight": "enorm.weight",
        "pre_fc_norm_hidden.weight": "hnorm.weight",
        "norm.weight": "shared_head.norm.weight",
    }
    if rest in fixed:
        return prefix + fixed[rest]
    if rest.startswith("layers.0."):
        return prefix + rest.removeprefix("layers.0.")
    raise ValueError(f"unexpected MTP tensor {qwen35}")


def make_mtp(config, seed: int) -> MtpHead:
    torch.manual_seed(seed)
    mtp = MtpHead(config)
    randomise_(mtp, seed, config.initializer_range)
    return mtp.eval()


def mtp_expected(model, mtp: MtpHead, tok, notes: str) -> dict:
    expected = standard_expected(model, tok, notes + " " + MTP_DEFINITION)
    ids = torch.tensor(expected["token_ids"], dtype=torch.long)
    rows = mtp(model, ids)
    # Self-check of causality: row p must not depend on tokens after t_{p+1}.
    for n in range(2, len(ids)):
        diff = float((mtp(model, ids[:n]) - rows[: n - 1]).abs().max())
        if diff > 1e-4:
            raise RuntimeError(f"MTP rows change when later tokens are removed (by {diff})")
    expected["mtp_logits"] = f32_list(rows)
    return expected


def write_deepseek_variant(src: Path, out: Path, n_layers: int, dtype: torch.dtype, notes: str) -> None:
    """Copies `src` renaming its mtp.* tensors to DeepSeek-V3 names (num_nextn_predict_layers)."""
    from safetensors.torch import load_file, save_file

    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(src, out)
    tensors = load_file(src / "model.safetensors")
    renamed = {(deepseek_name(k, n_layers) if k.startswith("mtp.") else k): v for k, v in tensors.items()}
    save_file(dict(sorted(renamed.items())), out / "model.safetensors", metadata={"format": "pt"})

    def edit(cfg):
        del cfg["mtp_num_hidden_layers"]
        cfg["num_nextn_predict_layers"] = 1

    edit_config(out, edit)
    exp = json.loads((src / "expected.json").read_text())
    exp["notes"] = notes + " " + exp["notes"]
    write_json(out / "expected.json", exp)
    check_reload(out, exp)


def gen_qwen3_mtp_tiny(tok, out_root: Path) -> None:
    cfg = qwen3_config(tok.get_vocab_size(), tok.token_to_id("<|endoftext|>"))
    model = make_model(Qwen3ForCausalLM, cfg, seed=11)
    mtp = make_mtp(cfg, seed=12)
    out = out_root / "qwen3-mtp-tiny"
    exp = mtp_expected(
        model, mtp, tok, "Qwen3ForCausalLM as qwen3-tiny (other seed) plus Qwen3.5-style MTP weights, f32."
    )
    save_checkpoint(model, tok, out)
    add_tensors(out, mtp.qwen35_tensors(), torch.float32)
    edit_config(out, lambda c: c.__setitem__("mtp_num_hidden_layers", 1))
    write_json(out / "expected.json", exp)
    check_reload(out, exp)
    write_deepseek_variant(
        out,
        out_root / "qwen3-mtp-deepseek-names",
        cfg.num_hidden_layers,
        torch.float32,
        "Same weights and numbers as qwen3-mtp-tiny, MTP tensors under DeepSeek-V3 names: "
        f"model.layers.{cfg.num_hidden_layers}.{{enorm,hnorm,eh_proj,shared_head.norm}} and the decoder "
        "layer's usual sub-module names; config num_nextn_predict_layers = 1.",
    )
