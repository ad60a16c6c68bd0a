"""Shared pieces of the reference generator: the byte-level BPE tokenizers, seeded random
initialisation, checkpoint writing and the expected.json computation.

Every fixture is a Hugging Face checkpoint directory (config.json, safetensors, tokenizer files)
plus expected.json, produced by transformers itself so that the Rust engine is checked against
the implementation people actually run. Floats are written with 9 significant digits, which is
enough for a float32 to round-trip exactly.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
import transformers
from safetensors.torch import load_file, save_file
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoModelForCausalLM, GenerationConfig, PreTrainedTokenizerFast

# Qwen2's pre-tokenizer split (the `qwen2` pre-tokenizer of llama.cpp), applied before the
# byte-level mapping, so that GGUF conversions of these fixtures use a pre-tokenizer the engine
# must support anyway for the real Qwen models.
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
EOS_TOKEN = "<|endoftext|>"

# Input of the logits check and prompt of the greedy check (same for every fixture).
LOGITS_TEXT = "def add(a, b):\n    return a + b  # the sum"
GREEDY_PROMPT = "The quick brown fox"
N_LOGITS_TOKENS = 12
MAX_NEW_TOKENS = 40
# Every greedy step's top-1 logit must beat the runner-up by this much, so that an engine within
# the 1e-4 logits tolerance cannot legitimately pick another token.
MIN_GREEDY_MARGIN = 1e-3


# Extra text for the default model's larger vocabulary (~1k tokens needs more distinct words).
EXTRA_PROSE = """
Every benchmark starts with a question. Which configuration decodes fastest on this machine, and
does it still produce exactly the same text? A careful engineer writes down the hardware, the
model, the quantization, the context depth and the decoding mode before looking at any number.
Then she runs each configuration several times, discards the warmup, and reports the median with
a confidence interval. If two results overlap, the honest answer is that nobody can tell them
apart yet.
The library opened early on Saturday. Children carried stacks of picture books to the counter,
students searched for quiet corners near the windows, and an old man read the newspaper aloud to
his friend. Outside, rain fell gently on the gardens, the bicycles and the yellow umbrellas.
Mountains, rivers, forests and deserts cover the continents. Weather changes with the seasons:
summer brings long warm evenings, autumn paints the leaves orange and brown, winter covers the
northern cities with snow, and spring returns with birds, flowers and fresh green grass.
Good software is simple to read, easy to change and hard to misuse. Functions should do one
thing, names should say what things are, and errors should explain what went wrong and where.
Tests protect the behaviour that users rely on; documentation explains why the code is shaped
the way it is. Performance matters, but only after correctness has been established.
Cooking dinner for friends requires planning: chop the onions, garlic and peppers, warm the olive
oil, add the tomatoes and simmer the sauce while the pasta boils in salted water. Serve with
fresh basil, grated cheese and a glass of water or wine.
"""
EXTRA_CODE = """
import os
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Measurement:
    name: str
    tokens: int
    seconds: float

    def tokens_per_second(self) -> float:
        if self.seconds <= 0:
            raise ValueError("seconds must be positive")
        return self.tokens / self.seconds


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    if len(ordered) % 2 == 1:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2.0


def read_lines(path: Path) -> list[str]:
    with path.open(encoding="utf-8") as handle:
        return [line.rstrip("\n") for line in handle if line.strip()]


def binary_search(items: list[int], target: int) -> int:
    low, high = 0, len(items) - 1
    while low <= high:
        mid = (low + high) // 2
        if items[mid] == target:
            return mid
        if items[mid] < target:
            low = mid + 1
        else:
            high = mid - 1
    return -1


def word_counts(text: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for word in text.lower().split():
        counts[word] = counts.get(word, 0) + 1
    return counts


if __name__ == "__main__":
    results = [Measurement("greedy", 128, 2.5), Measurement("ngram", 128, 1.75)]
    for result in results:
        print(f"{result.name}: {result.tokens_per_second():.1f} tok/s")
    sys.exit(0)
"""


def training_corpus(rich: bool = False) -> str:
    """A few KB of fixed English prose and Python code, built deterministically; `rich` adds
    EXTRA_PROSE and EXTRA_CODE (the default model's larger vocabulary)."""
    prose = [
        "The quick brown fox jumps over the lazy dog.",
        "Speculative decoding drafts several tokens cheaply and verifies them in one forward pass.",
        "A language model predicts the next token from the tokens that came before it.",
        "When the draft agrees with the target, the accepted tokens come almost for free.",
        "Mixture-of-experts layers route every token to a small number of experts.",
        "The cache keeps the keys and values of earlier positions so they are not recomputed.",
        "Measure twice, cut once: a benchmark that cannot fail proves nothing at all.",
        "She sells sea shells by the sea shore, and the shells she sells are surely sea shells.",
        "In the morning the market opens, the traders arrive and the prices start to move.",
        "Write the test first, watch it fail, then make it pass with the simplest change.",
        "Numbers without units are guesses; record the hardware, the model and the settings.",
        "It was the best of times, it was the worst of times, it was the age of wisdom.",
    ]
    code = [
        "def add(a, b):\n    return a + b\n",
        "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
        "for i in range(10):\n    print(i, i * i)\n",
        (
            "class Stack:\n    def __init__(self):\n        self.items = []\n\n"
            "    def push(self, item):\n        self.items.append(item)\n\n"
            "    def pop(self):\n        return self.items.pop()\n"
        ),
        "import json\n\nwith open('data.json') as f:\n    data = json.load(f)\nprint(len(data))\n",
        "def mean(values):\n    total = sum(values)\n    return total / len(values)\n",
        "result = [x for x in range(100) if x % 3 == 0]\n",
        "while queue:\n    node = queue.pop(0)\n    for child in node.children:\n        queue.append(child)\n",
    ]
    parts = []
    for round_idx in range(4):
        for i, sentence in enumerate(prose):
            parts.append(sentence if (i + round_idx) % 2 == 0 else sentence.lower())
        for snippet in code:
            parts.append(snippet.replace("values", f"values_{round_idx}") if round_idx else snippet)
        for k in range(8):
            parts.append(f"def f_{round_idx}_{k}(x):\n    return x * {k + round_idx} + {k * 7}\n")
        if rich:
            parts.extend([EXTRA_PROSE, EXTRA_CODE])
    return "\n".join(parts)


def build_tokenizer(vocab_size: int, rich: bool = False) -> Tokenizer:
    """Trains a byte-level BPE tokenizer (Qwen2 split + GPT-2 byte mapping) on the corpus."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(training_corpus(rich).split("\n\n"), trainer=trainer)
    return tok


def fast_tokenizer(tok: Tokenizer) -> PreTrainedTokenizerFast:
    """Wraps a `tokenizers` tokenizer so transformers writes tokenizer_config.json for it."""
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        model_max_length=4096,
    )


def randomise_(model: torch.nn.Module, seed: int, std: float) -> None:
    """Seeded random init of every parameter: weights N(0, std), norm weights 1 + 0.1 N(0, 1),
    biases 0.1 N(0, 1), so that a bug in the handling of norms or biases shows in the logits."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if "norm" in name:
                p.copy_(1.0 + 0.1 * noise)
            elif name.endswith("bias"):
                p.copy_(0.1 * noise)
            else:
                p.copy_(std * noise)


def round_weights_(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Rounds every parameter to `dtype` and back, so that f32 maths reproduces stored weights."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(dtype).to(torch.float32))


def f32_list(t: torch.Tensor):
    """A float32 tensor as nested lists of Python floats with 9 significant digits."""
    arr = t.detach().to(torch.float32).cpu().numpy()
    return np.vectorize(lambda v: float(f"{np.float32(v):.9g}"), otypes=[object])(arr).tolist()


def encode(tok: Tokenizer, text: str) -> list[int]:
    return tok.encode(text, add_special_tokens=False).ids


@torch.no_grad()
def logits_of(model, ids: list[int]) -> torch.Tensor:
    """[n, vocab] float32 logits of one forward over `ids`."""
    out = model(torch.tensor([ids], dtype=torch.long))
    return out.logits[0].to(torch.float32)


@torch.no_grad()
def greedy_of(model, prompt_ids: list[int], max_new_tokens: int) -> list[int]:
    """New tokens of `model.generate(do_sample=False)` with EOS ignored, cross-checked against a
    plain argmax loop of full forwards (which also rules out cache bugs in the reference)."""
    gen_cfg = GenerationConfig(
        do_sample=False,
        max_new_tokens=max_new_tokens,
        min_new_tokens=None,
        eos_token_id=None,
        pad_token_id=0,
        bos_token_id=None,
    )
    inp = torch.tensor([prompt_ids], dtype=torch.long)
    out = model.generate(inp, generation_config=gen_cfg, attention_mask=torch.ones_like(inp))
    new = out[0, len(prompt_ids) :].tolist()
    ids = list(prompt_ids)
    for _ in range(max_new_tokens):
        last = logits_of(model, ids)[-1]
        top2 = torch.topk(last, 2).values
        if float(top2[0] - top2[1]) < MIN_GREEDY_MARGIN:
            raise RuntimeError("near-tie in the greedy reference (an engine could fairly differ); change the seed")
        ids.append(int(last.argmax()))
    if ids[len(prompt_ids) :] != new:
        raise RuntimeError("generate() disagrees with the argmax loop; change the seed")
    return new


def standard_expected(model, tok: Tokenizer, notes: str) -> dict:
    """expected.json content shared by every fixture: logits of every position and greedy output."""
    ids = encode(tok, LOGITS_TEXT)[:N_LOGITS_TOKENS]
    prompt = encode(tok, GREEDY_PROMPT)
    return {
        "token_ids": ids,
        "logits": f32_list(logits_of(model, ids)),
        "greedy": {
            "prompt_ids": prompt,
            "max_new_tokens": MAX_NEW_TOKENS,
            "output_ids": greedy_of(model, prompt, MAX_NEW_TOKENS),
        },
        "notes": f"transformers {transformers.__version__}, torch {torch.__version__}: {notes}",
    }


def write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=None, separators=(",", ":")) + "\n")


def save_checkpoint(model, tok: Tokenizer, out: Path, max_shard_size: str | None = None) -> None:
    """save_pretrained of model and tokenizer into a fresh directory `out`."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
    model.save_pretrained(out, **kwargs)
    fast_tokenizer(tok).save_pretrained(out)


def edit_config(out: Path, edit) -> None:
    """Applies `edit(dict)` to out/config.json."""
    path = out / "config.json"
    cfg = json.loads(path.read_text())
    edit(cfg)
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def add_tensors(out: Path, extra: dict[str, torch.Tensor], dtype: torch.dtype) -> None:
    """Adds tensors to a single-file model.safetensors (used for MTP weights)."""
    path = out / "model.safetensors"
    tensors = load_file(path)
    for k, v in extra.items():
        tensors[k] = v.detach().to(dtype).contiguous()
    save_file(dict(sorted(tensors.items())), path, metadata={"format": "pt"})


@torch.no_grad()
def check_reload(out: Path, expected: dict, tol: float = 1e-5) -> float:
    """Loads `out` with transformers from disk and checks its logits equal expected's."""
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    model.eval()
    got = logits_of(model, expected["token_ids"])
    want = torch.tensor(expected["logits"], dtype=torch.float32)
    diff = float((got - want).abs().max())
    if diff > tol:
        raise RuntimeError(f"{out}: reloaded logits differ from expected by {diff}")
    return diff
