#!/usr/bin/env bash
# run.sh: BENCHMARKS.md http_hello. Builds (Release, build/http-bench) the
# raw libuv C server bench/http/libuv_hello.c and spindle's examples
# http_hello (raw streams + Beast's parser) and http_server_hello
# (http::Server, minimal responses), then measures each, and nginx (one
# worker) beside them, with `wrk -t1 -c100 -d5s` on 127.0.0.1, RUNS rounds
# (default 3) in interleaved order. Each measurement follows a 1 s warm-up.
# Prints per server: median requests/s, min..max, the ratio of medians to
# libuv's, and median requests per second of server CPU (utime+stime of
# the server's processes over the 5 s, from /proc); then, per spindle
# server, the median and range of its per-round ratio to its peer (libuv C
# for http_hello, nginx for http::Server).
#
#   bench/http/run.sh                 RUNS=5 WORKERS="1 2" DURATION=5s
#   BUILD=DIR NO_BUILD=1 bench/http/run.sh   binaries built elsewhere, in
#       DIR/examples/{http_hello,http_server_hello} and
#       DIR/bench/http/libuv_hello (a machine without the toolchain)
#
# Then the idle-connection memory row (bench/http/idle_conns.sh, RUNS
# rounds, IDLE_CONNS connections, default 10,000; IDLE_CONNS=0 skips it):
# server RSS growth per idle keep-alive connection, spindle's
# http::Server at WORKERS workers against nginx and libuv C.
#
# On 2 cores wrk shares the machine with the server: compare only rows
# measured in the same run.
# The client side (http::Client against aiohttp): bench/http/client.sh.
# A short version of both runs in the main table (--filter=http).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
runs=${RUNS:-3}
workers_list=${WORKERS:-"1 2"}
duration=${DURATION:-5s}
build=${BUILD:-build/http-bench}

for tool in wrk nginx; do
  if ! command -v "$tool" >/dev/null 2>&1 && [[ ! -x /usr/sbin/$tool ]]; then
    echo "run.sh: $tool missing (scripts/install-deps.sh --bench installs it)" >&2
    exit 1
  fi
done
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

if [[ ${NO_BUILD:-0} == 0 ]]; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSPINDLE_BUILD_TESTS=OFF \
    -DSPINDLE_BUILD_EXAMPLES=ON -DSPINDLE_BUILD_BENCHMARKS=ON >/dev/null
  cmake --build "$build" --target http_hello http_server_hello libuv_hello spindle_bench_idle_conns >/dev/null
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# free_port, cpu_ticks
source "$root/bench/http/proc.sh"

# start NAME: starts a server, sets $pid and $port.
start() {
  case $1 in
    libuv)
      "$build/bench/http/libuv_hello" 0 >"$tmp/out" &
      pid=$! ;;
    nginx)
      port=$(free_port)
      mkdir -p "$tmp/nginx/logs"
      cat >"$tmp/nginx.conf" <<CONF
worker_processes 1;
error_log $tmp/nginx/logs/error.log;
pid $tmp/nginx/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  server {
    listen 127.0.0.1:$port;
    location / { default_type text/plain; return 200 "Hello, World!"; }
  }
}
CONF
      "$nginx_bin" -p "$tmp/nginx" -c "$tmp/nginx.conf" -g 'daemon off;' &
      pid=$!
      for _ in $(seq 100); do curl -s "http://127.0.0.1:$port/" >/dev/null 2>&1 && break; sleep 0.05; done
      return ;;
    http_hello_w*|http_server_hello_w*)
      local bin=${1%_w*} w=${1##*_w}
      "$build/examples/$bin" 0 "$w" >"$tmp/out" &
      pid=$! ;;
  esac
  for _ in $(seq 100); do [[ -s "$tmp/out" ]] && break; sleep 0.05; done
  port=$(head -1 "$tmp/out")
}

servers=(libuv nginx)
for w in $workers_list; do servers+=("http_hello_w$w" "http_server_hello_w$w"); done

declare -A rps cpu
for r in $(seq "$runs"); do
  for s in "${servers[@]}"; do
    : >"$tmp/out"
    start "$s"
    wrk -t1 -c100 -d1s "http://127.0.0.1:$port/" >/dev/null
    t0=$(cpu_ticks "$pid")
    out=$(wrk -t1 -c100 -d"$duration" "http://127.0.0.1:$port/")
    t1=$(cpu_ticks "$pid")
    kill -TERM "$pid"
    wait "$pid" || { echo "run.sh: $s exited with $?" >&2; exit 1; }
    v=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    secs=${duration%s}
    c=$(awk -v t=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v v="$v" -v d="$secs" \
      'BEGIN { cs = t / hz; if (cs > 0) printf "%.0f", v * d / cs; else print 0 }')
    rps[$s]+="$v "
    cpu[$s]+="$c "
    echo "run $r $s: $v req/s, $c req/CPU-s" >&2
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
minmax() { tr ' ' '\n' | grep -v '^$' | sort -g | awk 'NR==1{lo=$1} {hi=$1} END {printf "%.0f..%.0f", lo, hi}'; }

base=$(median <<<"${rps[libuv]}")
printf '\n%-22s %12s %18s %9s %14s\n' server "req/s (med)" "min..max" "vs libuv" "req/CPU-s"
for s in "${servers[@]}"; do
  m=$(median <<<"${rps[$s]}")
  printf '%-22s %12.0f %18s %8.2fx %14.0f\n' "$s" "$m" "$(minmax <<<"${rps[$s]}")" \
    "$(awk -v a="$m" -v b="$base" 'BEGIN{print a/b}')" "$(median <<<"${cpu[$s]}")"
done

# Paired ratios: each round measures every server back to back, so the
# ratio within a round cancels the machine's drift between rounds (the
# VM's load moves the rows together); the median of the per-round ratios is
# the steadier figure for the issue's bars (minimal server against libuv C,
# http::Server against nginx).
ratios() {  # ratios "A values" "B values": per-round A/B, space-separated
  paste <(tr ' ' '\n' <<<"$1" | grep -v '^$') <(tr ' ' '\n' <<<"$2" | grep -v '^$') |
    awk '$2 > 0 {printf "%.4f ", $1 / $2}'
}
printf '\n%-34s %22s %22s\n' "paired per round (median, min..max)" "req/s" "req/CPU-s"
for w in $workers_list; do
  for pair in "http_hello_w$w libuv" "http_server_hello_w$w nginx"; do
    read -r a b <<<"$pair"
    q=$(ratios "${rps[$a]}" "${rps[$b]}")
    c=$(ratios "${cpu[$a]}" "${cpu[$b]}")
    printf '%-34s %9.2fx (%s) %9.2fx (%s)\n' "$a / $b" "$(median <<<"$q")" \
      "$(tr ' ' '\n' <<<"$q" | grep -v '^$' | sort -g | awk 'NR==1{lo=$1} {hi=$1} END {printf "%.2f..%.2f", lo, hi}')" \
      "$(median <<<"$c")" \
      "$(tr ' ' '\n' <<<"$c" | grep -v '^$' | sort -g | awk 'NR==1{lo=$1} {hi=$1} END {printf "%.2f..%.2f", lo, hi}')"
  done
done

idle_conns=${IDLE_CONNS:-10000}
if (( idle_conns > 0 )); then
  echo
  idle_servers="$(for w in $workers_list; do printf 'spindle_w%s ' "$w"; done)nginx libuv"
  CONNS=$idle_conns RUNS=$runs SERVERS=$idle_servers bench/http/idle_conns.sh "$build" ||
    echo "idle connections: skipped (idle_conns.sh failed)"
fi
