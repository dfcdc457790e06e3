#!/usr/bin/env bash
# scale.sh: echo64 throughput as the server gets more cores. For each server
# (libuv C on one thread, spindle on W workers for each W given) it starts
# the server pinned to CPUs 0..W-1 (taskset), then CLIENTS load generators
# at once (spindle_echo64 client: one thread, one epoll, CONNS connections
# in a closed loop, REQUESTS replies each), each pinned to its own CPU from
# the top of the machine down, and sums their req/s. ROUNDS rounds; prints
# the median and the spread of the sums. Needs more cores than W + CLIENTS
# to mean anything: a 2-core machine can only run the table's echo64 row.
#
#   bench/echo/scale.sh [BUILD_DIR] [WORKERS_LIST] [CLIENTS] [CONNS] [REQUESTS] [ROUNDS]
#   (defaults: build/release "1 2 4 8" 4 250 400000 3)
set -euo pipefail
build=${1:-build/release}
workers=${2:-"1 2 4 8"}
clients=${3:-4}
conns=${4:-250}
requests=${5:-400000}
rounds=${6:-3}
bin="$build/bench/echo/spindle_echo64"
ncpu=$(nproc)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; kill $(jobs -p) 2>/dev/null || true' EXIT

one_round() {  # $1 = server cpus (taskset list), rest = server args
  local cpus=$1; shift
  taskset -c "$cpus" "$bin" server "$@" > "$tmp/port" &
  local srv=$!
  for _ in $(seq 100); do [[ -s "$tmp/port" ]] && break; sleep 0.1; done
  local port; port=$(head -n1 "$tmp/port")
  local pids=()
  for c in $(seq 1 "$clients"); do
    taskset -c $((ncpu - c)) "$bin" client "$port" "$conns" "$requests" > "$tmp/client$c" &
    pids+=($!)
  done
  wait "${pids[@]}"
  kill -TERM "$srv"; wait "$srv" || true
  rm -f "$tmp/port"
  # "N requests in S s: R req/s, ..." -> sum of R
  awk '{ for (i = 1; i < NF; ++i) if ($(i + 1) == "req/s,") s += $i } END { printf "%.0f\n", s }' "$tmp"/client*
}

report() {  # $1 = label, stdin = one sum per line
  sort -n | awk -v l="$1" '{ v[NR] = $1 } END {
    printf "| %s | %.0f | %.0f-%.0f |\n", l, v[int((NR + 1) / 2)], v[1], v[NR] }'
}

echo "echo64 scaling: $clients clients x $conns connections, $requests replies each, $rounds rounds, $ncpu CPUs"
echo
echo "| server | req/s (median) | spread |"
echo "|---|---:|---:|"
for _ in $(seq "$rounds"); do one_round 0 libuv; done | report "libuv C, 1 thread"
for w in $workers; do
  for _ in $(seq "$rounds"); do one_round "0-$((w - 1))" spindle "$w"; done | report "spindle, $w workers"
done
