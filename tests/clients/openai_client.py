"""The `openai` SDK against a TriForce ingress: what a user's tool does, checked.

Usage: openai_client.py BASE_URL API_KEY SCENARIO
Exits 0 when every check of the scenario holds; prints what it saw either way.
"""

import asyncio
import sys

import openai
from openai import AsyncOpenAI, OpenAI

BASE, KEY, SCENARIO = sys.argv[1], sys.argv[2], sys.argv[3]
MODEL = "tiny-llm"
TOKENS = [f"tok{i} " for i in range(8)]


def client(key=KEY):
    return OpenAI(base_url=f"{BASE}/v1", api_key=key, max_retries=0, timeout=30)


def basics():
    c = client()
    answer = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "".join(TOKENS), answer
    print("chat:", answer.choices[0].message.content)

    pieces = []
    for chunk in c.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    assert pieces == TOKENS, pieces
    print("streamed chat:", len(pieces), "chunks")

    text = c.completions.create(model=MODEL, prompt="once")
    assert text.choices[0].text == "".join(TOKENS), text
    print("completion:", text.choices[0].text)

    vectors = c.embeddings.create(model="tiny-embed", input=["a", "b"])
    assert len(vectors.data) == 2 and len(vectors.data[0].embedding) == 8, vectors
    print("embeddings:", len(vectors.data))

    models = [m.id for m in c.models.list()]
    assert "tiny-llm" in models, models
    print("models:", models)

    try:
        client("tf-wrong").chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}])
        raise AssertionError("a wrong key was accepted")
    except openai.AuthenticationError as error:
        assert error.status_code == 401 and error.code == "invalid_api_key", error
        print("wrong key:", error.status_code, error.code)

    # The backend here speaks Ollama's API (it lists its models at /api/tags), whose OpenAI
    # API answers one choice whatever `n` says: refused by name, not answered short.
    try:
        c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], n=2)
        raise AssertionError("n=2 was answered by a backend that gives one choice")
    except openai.BadRequestError as error:
        assert error.code == "unsupported_field" and error.param == "n", error
        print("refused:", error.status_code, error.param)

    try:
        c.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
        raise AssertionError("an unknown model was accepted")
    except openai.NotFoundError as error:
        print("unknown model:", error.status_code, error.message)


async def concurrent(n):
    c = AsyncOpenAI(base_url=f"{BASE}/v1", api_key=KEY, max_retries=0, timeout=60)

    async def one(i):
        pieces = []
        stream = await c.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": f"stream {i}"}], stream=True
        )
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
        return pieces

    results = await asyncio.gather(*(one(i) for i in range(n)))
    broken = [i for i, r in enumerate(results) if r != TOKENS]
    assert not broken, f"streams {broken} were not whole"
    print(f"{n} concurrent streams: all whole")


def interrupted():
    """A stream whose node dies after the first token must end in an error, never silently."""
    c = client()
    pieces = []
    try:
        for chunk in c.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "[hold] then die"}], stream=True
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
                print("got", pieces[-1], flush=True)
        raise AssertionError(f"the stream ended without an error after {pieces}")
    except openai.APIError as error:
        assert pieces == TOKENS[:1], pieces
        print("error event:", error.message)


def tls(cert):
    """The SDK over HTTPS, trusting the node's certificate."""
    import httpx

    c = OpenAI(base_url=f"{BASE}/v1", api_key=KEY, max_retries=0, timeout=30,
               http_client=httpx.Client(verify=cert))
    answer = c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "".join(TOKENS), answer
    pieces = [chunk.choices[0].delta.content for chunk in c.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True)
        if chunk.choices and chunk.choices[0].delta.content]
    assert pieces == TOKENS, pieces
    print("https: chat and stream with the node's certificate verified")


def responses():
    """The Responses API (stateless): translated to Chat Completions by the relaying node."""
    c = client()
    answer = c.responses.create(model=MODEL, input="hi", instructions="be brief")
    assert answer.output_text == "".join(TOKENS), answer
    assert answer.status == "completed", answer
    assert answer.usage.output_tokens == len(TOKENS) and answer.usage.input_tokens >= 1, answer
    print("response:", answer.output_text)

    kinds, deltas, completed = [], [], None
    for event in c.responses.create(
        model=MODEL, input=[{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
        stream=True,
    ):
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
        if event.type == "response.completed":
            completed = event.response
    assert deltas == TOKENS, (deltas, kinds)
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed", kinds
    assert completed.output_text == "".join(TOKENS), completed
    assert completed.usage.output_tokens == len(TOKENS), completed
    print("streamed response:", len(deltas), "deltas,", len(kinds), "events")

    # The SDK's own stream helper assembles the same text from the events.
    with c.responses.stream(model=MODEL, input="hi") as stream:
        final = stream.get_final_response()
    assert final.output_text == "".join(TOKENS), final
    print("responses.stream:", final.output_text)

    tools = [{"type": "function", "name": "weather", "parameters": {"type": "object"}}]
    called = c.responses.create(model=MODEL, input="[tool] Oslo?", tools=tools)
    call = next(item for item in called.output if item.type == "function_call")
    assert call.name == "weather" and call.arguments == '{"city": "Oslo"}', called
    answered = c.responses.create(model=MODEL, tools=tools, input=[
        {"role": "user", "content": "[tool] Oslo?"},
        {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "cold"}])
    assert answered.output_text == "".join(TOKENS), answered
    print("function call round trip:", call.name, call.arguments)

    # A backend that dies after the first token: the stream ends in the Responses API's error
    # event, which the SDK raises, never in a clean end short of the answer.
    broken = []
    try:
        for event in c.responses.create(model=MODEL, input="[break]", stream=True):
            if event.type == "response.output_text.delta":
                broken.append(event.delta)
        raise AssertionError(f"a broken stream ended cleanly after {broken}")
    except openai.APIError as error:
        assert broken == TOKENS[:1], broken
        print("broken stream: error event after", broken, "-", error.message)

    try:
        c.responses.create(model=MODEL, input="again", previous_response_id=answer.id)
        raise AssertionError("a response id was accepted by a door that keeps none")
    except openai.BadRequestError as error:
        assert "previous_response_id" in str(error), error
        print("refused:", error.status_code, "previous_response_id")


if SCENARIO == "basics":
    basics()
elif SCENARIO == "responses":
    responses()
elif SCENARIO == "concurrent":
    asyncio.run(concurrent(50))
elif SCENARIO == "interrupted":
    interrupted()
elif SCENARIO == "tls":
    tls(sys.argv[4])
else:
    raise SystemExit(f"unknown scenario {SCENARIO}")
