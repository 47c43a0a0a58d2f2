"""Drives a running Open WebUI as its chat page does, once per connection type.

Usage: open_webui_check.py OPEN_WEBUI_URL DOOR_KEY (run by open_webui.sh)

For the Ollama connection, the OpenAI connection, and the OpenAI connection set to the
Responses API (each alone): every
federation model is listed, and a chat with each answers whole and streamed. The llama.cpp
model's text under greedy decoding must equal what the server answers when asked directly;
the stand-in's must be its eight tokens.
"""

import json
import sys
import time

import httpx

BASE, KEY = sys.argv[1], sys.argv[2]
DOOR = "http://127.0.0.1:11434"
LLAMA = "http://127.0.0.1:8081"
MODELS = {"smollm2", "tiny-llm"}
STAND_IN_TEXT = "".join(f"tok{i} " for i in range(8))
PROMPT = "Name three colours."
MAX_TOKENS = 24


def wait_for_open_webui():
    until = time.time() + 300
    while time.time() < until:
        try:
            if httpx.get(f"{BASE}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit("Open WebUI did not come up within 300 s")


def fresh_llama_prompt():
    """llama-cpp-python's greedy answer to a prompt depends on whether the prompt was already
    in its cache (the same request, sent twice in a row, answers differently the second time).
    Another prompt in between puts the next one back to a fresh evaluation, so each compared
    answer starts from the same state."""
    httpx.post(f"{LLAMA}/v1/chat/completions", timeout=120, json={
        "model": "smollm2", "messages": [{"role": "user", "content": "Hello."}],
        "temperature": 0, "max_tokens": 1}).raise_for_status()


def direct_llama_answer():
    """What llama.cpp's server answers itself, greedy: the text every path must reproduce."""
    fresh_llama_prompt()
    answer = httpx.post(f"{LLAMA}/v1/chat/completions", timeout=120, json={
        "model": "smollm2", "messages": [{"role": "user", "content": PROMPT}],
        "temperature": 0, "max_tokens": MAX_TOKENS}).json()
    return answer["choices"][0]["message"]["content"]


def switch_to(client, connection):
    """Only `connection` on, each pointed at the door with its key: `ollama`, `openai` (Chat
    Completions) or `openai-responses` (the OpenAI connection's Responses API type, which
    Open WebUI turns every chat into a `/v1/responses` request for)."""
    ollama = client.post("/ollama/config/update", json={
        "ENABLE_OLLAMA_API": connection == "ollama",
        "OLLAMA_BASE_URLS": [DOOR],
        "OLLAMA_API_CONFIGS": {"0": {"key": KEY}}})
    ollama.raise_for_status()
    openai = client.post("/openai/config/update", json={
        "ENABLE_OPENAI_API": connection.startswith("openai"),
        "OPENAI_API_BASE_URLS": [f"{DOOR}/v1"],
        "OPENAI_API_KEYS": [KEY],
        "OPENAI_API_CONFIGS": {"0": {"api_type": "responses"}
                               if connection == "openai-responses" else {}}})
    openai.raise_for_status()


def listed_models(client, connection):
    """The models Open WebUI lists, once both nodes' backends are in the door's list."""
    until = time.time() + 60
    while True:
        models = client.get("/api/models").json()["data"]
        names = {m["id"].removesuffix(":latest") for m in models}
        if MODELS <= names or time.time() > until:
            break
        time.sleep(1)
    assert MODELS <= names, f"{connection}: Open WebUI lists {sorted(names)}"
    owners = {m["id"].removesuffix(":latest"): m.get("owned_by") for m in models}
    assert all(owners[m] == connection.removesuffix("-responses") for m in MODELS), owners
    return {m["id"].removesuffix(":latest"): m["id"] for m in models}


def chat(client, model, stream):
    # The chat page sends its controls as `params`; Open WebUI maps them into each
    # connection's own fields (for Ollama: `options.temperature`, `options.num_predict`).
    body = {"model": model, "stream": stream,
            "params": {"temperature": 0, "max_tokens": MAX_TOKENS},
            "messages": [{"role": "user", "content": PROMPT}]}
    if not stream:
        answer = client.post("/api/chat/completions", json=body, timeout=120)
        assert answer.status_code == 200, (answer.status_code, answer.text)
        return answer.json()["choices"][0]["message"]["content"], 1
    pieces = []
    with client.stream("POST", "/api/chat/completions", json=body, timeout=120) as answer:
        assert answer.status_code == 200, (answer.status_code, answer.read())
        for line in answer.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[len("data: "):])
            assert "error" not in event and event.get("type") != "error", event
            # A Responses connection's stream passes through as the API's own events.
            if event.get("type") == "response.output_text.delta":
                pieces.append(event["delta"])
            for choice in event.get("choices", []):
                piece = choice.get("delta", {}).get("content")
                if piece:
                    pieces.append(piece)
    return "".join(pieces), len(pieces)


def main():
    wait_for_open_webui()
    signin = httpx.post(f"{BASE}/api/v1/auths/signin", json={"email": "", "password": ""})
    signin.raise_for_status()
    token = signin.json()["token"]
    client = httpx.Client(base_url=BASE, headers={"Authorization": f"Bearer {token}"},
                          timeout=30)
    expected = {"smollm2": direct_llama_answer(), "tiny-llm": STAND_IN_TEXT}
    print("llama.cpp answers directly:", json.dumps(expected["smollm2"]))
    for connection in ["ollama", "openai", "openai-responses"]:
        switch_to(client, connection)
        ids = listed_models(client, connection)
        print(f"{connection} connection lists:", sorted(ids.values()))
        for model in sorted(MODELS):
            for stream in [False, True]:
                fresh_llama_prompt()
                text, pieces = chat(client, ids[model], stream)
                how = f"streamed in {pieces} pieces" if stream else "whole"
                assert text == expected[model], (connection, model, how, text, expected[model])
                if stream:
                    assert pieces > 1, (connection, model, "arrived in one piece")
                print(f"  {model}, {how}: the backend's own answer")
    print("Open WebUI: every connection type, every model, whole and streamed")


main()
