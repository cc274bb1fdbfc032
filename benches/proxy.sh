#!/usr/bin/env bash
# Reproduces the proxy table in docs/benchmarks.md: echo through nginx's
# WebSocket proxy to benches/raw-echo against echo through wsgate's
# `proxy` route to the same upstream, every measurement on freshly
# started proxies (the upstream runs for the whole round).
#
# usage: benches/proxy.sh [RESULTS_DIR]
# env:   REPEAT (3), IDLE_CONNS (5000), ECHO_CONNS (50), ECHO_MSGS (4000),
#        WORKERS (2: nginx worker processes and wsgate runtime threads),
#        BIN: a directory with prebuilt `wsgate` and `raw-echo` binaries
#
# Memory is the proxy's own RSS growth per idle proxied connection, both
# legs (nginx: its one worker, with `worker_processes 1` for that run;
# wsgate: its process). wsgate runs with its limits on: per-connection
# rate limit, frame budget, heartbeat, idle timeout, send queue bounds,
# caps (raised so that one loopback address may open every connection).
# Loopback only; every run is bounded by the bench's own --max-time.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-$(mktemp -d -t wsgate-proxy.XXXXXX)}
mkdir -p "$out"
REPEAT=${REPEAT:-3}
IDLE_CONNS=${IDLE_CONNS:-5000}
ECHO_CONNS=${ECHO_CONNS:-50}
ECHO_MSGS=${ECHO_MSGS:-4000}
WORKERS=${WORKERS:-2}
PORT=${PORT:-18797}
UP_PORT=${UP_PORT:-18798}

if [ -n "${BIN:-}" ]; then
  bin=$BIN
else
  cargo build --release --quiet -p wsgate -p raw-echo --bins
  bin=target/release
fi
command -v nginx >/dev/null || { echo "nginx is needed (apt-get install nginx)"; exit 1; }
ulimit -n 20000 2>/dev/null || true

wait_port() { # wait_port <port> <what>
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "$2 did not start"; exit 1
}

nginx_config() { # nginx_config <workers>
  cat <<CONF
worker_processes $1;
worker_rlimit_nofile 20000;
daemon off;
pid $out/nginx.pid;
error_log $out/nginx-error.log warn;
events { worker_connections 20000; }
http {
  access_log off;
  client_body_temp_path $out/nginx-body;
  proxy_temp_path $out/nginx-proxy;
  fastcgi_temp_path $out/nginx-fastcgi;
  uwsgi_temp_path $out/nginx-uwsgi;
  scgi_temp_path $out/nginx-scgi;
  map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
  server {
    listen 127.0.0.1:$PORT;
    location /ws/echo {
      proxy_pass http://127.0.0.1:$UP_PORT;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection \$connection_upgrade;
      proxy_read_timeout 1h;
      proxy_send_timeout 1h;
    }
  }
}
CONF
}

wsgate_config() {
  cat <<TOML
[server]
listen = "127.0.0.1:$PORT"
admin_socket = ""
watch_config = false
[limits]
max_connections = 100000
max_connections_per_ip = 100000
messages_per_second = 100000
message_burst = 100000
[[routes]]
path = "/ws/echo"
router = "proxy"
[routes.options]
upstream = "ws://127.0.0.1:$UP_PORT/ws/echo"
TOML
}

proxy_pid=
measure_pid=
start() { # start <nginx|wsgate> <workers>
  if [ "$1" = nginx ]; then
    nginx_config "$2" > "$out/nginx.conf"
    nginx -c "$out/nginx.conf" -p "$out" 2>>"$out/nginx-error.log" &
    proxy_pid=$!
    wait_port "$PORT" nginx
    measure_pid=$(pgrep -P "$proxy_pid" | head -n 1)
    cpu_pids=$(pgrep -P "$proxy_pid" | tr '\n' ' ')
  else
    wsgate_config > "$out/wsgate.toml"
    TOKIO_WORKER_THREADS=$2 WSGATE_LOG=warn "$bin/wsgate" serve -c "$out/wsgate.toml" 2>"$out/wsgate.log" &
    proxy_pid=$!
    wait_port "$PORT" wsgate
    measure_pid=$proxy_pid
    cpu_pids=$proxy_pid
  fi
}
# CPU ticks (user + system) the proxy's processes used so far.
cpu_ticks() {
  local total=0 pid
  for pid in $cpu_pids; do
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  echo "$total"
}

# CPU ticks of each of the proxy's processes, space-separated.
worker_ticks() {
  local pid
  for pid in $cpu_pids; do awk '{printf "%d ", $14 + $15}' "/proc/$pid/stat"; done
}

stop() { kill "$proxy_pid" 2>/dev/null || true; wait "$proxy_pid" 2>/dev/null || true; sleep 0.5; }

bench() { # bench <name> <proxy> <workers> <mode> args...
  local name=$1 proxy=$2 workers=$3; shift 3
  start "$proxy" "$workers"
  local extra=()
  [ "$1" = idle ] && extra+=(--pid "$measure_pid")
  echo "== $name.$round ($proxy)" >&2
  local before workers_before
  before=$(cpu_ticks)
  workers_before=$(worker_ticks)
  "$bin/wsgate" bench "$@" --url "ws://127.0.0.1:$PORT/ws/echo" "${extra[@]}" \
    --json --quiet > "$out/$name.$round.$proxy.json"
  echo $(( $(cpu_ticks) - before )) > "$out/$name.$round.$proxy.ticks"
  echo "$workers_before" "/" "$(worker_ticks)" > "$out/$name.$round.$proxy.workers"
  stop
}

"$bin/raw-echo" --listen "127.0.0.1:$UP_PORT" 2>"$out/raw-echo.log" &
upstream=$!
trap 'kill "$upstream" "${proxy_pid:-}" 2>/dev/null || true' EXIT
wait_port "$UP_PORT" raw-echo

for round in $(seq 1 "$REPEAT"); do
  order=(nginx wsgate)
  [ $((round % 2)) -eq 0 ] && order=(wsgate nginx)
  for proxy in "${order[@]}"; do
    bench idle "$proxy" 1 idle --conns "$IDLE_CONNS" --hold 1
    bench echo "$proxy" "$WORKERS" echo --conns "$ECHO_CONNS" --msgs "$ECHO_MSGS" --size 64
  done
done

python3 - "$out" "$REPEAT" <<'PY'
import json, statistics, sys, pathlib
out, repeat = pathlib.Path(sys.argv[1]), int(sys.argv[2])
import os
hz = os.sysconf("SC_CLK_TCK")
def median(name, proxy, get):
    return statistics.median(
        get(json.loads((out / f"{name}.{i}.{proxy}.json").read_text())["results"],
            int((out / f"{name}.{i}.{proxy}.ticks").read_text()))
        for i in range(1, repeat + 1))
# Every echo is one message each way through the proxy.
rows = [
    ("echo msgs/s (50 conns, 64 B)", "echo", lambda x, t: x["msgs_per_s"]),
    ("echo p99 (µs)", "echo", lambda x, t: x["latency"]["p99_us"]),
    ("proxy CPU per echo, both ways (µs)", "echo", lambda x, t: t / hz * 1e6 / x["round_trips"]),
    ("idle RSS per proxied connection, both legs (KiB)", "idle", lambda x, t: x["memory"]["rss_per_conn_kib"]),
    ("handshakes/s through the proxy", "idle", lambda x, t: x["handshakes_per_s"]),
]
print(f"Medians of {repeat} rounds.\n")
print("| measure | wsgate `proxy` | nginx | wsgate / nginx |")
print("|---|---:|---:|---:|")
for label, name, get in rows:
    w, n = median(name, "wsgate", get), median(name, "nginx", get)
    print(f"| {label} | {w:,.2f} | {n:,.2f} | {w / n:.2f}x |")
# nginx hands each connection to one worker for its life: how evenly the
# echo run's connections fell on its workers decides its throughput.
print()
for i in range(1, repeat + 1):
    before, after = (out / f"echo.{i}.nginx.workers").read_text().split("/")
    used = [int(a) - int(b) for a, b in zip(after.split(), before.split())]
    share = max(used) / max(1, sum(used))
    rate = json.loads((out / f"echo.{i}.nginx.json").read_text())["results"]["msgs_per_s"]
    wsg = json.loads((out / f"echo.{i}.wsgate.json").read_text())["results"]["msgs_per_s"]
    print(f"round {i}: nginx {rate:,.0f} msgs/s with {share:.0%} of its CPU on its busiest worker; wsgate {wsg:,.0f} msgs/s")
PY
echo "results in $out"
