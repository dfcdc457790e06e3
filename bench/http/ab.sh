#!/usr/bin/env bash
# ab.sh: A/B of two builds of an http_hello-protocol server (any binary
# taking `PORT WORKERS` and printing its port first, as http_hello and
# http_server_hello do), WORKERS workers (default 1), alternating A and B
# ROUNDS times (default 8): each a 1 s wrk warm-up, then
# `wrk -t1 -c100 -d3s`. Prints per side the req/s and req per second of
# server CPU (utime+stime from /proc over the 3 s) of every round; compare
# medians, and expect two or three rounds of each side to run low on the
# shared VM.
#
#   [WORKERS=2] bench/http/ab.sh OLD_BINARY NEW_BINARY [ROUNDS]
#
# An older build: git worktree add /tmp/old REV, then in it
# bench/http/run.sh's cmake lines (build/http-bench, target
# http_server_hello).
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 OLD_BINARY NEW_BINARY [ROUNDS]" >&2
  exit 2
fi
rounds=${3:-8}
workers=${WORKERS:-1}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
hz=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
for _ in $(seq "$rounds"); do
  for side in A B; do
    bin=$1
    [[ $side == B ]] && bin=$2
    : >"$tmp/port"
    "$bin" 0 "$workers" >"$tmp/port" &
    pid=$!
    for _ in $(seq 100); do [[ -s "$tmp/port" ]] && break; sleep 0.05; done
    port=$(head -1 "$tmp/port")
    wrk -t1 -c100 -d1s "http://127.0.0.1:$port/" >/dev/null
    t0=$(cpu "$pid")
    out=$(wrk -t1 -c100 -d3s "http://127.0.0.1:$port/")
    t1=$(cpu "$pid")
    kill -TERM "$pid"
    wait "$pid" || true
    v=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    echo "$side $v $(awk -v v="$v" -v t=$((t1 - t0)) -v hz="$hz" 'BEGIN { printf "%.0f", (t > 0) ? v * 3 / (t / hz) : 0 }')" >>"$tmp/rows"
  done
done
for side in A B; do
  echo "$side req/s: $(awk -v s=$side '$1 == s {printf "%s ", $2}' "$tmp/rows")"
  echo "$side req/CPU-s: $(awk -v s=$side '$1 == s {printf "%s ", $3}' "$tmp/rows")"
done
