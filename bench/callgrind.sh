#!/usr/bin/env bash
# Instructions per task under callgrind: the one per-task cost figure a shared 2-core machine
# cannot blur (CPU time per task moved by 2x between rounds of one binary). bench/run.sh's
# paths, with the nodes under valgrind:
#
#   (c') client -> node A -> http executor on A -> backend          (chat: A keeps it)
#   (c)  client -> node A -> QUIC -> node B -> http executor -> backend  (gpu_inference: B's GPU)
#
# Per path: a warm-up, then instrumentation on, counters zeroed, a fixed rate of tasks for a
# few seconds, a dump; instructions per task = the dump's total over the tasks the load
# generator saw answered (for (c), node A's and node B's together). valgrind hides the CPU's
# SHA extensions, so the signature and ledger digest count about ten times their native cost
# here: compare these figures with each other, not with native ones. Writes BENCHMARKS.md
# between the callgrind markers. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE="${RATE:-200}"
SECONDS_PER_RUN="${SECONDS_PER_RUN:-5}"
if ! command -v valgrind >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends valgrind >/dev/null
fi
cargo build --release -p triforce --quiet
T="$PWD/target/release/triforce"
work=$(mktemp -d /tmp/triforce-callgrind.XXXXXX)
pids=()
source bench/common.sh
trap cleanup EXIT

start "$T" backend --listen 127.0.0.11:18180 --name b1
start "$T" backend --listen 127.0.0.12:18180 --name b2
psk=$(new_psk)
for n in a b; do
  mkdir -p "$work/$n"
  printf '%s' "$psk" >"$work/$n/psk"
  chmod 600 "$work/$n/psk"
  backend=$([ "$n" = a ] && echo 127.0.0.11 || echo 127.0.0.12)
  cat >"$work/$n/federation_nodes.json" <<JSON
{"A": {"ip": "127.0.0.1", "port": 19500, "cores": 64, "ram": 64, "gpu": null, "role": "master", "name": "A"},
 "B": {"ip": "127.0.0.2", "port": 19500, "cores": 1, "ram": 8, "gpu": "bench-gpu", "role": "hub", "name": "B"}}
JSON
  cat >"$work/$n/federation.toml" <<TOML
psk_file = "psk"
[timing]
heartbeat_interval_ms = 1000
accept_timeout_ms = 5000
accept_timeout_min_ms = 2000
progress_interval_ms = 2000
[limits]
runtime_threads = 1
workers_max = 512
replay_entries_max = 600000
http_connections_per_source_max = 512
[executors.chat]
kind = "http"
url = "http://$backend:18180/"
[executors.gpu_inference]
kind = "http"
url = "http://$backend:18180/"
TOML
done
for n in a b; do
  N=$(echo "$n" | tr a-z A-Z)
  start valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/$n.%p.out" \
    "$T" run --config "$work/$n" --node "$N"
  printf -v "VG_$N" '%s' "$last_pid"
done
wait_port 127.0.0.1:19500
wait_port 127.0.0.2:19500
for _ in $(seq 300); do
  if "$T" status --config "$work/a" --node A --json 2>/dev/null | grep -q '"state": "online"'; then break; fi
  sleep 0.2
done

load() {
  "$T" bench --mode task --config "$work/a" --node A --type "$1" --rate "$RATE" \
    --connections 16 --seconds "$2" --warmup-seconds 0
}

# measure LABEL TYPE PIDS...: instructions per task of TYPE tasks, over the valgrind PIDS.
measure() {
  local label=$1 type=$2 pid out requests total=0
  shift 2
  load "$type" 3 >/dev/null
  for pid in "$@"; do callgrind_control -i on "$pid" >/dev/null; callgrind_control -z "$pid" >/dev/null; done
  out=$(load "$type" "$SECONDS_PER_RUN")
  for pid in "$@"; do callgrind_control -d "$pid" >/dev/null; callgrind_control -i off "$pid" >/dev/null; done
  sleep 1
  for pid in "$@"; do
    dump=$(ls -t "$work"/*."$pid".out* | head -1)
    total=$((total + $(awk '/^(summary|totals):/ {print $2; exit}' "$dump")))
    rm -f "$work"/*."$pid".out.*
  done
  requests=$(python3 -c "import json,sys; d=json.loads(sys.argv[1]); print(d['requests'] - d['errors'])" "$out")
  python3 -c "import json,sys; print(json.dumps({'label': sys.argv[1], 'tasks': int(sys.argv[2]), 'instructions': int(sys.argv[3]), 'per_task': int(sys.argv[3]) / max(1, int(sys.argv[2]))}))" \
    "$label" "$requests" "$total" | tee -a "$work/results"
}
# setsid execs valgrind in place and valgrind its tool: the started pid is the node's.
measure "c'" chat "$VG_A"
measure c gpu_inference "$VG_A" "$VG_B"

mkdir -p target/bench && cp "$work/results" target/bench/callgrind.jsonl
python3 - "$work/results" "$RATE" "$SECONDS_PER_RUN" BENCHMARKS.md <<'PY'
import json, subprocess, sys
results, rate, seconds, out = sys.argv[1:5]
rows = {r["label"]: r for r in map(json.loads, open(results))}
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
lines = [f"Run at commit {commit}: {rate} tasks/s for {seconds} s per path after a 3 s warm-up, nodes on one runtime thread under callgrind.", "",
         "| path | tasks | instructions per task |", "|---|---|---|"]
for label, name in (("c'", "(c') one node"), ("c", "(c) two nodes, A + B")):
    if label in rows:
        lines.append(f"| {name} | {rows[label]['tasks']} | {rows[label]['per_task'] / 1000:.1f}k |")
text = open(out).read()
begin, finish = "<!-- callgrind:begin -->", "<!-- callgrind:end -->"
block = begin + "\n" + "\n".join(lines) + "\n" + finish
if begin in text:
    head, rest = text.split(begin, 1)
    text = head + block + rest.split(finish, 1)[1]
else:
    text = text.rstrip() + "\n\n## Instructions per task under callgrind (bench/callgrind.sh)\n\n" + block + "\n"
open(out, "w").write(text)
print("\n".join(lines))
PY
