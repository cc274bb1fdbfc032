#!/usr/bin/env bash
# Reproduces the table in docs/benchmarks.md: wsgate against the raw
# hyper + fastwebsockets reference (benches/raw-echo), side by side in one
# run, every measurement on a freshly started server.
#
# usage: benches/run.sh [RESULTS_DIR]
# env:   REPEAT (3), IDLE_CONNS (10000), ECHO_CONNS (50), ECHO_MSGS (10000),
#        FANOUT_MSGS (300), FANOUT_BIG_MSGS (100), FANOUT_THREADS (2),
#        BIN: a directory (absolute, or relative to the repository) with
#        prebuilt `wsgate` and `raw-echo` binaries to
#        run instead of building this tree (to compare two builds)
#
# Each round runs every measurement against both servers, one right after
# the other; the table shows the median over REPEAT rounds (shared machines
# are noisy: compare ratios, not absolute figures).
#
# Loopback only; every run is bounded by the bench's own --max-time.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-$(mktemp -d -t wsgate-bench.XXXXXX)}
mkdir -p "$out"
REPEAT=${REPEAT:-3}
IDLE_CONNS=${IDLE_CONNS:-10000}
ECHO_CONNS=${ECHO_CONNS:-50}
ECHO_MSGS=${ECHO_MSGS:-10000}
FANOUT_MSGS=${FANOUT_MSGS:-300}
FANOUT_BIG_MSGS=${FANOUT_BIG_MSGS:-100}
# Receiving a fan-out takes the load generator more work than sending it
# takes the server: with one thread it, not the server, sets the pace at
# 10,000 subscribers (the fanout10k_1t row shows that case).
FANOUT_THREADS=${FANOUT_THREADS:-2}
PORT=${PORT:-18790}

if [ -n "${BIN:-}" ]; then
  bin=$BIN
else
  cargo build --release --quiet -p wsgate -p raw-echo --bins
  bin=target/release
fi
ulimit -n 20000 2>/dev/null || true

cat > "$out/wsgate.toml" <<TOML
# wsgate with limits high enough not to bite: the benchmark measures the
# cost of enforcing them, not their effect.
[server]
listen = "127.0.0.1:$PORT"
admin_socket = "$out/admin.sock"
watch_config = false
[api]
keys = ["bench"]
[limits]
max_connections = 100000
max_connections_per_ip = 100000
messages_per_second = 0
send_queue = 4096
TOML

server_pid=
start() { # start <raw|wsgate>
  if [ "$1" = raw ]; then
    "$bin/raw-echo" --listen "127.0.0.1:$PORT" 2>"$out/server.log" &
  else
    WSGATE_LOG=warn "$bin/wsgate" serve -c "$out/wsgate.toml" 2>"$out/server.log" &
  fi
  server_pid=$!
  for _ in $(seq 1 100); do
    grep -q "listening on" "$out/server.log" 2>/dev/null && return 0
    # wsgate logs at warn here; wait for the port instead.
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "server $1 did not start"; cat "$out/server.log"; exit 1
}
stop() { kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; sleep 0.3; }

bench() { # bench <name> <server> <mode> args...
  local name=$1 server=$2; shift 2
  local name="$name.$round"
  start "$server"
  local pid_args=()
  [ "$1" = idle ] && pid_args=(--pid "$server_pid")
  echo "== $name ($server)" >&2
  "$bin/wsgate" bench "$@" "${pid_args[@]}" --json --quiet > "$out/$name.$server.json"
  stop
}

ws="ws://127.0.0.1:$PORT"
api="http://127.0.0.1:$PORT/api/publish"
# Each measurement runs against both servers back to back, and the server
# that goes first alternates from round to round, so that neither always
# runs after the other's load (or its sockets in TIME_WAIT).
both() { # both <name> <mode> args...
  local name=$1; shift
  local order=(raw wsgate)
  [ $((round % 2)) -eq 0 ] && order=(wsgate raw)
  for server in "${order[@]}"; do bench "$name" "$server" "$@"; done
}
for round in $(seq 1 "$REPEAT"); do
  both idle idle --url "$ws/ws/echo" --conns "$IDLE_CONNS" --hold 1
  both echo echo --url "$ws/ws/echo" --conns "$ECHO_CONNS" --msgs "$ECHO_MSGS" --size 64
  both fanout1k_paced fanout --url "$ws/ws" --api "$api" --key bench \
    --subs 1000 --msgs 200 --size 256 --rate 20
  both fanout1k fanout --url "$ws/ws" --api "$api" --key bench \
    --subs 1000 --msgs "$FANOUT_MSGS" --size 256 --threads "$FANOUT_THREADS"
  both fanout10k fanout --url "$ws/ws" --api "$api" --key bench \
    --subs 10000 --msgs "$FANOUT_BIG_MSGS" --size 256 --threads "$FANOUT_THREADS"
  both fanout10k_1t fanout --url "$ws/ws" --api "$api" --key bench \
    --subs 10000 --msgs "$FANOUT_BIG_MSGS" --size 256 --threads 1
done

python3 - "$out" "$REPEAT" <<'PY'
import json, statistics, sys, pathlib
out, repeat = pathlib.Path(sys.argv[1]), int(sys.argv[2])
def runs(name, server):
    return [json.loads((out / f"{name}.{i}.{server}.json").read_text())["results"]
            for i in range(1, repeat + 1)]
rows = [
    ("idle: RSS per connection (KiB), 10k idle", "idle", lambda x: x["memory"]["rss_per_conn_kib"], "lower"),
    ("idle: Pss per connection (KiB), 10k idle", "idle", lambda x: x["memory"]["pss_per_conn_kib"], "lower"),
    ("idle: handshakes/s while opening", "idle", lambda x: x["handshakes_per_s"], "higher"),
    ("echo: msgs/s (50 conns, 64 B)", "echo", lambda x: x["msgs_per_s"], "higher"),
    ("echo: round trip p50 (µs)", "echo", lambda x: x["latency"]["p50_us"], "lower"),
    ("echo: round trip p99 (µs)", "echo", lambda x: x["latency"]["p99_us"], "lower"),
    ("fan-out 1k subs: deliveries/s", "fanout1k", lambda x: x["deliveries_per_s"], "higher"),
    ("fan-out 10k subs: deliveries/s", "fanout10k", lambda x: x["deliveries_per_s"], "higher"),
    ("fan-out 10k subs: delivery p99 (µs)", "fanout10k", lambda x: x["latency"]["p99_us"], "lower"),
    ("fan-out 10k subs, 1-thread generator: deliveries/s", "fanout10k_1t", lambda x: x["deliveries_per_s"], "higher"),
    ("fan-out 1k subs @20/s: delivery p99 (µs)", "fanout1k_paced", lambda x: x["latency"]["p99_us"], "lower"),
    ("fan-out 1k subs @20/s: delivery p50 (µs)", "fanout1k_paced", lambda x: x["latency"]["p50_us"], "lower"),
]
print(f"Medians of {repeat} rounds; the range is min to max.\n")
print("| measure | raw reference | wsgate | wsgate / raw | better is |")
print("|---|---:|---:|---:|---|")
for label, name, get, better in rows:
    xs = [get(x) for x in runs(name, "raw")]
    ys = [get(y) for y in runs(name, "wsgate")]
    a, b = statistics.median(xs), statistics.median(ys)
    ratio = b / a if a else float("nan")
    cell = lambda v, vs: f"{v:,.1f} ({min(vs):,.0f}–{max(vs):,.0f})" if repeat > 1 else f"{v:,.1f}"
    print(f"| {label} | {cell(a, xs)} | {cell(b, ys)} | {ratio:.2f}x | {better} |")
lost = {s: sum(x["lost_unexplained"] + x["duplicated"]
               for n in ("fanout1k", "fanout10k", "fanout10k_1t", "fanout1k_paced")
               for x in runs(n, s))
        for s in ("raw", "wsgate")}
print(f"\nlost or duplicated deliveries: raw {lost['raw']}, wsgate {lost['wsgate']}")
PY
echo "(raw JSON results in $out)" >&2
