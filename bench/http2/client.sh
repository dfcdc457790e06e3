#!/usr/bin/env bash
# client.sh: the HTTP/2 client figure,
# docs/benchmarks.md "HTTP/2 client (one connection vs the HTTP/1.1 pool)".
# Builds (Release, build/http2-client-bench) spindle_bench_http_client (bench/http/
# client_bench.cpp: FIBERS fibers fetching in a closed loop with one shared
# http::Client), then measures it against h2o (the Debian package, 2.2,
# ONE thread, the same hello file and config as bench/http2/run.sh; h2o
# answers HTTP/1.1 and HTTP/2 with prior knowledge on the same plain port)
# in four rows:
#
#   h1_w1   1 worker, HTTP/1.1 keep-alive pool: one connection per fiber
#           (client_bench's PROTOCOL h1: ClientOptions::http2 = never)
#   h2c_w1  1 worker, HTTP/2 cleartext with prior knowledge: ONE connection
#           shared by every fiber, each request a stream (PROTOCOL h2c:
#           http2 = prior_knowledge; h2o allows 100 concurrent streams)
#   h1_w2, h2c_w2   the same on 2 workers
#
# RUNS rounds (default 5) in interleaved order (rotated by one each
# round); every measurement meets a fresh h2o and runs a WARMUP (1 s) then
# a DURATION (5 s) window. Per row: requests/s (median, min..max),
# requests per client CPU-second (utime+stime of the client process over
# its window, from its /proc/self/stat: the `cpu_s` it prints) with the
# client's CPU as a share of one core, the connections the client opened
# (all rounds' distinct values: 1 for h2c, FIBERS for h1), and h2o's CPU
# per request (µs; utime+stime of h2o and its children, from /proc,
# sampled by this script at the client's window edges: WARMUP and
# WARMUP + DURATION after the client starts) with h2o's CPU as a share of
# one core: one h2o thread near 100% is the server bound, the client near
# 100% per worker the client's. Then, per worker count, the median and
# range of the per-round ratio h2c/h1 (paired within a round, so drift
# between rounds cancels) for requests/s and requests per client CPU-s.
#
#   bench/http2/client.sh              RUNS=5 DURATION=5 WARMUP=1 FIBERS=100
#   RUNS=1 DURATION=2 bench/http2/client.sh    a quick check (~15 s)
#   BUILD=DIR NO_BUILD=1 bench/http2/client.sh   a binary built elsewhere,
#       in DIR/bench/http/spindle_bench_http_client
#
# (DURATION, not SECONDS: bash keeps its own SECONDS.) Every response must
# be 200 "Hello, World!" (client_bench checks; a wrong one or any error
# ends it with status 1): a client that fails, or outlives its window by
# 30 s (run under `timeout`), stops the script with its stderr and exit
# status 1. An h2c row that opened more than one connection is marked
# (and the exit status is 1): the client should share one. Before the
# first round h2o is probed with curl, plain and --http2-prior-knowledge.
#
# On 2 cores the client shares the machine with h2o: compare only rows of
# the same run, and read the CPU columns beside requests/s. The load
# average before and after is printed with the table. A default run takes
# ~2.5 min plus the build.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
runs=${RUNS:-5}
duration=${DURATION:-5}
warmup=${WARMUP:-1}
fibers=${FIBERS:-100}
build=${BUILD:-build/http2-client-bench}

for tool in h2o curl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "client.sh: $tool missing (scripts/install-deps.sh --bench installs it)" >&2
    exit 1
  fi
done

if [[ ${NO_BUILD:-0} == 0 ]]; then
  log=$(mktemp)
  if ! { cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSPINDLE_BUILD_TESTS=OFF \
           -DSPINDLE_BUILD_EXAMPLES=OFF -DSPINDLE_BUILD_BENCHMARKS=ON &&
         cmake --build "$build" --target spindle_bench_http_client; } >"$log" 2>&1; then
    echo "client.sh: building spindle_bench_http_client in $build failed; the end of the log:" >&2
    grep -E 'error|FAILED' "$log" | head -10 >&2
    tail -5 "$log" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
fi
client_bin=$build/bench/http/spindle_bench_http_client
if [[ ! -x $client_bin ]]; then
  echo "client.sh: $client_bin missing (build it, or drop NO_BUILD)" >&2
  exit 1
fi

tmp=$(mktemp -d)
pid=
cpid=
cleanup() {
  if [[ -n $cpid ]] && kill -0 "$cpid" 2>/dev/null; then kill -TERM "$cpid" 2>/dev/null || true; fi
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

me=client.sh
# shellcheck source=bench/http2/h2o.sh
source "$root/bench/http2/h2o.sh"

now() { date +%s.%N; }
# sleep_until T: sleeps until the wall clock (date +%s.%N) reads T.
sleep_until() {
  local d
  d=$(awk -v t="$1" -v n="$(now)" 'BEGIN { d = t - n; printf "%.3f", (d > 0 ? d : 0) }')
  sleep "$d"
}

stop_h2o() {
  kill -TERM "$pid" 2>/dev/null || true
  local rc=0
  wait "$pid" || rc=$?
  pid=
  return $rc
}

# probe: h2o answers the 13-byte body over HTTP/1.1 and over h2c prior
# knowledge on its plain port.
probe() {
  local flag want out
  for flag in --http1.1 --http2-prior-knowledge; do
    want=$([[ $flag == --http1.1 ]] && echo 1.1 || echo 2)
    out=$(curl "$flag" -s -m 5 -o - -w '\n%{http_version} %{http_code}' "http://127.0.0.1:$port/" 2>&1) || true
    if [[ ${out##*$'\n'} != "$want 200" || ${out%$'\n'*} != "Hello, World!" ]]; then
      echo "client.sh: h2o on port $port does not answer curl $flag as expected:" >&2
      curl "$flag" -sv -m 5 "http://127.0.0.1:$port/" 2>&1 | head -20 >&2 || true
      return 1
    fi
  done
}

rows=()
for w in 1 2; do rows+=("h1_w$w" "h2c_w$w"); done
hz=$(getconf CLK_TCK)
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A rps per_cpu ccpu conns srv_us srv_busy round_q round_c
status=0
for r in $(seq "$runs"); do
  for k in "${!rows[@]}"; do
    row=${rows[$(((k + r) % ${#rows[@]}))]}
    proto=${row%_w*}
    w=${row#*_w}
    start_h2o || exit 1
    if [[ $r == 1 && $k == 0 ]]; then probe || { stop_h2o || true; exit 1; }; fi
    url="http://127.0.0.1:$port/"
    t_start=$(now)
    timeout $((${warmup%.*} + ${duration%.*} + 30)) "$client_bin" "$url" "$fibers" "$w" "$duration" "$warmup" \
      "$proto" >"$tmp/cout" 2>"$tmp/cerr" &
    cpid=$!
    sleep_until "$(awk -v a="$t_start" -v b="$warmup" 'BEGIN { printf "%.6f", a + b }')"
    s0=$(cpu_ticks "$pid")
    sleep_until "$(awk -v a="$t_start" -v b="$warmup" -v c="$duration" 'BEGIN { printf "%.6f", a + b + c }')"
    s1=$(cpu_ticks "$pid")
    crc=0
    wait "$cpid" || crc=$?
    cpid=
    if (( crc != 0 )); then
      echo "run $r $row: the client FAILED (exit status $crc$( ((crc == 124)) && echo ", killed by timeout")):" >&2
      echo "    $client_bin $url $fibers $w $duration $warmup $proto" >&2
      sed 's/^/    /' "$tmp/cout" "$tmp/cerr" | tail -20 >&2
      stop_h2o || true
      exit 1
    fi
    if ! stop_h2o; then
      echo "run $r $row: h2o exited with an error:" >&2
      tail -5 "$tmp/h2o/error.log" >&2 2>/dev/null || true
      exit 1
    fi
    out=$(cat "$tmp/cout")
    if [[ ! $out =~ ^requests=([0-9]+)\ seconds=([0-9.]+)\ cpu_s=([0-9.]+)\ connections=([0-9]+) ]]; then
      echo "run $r $row: cannot read the client's line: $out" >&2
      exit 1
    fi
    n=${BASH_REMATCH[1]} s=${BASH_REMATCH[2]} cs=${BASH_REMATCH[3]} nc=${BASH_REMATCH[4]}
    v=$(awk -v n="$n" -v s="$s" 'BEGIN { printf "%.0f", n / s }')
    pc=$(awk -v n="$n" -v c="$cs" 'BEGIN { if (c > 0) printf "%.0f", n / c; else print 0 }')
    cc=$(awk -v c="$cs" -v s="$s" 'BEGIN { printf "%.0f", 100 * c / s }')
    us=$(awk -v t=$((s1 - s0)) -v hz="$hz" -v n="$n" 'BEGIN { if (n > 0) printf "%.3f", 1e6 * t / hz / n; else print 0 }')
    b=$(awk -v t=$((s1 - s0)) -v hz="$hz" -v d="$duration" 'BEGIN { printf "%.0f", 100 * t / hz / d }')
    rps[$row]+="$v "
    per_cpu[$row]+="$pc "
    ccpu[$row]+="$cc "
    conns[$row]+="$nc "
    srv_us[$row]+="$us "
    srv_busy[$row]+="$b "
    round_q[$row.$r]=$v
    round_c[$row.$r]=$pc
    echo "run $r $row: $v req/s, $pc req per client CPU-s (client ${cc}% of a core), $nc connection(s)," \
      "h2o $us us/req ($((s1 - s0)) ticks, ${b}% of a core)" >&2
    if [[ $proto == h2c && $nc != 1 ]]; then
      echo "run $r $row: the h2c client opened $nc connections, not 1" >&2
      status=1
    fi
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

median() { tr ' ' '\n' | awk NF | sort -g | awk '{a[NR]=$1} END {if (NR) print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
minmax() { tr ' ' '\n' | awk NF | sort -g | awk -v f="${1:-%.0f}" 'NR==1{lo=$1} {hi=$1} END {if (NR) printf f ".." f, lo, hi}'; }
distinct() { tr ' ' '\n' | awk NF | sort -gu | paste -sd, -; }

echo
echo "$(h2o --version | head -1), 1 thread; $fibers fibers; $runs round(s) of ${warmup} s warm-up + ${duration} s;" \
  "$(nproc) CPUs; load average before: $load_before, after: $load_after"
printf '%-7s %11s %16s %15s %16s %7s %6s %10s %12s %6s\n' row "req/s (med)" "min..max" \
  "req/cl.CPU-s" "min..max" "client" conns "h2o us/req" "min..max" "h2o"
for row in "${rows[@]}"; do
  mark=
  [[ $row == h2c_* && $(distinct <<<"${conns[$row]}") != 1 ]] && mark="  (h2c: more than one connection)"
  printf '%-7s %11.0f %16s %15.0f %16s %6.0f%% %6s %10.2f %12s %5.0f%%%s\n' "$row" \
    "$(median <<<"${rps[$row]}")" "$(minmax <<<"${rps[$row]}")" \
    "$(median <<<"${per_cpu[$row]}")" "$(minmax <<<"${per_cpu[$row]}")" \
    "$(median <<<"${ccpu[$row]}")" "$(distinct <<<"${conns[$row]}")" \
    "$(median <<<"${srv_us[$row]}")" "$(minmax %.2f <<<"${srv_us[$row]}")" \
    "$(median <<<"${srv_busy[$row]}")" "$mark"
done
echo "(client, h2o: CPU over the window as a share of one core, medians; conns: distinct values over the rounds)"

ratios() {  # ratios WORKERS round_q|round_c: per-round h2c/h1, space-separated
  local -n vals=$2
  local r
  for r in $(seq "$runs"); do
    awk -v a="${vals[h2c_w$1.$r]}" -v b="${vals[h1_w$1.$r]}" 'BEGIN { if (b > 0) printf "%.6f ", a / b }'
  done
}
printf '\n%-30s %22s %22s\n' "h2c / h1, paired per round" "req/s" "req/client CPU-s"
for w in 1 2; do
  q=$(ratios "$w" round_q)
  c=$(ratios "$w" round_c)
  printf '%-30s %9.2fx (%s) %9.2fx (%s)\n' "$w worker(s)" "$(median <<<"$q")" "$(minmax %.2f <<<"$q")" \
    "$(median <<<"$c")" "$(minmax %.2f <<<"$c")"
done
exit $status
