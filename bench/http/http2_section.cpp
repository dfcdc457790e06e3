// http2_section.cpp: see http2_section.hpp. h2o's configuration, the
// warm-up and the success check are bench/http2/run.sh's.
#include "http2_section.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "section_util.hpp"

namespace http_bench {
namespace {

using namespace detail;

// start_h2o: h2o with `threads` threads serving www/index.txt ("Hello, World!"),
// its headers trimmed to what spindle sends where h2o 2.2 allows it (no
// server, etag, last-modified, accept-ranges; it still sends date). Run as
// root, h2o would switch to nobody, who cannot read the 0700 scratch
// directory: `user: root` then. No pid file; the access log is off.
// pid -1 (with a line on stderr) if it did not come up.
Child start_h2o(const std::string& h2o, const std::string& dir, int threads, int* port) {
  *port = free_port();
  const std::string conf = dir + "/h2o.conf";
  std::ofstream(conf) << (::geteuid() == 0 ? "user: root\n" : "") << "listen:\n  host: 127.0.0.1\n  port: "
                      << *port << "\nnum-threads: " << threads << "\naccess-log: /dev/null\nerror-log: " << dir
                      << "/error.log\nsend-server-name: OFF\nfile.etag: OFF\nfile.index: [index.txt]\n"
                      << "file.mime.settypes:\n  text/plain: .txt\nhosts:\n  default:\n    paths:\n      /:\n"
                      << "        file.dir: " << dir << "/www\n        header.unset: last-modified\n"
                      << "        header.unset: accept-ranges\n";
  Child c = spawn({h2o, "-c", conf});
  for (int i = 0; i < 200 && !can_connect(*port); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  if (!can_connect(*port)) {
    std::ifstream log(dir + "/error.log");
    std::stringstream text;
    text << log.rdbuf();
    std::fprintf(stderr, "  http2: h2o did not start; its error log:\n%s\n", text.str().c_str());
    stop(c);
    c.pid = -1;
  }
  return c;
}

// A spindle server: prints its port on stdout.
Child start_spindle(const std::string& workers, int* port) {
  Child c = spawn({SPINDLE_BENCH_HTTP_SERVER_HELLO, "0", workers});
  *port = std::atoi(read_line(c.out, 10).c_str());
  if (*port <= 0) {
    std::fprintf(stderr, "  http2: http_server_hello did not report its port\n");
    stop(c);
    c.pid = -1;
  }
  return c;
}

// h2load_run: one `h2load -n n -c 10 -m 10 -t1` (killed after limit_s).
// Returns h2load's req/s ("finished in X, Y req/s"), or NaN with *why set
// unless its "requests: n total, ..., n succeeded" line says that all n
// succeeded.
double h2load_run(const std::string& h2load, int port, int n, double limit_s, std::string* why) {
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/";
  Child c = spawn({h2load, "-n", std::to_string(n), "-c", "10", "-m", "10", "-t1", url});
  const auto t0 = std::chrono::steady_clock::now();
  const std::string out = finish(c, limit_s, nullptr);
  const std::size_t req = out.find("\nrequests: ");
  long total = -1, started = -1, done = -1, succeeded = -1;
  if (req != std::string::npos) {
    std::sscanf(out.c_str() + req, "\nrequests: %ld total, %ld started, %ld done, %ld succeeded", &total,
                &started, &done, &succeeded);
  }
  if (total != n || succeeded != n) {
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() >= limit_s) {
      *why = "h2load killed after " + std::to_string(static_cast<int>(limit_s)) + " s";
    } else if (req == std::string::npos) {
      *why = "h2load printed no requests: line";
    } else {
      *why = "h2load: " + out.substr(req + 1, out.find('\n', req + 1) - req - 1);
    }
    return NAN;
  }
  const std::size_t fin = out.find("finished in");
  const std::size_t comma = fin == std::string::npos ? fin : out.find(", ", fin);
  if (comma == std::string::npos) {
    *why = "h2load printed no req/s";
    return NAN;
  }
  return std::strtod(out.c_str() + comma + 2, nullptr);
}

}  // namespace

std::string http2_part(const SectionOptions& o, const std::string& tmp) {
  const std::string h2load = find_exe("h2load"), h2o = find_exe("h2o");
  if (h2load.empty() || h2o.empty()) {
    return std::string("\nhttp2_hello: skipped, ") + (h2load.empty() ? "h2load" : "h2o") +
           (h2load.empty() && h2o.empty() ? " and h2o" : "") +
           " not found (scripts/install-deps.sh --bench installs nghttp2-client and h2o).\n";
  }
  const std::string dir = tmp + "/h2o";
  ::mkdir(dir.c_str(), 0700);
  ::mkdir((dir + "/www").c_str(), 0700);
  std::ofstream(dir + "/www/index.txt") << "Hello, World!";

  // The spindle rows' names end in their worker count ("1w"), h2o's begin
  // with "h2o, N thread". The ratios are against one h2o thread (issue
  // #45's peer); h2o on two threads is the like-for-like row for 2
  // workers, where on a 2-core machine both share the cores with h2load.
  const std::vector<std::string> names{"h2o, 1 thread", "h2o, 2 threads", "spindle http::Server 1w",
                                       "spindle http::Server 2w"};
  const int n = o.h2_requests, warm = std::max(1000, n / 10);
  const double limit_s = 30 + n / 10000.0;  // ~10x the slowest run seen here
  std::map<std::string, Figures> f;
  std::map<std::string, int> failed;
  std::string notes;
  for (int r = 0; r < o.rounds; ++r) {
    for (std::size_t k = 0; k < names.size(); ++k) {
      // Rotated by one each round: no server always runs first or last.
      const std::string& name = names[(k + static_cast<std::size_t>(r)) % names.size()];
      int port = 0;
      // h2o's rows are named "h2o, N thread(s)": N is its num-threads.
      Child srv = name.rfind("h2o", 0) == 0 ? start_h2o(h2o, dir, std::atoi(name.c_str() + 5), &port)
                                             : start_spindle(name.substr(name.size() - 2, 1), &port);
      double rps = NAN, per_cpu = NAN;
      std::string why = "did not start";
      if (srv.pid > 0 && !std::isnan(h2load_run(h2load, port, warm, limit_s, &why))) {
        const double c0 = tree_cpu_s(srv.pid);
        rps = h2load_run(h2load, port, n, limit_s, &why);
        const double c1 = tree_cpu_s(srv.pid);
        if (!std::isnan(rps) && c1 > c0) per_cpu = n / (c1 - c0);
      } else if (srv.pid > 0) {
        why = "warm-up: " + why;
      }
      if (srv.pid > 0) {
        ::kill(srv.pid, SIGTERM);
        bool exited0 = false;
        finish(srv, 5, &exited0);
        if (!exited0 && !std::isnan(rps)) {
          rps = per_cpu = NAN;
          why = "the server did not exit 0 on SIGTERM";
        }
      }
      if (std::isnan(rps)) {
        ++failed[name];
        notes += "note: round " + std::to_string(r + 1) + ", " + name + ": FAILED (" + why + ")\n";
      }
      f[name].rps.push_back(rps);
      f[name].per_cpu.push_back(per_cpu);
      std::fprintf(stderr, "  %-20s %-42s %9s req/s\n", "http2_hello", name.c_str(), fmt(rps).c_str());
    }
  }
  // Failed rows keep the rounds that succeeded, marked in their name.
  std::vector<std::string> shown;
  std::map<std::string, Figures> g;
  for (const std::string& name : names) {
    std::string s = name;
    if (failed[name] > 0) {
      s += " **FAILED** (" + std::to_string(o.rounds - failed[name]) + " of " + std::to_string(o.rounds) +
           " rounds measured)";
    }
    shown.push_back(s);
    g[s] = f[name];
  }
  char head[768];
  std::snprintf(head, sizeof head,
                "\nhttp2_hello (`h2load -n %d -c 10 -m 10 -t1` on 127.0.0.1, h2c with prior knowledge, "
                "after a warm-up\nof %d requests; h2o serves the same 13 bytes from a file, its headers "
                "trimmed; servers alternating\nwithin each round; median of %d rounds (min-max); ratios: "
                "median / h2o median; CPU-s: the server's\nprocesses over the measured run, from /proc; "
                "every request must succeed, or the round fails;\nbench/http2/run.sh adds paired "
                "per-round ratios):\n\n",
                n, warm, o.rounds);
  return head + table("server (10 conns x 10 streams)", "server", shown, g) + notes;
}

}  // namespace http_bench
