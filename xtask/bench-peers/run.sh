#!/usr/bin/env bash
# Peer benchmark kit: direct nginx backend vs HAProxy (cookie insert) vs nginx OSS
# (consistent hash on a cookie) vs our sticky-gateway. Loopback only. Every process
# this script starts is recorded by pid and stopped by that pid on exit; nothing
# is killed by name. Normally run through `cargo xtask bench-peers`, which builds
# sticky-gateway in release mode, makes a key file, installs missing tools and
# summarizes; the script also runs on its own (then without the gateway unless
# GATEWAY_BIN and GATEWAY_KEY are set). The pingora-* scenarios measure the
# pingora_gateway example (pingora-sticky) with the same key and backend names;
# pingora-rr runs the same example with --plain (pingora's round robin, no
# pingora-sticky helper) as their baseline.
#
# Usage:  ./run.sh                       # 3 rounds, pinned, 10 s per scenario
#         ROUNDS=1 PIN=0 ./run.sh        # 1 round, unpinned
# Env knobs (defaults in brackets):
#   DUR [10]  seconds per wrk run          WARM [2]   seconds of discarded warm-up
#   CONNS [64] wrk connections             THREADS [1] wrk threads
#   ROUNDS [3] passes over all scenarios   PIN [1]    1 = pin with taskset
#   SUT_CPU [1] LOAD_CPU [0]  with PIN=1: the system under test (proxy, or the
#              backend in the "direct" scenario) runs on SUT_CPU; wrk and the
#              backends run on LOAD_CPU.
#   HAPROXY_NBTHREAD [1]  (nginx runs as one single-threaded process; the
#              gateway runs with --threads 1)
#   SCENARIOS  space-separated subset of the names below [all but *-rr]
#   OUTDIR     where raw wrk output and summary.tsv go [target/bench-peers/<stamp>]
#   GATEWAY_BIN, GATEWAY_KEY  sticky-gateway binary and key file (from
#              `sticky-gateway keygen`); without them the sticky-* scenarios
#              are skipped. GATEWAY_PORT [8085], GATEWAY_COOKIE [sticky].
# TLS: one ECDSA P-256 certificate (openssl) for both proxies. HAProxy `bind ... ssl crt`
#   on 8086 (tickets) and 8089 (no resumption); a second gateway process, started from a
#   config file, with TLS listeners on 8087 (resumption on, the default) and 8088
#   (resumption = false). wrk speaks HTTP/1.1 over TLS 1.3 and resumes sessions when the
#   server lets it: *-tls-sticky keeps connections alive, *-tls-resume opens a new
#   connection per request (Connection: close) with a resumed handshake, *-tls-handshake
#   the same with a full handshake every time.
#   PINGORA_BIN  the pingora_gateway example binary (pingora-sticky), run with
#              GATEWAY_KEY; without both the pingora-* scenarios are skipped.
#              PINGORA_PORT [8090]; the --plain one (pingora-rr) on
#              PINGORA_RR_PORT [PINGORA_PORT+1].
set -euo pipefail

KIT=$(cd "$(dirname "$0")" && pwd)
DUR=${DUR:-10}; WARM=${WARM:-2}; CONNS=${CONNS:-64}; THREADS=${THREADS:-1}
ROUNDS=${ROUNDS:-3}; PIN=${PIN:-1}; SUT_CPU=${SUT_CPU:-1}; LOAD_CPU=${LOAD_CPU:-0}
export HAPROXY_NBTHREAD=${HAPROXY_NBTHREAD:-1}
MODE=$([ "$PIN" = 1 ] && echo "pinned-sut${SUT_CPU}-load${LOAD_CPU}" || echo unpinned)
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
ROOT=$(cd "$KIT/../.." && pwd)
OUTDIR=${OUTDIR:-$ROOT/target/bench-peers/$STAMP}
mkdir -p "$OUTDIR"
RUN=$(mktemp -d /tmp/peers-bench.XXXXXX)      # nginx prefix: pid/err/temp files
mkdir -p "$RUN/tmp"
CLK_TCK=$(getconf CLK_TCK)

for bin in nginx haproxy wrk curl openssl taskset timeout awk getconf; do
  command -v "$bin" >/dev/null || { echo "missing $bin (apt-get install nginx-light haproxy wrk curl openssl)"; exit 1; }
done
GATEWAY_BIN=${GATEWAY_BIN:-}; GATEWAY_KEY=${GATEWAY_KEY:-}
GATEWAY_PORT=${GATEWAY_PORT:-8085}; GATEWAY_COOKIE=${GATEWAY_COOKIE:-sticky}
PINGORA_BIN=${PINGORA_BIN:-}; PINGORA_PORT=${PINGORA_PORT:-8090}
PINGORA_RR_PORT=${PINGORA_RR_PORT:-$((PINGORA_PORT + 1))}

# ---------------------------------------------------------------- processes
declare -a PIDS=()
declare -A NAME_OF=()

start_bg() {            # start_bg <label> <cpu> <cmd...>  -> records pid
  local label=$1 cpu=$2; shift 2
  if [ "$PIN" = 1 ]; then taskset -c "$cpu" "$@" >"$RUN/$label.out" 2>&1 &
  else "$@" >"$RUN/$label.out" 2>&1 &
  fi
  local pid=$!          # taskset execs the command, so this is the server's pid
  PIDS+=("$pid"); NAME_OF[$pid]=$label
  echo "$pid" >"$RUN/$label.pid"
  echo "started $label pid=$pid"
}

stop_all() {
  # Must finish even when stdout is gone (e.g. piped into `head`) or a command fails:
  # ignore SIGPIPE and errors here, and never let a message abort the cleanup.
  trap '' PIPE INT TERM
  set +e
  local pid i
  for pid in "${PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    fi
    wait "$pid" 2>/dev/null || true
    echo "stopped ${NAME_OF[$pid]} pid=$pid" 2>/dev/null
  done
  PIDS=()
  if [ -s "$RUN/gateway.out" ]; then cp "$RUN/gateway.out" "$OUTDIR/gateway.log"; fi
  if [ -s "$RUN/gateway-tls.out" ]; then cp "$RUN/gateway-tls.out" "$OUTDIR/gateway-tls.log"; fi
  if [ -s "$RUN/pingora.out" ]; then cp "$RUN/pingora.out" "$OUTDIR/pingora.log"; fi
  if [ -s "$RUN/pingora-rr.out" ]; then cp "$RUN/pingora-rr.out" "$OUTDIR/pingora-rr.log"; fi
  rm -rf "$RUN"
}
trap stop_all EXIT
trap 'exit 130' INT TERM

wait_port() {           # wait_port <port>  (bounded: 5 s)
  local i
  for i in $(seq 1 50); do
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$1/" && return 0
    sleep 0.1
  done
  echo "port $1 did not come up"; exit 1
}

wait_port_soft() {      # wait_port_soft <port> <pid> [scheme]  (bounded: 10 s; 1 if not up or pid died)
  local i
  for i in $(seq 1 100); do
    kill -0 "$2" 2>/dev/null || return 1
    curl -sk -o /dev/null --max-time 1 "${3:-http}://127.0.0.1:$1/" && return 0
    sleep 0.1
  done
  return 1
}

# The TLS scenarios' certificate, one for both proxies (the gateway reads the
# two files, HAProxy their concatenation).
TLS_DIR="$RUN/tls"; mkdir -p "$TLS_DIR"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$TLS_DIR/site.key" -out "$TLS_DIR/site.crt" 2>/dev/null
cat "$TLS_DIR/site.crt" "$TLS_DIR/site.key" >"$TLS_DIR/site.pem"
export BENCH_TLS_PEM="$TLS_DIR/site.pem"

for p in 9001 9002 9003 8081 8082 8083 8084 8086 8087 8088 8089 "$GATEWAY_PORT" "$PINGORA_PORT" "$PINGORA_RR_PORT"; do   # refuse to measure someone else's server
  if curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$p/"; then echo "port 127.0.0.1:$p is already in use"; exit 1; fi
done
start_bg backends "$LOAD_CPU" nginx -p "$RUN/" -e "$RUN/backends.err" -c "$KIT/conf/backends.nginx.conf"
BACKEND_PID=${PIDS[-1]}
start_bg haproxy "$SUT_CPU" haproxy -db -f "$KIT/conf/haproxy.cfg"
HAPROXY_PID=${PIDS[-1]}
start_bg nginx-proxy "$SUT_CPU" nginx -p "$RUN/" -e "$RUN/proxy.err" -c "$KIT/conf/proxy.nginx.conf"
NGINXP_PID=${PIDS[-1]}
for p in 9001 9002 9003 8081 8082 8083 8084; do wait_port $p; done
for p in 8086 8089; do wait_port_soft $p "$HAPROXY_PID" https || { echo "haproxy TLS port $p did not come up"; exit 1; }; done

# ---------------------------------------------------------------- scenarios wanted
SCEN_ALL="direct haproxy-rr haproxy-cookie-new haproxy-cookie-sticky haproxy-cookie-sticky-long nginx-rr nginx-hash-new nginx-hash-sticky nginx-hash-sticky-long sticky-new sticky-sticky sticky-sticky-long haproxy-tls-sticky sticky-tls-sticky haproxy-tls-resume sticky-tls-resume haproxy-tls-handshake sticky-tls-handshake pingora-rr pingora-new pingora-sticky pingora-sticky-long"
# Peers on the same workload run back to back, so a per-round ratio compares neighbouring windows.
SCEN_DEFAULT="direct haproxy-cookie-new sticky-new pingora-new nginx-hash-new haproxy-cookie-sticky sticky-sticky pingora-sticky nginx-hash-sticky haproxy-cookie-sticky-long sticky-sticky-long pingora-sticky-long nginx-hash-sticky-long haproxy-tls-sticky sticky-tls-sticky haproxy-tls-resume sticky-tls-resume haproxy-tls-handshake sticky-tls-handshake"
# Peers on the same workload run back to back, so a per-round ratio compares neighbouring windows.
SCENARIOS=${SCENARIOS:-$SCEN_DEFAULT}
for s in $SCENARIOS; do
  case " $SCEN_ALL " in *" $s "*) ;; *) echo "unknown scenario $s (known: $SCEN_ALL)"; exit 1;; esac
done
drop_scenarios() {      # drop_scenarios <glob> <reason>: run without the scenarios matching <glob>
  echo "SKIP $1 scenarios: $2"
  local s keep=""
  # $1 unquoted: a glob pattern.
  for s in $SCENARIOS; do case $s in $1) ;; *) keep="$keep $s";; esac; done
  SCENARIOS=${keep# }
}
show_output() {         # show_output <what> <name>: the last lines printed by the process started as <name>
  echo "$1 output (last 20 lines):"; tail -n 20 "$RUN/$2.out" 2>/dev/null | sed 's/^/  | /' || true
}
drop_sticky() { drop_scenarios 'sticky-*' "$1"; GATEWAY_OK=0; }        # the gateway scenarios
drop_pingora() { drop_scenarios 'pingora-*' "$1"; PINGORA_OK=0; }      # the pingora-sticky scenarios
GATEWAY_OK=0
PINGORA_OK=0
case " $SCENARIOS " in
  *" sticky-"*)
    if [ -z "$GATEWAY_BIN" ] || [ -z "$GATEWAY_KEY" ] || [ ! -x "$GATEWAY_BIN" ] || [ ! -s "$GATEWAY_KEY" ]; then
      drop_sticky "no gateway binary or key file (GATEWAY_BIN='$GATEWAY_BIN' GATEWAY_KEY='$GATEWAY_KEY')"
    else
      # RUST_LOG=warn: the peers run with logging off, so no per-request logging here either.
      start_bg gateway "$SUT_CPU" env RUST_LOG="${GATEWAY_RUST_LOG:-warn}" "$GATEWAY_BIN" \
        --listen "127.0.0.1:$GATEWAY_PORT" \
        --backend b1=127.0.0.1:9001 --backend b2=127.0.0.1:9002 --backend b3=127.0.0.1:9003 \
        --key-file "$GATEWAY_KEY" --threads 1
      GATEWAY_PID=${PIDS[-1]}
      if wait_port_soft "$GATEWAY_PORT" "$GATEWAY_PID"; then GATEWAY_OK=1
      else
        show_output "gateway" gateway
        drop_sticky "sticky-gateway did not answer on 127.0.0.1:$GATEWAY_PORT within 10 s"
      fi
    fi;;
esac
drop_sticky_tls() { drop_scenarios 'sticky-tls-*' "$1"; GATEWAY_TLS_OK=0; }  # the gateway's TLS scenarios
GATEWAY_TLS_OK=0
case " $SCENARIOS " in
  *" sticky-tls-"*)
    # The same backends, key and settings as the plain gateway, behind its two TLS
    # listeners (a config file: resumption is a per-listener setting).
    cat >"$RUN/gateway-tls.toml" <<EOF
[[tls_listeners]]
listen = "127.0.0.1:8087"
[[tls_listeners.certificates]]
cert = "$TLS_DIR/site.crt"
key = "$TLS_DIR/site.key"
[[tls_listeners]]
listen = "127.0.0.1:8088"
resumption = false
[[tls_listeners.certificates]]
cert = "$TLS_DIR/site.crt"
key = "$TLS_DIR/site.key"
[[routes]]
[[routes.backends]]
name = "b1"
address = "127.0.0.1:9001"
[[routes.backends]]
name = "b2"
address = "127.0.0.1:9002"
[[routes.backends]]
name = "b3"
address = "127.0.0.1:9003"
EOF
    start_bg gateway-tls "$SUT_CPU" env RUST_LOG="${GATEWAY_RUST_LOG:-warn}" "$GATEWAY_BIN" \
      --config "$RUN/gateway-tls.toml" --key-file "$GATEWAY_KEY" --threads 1
    GATEWAY_TLS_PID=${PIDS[-1]}
    if wait_port_soft 8087 "$GATEWAY_TLS_PID" https && wait_port_soft 8088 "$GATEWAY_TLS_PID" https; then GATEWAY_TLS_OK=1
    else
      show_output "gateway-tls" gateway-tls
      drop_sticky_tls "the TLS gateway did not answer on 127.0.0.1:8087/8088 within 10 s"
    fi;;
esac

case " $SCENARIOS " in
  *" pingora-"*)
    if [ -z "$PINGORA_BIN" ] || [ -z "$GATEWAY_KEY" ] || [ ! -x "$PINGORA_BIN" ] || [ ! -s "$GATEWAY_KEY" ]; then
      drop_pingora "no pingora_gateway binary or key file (PINGORA_BIN='$PINGORA_BIN' GATEWAY_KEY='$GATEWAY_KEY')"
    else
      start_bg pingora "$SUT_CPU" "$PINGORA_BIN" \
        --listen "127.0.0.1:$PINGORA_PORT" \
        --backend b1=127.0.0.1:9001 --backend b2=127.0.0.1:9002 --backend b3=127.0.0.1:9003 \
        --key-file "$GATEWAY_KEY" --threads 1
      PINGORA_PID=${PIDS[-1]}
      if wait_port_soft "$PINGORA_PORT" "$PINGORA_PID"; then PINGORA_OK=1
      else
        show_output "pingora_gateway" pingora
        drop_pingora "pingora_gateway did not answer on 127.0.0.1:$PINGORA_PORT within 10 s"
      fi
    fi;;
esac
# The baseline of the pingora-* scenarios: the same example with --plain (pingora's
# round robin, no pingora-sticky helper), its own process on its own port.
drop_pingora_rr() { drop_scenarios pingora-rr "$1"; PINGORA_RR_OK=0; }
PINGORA_RR_OK=0
case " $SCENARIOS " in
  *" pingora-rr "*)
    if [ "$PINGORA_OK" != 1 ]; then
      drop_pingora_rr "the pingora_gateway example is not running"
    else
      start_bg pingora-rr "$SUT_CPU" "$PINGORA_BIN" \
        --listen "127.0.0.1:$PINGORA_RR_PORT" \
        --backend b1=127.0.0.1:9001 --backend b2=127.0.0.1:9002 --backend b3=127.0.0.1:9003 \
        --key-file "$GATEWAY_KEY" --threads 1 --plain
      PINGORA_RR_PID=${PIDS[-1]}
      if wait_port_soft "$PINGORA_RR_PORT" "$PINGORA_RR_PID"; then PINGORA_RR_OK=1
      else
        show_output "pingora_gateway --plain" pingora-rr
        drop_pingora_rr "pingora_gateway --plain did not answer on 127.0.0.1:$PINGORA_RR_PORT within 10 s"
      fi
    fi;;
esac

# ---------------------------------------------------------------- sanity
COOKIE_SHORT='Cookie: SRV=s2'
COOKIE_LONG='Cookie: _ga=GA1.2.1234567890.1700000000; _gid=GA1.2.987654321.1700000000; sessionid=3f2a9c0e7b6d4a1f8e2c5b7a9d0f1e3c; csrftoken=Zx8yQw7vU6tS5rR4qP3oN2mL1kJ0iHgF; SRV=s2; theme=dark; lang=en-US'

body() { curl -s --max-time 2 "$@"; }
check() { if [ "$1" = "$2" ]; then echo "  ok: $3"; else echo "  FAIL: $3 (got '$1' want '$2')"; exit 1; fi; }
echo "sanity checks:"
check "$(body http://127.0.0.1:9001/)" ok-b1 "direct 9001 -> b1"
check "$(body http://127.0.0.1:9003/)" ok-b3 "direct 9003 -> b3"
hp_sc=$(curl -s --max-time 2 -D - -o /dev/null http://127.0.0.1:8081/ | tr -d '\r' | grep -i '^set-cookie:' || true)
case "$hp_sc" in *SRV=s[123]*) echo "  ok: haproxy inserts '$hp_sc'";; *) echo "  FAIL: haproxy set-cookie '$hp_sc'"; exit 1;; esac
got=$(for i in 1 2 3 4 5; do body -H "$COOKIE_SHORT" http://127.0.0.1:8081/; done | sort -u | tr '\n' ' ')
check "$got" "ok-b2 " "haproxy SRV=s2 sticks to b2 (5/5)"
got=$(for i in 1 2 3 4 5; do body -H "$COOKIE_LONG" http://127.0.0.1:8081/; done | sort -u | tr '\n' ' ')
check "$got" "ok-b2 " "haproxy long cookie header sticks to b2 (5/5)"
hp_sc2=$(curl -s --max-time 2 -D - -o /dev/null -H "$COOKIE_SHORT" http://127.0.0.1:8081/ | grep -ci '^set-cookie:' || true)
check "$hp_sc2" 0 "haproxy does not re-insert for a known cookie (indirect)"
ng_sc=$(curl -s --max-time 2 -D - -o /dev/null http://127.0.0.1:8082/ | tr -d '\r' | grep -i '^set-cookie:' || true)
case "$ng_sc" in *srv=*) echo "  ok: nginx emulated insert '$ng_sc'";; *) echo "  FAIL: nginx set-cookie '$ng_sc'"; exit 1;; esac
ng_cookie=$(echo "$ng_sc" | sed -E 's/^[^:]*: *([^;]*).*/\1/')
got=$(for i in 1 2 3 4 5; do body -H "Cookie: $ng_cookie" http://127.0.0.1:8082/; done | sort -u | wc -l)
check "$got" 1 "nginx replayed cookie sticks to one backend (5/5)"
got=$(for i in 1 2 3 4 5; do body -H "$COOKIE_SHORT" http://127.0.0.1:8082/; done | sort -u | wc -l)
check "$got" 1 "nginx SRV=s2 (\$cookie_srv is case-insensitive) sticks (5/5)"
got=$(for i in 1 2 3; do body http://127.0.0.1:8083/; done | sort -u | wc -l)
check "$got" 3 "haproxy plain rr spreads over 3"
got=$(for i in 1 2 3; do body http://127.0.0.1:8084/; done | sort -u | wc -l)
check "$got" 3 "nginx plain rr spreads over 3"
got=$(for i in 1 2 3; do body -k -H "$COOKIE_SHORT" https://127.0.0.1:8086/; body -k -H "$COOKIE_SHORT" https://127.0.0.1:8089/; done | sort -u | tr '\n' ' ')
check "$got" "ok-b2 " "haproxy over TLS: SRV=s2 sticks to b2 (8086, 8089)"
# Resumption as each TLS scenario assumes it (a session saved, then offered again).
resumes() {             # resumes <port> -> "yes" or "no"
  local sess="$RUN/tls/sess-$1"
  printf 'GET / HTTP/1.0\r\n\r\n' | timeout 5 openssl s_client -quiet -connect "127.0.0.1:$1" -sess_out "$sess" >/dev/null 2>&1 || true
  if printf 'GET / HTTP/1.0\r\n\r\n' | timeout 5 openssl s_client -connect "127.0.0.1:$1" -sess_in "$sess" 2>/dev/null | grep -q '^Reused,'; then echo yes; else echo no; fi
}
check "$(resumes 8086)" yes "haproxy 8086 resumes TLS sessions"
check "$(resumes 8089)" no "haproxy 8089 makes a full handshake every time"

# Gateway checks. A failure here skips the sticky-* scenarios (the peer numbers
# are still worth having) instead of aborting the run.
COOKIE_STICKY=""; COOKIE_STICKY_LONG=""
gw_check() {            # gw_check <got> <want> <what>  -> 1 on mismatch
  if [ "$1" = "$2" ]; then echo "  ok: $3"; return 0; fi
  echo "  FAIL: $3 (got '$1' want '$2')"; return 1
}
gateway_sanity() {
  local url="http://127.0.0.1:$GATEWAY_PORT/" sc tok first got n
  sc=$(curl -s --max-time 2 -D - -o /dev/null "$url" | tr -d '\r' | grep -i "^set-cookie: *$GATEWAY_COOKIE=" | head -1 || true)
  case "$sc" in *"$GATEWAY_COOKIE="?*) echo "  ok: gateway inserts '${sc:0:100}...'";;
    *) echo "  FAIL: gateway set-cookie '$sc'"; return 1;; esac
  tok=$(echo "$sc" | sed -E 's/^[^:]*: *([^;]*).*/\1/')
  COOKIE_STICKY="Cookie: $tok"
  COOKIE_STICKY_LONG="Cookie: _ga=GA1.2.1234567890.1700000000; _gid=GA1.2.987654321.1700000000; sessionid=3f2a9c0e7b6d4a1f8e2c5b7a9d0f1e3c; csrftoken=Zx8yQw7vU6tS5rR4qP3oN2mL1kJ0iHgF; $tok; theme=dark; lang=en-US"
  first=$(body -H "$COOKIE_STICKY" "$url")
  case "$first" in ok-b[123]) ;; *) echo "  FAIL: gateway answered '$first'"; return 1;; esac
  got=$(for i in 1 2 3 4 5; do body -H "$COOKIE_STICKY" "$url"; done | sort -u | tr '\n' ' ')
  gw_check "$got" "$first " "gateway token sticks to $first (5/5)" || return 1
  got=$(for i in 1 2 3 4 5; do body -H "$COOKIE_STICKY_LONG" "$url"; done | sort -u | tr '\n' ' ')
  gw_check "$got" "$first " "gateway long cookie header sticks to $first (5/5)" || return 1
  n=$(curl -s --max-time 2 -D - -o /dev/null -H "$COOKIE_STICKY" "$url" | grep -ci "^set-cookie: *$GATEWAY_COOKIE=" || true)
  if [ "$n" = 0 ]; then echo "  ok: gateway does not re-issue for a valid token"
  else echo "  note: gateway re-issued Set-Cookie for a valid token ($n)"; fi
  got=$(curl -s --max-time 2 -o /dev/null -w '%{http_code}' -H "Cookie: $GATEWAY_COOKIE=forged-token" "$url")
  gw_check "$got" 200 "gateway serves a request with a forged token (as a new session)" || return 1
  return 0
}
if [ "$GATEWAY_OK" = 1 ]; then
  gateway_sanity || drop_sticky "sticky-gateway failed the routing checks above"
fi
if [ "$GATEWAY_TLS_OK" = 1 ] && [ "$GATEWAY_OK" = 1 ]; then
  # The plain gateway's token opens on the TLS one: same key, same backend names.
  first=$(body -H "$COOKIE_STICKY" "http://127.0.0.1:$GATEWAY_PORT/")
  got=$(for i in 1 2 3; do body -k -H "$COOKIE_STICKY" https://127.0.0.1:8087/; body -k -H "$COOKIE_STICKY" https://127.0.0.1:8088/; done | sort -u | tr '\n' ' ')
  if ! { gw_check "$got" "$first " "TLS gateway: the token sticks to $first (8087, 8088)" \
      && gw_check "$(resumes 8087)" yes "TLS gateway 8087 resumes TLS sessions" \
      && gw_check "$(resumes 8088)" no "TLS gateway 8088 makes a full handshake every time"; }; then
    drop_sticky_tls "the TLS gateway failed the checks above"
  fi
elif [ "$GATEWAY_TLS_OK" = 1 ]; then
  drop_sticky_tls "no token from the plain gateway"
fi

# pingora-sticky checks, the same as the gateway's; with the gateway up, also that
# a token sealed by one routes to the same backend on the other (same key, same names).
COOKIE_PINGORA=""; COOKIE_PINGORA_LONG=""
pingora_sanity() {
  local url="http://127.0.0.1:$PINGORA_PORT/" sc tok first got n
  sc=$(curl -s --max-time 2 -D - -o /dev/null "$url" | tr -d '\r' | grep -i "^set-cookie: *$GATEWAY_COOKIE=" | head -1 || true)
  case "$sc" in *"$GATEWAY_COOKIE="?*) echo "  ok: pingora_gateway inserts '${sc:0:100}...'";;
    *) echo "  FAIL: pingora_gateway set-cookie '$sc'"; return 1;; esac
  tok=$(echo "$sc" | sed -E 's/^[^:]*: *([^;]*).*/\1/')
  COOKIE_PINGORA="Cookie: $tok"
  COOKIE_PINGORA_LONG="Cookie: _ga=GA1.2.1234567890.1700000000; _gid=GA1.2.987654321.1700000000; sessionid=3f2a9c0e7b6d4a1f8e2c5b7a9d0f1e3c; csrftoken=Zx8yQw7vU6tS5rR4qP3oN2mL1kJ0iHgF; $tok; theme=dark; lang=en-US"
  first=$(body -H "$COOKIE_PINGORA" "$url")
  case "$first" in ok-b[123]) ;; *) echo "  FAIL: pingora_gateway answered '$first'"; return 1;; esac
  got=$(for i in 1 2 3 4 5; do body -H "$COOKIE_PINGORA" "$url"; done | sort -u | tr '\n' ' ')
  gw_check "$got" "$first " "pingora_gateway token sticks to $first (5/5)" || return 1
  got=$(for i in 1 2 3 4 5; do body -H "$COOKIE_PINGORA_LONG" "$url"; done | sort -u | tr '\n' ' ')
  gw_check "$got" "$first " "pingora_gateway long cookie header sticks to $first (5/5)" || return 1
  n=$(curl -s --max-time 2 -D - -o /dev/null -H "$COOKIE_PINGORA" "$url" | grep -ci "^set-cookie: *$GATEWAY_COOKIE=" || true)
  gw_check "$n" 0 "pingora_gateway does not re-issue for a valid token" || return 1
  got=$(curl -s --max-time 2 -o /dev/null -w '%{http_code}' -H "Cookie: $GATEWAY_COOKIE=forged-token" "$url")
  gw_check "$got" 200 "pingora_gateway serves a request with a forged token (as a new session)" || return 1
  if [ "$GATEWAY_OK" = 1 ]; then
    got=$(body -H "$COOKIE_PINGORA" "http://127.0.0.1:$GATEWAY_PORT/")
    gw_check "$got" "$first" "sticky-gateway routes pingora_gateway's token to the same backend" || return 1
    got=$(body -H "$COOKIE_STICKY" "$url")
    gw_check "$got" "$(body -H "$COOKIE_STICKY" "http://127.0.0.1:$GATEWAY_PORT/")" "pingora_gateway routes sticky-gateway's token to the same backend" || return 1
  fi
  return 0
}
if [ "$PINGORA_OK" = 1 ]; then
  pingora_sanity || drop_pingora "pingora_gateway failed the routing checks above"
fi
pingora_rr_sanity() {
  local url="http://127.0.0.1:$PINGORA_RR_PORT/" got n
  got=$(for i in 1 2 3; do body "$url"; done | sort -u | wc -l)
  gw_check "$got" 3 "pingora_gateway --plain rr spreads over 3" || return 1
  n=$(curl -s --max-time 2 -D - -o /dev/null "$url" | grep -ci '^set-cookie:' || true)
  gw_check "$n" 0 "pingora_gateway --plain sets no cookie" || return 1
  return 0
}
if [ "$PINGORA_RR_OK" = 1 ]; then
  pingora_rr_sanity || drop_pingora_rr "pingora_gateway --plain failed the checks above"
fi

# ---------------------------------------------------------------- scenarios
# name | url | cookie header ('-' = none) | which pid is the system under test
[ -n "$SCENARIOS" ] || { echo "no scenario left to run"; exit 1; }
echo "scenarios: $SCENARIOS"
scen() {
  case $1 in
    direct)                     echo "http://127.0.0.1:9001/|-|backends";;
    haproxy-rr)                 echo "http://127.0.0.1:8083/|-|haproxy";;
    haproxy-cookie-new)         echo "http://127.0.0.1:8081/|-|haproxy";;
    haproxy-cookie-sticky)      echo "http://127.0.0.1:8081/|short|haproxy";;
    haproxy-cookie-sticky-long) echo "http://127.0.0.1:8081/|long|haproxy";;
    nginx-rr)                   echo "http://127.0.0.1:8084/|-|nginx-proxy";;
    nginx-hash-new)             echo "http://127.0.0.1:8082/|-|nginx-proxy";;
    nginx-hash-sticky)          echo "http://127.0.0.1:8082/|short|nginx-proxy";;
    nginx-hash-sticky-long)     echo "http://127.0.0.1:8082/|long|nginx-proxy";;
    sticky-new)                 echo "http://127.0.0.1:$GATEWAY_PORT/|-|gateway";;
    sticky-sticky)              echo "http://127.0.0.1:$GATEWAY_PORT/|gshort|gateway";;
    sticky-sticky-long)         echo "http://127.0.0.1:$GATEWAY_PORT/|glong|gateway";;
    haproxy-tls-sticky)         echo "https://127.0.0.1:8086/|short|haproxy";;
    haproxy-tls-resume)         echo "https://127.0.0.1:8086/|short-close|haproxy";;
    haproxy-tls-handshake)      echo "https://127.0.0.1:8089/|short-close|haproxy";;
    sticky-tls-sticky)          echo "https://127.0.0.1:8087/|gshort|gateway-tls";;
    sticky-tls-resume)          echo "https://127.0.0.1:8087/|gshort-close|gateway-tls";;
    sticky-tls-handshake)       echo "https://127.0.0.1:8088/|gshort-close|gateway-tls";;
    pingora-rr)                 echo "http://127.0.0.1:$PINGORA_RR_PORT/|-|pingora-rr";;
    pingora-new)                echo "http://127.0.0.1:$PINGORA_PORT/|-|pingora";;
    pingora-sticky)             echo "http://127.0.0.1:$PINGORA_PORT/|pshort|pingora";;
    pingora-sticky-long)        echo "http://127.0.0.1:$PINGORA_PORT/|plong|pingora";;
    *) echo "unknown scenario $1" >&2; exit 1;;
  esac
}

cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }          # utime+stime
# machine-wide: busy ticks (all but idle+iowait), total ticks, softirq ticks, steal ticks
sys_busy()  { awk '/^cpu /{idle=$5+$6; t=0; for(i=2;i<=NF;i++) t+=$i; print t-idle, t, $8, $9}' /proc/stat; }
to_us() {   # wrk time string -> microseconds
  awk -v s="$1" 'BEGIN{ if (s=="") {print "NA"; exit}
    n=s; sub(/[a-z]+$/,"",n); u=s; sub(/^[0-9.]+/,"",u);
    m=(u=="us")?1:(u=="ms")?1000:(u=="s")?1e6:(u=="m")?6e7:1; printf "%.0f", n*m }'
}

run_wrk() {   # run_wrk <seconds> <url> <cookie-kind> <outfile>
  local d=$1 url=$2 ck=$3 out=$4
  local -a hdr=()
  case $ck in
    short) hdr=(-H "$COOKIE_SHORT");; long) hdr=(-H "$COOKIE_LONG");;
    gshort) hdr=(-H "$COOKIE_STICKY");; glong) hdr=(-H "$COOKIE_STICKY_LONG");;
    # A new connection (and TLS handshake) per request: the server closes after answering.
    short-close) hdr=(-H "$COOKIE_SHORT" -H "Connection: close");;
    gshort-close) hdr=(-H "$COOKIE_STICKY" -H "Connection: close");;
    pshort) hdr=(-H "$COOKIE_PINGORA");; plong) hdr=(-H "$COOKIE_PINGORA_LONG");;
  esac
  local -a cmd=(timeout $((d + 20)) wrk -t"$THREADS" -c"$CONNS" -d"${d}s" --latency "${hdr[@]}" "$url")
  [ "$PIN" = 1 ] && cmd=(taskset -c "$LOAD_CPU" "${cmd[@]}")
  echo "# ${cmd[*]}" >"$out"
  "${cmd[@]}" >>"$out" 2>&1 || echo "# exit status $?" >>"$out"
}

SUM="$OUTDIR/summary.tsv"
{
  echo "# date=$(date -u +%FT%TZ) host=$(hostname) cpus=$(nproc) kernel=$(uname -r)"
  echo "# $(haproxy -v | head -1) | $(nginx -v 2>&1) | $(wrk -v 2>&1 | head -1)"
  if [ "$GATEWAY_OK" = 1 ]; then
    echo "# sticky-gateway $GATEWAY_BIN rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown) threads=1 port=$GATEWAY_PORT"
  fi
  if [ "$PINGORA_OK" = 1 ]; then
    echo "# pingora_gateway (pingora-sticky) $PINGORA_BIN threads=1 port=$PINGORA_PORT"
  fi
  if [ "$PINGORA_RR_OK" = 1 ]; then
    echo "# pingora_gateway --plain (pingora-rr) $PINGORA_BIN threads=1 port=$PINGORA_RR_PORT"
  fi
  echo "# mode=$MODE dur=${DUR}s warm=${WARM}s conns=$CONNS wrk_threads=$THREADS haproxy_nbthread=$HAPROXY_NBTHREAD"
  printf "round\tscenario\treq_s\tavg_us\tp50_us\tp75_us\tp90_us\tp99_us\tmax_us\tnon2xx\tsock_err\tsut_cpu_pct\tbackend_cpu_pct\tmachine_busy_pct\tsut_us_per_req\tmachine_us_per_req\tsoftirq_pct\tsteal_pct\n"
} >"$SUM"

reversed() { local out="" s; for s in $1; do out="$s $out"; done; echo "$out"; }
for r in $(seq 1 "$ROUNDS"); do
  # Every other round runs the list backwards (A B, then B A): a steady drift of
  # the VM's speed then favours neither side of a pair.
  order=$SCENARIOS
  [ $((r % 2)) = 0 ] && order=$(reversed "$SCENARIOS")
  for s in $order; do
    IFS='|' read -r url ck sut <<<"$(scen "$s")"
    case $s in sticky-tls-*) [ "$GATEWAY_TLS_OK" = 1 ] || continue;; sticky-*) [ "$GATEWAY_OK" = 1 ] || continue;;
      pingora-rr) [ "$PINGORA_RR_OK" = 1 ] || continue;; pingora-*) [ "$PINGORA_OK" = 1 ] || continue;; esac
    sut_pid=$(cat "$RUN/$sut.pid")
    if ! kill -0 "$sut_pid" 2>/dev/null; then
      echo "round $r $s: $sut (pid $sut_pid) is gone"; tail -n 20 "$RUN/$sut.out" 2>/dev/null | sed 's/^/  | /' || true
      if [ "$sut" = gateway ]; then drop_sticky "sticky-gateway exited during the run"; continue; fi
      if [ "$sut" = gateway-tls ]; then drop_sticky_tls "the TLS gateway exited during the run"; continue; fi
      if [ "$sut" = pingora ]; then drop_pingora "pingora_gateway exited during the run"; continue; fi
      if [ "$sut" = pingora-rr ]; then drop_pingora_rr "pingora_gateway --plain exited during the run"; continue; fi
      exit 1
    fi
    if [ "$PIN" = 1 ] && [ "$s" = direct ]; then taskset -a -pc "$SUT_CPU" "$BACKEND_PID" >/dev/null; fi
    run_wrk "$WARM" "$url" "$ck" "$RUN/warm.txt"     # discarded warm-up
    t0=$(cpu_ticks "$sut_pid"); b0=$(cpu_ticks "$BACKEND_PID"); read -r busy0 tot0 sirq0 steal0 <<<"$(sys_busy)"
    run_wrk "$DUR" "$url" "$ck" "$OUTDIR/r$r-$s.txt"
    if ! t1=$(cpu_ticks "$sut_pid" 2>/dev/null); then
      echo "round $r $s: $sut (pid $sut_pid) exited during the measurement; row dropped"
      tail -n 20 "$RUN/$sut.out" 2>/dev/null | sed 's/^/  | /' || true
      if [ "$sut" = gateway ]; then drop_sticky "sticky-gateway exited during the run"; continue; fi
      if [ "$sut" = gateway-tls ]; then drop_sticky_tls "the TLS gateway exited during the run"; continue; fi
      if [ "$sut" = pingora ]; then drop_pingora "pingora_gateway exited during the run"; continue; fi
      if [ "$sut" = pingora-rr ]; then drop_pingora_rr "pingora_gateway --plain exited during the run"; continue; fi
      exit 1
    fi
    b1=$(cpu_ticks "$BACKEND_PID"); read -r busy1 tot1 sirq1 steal1 <<<"$(sys_busy)"
    if [ "$PIN" = 1 ] && [ "$s" = direct ]; then taskset -a -pc "$LOAD_CPU" "$BACKEND_PID" >/dev/null; fi
    f="$OUTDIR/r$r-$s.txt"
    rps=$(awk '/^Requests\/sec/{print $2}' "$f")
    nreq=$(awk '/requests in/{print $1}' "$f")
    read -r avg max <<<"$(awk '/^ +Latency /{print $2, $4; exit}' "$f")"
    p50=$(awk '$1=="50%"{print $2}' "$f"); p75=$(awk '$1=="75%"{print $2}' "$f")
    p90=$(awk '$1=="90%"{print $2}' "$f"); p99=$(awk '$1=="99%"{print $2}' "$f")
    non2xx=$(awk -F': ' '/Non-2xx/{print $2}' "$f"); non2xx=${non2xx:-0}
    serr=$(awk '/Socket errors/{sub(/.*Socket errors: /,""); gsub(/ /,""); print}' "$f"); serr=${serr:-0}
    sutpct=$(awk -v a="$t0" -v b="$t1" -v hz="$CLK_TCK" -v d="$DUR" 'BEGIN{printf "%.0f", (b-a)/hz/d*100}')
    if [ "$sut" = backends ]; then bpct=NA; else
      bpct=$(awk -v a="$b0" -v b="$b1" -v hz="$CLK_TCK" -v d="$DUR" 'BEGIN{printf "%.0f", (b-a)/hz/d*100}'); fi
    busy=$(awk -v a="$busy0" -v b="$busy1" -v c="$tot0" -v e="$tot1" 'BEGIN{printf "%.0f", (b-a)/(e-c)*100}')
    # whole-machine CPU per request (wrk + backend + proxy + loopback softirq); /proc/PID/stat
    # utime+stime does not include softirq time spent on loopback packets, this does.
    mus=$(awk -v a="$busy0" -v b="$busy1" -v hz="$CLK_TCK" -v n="$nreq" 'BEGIN{ if (n>0) printf "%.2f", (b-a)/hz/n*1e6; else print "NA"}')
    sirq=$(awk -v a="$sirq0" -v b="$sirq1" -v c="$tot0" -v e="$tot1" 'BEGIN{printf "%.0f", (b-a)/(e-c)*100}')
    stl=$(awk -v a="$steal0" -v b="$steal1" -v c="$tot0" -v e="$tot1" 'BEGIN{printf "%.1f", (b-a)/(e-c)*100}')
    uspr=$(awk -v a="$t0" -v b="$t1" -v hz="$CLK_TCK" -v n="$nreq" 'BEGIN{ if (n>0) printf "%.2f", (b-a)/hz/n*1e6; else print "NA"}')
    printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n" "$r" "$s" "$rps" \
      "$(to_us "$avg")" "$(to_us "$p50")" "$(to_us "$p75")" "$(to_us "$p90")" "$(to_us "$p99")" "$(to_us "$max")" \
      "$non2xx" "$serr" "$sutpct" "$bpct" "$busy" "$uspr" "$mus" "$sirq" "$stl" >>"$SUM"
    printf "round %s %-27s %10s req/s  p50 %6sus  p99 %6sus  sut_cpu %3s%%  busy %3s%%  machine %6sus/req  non2xx %s\n" \
      "$r" "$s" "$rps" "$(to_us "$p50")" "$(to_us "$p99")" "$sutpct" "$busy" "$mus" "$non2xx"
  done
done

echo
echo "summary: $SUM"
grep '^#' "$SUM"
grep -v '^#' "$SUM" | column -t -s $'\t' 2>/dev/null || grep -v '^#' "$SUM"
