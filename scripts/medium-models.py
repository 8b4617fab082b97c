#!/usr/bin/env python3
"""Writes synthetic medium-size test models (Llama 3.2 1B and 3B, Qwen2.5 1.5B shapes) as GGUF.

    medium-models.py TOKENIZER_MODEL.gguf OUT_DIR [NAME...]
    medium-models.py TOKENIZER_MODEL.gguf --too-large PATH

No medium GGUF can be downloaded here, so the weights are seeded random bytes: quantised blocks
are drawn directly (quantising float matrices would take far too long for 3B), then each block's
f16 scale is set so the dequantised weights have a standard deviation of about gain/sqrt(cols).
The same script always writes the same bytes. The tokenizer and chat template are copied from
TOKENIZER_MODEL (the default SmolLM2 model). A file is written to NAME.tmp, read back and checked,
renamed, and only then marked done by NAME.done; a file with a current .done is skipped.
--too-large writes a Llama-3.1-405B-shaped Q4_0 file (about 229 GB, more than any machine that
runs the tests has) whose tensor data is a sparse
hole: only its header is real, for testing that a loader refuses it before reading the weights.
"""
import os
import sys
import time
import zlib
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as Q, GGUFReader, GGUFValueType as V, GGUFWriter, LlamaFileType
from gguf.constants import GGML_QUANT_SIZES
from gguf.quants import dequantize

# Bump when the generator changes what it writes, so cached files are rewritten.
VERSION = "medium-models 1"
CONTEXT = 4096  # smaller than the real models' 131072 on purpose

SHAPES = {
    "llama-1b": dict(arch="llama", dim=2048, layers=16, heads=32, kv_heads=8, ffn=8192,
                     rope_base=500000.0, eps=1e-5, biases=False, label="llama 1B"),
    "qwen2-1b": dict(arch="qwen2", dim=1536, layers=28, heads=12, kv_heads=2, ffn=8960,
                     rope_base=1000000.0, eps=1e-6, biases=True, label="qwen2 1.5B"),
    "llama-3b": dict(arch="llama", dim=3072, layers=28, heads=24, kv_heads=8, ffn=8192,
                     rope_base=500000.0, eps=1e-5, biases=False, label="llama 3B"),
    "llama-405b": dict(arch="llama", dim=16384, layers=126, heads=128, kv_heads=8, ffn=53248,
                       rope_base=500000.0, eps=1e-5, biases=False, label="llama 405B (header only)"),
}
MODELS = {
    "llama-1b-q4_0.gguf": ("llama-1b", Q.Q4_0),
    "llama-1b-q8_0.gguf": ("llama-1b", Q.Q8_0),
    "llama-1b-q4_k.gguf": ("llama-1b", Q.Q4_K),
    "qwen2-1b-q4_0.gguf": ("qwen2-1b", Q.Q4_0),
    "llama-3b-q4_0.gguf": ("llama-3b", Q.Q4_0),
}
FILE_TYPE = {Q.Q4_0: LlamaFileType.MOSTLY_Q4_0, Q.Q8_0: LlamaFileType.MOSTLY_Q8_0,
             Q.Q4_K: LlamaFileType.MOSTLY_Q4_K_S}
# Logits (a normalised hidden state · an embedding row) get a std of about this.
LOGIT_STD = 2.5


def tensor_list(s, vocab):
    """(name, kind, rows, cols) in file order; kind: matrix, embd, norm or bias (rows = length)."""
    hd = s["dim"] // s["heads"]
    q_dim, kv_dim, dim, ffn = s["heads"] * hd, s["kv_heads"] * hd, s["dim"], s["ffn"]
    out = [("token_embd.weight", "embd", vocab, dim)]
    for i in range(s["layers"]):
        p = f"blk.{i}."
        out.append((p + "attn_norm.weight", "norm", dim, 1))
        out += [(p + "attn_q.weight", "matrix", q_dim, dim), (p + "attn_k.weight", "matrix", kv_dim, dim),
                (p + "attn_v.weight", "matrix", kv_dim, dim)]
        if s["biases"]:
            out += [(p + "attn_q.bias", "bias", q_dim, 1), (p + "attn_k.bias", "bias", kv_dim, 1),
                    (p + "attn_v.bias", "bias", kv_dim, 1)]
        out += [(p + "attn_output.weight", "matrix", dim, q_dim), (p + "ffn_norm.weight", "norm", dim, 1),
                (p + "ffn_gate.weight", "matrix", ffn, dim), (p + "ffn_up.weight", "matrix", ffn, dim),
                (p + "ffn_down.weight", "matrix", dim, ffn)]
    out.append(("output_norm.weight", "norm", s["dim"], 1))
    return out


def random_blocks(rng, qtype, n_blocks, scale):
    """n_blocks random blocks of qtype as uint8 [n_blocks, type_size], with block scales of about
    `scale` (times a per-block jitter in 0.5..1.5, so kernels see varying scales).
    Q4_0's random nibbles average -0.5, so its d gets a random sign (as llama.cpp's quantiser's
    does) for a zero mean; Q8_0's bias (-0.5 of std 74) is negligible and its d stays positive as
    in real files; Q4_K's dmin is 7.5·d, which cancels the mean of d·sc·q (sc, m, q uniform)."""
    _, type_size = GGML_QUANT_SIZES[qtype]
    b = rng.integers(0, 256, (n_blocks, type_size), dtype=np.uint8)
    d = scale * rng.uniform(0.5, 1.5, n_blocks)
    if qtype == Q.Q4_0:
        d *= rng.choice([-1.0, 1.0], n_blocks)
    b[:, 0:2] = d.astype("<f2").view(np.uint8).reshape(n_blocks, 2)
    if qtype == Q.Q4_K:
        b[:, 2:4] = (7.5 * d).astype("<f2").view(np.uint8).reshape(n_blocks, 2)
    return b


def unit_std(qtype):
    """The std of weights dequantised from random_blocks(scale=1), measured on a sample."""
    w = dequantize(random_blocks(np.random.default_rng(0), qtype, 16384, 1.0), qtype).astype(np.float64)
    return w.std()


def tokenizer_kvs(path):
    """Every tokenizer.* key of the model at path, as (key, value, type, sub_type), types kept.
    Strings stay bytes, so they are copied exactly."""
    r = GGUFReader(path)
    out = []
    for key, f in r.fields.items():
        if not key.startswith("tokenizer."):
            continue
        main = f.types[0]
        if main == V.ARRAY:
            sub = f.types[-1]
            if sub == V.STRING:
                val = [bytes(f.parts[i]) for i in f.data]
            else:
                val = [v for i in f.data for v in f.parts[i].tolist()]
            out.append((key, val, main, sub))
        elif main == V.STRING:
            out.append((key, bytes(f.parts[-1]), main, None))
        else:
            out.append((key, f.parts[-1].tolist()[0], main, None))
    return out


def write_model(path, name, shape, qtype, tok, unit, header_only=False):
    s = SHAPES[shape]
    vocab = next(len(v) for k, v, _, _ in tok if k == "tokenizer.ggml.tokens")
    block_size, type_size = GGML_QUANT_SIZES[qtype]
    tensors = tensor_list(s, vocab)
    w = GGUFWriter(path, s["arch"])
    w.add_name(f"Hearth synthetic {s['label']} {qtype.name}")
    w.add_file_type(FILE_TYPE[qtype])
    w.add_quantization_version(2)
    w.add_vocab_size(vocab)
    w.add_context_length(CONTEXT)
    w.add_embedding_length(s["dim"])
    w.add_block_count(s["layers"])
    w.add_feed_forward_length(s["ffn"])
    w.add_head_count(s["heads"])
    w.add_head_count_kv(s["kv_heads"])
    w.add_rope_dimension_count(s["dim"] // s["heads"])
    w.add_rope_freq_base(s["rope_base"])
    w.add_layer_norm_rms_eps(s["eps"])
    for key, val, vtype, sub in tok:
        w.add_key_value(key, val, vtype, sub)
    for tname, kind, rows, cols in tensors:
        if kind in ("matrix", "embd"):
            nbytes = rows * cols // block_size * type_size
            w.add_tensor_info(tname, (rows, cols // block_size * type_size), np.dtype(np.uint8), nbytes, raw_dtype=qtype)
        else:
            w.add_tensor_info(tname, (rows,), np.dtype(np.float32), rows * 4)
    # Header, metadata and tensor infos first, then one tensor at a time: memory stays at one tensor.
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    if header_only:  # the data as a hole: the file has its full size but takes no disk
        size = GGUFWriter.ggml_pad(w.fout[0].tell(), w.data_alignment)
        size += sum(GGUFWriter.ggml_pad(ti.nbytes, w.data_alignment) for ti in w.tensors[0].values())
        w.close()
        os.truncate(path, size)
        return tensors
    seed = zlib.crc32(name.encode())
    for tname, kind, rows, cols in tensors:
        rng = np.random.default_rng([seed, zlib.crc32(tname.encode())])
        if kind == "norm":
            data = rng.uniform(0.8, 1.2, rows).astype(np.float32)
        elif kind == "bias":
            data = rng.uniform(-0.5, 0.5, rows).astype(np.float32)
        else:
            std = (LOGIT_STD if kind == "embd" else 1.0) / np.sqrt(cols)
            data = random_blocks(rng, qtype, rows * cols // block_size, std / unit[qtype])
            data = data.reshape(rows, cols // block_size * type_size)
        w.write_tensor_data(data)
        del data
    w.close()
    return tensors


def check_model(path, tensors, qtype):
    """Reads the file back: every tensor's name, dims and type; a few rows' mean and std."""
    r = GGUFReader(path)
    got = {t.name: t for t in r.tensors}
    assert len(r.tensors) == len(tensors), f"{len(r.tensors)} tensors, expected {len(tensors)}"
    for tname, kind, rows, cols in tensors:
        t = got[tname]
        quant = kind in ("matrix", "embd")
        dims = [cols, rows] if quant else [rows]
        assert list(t.shape) == dims, f"{tname}: dims {list(t.shape)}, expected {dims}"
        assert t.tensor_type == (qtype if quant else Q.F32), f"{tname}: {t.tensor_type.name}"
    for tname in ["token_embd.weight", "blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.ffn_down.weight",
                  f"blk.{max(int(n.split('.')[1]) for n in got if n.startswith('blk.'))}.ffn_gate.weight"]:
        t = got[tname]
        rows = dequantize(np.asarray(t.data[:64]), qtype).astype(np.float64)
        cols = int(t.shape[0])
        want = (LOGIT_STD if tname == "token_embd.weight" else 1.0) / np.sqrt(cols)
        print(f"  {tname:26} mean {rows.mean():+.2e}  std {rows.std():.3e}  (want {want:.3e}; "
              f"row means' std {rows.mean(axis=1).std():.1e})", file=sys.stderr, flush=True)
    n = got["output_norm.weight"].data
    print(f"  output_norm.weight in [{n.min():.3f}, {n.max():.3f}]", file=sys.stderr, flush=True)


def main():
    tok_model, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    if sys.argv[2] == "--too-large":
        write_model(Path(sys.argv[3]), "too-large", "llama-405b", Q.Q4_0, tokenizer_kvs(tok_model), None, True)
        print(sys.argv[3], flush=True)
        return
    names = sys.argv[3:] or list(MODELS)
    for n in names:
        if n not in MODELS:
            sys.exit(f"unknown model {n}; known: {', '.join(MODELS)}")
    out_dir.mkdir(parents=True, exist_ok=True)
    tok, unit = None, {}
    for name in names:
        path, done = out_dir / name, out_dir / (name + ".done")
        marker = f"{VERSION}\n"
        if path.exists() and done.exists() and done.read_text() == marker + f"size {path.stat().st_size}\n":
            print(path, flush=True)
            continue
        done.unlink(missing_ok=True)
        if tok is None:
            tok = tokenizer_kvs(tok_model)
            unit = {q: unit_std(q) for q in set(FILE_TYPE)}
        shape, qtype = MODELS[name]
        tmp = out_dir / (name + ".tmp")
        start = time.time()
        print(f"medium-models: writing {name}", file=sys.stderr, flush=True)
        tensors = write_model(tmp, name, shape, qtype, tok, unit)
        written = time.time() - start
        check_model(tmp, tensors, qtype)
        tmp.rename(path)
        done.write_text(marker + f"size {path.stat().st_size}\n")
        print(f"medium-models: {name}: {path.stat().st_size / 2**20:.0f} MiB, written in {written:.1f} s, "
              f"checked in {time.time() - start - written:.1f} s", file=sys.stderr, flush=True)
        print(path, flush=True)


if __name__ == "__main__":
    main()
