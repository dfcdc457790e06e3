#!/usr/bin/env bash
# device.sh: the scaling measurements for a machine with many cores (the
# lent 16-core machine), in one run that fits its short lease. Four parts,
# each under its own time limit so one hang costs only its part:
#   1. runtime: spindle_bench_scale --workers=1,2,4,8,16 --runs=3
#   2. echo64: bench/echo/scale.sh, 4 client processes x 250 connections
#      (1,000 connections), server pinned to CPUs 0..W-1
#   3. HTTP/2 hello: h2load against http_server_hello on W workers (CPUs
#      0..W-1) and h2o on one thread (CPU 0); h2load pinned to the top CPUs
#   4. HTTP/1.1 hello: wrk against http_server_hello and the libuv C server
# Parts 3 and 4 report requests/s and requests per server CPU-second
# (utime+stime of the server's processes over the measured run), the median
# of ROUNDS rounds and the spread.
#
#   bench/scale/device.sh DIR
# DIR holds bin/ (spindle_bench_scale, spindle_primitives, spindle_echo64,
# http_server_hello, libuv_hello, h2load, h2o, wrk) and lib/ (their shared
# libraries, for a machine that has none of the packages installed);
# DIR/bench/echo/spindle_echo64 is what scale.sh runs.
# bench/scale/device_pack.sh makes it (docs/benchmarks.md "Scaling past two
# cores" has the device call).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
dir=$(cd "${1:?usage: device.sh DIR}" && pwd)
export LD_LIBRARY_PATH=$dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PATH=$dir/bin:$PATH
rounds=${ROUNDS:-3}
spindles="spindle_w1 spindle_w2 spindle_w4"
parts=${PARTS:-"runtime echo h2 h1"}
ncpu=$(nproc)
hz=$(getconf CLK_TCK)
tmp=$(mktemp -d)
pid=
trap '[[ -n $pid ]] && kill -9 $pid 2>/dev/null; rm -rf "$tmp"' EXIT

echo "device.sh: $ncpu CPUs, $(uname -r), rounds $rounds, $(date -u +%FT%TZ)"
grep -m1 'model name' /proc/cpuinfo || true
grep -m1 'cpu MHz' /proc/cpuinfo || true
echo "clocksource: $(cat /sys/devices/system/clocksource/clocksource0/current_clocksource 2>/dev/null)"
taskset -c 0 spindle_primitives

me=device.sh
# free_port, cpu_ticks, wait_listening (bench/http/proc.sh) and start_h2o
# [THREADS], the peer bench/http2/run.sh measures, configured as there.
source "$root/bench/http2/h2o.sh"

top_cpus() {  # the N highest CPUs, as a taskset list
  local n=$1; echo "$((ncpu - n))-$((ncpu - 1))"
}

# start_server NAME: h2o (one thread) or libuv on CPU 0, spindle_wN on
# CPUs 0..N-1; sets pid and port.
start_server() {
  : >"$tmp/out"
  case $1 in
    h2o)
      start_h2o 1 || return 1
      taskset -a -pc 0 "$pid" >/dev/null  # all its threads
      return 0 ;;
    libuv) taskset -c 0 libuv_hello 0 >"$tmp/out" & pid=$! ;;
    spindle_w*) taskset -c "0-$((${1#spindle_w} - 1))" http_server_hello 0 "${1#spindle_w}" >"$tmp/out" & pid=$! ;;
  esac
  for _ in $(seq 100); do [[ -s $tmp/out ]] && break; sleep 0.05; done
  port=$(head -1 "$tmp/out")
  [[ $port =~ ^[0-9]+$ ]] && wait_listening "$port" "$pid" && return 0
  echo "  $1 did not come up: $(head -c 400 "$tmp/out")"
  return 1
}

stop_server() { kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; pid=; }

# one_load CLIENT_CPUS CMD...: runs the load against $pid's server, prints
# "req/s per-cpu-s" (0 0 on failure). h2load's and wrk's outputs both parse.
one_load() {
  local cpus=$1; shift
  local t0 t1 out rps n
  t0=$(cpu_ticks "$pid")
  out=$(timeout 60 taskset -c "$cpus" "$@" 2>&1)
  t1=$(cpu_ticks "$pid")
  rps=$(awk '/^finished in/ { gsub(",", "", $4); print $4 } /^Requests\/sec:/ { print $2 }' <<<"$out" | head -1)
  n=$(awk '/^requests:/ { print $8 } / requests in / { print $1 }' <<<"$out" | head -1)
  if [[ -z $rps || -z $n || $t1 == "$t0" ]]; then echo "0 0"; echo "$out" | tail -3 >&2; return; fi
  awk -v r="$rps" -v n="$n" -v d=$((t1 - t0)) -v hz="$hz" 'BEGIN { printf "%.0f %.0f\n", r, n / (d / hz) }'
}

med() {  # stdin: numbers -> "median (min-max)"
  sort -n | awk '{ v[NR] = $1 } END { printf "%.0f (%.0f-%.0f)", v[int((NR + 1) / 2)], v[1], v[NR] }'
}
summary() {  # stdin: "rps percpu" per round -> "| label | rps | percpu |", medians (min-max)
  cat >"$tmp/rounds"
  echo "| $1 | $(cut -d' ' -f1 "$tmp/rounds" | med) | $(cut -d' ' -f2 "$tmp/rounds" | med) |"
}

# load_table N "LOAD" "WARM-UP" SERVERS...: the client on the N highest
# CPUs; LOAD and WARM-UP are commands to which the server's URL is added.
load_table() {
  local cpus; cpus=$(top_cpus "$1")
  local load=$2 warm=$3 s
  shift 3
  echo; echo "$load (client on CPUs $cpus)"; echo
  echo "| server | req/s | per server CPU-s |"; echo "|---|---:|---:|"
  for s in "$@"; do
    start_server "$s" || continue
    # shellcheck disable=SC2086
    timeout 30 taskset -c "$cpus" $warm "http://127.0.0.1:$port/" >/dev/null 2>&1
    for _ in $(seq "$rounds"); do
      # shellcheck disable=SC2086
      one_load "$cpus" $load "http://127.0.0.1:$port/"
    done | summary "$s"
    stop_server
  done
}

for part in $parts; do
  case $part in
    runtime)
      echo; echo "## runtime: spindle_bench_scale --workers=1,2,4,8,16 --runs=3"
      timeout 180 spindle_bench_scale --workers=1,2,4,8,16 --runs=3 ;;
    echo)
      echo; echo "## echo64: 4 clients x 250 connections (1,000), 200,000 replies each, $rounds rounds"
      timeout 240 "$root/bench/echo/scale.sh" "$dir" "1 2 4 8" 4 250 200000 "$rounds" ;;
    h2)
      echo; echo "## HTTP/2 hello (h2c prior knowledge)"
      # shellcheck disable=SC2086
      load_table 1 "h2load -n 400000 -c 10 -m 10 -t1" "h2load -n 40000 -c 10 -m 10 -t1" h2o $spindles
      # shellcheck disable=SC2086
      load_table 4 "h2load -n 1000000 -c 40 -m 10 -t4" "h2load -n 40000 -c 40 -m 10 -t4" h2o $spindles ;;
    h1)
      echo; echo "## HTTP/1.1 hello"
      # shellcheck disable=SC2086
      load_table 1 "wrk -t1 -c100 -d3s" "wrk -t1 -c100 -d1s" libuv $spindles
      # shellcheck disable=SC2086
      load_table 4 "wrk -t4 -c400 -d3s" "wrk -t4 -c400 -d1s" libuv $spindles ;;
  esac
done
