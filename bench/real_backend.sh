#!/usr/bin/env bash
# The AI door in front of a real inference server: llama.cpp's OpenAI server (llama-cpp-python,
# SmolLM2-135M, from .ci/llama-server) streamed direct against through two nodes (the door on
# I1, QUIC, the relay on I2), interleaved, one connection, greedy decoding:
#
#   direct   client -> llama.cpp server
#   fed      client -> I1 ingress -> QUIC -> I2 -> llama.cpp server
#
# Per stream: time to first token, time to the last byte, and the gaps between chunks as they
# reach the client (a real server writes no send stamps, so the added delay per chunk shows as
# the difference of the end times less that of the first tokens, and as gaps that grow).
# Writes its figures into BENCHMARKS.md between the real-backend markers. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN="${SECONDS_PER_RUN:-10}"
ROUNDS="${ROUNDS:-3}"
.ci/llama-server >/dev/null
cargo build --release -p triforce --quiet
T="$PWD/target/release/triforce"
work=$(mktemp -d /tmp/triforce-real-backend.XXXXXX)
pids=()
source bench/common.sh
trap cleanup EXIT

start target/llama-server/bin/python -m llama_cpp.server \
  --model target/models/SmolLM2-135M-Instruct.Q4_1.gguf --model_alias smollm2 \
  --host 127.0.0.13 --port 18090 --interrupt_requests False
psk=$(new_psk)
for n in i1 i2; do
  mkdir -p "$work/$n"
  printf '%s' "$psk" >"$work/$n/psk"
  chmod 600 "$work/$n/psk"
  cat >"$work/$n/federation_nodes.json" <<JSON
{"I1": {"ip": "127.0.0.3", "port": 19300, "cores": 2, "ram": 8, "gpu": null, "role": "master", "name": "door"},
 "I2": {"ip": "127.0.0.4", "port": 19300, "cores": 2, "ram": 8, "gpu": null, "role": "hub", "name": "relay"}}
JSON
  printf 'psk_file = "psk"\n[timing]\nheartbeat_interval_ms = 1000\nbackend_probe_interval_ms = 1000\n[limits]\nruntime_threads = 1\n' \
    >"$work/$n/federation.toml"
done
printf '[ingress]\nlisten = "127.0.0.3:18300"\n' >>"$work/i1/federation.toml"
printf '[executors.chat]\nkind = "openai"\nbase_url = "http://127.0.0.13:18090"\n' >>"$work/i2/federation.toml"
key=$("$T" apikey add --config "$work/i1" --name bench 2>/dev/null | tail -1)
start env RUST_LOG=warn "$T" run --config "$work/i1" --node I1
start env RUST_LOG=warn "$T" run --config "$work/i2" --node I2
wait_port 127.0.0.13:18090
wait_port 127.0.0.3:18300
for _ in $(seq 100); do
  curl -s -H "Authorization: Bearer $key" http://127.0.0.3:18300/v1/models | grep -q smollm2 && break
  sleep 0.1
done

# 64 tokens, the end of turn held back so every answer has that length.
body='{"model": "smollm2", "stream": true, "temperature": 0, "max_tokens": 64, "logit_bias": {"2": -100}, "messages": [{"role": "user", "content": "Tell me about the sea."}]}'
for _ in $(seq "$ROUNDS"); do
  for path in direct fed; do
    if [ "$path" = direct ]; then
      target=(--url http://127.0.0.13:18090/v1/chat/completions)
    else
      target=(--url http://127.0.0.3:18300/v1/chat/completions --api-key "$key")
    fi
    out=$("$T" bench --mode stream "${target[@]}" --body "$body" --connections 1 \
      --seconds "$SECONDS_PER_RUN" --warmup-seconds 2)
    python3 -c "import json,sys; d=json.loads(sys.argv[1]); d['label']=sys.argv[2]; print(json.dumps(d))" \
      "$out" "$path" | tee -a "$work/results"
  done
done
mkdir -p target/bench && cp "$work/results" target/bench/real_backend.jsonl
python3 - "$work/results" "$ROUNDS" "$SECONDS_PER_RUN" BENCHMARKS.md <<'PY'
import json, statistics, subprocess, sys
results, rounds, seconds, out = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
rows = [json.loads(line) for line in open(results)]
def median(label, field):
    return statistics.median(r[field] for r in rows if r["label"] == label)
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
lines = [
    f"Run at commit {commit}: {rounds} interleaved rounds of {seconds} s per path, one connection,",
    "64 tokens per stream (SmolLM2-135M, llama-cpp-python, greedy); medians over the rounds.",
    "",
    "| path | streams | TTFT p50 | TTFT p99 | end p50 | gap p50 | gap p99 | errors |",
    "|---|---|---|---|---|---|---|---|",
]
for label in ("direct", "fed"):
    lines.append(
        f"| {label} | {sum(r['requests'] for r in rows if r['label'] == label)} "
        f"| {median(label, 'p50_ms'):.2f} ms | {median(label, 'p99_ms'):.2f} ms "
        f"| {median(label, 'end_p50_ms'):.1f} ms | {median(label, 'gap_p50_ms'):.2f} ms "
        f"| {median(label, 'gap_p99_ms'):.2f} ms | {sum(r['errors'] for r in rows if r['label'] == label)} |"
    )
ttft = median("fed", "p50_ms") - median("direct", "p50_ms")
end = median("fed", "end_p50_ms") - median("direct", "end_p50_ms")
lines += ["", f"Added by two nodes: {ttft:.2f} ms to the first token (p50), {end:.2f} ms to the last byte (p50)."]
text = open(out).read()
begin, finish = "<!-- real-backend:begin -->", "<!-- real-backend:end -->"
block = begin + "\n" + "\n".join(lines) + "\n" + finish
if begin in text:
    head, rest = text.split(begin, 1)
    text = head + block + rest.split(finish, 1)[1]
else:
    text = text.rstrip() + "\n\n## In front of a real inference server (bench/real_backend.sh)\n\n" + block + "\n"
open(out, "w").write(text)
print("\n".join(lines))
PY
