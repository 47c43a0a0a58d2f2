"""Every client dialect's SDK through the door to a real llama.cpp server (OpenAI's API only).

Usage: real_backend_sdks.py BASE_URL API_KEY MODEL OPENING

OPENING is the start of the server's own greedy answer to QUESTION (asked by the test
directly in the server's dialect). Each SDK's answer, whole and streamed, must start the same:
the relaying node translated the request and the answer, and nothing else changed.
"""

import sys

import anthropic
import ollama
from openai import OpenAI

BASE, KEY, MODEL, OPENING = sys.argv[1:5]
QUESTION = "What is the capital of France?"
MAX = 40


def check(what, text):
    assert text.startswith(OPENING), f"{what}: {text!r} does not start with {OPENING!r}"
    print(f"{what}: {text[:len(OPENING)]!r}...")


openai_client = OpenAI(base_url=f"{BASE}/v1", api_key=KEY, max_retries=0, timeout=120)
answer = openai_client.responses.create(model=MODEL, input=QUESTION, temperature=0, max_output_tokens=MAX)
check("openai responses", answer.output_text)
with openai_client.responses.stream(model=MODEL, input=QUESTION, temperature=0, max_output_tokens=MAX) as stream:
    check("openai responses.stream", stream.get_final_response().output_text)
# Items with parts, as Open WebUI's Responses connection sends every message. llama-cpp-python's
# chat templates take a plain text only (a list fails "can only concatenate str"), so a single
# text part must reach it as one.
parts = [{"role": "user", "content": [{"type": "input_text", "text": QUESTION}]}]
answer = openai_client.responses.create(model=MODEL, input=parts, temperature=0, max_output_tokens=MAX)
check("openai responses, input as parts", answer.output_text)

claude = anthropic.Anthropic(base_url=BASE, api_key=KEY, max_retries=0, timeout=120)
# This SDK release takes no `temperature` argument; the API's field goes in the body.
greedy = {"temperature": 0}
message = claude.messages.create(model=MODEL, max_tokens=MAX, extra_body=greedy,
                                 messages=[{"role": "user", "content": QUESTION}])
check("anthropic messages", message.content[0].text)
with claude.messages.stream(model=MODEL, max_tokens=MAX, extra_body=greedy,
                            messages=[{"role": "user", "content": QUESTION}]) as stream:
    check("anthropic messages.stream", "".join(stream.text_stream))

local = ollama.Client(host=BASE, headers={"Authorization": f"Bearer {KEY}"}, timeout=120)
options = {"temperature": 0, "num_predict": MAX}
chat = local.chat(model=MODEL, messages=[{"role": "user", "content": QUESTION}], options=options)
check("ollama chat", chat.message.content)
pieces = [part.message.content for part in local.chat(
    model=MODEL, messages=[{"role": "user", "content": QUESTION}], options=options, stream=True)]
check("ollama chat, streamed", "".join(pieces))
