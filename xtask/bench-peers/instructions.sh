#!/usr/bin/env bash
# User-space instructions per proxied request of a sticky-gateway build, counted by
# callgrind: unlike CPU time, the count barely moves with the VM's speed, so two builds
# can be compared one after the other (the spread between runs is under 1 %).
#
# Usage:  instructions.sh GATEWAY_BIN [sticky|new|long] [OUT_FILE]
#   sticky: every request carries a valid affinity cookie; new: none (a new session each);
#   long: the cookie in the middle of bench-peers' 7-cookie header.
# Runs three nginx backends (CPU 0), the gateway under valgrind (CPU 1), and wrk (CPU 0,
# 16 connections, 10 s); prints requests, instructions, instructions/request. Inspect
# OUT_FILE with `callgrind_annotate --inclusive=yes OUT_FILE`. Needs nginx, wrk, curl,
# valgrind. Loopback only (backends on 127.0.0.1:BPORT1-3, gateway on GPORT); stops
# exactly the pids it started.
set -euo pipefail
GW=$1; MODE=${2:-sticky}; OUT=${3:-$(mktemp /tmp/sticky-callgrind.XXXXXX)}
KIT=$(cd "$(dirname "$0")" && pwd)
B=${BPORT:-905}; GP=${GPORT:-8096}
RUN=$(mktemp -d /tmp/sticky-instr.XXXXXX); mkdir -p "$RUN/tmp"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$RUN"
}
trap cleanup EXIT INT TERM
for bin in nginx wrk curl valgrind callgrind_annotate taskset timeout; do
  command -v "$bin" >/dev/null || { echo "missing $bin"; exit 1; }
done
sed "s/127.0.0.1:900/127.0.0.1:$B/" "$KIT/conf/backends.nginx.conf" > "$RUN/backends.conf"
taskset -c 0 nginx -p "$RUN/" -e "$RUN/backends.err" -c "$RUN/backends.conf" &
PIDS+=($!)
"$GW" keygen > "$RUN/keys"
taskset -c 1 valgrind --tool=callgrind --callgrind-out-file="$OUT" "$GW" --listen "127.0.0.1:$GP" \
  --backend "b1=127.0.0.1:${B}1" --backend "b2=127.0.0.1:${B}2" --backend "b3=127.0.0.1:${B}3" \
  --key-file "$RUN/keys" --threads 1 --no-access-log > "$RUN/gw.log" 2>&1 &
G=$!
PIDS+=("$G")
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$GP/" && break; sleep 0.3; done
tok=$(curl -si "http://127.0.0.1:$GP/" | tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: sticky=\([^;]*\);.*/\1/p')
hdr=()
[ "$MODE" = sticky ] && hdr=(-H "Cookie: sticky=$tok")
[ "$MODE" = long ] && hdr=(-H "Cookie: _ga=GA1.2.1234567890.1700000000; _gid=GA1.2.987654321.1700000000; sessionid=3f2a9c0e7b6d4a1f8e2c5b7a9d0f1e3c; csrftoken=Zx8yQw7vU6tS5rR4qP3oN2mL1kJ0iHgF; sticky=$tok; theme=dark; lang=en-US")
taskset -c 0 timeout 30 wrk -t1 -c16 -d10s "${hdr[@]}" "http://127.0.0.1:$GP/" > "$RUN/wrk.txt"
n=$(awk '/requests in/{print $1}' "$RUN/wrk.txt")
kill "$G"; wait "$G" 2>/dev/null || true
total=$(callgrind_annotate "$OUT" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",","",$1); print $1}')
# The two curl requests above count too; start-up is included (about 0.1 % of a run).
echo "$MODE requests=$n instructions=$total instructions/request=$((total / (n + 2))) profile=$OUT"
