// idle_conns: the idle keep-alive client of bench/http/idle_conns.sh
// (issue 44's idle-connection memory row). Opens CONNS connections to
// 127.0.0.1:PORT, at most kInFlight connecting or waiting for their answer
// at a time, sends one `GET / HTTP/1.1` on each and reads its whole
// response (a head, then Content-Length bytes), then keeps every
// connection open and idle. Once all have answered it prints
// `ready=CONNS` on stdout and waits for SIGTERM or SIGINT; then it checks
// each connection (poll, no wait: an open idle one has nothing to read)
// and prints `still_open=K`, and exits 0. With `connect`, it sends
// nothing: a connection is ready once connected (the server's side waits
// for its first request, having served none).
//
//   spindle_bench_idle_conns PORT CONNS [connect]
//
// Plain epoll, no spindle: the client's own memory is not the figure, and
// it must not share code with the server it measures. Any failure (a
// refused connection, a response over kMaxResponse, a close before the
// answer, kDeadline passed) prints a line on stderr and exits 1.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr int kInFlight = 128;                 // connections being set up at once
constexpr std::size_t kMaxResponse = 64 << 10;  // a hello answer is ~100 bytes
constexpr auto kDeadline = std::chrono::seconds(120);
constexpr int kMaxConns = 1'000'000;

constexpr std::string_view kRequest = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

struct Conn {
  int fd = -1;
  std::size_t sent = 0;
  std::string in;
  bool done = false;
};

[[noreturn]] void fail(const char* what, int err) {
  std::fprintf(stderr, "idle_conns: %s%s%s\n", what, err ? ": " : "", err ? std::strerror(err) : "");
  std::exit(1);
}

bool parse_int(const char* s, int lo, int hi, int& out) {
  const std::string_view v(s);
  const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
  return ec == std::errc{} && end == v.data() + v.size() && out >= lo && out <= hi;
}

// response_complete: the buffer holds a whole response (a head and its
// Content-Length bytes). Throws nothing; a head with no Content-Length
// counts as bodiless.
bool response_complete(const std::string& in) {
  const std::size_t head_end = in.find("\r\n\r\n");
  if (head_end == std::string::npos) return false;
  std::string head = in.substr(0, head_end);
  std::transform(head.begin(), head.end(), head.begin(), [](unsigned char c) { return std::tolower(c); });
  std::size_t len = 0;
  if (const std::size_t p = head.find("\r\ncontent-length:"); p != std::string::npos) {
    len = std::strtoul(head.c_str() + p + 17, nullptr, 10);
  }
  return in.size() >= head_end + 4 + len;
}

}  // namespace

int main(int argc, char** argv) {
  int port = 0, n = 0;
  const bool connect_only = argc == 4 && std::string_view(argv[3]) == "connect";
  if ((argc != 3 && !connect_only) || !parse_int(argv[1], 1, 65535, port) || !parse_int(argv[2], 1, kMaxConns, n)) {
    std::fprintf(stderr, "usage: %s PORT CONNS [connect] (CONNS 1..%d)\n", argv[0], kMaxConns);
    return 2;
  }
  rlimit rl{};
  getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max;
  setrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < static_cast<rlim_t>(n) + 16) fail("CONNS is above the open-file limit (ulimit -n)", 0);

  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  sigprocmask(SIG_BLOCK, &stop, nullptr);

  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

  const int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) fail("epoll_create1", errno);
  std::vector<Conn> conns(static_cast<std::size_t>(n));
  int started = 0, active = 0, finished = 0;
  const auto deadline = std::chrono::steady_clock::now() + kDeadline;
  std::vector<epoll_event> events(kInFlight);
  while (finished < n) {
    while (active < kInFlight && started < n) {
      Conn& c = conns[static_cast<std::size_t>(started)];
      c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (c.fd < 0) fail("socket", errno);
      if (::connect(c.fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 && errno != EINPROGRESS) {
        fail("connect", errno);
      }
      epoll_event ev{};
      ev.events = EPOLLOUT | EPOLLIN;
      ev.data.u32 = static_cast<std::uint32_t>(started);
      if (epoll_ctl(ep, EPOLL_CTL_ADD, c.fd, &ev) != 0) fail("epoll_ctl", errno);
      ++started;
      ++active;
    }
    if (std::chrono::steady_clock::now() > deadline) fail("the server did not answer every connection in time", 0);
    const int k = epoll_wait(ep, events.data(), kInFlight, 1000);
    if (k < 0 && errno != EINTR) fail("epoll_wait", errno);
    for (int i = 0; i < k; ++i) {
      Conn& c = conns[events[static_cast<std::size_t>(i)].data.u32];
      if (c.done) continue;
      if (connect_only) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) fail("connect", err);
        if (!(events[static_cast<std::size_t>(i)].events & EPOLLOUT)) continue;
        if (events[static_cast<std::size_t>(i)].events & (EPOLLIN | EPOLLHUP)) {
          fail("the server sent or closed before any request", 0);
        }
        epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
        c.done = true;
        --active;
        ++finished;
        continue;
      }
      if (c.sent < kRequest.size()) {
        const ssize_t w = ::send(c.fd, kRequest.data() + c.sent, kRequest.size() - c.sent, MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN) fail("send", errno);
        if (w > 0) c.sent += static_cast<std::size_t>(w);
        if (c.sent == kRequest.size()) {
          epoll_event ev{};
          ev.events = EPOLLIN;
          ev.data = events[static_cast<std::size_t>(i)].data;
          epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
        }
        continue;
      }
      char buf[4096];
      const ssize_t r = ::recv(c.fd, buf, sizeof buf, 0);
      if (r < 0 && errno == EAGAIN) continue;
      if (r < 0) fail("recv", errno);
      if (r == 0) fail("the server closed a connection before its answer", 0);
      c.in.append(buf, static_cast<std::size_t>(r));
      if (c.in.size() > kMaxResponse) fail("a response over 64 KiB", 0);
      if (!response_complete(c.in)) continue;
      if (c.in.compare(0, 12, "HTTP/1.1 200") != 0) fail("a response other than HTTP/1.1 200", 0);
      epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
      c.done = true;
      std::string().swap(c.in);
      --active;
      ++finished;
    }
  }
  std::printf("ready=%d\n", n);
  std::fflush(stdout);

  int sig = 0;
  sigwait(&stop, &sig);
  int open = 0;
  for (const Conn& c : conns) {
    pollfd p{c.fd, POLLIN | POLLRDHUP, 0};
    if (::poll(&p, 1, 0) == 0) ++open;  // no event: open and quiet
  }
  std::printf("still_open=%d\n", open);
  std::fflush(stdout);
  return 0;
}
