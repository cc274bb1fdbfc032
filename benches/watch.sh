#!/usr/bin/env bash
# What a `watch` costs the daemon at scale (docs/benchmarks.md, "Watching
# at scale"): CONNS idle connections held by `wsgate bench idle`, then the
# daemon's CPU over SECS seconds without a watcher, with a watcher of
# LIMIT rows at 1 s, at 100 ms, and with a watcher of every connection at
# 1 s (the snapshot of before windows); the snapshot line sizes; and how
# long an update takes to be answered with its snapshot.
#
# usage: benches/watch.sh [RESULTS_DIR]
# env:   CONNS (10000), SECS (20), LIMIT (40), PORT (18791), SOURCES
#        (source addresses for the idle connections, 127.0.0.1 up; 4),
#        BIN: a directory with a prebuilt release `wsgate` (default: build
#        this tree)
#
# Loopback only; the idle run is bounded by its own --max-time. Needs
# python3 for the admin client.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-$(mktemp -d -t wsgate-watch.XXXXXX)}
mkdir -p "$out"
CONNS=${CONNS:-10000}
SECS=${SECS:-20}
LIMIT=${LIMIT:-40}
PORT=${PORT:-18791}
# Several source addresses, so that the ports left in TIME_WAIT by an
# earlier run do not run out.
SOURCES=${SOURCES:-4}
if [ -n "${BIN:-}" ]; then
  bin=$BIN
else
  cargo build --release --quiet -p wsgate --bins
  bin=target/release
fi
ulimit -n 20000 2>/dev/null || true

cat > "$out/wsgate.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
admin_socket = "$out/admin.sock"
watch_config = false
[limits]
max_connections = 100000
max_connections_per_ip = 100000
messages_per_second = 0
# No heartbeats: 10,000 pings every 30 s would land in some measurements
# and not in others.
ping_interval = "0s"
TOML

WSGATE_LOG=warn "$bin/wsgate" serve -c "$out/wsgate.toml" 2>"$out/server.log" &
server=$!
idle=
cleanup() {
  [ -n "$idle" ] && kill "$idle" 2>/dev/null || true
  kill "$server" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  [ -S "$out/admin.sock" ] && break
  sleep 0.05
done

# Four measurements of SECS seconds each and the updates, with room to spare.
hold=$((6 * SECS + 30))
"$bin/wsgate" bench idle --quiet --url "ws://127.0.0.1:$PORT/ws/echo" \
  --conns "$CONNS" --sources "$SOURCES" --hold "$hold" --max-time "$((hold + 120))" \
  >"$out/idle.txt" 2>&1 &
idle=$!

python3 - "$out/admin.sock" "$server" "$CONNS" "$SECS" "$LIMIT" <<'PY' | tee "$out/watch.json"
import glob, json, os, socket, sys, time

path, pid, conns, secs, limit = sys.argv[1], int(sys.argv[2]), *map(int, sys.argv[3:])
hz = os.sysconf("SC_CLK_TCK")

def cpu():
    """The daemon's CPU time so far: /proc/PID/stat (clock ticks) and the
    sum of its threads' schedstat run times (nanoseconds), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    stat = (int(fields[11]) + int(fields[12])) / hz
    run = 0
    for t in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(t) as f:
                run += int(f.read().split()[0])
        except OSError:
            pass
    return stat, run / 1e9

def connect():
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    return s, s.makefile("rb")

def request(line):
    s, r = connect()
    s.sendall((json.dumps(line) + "\n").encode())
    answer = json.loads(r.readline())
    s.close()
    return answer

deadline = time.time() + 120
while request({"cmd": "stats"})["result"]["connections"]["total"] < conns:
    assert time.time() < deadline, "the idle connections did not all open"
    time.sleep(0.5)
time.sleep(2)

def measure(watch):
    """CPU over `secs` seconds, with `watch` streaming (None: no watcher),
    and the sizes of the snapshot lines it got."""
    sizes = []
    if watch is not None:
        s, r = connect()
        s.sendall((json.dumps(watch) + "\n").encode())
        assert json.loads(r.readline())["ok"]
    before, t0 = cpu(), time.monotonic()
    while time.monotonic() - t0 < secs:
        if watch is None:
            time.sleep(0.2)
            continue
        line = r.readline()
        if line.startswith(b'{"event":"snapshot"'):
            sizes.append(len(line))
    after, elapsed = cpu(), time.monotonic() - t0
    if watch is not None:
        s.close()
    return {
        "watch": watch,
        "seconds": round(elapsed, 2),
        "cpu_stat_s": round(after[0] - before[0], 3),
        "cpu_sched_s": round(after[1] - before[1], 4),
        "snapshots": len(sizes),
        "snapshot_bytes_max": max(sizes, default=0),
    }

window = {"cmd": "watch", "sort": "in_rate", "limit": limit}
runs = [
    measure(None),
    measure(dict(window, interval_ms=1000)),
    measure(dict(window, interval_ms=100)),
    measure({"cmd": "watch", "interval_ms": 1000}),
]

# Updates: the time from writing one to reading its snapshot (the daemon
# builds it at once, from the rates of the last tick).
s, r = connect()
s.sendall((json.dumps(dict(window, interval_ms=60000)) + "\n").encode())
r.readline(), r.readline()
waits = []
for i in range(1, 101):
    t0 = time.perf_counter()
    s.sendall((json.dumps(dict(window, interval_ms=60000, offset=i)) + "\n").encode())
    while not r.readline().startswith(b'{"event":"snapshot"'):
        pass
    waits.append(time.perf_counter() - t0)
s.close()
waits.sort()

base = runs[0]
for run in runs[1:]:
    extra = run["cpu_sched_s"] - base["cpu_sched_s"] * run["seconds"] / base["seconds"]
    extra_stat = run["cpu_stat_s"] - base["cpu_stat_s"] * run["seconds"] / base["seconds"]
    run["cpu_per_snapshot_ms"] = round(1000 * extra / max(run["snapshots"], 1), 3)
    run["cpu_stat_per_snapshot_ms"] = round(1000 * extra_stat / max(run["snapshots"], 1), 2)
print(json.dumps({
    "conns": conns,
    "runs": runs,
    "update_to_snapshot_ms": {
        "median": round(1000 * waits[len(waits) // 2], 3),
        "p90": round(1000 * waits[len(waits) * 9 // 10], 3),
    },
}, indent=2))
PY
