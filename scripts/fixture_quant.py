"""Quantized-block test vectors (issue #3): tests/fixtures/quant/<TYPE>.bin + <TYPE>.json, and
quantizer test vectors (issue #8): tests/fixtures/quantize/<TYPE>.json.

IQ4_NL (a KV cache type and a weight format) has no quantizer in gguf-py: its blocks come from
llama.cpp's own quantizers, called through ctypes from a llama.cpp build's libggml-base.so named by
the LIBGGML_BASE environment variable (build llama.cpp outside this repository, see
scripts/compare-llamacpp.sh), with gguf-py's dequantized values beside them:
`quantize_row_iq4_nl_ref` (what its CPU backend applies when writing an iq4_nl KV cache) into
IQ4_NL.json, and `quantize_iq4_nl` / `quantize_iq4_xs` / `quantize_q2_K` ... `quantize_q6_K`
without an importance matrix (what `llama-quantize ... IQ4_NL|IQ4_XS|Q2_K|...` applies to
weights: searches over trial scales) into IQ4_NL_weights.json / IQ4_XS_weights.json /
Q2_K_weights.json ... Q6_K_weights.json, and the sha256 of the k-quants' blocks of a long
generated stream into K_stream.json.

For each GGML block type the engine dequantizes (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K,
IQ4_NL, IQ4_XS, Q3_K, Q2_K; and, with llama.cpp's dequantize_row_* as the reference, IQ2_XXS,
IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M, TQ1_0, TQ2_0, MXFP4 plus the sha256 of a long
generated stream of each, quant/IQ_stream.json)
a few blocks of random bytes are written, with every f16 scale field overwritten by a random
finite f16 (so the blocks are valid: no inf/NaN scales), next to the float32 values that gguf-py's
reference `gguf.quants.dequantize` (a NumPy port of ggml's dequantize_row_*) gives for them.
The byte offsets of the f16 fields follow ggml's block structs (block_q4_K: d, dmin, scales[12],
qs[128]; block_q6_K: ql[128], qh[64], scales[16], d; ...).
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType
from gguf.quants import dequantize, quantize

# type -> (number of blocks, byte offsets of its f16 fields, which of them are signed scales)
LAYOUT = {
    "Q8_0": (4, [0], [True]),
    "Q4_0": (4, [0], [True]),
    "Q4_1": (4, [0, 2], [False, True]),  # d, m (m is the block minimum: usually negative)
    "Q5_0": (4, [0], [True]),
    "Q5_1": (4, [0, 2], [False, True]),
    "Q4_K": (2, [0, 2], [False, False]),  # d, dmin
    "Q5_K": (2, [0, 2], [False, False]),
    "Q6_K": (2, [208], [True]),  # d is the last field of block_q6_K
    "IQ4_NL": (4, [0], [True]),  # last: the types before it keep their random bytes
    "IQ4_XS": (2, [0], [True]),
    "Q3_K": (2, [108], [False]),  # d is the last field of block_q3_K
    "Q2_K": (2, [80, 82], [False, False]),  # d, dmin after scales[16], qs[64]
}
SEED = 7

# Types whose reference values come from llama.cpp's own dequantizers (dequantize_row_* in
# libggml-base.so, LIBGGML_BASE) rather than gguf-py's NumPy ports, which are compared with them
# (the fixture's notes say whether they agree).
# type -> (number of blocks, byte offsets of its f16 fields); IQ1_M's d is spread over the top
# nibbles of its four 16-bit scale words, MXFP4's scale is the E8M0 byte 0.
LLAMACPP_LAYOUT = {
    "IQ2_XXS": (4, [0]),
    "IQ2_XS": (4, [0]),
    "IQ2_S": (4, [0]),
    "IQ3_XXS": (4, [0]),
    "IQ3_S": (4, [0]),
    "IQ1_S": (4, [0]),
    "IQ1_M": (4, []),
    "TQ1_0": (4, [52]),
    "TQ2_0": (4, [64]),
    "MXFP4": (8, []),
}


def random_f16(rng: np.random.Generator, signed: bool) -> np.ndarray:
    """One finite, normal f16 scale with magnitude in [1e-3, 1e-1]."""
    mag = 10.0 ** rng.uniform(-3.0, -1.0)
    sign = -1.0 if signed and rng.random() < 0.5 else 1.0
    return np.array([sign * mag], dtype=np.float16)


def fresh_dir(path: Path) -> Path:
    """`path` as a new, empty directory (whatever it held is removed)."""
    if path.exists():
        shutil.rmtree(path)
    path.mkdir()
    return path


def gen_quant(out_root: Path) -> None:
    out = fresh_dir(out_root / "quant")
    rng = np.random.default_rng(SEED)
    for name, (n_blocks, f16_offsets, signed) in LAYOUT.items():
        qtype = GGMLQuantizationType[name]
        _, type_size = GGML_QUANT_SIZES[qtype]
        raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
        for b in range(n_blocks):
            for off, sgn in zip(f16_offsets, signed):
                raw[b, off : off + 2] = random_f16(rng, sgn).view(np.uint8)
        values = dequantize(raw.reshape(-1), qtype).astype(np.float32).reshape(-1)
        write_quant_fixture(out, name, raw, values,
                            "gguf-py (PyPI gguf) gguf.quants.dequantize of those bytes, float32")
    gen_llamacpp_dequant(out, rng)


def write_quant_fixture(out: Path, name: str, raw: np.ndarray, values: np.ndarray,
                        source: str, note: str = "") -> None:
    """quant/<name>.bin (the blocks `raw`, one per row) and quant/<name>.json (their values,
    computed by `source`)."""
    qtype = GGMLQuantizationType[name]
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    n_blocks = raw.shape[0]
    n_elements = n_blocks * block_size
    if values.shape != (n_elements,) or not np.isfinite(values).all():
        raise RuntimeError(f"{name}: dequantize gave {values.shape} values or non-finite ones")
    (out / f"{name}.bin").write_bytes(raw.tobytes())
    doc = {
        "type": name,
        "n_elements": n_elements,
        "block_size": block_size,
        "type_size": type_size,
        "n_blocks": n_blocks,
        "values": [float(f"{v:.9g}") for v in values],
        "notes": f"{name}.bin = {n_blocks} raw ggml blocks of {type_size} bytes; values = {source}",
    }
    (out / f"{name}.json").write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    print(f"quant/{name}: {n_blocks} blocks, {n_elements} values{note}")


def set_iq1_m_d(block: np.ndarray, bits: int) -> None:
    """Write f16 bits `bits` as block_iq1_m's scale: nibble k of it is the top nibble of the
    16-bit word at byte 48 + 2k."""
    for k in range(4):
        at = 48 + 2 * k
        word = int(block[at]) | int(block[at + 1]) << 8
        word = (word & 0x0FFF) | ((bits >> (4 * k)) & 0xF) << 12
        block[at], block[at + 1] = word & 0xFF, word >> 8


def llamacpp_dequantize(lib_path: str, qtype: str, raw: bytes) -> np.ndarray:
    """llama.cpp's `dequantize_row_<type>(x, y, k)` of whole blocks `raw` (float32 values)."""
    block_size, type_size = GGML_QUANT_SIZES[GGMLQuantizationType[qtype]]
    fn = getattr(ctypes.CDLL(lib_path), f"dequantize_row_{qtype.lower()}")
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    fn.restype = None
    x = np.frombuffer(raw, dtype=np.uint8).copy()
    y = np.zeros(len(raw) // type_size * block_size, dtype=np.float32)
    fn(x.ctypes.data, y.ctypes.data, y.size)
    return y


def iq_stream(qtype: str, n_blocks: int) -> bytes:
    """Bytes from the 64-bit LCG state * 6364136223846793005 + 1442695040888963407 from
    0x1D5EED (advanced before each byte, the byte is state >> 56), n_blocks blocks of the type in
    a row; then every f16 scale field is given the bits 0x1C00 | (its random bits & 0x3FF) (a
    value in [2^-8, 2^-7)), IQ1_M's spread scale the bits 0x1C00 | (the low 10 bits of its word
    at byte 48), MXFP4's E8M0 byte e becomes 104 + e % 32 (2^-24 .. 2^7)."""
    _, type_size = GGML_QUANT_SIZES[GGMLQuantizationType[qtype]]
    state, out = 0x1D5EED, bytearray()
    for _ in range(n_blocks * type_size):
        state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
        out.append(state >> 56)
    raw = np.frombuffer(bytes(out), dtype=np.uint8).reshape(n_blocks, type_size).copy()
    _, offsets = LLAMACPP_LAYOUT[qtype]
    for block in raw:
        for at in offsets:
            bits = 0x1C00 | ((int(block[at]) | int(block[at + 1]) << 8) & 0x3FF)
            block[at], block[at + 1] = bits & 0xFF, bits >> 8
        if qtype == "IQ1_M":
            set_iq1_m_d(block, 0x1C00 | ((int(block[48]) | int(block[49]) << 8) & 0x3FF))
        if qtype == "MXFP4":
            block[0] = 104 + block[0] % 32
    return raw.tobytes()


IQ_STREAM_BLOCKS = 1024


def gen_llamacpp_dequant(out: Path, rng: np.random.Generator) -> None:
    """quant/<TYPE>.bin + .json for LLAMACPP_LAYOUT's types (random blocks with finite scales,
    llama.cpp's dequantized values), and quant/IQ_stream.json: the sha256 of llama.cpp's
    dequantization of IQ_STREAM_BLOCKS generated blocks of each (enough that every codebook row
    is used), which the test regenerates."""
    lib_path = libggml_base()
    for name, (n_blocks, f16_offsets) in LLAMACPP_LAYOUT.items():
        qtype = GGMLQuantizationType[name]
        _, type_size = GGML_QUANT_SIZES[qtype]
        raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
        for b in range(n_blocks):
            for off in f16_offsets:
                raw[b, off : off + 2] = random_f16(rng, True).view(np.uint8)
            if name == "IQ1_M":
                set_iq1_m_d(raw[b], int(random_f16(rng, True).view(np.uint16)[0]))
            if name == "MXFP4":
                raw[b, 0] = rng.integers(110, 136)
        values = llamacpp_dequantize(lib_path, name, raw.tobytes())
        gguf_py = dequantize(raw.reshape(-1), qtype).astype(np.float32).reshape(-1)
        agree = "agrees" if np.array_equal(values, gguf_py) else "DISAGREES"
        write_quant_fixture(out, name, raw, values,
                            f"llama.cpp's dequantize_row_{name.lower()} (libggml-base.so, ctypes) "
                            f"of those bytes, float32; gguf-py's gguf.quants.dequantize {agree}",
                            f" (gguf-py {agree})")
    doc = {
        "generator": iq_stream.__doc__,
        "n_blocks": IQ_STREAM_BLOCKS,
        "sha256": {
            name: hashlib.sha256(
                llamacpp_dequantize(lib_path, name, iq_stream(name, IQ_STREAM_BLOCKS)).tobytes()
            ).hexdigest()
            for name in LLAMACPP_LAYOUT
        },
        "notes": "sha256 of the little-endian float32 values of llama.cpp's dequantize_row_* "
        "(libggml-base.so, ctypes) of the generated blocks",
    }
    (out / "IQ_stream.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"quant/IQ_stream: {IQ_STREAM_BLOCKS} blocks per type, hashes only")


# The i-quant codebooks, in the order engine/src/quant/iq_grids.bin holds them: (gguf-py class,
# rows, values per row). Each value is one signed byte: IQ1_S / IQ1_M's -1 / 0 / 1, IQ2's 8 / 25 /
# 43, IQ3's 4 .. 62 (IQ3_XXS) or 1 .. 15 (IQ3_S).
GRIDS = [("IQ1_S", 2048, 8), ("IQ2_XXS", 256, 8), ("IQ2_XS", 512, 8), ("IQ2_S", 1024, 8),
         ("IQ3_XXS", 256, 4), ("IQ3_S", 512, 4)]


def gen_iq_grids(path: Path) -> None:
    """The codebooks of ggml's i-quants (a format fact: a reader cannot decode IQ1 .. IQ3 blocks
    without them) from gguf-py's copies, as signed bytes, to `path`."""
    import gguf.quants as quants

    out = bytearray()
    for name, rows, per_row in GRIDS:
        cls = getattr(quants, name)
        cls.init_grid()
        grid = np.asarray(cls.grid, dtype=np.float32).reshape(rows, per_row)
        out += grid.astype(np.int8).tobytes()
    path.write_bytes(bytes(out))
    print(f"{path}: {len(out)} bytes")


# the k-quants whose llama.cpp weight quantizers specsweep reproduces
K_QUANTS = ["Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]

# the block formats specsweep quantizes to (its quantization axis and KV cache types)
QUANTIZE_TYPES = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"]
QUANTIZE_SEED = 11


def quantize_inputs(rng: np.random.Generator) -> np.ndarray:
    """Seven blocks of 32 float32 values: normal; normal with magnitudes over six decades; all
    zeros; a tie of the largest magnitude (+2 and -2, the first must win) with values on a coarse
    grid; a constant block (q4_1 / q5_1 scale 0); and two blocks whose values land exactly on
    rounding boundaries: -16 with the half-integers -15.5 .. 14.5 (q5_0's and q5_1's scale is 1,
    so x / d + 16.5 and (x - min) / d + 0.5 are integers), and -16 with the odd integers (q4_0's
    scale is 2, so x / d + 8.5 is an integer)."""
    normal = rng.standard_normal(32)
    wide = rng.standard_normal(32) * 10.0 ** rng.uniform(-3.0, 3.0, 32)
    zeros = np.zeros(32)
    ties = np.round(rng.uniform(-2.0, 2.0, 32) * 4.0) / 4.0
    ties[5], ties[17] = 2.0, -2.0
    constant = np.full(32, 0.75)
    halves = np.concatenate([[-16.0], np.arange(-15.5, 15.0, 1.0)])
    odds = np.concatenate([[-16.0], np.arange(-15.0, 16.0, 2.0), np.arange(-13.0, 16.0, 2.0)])
    blocks = [normal, wide, zeros, ties, constant, halves, odds]
    if any(b.shape != (32,) for b in blocks):
        raise RuntimeError("every input block must hold 32 values")
    return np.concatenate(blocks).astype(np.float32)


# ggml's kvalues_iq4nl
IQ4_NL_GRID = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113]


def iq4_nl_inputs(rng: np.random.Generator) -> np.ndarray:
    """quantize_inputs without its all-zero block (ggml leaves a zero block's nibbles as whatever
    its index buffer last held: only its values, all 0, are defined), plus a block that puts every
    value exactly on a level or halfway between two, and a zero (-127 first, so the first scale
    is 1: the halfway values are ties, which ggml's best_index_int8 gives the upper level)."""
    base = quantize_inputs(rng).reshape(-1, 32)
    grid = np.array(IQ4_NL_GRID, dtype=np.float64)
    halfway = (grid[:-1] + grid[1:]) / 2.0
    exact = np.concatenate([[-127.0], grid[1:], halfway, [0.0]])
    blocks = [b for b in base if b.any()] + [exact]
    if any(b.shape != (32,) for b in blocks):
        raise RuntimeError("every input block must hold 32 values")
    return np.concatenate(blocks).astype(np.float32)


def k_quant_stream(n_superblocks: int) -> np.ndarray:
    """u = ((state >> 33) % 20001 - 10000) / 10000 in float32, state the 64-bit LCG state * 6364136223846793005 + 1442695040888963407 from 0x5EED (advanced before each value); super-block s is u (s % 4 == 0), u * u * u (1), u + 0.5 (2), or u with value (7 s) % 256 times 64 (3), all times 2^((s % 13) - 6), every operation in float32."""
    state, ints = 0x5EED, []
    for _ in range(n_superblocks * 256):
        state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
        ints.append((state >> 33) % 20001 - 10000)
    u = (np.array(ints, dtype=np.float32) / np.float32(10000)).reshape(n_superblocks, 256)
    out = []
    for s, row in enumerate(u):
        if s % 4 == 1:
            row = row * row * row
        elif s % 4 == 2:
            row = row + np.float32(0.5)
        elif s % 4 == 3:
            row = row.copy()
            row[(7 * s) % 256] *= np.float32(64)
        out.append(row * np.float32(2.0 ** ((s % 13) - 6)))
    return np.concatenate(out).astype(np.float32)


def libggml_base() -> str:
    """The llama.cpp library whose IQ4_NL quantizer is the reference (LIBGGML_BASE)."""
    lib_path = os.environ.get("LIBGGML_BASE")
    if not lib_path:
        raise RuntimeError(
            "IQ4_NL: set LIBGGML_BASE to a llama.cpp build's libggml-base.so (its quantizer is the "
            "reference; gguf-py has none)"
        )
    return lib_path


def llamacpp_quantize(lib_path: str, function: str, values: np.ndarray, qtype: str) -> bytes:
    """llama.cpp's quantizer `function` of `values` (float32, whole blocks of `qtype`):
    `quantize_row_*_ref(x, y, k)`, or `quantize_*(src, dst, nrow, n_per_row, quant_weights)` on
    one row without an importance matrix (what llama-quantize runs on weights)."""
    block_size, type_size = GGML_QUANT_SIZES[GGMLQuantizationType[qtype]]
    fn = getattr(ctypes.CDLL(lib_path), function)
    x = np.ascontiguousarray(values, dtype=np.float32)
    out = np.zeros(x.size // block_size * type_size, dtype=np.uint8)
    if function.endswith("_ref"):
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        fn.restype = None
        fn(x.ctypes.data, out.ctypes.data, x.size)
    else:
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
        fn.restype = ctypes.c_size_t
        written = fn(x.ctypes.data, out.ctypes.data, 1, x.size, None)
        if written != out.size:
            raise RuntimeError(f"{function} wrote {written} bytes, expected {out.size}")
    return out.tobytes()


def write_llamacpp_fixture(out: Path, stem: str, qtype: str, function: str, values: np.ndarray,
                           lib_path: str, how: str) -> None:
    """quantize/<stem>.json: `values`, llama.cpp's `function` blocks of them, and gguf-py's
    dequantization of those blocks."""
    blocks = llamacpp_quantize(lib_path, function, values, qtype)
    back = dequantize(np.frombuffer(blocks, dtype=np.uint8), GGMLQuantizationType[qtype])
    doc = {
        "type": qtype,
        "input": [float(v) for v in values],
        "blocks_hex": blocks.hex(),
        "values": [float(v) for v in back.astype(np.float32)],
        "notes": f"blocks_hex = llama.cpp's {function} (libggml-base.so, ctypes{how}) of input "
        "(float32); values = gguf-py (PyPI gguf) gguf.quants.dequantize of those blocks",
    }
    (out / f"{stem}.json").write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    print(f"quantize/{stem}: {values.size} values, {len(blocks)} bytes")


def gen_quantize(out_root: Path) -> None:
    # before the directory is emptied: without the library its committed IQ4_NL.json would be lost
    lib_path = libggml_base()
    out = fresh_dir(out_root / "quantize")
    rng = np.random.default_rng(QUANTIZE_SEED)
    values = quantize_inputs(rng)
    for name in QUANTIZE_TYPES:
        qtype = GGMLQuantizationType[name]
        blocks = quantize(values.reshape(1, -1), qtype).reshape(-1)
        doc = {
            "type": name,
            "input": [float(v) for v in values],
            "blocks_hex": blocks.tobytes().hex(),
            "notes": "blocks_hex = gguf-py (PyPI gguf) gguf.quants.quantize of input (float32), "
            "a NumPy port of ggml's quantize_row_*_ref",
        }
        (out / f"{name}.json").write_text(json.dumps(doc, separators=(",", ":")) + "\n")
        print(f"quantize/{name}: {values.size} values, {blocks.size} bytes")
    values = iq4_nl_inputs(np.random.default_rng(QUANTIZE_SEED))
    write_llamacpp_fixture(out, "IQ4_NL", "IQ4_NL", "quantize_row_iq4_nl_ref", values, lib_path, "")
    # weights: the same inputs plus an all-zero block (defined here: scale 0, every index 8)
    weights = np.concatenate([values, np.zeros(32, dtype=np.float32)])
    weight_quantizer = "; one row, no importance matrix: llama-quantize's weight quantizer"
    write_llamacpp_fixture(out, "IQ4_NL_weights", "IQ4_NL", "quantize_iq4_nl", weights, lib_path,
                           weight_quantizer)
    # IQ4_XS: those 256 values as one super-block; one whose sub-blocks span eight decades (the
    # 6-bit sub-scales clamp and round to 0); an all-zero one (d = -0, every index 8)
    rng = np.random.default_rng(QUANTIZE_SEED + 1)
    decades = np.concatenate([rng.standard_normal(32) * 10.0 ** (k - 4) for k in range(8)])
    xs = np.concatenate([weights, decades, np.zeros(256)]).astype(np.float32)
    write_llamacpp_fixture(out, "IQ4_XS_weights", "IQ4_XS", "quantize_iq4_xs", xs, lib_path,
                           weight_quantizer)
    # the k-quants: those three super-blocks, one of positive values only (the affine fit's
    # min clamps to 0), one of negative values only, one normal with a single outlier 1000x larger
    rng = np.random.default_rng(QUANTIZE_SEED + 2)
    normal = rng.standard_normal(256)
    outlier = normal.copy()
    outlier[77] = 1000.0 * np.abs(normal).max()
    ks = np.concatenate([xs, np.abs(rng.standard_normal(256)) + 0.5,
                         -np.abs(rng.standard_normal(256)) * 1e-3, outlier]).astype(np.float32)
    for name in K_QUANTS:
        write_llamacpp_fixture(out, f"{name}_weights", name, f"quantize_{name.lower()[:2]}_K", ks,
                               lib_path, weight_quantizer)
    # and 512 generated super-blocks (the test regenerates them) of which only the sha256 of
    # llama.cpp's blocks is kept: enough fits that the searches' rarely winning trials matter
    many = k_quant_stream(512)
    doc = {
        "generator": k_quant_stream.__doc__,
        "n_superblocks": 512,
        "sha256": {
            name: hashlib.sha256(
                llamacpp_quantize(lib_path, f"quantize_{name.lower()[:2]}_K", many, name)
            ).hexdigest()
            for name in K_QUANTS
        },
        "notes": "sha256 of llama.cpp's quantize_q2_K ... quantize_q6_K (libggml-base.so, ctypes; one "
        "row, no importance matrix) of the generated values",
    }
    (out / "K_stream.json").write_text(json.dumps(doc, indent=1) + "\n")
    print(f"quantize/K_stream: {many.size} values, hashes only")


# A qwen2 model 256 wide (whole k-quant super-blocks) whose projections are random Q2_K, Q3_K, Q5_K
# and IQ4_XS blocks: the tiny checkpoint fixtures are 64 wide, which none of these types can store.
BLOCKS_GGUF = "qwen2-256-blocks.gguf"
BLOCKS_SEED = 23


def random_blocks(rng: np.random.Generator, qtype: str, rows: int, cols: int) -> np.ndarray:
    """Random bytes as `rows x cols` weights of `qtype`, with the f16 super-block scale set so
    that weights are of order 0.1 (Q3_K: d at byte 108; IQ4_XS: d at byte 0; Q2_K: d and dmin at
    bytes 80 and 82; Q5_K: d and dmin at bytes 0 and 2; the IQ1 .. IQ3 types: d at byte 0, IQ1_M's
    spread over its scale words; TQ1_0 / TQ2_0: d at byte 52 / 64; MXFP4: E8M0 byte 0)."""
    block_size, type_size = GGML_QUANT_SIZES[GGMLQuantizationType[qtype]]
    raw = rng.integers(0, 256, size=(rows * cols // block_size, type_size), dtype=np.uint8)
    fields = {
        "Q3_K": [(108, 2e-3)],
        "Q2_K": [(80, 2e-3), (82, 2e-3)],
        "Q5_K": [(0, 1e-4), (2, 1e-3)],
        "IQ2_XXS": [(0, 4e-4)],
        "IQ2_XS": [(0, 4e-4)],
        "IQ2_S": [(0, 4e-4)],
        "IQ3_XXS": [(0, 2.5e-4)],
        "IQ3_S": [(0, 2.5e-4)],
        "IQ1_S": [(0, 5e-3)],
        "IQ1_M": [],
        "TQ1_0": [(52, 5e-2)],
        "TQ2_0": [(64, 5e-2)],
        "MXFP4": [],
    }.get(qtype, [(0, 1e-4)])
    for b in range(raw.shape[0]):
        for at, scale in fields:
            d = np.array([scale * rng.uniform(0.5, 1.5)], dtype=np.float16)
            raw[b, at : at + 2] = d.view(np.uint8)
        if qtype == "IQ1_M":
            d = np.array([5e-3 * rng.uniform(0.5, 1.5)], dtype=np.float16)
            set_iq1_m_d(raw[b], int(d.view(np.uint16)[0]))
        if qtype == "MXFP4":
            raw[b, 0] = rng.integers(119, 124)
    return raw.reshape(rows, cols // block_size * type_size)


# The same model with every matrix in a type that has no kernel of its own: the i-quants, the
# ternary types and MXFP4 (each tensor's type in `IQ_TYPES`).
IQ_BLOCKS_GGUF = "qwen2-256-iq.gguf"
IQ_BLOCKS_SEED = 29
IQ_TYPES = {
    "token_embd.weight": "IQ3_S",
    "output.weight": "IQ2_XXS",
    "blk.0.attn_q.weight": "IQ3_XXS",
    "blk.0.attn_k.weight": "IQ1_S",
    "blk.0.attn_v.weight": "TQ1_0",
    "blk.0.attn_output.weight": "MXFP4",
    "blk.0.ffn_gate.weight": "IQ2_XS",
    "blk.0.ffn_up.weight": "IQ1_M",
    "blk.0.ffn_down.weight": "TQ2_0",
    "blk.1.attn_q.weight": "IQ3_S",
    "blk.1.attn_k.weight": "MXFP4",
    "blk.1.attn_v.weight": "IQ2_S",
    "blk.1.attn_output.weight": "IQ1_M",
    "blk.1.ffn_gate.weight": "IQ3_XXS",
    "blk.1.ffn_up.weight": "TQ2_0",
    "blk.1.ffn_down.weight": "IQ1_S",
}


def gen_gguf_blocks(out_root: Path) -> None:
    """tests/fixtures/gguf-blocks/qwen2-256-blocks.gguf: qwen2-tiny.gguf's tokenizer and
    hyper-parameters at width 256 (FFN 512, 4 heads of 64, 2 KV heads), every projection and the
    embedding / output random Q2_K, Q3_K, Q5_K or IQ4_XS blocks, norms and biases f32; and
    qwen2-256-iq.gguf, the same shapes in the types of `IQ_TYPES`."""
    out = fresh_dir(out_root / "gguf-blocks")
    write_blocks_gguf(out_root, out / BLOCKS_GGUF, BLOCKS_SEED, None)
    write_blocks_gguf(out_root, out / IQ_BLOCKS_GGUF, IQ_BLOCKS_SEED, IQ_TYPES)


def write_blocks_gguf(out_root: Path, path: Path, seed: int, types: dict[str, str] | None) -> None:
    """One 256-wide qwen2 of random blocks at `path`: the k-quant / IQ4_XS mix below, or each
    matrix in its type from `types`."""
    from gguf import GGUFReader, GGUFValueType, GGUFWriter

    source = GGUFReader(str(out_root / "gguf" / "qwen2-tiny.gguf"))
    writer = GGUFWriter(str(path), "qwen2")
    overrides = {
        "qwen2.embedding_length": 256,
        "qwen2.feed_forward_length": 512,
        "general.name": "Qwen2 256 blocks",
        # MOSTLY_Q3_K_S, nearest description of a k-quant / IQ4_XS mix; MOSTLY_IQ3_XXS
        "general.file_type": 11 if types is None else 23,
    }
    for key, field in source.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        value = overrides.get(key, field.contents())
        main = field.types[0]
        sub = field.types[1] if main == GGUFValueType.ARRAY else None
        writer.add_key_value(key, value, main, sub_type=sub)
    rng = np.random.default_rng(seed)
    vocab, hidden, ffn, kv = 320, 256, 512, 128
    # (name, rows, cols, type); ggml order puts cols first in the tensor's shape
    mats = [("token_embd.weight", vocab, hidden, "Q3_K"), ("output.weight", vocab, hidden, "IQ4_XS")]
    for layer in range(2):
        p = f"blk.{layer}."
        # Q2_K for layer 0's V and gate and layer 1's Q and down, Q3_K for the others; Q5_K
        # for layer 0's output and layer 1's up projection, IQ4_XS for the others
        k2, k3 = ("Q2_K", "Q3_K") if layer == 0 else ("Q3_K", "Q2_K")
        k5, iq = ("Q5_K", "IQ4_XS") if layer == 0 else ("IQ4_XS", "Q5_K")
        mats += [
            (p + "attn_q.weight", hidden, hidden, k3),
            (p + "attn_k.weight", kv, hidden, "IQ4_XS"),
            (p + "attn_v.weight", kv, hidden, k2),
            (p + "attn_output.weight", hidden, hidden, k5),
            (p + "ffn_gate.weight", ffn, hidden, k2),
            (p + "ffn_up.weight", ffn, hidden, iq),
            (p + "ffn_down.weight", hidden, ffn, k3),
        ]
    for name, rows, cols, qtype in mats:
        qtype = qtype if types is None else types[name]
        raw = random_blocks(rng, qtype, rows, cols)
        writer.add_tensor(name, raw, raw_dtype=GGMLQuantizationType[qtype])
    for layer in range(2):
        p = f"blk.{layer}."
        for name, n in [("attn_norm.weight", hidden), ("ffn_norm.weight", hidden)]:
            writer.add_tensor(p + name, (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32))
        for name, n in [("attn_q.bias", hidden), ("attn_k.bias", kv), ("attn_v.bias", kv)]:
            writer.add_tensor(p + name, (0.1 * rng.standard_normal(n)).astype(np.float32))
    writer.add_tensor("output_norm.weight", (1.0 + 0.1 * rng.standard_normal(hidden)).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print(f"{path}: {path.stat().st_size} bytes")
