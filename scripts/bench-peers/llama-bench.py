"""Times native llama.cpp (through llama-cpp-python's low-level eval) on one thread.

Usage: llama-bench.py MODEL PROMPT_FILE N_PROMPT N_GEN ROUNDS
Prints one JSON line on stdout; diagnostics go to stderr. Each round starts from an empty
KV cache: prefill = one llm.eval() of the N prompt tokens (n_batch 512 >= N, so one batch);
decode = N_GEN single-token evals, each after a greedy argmax over the last logits, EOS
ignored. The first round is a warm-up; the best of the remaining ones is reported.
Python overhead per decoded token (numpy argmax over the 49152 logits, llama-cpp-python's
batch setup) measured ~40 us, well under 1% of a decode step here (~15-20 ms in llama_decode);
prefill is a single call, so its overhead is negligible.
"""
import json
import sys
import time

import llama_cpp
import numpy as np

model, prompt_file, n_prompt, n_gen, rounds = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
llm = llama_cpp.Llama(model_path=model, n_ctx=512, n_threads=1, n_threads_batch=1, n_batch=512,
                      verbose=False)
print("llama.cpp system info:", llama_cpp.llama_print_system_info().decode().strip(), file=sys.stderr)
# add_bos=True adds BOS only where the model's metadata asks for it (SmolLM2: no).
tokens = llm.tokenize(open(prompt_file, encoding="utf-8").read().encode(), add_bos=True, special=False)
if len(tokens) < n_prompt:
    sys.exit(f"prompt has only {len(tokens)} tokens, fewer than {n_prompt}")
tokens = tokens[:n_prompt]

n_vocab = llm.n_vocab()


def last_logits():
    # llm.scores is not filled without logits_all in llama-cpp-python 0.3.x: read the context's
    # logits of the last evaluated token directly.
    return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(n_vocab,))


best_prefill = best_decode = 0.0
for r in range(rounds):
    llm.reset()  # n_tokens = 0: the next eval clears the KV cache from position 0
    t0 = time.perf_counter()
    llm.eval(tokens)
    t1 = time.perf_counter()
    for _ in range(n_gen):
        tok = int(np.argmax(last_logits()))
        llm.eval([tok])
    t2 = time.perf_counter()
    if r == 0:  # to compare with the other engines' greedy tokens
        print("llama.cpp prompt starts", tokens[:8], "generates", llm.input_ids[n_prompt:n_prompt + 8].tolist(),
              file=sys.stderr)
    prefill, decode = n_prompt / (t1 - t0), n_gen / (t2 - t1)
    print(f"llama.cpp round {r}{' (warm-up)' if r == 0 else ''}: prefill {prefill:.1f} tok/s, "
          f"decode {decode:.1f} tok/s", file=sys.stderr)
    if r > 0:
        best_prefill, best_decode = max(best_prefill, prefill), max(best_decode, decode)

print(json.dumps({"peer": "llama.cpp", "version": f"{llama_cpp.__version__} (llama-cpp-python)",
                  "where": "native", "threads": 1, "prompt_tokens": n_prompt, "gen_tokens": n_gen,
                  "prefill_tok_s": round(best_prefill, 1), "decode_tok_s": round(best_decode, 1)},
                 separators=(",", ":")))
