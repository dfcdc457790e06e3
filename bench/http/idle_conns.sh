#!/usr/bin/env bash
# idle_conns.sh: issue 44's idle-connection memory row. For each server,
# RUNS rounds (servers rotated within a round): start it, serve one
# warm-up request, read its RSS, then let spindle_bench_idle_conns open
# CONNS keep-alive connections with one GET each and hold them idle; after
# SETTLE seconds read the RSS again. Prints per round and server the KiB
# per idle connection, (after - before) / CONNS, then the median and
# min..max per server.
#
#   bench/http/idle_conns.sh [BUILD_DIR]
#   CONNS=10000 RUNS=3 SETTLE=1 SERVERS="spindle_w1 spindle_w2 nginx libuv"
#   BREAKDOWN=0: skip the spindle breakdown below
#   MODE=request (default): one GET / HTTP/1.1 each, answered in full
#   MODE=connect: the connections send nothing (each server's side waits
#     for a first request; for spindle, the stack a connection fiber
#     needs to wait, without a request's deeper calls before it)
#   MODE=h2: HTTP/2 over cleartext TCP, prior knowledge: each connection
#     sends the preface, an empty SETTINGS and one GET on stream 1 (with
#     H2_STREAMS=K, 1 to 100: K GETs at once, on streams 1, 3, ...: a
#     connection that has served many streams),
#     acknowledges the server's SETTINGS, reads the answer to stream 1's
#     end, then sends nothing more (an idle HTTP/2 connection, no open
#     stream). Spindle servers only: nginx and libuv_hello serve no
#     cleartext HTTP/2 here, so they are left out of the default list, and
#     skipped with a line if SERVERS names them. The warm-up request is
#     HTTP/2 too (curl --http2-prior-knowledge).
#
# BUILD_DIR (default build/release) holds http_server_hello, libuv_hello
# and spindle_bench_idle_conns (bench/http/CMakeLists.txt).
# RSS: VmRSS from /proc/PID/status; nginx's is its master's plus its one
# worker's (worker_processes 1; the master's does not move, the worker
# holds the connections). nginx gets worker_connections CONNS + CONNS/8 +
# 64: it closes idle keep-alive connections once fewer than a sixteenth
# are free, and it fills its connection table (all worker_connections
# slots) at start, so each connection's slot is in nginx's baseline, not
# in its growth. Socket buffers are kernel memory, in no RSS.
# For spindle servers it also runs idle_conns_smaps.py before and after
# and prints the growth per connection split into fiber stacks (resident
# pages per stack, from pagemap), heap (malloc) and file-backed pages, and
# how many read buffers (flat_buffers holding the last request; for h2,
# buffers still holding the request's header block) the heap holds and
# how far apart they lie.
# Loopback only. The script raises its open-file limit to the hard one;
# CONNS above it minus 64 stops it with a message.
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build/release}
conns=${CONNS:-10000}
runs=${RUNS:-3}
settle=${SETTLE:-1}
breakdown=${BREAKDOWN:-1}
mode=${MODE:-request}
[[ $mode == request || $mode == connect || $mode == h2 ]] || {
  echo "idle_conns.sh: MODE is request, connect or h2" >&2
  exit 2
}
client_args=() curl_args=() smaps_args=()
[[ $mode == connect ]] && client_args=(connect)
[[ $mode == h2 ]] && client_args=(h2 "${H2_STREAMS:-1}") curl_args=(--http2-prior-knowledge) smaps_args=(h2)
if [[ $mode == h2 ]]; then
  read -r -a servers <<<"${SERVERS:-spindle_w1 spindle_w2}"
  [[ -n ${SERVERS:-} ]] || echo "MODE=h2: nginx and libuv left out (no cleartext HTTP/2 from either here)"
else
  read -r -a servers <<<"${SERVERS:-spindle_w1 spindle_w2 nginx libuv}"
fi
here=bench/http

# find_bin: the newest of the name (examples/ and bench/http/ both build
# http_server_hello; a stale one must not be measured).
find_bin() { find "$build" -name "$1" -type f -perm -u+x -printf '%T@ %p\n' | sort -rn | head -n1 | cut -d' ' -f2-; }
server_bin=$(find_bin http_server_hello)
libuv_bin=$(find_bin libuv_hello)
client=$(find_bin spindle_bench_idle_conns)
[[ -n $server_bin && -n $client ]] || {
  echo "idle_conns.sh: build http_server_hello and spindle_bench_idle_conns in $build first" >&2
  exit 2
}
nginx_bin=$(command -v nginx || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; } || true)

ulimit -n "$(ulimit -Hn)"
# spindle's server keeps at most 7/8 of the limit open (ServerOptions::
# max_connections' default) and closes the longest idle past it.
need=$(( (conns + 64) * 8 / 7 + 1 ))
if (( need > $(ulimit -n) )); then
  echo "idle_conns.sh: CONNS=$conns needs an open-file limit of $need; the hard limit is $(ulimit -n)" >&2
  exit 2
fi

tmp=$(mktemp -d)
pid='' cpid=''
cleanup() {
  [[ -n $cpid ]] && kill "$cpid" 2>/dev/null
  [[ -n $pid ]] && kill "$pid" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

source bench/http/proc.sh  # free_port (the script cd-ed to the root above)

# rss_kb PID: VmRSS of PID plus its children's (nginx's worker).
rss_kb() {
  local total=0 p v
  for p in $1 $(pgrep -P "$1" || true); do
    v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

# start NAME: starts a server; sets $pid and $port, or returns 1.
start() {
  : >"$tmp/out"
  case $1 in
    nginx)
      [[ -n $nginx_bin ]] || return 1
      port=$(free_port)
      mkdir -p "$tmp/nginx/logs"
      cat >"$tmp/nginx.conf" <<CONF
worker_processes 1;
worker_rlimit_nofile $((conns + conns / 8 + 64));
error_log $tmp/nginx/logs/error.log;
pid $tmp/nginx/nginx.pid;
events { worker_connections $((conns + conns / 8 + 64)); }
http {
  access_log off;
  server {
    listen 127.0.0.1:$port backlog=4096;
    location / { default_type text/plain; return 200 "Hello, World!"; }
  }
}
CONF
      "$nginx_bin" -p "$tmp/nginx" -c "$tmp/nginx.conf" -g 'daemon off;' &
      pid=$! ;;
    libuv)
      [[ -n $libuv_bin ]] || return 1
      "$libuv_bin" 0 >"$tmp/out" &
      pid=$! ;;
    spindle_w*)
      "$server_bin" 0 "${1#spindle_w}" >"$tmp/out" &
      pid=$! ;;
  esac
  if [[ $1 != nginx ]]; then
    for _ in $(seq 200); do [[ -s "$tmp/out" ]] && break; sleep 0.05; done
    port=$(head -1 "$tmp/out")
  fi
  for _ in $(seq 200); do curl -s "${curl_args[@]}" "http://127.0.0.1:$port/" >/dev/null 2>&1 && return 0; sleep 0.05; done
  echo "idle_conns.sh: $1 did not answer on port $port" >&2
  return 1
}

stop() {
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=''
}

# field KEY LINE: the value of KEY=... in LINE.
field() { tr ' ' '\n' <<<"$2" | awk -F= -v k="$1" '$1 == k {print $2}'; }

declare -A kb
what="one GET each"
[[ $mode == connect ]] && what="no request sent"
[[ $mode == h2 ]] && what="HTTP/2 (prior knowledge), ${H2_STREAMS:-1} GET(s) each"
echo "idle_conns: $conns idle keep-alive connections, $what; RSS growth / connections (KiB), settle ${settle} s"
for r in $(seq "$runs"); do
  for k in $(seq 0 $((${#servers[@]} - 1))); do
    s=${servers[$(((k + r - 1) % ${#servers[@]}))]}
    if [[ $mode == h2 && $s != spindle_* ]]; then
      echo "run $r $s: skipped (MODE=h2: no cleartext HTTP/2 from $s here)"
      continue
    fi
    if ! start "$s"; then
      echo "run $r $s: skipped (not available or did not start)"
      [[ -n $pid ]] && stop
      continue
    fi
    sleep 0.5
    before=$(rss_kb "$pid")
    [[ $s == spindle_* && $breakdown == 1 ]] && b0=$(python3 "$here/idle_conns_smaps.py" "$pid" "${smaps_args[@]}")
    # Emptied first: the wait below must not see the last round's ready= before
    # this client's redirect truncates the file (or find no file at all).
    : >"$tmp/client"
    "$client" "$port" "$conns" "${client_args[@]}" >"$tmp/client" 2>"$tmp/client.err" &
    cpid=$!
    while ! grep -q '^ready=' "$tmp/client"; do
      if ! kill -0 "$cpid" 2>/dev/null; then
        echo "run $r $s: the client failed: $(cat "$tmp/client.err")" >&2
        exit 1
      fi
      sleep 0.1
    done
    sleep "$settle"
    after=$(rss_kb "$pid")
    [[ $s == spindle_* && $breakdown == 1 ]] && b1=$(python3 "$here/idle_conns_smaps.py" "$pid" "${smaps_args[@]}")
    kill -TERM "$cpid"
    wait "$cpid" || true
    cpid=''
    open=$(awk -F= '$1 == "still_open" {print $2}' "$tmp/client")
    stop
    per=$(awk -v a="$after" -v b="$before" -v n="$conns" 'BEGIN {printf "%.2f", (a - b) / n}')
    kb[$s]+="$per "
    echo "run $r $s: RSS $before -> $after KiB, $per KiB per connection (still open at the end: $open of $conns)"
    if [[ $s == spindle_* && $breakdown == 1 ]]; then
      # Per connection: growth of each part over CONNS, in KiB.
      awk -v n="$conns" \
        -v s0="$(field stack_kb "$b0")" -v s1="$(field stack_kb "$b1")" \
        -v t0="$(field touched_slots "$b0")" -v t1="$(field touched_slots "$b1")" \
        -v h0="$(field heap_kb "$b0")" -v h1="$(field heap_kb "$b1")" \
        -v f0="$(field file_kb "$b0")" -v f1="$(field file_kb "$b1")" \
        -v hist="$(field pages_hist "$b1")" -v bufs="$(field read_bufs "$b1")" \
        -v stride="$(field read_buf_stride "$b1")" -v scr="$(field scratch_bufs "$b1")" \
        'BEGIN {
          printf "    stacks %.2f KiB (%d more stacks touched; resident pages per stack, pages:stacks: %s)\n",
            (s1 - s0) / n, t1 - t0, hist
          printf "    heap %.2f KiB, file-backed %.2f KiB\n", (h1 - h0) / n, (f1 - f0) / n
          printf "    read buffers holding the last request: %d, %d bytes apart (median); response bodies in the heap: %d\n",
            bufs, stride, scr
        }'
    fi
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR) print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
minmax() { tr ' ' '\n' | grep -v '^$' | sort -g | awk 'NR==1{lo=$1} {hi=$1} END {if (NR) printf "%s..%s", lo, hi}'; }
printf '\n%-14s %16s %16s %10s\n' server "KiB/conn (med)" "min..max" "runs"
for s in "${servers[@]}"; do
  [[ -n ${kb[$s]:-} ]] || continue
  printf '%-14s %16s %16s %10d\n' "$s" "$(median <<<"${kb[$s]}")" "$(minmax <<<"${kb[$s]}")" \
    "$(wc -w <<<"${kb[$s]}")"
done
