#!/usr/bin/env bash
# The server's user-space instructions per echoed message and per fan-out
# delivery, counted by valgrind's callgrind: unlike wall-clock figures on a
# shared machine, these repeat to within a fraction of a percent, so two
# builds can be compared for small differences.
#
# usage: benches/instructions.sh [BIN_DIR...]
#   Each BIN_DIR holds `wsgate` binaries (default: target/release, built
#   first); give two directories to compare two builds.
# env:   ECHO_CONNS (10), ECHO_MSGS (1000 and 3 x that), FANOUT_SUBS (100),
#        FANOUT_MSGS (100 and 3 x that), PORT (18795)
#
# Each figure is the difference between a run of N and one of 3N messages,
# divided by the extra messages, so that start-up, connecting and shutdown
# cancel out. The server runs one tokio worker under callgrind; the load
# generator (`wsgate bench`, from the same BIN_DIR) runs natively.
# Loopback only; every run is bounded by the bench's own --max-time.
set -euo pipefail
cd "$(dirname "$0")/.."

ECHO_CONNS=${ECHO_CONNS:-10}
ECHO_MSGS=${ECHO_MSGS:-1000}
FANOUT_SUBS=${FANOUT_SUBS:-100}
FANOUT_MSGS=${FANOUT_MSGS:-100}
PORT=${PORT:-18795}
command -v valgrind >/dev/null || { echo "valgrind is required" >&2; exit 1; }

dirs=("$@")
if [ ${#dirs[@]} -eq 0 ]; then
  cargo build --release --quiet -p wsgate --bin wsgate
  dirs=(target/release)
fi

work=$(mktemp -d -t wsgate-instructions.XXXXXX)
trap 'rm -rf "$work"' EXIT
cat > "$work/wsgate.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
admin_socket = ""
watch_config = false
drain_timeout = "2s"
drain_spread = "0s"
[api]
keys = ["bench"]
[limits]
max_connections = 100000
max_connections_per_ip = 100000
messages_per_second = 0
send_queue = 4096
TOML

# total <bin_dir> <echo|fanout> <msgs>: the server's instruction total.
total() {
  local bin=$1 mode=$2 msgs=$3 pid
  WSGATE_LOG=error TOKIO_WORKER_THREADS=1 valgrind --tool=callgrind \
    --callgrind-out-file="$work/cg.out" "$bin/wsgate" serve -c "$work/wsgate.toml" \
    2>"$work/valgrind.log" &
  pid=$!
  for _ in $(seq 1 300); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
  done
  if [ "$mode" = echo ]; then
    "$bin/wsgate" bench echo --url "ws://127.0.0.1:$PORT/ws/echo" \
      --conns "$ECHO_CONNS" --msgs "$msgs" --size 64 --quiet --json >/dev/null
  else
    "$bin/wsgate" bench fanout --url "ws://127.0.0.1:$PORT/ws" \
      --api "http://127.0.0.1:$PORT/api/publish" --key bench \
      --subs "$FANOUT_SUBS" --msgs "$msgs" --size 256 --quiet --json >/dev/null
  fi
  kill -TERM "$pid"
  wait "$pid" || true
  awk '/^(summary|totals):/ {print $2; exit}' "$work/cg.out"
}

echo "| build | instructions per echoed message | instructions per fan-out delivery |"
echo "|---|---:|---:|"
for bin in "${dirs[@]}"; do
  e1=$(total "$bin" echo "$ECHO_MSGS")
  e3=$(total "$bin" echo $((3 * ECHO_MSGS)))
  f1=$(total "$bin" fanout "$FANOUT_MSGS")
  f3=$(total "$bin" fanout $((3 * FANOUT_MSGS)))
  echo "| $bin | $(( (e3 - e1) / (2 * ECHO_MSGS * ECHO_CONNS) )) | $(( (f3 - f1) / (2 * FANOUT_MSGS * FANOUT_SUBS) )) |"
done
