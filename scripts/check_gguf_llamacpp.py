#!/usr/bin/env python3
"""Optional cross-check of tests/fixtures/gguf/ against llama.cpp itself (not part of CI).

For every `<stem>.gguf` it loads the file with llama.cpp (through the llama-cpp-python binding),
compares llama.cpp's logits for expected.json's token_ids with the HF logits recorded there (for
quantized files with `logits_dequantized`, reported only: llama.cpp also quantizes activations),
and compares llama.cpp's tokenization of the texts
in expected.json "tokenize" with the HF tokenizer's ids recorded there. This shows that the GGUF fixtures mean the
same thing to llama.cpp as to transformers, so an engine matching expected.json also matches
llama.cpp.

llama-cpp-python has no prebuilt wheel on PyPI; it compiles llama.cpp (minutes, needs a C++
compiler), so it lives in its own venv:

    python -m venv /var/tmp/llvenv && . /var/tmp/llvenv/bin/activate
    CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF" \
        pip install --no-binary llama-cpp-python llama-cpp-python==0.3.36 numpy
    python scripts/check_gguf_llamacpp.py tests/fixtures
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from llama_cpp import Llama


def check(fixtures: Path) -> int:
    failures = 0
    for path in sorted((fixtures / "gguf").glob("*.gguf")):
        stem = path.name.removesuffix(".gguf")
        exp = json.loads((fixtures / "gguf" / f"{stem}.expected.json").read_text())
        want = np.array(exp.get("logits_dequantized", exp["logits"]), dtype=np.float32)
        # type_k/type_v 0 = GGML_TYPE_F32: llama.cpp's default f16 KV cache would add ~1e-3 noise.
        llm = Llama(model_path=str(path), logits_all=True, n_ctx=64, n_threads=2, type_k=0, type_v=0, verbose=False)
        llm.eval(exp["token_ids"])
        got = np.array(llm.scores[: len(exp["token_ids"])], dtype=np.float32)
        logit_diff = float(np.abs(got - want).max())
        tok_ok = all(
            llm.tokenize(case["text"].encode(), add_bos=False, special=False) == case["ids"] for case in exp["tokenize"]
        )
        # llama.cpp's CPU kernels for quantized weights also quantize the activations (Q8_0 x Q8_0
        # dot products), so quantized files get no tight bound; f32 files must agree closely.
        quantized = "logits_dequantized" in exp
        status = "ok" if (quantized or logit_diff <= 1e-3) and tok_ok else "MISMATCH"
        failures += status != "ok"
        print(
            f"{stem}: llama.cpp vs expected logits max abs diff {logit_diff:.3g}; tokenizer equal: {tok_ok}; {status}"
        )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(check(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")))
