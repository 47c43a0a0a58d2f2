#!/usr/bin/env bash
# The AI front door measured: OpenAI chat requests through the federation (ingress on I1, QUIC,
# the openai executor on I2, the backend) against the same backend direct, behind nginx, and
# behind LiteLLM's proxy (one worker), on the same machine in one run; then time to first token
# for streams, and 1,000 concurrent slow streams through two nodes with each node's peak RSS.
#
#   direct   client -> backend (`triforce backend --llm`)
#   nginx    client -> nginx -> backend
#   fed      client -> I1 ingress -> QUIC -> I2 -> backend
#   litellm  client -> LiteLLM proxy (pip install 'litellm[proxy]', 1 worker) -> backend
#   portkey  client -> Portkey's gateway (npm @portkey-ai/gateway, headless) -> backend
#   fed1     client -> S1 ingress -> the openai executor on S1 -> backend (one node)
#
# Writes its figures into BENCHMARKS.md between the front-door markers. Traffic stays on
# 127.0.0.0/8; LiteLLM runs with its telemetry and remote model-cost fetch switched off.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN="${SECONDS_PER_RUN:-5}"
ROUNDS="${ROUNDS:-3}"
SLOW_STREAMS="${SLOW_STREAMS:-1000}"
# ONLY_SLOW=1: just the concurrent slow streams (for looking into them).
ONLY_SLOW="${ONLY_SLOW:-}"

if ! command -v nginx >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends nginx-light >/dev/null
fi
portkey_dir=target/bench-portkey
portkey_server="$portkey_dir/node_modules/@portkey-ai/gateway/build/start-server.js"
if ! [ -f "$portkey_server" ] && command -v npm >/dev/null; then
  mkdir -p "$portkey_dir"
  (cd "$portkey_dir" && npm install --silent --no-audit --no-fund @portkey-ai/gateway@1.15.2) ||
    echo "front door: Portkey could not be installed; its rows will say not measured" >&2
fi
litellm_venv=target/bench-litellm
if ! [ -x "$litellm_venv/bin/litellm" ]; then
  python3 -m venv "$litellm_venv"
  "$litellm_venv/bin/pip" install --quiet --disable-pip-version-check 'litellm[proxy]' ||
    echo "front door: LiteLLM could not be installed; its rows will say not measured" >&2
fi
cargo build --release -p triforce --quiet
T="$PWD/target/release/triforce"
work=$(mktemp -d /tmp/triforce-front-door.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  sleep 0.5
  for pid in "${pids[@]}"; do kill -9 -- "-$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

tcp_ports="127.0.0.9:18100 127.0.0.9:19200 0.0.0.0:18787 127.0.0.13:18080 127.0.0.14:18080 127.0.0.20:18001 127.0.0.21:18200 127.0.0.3:18100 127.0.0.3:19200 127.0.0.4:19200 127.0.0.8:19200"
# listening ADDR:PORT; 0.0.0.0 for a server that listens on every address (Portkey).
listening() {
  local filter="sport = :${1##*:}"
  [ "${1%:*}" = 0.0.0.0 ] || filter="src ${1%:*} and $filter"
  ss -Htln "$filter" 2>/dev/null | grep -q .
}
for port in $tcp_ports; do
  if listening "$port"; then
    echo "front door: $port is in use (a process from an earlier run?); stop it first" >&2
    exit 1
  fi
done

start() {
  local var=$1
  shift
  setsid "$@" >>"$work/log" 2>&1 &
  pids+=($!)
  printf -v "$var" '%s' "$!"
}
wait_port() {
  for _ in $(seq 300); do listening "$1" && return 0; sleep 0.1; done
  echo "front door: nothing listens on $1; log:" >&2
  tail -20 "$work/log" >&2
  exit 1
}

# The backends: a fast one (answers at once) and a slow one for the long streams (50 tokens,
# 100 ms apart: a 5 s answer, the pace of a local 7B model).
start FAST "$T" backend --llm --listen 127.0.0.13:18080 --name fast --gap-ms 0 --tokens 8 --models tiny-llm
# The slow one stamps each token with its send time, for each chunk's delay to the client.
start SLOW "$T" backend --llm --listen 127.0.0.14:18080 --name slow --gap-ms 100 --tokens 50 --models slow-llm --stamp

cat >"$work/nginx.conf" <<CONF
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  upstream llm { server 127.0.0.13:18080; keepalive 64; }
  server {
    listen 127.0.0.20:18001;
    location / {
      proxy_pass http://llm;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
CONF
start NGINX nginx -c "$work/nginx.conf" -p "$work" -g 'daemon off;'

master_key="sk-bench-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
cat >"$work/litellm.yaml" <<YAML
model_list:
  - model_name: tiny-llm
    litellm_params:
      model: openai/tiny-llm
      api_base: http://127.0.0.13:18080/v1
      api_key: none
litellm_settings:
  telemetry: false
YAML
if [ -x "$litellm_venv/bin/litellm" ]; then
  start LITELLM env LITELLM_MASTER_KEY="$master_key" LITELLM_LOCAL_MODEL_COST_MAP=True \
    LITELLM_TELEMETRY=False NO_PROXY='*' "$litellm_venv/bin/litellm" --config "$work/litellm.yaml" \
    --host 127.0.0.21 --port 18200 --num_workers 1
fi

if [ -f "$portkey_server" ] && command -v node >/dev/null; then
  # Portkey's gateway forwards to a custom host only when it is trusted; it listens on every
  # address of the machine, and the bench sends it traffic on loopback only.
  start PORTKEY env TRUSTED_CUSTOM_HOSTS=127.0.0.13 node "$portkey_server" --port=18787 --headless
fi

# The federation: I1 (the door, no chat of its own), I2 (relays to the fast backend), I3
# (relays to the slow one). Models tell I2 and I3 apart.
psk=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
for n in i1 i2 i3; do
  mkdir -p "$work/$n"
  printf '%s' "$psk" >"$work/$n/psk"
  chmod 600 "$work/$n/psk"
  cat >"$work/$n/federation_nodes.json" <<JSON
{"I1": {"ip": "127.0.0.3", "port": 19200, "cores": 2, "ram": 8, "gpu": null, "role": "master", "name": "door"},
 "I2": {"ip": "127.0.0.4", "port": 19200, "cores": 2, "ram": 8, "gpu": null, "role": "hub", "name": "fast"},
 "I3": {"ip": "127.0.0.8", "port": 19200, "cores": 2, "ram": 8, "gpu": null, "role": "hub", "name": "slow"}}
JSON
  cat >"$work/$n/federation.toml" <<TOML
psk_file = "psk"
[timing]
heartbeat_interval_ms = 1000
backend_probe_interval_ms = 1000
[limits]
runtime_threads = 1
relays_max = 4096
queue_len_max = 4096
[ingress]
connections_max = 4096
TOML
done
sed -i 's/^\[ingress\]$/[ingress]\nlisten = "127.0.0.3:18100"/' "$work/i1/federation.toml"
printf '[executors.chat]\nkind = "openai"\nbase_url = "http://127.0.0.13:18080"\n' >>"$work/i2/federation.toml"
printf '[executors.chat]\nkind = "openai"\nbase_url = "http://127.0.0.14:18080"\n' >>"$work/i3/federation.toml"
key=$("$T" apikey add --config "$work/i1" --name bench 2>/dev/null | tail -1)
# One node alone, door and relay together (S1): the federation's cost without a hop.
mkdir -p "$work/solo"
printf '%s' "$psk" >"$work/solo/psk"
chmod 600 "$work/solo/psk"
printf '{"S1": {"ip": "127.0.0.9", "port": 19200, "cores": 2, "ram": 8, "gpu": null, "role": "master", "name": "solo"}}\n' \
  >"$work/solo/federation_nodes.json"
cat >"$work/solo/federation.toml" <<TOML
psk_file = "psk"
[limits]
runtime_threads = 1
relays_max = 4096
[ingress]
listen = "127.0.0.9:18100"
connections_max = 4096
[executors.chat]
kind = "openai"
base_url = "http://127.0.0.13:18080"
TOML
solo_key=$("$T" apikey add --config "$work/solo" --name bench 2>/dev/null | tail -1)
start SOLO env RUST_LOG=warn "$T" run --config "$work/solo" --node S1
start I1 env RUST_LOG=warn "$T" run --config "$work/i1" --node I1
start I2 env RUST_LOG=warn "$T" run --config "$work/i2" --node I2
start I3 env RUST_LOG=warn "$T" run --config "$work/i3" --node I3
wait_port 127.0.0.3:18100
wait_port 127.0.0.13:18080
wait_port 127.0.0.20:18001
# Routable once I1 has heard both relays' models.
for _ in $(seq 100); do
  models=$(curl -s -H "Authorization: Bearer $key" http://127.0.0.3:18100/v1/models || true)
  case "$models" in *tiny-llm*slow-llm* | *slow-llm*tiny-llm*) break ;; esac
  sleep 0.1
done
if [ -x "$litellm_venv/bin/litellm" ]; then wait_port 127.0.0.21:18200; fi
wait_port 127.0.0.9:18100
if [ -n "${PORTKEY:-}" ]; then wait_port 0.0.0.0:18787; fi

# CPU ticks (user + system) of processes and their children (nginx's workers, LiteLLM's).
cpu_ticks() {
  local total=0 p
  for p in "$@" $(for q in "$@"; do pgrep -P "$q" || true; done); do
    [ -r "/proc/$p/stat" ] && total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo "$total"
}
peak_rss_kb() { awk '/VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# bench LABEL PROXY_PIDS -- ARGS: one measurement as a JSON line, with the proxy layer's CPU.
bench() {
  local label=$1 proxy=$2; shift 3
  local before after out
  before=$(cpu_ticks $proxy)
  out=$("$T" bench --seconds "$SECONDS_PER_RUN" --warmup-seconds 1 "$@")
  after=$(cpu_ticks $proxy)
  python3 -c "import json,sys; d=json.loads(sys.argv[1]); d.update(label=sys.argv[2], proxy_cpu_s=int(sys.argv[3])/float(sys.argv[4])); print(json.dumps(d))" \
    "$out" "$label" "$((after - before))" "$(getconf CLK_TCK)" >>"$work/results"
  echo "$label: $(tail -1 "$work/results")"
}

chat='{"model": "tiny-llm", "messages": [{"role": "user", "content": "hi"}]}'
stream='{"model": "tiny-llm", "stream": true, "messages": [{"role": "user", "content": "hi"}]}'
slow='{"model": "slow-llm", "stream": true, "messages": [{"role": "user", "content": "hi"}]}'
direct=(--url http://127.0.0.13:18080/v1/chat/completions)
via_nginx=(--url http://127.0.0.20:18001/v1/chat/completions)
via_fed=(--url http://127.0.0.3:18100/v1/chat/completions --api-key "$key")
via_litellm=(--url http://127.0.0.21:18200/v1/chat/completions --api-key "$master_key")
via_fed1=(--url http://127.0.0.9:18100/v1/chat/completions --api-key "$solo_key")
via_portkey=(--url http://127.0.0.1:18787/v1/chat/completions --api-key none
  --header "x-portkey-provider:openai" --header "x-portkey-custom-host:http://127.0.0.13:18080/v1")

if [ -z "$ONLY_SLOW" ]; then
echo "== one connection: added latency ($ROUNDS x $SECONDS_PER_RUN s each, interleaved)"
for _ in $(seq "$ROUNDS"); do
  bench one_direct "$FAST" -- --mode plain "${direct[@]}" --body "$chat" --connections 1
  bench one_nginx "$NGINX" -- --mode plain "${via_nginx[@]}" --body "$chat" --connections 1
  bench one_fed "$I1 $I2" -- --mode plain "${via_fed[@]}" --body "$chat" --connections 1
  bench one_fed1 "$SOLO" -- --mode plain "${via_fed1[@]}" --body "$chat" --connections 1
  if [ -n "${PORTKEY:-}" ]; then
    bench one_portkey "$PORTKEY" -- --mode plain "${via_portkey[@]}" --body "$chat" --connections 1
  fi
  if [ -n "${LITELLM:-}" ]; then
    bench one_litellm "$LITELLM" -- --mode plain "${via_litellm[@]}" --body "$chat" --connections 1
  fi
done
echo "== saturation: 64 connections"
for _ in $(seq "$ROUNDS"); do
  bench sat_direct "$FAST" -- --mode plain "${direct[@]}" --body "$chat" --connections 64
  bench sat_nginx "$NGINX" -- --mode plain "${via_nginx[@]}" --body "$chat" --connections 64
  bench sat_fed "$I1 $I2" -- --mode plain "${via_fed[@]}" --body "$chat" --connections 64
  if [ -n "${LITELLM:-}" ]; then
    bench sat_litellm "$LITELLM" -- --mode plain "${via_litellm[@]}" --body "$chat" --connections 64
  fi
done
echo "== 32 connections: the fast gateways"
for _ in $(seq "$ROUNDS"); do
  bench sat32_fed1 "$SOLO" -- --mode plain "${via_fed1[@]}" --body "$chat" --connections 32
  bench sat32_fed "$I1 $I2" -- --mode plain "${via_fed[@]}" --body "$chat" --connections 32
  if [ -n "${PORTKEY:-}" ]; then
    bench sat32_portkey "$PORTKEY" -- --mode plain "${via_portkey[@]}" --body "$chat" --connections 32
  fi
done
echo "== streams: time to first token, one connection"
for _ in $(seq "$ROUNDS"); do
  bench ttft_direct "$FAST" -- --mode stream "${direct[@]}" --body "$stream" --connections 1
  bench ttft_fed "$I1 $I2" -- --mode stream "${via_fed[@]}" --body "$stream" --connections 1
done
echo "== streams: each chunk from the backend's write to the client, 1 and 20 concurrent slow streams"
for _ in $(seq "$ROUNDS"); do
  for n in 1 20; do
    bench "chunks${n}_direct" "$SLOW" -- --mode stream --url http://127.0.0.14:18080/v1/chat/completions \
      --body "$slow" --connections "$n"
    bench "chunks${n}_fed" "$I1 $I3" -- --mode stream --url http://127.0.0.3:18100/v1/chat/completions \
      --api-key "$key" --body "$slow" --connections "$n"
  done
done
fi
echo "== $SLOW_STREAMS concurrent slow streams (50 tokens, 100 ms apart) through I1 and I3"
SECONDS_PER_RUN=8 bench slow_streams "$I1 $I3" -- --mode stream --url http://127.0.0.3:18100/v1/chat/completions \
  --api-key "$key" --body "$slow" --connections "$SLOW_STREAMS"
python3 -c "import json; print(json.dumps({'label': 'slow_rss', 'door_kb': $(peak_rss_kb "$I1"), 'relay_kb': $(peak_rss_kb "$I3"), 'fast_relay_kb': $(peak_rss_kb "$I2")}))" >>"$work/results"
tail -1 "$work/results"

mkdir -p target/bench && cp "$work/results" target/bench/front_door.jsonl
python3 bench/front_door_report.py "$work/results" "$SECONDS_PER_RUN" "$ROUNDS" "$SLOW_STREAMS" BENCHMARKS.md
echo "figures written to BENCHMARKS.md"
