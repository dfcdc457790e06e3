// main.cpp: spindle_echo64, BENCHMARKS.md echo64 on its own (the main table
// runs a shorter version of the same thing: bench/table/rows.cpp).
//
//   spindle_echo64 [--rounds=N] [--seconds=S] [--warmup=S] [--conns=1,100,1000]
//                  [--layout=free|pinned|both]
//       every conns value x {libuv C, spindle 1w, spindle 2w}, alternating,
//       N rounds (default 3); prints a Markdown table per layout.
//       free: scheduler's choice; pinned: client on CPU 0, server on CPU 1
//       (sched_setaffinity, what `taskset -c` does).
//   spindle_echo64 server libuv|spindle [WORKERS] [PORT]
//       one server in the foreground; prints its port; exits 0 on SIGTERM.
//   spindle_echo64 client PORT CONNS REQUESTS
//       one client run, no warm-up, stops after REQUESTS replies; prints a line.
// bench/echo/syscalls.sh runs the last two under strace -c.
#include <sched.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "echo64.hpp"
#include "libuv_echo.h"

namespace {

void print_port(int port, void*) {
  std::printf("%d\n", port);
  std::fflush(stdout);
}

std::vector<int> parse_list(const char* s) {
  std::vector<int> v;
  while (*s != 0) {
    char* end;
    v.push_back(static_cast<int>(std::strtol(s, &end, 10)));
    s = *end == ',' ? end + 1 : end;
    if (end == s && *s != 0) break;
  }
  return v;
}

int usage(const char* argv0) {
  std::fprintf(stderr,
               "usage: %s [--rounds=N] [--seconds=S] [--warmup=S] [--conns=1,100,1000] "
               "[--layout=free|pinned|both]\n"
               "       %s server libuv|spindle [WORKERS] [PORT]\n"
               "       %s client PORT CONNS REQUESTS\n",
               argv0, argv0, argv0);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace echo64;
  if (argc >= 3 && std::strcmp(argv[1], "server") == 0) {
    std::signal(SIGTERM, [](int) { std::_Exit(0); });
    const bool uv = std::strcmp(argv[2], "libuv") == 0;
    const unsigned workers = argc > 3 ? static_cast<unsigned>(std::atoi(argv[3])) : 1;
    const int port = argc > 4 ? std::atoi(argv[4]) : 0;
    if (uv) return libuv_echo_serve(port, print_port, nullptr);
    spindle_echo_serve(workers, port, print_port, nullptr);
    return 0;
  }
  if (argc == 5 && std::strcmp(argv[1], "client") == 0) {
    ClientOptions o;
    o.warmup_s = 0;
    o.requests = std::strtoull(argv[4], nullptr, 10);
    const ClientResult r = run_client(std::atoi(argv[2]), std::atoi(argv[3]), o);
    std::printf("%.0f requests in %.2f s: %.0f req/s, p50 %.1f us, p99 %.1f us\n", r.requests,
                r.window_s, r.rps, r.p50_us, r.p99_us);
    return 0;
  }
  int rounds = 3;
  ClientOptions o;
  std::vector<int> conns{1, 100, 1000};
  std::string layout = "both";
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--rounds=", 9) == 0) {
      rounds = std::atoi(argv[i] + 9);
    } else if (std::strncmp(argv[i], "--seconds=", 10) == 0) {
      o.measure_s = std::atof(argv[i] + 10);
    } else if (std::strncmp(argv[i], "--warmup=", 9) == 0) {
      o.warmup_s = std::atof(argv[i] + 9);
    } else if (std::strncmp(argv[i], "--conns=", 8) == 0) {
      conns = parse_list(argv[i] + 8);
    } else if (std::strncmp(argv[i], "--layout=", 9) == 0) {
      layout = argv[i] + 9;
    } else {
      return usage(argv[0]);
    }
  }
  cpu_set_t set;
  const bool two_cpus = sched_getaffinity(0, sizeof set, &set) == 0 && CPU_ISSET(0, &set) && CPU_ISSET(1, &set);
  const auto servers = default_servers();
  if (layout == "free" || layout == "both") {
    std::printf("echo64, free layout (%d rounds, %.1f s each after %.1f s warm-up):\n\n", rounds,
                o.measure_s, o.warmup_s);
    std::fflush(stdout);
    const auto cells = run_rounds(servers, conns, rounds, o, Layout{}, true);
    std::printf("%s\n", format(cells, servers, conns, rounds > 1).c_str());
  }
  if (layout == "pinned" || layout == "both") {
    if (!two_cpus) {
      std::printf("echo64, pinned layout: skipped (CPUs 0 and 1 are not both available)\n");
    } else {
      std::printf("echo64, pinned layout (client CPU 0, server CPU 1; %d rounds):\n\n", rounds);
      std::fflush(stdout);
      const auto cells = run_rounds(servers, conns, rounds, o, Layout{1, 0}, true);
      std::printf("%s\n", format(cells, servers, conns, rounds > 1).c_str());
    }
  }
  return 0;
}
