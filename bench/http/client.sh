#!/usr/bin/env bash
# client.sh: the http client figure of issue 14 (docs/benchmarks.md "http
# client"). Builds (Release, build/http-bench) the raw libuv C hello server
# bench/http/libuv_hello.c and spindle_bench_http_client (client_bench.cpp),
# then measures, RUNS rounds (default 5) in interleaved order (rotated by
# one each round), 100 concurrent fetchers over keep-alive:
#   - aiohttp: 100 asyncio tasks, one ClientSession (aiohttp_client_peer.py,
#     Debian's python3-aiohttp on /usr/bin/python3, default event loop);
#   - spindle 1w / 2w: 100 fibers, one http::Client, 1 or 2 workers.
# Each client meets a fresh libuv C server (the same binary for all: it
# answers ~140k req/s under wrk here, several times what either client
# asks of it, so the client is what is measured) and runs a WARMUP (1 s)
# then a DURATION (5 s) window. Prints per client: median requests/s,
# min..max, the ratio of medians to aiohttp's, median requests per client
# CPU second (utime+stime of the client process over the window, from
# /proc/self/stat) with min..max and ratio, and how busy the server was
# (its CPU time over the client's whole run / the run's wall time).
#
#   bench/http/client.sh              RUNS=5 DURATION=5 WARMUP=1 FIBERS=100
#
# On 2 cores the client and the server share the machine: compare only
# rows measured in the same run.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
runs=${RUNS:-5}
duration=${DURATION:-5}
warmup=${WARMUP:-1}
fibers=${FIBERS:-100}
build=build/http-bench
python=/usr/bin/python3  # Debian's: python3-aiohttp installs for it (a pyenv shim may shadow python3)

if ! "$python" -c 'import aiohttp' 2>/dev/null; then
  echo "client.sh: $python cannot import aiohttp (scripts/install-deps.sh --bench installs python3-aiohttp)" >&2
  exit 1
fi

cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSPINDLE_BUILD_TESTS=OFF \
  -DSPINDLE_BUILD_EXAMPLES=ON -DSPINDLE_BUILD_BENCHMARKS=ON >/dev/null
cmake --build "$build" --target libuv_hello spindle_bench_http_client >/dev/null

tmp=$(mktemp -d)
srv=
trap '[[ -n "$srv" ]] && kill "$srv" 2>/dev/null; rm -rf "$tmp"' EXIT
hz=$(getconf CLK_TCK)

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

clients=(aiohttp spindle_1w spindle_2w)
declare -A rps cpu busy
for r in $(seq "$runs"); do
  for k in "${!clients[@]}"; do
    c=${clients[$(((k + r) % ${#clients[@]}))]}
    : >"$tmp/port"
    "$build/bench/http/libuv_hello" 0 >"$tmp/port" &
    srv=$!
    for _ in $(seq 100); do [[ -s "$tmp/port" ]] && break; sleep 0.05; done
    url="http://127.0.0.1:$(head -1 "$tmp/port")/"
    s0=$(cpu_ticks "$srv")
    w0=$(date +%s.%N)
    # The clients' own summary lines (stderr) are shown only if one fails.
    case $c in
      aiohttp) out=$("$python" bench/http/aiohttp_client_peer.py "$url" "$fibers" "$duration" "$warmup" \
        2>"$tmp/err") || { cat "$tmp/err" >&2; exit 1; } ;;
      spindle_*w) out=$("$build/bench/http/spindle_bench_http_client" "$url" "$fibers" "${c//[!0-9]/}" \
        "$duration" "$warmup" 2>"$tmp/err") || { cat "$tmp/err" >&2; exit 1; } ;;
    esac
    w1=$(date +%s.%N)
    s1=$(cpu_ticks "$srv")
    kill -TERM "$srv"
    wait "$srv" || { echo "client.sh: the server exited with $? (during $c)" >&2; srv=; exit 1; }
    srv=
    read -r n s cs conns < <(sed -E 's/requests=([0-9]+) seconds=([0-9.]+) cpu_s=([0-9.]+) connections=([0-9]+)/\1 \2 \3 \4/' <<<"$out")
    v=$(awk -v n="$n" -v s="$s" 'BEGIN { printf "%.0f", n / s }')
    pc=$(awk -v n="$n" -v c="$cs" 'BEGIN { if (c > 0) printf "%.0f", n / c; else print 0 }')
    b=$(awk -v t=$((s1 - s0)) -v hz="$hz" -v a="$w0" -v z="$w1" 'BEGIN { printf "%.0f", 100 * t / hz / (z - a) }')
    rps[$c]+="$v "
    cpu[$c]+="$pc "
    busy[$c]+="$b "
    echo "run $r $c: $v req/s, $pc req per client CPU-s, $conns connections opened, server busy $b%" >&2
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
minmax() { tr ' ' '\n' | grep -v '^$' | sort -g | awk 'NR==1{lo=$1} {hi=$1} END {printf "%.0f..%.0f", lo, hi}'; }

base=$(median <<<"${rps[aiohttp]}")
base_cpu=$(median <<<"${cpu[aiohttp]}")
printf '\n%d rounds, %s fetchers, %ss windows after %ss warm-up, libuv C server\n' "$runs" "$fibers" "$duration" "$warmup"
printf '%-12s %12s %16s %11s %16s %16s %11s %12s\n' client "req/s (med)" "min..max" "vs aiohttp" \
  "req/CPU-s (med)" "min..max" "vs aiohttp" "server busy"
for c in "${clients[@]}"; do
  m=$(median <<<"${rps[$c]}")
  mc=$(median <<<"${cpu[$c]}")
  printf '%-12s %12.0f %16s %10.2fx %16.0f %16s %10.2fx %11.0f%%\n' "$c" "$m" "$(minmax <<<"${rps[$c]}")" \
    "$(awk -v a="$m" -v b="$base" 'BEGIN{print a/b}')" "$mc" "$(minmax <<<"${cpu[$c]}")" \
    "$(awk -v a="$mc" -v b="$base_cpu" 'BEGIN{print a/b}')" "$(median <<<"${busy[$c]}")"
done
