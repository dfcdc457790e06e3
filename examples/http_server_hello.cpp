// http_server_hello.cpp: the http_hello benchmark's server written with
// http::Server (router-less handler, minimal responses: no Date/Server),
// the full server's row in bench/http/run.sh.
//
//   http_server_hello PORT [WORKERS]
//
// Prints the port on the first line of stdout; SIGTERM/SIGINT shut the
// server down gracefully (Server::shutdown from the signal thread), print
// a summary line, exit 0. With SPINDLE_STATS set in the environment it
// also prints the runtime's per-worker counters (spindle::Stats: switches,
// steals, parks...) to stderr at shutdown: where a multi-worker run spent
// its wake-ups.
#include <pthread.h>
#include <signal.h>

#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string_view>
#include <thread>

#include <spindle/io/http/all.hpp>
#include <spindle/spindle.hpp>

namespace sp = spindle;
namespace http = spindle::http;

namespace {
bool parse_uint(const char* s, unsigned long max, unsigned long& out) {
  const std::string_view v(s);
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  return ec == std::errc{} && end == v.data() + v.size() && out <= max;
}
}  // namespace

int main(int argc, char** argv) {
  unsigned long port = 0, workers = 1;
  if (argc < 2 || argc > 3 || !parse_uint(argv[1], 65535, port) ||
      (argc == 3 && (!parse_uint(argv[2], 1024, workers) || workers == 0))) {
    std::fprintf(stderr, "usage: %s PORT [WORKERS]\n", argv[0]);
    return 2;
  }
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  http::ServerOptions o;
  o.minimal = true;
  o.max_head = 16 * 1024;
  o.drain_timeout = std::chrono::milliseconds(1000);
  http::Server server([](http::Request&) { return http::Response::text_body(200, "Hello, World!", "text/plain"); },
                      o);
  // shutdown() may be called from any thread, and before serve() starts.
  std::thread watcher([&] {
    int sig = 0;
    sigwait(&stop_signals, &sig);
    server.shutdown();
  });

  sp::RuntimeOptions opts;
  opts.workers = static_cast<unsigned>(workers);
  int rc = 0;
  try {
    sp::run(
        [&] {
          server.listen("127.0.0.1", static_cast<std::uint16_t>(port));
          std::printf("%u\n", server.local_endpoint().port());
          std::fflush(stdout);
          server.serve();
          if (std::getenv("SPINDLE_STATS") != nullptr) std::cerr << sp::current_stats();
        },
        opts);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "http_server_hello: %s\n", e.what());
    rc = 1;
    pthread_kill(watcher.native_handle(), SIGTERM);
  }
  watcher.join();
  if (rc == 0)
    std::printf("stopped after %llu connections, %llu requests\n",
                static_cast<unsigned long long>(server.connections_accepted()),
                static_cast<unsigned long long>(server.requests_served()));
  return rc;
}
