#!/usr/bin/env bash
# How long a backend's death and its return take to reach another node, with default timing
# (10 s heartbeats, 5 s probes) and no traffic: a door I1 and a relay I2 whose backend is killed
# and restarted three times. Loopback only (127.0.0.3, .4, .15).
set -uo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p triforce --quiet
T=target/release/triforce
W=$(mktemp -d)
psk=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
for n in i1 i2; do
  mkdir -p $W/$n; printf '%s' "$psk" > $W/$n/psk; chmod 600 $W/$n/psk
  cat > $W/$n/federation_nodes.json <<JSON
{"I1": {"ip": "127.0.0.3", "port": 19300, "cores": 2, "ram": 8, "gpu": null, "role": "master", "name": "door"},
 "I2": {"ip": "127.0.0.4", "port": 19300, "cores": 2, "ram": 8, "gpu": null, "role": "hub", "name": "relay"}}
JSON
  printf 'psk_file = "psk"\n' > $W/$n/federation.toml
done
printf '[executors.chat]\nkind = "openai"\nbase_url = "http://127.0.0.15:18080"\n' >> $W/i2/federation.toml
setsid $T backend --llm --listen 127.0.0.15:18080 --gap-ms 0 > /dev/null 2>&1 &
B=$!
setsid env RUST_LOG=warn $T run --config $W/i1 --node I1 > /dev/null 2>&1 &
setsid env RUST_LOG=warn $T run --config $W/i2 --node I2 > /dev/null 2>&1 &
healthy() { $T status --config $W/i1 --node I1 --json 2>/dev/null | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["nodes"]["I2"].get("backends",{}).get("chat",{}).get("healthy"))' 2>/dev/null; }
for i in $(seq 300); do [ "$(healthy)" = "True" ] && break; sleep 0.1; done
sleep 12
for round in 1 2 3; do
  kill -9 $B; t0=$(date +%s.%N)
  while [ "$(healthy)" != "False" ]; do sleep 0.1; done
  t1=$(date +%s.%N)
  setsid $T backend --llm --listen 127.0.0.15:18080 --gap-ms 0 > /dev/null 2>&1 &
  B=$!; t2=$(date +%s.%N)
  while [ "$(healthy)" != "True" ]; do sleep 0.1; done
  t3=$(date +%s.%N)
  python3 -c "print('round $round: death seen by the door after %.1f s, return after %.1f s' % ($t1-$t0, $t3-$t2))"
  sleep $((RANDOM % 7 + 1))
done
kill -9 $B 2>/dev/null || true
pkill -f "run --config $W" || true
rm -rf "$W"
