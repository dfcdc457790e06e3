# h2o.sh: sourced by bench/http2/run.sh, client.sh and bench/scale/device.sh:
# the h2o peer they measure against (one thread, serving the 13 bytes "Hello, World!"
# as text/plain from a file; access log off; server name, etag,
# last-modified and accept-ranges off, so its head is as short as 2.2
# allows: date, content-type, content-length), and the shell helpers both
# use. The caller sets $root (the repository), $tmp (a private temp dir) and $me (its name, for
# messages) and kills $pid on exit.

# free_port, cpu_ticks, wait_listening
source "$root/bench/http/proc.sh"  # $root: the caller's, the repository

# h2o_conf [THREADS]: writes $tmp/h2o.conf for h2o with THREADS threads
# (default 1) on a free port, sets $port. start_h2o runs it; instructions.sh
# runs it under valgrind.
h2o_conf() {
  local threads=${1:-1}
  mkdir -p "$tmp/h2o/www"
  printf 'Hello, World!' >"$tmp/h2o/www/index.txt"
  # h2o run as root switches to `user:` (default nobody), who cannot read
  # a 0700 temp dir: keep root's identity then.
  local user=
  [[ $(id -u) == 0 ]] && user="user: root"
  port=$(free_port)
  cat >"$tmp/h2o.conf" <<CONF
$user
listen:
  host: 127.0.0.1
  port: $port
num-threads: $threads
access-log: /dev/null
error-log: $tmp/h2o/error.log
send-server-name: OFF
file.etag: OFF
file.index: [index.txt]
file.mime.settypes:
  text/plain: .txt
hosts:
  default:
    paths:
      /:
        file.dir: $tmp/h2o/www
        header.unset: last-modified
        header.unset: accept-ranges
CONF
}

# start_h2o [THREADS]: starts h2o (THREADS threads, default 1) on a free
# port, sets $pid and $port; returns 1
# (with h2o's own account on stderr) if it did not come up.
start_h2o() {
  h2o_conf "${1:-1}"
  h2o -c "$tmp/h2o.conf" >"$tmp/h2o/stdout" 2>&1 &
  pid=$!
  wait_listening "$port" "$pid" && return 0
  echo "$me: h2o did not come up:" >&2
  cat "$tmp/h2o/stdout" "$tmp/h2o/error.log" >&2 2>/dev/null || true
  return 1
}
