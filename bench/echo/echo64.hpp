// echo64.hpp: docs/benchmarks.md "echo64" (loopback, servers stopped by PID).
//
// Servers (each runs in a child process of its own, started by
// start_server and killed by PID):
//   - libuv:  the raw single-threaded libuv C server (libuv_echo.c);
//   - spindle: spindle_echo_serve below, one fiber per connection,
//     read_some + write_all, on a Runtime with 1 or 2 workers.
// Client (client.hpp): one epoll thread, N closed-loop connections, each
// message 64 bytes carrying its connection and sequence number, every echo
// checked byte for byte.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "client.hpp"

namespace echo64 {

enum class Server { libuv, spindle };

struct ServerSpec {
  Server kind = Server::spindle;
  unsigned workers = 1;  // spindle only
  std::string name() const;  // "libuv C", "spindle 1w"
};

// spindle_echo_serve: the spindle echo server. Listens on 127.0.0.1:port (0:
// any), calls on_listening(port) once, then accepts forever: one fiber per
// connection, read_some into a 4 KiB buffer on its stack, write_all of what
// it read (write_all waits while the peer is slow, so at most 4 KiB is ever
// queued in user space), close on end of stream, close silently on error.
void spindle_echo_serve(unsigned workers, int port, void (*on_listening)(int port, void* arg),
                        void* arg);

// Layout: which CPU the server and the client run on (-1: anywhere).
struct Layout {
  int server_cpu = -1;
  int client_cpu = -1;
};

struct RunningServer {
  pid_t pid = -1;
  int port = 0;
};

// start_server: forks a child that runs the server (stderr to /dev/null,
// pinned to layout.server_cpu if >= 0) and waits until it listens.
// The caller must have no other threads (fork).
RunningServer start_server(const ServerSpec& s, int cpu);
// stop_server: SIGKILL and reap.
void stop_server(RunningServer& s);

// One measured cell: a fresh server, a client in a separate child process.
struct Cell {
  ServerSpec server;
  int conns = 0;
  ClientResult r;
};

// measure_cell: starts the server, runs the client in a child (pinned per
// layout), stops the server. Exits the process with a message if the
// client fails (a wrong byte, a closed connection).
Cell measure_cell(const ServerSpec& s, int conns, const ClientOptions& o, const Layout& l);

// Per-process CPU seconds (utime + stime from /proc/PID/stat, all threads)
// and resident set size in KiB (VmRSS from /proc/PID/status).
double process_cpu_s(pid_t pid);
double process_rss_kib(pid_t pid);

}  // namespace echo64

namespace echo64 {

// The three servers of the comparison: libuv C, spindle 1w, spindle 2w.
std::vector<ServerSpec> default_servers();

// run_rounds: `rounds` rounds; each round measures every conns value with
// every server, the servers' order rotated by one each round (so no server
// always runs first or last after another's load). progress: a line per
// cell on stderr.
std::vector<Cell> run_rounds(const std::vector<ServerSpec>& servers, const std::vector<int>& conns,
                             int rounds, const ClientOptions& o, const Layout& l, bool progress);

// format: a Markdown table, one line per (conns, server): medians over the
// rounds with min-max, and the ratio of the medians to the libuv C server's
// (the first server) at the same conns; RSS per connection where
// conns >= 1000.
std::string format(const std::vector<Cell>& cells, const std::vector<ServerSpec>& servers,
                   const std::vector<int>& conns, bool spread);

}  // namespace echo64
