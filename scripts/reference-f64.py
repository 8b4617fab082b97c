#!/usr/bin/env python3
"""Float64 reference forward pass of a llama or qwen2 GGUF model, as llama.cpp's graphs compute it
but in float64 and without quantising activations: the exact logits of the file's weights.

    reference-f64.py MODEL.gguf TOKENS_JSON

TOKENS_JSON is a JSON array of token ids (a prompt then generated tokens), inline or a file name.
One teacher-forced pass over the whole sequence (causal attention, no KV cache). Prints one JSON
object: {"model", "tokens", "steps": [{"pos", "top": [[id, logit] x 8, highest first], "margin"}]},
where step i holds the logits predicting token i + 1. Weights are dequantised a few million values
at a time with gguf-py, so memory stays near one layer's activations even for 3B models.
"""
import json
import sys
import time
from pathlib import Path

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

CHUNK = 1 << 23  # weights dequantised at once (8M: ~100 MB in float32 + float64)
TOP = 8


def main():
    path, arg = sys.argv[1], sys.argv[2]
    tokens = json.loads(arg if arg.lstrip().startswith("[") else Path(arg).read_text())
    start = time.time()
    r = GGUFReader(path)
    meta = lambda key, default=None: r.fields[key].contents() if key in r.fields else default  # noqa: E731
    arch = meta("general.architecture")
    rope_neox = {"llama": False, "qwen2": True}.get(arch)
    if rope_neox is None:
        sys.exit(f"reference-f64: architecture {arch} not supported (llama, qwen2)")
    a = lambda key, default=None: meta(f"{arch}.{key}", default)  # noqa: E731
    dim, n_layers = a("embedding_length"), a("block_count")
    n_head = a("attention.head_count")
    n_kv = a("attention.head_count_kv", n_head)
    hd = a("attention.key_length", dim // n_head)
    n_rot = a("rope.dimension_count", hd)
    base, eps = a("rope.freq_base", 10000.0), a("attention.layer_norm_rms_epsilon")
    vocab = len(r.fields["tokenizer.ggml.tokens"].data)
    assert all(0 <= t < vocab for t in tokens), "token id out of range"
    ts = {t.name: t for t in r.tensors}

    def deq(t, rows=slice(None)):
        return dequantize(np.asarray(t.data[rows]), t.tensor_type).astype(np.float64)

    def vector(name):
        return deq(ts[name]).reshape(-1)

    def matmul(name, x):
        """x @ W.T for W of GGUF dims [cols, rows] (dequantised to [rows][cols]): y = W x per token."""
        t = ts[name]
        cols, rows = int(t.shape[0]), int(t.shape[1])
        step = max(1, CHUNK // cols)
        y = np.empty((x.shape[0], rows))
        for r0 in range(0, rows, step):
            y[:, r0:r0 + step] = x @ deq(t, slice(r0, r0 + step)).T
        return y

    def rms_norm(x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w

    n = len(tokens)
    # theta[p, i] = p * base^(-2i / n_rot), computed directly in float64.
    theta = np.arange(n, dtype=np.float64)[:, None] * base ** (-2.0 * np.arange(n_rot // 2) / n_rot)
    cos, sin = np.cos(theta)[:, None, :], np.sin(theta)[:, None, :]

    def rope(x, heads):
        """llama: ggml's normal mode, adjacent pairs (x[2i], x[2i+1]); qwen2: NeoX mode, (x[i], x[i + n_rot/2])."""
        x = x.reshape(n, heads, hd).copy()
        ia, ib = (np.arange(n_rot // 2), np.arange(n_rot // 2) + n_rot // 2) if rope_neox else \
            (np.arange(0, n_rot, 2), np.arange(1, n_rot, 2))
        xa, xb = x[..., ia], x[..., ib]
        x[..., ia], x[..., ib] = xa * cos - xb * sin, xa * sin + xb * cos
        return x

    x = deq(ts["token_embd.weight"], tokens)  # [n][dim]
    causal = np.triu(np.ones((n, n), dtype=bool), 1)
    for i in range(n_layers):
        p = f"blk.{i}."
        h = rms_norm(x, vector(p + "attn_norm.weight"))
        q, k, v = (matmul(p + f"attn_{m}.weight", h) for m in "qkv")
        if p + "attn_q.bias" in ts:
            q, k, v = (y + vector(p + f"attn_{m}.bias") for y, m in zip((q, k, v), "qkv"))
        q, k = rope(q, n_head), rope(k, n_kv)
        # Grouped-query attention: query head h reads kv head h // (n_head / n_kv).
        k = np.repeat(k, n_head // n_kv, axis=1)
        v = np.repeat(v.reshape(n, n_kv, hd), n_head // n_kv, axis=1)
        s = np.einsum("qhd,khd->hqk", q, k) / np.sqrt(hd)
        s[:, causal] = -np.inf
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        s /= s.sum(axis=-1, keepdims=True)
        att = np.einsum("hqk,khd->qhd", s, v).reshape(n, n_head * hd)
        x = x + matmul(p + "attn_output.weight", att)
        h = rms_norm(x, vector(p + "ffn_norm.weight"))
        gate, up = matmul(p + "ffn_gate.weight", h), matmul(p + "ffn_up.weight", h)
        x = x + matmul(p + "ffn_down.weight", gate / (1.0 + np.exp(-gate)) * up)
    h = rms_norm(x, vector("output_norm.weight"))
    logits = matmul("output.weight" if "output.weight" in ts else "token_embd.weight", h)  # tied if no output

    steps = []
    for pos, row in enumerate(logits):
        top = np.argpartition(-row, TOP)[:TOP]
        top = top[np.argsort(-row[top], kind="stable")]
        steps.append({"pos": pos, "top": [[int(t), float(row[t])] for t in top],
                      "margin": float(row[top[0]] - row[top[1]])})
    json.dump({"model": Path(path).name, "tokens": tokens, "steps": steps}, sys.stdout)
    print()
    print(f"reference-f64: {Path(path).name}, {n} tokens, {time.time() - start:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
