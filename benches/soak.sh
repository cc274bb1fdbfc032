#!/usr/bin/env bash
# The soak: a fresh release daemon holding CONNECTIONS subscribers on one
# topic (ECHOING of them also doing round trips), a publish to all of them
# RATE times a second for DURATION; loss, delivery latency per minute and
# the daemon's RSS over the run.
#
# usage: benches/soak.sh [RESULTS_DIR]
# env:   CONNECTIONS (15000), ECHOING (100), RATE (10), DURATION (5m),
#        WINDOW (1m), THREADS (1: the generator's runtime threads),
#        BIN: a directory with a prebuilt `wsgate` instead of building
#
# Both processes need more open files than the usual 1024: the script
# raises the soft limit to the hard one (20,000 on these machines; one
# process holds at most about 19,900 connections).
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-$(mktemp -d -t wsgate-soak.XXXXXX)}
mkdir -p "$out"
CONNECTIONS=${CONNECTIONS:-15000}
ECHOING=${ECHOING:-100}
RATE=${RATE:-10}
DURATION=${DURATION:-5m}
WINDOW=${WINDOW:-1m}
THREADS=${THREADS:-1}
PORT=${PORT:-18793}

if [ -n "${BIN:-}" ]; then
  bin=$BIN
else
  cargo build --release --quiet -p wsgate --bins
  bin=${CARGO_TARGET_DIR:-target}/release
fi
ulimit -n "$(ulimit -Hn)"

cat > "$out/wsgate.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
admin_socket = "$out/admin.sock"
watch_config = false
[api]
keys = ["soak"]
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

"$bin/wsgate" bench soak --url "ws://127.0.0.1:$PORT/ws" \
  --api "http://127.0.0.1:$PORT/api/publish" --key soak --pid "$pid" \
  --connections "$CONNECTIONS" --echoing "$ECHOING" --publish-rate "$RATE" \
  --duration "$DURATION" --window "$WINDOW" --threads "$THREADS" \
  --max-time 1h --quiet --json >"$out/soak.json" || status=$?
python3 - "$out/soak.json" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))
r = v["results"]
ms = lambda us: f"{us / 1000:.2f} ms"
print(f"connections {v['params']['connections']} ({v['params']['echoing']} echoing), "
      f"opened in {r['connect_s']} s; published {r['published']} in {r['publish_s']} s "
      f"(at most {r['publish_behind_max_ms']} ms behind)")
print(f"deliveries {r['deliveries']} of {r['expected_deliveries']}: "
      f"lost {r['lost']}, duplicated {r['duplicated']}, closes {r['closes']}, errors {r['errors']}")
for w in r["windows"]:
    d, e = w["delivery"], w["echo"]
    print(f"  {w['start_s']:5.0f}-{w['end_s']:<5.0f} s: delivery p50 {ms(d['p50_us'])} "
          f"p99 {ms(d['p99_us'])} max {ms(d['max_us'])}; echo p50 {ms(e['p50_us'])} "
          f"p99 {ms(e['p99_us'])} ({e['count']}); RSS {w['rss_kib']} KiB")
print(f"p99 first -> last window: {ms(r['p99_first_window_us'])} -> "
      f"{ms(r['p99_last_window_us'])} ({r['p99_change_pct']:+.1f} %)")
m = r["rss"]
if m:
    print(f"RSS {m['start_kib']} -> {m['end_kib']} KiB ({m['change_pct']:+.2f} %), "
          f"min {m['min_kib']} max {m['max_kib']}; from the end of the first window "
          f"{m['after_first_window_kib']} KiB: {m['change_after_first_window_pct']:+.2f} %")
print(f"echo: {r['echo']['pongs']} round trips, {r['echo']['unanswered']} unanswered")
print("ok" if v["ok"] else f"FAILED: {v['failure']}")
PY
echo "results in $out"
exit "${status:-0}"
