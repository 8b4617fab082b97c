"""Writes tests/golden/quants/dequantize.json: blocks of every quantised format Hearth reads, with
the values llama.cpp's gguf-py (`gguf.quants.dequantize`, the numpy twin of ggml's
`dequantize_row_*`) gives for them. Blocks are random bytes whose f16/bf16 scale fields are set
to finite values, seeded, so a rerun gives the same file.

Usage: make-quant-goldens.py OUT.json
"""

import importlib.metadata
import json
import sys

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize

rng = np.random.default_rng(20261128)


def f16_bytes(count, scale):
    return (rng.uniform(-scale, scale, count)).astype(np.float16).tobytes()


def blocks(kind, n_blocks):
    """Random blocks of `kind` with their scale fields made finite; (bytes, values)."""
    block_size, type_size = GGML_QUANT_SIZES[kind]
    out = bytearray()
    for _ in range(n_blocks):
        raw = bytearray(rng.integers(0, 256, type_size, dtype=np.uint8).tobytes())
        if kind in (T.Q5_0,):
            raw[0:2] = f16_bytes(1, 0.1)
        elif kind in (T.Q5_1,):
            raw[0:2] = f16_bytes(1, 0.1)
            raw[2:4] = f16_bytes(1, 1.0)
        elif kind in (T.Q4_K, T.Q5_K):
            raw[0:4] = f16_bytes(2, 0.01)  # d, dmin
        elif kind == T.Q6_K:
            raw[208:210] = f16_bytes(1, 0.01)  # d comes last
        elif kind == T.BF16:
            values = rng.normal(0, 3, type_size // 2 * block_size).astype(np.float32)
            raw = bytearray((values.view(np.uint32) >> 16).astype(np.uint16).tobytes())
        out += raw
    data = np.frombuffer(bytes(out), dtype=np.uint8)
    values = dequantize(data, kind).astype(np.float32).reshape(-1)
    return bytes(out), values


cases = {}
for kind, n_blocks in [(T.Q5_0, 8), (T.Q5_1, 8), (T.Q4_K, 4), (T.Q5_K, 4), (T.Q6_K, 4), (T.BF16, 256)]:
    raw, values = blocks(kind, n_blocks)
    cases[kind.name] = {"bytes": raw.hex(), "values": [float(v) for v in values]}

with open(sys.argv[1], "w") as f:
    source = "gguf-py " + importlib.metadata.version("gguf")
    json.dump({"source": source, "cases": cases}, f, separators=(",", ":"))
    f.write("\n")
