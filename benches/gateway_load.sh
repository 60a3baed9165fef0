#!/usr/bin/env bash
# Load comparison on one machine, in one run: the same POST of a small JSON body sent with wrk
#   1. directly to the backend,
#   2. through nginx as a plain reverse proxy (keep-alive upstream, no access log),
#   3. through the Warden gateway with every layer on: API-key identity, 100k live
#      quarantines, three rate limits (set high enough never to refuse), RBAC with owner
#      scoping, content-type + JSON Schema validation, one event per request to the bus,
#   4. through a plain proxy on the gateway's own stack (hyper-util's connection builder, an
#      axum router, the gateway's per-thread upstream pool, one runtime per core) with no
#      layer at all: the floor the layers add to.
# Prints throughput and latency percentiles of each as a Markdown table; then, with oha at a
# constant rate of half of nginx's measured capacity (open loop, latency corrected for
# coordinated omission), each target's latency percentiles and what it adds over `direct`.
#
#   DURATION (default 15s)  CONNS (64)  THREADS (2)  WARMUP (3s)
#   PORT_BASE (18080): gateway = PORT_BASE, backend = +1, nginx = +2, plain proxy = +3
#   WARDEN_BENCH_SERVER: use this warden-bench-server binary instead of building one
#   WARDEN_BENCH_RUNTIME (per-core): `per-core` runs the gateway on one single-threaded Tokio
#     runtime per CPU, all accepting on the same listener (nginx's process model, and the
#     `warden` binary's: `gateway.workers`); `multi` on one work-stealing multi-threaded runtime
#   WARDEN_BENCH_THREADS (CPUs): runtimes in `per-core` mode
#   RATE_SHARE (0.5): the constant rate as a share of nginx's wrk throughput; 0 skips that part
#   OHA: the oha binary (default: `oha` on PATH, else installed with `cargo install oha`)
#
# Installs nginx and wrk from Debian when missing (needs root; nginx's service is not started).
# Not part of the CI run. Results and method: docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-15s}"
CONNS="${CONNS:-64}"
THREADS="${THREADS:-2}"
WARMUP="${WARMUP:-3s}"
PORT_BASE="${PORT_BASE:-18080}"
GW="127.0.0.1:${PORT_BASE}"
BACKEND="127.0.0.1:$((PORT_BASE + 1))"
NGINX="127.0.0.1:$((PORT_BASE + 2))"
PROXY="127.0.0.1:$((PORT_BASE + 3))"

if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
  echo "== installing nginx and wrk"
  # Keep the package's service from starting on port 80.
  created_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    created_policy=1
  fi
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-core wrk >/dev/null
  [ -n "$created_policy" ] && rm -f /usr/sbin/policy-rc.d
fi

RATE_SHARE="${RATE_SHARE:-0.5}"
OHA="${OHA:-$(command -v oha || true)}"
if [ "$RATE_SHARE" != "0" ] && [ -z "$OHA" ]; then
  echo "== installing oha (cargo install oha --locked)"
  cargo install -q oha --locked
  OHA="$(command -v oha || echo "$HOME/.cargo/bin/oha")"
fi

if [ -n "${WARDEN_BENCH_SERVER:-}" ]; then
  SERVER="$WARDEN_BENCH_SERVER"   # an already built binary
else
  echo "== building warden-bench-server (release)"
  cargo build --release -q -p warden-benches --bin warden-bench-server
  SERVER="${CARGO_TARGET_DIR:-target}/release/warden-bench-server"
fi

TMP="$(mktemp -d)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

# Start a process in the background and wait for its `ready` line (or its port for nginx).
start() {
  local name="$1"; shift
  "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
  PIDS+=("$!")
  for _ in $(seq 1 600); do
    if grep -q ready "$TMP/$name.out" 2>/dev/null; then return 0; fi
    if ! kill -0 "${PIDS[-1]}" 2>/dev/null; then
      echo "$name exited:"; cat "$TMP/$name.err"; exit 1
    fi
    sleep 0.1
  done
  echo "$name did not start"; exit 1
}

wait_port() {
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "nothing listens on $1"; exit 1
}

start backend "$SERVER" backend "$BACKEND"
BACKEND_PID="${PIDS[-1]}"
start gateway "$SERVER" gateway "$GW" "$BACKEND"
GW_PID="${PIDS[-1]}"
start proxy "$SERVER" proxy "$PROXY" "$BACKEND"
PROXY_PID="${PIDS[-1]}"

mkdir -p "$TMP/nginx"
cat >"$TMP/nginx.conf" <<EOF
worker_processes $(nproc);
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $TMP/nginx/body;
  proxy_temp_path $TMP/nginx/proxy;
  fastcgi_temp_path $TMP/nginx/fastcgi;
  uwsgi_temp_path $TMP/nginx/uwsgi;
  scgi_temp_path $TMP/nginx/scgi;
  upstream backend { server $BACKEND; keepalive 128; }
  server {
    listen $NGINX;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
nginx -c "$TMP/nginx.conf" -g 'daemon off;' 2>"$TMP/nginx.err" &
PIDS+=("$!")
NGINX_PID="$!"
wait_port "$NGINX"

cat >"$TMP/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = '{"t":21.5,"h":40.1,"seq":12345}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Api-Key"] = "bench-key-dev-1-0123456789abcdef"
EOF

URL_PATH="/api/devices/dev-1/telemetry"
declare -A RPS P50 P90 P99 ERRS CPU
# CPU time (user + system, clock ticks) of the given processes and their threads.
ticks() {
  local total=0 pid
  for pid in "$@"; do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total"
}
# The processes doing the proxying for each target (the backend's CPU is in every target).
procs() {
  case "$1" in
    direct) echo "$BACKEND_PID" ;;
    nginx) echo "$NGINX_PID $(pgrep -P "$NGINX_PID" | paste -sd' ')" ;;
    warden) echo "$GW_PID" ;;
    hyper_proxy) echo "$PROXY_PID" ;;
  esac
}
run() {
  local name="$1" addr="$2"
  wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" -s "$TMP/post.lua" "http://$addr$URL_PATH" >/dev/null
  # shellcheck disable=SC2046
  local before; before=$(ticks $(procs "$name"))
  wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -s "$TMP/post.lua" \
    "http://$addr$URL_PATH" >"$TMP/$name.wrk"
  # shellcheck disable=SC2046
  local after; after=$(ticks $(procs "$name"))
  local requests; requests=$(awk '/requests in/ {print $1}' "$TMP/$name.wrk")
  # Microseconds of CPU per request, in the process(es) in front of the backend.
  CPU[$name]=$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$requests" \
    'BEGIN { if (n > 0) printf "%.1f", t / hz * 1e6 / n; else print "-" }')
  RPS[$name]=$(awk '/^Requests\/sec/ {print $2}' "$TMP/$name.wrk")
  P50[$name]=$(awk '$1 == "50%" {print $2}' "$TMP/$name.wrk")
  P90[$name]=$(awk '$1 == "90%" {print $2}' "$TMP/$name.wrk")
  P99[$name]=$(awk '$1 == "99%" {print $2}' "$TMP/$name.wrk")
  ERRS[$name]=$(awk '/Non-2xx/ {print $5} /Socket errors/ {print "socket-errors"}' "$TMP/$name.wrk" | paste -sd' ')
  echo "-- $name: ${RPS[$name]} req/s, p99 ${P99[$name]}"
}

echo "== $(nproc) cores; wrk -t$THREADS -c$CONNS -d$DURATION (after a $WARMUP warm-up each); gateway runtime: ${WARDEN_BENCH_RUNTIME:-per-core}"
run direct "$BACKEND"
run nginx "$NGINX"
run warden "$GW"
run hyper_proxy "$PROXY"
GW_RSS_KB=$(ps -o rss= -p "$GW_PID" | tr -d ' ')

echo
echo "| target | requests/s | p50 | p90 | p99 | CPU µs/request (proxy; backend for direct) | errors |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | --- |"
for n in direct nginx warden hyper_proxy; do
  echo "| $n | ${RPS[$n]} | ${P50[$n]} | ${P90[$n]} | ${P99[$n]} | ${CPU[$n]} | ${ERRS[$n]:-none} |"
done
echo
echo "warden gateway RSS after the run: $((GW_RSS_KB / 1024)) MiB"
for n in direct nginx warden hyper_proxy; do
  if [ -n "${ERRS[$n]:-}" ]; then echo "WARNING: $n had errors: ${ERRS[$n]}"; fi
done

[ "$RATE_SHARE" = "0" ] && exit 0
RATE=$(awk -v r="${RPS[nginx]}" -v s="$RATE_SHARE" 'BEGIN { printf "%d", r * s }')
declare -A C50 C99 C999 COK
# Constant-rate load: `RATE` requests/s whatever the latency (open loop; a late response does
# not delay the next request's schedule, and latencies count from the scheduled send).
steady() {
  local name="$1" addr="$2"
  "$OHA" -z "$DURATION" -q "$RATE" -c "$CONNS" --latency-correction --no-tui \
    -m POST -H "Content-Type: application/json" \
    -H "X-Api-Key: bench-key-dev-1-0123456789abcdef" -d '{"t":21.5,"h":40.1,"seq":12345}' \
    --output-format json "http://$addr$URL_PATH" >"$TMP/$name.oha"
  read -r C50[$name] C99[$name] C999[$name] COK[$name] < <(python3 - "$TMP/$name.oha" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
p = d["latencyPercentiles"]
ok = d["statusCodeDistribution"].get("200", 0)
total = sum(d["statusCodeDistribution"].values()) + sum(d.get("errorDistribution", {}).values())
print(f'{p["p50"] * 1e3:.3f} {p["p99"] * 1e3:.3f} {p["p99.9"] * 1e3:.3f} {ok / max(total, 1):.4f}')
PY
)
}
echo
echo "== constant rate: $RATE requests/s ($RATE_SHARE of nginx's ${RPS[nginx]}), oha -c$CONNS -z$DURATION"
for n in direct nginx warden hyper_proxy; do
  case "$n" in
    direct) steady direct "$BACKEND" ;;
    nginx) steady nginx "$NGINX" ;;
    warden) steady warden "$GW" ;;
    hyper_proxy) steady hyper_proxy "$PROXY" ;;
  esac
done
echo
echo "| target | p50 ms | p99 ms | p99.9 ms | p99 added over direct, ms | 200 share |"
echo "| --- | ---: | ---: | ---: | ---: | ---: |"
for n in direct nginx warden hyper_proxy; do
  added=$(awk -v a="${C99[$n]}" -v b="${C99[direct]}" 'BEGIN { printf "%.3f", a - b }')
  echo "| $n | ${C50[$n]} | ${C99[$n]} | ${C999[$n]} | $added | ${COK[$n]} |"
done
