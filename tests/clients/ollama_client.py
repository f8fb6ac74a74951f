"""Drives a running `hearth serve` with the official `ollama` package.

usage: python3 ollama_client.py BASE_URL MODEL   (exit 0 = every check passed)
"""

import math
import sys

import ollama

base, model = sys.argv[1], sys.argv[2]
client = ollama.Client(host=base, timeout=120)
checks = 0


def check(cond, what):
    global checks
    if not cond:
        raise AssertionError(what)
    checks += 1


names = [m.model for m in client.list().models]
check(f"{model}:latest" in names, f"{model}:latest listed: {names}")

opts = {"num_predict": 10, "temperature": 0}
g = client.generate(model=model, prompt="Why is the sky blue?", options=opts, stream=False)
check(g.done and g.done_reason in ("stop", "length"), f"done: {g}")
check(0 < g.eval_count <= 10 and g.prompt_eval_count > 0, f"counts: {g}")
check(len(g.response) > 0, "some text")
check(len(g.context) == g.prompt_eval_count + g.eval_count, "context = prompt + generated")

parts = list(client.generate(model=model, prompt="Why is the sky blue?", options=opts, stream=True))
check(parts[-1].done, "last part done")
check("".join(p.response for p in parts) == g.response, "stream == non-stream (greedy)")
check(parts[-1].eval_count == g.eval_count, "stream eval_count")

msgs = [{"role": "user", "content": "Say hello."}]
c = client.chat(model=model, messages=msgs, options=opts, stream=False)
check(c.message.role == "assistant" and c.done, f"chat: {c}")
parts = list(client.chat(model=model, messages=msgs, options=opts, stream=True))
check("".join(p.message.content for p in parts) == c.message.content, "chat stream == chat")

e = client.embed(model=model, input=["hello", "world"])
check(len(e.embeddings) == 2, "two embeddings")
check(abs(math.sqrt(sum(x * x for x in e.embeddings[0])) - 1.0) < 1e-3, "unit length")

s = client.show(model)
check(s.details.family == "gemma3", f"family: {s.details}")
check(s.details.quantization_level == "Q4_K_M", f"quant: {s.details}")
check(len(client.ps().models) == 1, "ps")

try:
    client.chat(model="no-such-model", messages=msgs, options=opts)
    check(False, "unknown model accepted")
except ollama.ResponseError as ex:
    check(ex.status_code == 404, f"404: {ex}")
try:
    client.generate(model=model, prompt="x", options={"num_predict": -5}, stream=False)
    check(False, "num_predict -5 accepted")
except ollama.ResponseError as ex:
    check(ex.status_code == 400 and "num_predict" in ex.error, f"400 names the option: {ex}")
try:
    client.generate(model=model, prompt="x", options={"temperature": "hot"}, stream=False)
    check(False, "temperature 'hot' accepted")
except ollama.ResponseError as ex:
    check(ex.status_code == 400 and "temperature" in ex.error, f"400: {ex}")

print(f"ollama client: {checks} checks passed")
