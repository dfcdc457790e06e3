# proc.sh: sourced by the http and http2 benchmark scripts (run.sh,
# idle_conns.sh, bench/http2/h2o.sh): the helpers they share.

# free_port: a TCP port free on 127.0.0.1 now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# cpu_ticks PID: utime+stime of PID and its children (nginx's worker,
# h2o's helper), in clock ticks.
cpu_ticks() {
  local total=0 p
  for p in $1 $(pgrep -P "$1" || true); do
    if [[ -r /proc/$p/stat ]]; then
      total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    fi
  done
  echo "$total"
}
