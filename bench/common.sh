# Shared by the bench scripts that run processes of their own (sourced, not run): `start` runs a
# command in its own process group and remembers it (its pid in $last_pid), `cleanup` ends them
# all on exit, `listening ADDR:PORT` and `wait_port ADDR:PORT` look at TCP listeners. The caller
# sets `work` (a scratch directory; the processes log to $work/log) and `pids=()`.

cleanup() {
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  sleep 0.5
  for pid in "${pids[@]}"; do kill -9 -- "-$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}

listening() { ss -Htln "src ${1%:*} and sport = :${1##*:}" 2>/dev/null | grep -q .; }

wait_port() {
  for _ in $(seq 600); do listening "$1" && return 0; sleep 0.1; done
  echo "$(basename "$0"): nothing listens on $1; log:" >&2
  tail -20 "$work/log" >&2
  exit 1
}

start() {
  setsid "$@" >>"$work/log" 2>&1 &
  pids+=($!)
  last_pid=$!
}

# A fresh PSK for a bench federation, as hex.
new_psk() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
