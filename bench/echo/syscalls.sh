#!/usr/bin/env bash
# syscalls.sh: echo64 syscalls per request for each server in turn (libuv C,
# spindle 1 worker, spindle 2 workers), the same client (spindle_echo64
# client, not traced) sending a fixed number of requests.
#
#   bench/echo/syscalls.sh [BUILD_DIR] [CONNS] [REQUESTS]
#   (defaults: build/release 100 50000; build it with
#    cmake --build build/release --target spindle_echo64)
#
# Two counts per server:
#  - `strace -c -f` over the server's whole life: its start-up, CONNS accepts
#    and registrations, REQUESTS echoes plus the <= CONNS still in flight at
#    the end. strace slows the server several-fold, so more requests are
#    waiting at each epoll_wait than untraced: read its epoll_wait and
#    timer rows as a lower bound.
#  - if perf is there, `perf stat` on the syscalls tracepoints of the
#    untraced server during the client run only (the server runs at speed).
# Per request = calls / REQUESTS.
set -euo pipefail
build=${1:-build/release}
conns=${2:-100}
requests=${3:-50000}
bin="$build/bench/echo/spindle_echo64"
command -v strace >/dev/null || { echo "syscalls.sh: strace is not installed" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

for server in "libuv" "spindle 1" "spindle 2"; do
  name=${server// /_}
  # shellcheck disable=SC2086
  strace -c -f -o "$tmp/$name.strace" "$bin" server $server > "$tmp/$name.port" &
  tracer=$!
  for _ in $(seq 100); do [[ -s "$tmp/$name.port" ]] && break; sleep 0.1; done
  port=$(head -n1 "$tmp/$name.port")
  client_line=$("$bin" client "$port" "$conns" "$requests")
  # The server is strace's only child; SIGTERM makes it exit 0.
  kill -TERM "$(pgrep -P "$tracer")"
  wait "$tracer" || true
  echo "== $server: $client_line (client untraced, under a traced server)"
  awk -v n="$requests" '
    $1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" {
      sc = $NF; calls = $4; err = (NF == 6) ? $5 : 0
      printf "  %-16s %9d calls %8d errors %8.3f per request\n", sc, calls, err, calls / n
      tot += calls
    }
    END { printf "  %-16s %9d calls %17s %8.3f per request\n", "total", tot, "", tot / n }
  ' "$tmp/$name.strace"
done

if ! command -v perf >/dev/null || ! perf stat -e raw_syscalls:sys_enter true >/dev/null 2>&1; then
  echo "(perf with syscall tracepoints not available: no untraced counts)"
  exit 0
fi
events=raw_syscalls:sys_enter
for sc in read write sendto recvfrom epoll_wait epoll_ctl timerfd_settime futex; do
  events+=",syscalls:sys_enter_$sc"
done
for server in "libuv" "spindle 1" "spindle 2"; do
  name=${server// /_}
  # shellcheck disable=SC2086
  "$bin" server $server > "$tmp/$name.port2" &
  srv=$!
  for _ in $(seq 100); do [[ -s "$tmp/$name.port2" ]] && break; sleep 0.1; done
  port=$(head -n1 "$tmp/$name.port2")
  perf stat -x, -o "$tmp/$name.perf" -e "$events" -p "$srv" &
  perfpid=$!
  sleep 0.5  # perf attached
  client_line=$("$bin" client "$port" "$conns" "$requests")
  kill -INT "$perfpid"
  wait "$perfpid" || true
  kill -TERM "$srv"
  wait "$srv" || true
  echo "== $server, untraced (perf stat over the client run): $client_line"
  awk -F, -v n="$requests" '
    $3 ~ /sys_enter/ {
      ev = $3; sub(/.*sys_enter_?/, "", ev); if (ev == "") ev = "all syscalls"
      printf "  %-16s %9d calls %8.3f per request\n", ev, $1, $1 / n
    }' "$tmp/$name.perf"
done
