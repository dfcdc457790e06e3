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
# (utime+stime of the server process over the measured run), the median
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

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
top_cpus() {  # the N highest CPUs, as a taskset list
  local n=$1; echo "$((ncpu - n))-$((ncpu - 1))"
}

start_server() {  # $1 = h2o | libuv | spindle_wN; sets pid, port
  : >"$tmp/out"
  case $1 in
    h2o)
      mkdir -p "$tmp/www"; printf 'Hello, World!' >"$tmp/www/index.txt"
      port=$(free_port)
      cat >"$tmp/h2o.conf" <<CONF
user: root
listen:
  host: 127.0.0.1
  port: $port
num-threads: 1
access-log: /dev/null
error-log: $tmp/h2o.err
send-server-name: OFF
file.etag: OFF
file.index: [index.txt]
file.mime.settypes:
  text/plain: .txt
hosts:
  default:
    paths:
      /:
        file.dir: $tmp/www
        header.unset: last-modified
        header.unset: accept-ranges
CONF
      taskset -c 0 h2o -c "$tmp/h2o.conf" >"$tmp/out" 2>&1 &
      pid=$! ;;
    libuv)
      taskset -c 0 libuv_hello 0 >"$tmp/out" & pid=$!
      for _ in $(seq 100); do [[ -s $tmp/out ]] && break; sleep 0.05; done
      port=$(head -1 "$tmp/out") ;;
    spindle_w*)
      local w=${1#spindle_w}
      taskset -c "0-$((w - 1))" http_server_hello 0 "$w" >"$tmp/out" & pid=$!
      for _ in $(seq 100); do [[ -s $tmp/out ]] && break; sleep 0.05; done
      port=$(head -1 "$tmp/out") ;;
  esac
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "  $1 did not come up: $(head -c 400 "$tmp/out" "$tmp/h2o.err" 2>/dev/null)"
  return 1
}

stop_server() { kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; pid=; }

# one_load LABEL CLIENT_CPUS CMD...: runs the load against $pid's server,
# prints "req/s per-cpu-s" (0 0 on failure).
one_load() {
  local cpus=$1; shift
  local t0 t1 out rps
  t0=$(ticks "$pid")
  out=$(timeout 60 taskset -c "$cpus" "$@" 2>&1)
  t1=$(ticks "$pid")
  rps=$(awk '/^finished in/ { gsub(",", "", $4); print $4 } /^Requests\/sec:/ { print $2 }' <<<"$out" | head -1)
  local n; n=$(awk '/^requests:/ { print $8 } / requests in / { print $1 }' <<<"$out" | head -1)
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

load_table() {  # $1 = title, $2 = client cpus, $3.. = servers; $LOAD = command with PORT
  echo; echo "$1 (client on CPUs $2)"; echo
  echo "| server | req/s | per server CPU-s |"; echo "|---|---:|---:|"
  local cpus=$2; shift 2
  local s
  for s in "$@"; do
    start_server "$s" || continue
    eval "timeout 30 taskset -c $cpus ${LOAD_WARM//PORT/$port}" >/dev/null 2>&1
    for _ in $(seq "$rounds"); do
      # shellcheck disable=SC2086
      one_load "$cpus" ${LOAD//PORT/$port}
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
      LOAD="h2load -n 400000 -c 10 -m 10 -t1 http://127.0.0.1:PORT/"
      LOAD_WARM="h2load -n 40000 -c 10 -m 10 -t1 http://127.0.0.1:PORT/"
      load_table "h2load -n 400000 -c 10 -m 10 -t1" "$(top_cpus 1)" h2o spindle_w1 spindle_w2 spindle_w4
      LOAD="h2load -n 1000000 -c 40 -m 10 -t4 http://127.0.0.1:PORT/"
      LOAD_WARM="h2load -n 40000 -c 40 -m 10 -t4 http://127.0.0.1:PORT/"
      load_table "h2load -n 1000000 -c 40 -m 10 -t4" "$(top_cpus 4)" h2o spindle_w1 spindle_w2 spindle_w4 ;;
    h1)
      echo; echo "## HTTP/1.1 hello"
      LOAD="wrk -t1 -c100 -d3s http://127.0.0.1:PORT/"
      LOAD_WARM="wrk -t1 -c100 -d1s http://127.0.0.1:PORT/"
      load_table "wrk -t1 -c100 -d3s" "$(top_cpus 1)" libuv spindle_w1 spindle_w2 spindle_w4
      LOAD="wrk -t4 -c400 -d3s http://127.0.0.1:PORT/"
      LOAD_WARM="wrk -t4 -c400 -d1s http://127.0.0.1:PORT/"
      load_table "wrk -t4 -c400 -d3s" "$(top_cpus 4)" libuv spindle_w1 spindle_w2 spindle_w4 ;;
  esac
done
