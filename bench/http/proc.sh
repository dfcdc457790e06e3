# proc.sh: sourced by the http and http2 benchmark scripts (run.sh,
# idle_conns.sh, bench/http2/h2o.sh, bench/scale/device.sh): the helpers
# they share.

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

# wait_listening PORT PID: true once 127.0.0.1:PORT accepts a connection
# (bash's /dev/tcp: no curl needed), false if PID exits first or 5 s pass.
wait_listening() {
  local _
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
