// client.hpp: the echo64 load generator: one thread, one epoll instance,
// N connections in a closed loop (a connection sends its next 64-byte
// message only after the previous one came back whole and checked), as
// docs/benchmarks.md "echo64" specifies.
#pragma once

#include <sys/types.h>

#include <cstdint>

namespace echo64 {

struct ClientOptions {
  double warmup_s = 0.5;   // unrecorded, after every connection is up
  double measure_s = 2.0;  // recorded window (when requests == 0)
  // requests > 0: instead of a timed window, stop after this many replies
  // in total (after the warm-up), for syscall counts.
  std::uint64_t requests = 0;
  pid_t server_pid = -1;  // > 0: sample its CPU time and RSS around the window
};

struct ClientResult {
  double rps = 0;                 // replies per second in the window
  double requests = 0;            // replies in the window
  double window_s = 0;
  double p50_us = 0, p99_us = 0;  // per request: send -> last byte back
  double max_us = 0;              // the slowest request (stalls show here)
  double server_cpu_s = 0;        // server CPU seconds during the window
  double rps_per_cpu = 0;         // requests / server CPU second
  double server_rss_kib_idle = 0;   // server RSS before the client connected
  double server_rss_kib_loaded = 0; // after the window, connections open
  double kib_per_conn = 0;          // (loaded - idle) / conns
};

// run_client: connects `conns` sockets to 127.0.0.1:port, warms up,
// measures. On a wrong byte, a short connect or a closed connection it
// prints what went wrong on stderr and exits with status 3.
ClientResult run_client(int port, int conns, const ClientOptions& o);

}  // namespace echo64
