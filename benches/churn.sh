#!/usr/bin/env bash
# Memory after churn: a fresh release daemon, then ROUNDS rounds of CYCLES
# connect/echo/close cycles on its echo route (half closed with 1000, half
# with a TCP reset), its RSS and open files read after every round.
#
# usage: benches/churn.sh [RESULTS_DIR]
# env:   ROUNDS (20), CYCLES (1000), CONCURRENCY (50), MAX_TAIL_KIB (256),
#        SOURCES (1: source addresses 127.0.0.1, 127.0.0.2, ...),
#        BIN: a directory with a prebuilt `wsgate` instead of building
#
# The run fails when RSS grows by more than MAX_TAIL_KIB over the last 10
# rounds. The JSON summary is kept in the results directory.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-$(mktemp -d -t wsgate-churn.XXXXXX)}
mkdir -p "$out"
ROUNDS=${ROUNDS:-20}
CYCLES=${CYCLES:-1000}
CONCURRENCY=${CONCURRENCY:-50}
MAX_TAIL_KIB=${MAX_TAIL_KIB:-256}
SOURCES=${SOURCES:-1}
PORT=${PORT:-18792}

if [ -n "${BIN:-}" ]; then
  bin=$BIN
else
  cargo build --release --quiet -p wsgate --bins
  bin=${CARGO_TARGET_DIR:-target}/release
fi

cat > "$out/wsgate.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
admin_socket = "$out/admin.sock"
watch_config = false
[limits]
max_connections = 100000
max_connections_per_ip = 100000
messages_per_second = 0
TOML

WSGATE_LOG=warn "$bin/wsgate" serve -c "$out/wsgate.toml" 2>"$out/server.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.05
done

"$bin/wsgate" bench churn --url "ws://127.0.0.1:$PORT/ws/echo" --pid "$pid" \
  --rounds "$ROUNDS" --cycles "$CYCLES" --concurrency "$CONCURRENCY" \
  --sources "$SOURCES" --max-tail-growth-kib "$MAX_TAIL_KIB" --max-time 30m --quiet --json \
  >"$out/churn.json" || status=$?
python3 - "$out/churn.json" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
r = v["results"]
print(f"before: RSS {r['before']['rss_kib']} KiB, {r['fds_before']} open files")
prev = r["before"]["rss_kib"]
for x in r["rounds"]:
    print(f"round {x['round']:3}: {x['clean']} clean {x['reset']} reset {x['failed']} failed "
          f"in {x['elapsed_s']:6.2f} s; RSS {x['rss_kib']} KiB ({x['rss_kib'] - prev:+d}), "
          f"{x['fds']} files, settled in {x['settle_s']} s")
    prev = x["rss_kib"]
print(f"first -> last round: {r['growth_first_to_last_kib']:+d} KiB; "
      f"last {r['tail_rounds']} rounds: {r['tail_growth_kib']:+d} KiB")
print("ok" if v["ok"] else f"FAILED: {v['failure']}")
PY
echo "results in $out"
exit "${status:-0}"
