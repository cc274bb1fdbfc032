#!/usr/bin/env bash
# The cluster's cost: fan-out to 10,000 subscribers on one node against the
# same subscribers split over two nodes of a cluster (NATS between them),
# published on one. Four setups, each on freshly started servers:
#
#   single  one node without [cluster], all subscribers on it
#   local   a node of a cluster, all subscribers on it (every publish is
#           also handed to NATS, which has no other node to deliver to)
#   split   two nodes, half the subscribers on each, published on node A
#   remote  two nodes, every subscriber on node B, published on node A
#           (every delivery crosses NATS)
#
# Besides deliveries/s and latency it reads the CPU time (user + system)
# each process used during the run, to give the cost of the extra hop per
# publish and per delivery.
#
# Every setup runs twice: publishing back to back (each publish after the
# previous answer: throughput) and paced at RATE publishes/s (each
# subscriber's messages then leave one per write, so CPU per delivery and
# latency compare like with like).
#
# Last, the cost of forwarding one publish: PUB_MSGS publishes to a single
# subscriber, on a node alone and on a node of a cluster (CPU difference
# divided by the publishes).
#
# usage: benches/cluster.sh [RESULTS_DIR]
# env:   REPEAT (3), SUBS (10000), MSGS (100), RATE (20), PUB_MSGS (20000),
#        THREADS (2), BIN (prebuilt binaries, as for benches/run.sh)
#
# Needs nats-server (Debian: apt-get install nats-server). Loopback only;
# every run is bounded by the bench's own --max-time.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-$(mktemp -d -t wsgate-cluster.XXXXXX)}
mkdir -p "$out"
REPEAT=${REPEAT:-3}
SUBS=${SUBS:-10000}
MSGS=${MSGS:-100}
RATE=${RATE:-20}
PUB_MSGS=${PUB_MSGS:-20000}
THREADS=${THREADS:-2}
NATS_PORT=${NATS_PORT:-14300}
PORT_A=${PORT_A:-18801}
PORT_B=${PORT_B:-18802}

if [ -n "${BIN:-}" ]; then
  bin=$BIN
else
  cargo build --release --quiet -p wsgate --bins
  bin=target/release
fi
ulimit -n 30000 2>/dev/null || true

node_config() { # node_config <name> <port> <cluster: yes|no>
  cat <<TOML
[server]
listen = "127.0.0.1:$2"
admin_socket = ""
watch_config = false
[api]
keys = ["bench"]
[limits]
max_connections = 100000
max_connections_per_ip = 100000
messages_per_second = 0
send_queue = 4096
TOML
  if [ "$3" = yes ]; then
    printf '[cluster]\nnats = ["nats://127.0.0.1:%s"]\nnode = "%s"\n' "$NATS_PORT" "$1"
  fi
}

pids=()
# The processes whose CPU time is read, by role ("-": not running).
pid_a=- pid_b=- pid_nats=-
start_node() { # start_node <name> <port> <cluster>
  node_config "$1" "$2" "$3" > "$out/$1.toml"
  WSGATE_LOG=warn "$bin/wsgate" serve -c "$out/$1.toml" 2>"$out/$1.log" &
  pids+=($!)
  if [ "$1" = a ]; then pid_a=$!; else pid_b=$!; fi
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && break
    sleep 0.05
  done
  if [ "$3" = yes ]; then
    for _ in $(seq 1 100); do
      curl -s "http://127.0.0.1:$2/metrics" | grep -q '^wsgate_cluster_connected 1' && return 0
      sleep 0.05
    done
    echo "node $1 did not join NATS"; cat "$out/$1.log"; exit 1
  fi
}
start_nats() {
  nats-server -a 127.0.0.1 -p "$NATS_PORT" 2>"$out/nats.log" &
  pids+=($!)
  pid_nats=$!
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nats-server did not start"; exit 1
}
stop_all() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
  pid_a=- pid_b=- pid_nats=-
  sleep 0.3
}
trap stop_all EXIT

cpu_ticks() { # the user + system ticks of node A, node B and nats-server
  for p in "$pid_a" "$pid_b" "$pid_nats"; do
    if [ "$p" = - ]; then echo -; else awk '{print $14 + $15}' "/proc/$p/stat"; fi
  done | paste -sd' '
}

run() { # run <setup> <round> <subs> <msgs> bench-args...
  local setup=$1 round=$2 subs=$3 msgs=$4; shift 4
  local before after
  before=$(cpu_ticks)
  echo "== $setup.$round" >&2
  "$bin/wsgate" bench fanout --key bench --subs "$subs" --msgs "$msgs" --size 256 \
    --threads "$THREADS" --json --quiet "$@" > "$out/$setup.$round.json"
  after=$(cpu_ticks)
  echo "$before" > "$out/$setup.$round.cpu_before"
  echo "$after" > "$out/$setup.$round.cpu_after"
}

a="127.0.0.1:$PORT_A"
b="127.0.0.1:$PORT_B"
for round in $(seq 1 "$REPEAT"); do
  for pace in fast paced; do
    rate=()
    [ "$pace" = paced ] && rate=(--rate "$RATE")
    start_node a "$PORT_A" no
    run "single_$pace" "$round" "$SUBS" "$MSGS" --url "ws://$a/ws" --api "http://$a/api/publish" "${rate[@]}"
    stop_all

    start_nats
    start_node a "$PORT_A" yes
    run "local_$pace" "$round" "$SUBS" "$MSGS" --url "ws://$a/ws" --api "http://$a/api/publish" "${rate[@]}"
    stop_all

    start_nats
    start_node a "$PORT_A" yes
    start_node b "$PORT_B" yes
    run "split_$pace" "$round" "$SUBS" "$MSGS" --url "ws://$a/ws" --url "ws://$b/ws" \
      --api "http://$a/api/publish" "${rate[@]}"
    stop_all

    start_nats
    start_node a "$PORT_A" yes
    start_node b "$PORT_B" yes
    run "remote_$pace" "$round" "$SUBS" "$MSGS" --url "ws://$b/ws" --api "http://$a/api/publish" "${rate[@]}"
    stop_all
  done

  start_node a "$PORT_A" no
  run publish_single "$round" 1 "$PUB_MSGS" --url "ws://$a/ws" --api "http://$a/api/publish"
  stop_all
  start_nats
  start_node a "$PORT_A" yes
  run publish_cluster "$round" 1 "$PUB_MSGS" --url "ws://$a/ws" --api "http://$a/api/publish"
  stop_all
done

python3 - "$out" "$REPEAT" "$SUBS" "$MSGS" "$RATE" "$PUB_MSGS" <<'PY'
import json, os, statistics, sys, pathlib
out, repeat, subs, msgs, rate = pathlib.Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
pub_msgs = int(sys.argv[6])
hz = os.sysconf("SC_CLK_TCK")
def res(setup, i):
    return json.loads((out / f"{setup}.{i}.json").read_text())["results"]
def cpu(setup, i):
    b = (out / f"{setup}.{i}.cpu_before").read_text().split()
    a = (out / f"{setup}.{i}.cpu_after").read_text().split()
    return [None if x == "-" else (int(y) - int(x)) / hz for x, y in zip(b, a)]
med = lambda xs: statistics.median(xs)
print(f"Medians of {repeat} rounds ({subs:,} subscribers, {msgs} messages of 256 B, "
      f"so {subs*msgs:,} deliveries a run); the range is min to max. CPU is the "
      f"process's user + system time over the whole run (connects included).\n")
print("| setup | deliveries/s | p50 | p99 | CPU node A (s) | CPU node B (s) | CPU nats-server (s) | lost or duplicated |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
setups = [f"{s}_{p}" for p in ("fast", "paced") for s in ("single", "local", "split", "remote")]
for s in setups:
    r = [res(s, i) for i in range(1, repeat + 1)]
    c = [cpu(s, i) for i in range(1, repeat + 1)]
    d = [x["deliveries_per_s"] for x in r]
    p50 = med([x["latency"]["p50_us"] for x in r]) / 1000
    p99 = med([x["latency"]["p99_us"] for x in r]) / 1000
    col = lambda k: "—" if c[0][k] is None else f"{med([x[k] for x in c]):.2f}"
    bad = sum(x["lost_unexplained"] + x["duplicated"] for x in r)
    label = s.replace("_fast", ", back to back").replace("_paced", f", {rate} msgs/s")
    print(f"| {label} | {med(d):,.0f} ({min(d):,.0f}–{max(d):,.0f}) | {p50:.1f} ms | {p99:.1f} ms "
          f"| {col(0)} | {col(1)} | {col(2)} | {bad} |")
a_cpu = lambda s: med([cpu(s, i)[0] for i in range(1, repeat + 1)])
one, clustered = a_cpu("publish_single"), a_cpu("publish_cluster")
nats = med([cpu("publish_cluster", i)[2] for i in range(1, repeat + 1)])
print(f"\n{pub_msgs:,} publishes to one subscriber: node CPU {one:.2f} s alone, {clustered:.2f} s "
      f"in a cluster (+{(clustered - one) / pub_msgs * 1e6:.1f} µs per publish); "
      f"nats-server {nats:.2f} s ({nats / pub_msgs * 1e6:.1f} µs per publish)")
PY
echo "(raw JSON results in $out)" >&2
