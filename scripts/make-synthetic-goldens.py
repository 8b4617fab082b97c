#!/usr/bin/env python3
"""Makes tests/golden/synthetic/logits.json from llama.cpp (llama-cpp-python): for each tiny
synthetic model that examples/synthetic_models.rs wrote (every architecture × weight format),
the logits of a fixed token sequence at every position, top 8 per position, and the model
file's SHA-256 so the Rust test can check it generates the very same bytes. Run through
scripts/make-synthetic-goldens.sh, never edit the output by hand.
"""
import hashlib
import json
import math
import os
import sys

import llama_cpp

MODELS = sys.argv[1]
OUT = sys.argv[2]
TOP = 8
ARCHS = ["llama", "qwen2", "gemma3"]
FORMATS = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K", "Q5_K", "Q6_K"]


def byte(b):
    """The id of byte token <0xNN>: after <unk>, <s> and </s>."""
    return 3 + b


# 12 tokens: <s>, byte tokens (ASCII, a newline, the UTF-8 of "€") and words, past gemma3's
# 4-position sliding window several times over.
TOKENS = [1, byte(ord("H")), byte(ord("i")), 262, byte(0x0A), 280, byte(0xE2), byte(0x82), byte(0xAC), 299, 270,
          byte(ord(" "))]


def main():
    models = []
    for arch in ARCHS:
        for fmt in FORMATS:
            path = os.path.join(MODELS, f"{arch}-{fmt}.gguf")
            with open(path, "rb") as f:
                data = f.read()
            llm = llama_cpp.Llama(model_path=path, n_ctx=128, n_threads=1, n_batch=128, logits_all=True,
                                  verbose=False, seed=0)
            assert llm.n_vocab() == 300, llm.n_vocab()
            llm.eval(TOKENS)
            steps = []
            for i in range(len(TOKENS)):
                logits = [float(v) for v in llm.scores[i]]
                if not all(math.isfinite(v) for v in logits):
                    raise SystemExit(f"{arch}-{fmt}: non-finite logits at position {i}")
                order = sorted(range(len(logits)), key=lambda t: -logits[t])[:TOP]
                steps.append([[t, logits[t]] for t in order])
            spread = max(max(s[0][1] for s in steps), 0) - min(s[-1][1] for s in steps)
            print(f"{arch}-{fmt}: top logits {steps[-1][0][1]:.3f}, spread {spread:.3f}")
            models.append({"arch": arch, "format": fmt, "file": os.path.basename(path), "bytes": len(data),
                           "sha256": hashlib.sha256(data).hexdigest(), "tokens": TOKENS, "steps": steps})
            del llm
    source = {"reference": "llama.cpp via llama-cpp-python " + llama_cpp.__version__ + ", portable scalar CPU build",
              "threads": 1, "generator": "core-wasm/tests/common/synthetic.rs"}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump({"source": source, "top": TOP, "models": models}, f)
        f.write("\n")
    print(f"wrote {len(models)} models to {OUT}")


if __name__ == "__main__":
    main()
