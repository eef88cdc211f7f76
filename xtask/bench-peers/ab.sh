#!/usr/bin/env bash
# A/B two sticky-gateway builds (or two settings of one build) on the same
# backends, with bench-peers' pinning and wrk settings, alternating A and B
# round by round so that the VM's speed drift hits both alike.
#
# Usage:  ab.sh BIN_A BIN_B [ROUNDS] [sticky|new]
#         A_ENV="X=1" B_ENV="Y=1" ab.sh BIN BIN ...   (same build, two environments)
# Prints, per round and side, req/s and the gateway's user+system CPU per
# request (from /proc/PID/stat). Loopback only; stops exactly the pids it started.
set -euo pipefail
A=$1; B=$2; ROUNDS=${3:-4}; MODE=${4:-sticky}
KIT=$(cd "$(dirname "$0")" && pwd)
RUN=$(mktemp -d /tmp/sticky-ab.XXXXXX); mkdir -p "$RUN/tmp"
TCK=$(getconf CLK_TCK)
PORT=8095
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$RUN"
}
trap cleanup EXIT INT TERM
taskset -c 0 nginx -p "$RUN/" -e "$RUN/backends.err" -c "$KIT/conf/backends.nginx.conf" &
PIDS+=($!)
"$A" keygen > "$RUN/keys"
sleep 0.5

side() { # side <label> <bin> <env>
  local label=$1 bin=$2 envs=$3
  # shellcheck disable=SC2086
  env $envs taskset -c 1 "$bin" --listen 127.0.0.1:$PORT --backend b1=127.0.0.1:9001 \
    --backend b2=127.0.0.1:9002 --backend b3=127.0.0.1:9003 --key-file "$RUN/keys" \
    --threads 1 --no-access-log > "$RUN/gw.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break; sleep 0.1; done
  local tok hdr=()
  tok=$(curl -si "http://127.0.0.1:$PORT/" | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: sticky=\([^;]*\);.*/\1/p')
  [ "$MODE" = sticky ] && hdr=(-H "Cookie: sticky=$tok")
  taskset -c 0 timeout 20 wrk -t1 -c64 -d2s "${hdr[@]}" "http://127.0.0.1:$PORT/" > /dev/null
  local t0 t1 n
  t0=$(awk '{print $14+$15}' "/proc/$pid/stat")
  taskset -c 0 timeout 30 wrk -t1 -c64 -d6s "${hdr[@]}" "http://127.0.0.1:$PORT/" > "$RUN/w.txt"
  t1=$(awk '{print $14+$15}' "/proc/$pid/stat")
  n=$(awk '/requests in/{print $1}' "$RUN/w.txt")
  printf '%s %s req/s=%s cpu_us/req=%s\n' "$label" "$MODE" \
    "$(awk '/^Requests\/sec/{print $2}' "$RUN/w.txt")" \
    "$(awk -v a="$t0" -v b="$t1" -v n="$n" -v hz="$TCK" 'BEGIN{printf "%.2f", (b-a)/hz/n*1e6}')"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
for r in $(seq "$ROUNDS"); do
  side "round $r A" "$A" "${A_ENV:-}"
  side "round $r B" "$B" "${B_ENV:-}"
done
