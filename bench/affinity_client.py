"""Conversations through the door, timed: N conversations of T turns, played concurrently, each
with its own ~800-token system prompt; each turn resends the whole history and streams its
answer. Prints one JSON line per turn: {"conversation", "turn", "ttft_ms", "node"}.

Usage: affinity_client.py URL KEY MODEL CONVERSATIONS TURNS [HOT [STAGGER_S]]
HOT: the first conversation sends that many turns for each turn of the others (10: ten times
the others' traffic). STAGGER_S: conversation n starts n * STAGGER_S seconds after the first,
as people join a shared server one by one (0: all at once, when every second turn waits behind
the others' cold first turns on a one-thread server).
"""

import http.client
import json
import random
import sys
import threading
import time
import urllib.parse

URL, KEY, MODEL = sys.argv[1], sys.argv[2], sys.argv[3]
CONVERSATIONS, TURNS = int(sys.argv[4]), int(sys.argv[5])
HOT = int(sys.argv[6]) if len(sys.argv) > 6 else 1
STAGGER_S = float(sys.argv[7]) if len(sys.argv) > 7 else 0.0
WORDS = ("river stone lantern orchard harbor meadow violet copper thunder willow ember canyon "
         "falcon glacier marble saffron tundra beacon cobalt prairie quartz sparrow timber "
         "velvet walnut zephyr amber blossom cedar delta").split()
target = urllib.parse.urlsplit(URL)
lock = threading.Lock()


def system_prompt(n):
    rng = random.Random(n)
    words = " ".join(rng.choice(WORDS) for _ in range(560))
    return f"You are assistant number {n}. Remember these words exactly: {words}."


def ask(messages):
    body = json.dumps({"model": MODEL, "stream": True, "temperature": 0, "max_tokens": 12,
                       "messages": messages})
    connection = http.client.HTTPConnection(target.hostname, target.port, timeout=300)
    started = time.monotonic()
    connection.request("POST", target.path, body, {"Authorization": f"Bearer {KEY}",
                                                    "Content-Type": "application/json"})
    response = connection.getresponse()
    node = response.getheader("x-triforce-node", "")
    first, text = None, []
    for line in response:
        line = line.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        delta = json.loads(line[6:])["choices"][0]["delta"].get("content")
        if delta:
            first = first or time.monotonic()
            text.append(delta)
    connection.close()
    if response.status != 200 or first is None:
        raise RuntimeError(f"turn failed: {response.status}")
    return (first - started) * 1000, node, "".join(text)


def conversation(n):
    time.sleep(n * STAGGER_S)
    messages = [{"role": "system", "content": system_prompt(n)}]
    turns = TURNS * (HOT if n == 0 else 1)
    for turn in range(1, turns + 1):
        messages.append({"role": "user", "content": f"Question {turn}: which word comes {turn}th?"})
        ttft_ms, node, answer = ask(messages)
        messages.append({"role": "assistant", "content": answer})
        with lock:
            print(json.dumps({"conversation": n, "turn": turn, "ttft_ms": round(ttft_ms, 1),
                              "node": node}), flush=True)


threads = [threading.Thread(target=conversation, args=(n,)) for n in range(CONVERSATIONS)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
