#!/usr/bin/env python3
"""Reference generator: writes every committed test fixture under tests/fixtures/.

Regenerate everything (deterministic: fixed seeds, fixed training text) with

    python -m venv /var/tmp/refvenv && . /var/tmp/refvenv/bin/activate
    pip install -r scripts/requirements-reference.txt
    python scripts/gen_reference.py --out tests/fixtures

`--only NAME[,NAME...]` regenerates a subset (the fixture directory names, plus the groups
`dense`, `default`, `moe`, `mtp`, `gguf`, `quant`). The GGUF group also runs llama.cpp's
convert_hf_to_gguf.py, which ships in the llama-cpp-python sdist on PyPI: it is fetched with pip
into /var/tmp/specsweep-llamacpp unless `--llama-cpp DIR` names an unpacked vendor/llama.cpp (see
fixture_gguf.py; its code is run from there and never copied into this repository).

Every fixture directory holds a Hugging Face checkpoint written by transformers'
save_pretrained (config.json, safetensors, tokenizer.json, tokenizer_config.json,
generation_config.json) and expected.json:

    {"token_ids": [...], "logits": [[vocab floats] per position] (float32 maths),
     "greedy": {"prompt_ids": [...], "max_new_tokens": 40, "output_ids": [new tokens only]},
     "mtp_logits": [...] (MTP fixtures only), "notes": "..."}

Weights are random (initializer_range 0.2, norm weights 1 + 0.1 N(0,1), random biases) so that
logits are not flat and a mishandled norm or bias shows. After writing, each checkpoint is
reloaded from disk with transformers and its logits compared with expected.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fixture_common as common
import fixture_default as default
import fixture_dense as dense
import fixture_gguf as ggufx
import fixture_moe as moe
import fixture_mtp as mtp
import fixture_quant as quant

TINY_VOCAB = 320
DEFAULT_VOCAB = 1024

GROUPS = {
    "dense": ["qwen3-tiny", "llama-tiny", "llama-tiny-f16", "qwen2-tiny", "broken"],
    "default": ["default"],
    "moe": ["qwen3moe-tiny", "qwen3moe-nonorm", "qwen3moe-4e", "qwen2moe-tiny"],
    "mtp": ["qwen3-mtp-tiny"],
    "gguf": ["gguf", "gguf-blocks"],
    "quant": ["quant", "quantize"],
}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="fixture root, e.g. tests/fixtures")
    ap.add_argument("--only", default="", help="comma-separated fixture names or groups")
    ap.add_argument(
        "--llama-cpp", type=Path, default=None, help="vendor/llama.cpp of an unpacked llama-cpp-python sdist"
    )
    args = ap.parse_args()

    torch.set_grad_enabled(False)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)

    wanted: list[str] = []
    for item in filter(None, args.only.split(",")):
        wanted.extend(GROUPS.get(item, [item]))
    if not wanted:
        wanted = [name for names in GROUPS.values() for name in names]
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    tok = common.build_tokenizer(TINY_VOCAB)

    steps = {
        "qwen3-tiny": lambda: dense.gen_qwen3_tiny(tok, out / "qwen3-tiny"),
        "llama-tiny": lambda: dense.gen_llama_tiny(tok, out / "llama-tiny"),
        "llama-tiny-f16": lambda: dense.gen_llama_tiny_f16(tok, out / "llama-tiny-f16"),
        "qwen2-tiny": lambda: dense.gen_qwen2_tiny(tok, out / "qwen2-tiny"),
        "broken": lambda: dense.gen_broken(out / "qwen3-tiny", out),
        "qwen3moe-tiny": lambda: moe.gen_qwen3moe_tiny(tok, out / "qwen3moe-tiny"),
        "qwen3moe-nonorm": lambda: moe.gen_qwen3moe_nonorm(tok, out / "qwen3moe-nonorm"),
        "qwen3moe-4e": lambda: moe.gen_qwen3moe_4e(tok, out / "qwen3moe-4e"),
        "qwen2moe-tiny": lambda: moe.gen_qwen2moe_tiny(tok, out / "qwen2moe-tiny"),
        "qwen3-mtp-tiny": lambda: mtp.gen_qwen3_mtp_tiny(tok, out),
        "gguf": lambda: ggufx.gen_gguf(out, args.llama_cpp),
        "quant": lambda: quant.gen_quant(out),
        "quantize": lambda: quant.gen_quantize(out),
        "gguf-blocks": lambda: quant.gen_gguf_blocks(out),
        "default": lambda: default.gen_default(common.build_tokenizer(DEFAULT_VOCAB, rich=True), out),
    }
    for name in wanted:
        if name not in steps:
            print(f"unknown fixture or group: {name}", file=sys.stderr)
            return 2
        print(f"== {name}", flush=True)
        steps[name]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
