"""GGUF fixtures (issue #3): the tiny HF fixtures converted by llama.cpp's own converter.

tests/fixtures/gguf/<name>.gguf is `convert_hf_to_gguf.py --outtype f32` (and one `q8_0`) of
tests/fixtures/<name>/, and tests/fixtures/gguf/<name>.expected.json is the HF model's
expected.json (logits computed by transformers from the same weights), so the engine reading the
GGUF must reproduce transformers' logits: within 1e-4 for f32; q8_0 needs a looser tolerance.

convert_hf_to_gguf.py ships in the llama-cpp-python sdist on PyPI. Unless `--llama-cpp DIR` names
an unpacked copy, obtain_llama_cpp() fetches and unpacks it outside the repository (its code is
run from there and never copied here), which amounts to

    pip download --no-deps --no-binary llama-cpp-python llama-cpp-python==0.3.36 -d /var/tmp/specsweep-llamacpp
    tar xzf /var/tmp/specsweep-llamacpp/llama_cpp_python-0.3.36.tar.gz -C /var/tmp/specsweep-llamacpp

The converter identifies a BPE pre-tokenizer by hashing the ids it produces for a fixed text; our
small trained tokenizer is in no table, so it refuses it. Our tokenizer's pre-tokenizer *is*
Qwen2's split regex followed by the GPT-2 byte mapping (fixture_common.QWEN2_SPLIT), which llama.cpp
calls "qwen2". The converter is therefore run through a small wrapper that, only when llama.cpp's
own `get_vocab_base_pre` raises "not recognized", returns "qwen2" (monkeypatched in the
converter's process; the converter's file is not modified).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import gguf
import numpy as np
from tokenizers import Tokenizer

PRE_TOKENIZER = "qwen2"
LLAMA_CPP_PYTHON = "0.3.36"
LLAMA_CPP_CACHE = Path("/var/tmp/specsweep-llamacpp")

# Runs convert_hf_to_gguf.py as __main__ with get_vocab_base_pre falling back to PRE_TOKENIZER.
WRAPPER = r"""
import runpy, sys
llama_dir, pre_name = sys.argv[1], sys.argv[2]
sys.path.insert(0, llama_dir)
sys.path.insert(1, llama_dir + "/gguf-py")
from conversion.base import TextModel
original = TextModel.get_vocab_base_pre
def get_vocab_base_pre(self, tokenizer):
    try:
        return original(self, tokenizer)
    except NotImplementedError:
        return pre_name
TextModel.get_vocab_base_pre = get_vocab_base_pre
sys.argv = [llama_dir + "/convert_hf_to_gguf.py"] + sys.argv[3:]
runpy.run_path(llama_dir + "/convert_hf_to_gguf.py", run_name="__main__")
"""

# Texts whose HF token ids are stored in every gguf/*.expected.json ("tokenize"): the GGUF's own
# tokenizer (metadata tokens/merges + the qwen2 pre-tokenizer) must give the same ids, as llama.cpp
# does (scripts/check_gguf_llamacpp.py).
TOKENIZE_TEXTS = [
    "def add(a, b):\n    return a + b  # the sum",
    "The quick brown fox jumps over the lazy dog.",
    "Hello  world!\n\n\tIt's 2026 -- naïve café, 你好 🚀",
    "for i in range(10):\n    print(i, i * i)\n",
    "   leading spaces, trailing spaces   ",
    "I'VE we'll they'd CAN'T 3.14159 1234567",
]

# (fixture, outtype) pairs converted. The MoE one is qwen3moe-4e (every layer sparse): llama.cpp's
# qwen3moe architecture has no dense layers, and its converter refuses qwen3moe-tiny's dense
# layer 1 ("Can not map tensor 'model.layers.1.mlp.down_proj.weight'").
CONVERSIONS = [
    ("llama-tiny", "f32"),
    ("qwen2-tiny", "f32"),
    ("qwen3-tiny", "f32"),
    ("qwen3moe-4e", "f32"),
    ("qwen2-tiny", "q8_0"),
]


def convert(llama_dir: Path, model_dir: Path, outfile: Path, outtype: str) -> None:
    cmd = [sys.executable, "-c", WRAPPER, str(llama_dir), PRE_TOKENIZER, str(model_dir)]
    cmd += ["--outfile", str(outfile), "--outtype", outtype]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if proc.returncode != 0 or not outfile.exists():
        raise RuntimeError(f"convert_hf_to_gguf.py failed for {model_dir}:\n{proc.stderr[-3000:]}")


def describe(path: Path) -> dict:
    """Facts about a written GGUF (version, architecture, tensor types) for the notes."""
    reader = gguf.GGUFReader(str(path))
    arch = reader.fields["general.architecture"]
    types = sorted({t.tensor_type.name for t in reader.tensors})
    pre = reader.fields.get("tokenizer.ggml.pre")
    return {
        "architecture": bytes(arch.parts[arch.data[0]]).decode(),
        "tensor_types": types,
        "n_tensors": len(reader.tensors),
        "tokenizer_pre": bytes(pre.parts[pre.data[0]]).decode() if pre else None,
    }


def obtain_llama_cpp(cache: Path = LLAMA_CPP_CACHE) -> Path:
    """vendor/llama.cpp of the llama-cpp-python sdist, downloaded with pip and unpacked in `cache`."""
    root = cache / f"llama_cpp_python-{LLAMA_CPP_PYTHON}"
    llama_dir = root / "vendor" / "llama.cpp"
    if (llama_dir / "convert_hf_to_gguf.py").exists():
        return llama_dir
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / f"llama_cpp_python-{LLAMA_CPP_PYTHON}.tar.gz"
    if not sdist.exists():
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "llama-cpp-python"]
        cmd += [f"llama-cpp-python=={LLAMA_CPP_PYTHON}", "-d", str(cache)]
        subprocess.run(cmd, check=True)
    with tarfile.open(sdist) as tar:
        tar.extractall(cache, filter="data")
    return llama_dir


GGUF_TO_HF = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "ffn_gate_inp": "mlp.gate",
}
GGUF_GLOBAL = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}


def llama_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's Q/K row permutation for its rotary layout (LlamaModel.permute in the converter)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama_unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of llama_permute."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def verify_gguf(path: Path, hf_dir: Path) -> tuple[float, dict[str, np.ndarray]]:
    """Checks every tensor of `path` against the HF checkpoint it came from (after llama.cpp's
    documented transforms: Q/K permutation for `llama`, stacked experts, Llama-3 rope_freqs).
    Returns the largest absolute difference (quantized tensors may differ by Q8_0 rounding) and
    the dequantized GGUF weights under their HF names."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    hf: dict[str, np.ndarray] = {}
    for shard in sorted(hf_dir.glob("*.safetensors")):  # through torch: numpy has no bfloat16
        hf.update({k: v.to(torch.float32).numpy() for k, v in load_file(shard).items()})
    cfg = json.loads((hf_dir / "config.json").read_text())
    reader = gguf.GGUFReader(str(path))
    arch = bytes(reader.fields["general.architecture"].parts[-1]).decode()
    worst = 0.0
    deq: dict[str, np.ndarray] = {}
    for t in reader.tensors:
        shape = [int(v) for v in reversed(t.shape)]
        got = gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32)
        name, kind = t.name.rsplit(".", 1)
        parts = name.split(".")
        if name == "rope_freqs":
            model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
            inv_hf = model.model.rotary_emb.inv_freq.numpy()
            hd = 2 * inv_hf.shape[0]
            base = 1.0 / (cfg["rope_theta"] ** (np.arange(0, hd, 2, dtype=np.float32) / hd))
            diff = float(np.abs(base / got - inv_hf).max() / inv_hf.max())
        else:
            if parts[0] == "blk" and parts[2].endswith("_exps"):
                proj = parts[2].removeprefix("ffn_").removesuffix("_exps")
                keys = [f"model.layers.{parts[1]}.mlp.experts.{e}.{proj}_proj.weight" for e in range(shape[0])]
                want = np.stack([hf[k] for k in keys])
                deq.update({k: got[e] for e, k in enumerate(keys)})
            elif parts[0] == "blk":
                key = f"model.layers.{parts[1]}.{GGUF_TO_HF[parts[2]]}.{kind}"
                want = hf[key]
                deq[key] = got
            else:
                key = f"{GGUF_GLOBAL[name]}.{kind}"
                want = hf[key] if key in hf else hf["model.embed_tokens.weight"]
                deq[key] = got
            if arch == "llama" and parts[-1] in ("attn_q", "attn_k"):
                heads = cfg["num_attention_heads"] if parts[-1] == "attn_q" else cfg["num_key_value_heads"]
                want = llama_permute(want, heads)
                deq[key] = llama_unpermute(got, heads)
            diff = float(np.abs(got - want).max())
            bound = 0.0 if t.tensor_type.name == "F32" else 0.6 * float(np.abs(want).max()) / 127
            if diff > bound:
                raise RuntimeError(f"{path.name}: tensor {t.name} differs from {hf_dir.name} by {diff}")
        worst = max(worst, diff)
    if "lm_head.weight" not in deq:  # tied embeddings: no output.weight in the GGUF
        deq["lm_head.weight"] = deq["model.embed_tokens.weight"]
    return worst, deq


def dequantized_expected(hf_dir: Path, deq: dict[str, np.ndarray], expected: dict) -> dict:
    """transformers' logits (and greedy output, when free of near-ties) with the HF model's weights
    replaced by the GGUF's dequantized ones: what an engine that dequantizes on load must give."""
    import torch
    from fixture_common import f32_list, greedy_of, logits_of
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    state = model.state_dict()
    state.update({k: torch.from_numpy(v.copy()) for k, v in deq.items()})
    model.load_state_dict(state)
    logits = logits_of(model, expected["token_ids"])
    out = {"logits_dequantized": f32_list(logits)}
    out["logits_dequantized_max_abs_diff"] = float(
        f"{float((logits - torch.tensor(expected['logits'])).abs().max()):.3g}"
    )
    g = expected["greedy"]
    try:
        out["greedy_dequantized_output_ids"] = greedy_of(model, g["prompt_ids"], g["max_new_tokens"])
    except RuntimeError as err:
        print(f"{hf_dir.name}: no dequantized greedy reference ({err})")
    return out


# llama-quantize's IQ4_NL requantization of qwen2-tiny.gguf (engine/tests/quantized_path.rs)
IQ4_NL_FIXTURE = "qwen2-tiny-iq4_nl.gguf"


def gen_gguf(fixtures: Path, llama_dir: Path | None) -> None:
    llama_dir = llama_dir or obtain_llama_cpp()
    if not (llama_dir / "convert_hf_to_gguf.py").exists():
        raise RuntimeError(f"{llama_dir}: no convert_hf_to_gguf.py (expected vendor/llama.cpp of the sdist)")
    out = fixtures / "gguf"
    # the IQ4_NL file is llama-quantize's (a built llama.cpp): kept as it is unless LLAMA_QUANTIZE
    # names that binary
    kept_iq4_nl = (out / IQ4_NL_FIXTURE).read_bytes() if (out / IQ4_NL_FIXTURE).exists() else None
    if out.exists():
        shutil.rmtree(out)
    out.mkdir()
    for name, outtype in CONVERSIONS:
        stem = name if outtype == "f32" else f"{name}-{outtype}"
        target = out / f"{stem}.gguf"
        convert(llama_dir, fixtures / name, target, outtype)
        facts = describe(target)
        worst, deq = verify_gguf(target, fixtures / name)
        facts["max_abs_diff_vs_hf_tensors"] = float(f"{worst:.3g}")
        exp = json.loads((fixtures / name / "expected.json").read_text())
        if outtype == "f32":
            tol = "1e-4"
        else:
            tol = (
                "a looser tolerance; logits_dequantized (and greedy_dequantized_output_ids) are "
                "transformers' numbers with the GGUF's dequantized weights, to be matched within 1e-4"
            )
            exp.update(dequantized_expected(fixtures / name, deq, exp))
        exp["notes"] = (
            f"{stem}.gguf = llama.cpp convert_hf_to_gguf.py (llama-cpp-python {LLAMA_CPP_PYTHON} sdist) "
            f"--outtype {outtype} of tests/fixtures/{name}/ ({facts}); tokenizer.ggml.pre forced to "
            f"'{PRE_TOKENIZER}' (see scripts/fixture_gguf.py). Logits/greedy are the HF model's "
            f"(transformers, f32 maths): the GGUF must match them within {tol}. Original notes: " + exp["notes"]
        )
        exp.pop("mtp_logits", None)
        tok = Tokenizer.from_file(str(fixtures / name / "tokenizer.json"))
        exp["tokenize"] = [{"text": t, "ids": tok.encode(t, add_special_tokens=False).ids} for t in TOKENIZE_TEXTS]
        (out / f"{stem}.expected.json").write_text(json.dumps(exp, separators=(",", ":")) + "\n")
        print(f"{target.name}: {target.stat().st_size} bytes, {facts}")
    quantize = os.environ.get("LLAMA_QUANTIZE")
    if quantize:
        # llama-quantize of the f32 file: every 2-D tensor IQ4_NL but the output head (Q8_0, its
        # rows not whole Q6_K super-blocks), norms and biases f32
        subprocess.run(
            [quantize, "--allow-requantize", str(out / "qwen2-tiny.gguf"), str(out / IQ4_NL_FIXTURE), "IQ4_NL"],
            check=True,
        )
        print(f"{IQ4_NL_FIXTURE}: llama-quantize IQ4_NL of qwen2-tiny.gguf")
    elif kept_iq4_nl is not None:
        (out / IQ4_NL_FIXTURE).write_bytes(kept_iq4_nl)
        print(f"{IQ4_NL_FIXTURE}: kept (set LLAMA_QUANTIZE to a llama-quantize binary to rebuild it)")
    else:
        raise RuntimeError(f"{IQ4_NL_FIXTURE}: set LLAMA_QUANTIZE to a built llama.cpp's llama-quantize")
