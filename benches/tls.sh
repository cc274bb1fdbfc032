#!/usr/bin/env bash
# Reproduces the TLS table in docs/benchmarks.md: wsgate's TLS listener
# against the reference server over TLS (benches/raw-echo --tls-cert), and
# both over plain ws, every measurement on a freshly started server.
#
# usage: benches/tls.sh [RESULTS_DIR]
# env:   REPEAT (3), IDLE_CONNS (5000), ECHO_CONNS (50), ECHO_MSGS (4000),
#        BIN: a directory with prebuilt `wsgate` and `raw-echo` binaries
#
# The certificate is a P-256 one made here with openssl for `localhost`;
# being its own CA, a verifier refuses it as an end entity, so the bench
# runs with --insecure (the handshake and its cost are the same).
# Loopback only; every run is bounded by the bench's own --max-time.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-$(mktemp -d -t wsgate-tls.XXXXXX)}
mkdir -p "$out"
REPEAT=${REPEAT:-3}
IDLE_CONNS=${IDLE_CONNS:-5000}
ECHO_CONNS=${ECHO_CONNS:-50}
ECHO_MSGS=${ECHO_MSGS:-4000}
PORT=${PORT:-18796}

if [ -n "${BIN:-}" ]; then
  bin=$BIN
else
  cargo build --release --quiet -p wsgate -p raw-echo --bins
  bin=target/release
fi
ulimit -n 20000 2>/dev/null || true

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost \
  -keyout "$out/key.pem" -out "$out/cert.pem" 2>/dev/null

wsgate_config() { # wsgate_config <ws|wss>
  cat <<TOML
[server]
admin_socket = ""
watch_config = false
[limits]
max_connections = 100000
max_connections_per_ip = 100000
messages_per_second = 0
frames_per_second = 0
[[server.listeners]]
address = "127.0.0.1:$PORT"
TOML
  if [ "$1" = wss ]; then
    echo "tls = { cert_file = \"$out/cert.pem\", key_file = \"$out/key.pem\" }"
  fi
}

server_pid=
start() { # start <raw|wsgate> <ws|wss>
  if [ "$1" = raw ]; then
    local tls=()
    [ "$2" = wss ] && tls=(--tls-cert "$out/cert.pem" --tls-key "$out/key.pem")
    "$bin/raw-echo" --listen "127.0.0.1:$PORT" "${tls[@]}" 2>"$out/server.log" &
  else
    wsgate_config "$2" > "$out/wsgate-$2.toml"
    WSGATE_LOG=warn "$bin/wsgate" serve -c "$out/wsgate-$2.toml" 2>"$out/server.log" &
  fi
  server_pid=$!
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "server $1 ($2) did not start"; cat "$out/server.log"; exit 1
}
stop() { kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; sleep 0.3; }

bench() { # bench <name> <server> <scheme> <mode> args...
  local name=$1 server=$2 scheme=$3; shift 3
  start "$server" "$scheme"
  local extra=(--insecure)
  [ "$1" = idle ] && extra+=(--pid "$server_pid")
  echo "== $name.$round ($server, $scheme)" >&2
  "$bin/wsgate" bench "$@" --url "$scheme://localhost:$PORT/ws/echo" "${extra[@]}" \
    --json --quiet > "$out/$name.$round.$server.$scheme.json"
  stop
}

for round in $(seq 1 "$REPEAT"); do
  order=(raw wsgate)
  [ $((round % 2)) -eq 0 ] && order=(wsgate raw)
  for scheme in ws wss; do
    for server in "${order[@]}"; do
      bench idle "$server" "$scheme" idle --conns "$IDLE_CONNS" --hold 1
      bench echo "$server" "$scheme" echo --conns "$ECHO_CONNS" --msgs "$ECHO_MSGS" --size 64
    done
  done
done

python3 - "$out" "$REPEAT" <<'PY'
import json, statistics, sys, pathlib
out, repeat = pathlib.Path(sys.argv[1]), int(sys.argv[2])
def median(name, server, scheme, get):
    return statistics.median(
        get(json.loads((out / f"{name}.{i}.{server}.{scheme}.json").read_text())["results"])
        for i in range(1, repeat + 1))
rows = [
    ("idle RSS per connection (KiB)", "idle", lambda x: x["memory"]["rss_per_conn_kib"]),
    ("handshakes/s", "idle", lambda x: x["handshakes_per_s"]),
    ("echo msgs/s (50 conns, 64 B)", "echo", lambda x: x["msgs_per_s"]),
    ("echo p99 (µs)", "echo", lambda x: x["latency"]["p99_us"]),
]
print(f"Medians of {repeat} rounds.\n")
print("| measure | wsgate ws | raw ws | wsgate wss | raw wss | wss: wsgate / raw |")
print("|---|---:|---:|---:|---:|---:|")
for label, name, get in rows:
    v = {(s, sc): median(name, s, sc, get) for s in ("wsgate", "raw") for sc in ("ws", "wss")}
    ratio = v[("wsgate", "wss")] / v[("raw", "wss")]
    print(f"| {label} | {v[('wsgate','ws')]:,.2f} | {v[('raw','ws')]:,.2f} | "
          f"{v[('wsgate','wss')]:,.2f} | {v[('raw','wss')]:,.2f} | {ratio:.2f}x |")
PY
echo "results in $out"
