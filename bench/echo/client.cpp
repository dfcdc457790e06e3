// client.cpp: the echo64 load generator (client.hpp).
#include "client.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "echo64.hpp"

namespace echo64 {
namespace {

constexpr int kMsg = 64;

[[noreturn]] void die(const char* what, int conn, std::uint64_t seq) {
  std::fprintf(stderr, "echo64 client: %s (connection %d, sequence %llu)\n", what, conn,
               static_cast<unsigned long long>(seq));
  std::fflush(stderr);
  std::_Exit(3);
}

std::uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000u + static_cast<std::uint64_t>(ts.tv_nsec);
}

// The message for (conn, seq): the sequence number, the connection, then
// bytes derived from both, so a byte from another message or connection,
// a shifted stream or a stale reply all fail the check.
void fill(unsigned char* m, int conn, std::uint64_t seq) {
  std::memcpy(m, &seq, 8);
  const std::uint32_t c = static_cast<std::uint32_t>(conn);
  std::memcpy(m + 8, &c, 4);
  for (int i = 12; i < kMsg; ++i) m[i] = static_cast<unsigned char>(seq * 131 + c * 7 + static_cast<unsigned>(i));
}

struct Conn {
  int fd = -1;
  std::uint64_t seq = 0;
  std::uint64_t sent_ns = 0;
  int got = 0;
  unsigned char out[kMsg];
  unsigned char in[kMsg];
};

void send_next(Conn& c, int id) {
  fill(c.out, id, c.seq);
  c.got = 0;
  c.sent_ns = now_ns();
  // A 64-byte write into an empty send buffer (closed loop: nothing else
  // is in flight on this connection) is taken whole.
  const ssize_t n = ::send(c.fd, c.out, kMsg, MSG_NOSIGNAL);
  if (n != kMsg) die(n < 0 ? std::strerror(errno) : "short write", id, c.seq);
}

double percentile(std::vector<std::uint32_t>& v, double p) {
  if (v.empty()) return 0;
  const std::size_t k = std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
  return v[k] / 1000.0;
}

}  // namespace

ClientResult run_client(int port, int conns, const ClientOptions& o) {
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  ClientResult res;
  if (o.server_pid > 0) res.server_rss_kib_idle = process_rss_kib(o.server_pid);

  const int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) die("epoll_create1", -1, 0);
  std::vector<Conn> cs(static_cast<std::size_t>(conns));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (int i = 0; i < conns; ++i) {
    Conn& c = cs[static_cast<std::size_t>(i)];
    c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c.fd < 0) die(std::strerror(errno), i, 0);
    if (::connect(c.fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) die(std::strerror(errno), i, 0);
    const int one = 1;
    ::setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ::fcntl(c.fd, F_SETFL, ::fcntl(c.fd, F_GETFL) | O_NONBLOCK);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = static_cast<std::uint32_t>(i);
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev) != 0) die("epoll_ctl", i, 0);
  }
  for (int i = 0; i < conns; ++i) send_next(cs[static_cast<std::size_t>(i)], i);

  std::vector<std::uint32_t> lat;
  lat.reserve(o.requests > 0 ? o.requests : 1u << 20);
  const std::uint64_t t_start = now_ns();
  const std::uint64_t warm_end = t_start + static_cast<std::uint64_t>(o.warmup_s * 1e9);
  // No warm-up: count from the first reply (syscall counts over exactly
  // `requests` replies, plus the connections' set-up).
  bool measuring = o.warmup_s <= 0;
  std::uint64_t window_start = t_start, window_end = 0, replies = 0;
  double cpu0 = measuring && o.server_pid > 0 ? process_cpu_s(o.server_pid) : 0;
  std::vector<epoll_event> evs(1024);
  for (;;) {
    const int n = epoll_wait(ep, evs.data(), static_cast<int>(evs.size()), 1000);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait", -1, 0);
    }
    if (n == 0) die("no reply for 1 s", -1, replies);
    const std::uint64_t t = now_ns();
    for (int k = 0; k < n; ++k) {
      const int id = static_cast<int>(evs[static_cast<std::size_t>(k)].data.u32);
      Conn& c = cs[static_cast<std::size_t>(id)];
      for (;;) {
        const ssize_t r = ::recv(c.fd, c.in + c.got, static_cast<std::size_t>(kMsg - c.got), 0);
        if (r > 0) {
          c.got += static_cast<int>(r);
          if (c.got < kMsg) continue;
          if (std::memcmp(c.in, c.out, kMsg) != 0) die("wrong byte in the echo", id, c.seq);
          if (measuring) {
            lat.push_back(static_cast<std::uint32_t>(std::min<std::uint64_t>(t - c.sent_ns, UINT32_MAX)));
            ++replies;
          }
          ++c.seq;
          send_next(c, id);
          break;  // level-triggered: a reply that raced in comes next round
        }
        if (r == 0) die("server closed the connection", id, c.seq);
        if (errno == EINTR) continue;
        if (errno == EAGAIN) break;
        die(std::strerror(errno), id, c.seq);
      }
    }
    const std::uint64_t t2 = now_ns();
    if (!measuring && t2 >= warm_end) {
      measuring = true;
      window_start = t2;
      if (o.server_pid > 0) cpu0 = process_cpu_s(o.server_pid);
    } else if (measuring && (o.requests > 0 ? replies >= o.requests
                                            : t2 - window_start >= static_cast<std::uint64_t>(o.measure_s * 1e9))) {
      window_end = t2;
      break;
    }
  }
  if (o.server_pid > 0) {
    res.server_cpu_s = process_cpu_s(o.server_pid) - cpu0;
    res.server_rss_kib_loaded = process_rss_kib(o.server_pid);
    res.kib_per_conn = (res.server_rss_kib_loaded - res.server_rss_kib_idle) / conns;
  }
  for (Conn& c : cs) ::close(c.fd);
  ::close(ep);
  res.window_s = static_cast<double>(window_end - window_start) / 1e9;
  res.requests = static_cast<double>(replies);
  res.rps = res.requests / res.window_s;
  res.rps_per_cpu = res.server_cpu_s > 0 ? res.requests / res.server_cpu_s : 0;
  res.p50_us = percentile(lat, 0.50);
  res.p99_us = percentile(lat, 0.99);
  res.max_us = lat.empty() ? 0 : *std::max_element(lat.begin(), lat.end()) / 1000.0;
  return res;
}

}  // namespace echo64
