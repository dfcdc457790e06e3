// slow_flood: the slow-body flood of issue 41, against a server already
// listening on 127.0.0.1:PORT (bench/http/slow_flood.sh starts
// http_server_hello). CONNS connections each send a POST head announcing
// a 1,000,000-byte body and 10 bytes of it, then one more byte a second
// (each read of the server's is met, its whole-body deadline is not);
// meanwhile one probe client sends a GET every 10 ms on a keep-alive
// connection of its own. After SECONDS it prints, as key=value lines:
//   flood_conns: connections opened; flood_open_end: those still open then
//   (the server drops a body that misses read_timeout, 30 s by default);
//   rss_base_kb / rss_peak_kb: the server's resident set (VmRSS of PID)
//   before the flood and its highest sample (every 100 ms) during it;
//   probe_n, probe_p50_ms, probe_p99_ms, probe_max_ms: the probe's
//   request latencies; probe_fail: probe requests that failed.
// Loopback only; bounded in count and time.
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <spindle/io/all.hpp>
#include <spindle/spindle.hpp>

namespace sp = spindle;
namespace io = spindle::io;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

long rss_kb(long pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  while (in >> key) {
    if (key == "VmRSS:") {
      long v = 0;
      in >> v;
      return v;
    }
    in.ignore(1 << 16, '\n');
  }
  return -1;
}

// read_response: one response with a Content-Length (the probe's GETs).
bool read_response(io::TcpStream& s, std::string& buf) {
  const std::size_t head_end = s.read_until(buf, "\r\n\r\n", 1 << 16);
  std::size_t len = 0;
  if (const auto p = buf.find("Content-Length: "); p != std::string::npos && p < head_end)
    len = std::strtoul(buf.c_str() + p + 16, nullptr, 10);
  char tmp[4096];
  while (buf.size() < head_end + len) {
    const std::size_t n = s.read_some(tmp, sizeof tmp);
    if (n == 0) return false;
    buf.append(tmp, n);
  }
  const bool ok = buf.compare(0, 12, "HTTP/1.1 200") == 0;
  buf.erase(0, head_end + len);
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: %s PORT SERVER_PID CONNS SECONDS\n", argv[0]);
    return 2;
  }
  const auto port = static_cast<std::uint16_t>(std::atoi(argv[1]));
  const long pid = std::atol(argv[2]);
  const int conns = std::atoi(argv[3]);
  const auto seconds = std::chrono::seconds(std::atoi(argv[4]));
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);

  sp::RuntimeOptions o;
  o.workers = 1;
  sp::run([&] {
    const io::Endpoint ep("127.0.0.1", port);
    const long base = rss_kb(pid);
    long peak = base;
    std::atomic<int> opened{0}, open_now{0};
    std::atomic<bool> done{false};
    sp::TaskGroup g;
    for (int i = 0; i < conns; ++i) {
      g.spawn([&] {
        io::TcpStream s;
        bool counted = false;
        try {
          s = io::TcpStream::connect(ep);
          opened.fetch_add(1);
          open_now.fetch_add(1);
          counted = true;
          s.write_all("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n0123456789");
          while (!done.load()) {
            sp::sleep_for(1s);
            s.write_all("x");
          }
        } catch (const std::system_error&) {
        }
        if (counted) open_now.fetch_sub(1);  // the server dropped it
      });
    }
    std::vector<double> lat_ms;
    int fails = 0;
    auto probe = g.spawn([&] {
      io::TcpStream s;
      std::string buf;
      while (!done.load()) {
        sp::sleep_for(10ms);
        const auto t0 = Clock::now();
        try {
          if (!s.is_open()) s = io::TcpStream::connect(ep);
          s.write_all("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
          if (!read_response(s, buf)) throw std::runtime_error("bad response");
          lat_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
        } catch (const std::exception&) {
          ++fails;
          s = io::TcpStream();
          buf.clear();
        }
      }
    });
    const auto end = Clock::now() + seconds;
    while (Clock::now() < end) {
      sp::sleep_for(100ms);
      peak = std::max(peak, rss_kb(pid));
    }
    const int open_end = open_now.load();
    done.store(true);
    g.cancel();
    try {
      g.wait();
    } catch (...) {
    }
    std::sort(lat_ms.begin(), lat_ms.end());
    auto pct = [&](double q) {
      return lat_ms.empty() ? -1.0 : lat_ms[std::min(lat_ms.size() - 1, static_cast<std::size_t>(q * lat_ms.size()))];
    };
    std::printf("flood_conns=%d\nflood_open_end=%d\nrss_base_kb=%ld\nrss_peak_kb=%ld\n", opened.load(), open_end, base,
                peak);
    std::printf("probe_n=%zu\nprobe_p50_ms=%.3f\nprobe_p99_ms=%.3f\nprobe_max_ms=%.3f\nprobe_fail=%d\n", lat_ms.size(),
                pct(0.5), pct(0.99), lat_ms.empty() ? -1.0 : lat_ms.back(), fails);
  }, o);
  return 0;
}
