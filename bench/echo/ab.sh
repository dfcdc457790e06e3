#!/usr/bin/env bash
# ab.sh: A/B of two echo servers on the echo64 protocol, alternating A and
# B ROUNDS times (default 6). Each round starts the side's server
# (`spindle_echo64 server KIND WORKERS 0`), runs the same
# binary's closed-loop client for a 200,000-request warm-up, then for
# REQUESTS requests, and prints the requests per second of server CPU
# (utime+stime from /proc over the measured requests) and the requests per
# second. A fixed request count and the server's own CPU time are steadier
# on the shared VM than the free-layout table of `spindle_echo64`, whose
# rounds of one build spread by 0.8-1.4x (docs/decisions/0012-lto.md).
#
#   bench/echo/ab.sh A B [CONNS] [REQUESTS] [ROUNDS]
#       A, B: SPINDLE_ECHO64[:KIND[:WORKERS]], KIND spindle (default) or
#       libuv, WORKERS 1 by default; CONNS 1000, REQUESTS 600000, ROUNDS 6
#
#   two builds:   bench/echo/ab.sh /tmp/old/spindle_echo64 build/release/bench/echo/spindle_echo64
#   against libuv: e=build/release/bench/echo/spindle_echo64; bench/echo/ab.sh $e:libuv $e:spindle:2
set -euo pipefail
if [[ $# -lt 2 ]]; then
  sed -n '2,17p' "$0" >&2
  exit 2
fi
conns=${3:-1000} requests=${4:-600000} rounds=${5:-6}
declare -A bin kind workers
for side in A B; do
  spec=$1
  [[ $side == B ]] && spec=$2
  IFS=: read -r bin[$side] k w <<<"$spec"
  kind[$side]=${k:-spindle}
  workers[$side]=${w:-1}
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
hz=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
declare -A cpus rates
for _ in $(seq "$rounds"); do
  for side in A B; do
    b=${bin[$side]}
    : >"$tmp/port"
    "$b" server "${kind[$side]}" "${workers[$side]}" 0 >"$tmp/port" &
    pid=$!
    for _ in $(seq 100); do [[ -s "$tmp/port" ]] && break; sleep 0.05; done
    port=$(head -1 "$tmp/port")
    "$b" client "$port" "$conns" 200000 >/dev/null
    t0=$(cpu "$pid")
    s0=$(date +%s.%N)
    "$b" client "$port" "$conns" "$requests" >/dev/null
    t1=$(cpu "$pid")
    s1=$(date +%s.%N)
    kill -TERM "$pid"
    wait "$pid" || true
    cpus[$side]+=" $(awk -v n="$requests" -v d="$((t1 - t0))" -v hz="$hz" 'BEGIN{printf "%.0f", (d > 0 ? n / (d / hz) : 0)}')"
    rates[$side]+=" $(awk -v n="$requests" -v a="$s0" -v b="$s1" 'BEGIN{printf "%.0f", n / (b - a)}')"
  done
done
for side in A B; do
  echo "$side (${kind[$side]}, ${workers[$side]}w) req/CPU-s:${cpus[$side]}"
  echo "$side (${kind[$side]}, ${workers[$side]}w) req/s:${rates[$side]}"
done
