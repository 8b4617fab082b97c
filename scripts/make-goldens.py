#!/usr/bin/env python3
"""Makes the golden fixtures in tests/golden/ from llama.cpp (llama-cpp-python) on a shipped
model: token ids for a varied set of strings, and greedy continuations with the top logits at
each step. Chat prompts only where the model has a chat template; a prompt longer than the
sliding window where the model has one. Run through scripts/make-goldens.sh, never edit the
output by hand.
"""
import json
import os
import sys

import llama_cpp
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

MODEL = sys.argv[1]
OUT = sys.argv[2]
TOP = 8          # logits recorded per step
STEPS = 40       # greedy tokens per prompt

TEXTS = [
    "Hello world",
    "Hello world!",
    " Hello world",
    "hello  world",
    "   leading and trailing spaces   ",
    "tabs\tand\nnewlines\n\n\nand\r\nwindows",
    "\n",
    " ",
    "  ",
    "",
    "Héllo, café, naïve, Ångström, über",
    "日本語のテキストと中文文本",
    "emoji: 🤖🔥👍🏽 and 🇫🇷",
    "fn main() {\n    println!(\"{}\", 1 + 2);\n}\n",
    "def f(x):\n\treturn x ** 2  # square",
    "numbers: 0 7 42 123 4567 89012 3.14159 -17 1,000,000",
    "It's we're they've I'm you'll he'd DON'T",
    "<|im_start|>user\nHi<|im_end|>",
    "<|endoftext|> after end",
    "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n",
    "mixed 123abc abc123 a1b2c3",
    "punctuation!!! ??? ... ,,, ;;; ---",
    "URL: https://example.com/path?q=1&r=2#frag",
    "Ünïcödé àccents ©®™ €£¥ ½¼",
    "Привет, мир! Γειά σου κόσμε",
    "العربية עברית हिन्दी",
]

PROMPTS = [
    {"prompt": "The capital of France is", "chat": False},
    {"prompt": "Once upon a time, in a small village,", "chat": False},
    {"prompt": "def fibonacci(n):", "chat": False},
    {"prompt": "What is the capital of France?", "chat": True},
    {"prompt": "Write a haiku about the sea.", "chat": True},
]


def main():
    meta = llama_cpp.Llama(model_path=MODEL, vocab_only=True, verbose=False).metadata
    arch = meta["general.architecture"]
    window = int(meta.get(arch + ".attention.sliding_window", "0"))
    # Room for the prompt longer than the window.
    llm = llama_cpp.Llama(model_path=MODEL, n_ctx=2048 if window else 1024, n_threads=1, n_batch=512,
                          logits_all=True, verbose=False, seed=0)
    tokens = []
    for text in TEXTS:
        for add_special, parse_special in [(True, True), (False, False)]:
            ids = llm.tokenize(text.encode(), add_bos=add_special, special=parse_special)
            tokens.append({"text": text, "add_special": add_special, "parse_special": parse_special, "ids": ids})

    template = meta.get("tokenizer.chat_template")
    prompts = [case for case in PROMPTS if template or not case["chat"]]
    if window:
        # Numbered sentences, so every position past the window is distinct text.
        long = " ".join(f"Step {i}: the river carries the boat past hill number {i}." for i in range(window // 10))
        prompts.append({"prompt": long, "chat": False})
    eos = llm.detokenize([llm.token_eos()]).decode()
    bos = llm.detokenize([llm.token_bos()]).decode()
    fmt = Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos) if template else None

    greedy = []
    for case in prompts:
        if case["chat"]:
            rendered = fmt(messages=[{"role": "user", "content": case["prompt"]}]).prompt
        else:
            rendered = case["prompt"]
        prompt_ids = llm.tokenize(rendered.encode(), add_bos=True, special=True)
        llm.reset()
        llm.eval(prompt_ids)
        ids, top = [], []
        for _ in range(STEPS):
            logits = llm.scores[llm.n_tokens - 1]
            order = sorted(range(len(logits)), key=lambda i: -logits[i])[:TOP]
            top.append([[int(i), float(logits[i])] for i in order])
            tok = order[0]
            ids.append(int(tok))
            llm.eval([tok])
        greedy.append({"prompt": case["prompt"], "chat": case["chat"], "rendered": rendered,
                       "prompt_ids": prompt_ids, "ids": ids, "text": llm.detokenize(ids).decode("utf-8", "replace"),
                       "top_logits": top})

    os.makedirs(OUT, exist_ok=True)
    source = {"reference": "llama.cpp via llama-cpp-python " + llama_cpp.__version__ + ", portable scalar CPU build",
              "model": os.path.basename(MODEL), "threads": 1, "sliding_window": window}
    with open(os.path.join(OUT, "tokens.json"), "w") as f:
        json.dump({"source": source, "cases": tokens}, f, ensure_ascii=False, indent=1)
    with open(os.path.join(OUT, "greedy.json"), "w") as f:
        json.dump({"source": source, "top": TOP, "cases": greedy}, f, ensure_ascii=False)
    print(f"wrote {len(tokens)} tokenization cases and {len(greedy)} greedy cases to {OUT}")


if __name__ == "__main__":
    main()
