#!/usr/bin/env bash
# slow_flood.sh: issue 41's slow-body flood. Starts http_server_hello
# (WORKERS workers) on a free loopback port, runs spindle_bench_slow_flood
# against it (CONNS slow POSTs announcing 1 MB each, a byte a second, and a
# probe GET every 10 ms), and prints the server's RSS before and at peak
# and the probe's latency percentiles.
#   bench/http/slow_flood.sh [BUILD_DIR] [CONNS] [SECONDS] [WORKERS]
# BUILD_DIR defaults to build/release (scripts/bench.sh builds it).
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build/release}
conns=${2:-1000}
secs=${3:-20}
workers=${4:-2}
server=$(find "$build" -name http_server_hello -type f -perm -u+x | head -n1)
flood=$(find "$build" -name spindle_bench_slow_flood -type f -perm -u+x | head -n1)
[[ -n $server && -n $flood ]] || { echo "slow_flood.sh: build http_server_hello and spindle_bench_slow_flood in $build first" >&2; exit 2; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ulimit -n "$(ulimit -Hn)"
"$server" "$port" "$workers" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break
  sleep 0.05
done
echo "slow_flood: http_server_hello ($workers workers), $conns connections, $secs s"
"$flood" "$port" "$pid" "$conns" "$secs"
