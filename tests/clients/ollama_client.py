"""The `ollama` client against a TriForce ingress, checked.

Usage: ollama_client.py HOST API_KEY [openai-backend]

With `openai-backend`, the models are served by a backend that speaks OpenAI's API only: every
call below is translated by the federation, and what such a backend cannot honour is refused.
"""

import sys

import ollama

HOST, KEY = sys.argv[1], sys.argv[2]
OPENAI_BACKEND = sys.argv[3:] == ["openai-backend"]
TOKENS = [f"tok{i} " for i in range(8)]

c = ollama.Client(host=HOST, headers={"Authorization": f"Bearer {KEY}"})

answer = c.chat(model="tiny-llm", messages=[{"role": "user", "content": "hi"}])
assert answer.message.content == "".join(TOKENS), answer
print("chat:", answer.message.content)

pieces = [part.message.content for part in c.chat(
    model="tiny-llm", messages=[{"role": "user", "content": "hi"}], stream=True) if part.message.content]
assert pieces == TOKENS, pieces
print("streamed chat:", len(pieces), "chunks")

pieces = [part.response for part in c.generate(model="tiny-llm", prompt="once", stream=True) if part.response]
assert pieces == TOKENS, pieces
print("streamed generate:", len(pieces), "chunks")

vectors = c.embed(model="tiny-embed", input=["a", "b", "c"])
assert len(vectors.embeddings) == 3, vectors
print("embed:", len(vectors.embeddings))

names = [m.model for m in c.list().models]
assert "tiny-llm" in names, names
print("tags:", names)

try:
    ollama.Client(host=HOST, headers={"Authorization": "Bearer tf-wrong"}).chat(
        model="tiny-llm", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("a wrong key was accepted")
except ollama.ResponseError as error:
    assert error.status_code == 401, error
    print("wrong key:", error.status_code, error.error)

try:
    c.chat(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    raise AssertionError("an unknown model was accepted")
except ollama.ResponseError as error:
    assert error.status_code == 404, error
    print("unknown model:", error.status_code, error.error)

# What Open WebUI's Ollama connection reads besides: the loaded models, a model's details, and
# `name:latest` for a model listed without a tag.
loaded = [m.model for m in c.ps().models]
# An OpenAI-API server has in memory what it lists.
assert loaded == (["tiny-embed", "tiny-llm"] if OPENAI_BACKEND else ["tiny-llm"]), loaded
assert all(m.expires_at is not None for m in c.ps().models)
print("ps:", loaded)

shown = c.show("tiny-llm")
assert shown.capabilities == ["completion"], shown
assert c.show("tiny-llm:latest").capabilities == ["completion"]
print("show: tiny-llm and tiny-llm:latest")

answer = c.chat(model="tiny-llm:latest", messages=[{"role": "user", "content": "hi"}])
assert answer.message.content == "".join(TOKENS), answer
print("chat as tiny-llm:latest:", answer.message.content)

try:
    c.show("no-such-model")
    raise AssertionError("an unknown model was shown")
except ollama.ResponseError as error:
    assert error.status_code == 404, error
    print("show of an unknown model:", error.status_code)

answer = c.generate(model="tiny-llm", prompt="once")
assert answer.response == "".join(TOKENS), answer
assert answer.done and answer.done_reason == "stop", answer
print("generate:", answer.response)

vector = c.embeddings(model="tiny-embed", prompt="a")
assert len(vector.embedding) == 8, vector
print("embeddings (the older endpoint):", len(vector.embedding))

if OPENAI_BACKEND:
    # Token counts come back in Ollama's fields, whole and streamed.
    assert answer.eval_count == len(TOKENS), answer
    last = list(c.chat(model="tiny-llm", messages=[{"role": "user", "content": "hi"}], stream=True))[-1]
    assert last.done and last.eval_count == len(TOKENS) and last.prompt_eval_count >= 1, last
    print("counts:", last.prompt_eval_count, last.eval_count)
    # A tool call, translated both ways: the backend's call arrives in Ollama's shape.
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
    called = c.chat(model="tiny-llm", messages=[{"role": "user", "content": "[tool] Oslo?"}], tools=tools)
    call = called.message.tool_calls[0].function
    assert call.name == "weather" and call.arguments == {"city": "Oslo"}, called
    last = list(c.chat(model="tiny-llm", messages=[{"role": "user", "content": "[tool] Oslo?"}],
                       tools=tools, stream=True))[-1]
    assert last.message.tool_calls[0].function.arguments == {"city": "Oslo"}, last
    print("tool call:", call.name, call.arguments)
    try:
        c.chat(model="tiny-llm", messages=[{"role": "user", "content": "x"}], options={"num_ctx": 4096})
        raise AssertionError("an option the backend cannot honour was dropped silently")
    except ollama.ResponseError as error:
        assert error.status_code == 400 and "options.num_ctx" in error.error, error
        print("refused:", error.status_code, error.error)
