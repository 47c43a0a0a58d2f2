#!/usr/bin/env bash
# The federation measured against nginx on the same work, on loopback, in one run.
#
#   (a)  client -> backend
#   (b)  client -> nginx (two upstreams, least_conn, proxy_next_upstream error timeout
#        non_idempotent) -> backend
#   (c)  client -> node A (HTTP shim) -> QUIC -> node B -> http executor -> backend
#   (c') client -> node A -> http executor on A -> backend
#   (f)  client -> a minimal tokio + hyper proxy -> backend (saturation only: the stack's floor)
# Then the failover race (kill -9 of a backend host mid-run), the idle cost of a node, and
# instructions per (c') and (c) task under callgrind (bench/callgrind.sh).
# Writes its figures into BENCHMARKS.md between the bench markers. Traffic stays on 127.0.0.0/8.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN="${SECONDS_PER_RUN:-5}"
CONNECTIONS="${CONNECTIONS:-64}"
# Each path is measured ROUNDS times, the paths interleaved, and the median is reported: on a
# shared 2-core VM one run can be off by a factor of two (a neighbour's load, a stall).
ROUNDS="${ROUNDS:-3}"

if ! command -v nginx >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends nginx-light >/dev/null
fi
cargo build --release -p triforce --quiet
# The stack's floor, path (f): a minimal tokio + hyper proxy (bench/floor_proxy.rs).
cargo build --release -p triforce --example floor_proxy --quiet
# TRIFORCE_BIN measures another build (an A/B of one change against the previous binary).
T="${TRIFORCE_BIN:-$PWD/target/release/triforce}"
work=$(mktemp -d /tmp/triforce-bench.XXXXXX)
pids=()
cleanup() {
  # Every process this script started leads its own process group (setsid below): killing the
  # groups ends nginx's workers with their master, which a kill of the master alone left
  # running on the port for the next run to measure.
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  sleep 0.5
  for pid in "${pids[@]}"; do kill -9 -- "-$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  # Whatever still listens on the bench's ports now is not this run's: say so.
  for port in $tcp_ports; do
    if listening "$port"; then echo "bench: $port is still in use after cleanup" >&2; fi
  done
  rm -rf "$work"
}
trap cleanup EXIT

# The addresses the bench listens on: a stale process on any of them would be measured in place
# of this run's (or take its port), so the bench refuses to start.
tcp_ports="127.0.0.11:18080 127.0.0.12:18080 127.0.0.20:18000 127.0.0.21:18000 127.0.0.1:19000 127.0.0.2:19000 127.0.0.5:19100 127.0.0.6:19100 127.0.0.7:19100"
listening() {
  ss -Htln "src ${1%:*} and sport = :${1##*:}" 2>/dev/null | grep -q .
}
for port in $tcp_ports; do
  if listening "$port"; then
    echo "bench: $port is in use (a process from an earlier run?); stop it first:" >&2
    ss -Htlnp "src ${port%:*} and sport = :${port##*:}" >&2 || true
    trap - EXIT
    rm -rf "$work"
    exit 1
  fi
done

# start VAR COMMAND...: runs COMMAND in the background, in a process group of its own (so
# cleanup can end it with everything it forked), and stores its pid in VAR.
start() {
  local var=$1
  shift
  setsid "$@" >>"$work/log" 2>&1 &
  pids+=($!)
  printf -v "$var" '%s' "$!"
}

# Backends: b1 on the "A host", b2 on the "B host".
start B1 "$T" backend --listen 127.0.0.11:18080 --name b1
start B2 "$T" backend --listen 127.0.0.12:18080 --name b2

# nginx, two workers (the machine has 2 cores), keep-alive to the upstreams.
cat >"$work/nginx.conf" <<CONF
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  upstream backends {
    least_conn;
    server 127.0.0.11:18080 max_fails=1 fail_timeout=10s;
    server 127.0.0.12:18080 max_fails=1 fail_timeout=10s;
    keepalive 64;
  }
  server {
    listen 127.0.0.20:18000;
    location / {
      proxy_pass http://backends;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_next_upstream error timeout non_idempotent;
      proxy_connect_timeout 1s;
    }
  }
}
CONF
start NGINX nginx -c "$work/nginx.conf" -p "$work" -g 'daemon off;'
start FLOOR target/release/examples/floor_proxy 127.0.0.21:18000 http://127.0.0.11:18080/

# The federation: A (no GPU, many cores: it keeps chat local) and B (the only GPU node, so
# gpu_inference sent to A goes to B over QUIC). Each node's executor calls its own host's
# backend; A can also run gpu_inference (the seed's fallback when no GPU node is online).
psk=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
for n in a b; do
  mkdir -p "$work/$n"
  printf '%s' "$psk" >"$work/$n/psk"
  chmod 600 "$work/$n/psk"
  cat >"$work/$n/federation_nodes.json" <<JSON
{"A": {"ip": "127.0.0.1", "port": 19000, "cores": 64, "ram": 64, "gpu": null, "role": "master", "name": "A"},
 "B": {"ip": "127.0.0.2", "port": 19000, "cores": 1, "ram": 8, "gpu": "bench-gpu", "role": "hub", "name": "B"}}
JSON
done
for n in a b; do
  backend=$([ "$n" = a ] && echo 127.0.0.11 || echo 127.0.0.12)
  cat >"$work/$n/federation.toml" <<TOML
psk_file = "psk"
[timing]
heartbeat_interval_ms = 1000
accept_timeout_min_ms = 100
progress_interval_ms = 500
[limits]
# Two nodes share two cores here, as nginx's two single-threaded workers do: one thread each.
runtime_threads = 1
workers_max = 512
queue_len_max = 4096
# Signed tasks at bench rates (~10k/s) need more than the default 100k window of signatures.
replay_entries_max = 600000
http_connections_max = 4096
# The load generator is one address (node A's) with up to 1024 connections, more while a
# failover reconnects: it may hold them all.
http_connections_per_source_max = 4096
[executors.chat]
kind = "http"
url = "http://$backend:18080/"
[executors.gpu_inference]
kind = "http"
url = "http://$backend:18080/"
TOML
done
start NODE_A env RUST_LOG=warn "$T" run --config "$work/a" --node A
start NODE_B env RUST_LOG=warn "$T" run --config "$work/b" --node B
for _ in $(seq 100); do
  if "$T" status --config "$work/a" --node A --json 2>/dev/null | grep -q '"state": "online"'; then break; fi
  sleep 0.1
done

# proc_sum FILE AWK PIDS...: AWK's number from /proc/PID/FILE, summed over the processes and
# their children; 0 for gone ones.
proc_sum() {
  local file=$1 program=$2 total=0 p
  shift 2
  for p in "$@" $(for q in "$@"; do pgrep -P "$q" || true; done); do
    [ -r "/proc/$p/$file" ] && total=$((total + $(awk "$program" "/proc/$p/$file")))
  done
  echo "$total"
}
# CPU ticks (user + system) and peak RSS of processes and their children.
cpu_ticks() { proc_sum stat '{print $14 + $15}' "$@"; }
peak_rss_kb() { proc_sum status '/VmHWM/ {print $2}' "$@"; }

# Busy CPU ticks of the whole machine (user + nice + system + irq + softirq).
machine_ticks() {
  awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat
}

# bench LABEL PROXY_PIDS -- ARGS: runs one measurement, appends a JSON line to results: the
# load generator's summary plus the CPU seconds of the proxy layer and of the whole machine.
bench() {
  local label=$1 proxy=$2; shift 3
  local before after machine_before machine_after
  before=$(cpu_ticks $proxy)
  machine_before=$(machine_ticks)
  local out
  out=$("$T" bench --seconds "$SECONDS_PER_RUN" "$@")
  after=$(cpu_ticks $proxy)
  machine_after=$(machine_ticks)
  python3 -c "import json,sys; d=json.loads(sys.argv[1]); hz=float(sys.argv[6]); d.update(label=sys.argv[2], proxy_cpu_s=int(sys.argv[3])/hz, machine_cpu_s=int(sys.argv[4])/hz, proxy_rss_kb=int(sys.argv[5])); print(json.dumps(d))" \
    "$out" "$label" "$((after - before))" "$((machine_after - machine_before))" "$(peak_rss_kb $proxy)" "$(getconf CLK_TCK)" >>"$work/results"
  echo "$label: $(tail -1 "$work/results")"
}

plain_a=(--mode plain --url http://127.0.0.11:18080/)
plain_b=(--mode plain --url http://127.0.0.20:18000/)
plain_f=(--mode plain --url http://127.0.0.21:18000/)
task_c=(--mode task --config "$work/a" --node A --type gpu_inference)
task_c2=(--mode task --config "$work/a" --node A --type chat)

echo "== saturation (closed loop, $CONNECTIONS connections, $ROUNDS x $SECONDS_PER_RUN s each, interleaved)"
for _ in $(seq "$ROUNDS"); do
  bench sat_a "$B1" -- "${plain_a[@]}" --connections "$CONNECTIONS"
  bench sat_b "$NGINX" -- "${plain_b[@]}" --connections "$CONNECTIONS"
  bench sat_c "$NODE_A $NODE_B" -- "${task_c[@]}" --connections "$CONNECTIONS"
  bench sat_c2 "$NODE_A" -- "${task_c2[@]}" --connections "$CONNECTIONS"
  bench sat_f "$FLOOR" -- "${plain_f[@]}" --connections "$CONNECTIONS"
done

rate=$(python3 - "$work/results" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
median = lambda label: statistics.median(r["rps"] for r in rows if r["label"] == label)
print(int(0.5 * min(median("sat_b"), median("sat_c"), median("sat_c2"))))
PY
)
echo "== latency at a fixed rate of $rate requests/s (open loop, $ROUNDS rounds, interleaved)"
for _ in $(seq "$ROUNDS"); do
  bench fixed_a "$B1" -- "${plain_a[@]}" --rate "$rate" --connections 1024
  bench fixed_b "$NGINX" -- "${plain_b[@]}" --rate "$rate" --connections 1024
  bench fixed_c "$NODE_A $NODE_B" -- "${task_c[@]}" --rate "$rate" --connections 1024
  bench fixed_c2 "$NODE_A" -- "${task_c2[@]}" --rate "$rate" --connections 1024
done

# Every `triforce bench` run first loads for 2 s unrecorded (its warm-up: the client's connections,
# the nodes' pools); the kill lands 3 s into the measured 20 s.
echo "== failover race: kill -9 of a backend host 3 s into 20 measured s at $rate requests/s"
race() {
  local label=$1 victims=$2; shift 2
  ( sleep 5; kill -9 $victims ) &
  SECONDS_PER_RUN=20 bench "$label" "" -- "$@" --rate "$rate" --connections 1024
}
race race_nginx "$B2" "${plain_b[@]}"
start B2 "$T" backend --listen 127.0.0.12:18080 --name b2
sleep 1
race race_federation "$NODE_B $B2" "${task_c[@]}"

echo "== idle cost: one node of a 3-node federation, 60 s of heartbeats (10 s interval)"
mkdir -p "$work/idle"
printf '%s' "$psk" >"$work/idle/psk"
chmod 600 "$work/idle/psk"
cat >"$work/idle/federation_nodes.json" <<JSON
{"hetzner": {"ip": "127.0.0.5", "port": 19100, "cores": 20, "ram": 62, "gpu": null, "role": "master", "name": "Hetzner EX63"},
 "zombie-pc": {"ip": "127.0.0.6", "port": 19100, "cores": 16, "ram": 30, "gpu": "RX 6800 XT", "role": "hub", "name": "Zombie PC"},
 "backup": {"ip": "127.0.0.7", "port": 19100, "cores": 28, "ram": 64, "gpu": null, "role": "hub", "name": "Backup VPS"}}
JSON
printf 'psk_file = "psk"\n' >"$work/idle/federation.toml"
start IDLE env RUST_LOG=warn "$T" run --config "$work/idle" --node hetzner
start IDLE_Z env RUST_LOG=warn "$T" run --config "$work/idle" --node zombie-pc
start IDLE_B env RUST_LOG=warn "$T" run --config "$work/idle" --node backup
sleep 5
before=$(cpu_ticks "$IDLE")
sleep 60
after=$(cpu_ticks "$IDLE")
python3 -c "import json; print(json.dumps({'label': 'idle', 'cpu_s': ($after - $before) / $(getconf CLK_TCK), 'rss_kb': int(open('/proc/$IDLE/status').read().split('VmRSS:')[1].split()[0])}))" >>"$work/results"
tail -1 "$work/results"

mkdir -p target/bench && cp "$work/results" target/bench/results.jsonl
python3 bench/report.py "$work/results" "$rate" "$CONNECTIONS" "$SECONDS_PER_RUN" "$ROUNDS" BENCHMARKS.md
echo "figures written to BENCHMARKS.md"

# The per-task cost a shared machine cannot blur: instructions per (c') and (c) task under
# callgrind (CALLGRIND=0 skips it). Its own script, so it can also run alone.
if [ "${CALLGRIND:-1}" != 0 ]; then
  cleanup
  pids=()
  bash bench/callgrind.sh
fi
