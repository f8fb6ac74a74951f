"""Drives a running `hearth serve` with the official `openai` package.

usage: python3 openai_client.py BASE_URL MODEL   (exit 0 = every check passed)
"""

import math
import sys

import openai

base, model = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=base + "/v1", api_key="unused", max_retries=0, timeout=120)
checks = 0


def check(cond, what):
    global checks
    if not cond:
        raise AssertionError(what)
    checks += 1


models = client.models.list()
check(any(m.id == model for m in models.data), f"{model} in /v1/models: {models}")

messages = [{"role": "user", "content": "Name a primary color."}]
r = client.chat.completions.create(model=model, messages=messages, max_tokens=12, temperature=0)
choice = r.choices[0]
check(choice.message.role == "assistant", "assistant message")
check(choice.finish_reason in ("stop", "length"), f"finish_reason {choice.finish_reason}")
check(0 < r.usage.completion_tokens <= 12, f"usage {r.usage}")
check(r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, "usage sums")

# Streaming gives the same greedy text, and the usage chunk the same counts.
chunks = list(
    client.chat.completions.create(
        model=model,
        messages=messages,
        max_tokens=12,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
)
text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
check(text == choice.message.content, f"stream {text!r} != {choice.message.content!r}")
finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
check(finish == [choice.finish_reason], f"stream finish {finish}")
check(chunks[-1].usage is not None, "usage chunk last")
check(chunks[-1].usage.completion_tokens == r.usage.completion_tokens, "stream usage")
check(chunks[-1].usage.prompt_tokens == r.usage.prompt_tokens, "stream prompt usage")

# Log-probabilities.
r = client.chat.completions.create(
    model=model, messages=messages, max_tokens=4, temperature=0, logprobs=True, top_logprobs=3
)
lp = r.choices[0].logprobs.content
check(len(lp) == r.usage.completion_tokens, "one logprob entry per token")
for e in lp:
    check(len(e.top_logprobs) == 3, "3 alternatives")
    check(e.logprob <= 0.0, "log-probabilities are <= 0")
    # Greedy: the chosen token is the most likely one.
    check(e.token == e.top_logprobs[0].token, f"greedy picks the best token: {e}")

# n choices with a seed: choice 0 equals the same seed alone.
r = client.chat.completions.create(
    model=model, messages=messages, max_tokens=8, temperature=1.0, seed=7, n=2
)
check(len(r.choices) == 2, "n=2")
alone = client.chat.completions.create(
    model=model, messages=messages, max_tokens=8, temperature=1.0, seed=7
)
check(alone.choices[0].message.content == r.choices[0].message.content, "seeded choice 0")

# Stop strings end the text before the stop string.
r = client.completions.create(
    model=model, prompt="1, 2, 3, 4, 5,", max_tokens=20, temperature=0, stop=[" 8"]
)
check(" 8" not in r.choices[0].text, f"stop string removed: {r.choices[0].text!r}")
check(r.choices[0].finish_reason == "stop", f"finish on stop: {r.choices[0].finish_reason}")

# Completions with logprobs.
r = client.completions.create(
    model=model, prompt="The capital of France is", max_tokens=6, temperature=0, logprobs=2
)
check(len(r.choices[0].logprobs.tokens) == r.usage.completion_tokens, "completion logprobs")
check("".join(r.choices[0].logprobs.tokens) == r.choices[0].text, "tokens spell the text")

# Embeddings: the client asks for base64 by default; floats must agree.
e = client.embeddings.create(model=model, input=["hello world", "goodbye"])
check(len(e.data) == 2 and e.data[1].index == 1, "two embeddings")
v = e.data[0].embedding
check(abs(math.sqrt(sum(x * x for x in v)) - 1.0) < 1e-3, "unit length")
f = client.embeddings.create(model=model, input="hello world", encoding_format="float")
check(max(abs(a - b) for a, b in zip(v, f.data[0].embedding)) < 1e-6, "base64 == float")
check(e.usage.prompt_tokens > 0, "embedding usage")

# Errors arrive as the client's typed exceptions.
try:
    client.chat.completions.create(model="no-such-model", messages=messages, max_tokens=2)
    check(False, "unknown model accepted")
except openai.NotFoundError as ex:
    check(ex.status_code == 404, "404")
try:
    client.chat.completions.create(model=model, messages=messages, max_tokens=-1)
    check(False, "max_tokens -1 accepted")
except openai.BadRequestError as ex:
    check(ex.body.get("param") == "max_tokens", f"param names the field: {ex.body}")
try:
    client.chat.completions.create(model=model, messages=messages, temperature=3.5)
    check(False, "temperature 3.5 accepted")
except openai.BadRequestError as ex:
    check(ex.body.get("param") == "temperature", f"param: {ex.body}")

print(f"openai client: {checks} checks passed")
