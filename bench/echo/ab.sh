#!/usr/bin/env bash
# ab.sh: A/B of echo servers on the echo64 protocol, alternating the sides
# ROUNDS times (default 6). Each round starts the side's server
# (`spindle_echo64 server KIND WORKERS 0`), runs the same
# binary's closed-loop client for a 200,000-request warm-up, then for
# REQUESTS requests, and prints the requests per second of server CPU
# (utime+stime from /proc over the measured requests) and the requests per
# second, then each side's median (min..max) per round against the first
# side's same round. A fixed request count and the server's own CPU time
# are steadier on the shared VM than the free-layout table of
# `spindle_echo64`, whose rounds of one build spread by 0.8-1.4x
# (docs/decisions/0012-lto.md).
#
#   bench/echo/ab.sh A B [CONNS] [REQUESTS] [ROUNDS]
#   bench/echo/ab.sh A,B[,C...] [CONNS] [REQUESTS] [ROUNDS]
#       each side: SPINDLE_ECHO64[:KIND[:WORKERS]], KIND spindle (default) or
#       libuv, WORKERS 1 by default; CONNS 1000, REQUESTS 600000, ROUNDS 6.
#       AB_PIN=1: the pinned layout (server `taskset -c 0`, client
#       `taskset -c 1`). AB_SERVER_CPUS / AB_CLIENT_CPUS (taskset lists)
#       pin either side anywhere, e.g. a 2-worker server on CPUs 0-1 and
#       its client on 2 of a larger machine.
#
#   two builds:   bench/echo/ab.sh /tmp/old/spindle_echo64 build/release/bench/echo/spindle_echo64
#   against libuv: e=build/release/bench/echo/spindle_echo64; bench/echo/ab.sh $e:libuv $e:spindle:2
#   the issue's three: bench/echo/ab.sh $e:libuv,$e:spindle:1,$e:spindle:2 100 300000 8
set -euo pipefail
if [[ $# -lt 1 || ($# -lt 2 && $1 != *,*) ]]; then
  sed -n '2,26p' "$0" >&2
  exit 2
fi
if [[ $1 == *,* ]]; then
  IFS=, read -r -a specs <<<"$1"
  shift
else
  specs=("$1" "$2")
  shift 2
fi
conns=${1:-1000} requests=${2:-600000} rounds=${3:-6}
server_pin=() client_pin=()
if [[ ${AB_PIN:-0} == 1 ]]; then
  server_pin=(taskset -c 0)
  client_pin=(taskset -c 1)
fi
[[ -n ${AB_SERVER_CPUS:-} ]] && server_pin=(taskset -c "$AB_SERVER_CPUS")
[[ -n ${AB_CLIENT_CPUS:-} ]] && client_pin=(taskset -c "$AB_CLIENT_CPUS")
n=${#specs[@]}
declare -a bin kind workers cpus rates
for ((i = 0; i < n; i++)); do
  IFS=: read -r b k w <<<"${specs[i]}"
  bin[i]=$b
  kind[i]=${k:-spindle}
  workers[i]=${w:-1}
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
hz=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
letters=ABCDEFGHIJKLMNOPQRSTUVWXYZ
label() { printf '%s (%s, %sw)' "${letters:$1:1}" "${kind[$1]}" "${workers[$1]}"; }
for _ in $(seq "$rounds"); do
  for ((i = 0; i < n; i++)); do
    b=${bin[i]}
    : >"$tmp/port"
    "${server_pin[@]}" "$b" server "${kind[i]}" "${workers[i]}" 0 >"$tmp/port" &
    pid=$!
    for _ in $(seq 100); do [[ -s "$tmp/port" ]] && break; sleep 0.05; done
    port=$(head -1 "$tmp/port")
    "${client_pin[@]}" "$b" client "$port" "$conns" 200000 >/dev/null
    t0=$(cpu "$pid")
    s0=$(date +%s.%N)
    "${client_pin[@]}" "$b" client "$port" "$conns" "$requests" >/dev/null
    t1=$(cpu "$pid")
    s1=$(date +%s.%N)
    kill -TERM "$pid"
    wait "$pid" || true
    cpus[i]+=" $(awk -v n="$requests" -v d="$((t1 - t0))" -v hz="$hz" 'BEGIN{printf "%.0f", (d > 0 ? n / (d / hz) : 0)}')"
    rates[i]+=" $(awk -v n="$requests" -v a="$s0" -v b="$s1" 'BEGIN{printf "%.0f", n / (b - a)}')"
  done
done
for ((i = 0; i < n; i++)); do
  echo "$(label "$i") req/CPU-s:${cpus[i]}"
  echo "$(label "$i") req/s:${rates[i]}"
done
# Per round, side i over side A; the median and the range of those ratios.
ratios() {
  awk -v a="$1" -v b="$2" 'BEGIN {
    n = split(a, x, " "); split(b, y, " ")
    for (i = 1; i <= n; i++) r[i] = (x[i] > 0 ? y[i] / x[i] : 0)
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (r[j] < r[i]) { t = r[i]; r[i] = r[j]; r[j] = t }
    m = (n % 2) ? r[(n + 1) / 2] : (r[n / 2] + r[n / 2 + 1]) / 2
    printf "%.2fx (%.2f..%.2f)", m, r[1], r[n] }'
}
for ((i = 1; i < n; i++)); do
  echo "$(label "$i") / A per round: req/CPU-s $(ratios "${cpus[0]}" "${cpus[i]}"), req/s $(ratios "${rates[0]}" "${rates[i]}")"
done
