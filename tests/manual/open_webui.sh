#!/usr/bin/env bash
# Open WebUI in front of a two-node federation, each of its connection types for every model,
# whole and streamed. Not in .ci/run: Open WebUI's PyPI package pulls torch (7.3 GB, five
# minutes to install here; open-webui 0.12.4 when this was written), so this runs by hand:
#
#   python3 -m venv /tmp/owui && /tmp/owui/bin/pip install open-webui
#   OPEN_WEBUI_VENV=/tmp/owui bash tests/manual/open_webui.sh
#
# The federation: `hetzner` (127.0.0.1, the door) relays `chat` to the real llama.cpp server
# (SmolLM2-135M, OpenAI's API only, as .ci/llama-server installs it); `backup` (127.0.0.2)
# relays it to the stand-in speaking Ollama's API (declared `api = "ollama"`). Everything runs in a network namespace
# of its own that has nothing but loopback, so neither the federation nor Open WebUI (which
# otherwise looks for updates and embedding models online) reaches any other address.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="${OPEN_WEBUI_VENV:?set OPEN_WEBUI_VENV to a virtualenv with open-webui installed}"
triforce="$root/target/release/triforce"
llama_python="$root/target/llama-server/bin/python"
model_file="$root/target/models/SmolLM2-135M-Instruct.Q4_1.gguf"
for need in "$triforce" "$llama_python" "$model_file" "$venv/bin/open-webui"; do
  [ -e "$need" ] || { echo "missing $need (cargo build --release; .ci/llama-server)" >&2; exit 2; }
done

if [ -z "${IN_NAMESPACE:-}" ]; then
  ns="tf-owui-$$"
  ip netns add "$ns"
  trap 'ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null; sleep 1; ip netns del "$ns"' EXIT
  ip netns exec "$ns" ip link set lo up
  IN_NAMESPACE=1 ip netns exec "$ns" bash "$0"
  exit
fi

work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

# Two nodes, one PSK, each with its own federation.toml (its own backend).
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$work/psk"
node_dir() {
  local name=$1 executors=$2 ingress=$3
  mkdir -p "$work/$name"
  cp "$work/psk" "$work/$name/psk"
  chmod 600 "$work/$name/psk"
  cat > "$work/$name/federation_nodes.json" <<EOF
{"hetzner": {"ip": "127.0.0.1", "port": 9000, "cores": 4, "ram": 8, "gpu": null, "role": "master", "name": "door"},
 "backup": {"ip": "127.0.0.2", "port": 9000, "cores": 4, "ram": 8, "gpu": null, "role": "hub", "name": "ollama side"}}
EOF
  printf 'psk_file = "psk"\n[timing]\nheartbeat_interval_ms = 1000\nbackend_probe_interval_ms = 1000\n%s\n%s\n' \
    "$ingress" "$executors" > "$work/$name/federation.toml"
}
node_dir hetzner '[executors.chat]
kind = "openai"
base_url = "http://127.0.0.1:8081"
api = "openai"
timeout_ms = 120000' '[ingress]
listen = "127.0.0.1:11434"'
node_dir backup '[executors.chat]
kind = "openai"
base_url = "http://127.0.0.2:11500"
api = "ollama"' ''
key=$("$triforce" apikey add --config "$work/hetzner" --name open-webui | grep -o 'tf-[0-9a-f]*' | head -1)

"$llama_python" -m llama_cpp.server --model "$model_file" --model_alias smollm2 \
  --host 127.0.0.1 --port 8081 --n_ctx 2048 --n_threads 1 > "$work/llama.log" 2>&1 &
pids+=($!)
# The stand-in as Ollama is: its own API, and OpenAI's under /v1, which the door passes
# OpenAI clients through to unchanged.
"$triforce" backend --llm --api both --listen 127.0.0.2:11500 --models tiny-llm \
  --loaded tiny-llm > "$work/standin.log" 2>&1 &
pids+=($!)
for node in hetzner backup; do
  "$triforce" run --config "$work/$node" --node "$node" > "$work/$node.log" 2>&1 &
  pids+=($!)
done

export DATA_DIR="$work/open-webui" WEBUI_AUTH=False OFFLINE_MODE=True HF_HUB_OFFLINE=1 \
  ENABLE_VERSION_UPDATE_CHECK=False RAG_EMBEDDING_MODEL_AUTO_UPDATE=False \
  ENABLE_OLLAMA_API=True OLLAMA_BASE_URL=http://127.0.0.1:11434 \
  ENABLE_OPENAI_API=True OPENAI_API_BASE_URL=http://127.0.0.1:11434/v1 OPENAI_API_KEY="$key"
mkdir -p "$DATA_DIR"
"$venv/bin/open-webui" serve --host 127.0.0.1 --port 8080 > "$work/open-webui.log" 2>&1 &
pids+=($!)

"$venv/bin/python" "$root/tests/manual/open_webui_check.py" http://127.0.0.1:8080 "$key" \
  || { echo "--- open-webui log (tail)"; tail -n 40 "$work/open-webui.log";
       echo "--- hetzner log (tail)"; tail -n 20 "$work/hetzner.log"; exit 1; }
