"""The official `openai` Python client against `hearth serve --headless`, unchanged.

Usage: check_api.py BASE_URL MODE EXPECTED_COMPLETION
  MODE full: every endpoint, streaming, response_format, tools, and bad requests;
  MODE page: one chat completion, streamed and not, and one forced tool call (the engine in a
             web engine's page).
EXPECTED_COMPLETION is what `hearth generate` (natively, greedy) completes
"The capital of France is" with in 8 tokens; the API must give the same text.
Exits non-zero with a message on the first thing that is wrong.
"""

import json
import sys

import httpx
import openai

base, mode, expected = sys.argv[1], sys.argv[2], sys.argv[3]
client = openai.OpenAI(base_url=base + "v1", api_key="not-needed", max_retries=0, timeout=900)


def check(cond, what):
    if not cond:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what.splitlines()[0][:100]}")


models = client.models.list()
ids = [m.id for m in models.data]
check(len(ids) == 1, f"one model listed: {ids}")
model = ids[0]

messages = [{"role": "user", "content": "Name a colour."}]
chat = client.chat.completions.create(model=model, messages=messages, max_tokens=12, temperature=0)
text = chat.choices[0].message.content
check(chat.object == "chat.completion" and text, f"a chat completion: {text!r}")
check(chat.choices[0].finish_reason in ("stop", "length"), f"finish_reason {chat.choices[0].finish_reason}")
check(chat.usage.completion_tokens > 0 and chat.usage.total_tokens == chat.usage.prompt_tokens + chat.usage.completion_tokens,
      f"usage {chat.usage}")

stream = client.chat.completions.create(model=model, messages=messages, max_tokens=12, temperature=0, stream=True,
                                        stream_options={"include_usage": True})
pieces, finish, usage = [], None, None
for chunk in stream:
    if chunk.usage:
        usage = chunk.usage
    for choice in chunk.choices:
        if choice.delta.content:
            pieces.append(choice.delta.content)
        finish = choice.finish_reason or finish
check("".join(pieces) == text, f"the stream gives the same text: {''.join(pieces)!r} vs {text!r}")
check(finish == chat.choices[0].finish_reason and usage and usage.completion_tokens == chat.usage.completion_tokens,
      f"the stream ends with the finish reason and usage: {finish} {usage}")

tools = [
    {"type": "function", "function": {"name": "get_weather", "description": "The current weather in a city",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                     "required": ["city"]}}},
    {"type": "function", "function": {"name": "add", "description": "Adds two integers",
                                      "parameters": {"type": "object", "properties": {"a": {"type": "integer"},
                                                                                     "b": {"type": "integer"}},
                                                     "required": ["a", "b"]}}},
]
ask = [{"role": "user", "content": "What is the weather in Paris?"}]
forced = client.chat.completions.create(model=model, messages=ask, tools=tools, tool_choice="required", max_tokens=60,
                                        temperature=0)
choice = forced.choices[0]
check(choice.finish_reason == "tool_calls" and choice.message.content is None and len(choice.message.tool_calls) == 1,
      f"tool_choice required gives one tool call: {choice}")
call = choice.message.tool_calls[0]
check(call.type == "function" and call.id.startswith("call_") and call.function.name in ("get_weather", "add"),
      f"the call names a tool: {call}")
args = json.loads(call.function.arguments)
check(("city" in args and isinstance(args["city"], str)) if call.function.name == "get_weather"
      else (isinstance(args.get("a"), int) and isinstance(args.get("b"), int)), f"its arguments fit its schema: {args}")

if mode == "page":
    print("all ok")
    sys.exit(0)

done = client.completions.create(model=model, prompt="The capital of France is", max_tokens=8, temperature=0)
check(done.choices[0].text == expected, f"completions text {done.choices[0].text!r} == hearth generate's {expected!r}")
check(done.usage.completion_tokens == 8 and done.choices[0].finish_reason == "length", f"8 tokens, length: {done.usage}")
pieces = [c.choices[0].text for c in client.completions.create(model=model, prompt="The capital of France is",
                                                                  max_tokens=8, temperature=0, stream=True) if c.choices]
check("".join(pieces) == expected, f"streamed completions text {''.join(pieces)!r}")

schema = {"type": "object", "properties": {"colour": {"enum": ["red", "green", "blue"]},
                                           "hex": {"type": "string", "pattern": "^#[0-9a-f]{6}$"}},
          "required": ["colour", "hex"]}
for seed in range(5):
    shaped = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Pick a colour and give its hex code as JSON."}],
        max_tokens=60, temperature=0.8, seed=seed,
        response_format={"type": "json_schema", "json_schema": {"name": "colour", "schema": schema, "strict": True}})
    value = json.loads(shaped.choices[0].message.content)
    check(value["colour"] in ("red", "green", "blue") and len(value["hex"]) == 7 and set(value) == {"colour", "hex"},
          f"response_format json_schema, seed {seed}: {value}")
obj = client.chat.completions.create(model=model, messages=messages, max_tokens=40, temperature=0,
                                     response_format={"type": "json_object"})
check(obj.choices[0].finish_reason != "stop" or isinstance(json.loads(obj.choices[0].message.content), dict),
      f"response_format json_object: {obj.choices[0].message.content!r}")


named = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Add 2 and 40."}], tools=tools,
                                       tool_choice={"type": "function", "function": {"name": "add"}}, max_tokens=40,
                                       temperature=0)
call = named.choices[0].message.tool_calls[0]
args = json.loads(call.function.arguments)
check(call.function.name == "add" and set(args) == {"a", "b"}, f"a named tool_choice calls that tool: {call.function}")

calls, finish, content = {}, None, []
for chunk in client.chat.completions.create(model=model, messages=ask, tools=tools, tool_choice="required",
                                            max_tokens=60, temperature=0, stream=True):
    for c in chunk.choices:
        finish = c.finish_reason or finish
        if c.delta.content:
            content.append(c.delta.content)
        for tc in c.delta.tool_calls or []:
            entry = calls.setdefault(tc.index, {"name": "", "arguments": ""})
            entry["name"] += tc.function.name or ""
            entry["arguments"] += tc.function.arguments or ""
check(finish == "tool_calls" and not "".join(content) and calls[0]["name"] == forced.choices[0].message.tool_calls[0].function.name,
      f"a streamed tool call arrives as tool_calls deltas: {calls} {finish}")

# The call answered: the conversation goes on with the tool's result.
follow = client.chat.completions.create(model=model, max_tokens=30, temperature=0, tools=tools, tool_choice="none", messages=[
    *ask, forced.choices[0].message.model_dump(exclude_none=True),
    {"role": "tool", "tool_call_id": forced.choices[0].message.tool_calls[0].id, "content": "Sunny, 24 °C"}])
check(follow.choices[0].message.content and not follow.choices[0].message.tool_calls,
      f"after the tool's result, a reply: {follow.choices[0].message.content!r}")


def bad(what, param, **kwargs):
    request = {"model": model, "messages": messages, "max_tokens": 4, **kwargs}
    try:
        client.chat.completions.create(**request)
    except openai.BadRequestError as e:
        body = e.body if isinstance(e.body, dict) else {}
        check(e.status_code == 400 and body.get("param") == param and body.get("message"),
              f"{what}: 400, param {param}: {body.get('message')}")
        return
    check(False, f"{what} was accepted")


bad("an unknown model", "model", model="gpt-9")
bad("negative max_tokens", "max_tokens", max_tokens=-1)
bad("temperature 3", "temperature", temperature=3)
bad("n = 2", "n", n=2)
bad("a tool_choice naming no tool", "tools", tools=tools, tool_choice={"type": "function", "function": {"name": "fly"}})
bad("a schema keyword constrained decoding lacks", "response_format",
    response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "string", "format": "email"}}})

raw = httpx.Client(base_url=base, timeout=60)
r = raw.post("v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
check(r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error", f"malformed JSON: {r.status_code} {r.text[:120]}")
r = raw.post("v1/chat/completions", json={"model": model})
check(r.status_code == 400 and "messages" in r.json()["error"]["message"], f"a missing field is named: {r.text[:160]}")
r = raw.post("v1/chat/completions", json={"model": model, "messages": [{"role": "wizard", "content": "hi"}]})
check(r.status_code == 400 and "wizard" in r.json()["error"]["message"], f"a bad role is named: {r.text[:160]}")
r = raw.get("v1/models", headers={"host": "evil.example"})
check(r.status_code == 403, f"a foreign Host is refused: {r.status_code}")
r = raw.post("v1/chat/completions", json={"model": model, "messages": messages}, headers={"origin": "http://evil.example"})
check(r.status_code == 403, f"a foreign Origin is refused: {r.status_code}")
r = raw.get("v1/nothing")
check(r.status_code == 404 and "error" in r.json(), f"an unknown route: {r.status_code}")
print("all ok")
