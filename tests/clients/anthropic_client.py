"""The `anthropic` SDK against a TriForce ingress, as Claude Code talks to it.

Usage: anthropic_client.py BASE_URL API_KEY

The federation translates Anthropic's Messages API to Chat Completions on the relaying node;
the backend here is the stand-in, which answers 8 tokens.
"""

import sys

import anthropic

BASE, KEY = sys.argv[1], sys.argv[2]
MODEL = "tiny-llm"
TOKENS = [f"tok{i} " for i in range(8)]

# The SDK sends the key as x-api-key, as Claude Code does with ANTHROPIC_API_KEY.
c = anthropic.Anthropic(base_url=BASE, api_key=KEY, max_retries=0, timeout=30)

message = c.messages.create(
    model=MODEL, max_tokens=64, system="be brief",
    messages=[{"role": "user", "content": "hi"}],
)
assert [b.type for b in message.content] == ["text"], message
assert message.content[0].text == "".join(TOKENS), message
assert message.stop_reason == "end_turn", message
assert message.usage.output_tokens == len(TOKENS) and message.usage.input_tokens >= 1, message
print("message:", message.content[0].text)

with c.messages.stream(
    model=MODEL, max_tokens=64,
    messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
) as stream:
    pieces = list(stream.text_stream)
    final = stream.get_final_message()
assert pieces == TOKENS, pieces
assert final.content[0].text == "".join(TOKENS), final
assert final.usage.output_tokens == len(TOKENS), final
print("streamed message:", len(pieces), "deltas")

# Claude Code's ANTHROPIC_AUTH_TOKEN is sent as a bearer token.
bearer = anthropic.Anthropic(base_url=BASE, auth_token=KEY, max_retries=0, timeout=30)
assert bearer.messages.create(model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "hi"}]).content
print("bearer token: accepted")

try:
    anthropic.Anthropic(base_url=BASE, api_key="tf-wrong", max_retries=0).messages.create(
        model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "x"}])
    raise AssertionError("a wrong key was accepted")
except anthropic.AuthenticationError as error:
    assert error.status_code == 401, error
    print("wrong key:", error.status_code)

try:
    c.messages.create(model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "x"}],
                      thinking={"type": "enabled", "budget_tokens": 1024})
    raise AssertionError("extended thinking was dropped silently")
except anthropic.BadRequestError as error:
    assert "thinking" in str(error), error
    print("refused:", error.status_code, "thinking")

try:
    c.messages.create(model="no-such-model", max_tokens=16, messages=[{"role": "user", "content": "x"}])
    raise AssertionError("an unknown model was accepted")
except anthropic.NotFoundError as error:
    assert error.status_code == 404, error
    print("unknown model:", error.status_code)

# A tool call round trip: the backend (its `[tool]` cue) calls the tool, the client answers it,
# the backend answers in text.
tools = [{"name": "weather", "description": "The weather in a city.",
          "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
asked = {"role": "user", "content": "[tool] the weather in Oslo?"}
first = c.messages.create(model=MODEL, max_tokens=64, tools=tools, messages=[asked])
assert first.stop_reason == "tool_use", first
use = next(b for b in first.content if b.type == "tool_use")
assert use.name == "weather" and use.input == {"city": "Oslo"}, use
second = c.messages.create(model=MODEL, max_tokens=64, tools=tools, messages=[
    asked, {"role": "assistant", "content": first.content},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "cold"}]}])
assert second.content[0].text == "".join(TOKENS), second
with c.messages.stream(model=MODEL, max_tokens=64, tools=tools, messages=[asked]) as stream:
    streamed = stream.get_final_message()
streamed_use = next(b for b in streamed.content if b.type == "tool_use")
assert streamed.stop_reason == "tool_use" and streamed_use.input == {"city": "Oslo"}, streamed
print("tool call: whole and streamed, and its result answered")

# A backend that dies after the first token: the stream ends in Anthropic's error event, which
# the SDK raises, never in a clean end short of the answer.
pieces = []
try:
    with c.messages.stream(model=MODEL, max_tokens=64,
                           messages=[{"role": "user", "content": "[break]"}]) as stream:
        for text in stream.text_stream:
            pieces.append(text)
    raise AssertionError(f"a broken stream ended cleanly after {pieces}")
except anthropic.APIStatusError as error:
    assert pieces == TOKENS[:1], pieces
    assert error.body["error"]["type"] == "api_error", error.body
    print("broken stream: error event after", pieces)
