#!/usr/bin/env python3
"""Makes tests/golden/chat-templates/cases.json: chat templates rendered by Python Jinja2 exactly
as llama-cpp-python 0.3.36's Jinja2ChatFormatter renders them, with its strftime_now pinned to
2025-03-07 14:05:09. Also writes smollm2.jinja, the default model's template, taken from its GGUF.
The other templates are inputs, checked in beside: qwen2.5.jinja and llama3.2.jinja are llama.cpp's
models/templates/Qwen-Qwen2.5-7B-Instruct.jinja and meta-llama-Llama-3.2-3B-Instruct.jinja (as
llama-cpp-python 0.3.36 vendors them), gemma3.jinja is google/gemma-3's tokenizer_config.json one.
Run through scripts/make-chat-goldens.sh, never edit the output by hand.

Usage: make-chat-goldens.py MODEL.gguf OUT_DIR
"""
import calendar
import json
import os
import sys
from datetime import datetime

import gguf
import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

MODEL = sys.argv[1]
OUT = sys.argv[2]

# What strftime_now reports; the cases of templates that call it carry it as now_unix_seconds.
NOW = datetime(2025, 3, 7, 14, 5, 9)
NOW_UNIX_SECONDS = calendar.timegm(NOW.timetuple())


class Raised(ValueError):
    """What the template's raise_exception throws (a ValueError in llama-cpp-python)."""


def raise_exception(message):
    raise Raised(message)


def strftime_now(f):
    return NOW.strftime(f)


def render(source, bos_token, eos_token, add_generation_prompt, messages, tools):
    """Jinja2ChatFormatter(template=source, eos_token=..., bos_token=...,
    add_generation_prompt=...)(messages=messages, tools=tools).prompt"""
    template = ImmutableSandboxedEnvironment(
        loader=jinja2.BaseLoader(),
        trim_blocks=True,
        lstrip_blocks=True,
    ).from_string(source)
    return template.render(
        messages=messages,
        eos_token=eos_token,
        bos_token=bos_token,
        raise_exception=raise_exception,
        add_generation_prompt=add_generation_prompt,
        functions=None,
        function_call=None,
        tools=tools,
        tool_choice=None,
        strftime_now=strftime_now,
    )


def sorted_keys(value):
    """The value with every dict's keys sorted. The Rust test reads cases.json into serde_json
    values, whose maps are sorted, so what Jinja2 renders must be given the same order: tools,
    and messages other than plain {role, content} ones (which the test passes as ChatMessage,
    role first, as here)."""
    if isinstance(value, dict):
        return {k: sorted_keys(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [sorted_keys(v) for v in value]
    return value


def is_plain(message):
    return list(message) == ["role", "content"] and isinstance(message["content"], str)


def msg(role, content):
    return {"role": role, "content": content}


def default_model():
    """The default model's template and its BOS and EOS token texts (llama.cpp's
    token_get_text: the entries of tokenizer.ggml.tokens)."""
    reader = gguf.GGUFReader(MODEL)
    tokens = reader.get_field("tokenizer.ggml.tokens")

    def token(key):
        return tokens.contents(int(reader.get_field(key).contents()))

    return (reader.get_field("tokenizer.chat_template").contents(),
            token("tokenizer.ggml.bos_token_id"), token("tokenizer.ggml.eos_token_id"))


WEATHER_TOOLS = [{
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name, e.g. Paris"}},
            "required": ["city"],
        },
    },
}]

TERSE = [
    msg("system", "  You are terse.  "),
    msg("user", " Hi! "),
    msg("assistant", "Hello."),
    msg("user", "What's 2+2?"),
]

PIRATE = [
    msg("system", "You are a pirate. Answer in one sentence."),
    msg("user", "Where is the treasure?"),
    msg("assistant", "Buried under the old palm, matey!"),
    msg("user", "And how deep?"),
]

WEATHER = [msg("user", "What's the weather in Paris?")]


def tool_call(name, arguments):
    return {"id": "call_1", "type": "function", "function": {"name": name, "arguments": arguments}}


WEATHER_CALLED = [
    msg("user", "What's the weather in Paris?"),
    {"role": "assistant", "content": "", "tool_calls": [tool_call("get_weather", {"city": "Paris"})]},
    {"role": "tool", "content": "18 C, sunny", "tool_call_id": "call_1"},
]


def cases(smollm2_bos, smollm2_eos):
    """(template file, bos, eos, [(add_generation_prompt, messages, tools)])"""
    return [
        ("smollm2.jinja", smollm2_bos, smollm2_eos, [
            (True, PIRATE, None),
            (False, PIRATE, None),
            (True, [msg("user", "What is the capital of France?")], None),
        ]),
        ("qwen2.5.jinja", "", "<|im_end|>", [
            (True, TERSE, None),
            (False, TERSE[1:], None),
            (True, WEATHER, WEATHER_TOOLS),
            (True, WEATHER_CALLED, WEATHER_TOOLS),
        ]),
        ("llama3.2.jinja", "<|begin_of_text|>", "<|eot_id|>", [
            (True, TERSE, None),
            (False, TERSE[1:], None),
            (True, WEATHER, WEATHER_TOOLS),
            (True, WEATHER_CALLED, WEATHER_TOOLS),
            # Two tool calls in one message: the template refuses.
            (True, [msg("user", "Paris and Rome?"), {"role": "assistant", "content": "", "tool_calls": [
                tool_call("get_weather", {"city": "Paris"}), tool_call("get_weather", {"city": "Rome"})]}],
             WEATHER_TOOLS),
            # Tools but no user message to put them in: the template refuses.
            (True, [msg("system", "You are terse.")], WEATHER_TOOLS),
        ]),
        ("gemma3.jinja", "<bos>", "<eos>", [
            (True, TERSE, None),
            # Content as a list of parts, as multimodal front ends send it.
            (False, [{"role": "user", "content": [{"type": "text", "text": " Describe this. "}]}], None),
            (True, [
                {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": " What is this? "}]},
            ], None),
            # Roles that do not alternate: the template refuses.
            (True, [msg("user", "a"), msg("user", "b")], None),
        ]),
    ]


def main():
    smollm2, bos, eos = default_model()
    with open(os.path.join(OUT, "smollm2.jinja"), "w", encoding="utf-8", newline="") as f:
        f.write(smollm2)

    out = []
    for name, bos_token, eos_token, runs in cases(bos, eos):
        with open(os.path.join(OUT, name), encoding="utf-8", newline="") as f:
            source = f.read()
        for add_generation_prompt, messages, tools in runs:
            if not all(is_plain(m) for m in messages):
                messages = sorted_keys(messages)
            tools = sorted_keys(tools)
            case = {
                "template": name,
                "bos_token": bos_token,
                "eos_token": eos_token,
                "add_generation_prompt": add_generation_prompt,
                "now_unix_seconds": NOW_UNIX_SECONDS if "strftime_now" in source else None,
                "messages": messages,
                "tools": tools,
            }
            try:
                case["rendered"] = render(source, bos_token, eos_token, add_generation_prompt, messages, tools)
            except Raised as e:
                case["raises"] = str(e)
            out.append(case)

    with open(os.path.join(OUT, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {len(out)} cases to {os.path.join(OUT, 'cases.json')}")


if __name__ == "__main__":
    main()
