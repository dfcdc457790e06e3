// client_bench.cpp: spindle_bench_http_client, the client side of the
// http figures (docs/benchmarks.md "http_hello and the http client") and
// of the HTTP/2 client figure (bench/http2/client.sh,
// docs/benchmarks.md "HTTP/2 client (one connection vs the HTTP/1.1 pool)"):
// FIBERS fibers (100) each fetch URL in a closed loop with one shared
// http::Client, on a runtime of WORKERS workers. Every response must be
// 200 with the body "Hello, World!" (the http_hello protocol): a wrong
// one, or any error, ends the run with exit status 1.
//
//   spindle_bench_http_client URL [FIBERS] [WORKERS] [SECONDS] [WARMUP_SECONDS] [PROTOCOL]
//   defaults:                      100     1         5         1                h1
//
// PROTOCOL: h1 (ClientOptions::http2 = never): HTTP/1.1 over the
// keep-alive pool, one connection per concurrent request (the pool's
// limit is FIBERS, so no fiber waits for a slot); h2c (http2 =
// prior_knowledge, an http:// URL): HTTP/2 cleartext, ONE connection for
// the origin shared by every fiber, each request a stream (how many run at
// once is then the server's SETTINGS_MAX_CONCURRENT_STREAMS, 100 for h2o).
//
// Counts the requests completed in a window of SECONDS after a warm-up
// (connections open, pool and stacks warm) and the process's CPU time
// (utime + stime, all threads, from /proc/self/stat) over the same window.
// Prints one line on stdout, the format aiohttp_client_peer.py prints too
// so that client.sh and the table read both alike:
//   requests=N seconds=S cpu_s=C connections=K
// (K: connections the client opened in all, which shows the keep-alive,
// and for h2c that there was one). The protocol is named only in the
// summary line on stderr: client.sh's parse takes all that follows
// "connections=" as K.
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <spindle/io/http/all.hpp>
#include <spindle/spindle.hpp>

namespace sp = spindle;
namespace http = spindle::http;

namespace {

// The process's CPU seconds so far, from /proc/self/stat fields 14 and 15
// (the comm field, 2, may hold spaces, so parse from its closing paren).
double process_cpu_s() {
  std::ifstream f("/proc/self/stat");
  std::string line;
  std::getline(f, line);
  std::istringstream rest(line.substr(line.rfind(')') + 2));
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

bool parse_number(const char* s, double min, double max, double& out) {
  const std::string_view v(s);
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  return ec == std::errc{} && end == v.data() + v.size() && out >= min && out <= max;
}

}  // namespace

int main(int argc, char** argv) {
  double fibers = 100, workers = 1, seconds = 5, warmup = 1;
  const std::string_view protocol = argc > 6 ? argv[6] : "h1";
  if (argc < 2 || argc > 7 || (argc > 2 && !parse_number(argv[2], 1, 100000, fibers)) ||
      (argc > 3 && !parse_number(argv[3], 1, 1024, workers)) ||
      (argc > 4 && !parse_number(argv[4], 0.1, 3600, seconds)) ||
      (argc > 5 && !parse_number(argv[5], 0, 3600, warmup)) || (protocol != "h1" && protocol != "h2c")) {
    std::fprintf(stderr, "usage: %s URL [FIBERS] [WORKERS] [SECONDS] [WARMUP_SECONDS] [h1|h2c]\n", argv[0]);
    return 2;
  }
  const std::string url = argv[1];
  const auto n = static_cast<std::size_t>(fibers);
  using clock = std::chrono::steady_clock;
  using secs = std::chrono::duration<double>;

  sp::RuntimeOptions opts;
  opts.workers = static_cast<unsigned>(workers);
  return sp::run(
      [&]() -> int {
        // h1: one connection per fiber: the pool's total limit is the
        // number of fibers, so no fiber waits for a slot and none is left
        // idle. h2c: one connection (limit counts it once), every fiber's
        // request a stream on it.
        http::Client client({.limit = n,
                             .http2 = protocol == "h2c" ? http::ClientHttp2::prior_knowledge
                                                        : http::ClientHttp2::never});
        std::atomic<std::uint64_t> done{0};
        std::atomic<bool> stop{false};
        std::vector<sp::Task<void>> fetchers;
        fetchers.reserve(n);
        for (std::size_t i = 0; i < n; ++i) {
          fetchers.push_back(sp::spawn([&] {
            while (!stop.load(std::memory_order_relaxed)) {
              const http::Response r = client.get(url);
              if (r.status != 200 || r.text() != "Hello, World!") {
                std::fprintf(stderr, "spindle_bench_http_client: unexpected response %d, %zu bytes\n",
                             r.status, r.body.size());
                std::exit(1);
              }
              done.fetch_add(1, std::memory_order_relaxed);
            }
          }));
        }
        sp::sleep_for(secs(warmup));
        const std::uint64_t n0 = done.load();
        const double cpu0 = process_cpu_s();
        const auto t0 = clock::now();
        sp::sleep_for(secs(seconds));
        const std::uint64_t n1 = done.load();
        const double cpu1 = process_cpu_s();
        const double wall = secs(clock::now() - t0).count();
        stop.store(true);
        int rc = 0;
        for (auto& f : fetchers) {  // every one joined: none in flight when client goes
          try {
            f.join();
          } catch (const std::exception& e) {
            std::fprintf(stderr, "spindle_bench_http_client: %s\n", e.what());
            rc = 1;
          }
        }
        if (rc != 0) return rc;
        std::printf("requests=%llu seconds=%.4f cpu_s=%.2f connections=%llu\n",
                    static_cast<unsigned long long>(n1 - n0), wall, cpu1 - cpu0,
                    static_cast<unsigned long long>(client.stats().connections_opened));
        std::fprintf(stderr,
                     "spindle %u worker(s), %zu fibers, protocol=%s: %.0f req/s, %.0f req per CPU-s\n",
                     opts.workers, n, protocol == "h2c" ? "h2c" : "h1", static_cast<double>(n1 - n0) / wall,
                     static_cast<double>(n1 - n0) / std::max(cpu1 - cpu0, 1e-9));
        return 0;
      },
      opts);
}
