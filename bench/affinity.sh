#!/usr/bin/env bash
# Session affinity measured on real servers: two llama.cpp servers (llama-cpp-python with its
# prompt cache, SmolLM2-135M, one thread each), one behind each of I2 and I3, and the door on
# I1. 8 conversations of 6 turns, each with its own ~800-token system prompt, played
# concurrently through the door (bench/affinity_client.py; they join STAGGER_S apart), with `selection.affinity` on and
# then off (I1 restarted between); then once more each way with one conversation sending ten
# times the others' traffic. Time to first token per turn; turn 1 is cold everywhere, so turns
# 2-6 are compared. Writes BENCHMARKS.md between the affinity markers. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
CONVERSATIONS="${CONVERSATIONS:-8}"
TURNS="${TURNS:-6}"
# Conversations join one by one, this many seconds apart: about one cold first turn on a
# one-thread server, so what the run compares is where later turns go, not the queue at start.
STAGGER_S="${STAGGER_S:-10}"
.ci/llama-server >/dev/null
.ci/python-clients >/dev/null
cargo build --release -p triforce --quiet
T="$PWD/target/release/triforce"
work=$(mktemp -d /tmp/triforce-affinity.XXXXXX)
pids=()
source bench/common.sh
trap cleanup EXIT
server() {
  start target/llama-server/bin/python -m llama_cpp.server \
    --model target/models/SmolLM2-135M-Instruct.Q4_1.gguf --model_alias smollm2 \
    --host "$1" --port 18095 --n_ctx 4096 --n_threads 1 --cache true \
    --interrupt_requests False
}

psk=$(new_psk)
for n in i1 i2 i3; do
  mkdir -p "$work/$n"
  printf '%s' "$psk" >"$work/$n/psk"
  chmod 600 "$work/$n/psk"
  cat >"$work/$n/federation_nodes.json" <<JSON
{"I1": {"ip": "127.0.0.3", "port": 19400, "cores": 2, "ram": 8, "gpu": null, "role": "master", "name": "door"},
 "I2": {"ip": "127.0.0.4", "port": 19400, "cores": 2, "ram": 8, "gpu": null, "role": "hub", "name": "one"},
 "I3": {"ip": "127.0.0.8", "port": 19400, "cores": 2, "ram": 8, "gpu": null, "role": "hub", "name": "two"}}
JSON
  printf 'psk_file = "psk"\n[timing]\nheartbeat_interval_ms = 1000\nbackend_probe_interval_ms = 2000\n[limits]\nruntime_threads = 1\n' \
    >"$work/$n/federation.toml"
done
printf '[executors.chat]\nkind = "openai"\nbase_url = "http://127.0.0.13:18095"\n' >>"$work/i2/federation.toml"
printf '[executors.chat]\nkind = "openai"\nbase_url = "http://127.0.0.14:18095"\n' >>"$work/i3/federation.toml"
key=$("$T" apikey add --config "$work/i1" --name bench 2>/dev/null | tail -1)
start env RUST_LOG=warn "$T" run --config "$work/i2" --node I2
start env RUST_LOG=warn "$T" run --config "$work/i3" --node I3

# play MODE HOT: fresh servers (empty caches) and a door with `selection.affinity = MODE`.
play() {
  local mode=$1 hot=$2 s1 s2 door
  server 127.0.0.13; s1=$last_pid
  server 127.0.0.14; s2=$last_pid
  cp "$work/i1/federation.toml" "$work/i1/base.toml"
  printf '[selection]\naffinity = %s\n[ingress]\nlisten = "127.0.0.3:18400"\n' "$mode" >>"$work/i1/federation.toml"
  start env RUST_LOG=warn "$T" run --config "$work/i1" --node I1; door=$last_pid
  wait_port 127.0.0.3:18400
  mv "$work/i1/base.toml" "$work/i1/federation.toml"
  wait_port 127.0.0.13:18095
  wait_port 127.0.0.14:18095
  for _ in $(seq 100); do
    models=$(curl -s -H "Authorization: Bearer $key" http://127.0.0.3:18400/v1/models || true)
    case "$models" in *'"I2"'*'"I3"'* | *'"I3"'*'"I2"'*) break ;; esac
    sleep 0.2
  done
  echo "== affinity=$mode hot=$hot" >&2
  target/python-clients/bin/python bench/affinity_client.py http://127.0.0.3:18400/v1/chat/completions \
    "$key" smollm2 "$CONVERSATIONS" "$TURNS" "$hot" "$STAGGER_S" |
    python3 -c "import json,sys; [print(json.dumps(dict(json.loads(l), affinity=sys.argv[1]=='true', hot=int(sys.argv[2])))) for l in sys.stdin]" "$mode" "$hot" |
    tee -a "$work/results" >&2
  for pid in $door $s1 $s2; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  sleep 1
  while listening 127.0.0.3:18400 || listening 127.0.0.13:18095 || listening 127.0.0.14:18095; do sleep 0.2; done
}
play true 1
play false 1
play true 10
play false 10

mkdir -p target/bench && cp "$work/results" target/bench/affinity.jsonl
python3 bench/affinity_report.py "$work/results" "$CONVERSATIONS" "$TURNS" BENCHMARKS.md "$STAGGER_S"
