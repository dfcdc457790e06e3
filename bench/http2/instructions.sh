#!/usr/bin/env bash
# instructions.sh: user-space instructions per HTTP/2 request of spindle's
# server, counted by valgrind's callgrind: a figure that does not move
# with the VM's state (the time-based rows of run.sh move 1.5x between
# runs on a busy host), for comparing two builds of the request path.
#
#   bench/http2/instructions.sh                 # build/http2-bench (run.sh's build), 1 worker
#   BUILD=DIR WORKERS=2 N=20000 bench/http2/instructions.sh
#   TOP=30 bench/http2/instructions.sh          # and the 30 costliest functions (self)
#   SERVER=h2o bench/http2/instructions.sh      # the peer: h2o, one thread, as run.sh configures it
#   KEEP=/tmp/cg.out bench/http2/instructions.sh # and keep callgrind's dump (callgrind_annotate it)
#
# It starts DIR/examples/http_server_hello (build it first: run.sh, or
# `cmake --build DIR --target http_server_hello`) under callgrind, sends a
# warm-up of 2,000 requests with h2load (-c 10 -m 10 -t1, h2c prior
# knowledge, as run.sh), zeroes the counters, sends N (default 20,000)
# more, dumps, and prints the instructions (callgrind's Ir) per request:
# the server's code, libnghttp2 and libc together, kernel excluded. With
# SERVER=h2o, h2o (bench/http2/h2o.sh's configuration, one thread; its
# helper processes are traced too, and the busiest one is counted).
# Every request must succeed. valgrind is not one of the project's
# dependencies (Debian package valgrind); the script says so if missing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
build=${BUILD:-build/http2-bench}
n=${N:-20000}
workers=${WORKERS:-1}
top=${TOP:-0}
server=${SERVER:-spindle}
bin=$build/examples/http_server_hello

for tool in valgrind callgrind_control callgrind_annotate h2load; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "instructions.sh: $tool missing (valgrind: apt-get install valgrind; h2load: scripts/install-deps.sh)" >&2
    exit 1
  fi
done
if [[ $server == spindle && ! -x $bin ]]; then
  echo "instructions.sh: $bin missing (bench/http2/run.sh builds it)" >&2
  exit 1
fi

tmp=$(mktemp -d)
pid=
cleanup() {
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

if [[ $server == h2o ]]; then
  command -v h2o >/dev/null || { echo "instructions.sh: h2o missing (scripts/install-deps.sh --bench)" >&2; exit 1; }
  me=instructions.sh
  source "$root/bench/http2/h2o.sh"  # h2o_conf; sets $port
  h2o_conf 1
  bin=h2o
  valgrind --tool=callgrind --trace-children=yes --callgrind-out-file="$tmp/cg.%p" \
    h2o -c "$tmp/h2o.conf" >"$tmp/out" 2>"$tmp/log" &
  pid=$!
  # Up once a request succeeds (under valgrind h2o takes seconds to start).
  for _ in $(seq 300); do
    h2load -n 1 -c 1 "http://127.0.0.1:$port/" 2>&1 | grep -q "1 succeeded" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
elif [[ $server == spindle ]]; then
  valgrind --tool=callgrind --callgrind-out-file="$tmp/cg" "$bin" 0 "$workers" >"$tmp/out" 2>"$tmp/log" &
  pid=$!
  for _ in $(seq 200); do
    [[ -s "$tmp/out" ]] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  port=$(head -1 "$tmp/out")
else
  echo "instructions.sh: SERVER is spindle or h2o, not $server" >&2
  exit 1
fi
if [[ ! $port =~ ^[0-9]+$ ]] || ! kill -0 "$pid" 2>/dev/null; then
  echo "instructions.sh: the server did not come up; valgrind's log:" >&2
  tail -5 "$tmp/log" >&2
  exit 1
fi

load() {
  local out
  out=$(h2load -n "$1" -c 10 -m 10 -t1 "http://127.0.0.1:$port/" 2>&1)
  if ! grep -q "requests: $1 total, $1 started, $1 done, $1 succeeded" <<<"$out"; then
    echo "instructions.sh: h2load failed:" >&2
    grep -E "requests:|error" <<<"$out" >&2
    exit 1
  fi
}
load 2000
# Without a pid: every traced process (h2o's helpers too).
callgrind_control -z >/dev/null 2>&1
load "$n"
callgrind_control -d >/dev/null 2>&1
kill -TERM "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
pid=

# The dumps taken after the zeroing end in .1 (cg.1, or cg.PID.1); the
# busiest is the server's.
dump= total=0
for f in "$tmp"/cg*.1; do
  [[ -e $f ]] || continue
  t=$(callgrind_annotate "$f" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
  if [[ -n $t ]] && ((t > total)); then dump=$f total=$t; fi
done
if [[ -z $dump ]]; then
  echo "instructions.sh: callgrind wrote no dump" >&2
  exit 1
fi
[[ -n ${KEEP:-} ]] && cp "$dump" "$KEEP"
[[ $server == h2o ]] && workers=1
echo "$bin, $workers worker(s): $total instructions for $n requests, $((total / n)) per request (user space)"
if ((top > 0)); then
  # Self cost per function, per request. Lines whose inclusive share is
  # the whole run (the fiber entry points) are callgrind's view of the
  # stack switches and carry no self cost of their own.
  callgrind_annotate --threshold=100 "$dump" 2>/dev/null |
    awk -v t="$total" -v n="$n" '/^ *[0-9,]+ \(/ {
        v = $1; gsub(",", "", v);
        if (v + 0 >= 0.99 * t) next;
        name = $0; sub(/^ *[0-9,]+ \( *[0-9.]+%\) +/, "", name);
        printf "%8.0f  %s\n", v / n, substr(name, 1, 120) }' | head -"$top"
fi
