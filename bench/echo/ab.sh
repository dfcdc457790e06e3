#!/usr/bin/env bash
# ab.sh: A/B of two echo servers on the echo64 protocol, alternating A and
# B ROUNDS times (default 6). Each round starts the server in the
# foreground (`spindle_echo64 server KIND WORKERS 0`), runs the same
# binary's closed-loop client for a 200,000-request warm-up, then for
# REQUESTS requests, and prints the requests per second of server CPU
# (utime+stime from /proc over the measured requests) and the requests per
# second. A fixed request count and the server's own CPU time are steadier
# on the shared VM than the free-layout table of `spindle_echo64`, whose
# rounds of one build spread by 0.8-1.4x (docs/decisions/0012-lto.md).
#
#   bench/echo/ab.sh A_ECHO64 B_ECHO64 [KIND] [WORKERS] [CONNS] [REQUESTS] [ROUNDS]
#       A_ECHO64, B_ECHO64: two spindle_echo64 binaries (builds to compare)
#       KIND spindle (default) or libuv; WORKERS 1; CONNS 1000;
#       REQUESTS 600000; ROUNDS 6
#
# The same binary twice with KIND libuv against spindle is not what this
# does: to compare servers of one build, run it once per KIND.
set -euo pipefail
if [[ $# -lt 2 ]]; then
  sed -n '2,18p' "$0" >&2
  exit 2
fi
a=$1 b=$2 kind=${3:-spindle} workers=${4:-1} conns=${5:-1000} requests=${6:-600000} rounds=${7:-6}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
hz=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
declare -A cpus rates
for _ in $(seq "$rounds"); do
  for side in A B; do
    bin=$a
    [[ $side == B ]] && bin=$b
    : >"$tmp/port"
    "$bin" server "$kind" "$workers" 0 >"$tmp/port" &
    pid=$!
    for _ in $(seq 100); do [[ -s "$tmp/port" ]] && break; sleep 0.05; done
    port=$(head -1 "$tmp/port")
    "$bin" client "$port" "$conns" 200000 >/dev/null
    t0=$(cpu "$pid")
    s0=$(date +%s.%N)
    "$bin" client "$port" "$conns" "$requests" >/dev/null
    t1=$(cpu "$pid")
    s1=$(date +%s.%N)
    kill -TERM "$pid"
    wait "$pid" || true
    cpus[$side]+=" $(awk -v n="$requests" -v d="$((t1 - t0))" -v hz="$hz" 'BEGIN{printf "%.0f", (d > 0 ? n / (d / hz) : 0)}')"
    rates[$side]+=" $(awk -v n="$requests" -v a="$s0" -v b="$s1" 'BEGIN{printf "%.0f", n / (b - a)}')"
  done
done
for side in A B; do
  echo "$side req/CPU-s:${cpus[$side]}"
  echo "$side req/s:${rates[$side]}"
done
