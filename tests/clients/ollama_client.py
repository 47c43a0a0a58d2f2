"""The `ollama` client against a TriForce ingress, checked.

Usage: ollama_client.py HOST API_KEY
"""

import sys

import ollama

HOST, KEY = sys.argv[1], sys.argv[2]
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
assert loaded == ["tiny-llm"], loaded
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
