#!/usr/bin/env bash
# run.sh: the HTTP/2 hello benchmark. Builds (Release, build/http2-bench)
# spindle's examples/http_server_hello.cpp (http::Server, minimal
# responses; it answers HTTP/2 with prior knowledge on its plain port), then
# measures it at each worker count in WORKERS (default "1 2") and h2o (the
# Debian package, 2.2, ONE thread: `num-threads: 1`, the ratios' base; and
# h2o on two threads, row h2o_t2, the like-for-like peer of 2 workers)
# beside it, with
#
#   h2load -n N -c 10 -m 10 -t1 http://127.0.0.1:PORT/
#
# (cleartext h2c, prior knowledge; N = 200000 by default; 10 connections,
# 10 concurrent streams each, one h2load thread), RUNS rounds (default 3)
# in interleaved order, each server started fresh per round. Each
# measurement follows a warm-up of N/10 requests (at least 1000) on the
# same h2load flags. Per server: requests/s (h2load's "finished in X, Y
# req/s"; median, min..max) and requests per second of server CPU (N over
# utime+stime of the server's processes across the measured h2load run,
# from /proc, as bench/http/run.sh does), each with the ratio of its
# median to h2o's; then, per spindle row, the median and range of its
# per-round ratio to h2o (paired within a round, so drift between rounds
# cancels: the steadier figure).
#
#   bench/http2/run.sh                     RUNS=3 N=200000 WORKERS="1 2"
#   N=20000 RUNS=1 bench/http2/run.sh      a quick check (~10 s)
#   BUILD=DIR NO_BUILD=1 bench/http2/run.sh   a binary built elsewhere, in
#       DIR/examples/http_server_hello (a machine without the toolchain)
#   TIMEOUT=60   seconds one h2load run may take before it counts as failed
#
# Every request must succeed: h2load's "requests: N total, N started, N
# done, N succeeded, ..." line must read N succeeded; otherwise the round
# prints h2load's failure and the server's row is marked FAILED (its
# figures then cover only the rounds that succeeded; none: "-"). Before
# its first round each server is probed with
# `curl --http2-prior-knowledge`; a server that does not answer HTTP/2
# there (spindle before io/src/http/h2_server.cpp landed) is reported as
# such and skipped, never waited on. h2load runs under `timeout`, so a
# server that accepts the preface and then stalls cannot hang the script.
# Exit status: 0 when every row measured all its rounds, 1 otherwise.
#
# The responses (what curl --http2-prior-knowledge -sv shows): both bodies
# are the same 13 bytes, "Hello, World!". h2o serves a file holding them
# (file.dir; h2o's own open-file cache keeps the file open), its headers
# trimmed to what spindle sends where h2o 2.2 allows it: content-type
# text/plain (the .txt mapping), content-length 13, no server (send-server-
# name: OFF), no etag (file.etag: OFF), no last-modified or accept-ranges
# (header.unset). h2o still sends `date`, which spindle's minimal responses
# omit: one more field to encode per response, though on the wire h2o's
# whole header block comes to ~8 bytes per response after HPACK (h2load's
# "traffic" line, 20,000 requests; ~12 before the trimming), spindle's
# (content-type, content-length) ~7.
# h2o's access log is off; it runs in the foreground as a child of this
# script (`h2o -c CONF`; its idle annotate-backtrace-symbols helper is a
# child of it and counted with it, at ~0 CPU).
#
# On 2 cores h2load shares the machine with the server (one h2load thread
# takes about one core at these rates): compare only rows of the same
# run, and read requests per server CPU-second beside requests/s. h2load's
# req/s on this VM is bimodal (h2o: ~290k in some runs, ~550k in others,
# presumably from how the two processes land on the two vCPUs); requests per
# server CPU-second is the steadier column. At those rates a 200,000-
# request run lasts 0.4-0.7 s and h2o spends ~35 clock ticks (10 ms each)
# on it: ~3% of rounding in the CPU column; raise N (say 1000000) for
# finer figures. A full default run takes ~15 s plus the build.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
runs=${RUNS:-3}
n=${N:-200000}
workers_list=${WORKERS:-"1 2"}
build=${BUILD:-build/http2-bench}
limit=${TIMEOUT:-60}
warm=$((n / 10 > 1000 ? n / 10 : 1000))

for tool in h2load h2o curl; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "run.sh: $tool missing (scripts/install-deps.sh --bench installs it)" >&2
    exit 1
  fi
done

if [[ ${NO_BUILD:-0} == 0 ]]; then
  log=$(mktemp)
  if ! { cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSPINDLE_BUILD_TESTS=OFF \
           -DSPINDLE_BUILD_EXAMPLES=ON -DSPINDLE_BUILD_BENCHMARKS=OFF &&
         cmake --build "$build" --target http_server_hello; } >"$log" 2>&1; then
    echo "run.sh: building http_server_hello in $build failed; the end of the log:" >&2
    grep -E 'error|FAILED' "$log" | head -10 >&2
    tail -5 "$log" >&2
    rm -f "$log"
    exit 1
  fi
  rm -f "$log"
fi
spindle_bin=$build/examples/http_server_hello
if [[ ! -x $spindle_bin ]]; then
  echo "run.sh: $spindle_bin missing (build it, or drop NO_BUILD)" >&2
  exit 1
fi

tmp=$(mktemp -d)
pid=
cleanup() {
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

me=run.sh
# shellcheck source=bench/http2/h2o.sh
source "$root/bench/http2/h2o.sh"

# start NAME: starts a server, sets $pid and $port; returns 1 if it did not
# come up.
start() {
  : >"$tmp/out"
  case $1 in
    h2o)
      start_h2o 1 ;;
    h2o_t2)
      start_h2o 2 ;;
    spindle_w*)
      "$spindle_bin" 0 "${1#spindle_w}" >"$tmp/out" &
      pid=$!
      for _ in $(seq 100); do
        [[ -s "$tmp/out" ]] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
      done
      port=$(head -1 "$tmp/out")
      if [[ ! $port =~ ^[0-9]+$ ]]; then
        echo "run.sh: $spindle_bin did not print its port" >&2
        return 1
      fi ;;
  esac
}

stop() {
  kill -TERM "$pid" 2>/dev/null || true
  local rc=0
  wait "$pid" || rc=$?
  pid=
  return $rc
}

# h2c_probe: does the server at $port answer a prior-knowledge HTTP/2 GET
# with 200 and the 13-byte body? Prints curl's account when not.
h2c_probe() {
  local body code
  body=$(curl --http2-prior-knowledge -s -m 5 -o - -w '\n%{http_version} %{http_code}' \
    "http://127.0.0.1:$port/" 2>/dev/null) || true
  code=${body##*$'\n'}
  if [[ $code == "2 200" && ${body%$'\n'*} == "Hello, World!" ]]; then return 0; fi
  echo "    curl --http2-prior-knowledge -sv http://127.0.0.1:$port/ says:" >&2
  curl --http2-prior-knowledge -sv -m 5 "http://127.0.0.1:$port/" 2>&1 |
    grep -vE '^(\* h2h3|> |\* +Trying|\* Using Stream)' | sed 's/^/      /' | head -12 >&2 || true
  return 1
}

# load COUNT: one h2load run at the benchmark's flags; sets $out, returns
# 1 unless all COUNT requests succeeded.
load() {
  local rc=0
  out=$(timeout "$limit" h2load -n "$1" -c 10 -m 10 -t1 "http://127.0.0.1:$port/" 2>&1) || rc=$?
  if (( rc == 124 )); then out+=$'\n'"(h2load killed after ${limit} s)"; return 1; fi
  awk -v n="$1" '/^requests:/ { ok = ($2 == n && $8 == n) } END { exit !ok }' <<<"$out"
}

servers=(h2o h2o_t2)
for w in $workers_list; do servers+=("spindle_w$w"); done

declare -A rps cpu round_q round_c failed skip
for r in $(seq "$runs"); do
  for s in "${servers[@]}"; do
    [[ -n ${skip[$s]:-} ]] && continue
    if ! start "$s"; then
      failed[$s]="did not start"; skip[$s]=1; stop || true; continue
    fi
    if (( r == 1 )) && ! h2c_probe; then
      limit=10 load 100 || true
      echo "    h2load -n 100 -c 10 -m 10 -t1 says:" >&2
      grep -E '^(finished|requests|status codes)|killed|rror|fail|not' <<<"$out" | sed 's/^/      /' | head -8 >&2 || true
      echo "run $r $s: FAILED: no HTTP/2 (prior knowledge) on its plain port; skipped in all rounds" >&2
      if [[ $s == spindle_w* ]]; then
        echo "    ($spindle_bin does not serve h2c: spindle's HTTP/2 server," \
          "io/src/http/h2_server.cpp, is not (yet) in that build or not working;" \
          "the working tree's file has $(wc -l <io/src/http/h2_server.cpp 2>/dev/null || echo no) lines)" >&2
      fi
      failed[$s]="no h2c"; skip[$s]=1
      stop || true
      continue
    fi
    if ! load "$warm"; then
      echo "run $r $s: warm-up FAILED:" >&2; sed 's/^/    /' <<<"$out" | tail -8 >&2
      failed[$s]="failed"; stop || true; continue
    fi
    t0=$(cpu_ticks "$pid")
    ok=1
    load "$n" || ok=0
    t1=$(cpu_ticks "$pid")
    if ! stop; then
      echo "run $r $s: server exited with an error" >&2
      ok=0
    fi
    if (( ok == 0 )); then
      echo "run $r $s: FAILED (not all $n requests succeeded):" >&2
      grep -E '^(finished|requests|status codes)|killed|error|fail' <<<"$out" | sed 's/^/    /' | head -8 >&2 || true
      failed[$s]="failed"
      continue
    fi
    v=$(awk '/^finished in/ { for (i = 2; i <= NF; i++) if ($i ~ /^req\/s/) print $(i - 1) }' <<<"$out")
    c=$(awk -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v n="$n" \
      'BEGIN { cs = t / hz; if (cs > 0) printf "%.0f", n / cs; else print 0 }')
    rps[$s]+="$v "
    cpu[$s]+="$c "
    round_q[$s.$r]=$v
    round_c[$s.$r]=$c
    echo "run $r $s: $v req/s, $c req/CPU-s ($((t1 - t0)) ticks)" >&2
  done
done

median() { tr ' ' '\n' | awk NF | sort -g | awk '{a[NR]=$1} END {if (NR) print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
minmax() { tr ' ' '\n' | awk NF | sort -g | awk -v f="${1:-%.0f}" 'NR==1{lo=$1} {hi=$1} END {if (NR) printf f ".." f, lo, hi}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "" && b > 0) printf "%.2fx", a / b; else print "-" }'; }
fmt() { [[ -n $1 ]] && printf '%.0f' "$1" || printf -- -; }

echo
echo "h2load -n $n -c 10 -m 10 -t1 (h2c prior knowledge), $runs round(s), $(nproc) CPUs"
base_q=$(median <<<"${rps[h2o]:-}")
base_c=$(median <<<"${cpu[h2o]:-}")
printf '%-14s %12s %18s %9s %16s %18s %9s\n' server "req/s (med)" "min..max" "vs h2o" \
  "req/CPU-s (med)" "min..max" "vs h2o"
status=0
for s in "${servers[@]}"; do
  mq=$(median <<<"${rps[$s]:-}")
  mc=$(median <<<"${cpu[$s]:-}")
  k=$(tr ' ' '\n' <<<"${rps[$s]:-}" | awk NF | wc -l)
  mark=
  if [[ -n ${failed[$s]:-} ]]; then
    mark="FAILED (${failed[$s]}; $k of $runs rounds measured)"; status=1
  fi
  printf '%-14s %12s %18s %9s %16s %18s %9s  %s\n' "$s" "$(fmt "$mq")" "$(minmax <<<"${rps[$s]:-}")" \
    "$(ratio "$mq" "$base_q")" "$(fmt "$mc")" "$(minmax <<<"${cpu[$s]:-}")" "$(ratio "$mc" "$base_c")" "$mark"
done

# Paired ratios: each round measures every server back to back, so the
# ratio within a round cancels the machine's drift between rounds; only
# rounds where both the spindle row and h2o succeeded pair.
ratios() {  # ratios ROW round_q|round_c [BASE]: per-round ROW/BASE (default h2o), space-separated
  local -n vals=$2
  local base=${3:-h2o} r
  for r in $(seq "$runs"); do
    if [[ -n ${vals[$1.$r]:-} && -n ${vals[$base.$r]:-} ]]; then
      awk -v a="${vals[$1.$r]}" -v b="${vals[$base.$r]}" 'BEGIN { if (b > 0) printf "%.4f ", a / b }'
    fi
  done
}
# paired ROW BASE: ROW/BASE per round, requests/s and per CPU-second.
paired() {
  local q c
  q=$(ratios "$1" round_q "$2")
  c=$(ratios "$1" round_c "$2")
  if [[ -z $q ]]; then
    printf '%-34s %22s %22s\n' "$1 / $2" "-" "-"
    return
  fi
  printf '%-34s %9.2fx (%s) %9.2fx (%s)  %s\n' "$1 / $2" "$(median <<<"$q")" "$(minmax %.2f <<<"$q")" \
    "$(median <<<"$c")" "$(minmax %.2f <<<"$c")" "$(wc -w <<<"$q") rounds"
}
printf '\n%-34s %22s %22s\n' "paired per round (median, min..max)" "req/s" "req/CPU-s"
for w in $workers_list; do paired "spindle_w$w" h2o; done
# Two workers against h2o's two threads, the like-for-like pair.
if [[ " $workers_list " == *" 2 "* ]]; then paired spindle_w2 h2o_t2; fi
exit $status
