#!/usr/bin/env bash
# What `wsgate console` costs at scale (docs/benchmarks.md, "The console at
# scale"): CONNS idle connections held by `wsgate bench idle` and SUBS
# subscribers receiving RATE messages a second, then over SECS seconds the
# daemon's CPU without a console and with one (at 1 s, in a 120x36 tmux
# pane), and the console's own CPU. CPU is read from every thread's
# /proc/PID/task/TID/schedstat (nanoseconds on CPU).
#
# usage: benches/console.sh
# env:   CONNS (10000), SUBS (100), RATE (20), SECS (20), PORT (18792),
#        BIN: a directory with a prebuilt release `wsgate` (default: build
#        this tree)
#
# Loopback only; every load run is bounded by its own message count and
# --max-time. Needs tmux.
set -euo pipefail
cd "$(dirname "$0")/.."

CONNS=${CONNS:-10000}
SUBS=${SUBS:-100}
RATE=${RATE:-20}
SECS=${SECS:-20}
PORT=${PORT:-18792}
command -v tmux >/dev/null || { echo "tmux is required" >&2; exit 1; }
if [ -n "${BIN:-}" ]; then
  bin=$BIN
else
  cargo build --release --quiet -p wsgate --bin wsgate
  bin=target/release
fi
ulimit -n 20000 2>/dev/null || true
work=$(mktemp -d -t wsgate-console.XXXXXX)
tmux_=(tmux -L "wsgate-console-bench-$$")
daemon=
cleanup() {
  "${tmux_[@]}" kill-server 2>/dev/null || true
  [ -n "$daemon" ] && kill "$daemon" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/wsgate.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
admin_socket = "$work/admin.sock"
watch_config = false
[api]
keys = ["bench"]
[limits]
max_connections = 100000
max_connections_per_ip = 100000
messages_per_second = 0
send_queue = 4096
TOML

# cpu_ms <pid>: milliseconds on CPU so far, over all its threads.
cpu_ms() { cat /proc/"$1"/task/*/schedstat | awk '{s += $1} END {print int(s / 1000000)}'; }

WSGATE_LOG=warn "$bin/wsgate" serve -c "$work/wsgate.toml" 2>"$work/daemon.log" &
daemon=$!
for _ in $(seq 1 100); do [ -S "$work/admin.sock" ] && break; sleep 0.1; done
hold=$((3 * SECS + 30))
"$bin/wsgate" bench idle --url "ws://127.0.0.1:$PORT/ws/echo" --conns "$CONNS" \
  --hold "$hold" --sources 4 --quiet --json >"$work/idle.json" &
for _ in $(seq 1 300); do
  "$bin/wsgate" ctl --socket "$work/admin.sock" stats 2>/dev/null |
    grep -q "^connections  *$CONNS " && break
  sleep 0.1
done
"$bin/wsgate" bench fanout --url "ws://127.0.0.1:$PORT/ws" \
  --api "http://127.0.0.1:$PORT/api/publish" --key bench --subs "$SUBS" \
  --msgs $((RATE * hold)) --size 256 --rate "$RATE" --max-time "${hold}s" \
  --quiet --json >"$work/fanout.json" 2>/dev/null &
sleep 5

a=$(cpu_ms "$daemon"); sleep "$SECS"; b=$(cpu_ms "$daemon")
echo "daemon, no console:   $(( (b - a) / SECS )) ms of CPU per second"

"${tmux_[@]}" new-session -d -s console -x 120 -y 36 \
  "$bin/wsgate console --socket $work/admin.sock --interval 1s"
sleep 3
console=$(pgrep -f "wsgate console --socket $work/admin.sock" | head -n 1)
a=$(cpu_ms "$daemon"); c=$(cpu_ms "$console"); sleep "$SECS"
b=$(cpu_ms "$daemon"); d=$(cpu_ms "$console")
echo "daemon, with console: $(( (b - a) / SECS )) ms of CPU per second"
echo "console:              $(( d - c )) ms of CPU in ${SECS} s (${SECS} snapshots and frames or more)"
"${tmux_[@]}" capture-pane -p -t console | head -n 6
