// read_call.cpp: spindle_read_call, the cost of the syscalls a socket
// stream uses (io/src/stream_ops.hpp FdKind, io/src/raw_syscall.hpp). One
// thread, a loopback TCP pair with TCP_NODELAY: the client writes 64 bytes,
// the server side reads them and echoes them, the client reads the echo.
// Three ways for the server side, alternated run by run:
//   read/write  read(2) and write(2);
//   recv/send   glibc's recv(2) and send(2) (MSG_NOSIGNAL);
//   raw         the same two syscalls issued directly (raw_syscall.hpp's
//               sock_recv/sock_send, what a Release build's streams use).
// Only the server-side read and write are timed, each with steady_clock
// around the one call. A second thread sleeps meanwhile, so glibc takes its
// multi-threaded path around cancellation points as in a spindle worker.
//
// Usage: spindle_read_call [--rounds=N] [--runs=R]
//   Prints ns per read and per write for each way and run, and the medians.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "raw_syscall.hpp"  // io/src

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void die(const char* what) {
  std::perror(what);
  std::exit(1);
}

struct Pair {
  int client = -1, server = -1;
};

Pair loopback_pair() {
  const int l = socket(AF_INET, SOCK_STREAM, 0);
  if (l < 0) die("socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(l, 1) != 0 ||
      getsockname(l, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    die("bind/listen");
  }
  Pair p;
  p.client = socket(AF_INET, SOCK_STREAM, 0);
  if (p.client < 0 || connect(p.client, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die("connect");
  p.server = accept(l, nullptr, nullptr);
  if (p.server < 0) die("accept");
  close(l);
  const int one = 1;
  setsockopt(p.client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  setsockopt(p.server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return p;
}

struct Result {
  double read_ns, write_ns;
};

enum class Way { read_write, recv_send, raw };
constexpr int kWays = 3;
constexpr const char* kWayName[kWays] = {"read/write", "recv/send", "raw"};

ssize_t server_read(Way w, int fd, char* buf, std::size_t n) {
  switch (w) {
    case Way::read_write: return read(fd, buf, n);
    case Way::recv_send: return recv(fd, buf, n, 0);
    case Way::raw: return spindle::io::detail::sock_recv(fd, buf, n, 0);
  }
  return -1;
}

ssize_t server_write(Way w, int fd, const char* buf, std::size_t n) {
  switch (w) {
    case Way::read_write: return write(fd, buf, n);
    case Way::recv_send: return send(fd, buf, n, MSG_NOSIGNAL);
    case Way::raw: return spindle::io::detail::sock_send(fd, buf, n, MSG_NOSIGNAL);
  }
  return -1;
}

Result run(const Pair& p, Way way, int rounds) {
  char msg[64];
  std::memset(msg, 'x', sizeof msg);
  char buf[4096];
  double rd = 0, wr = 0;
  for (int i = 0; i < rounds; ++i) {
    if (write(p.client, msg, sizeof msg) != static_cast<ssize_t>(sizeof msg)) die("client write");
    const auto t0 = Clock::now();
    const ssize_t r = server_read(way, p.server, buf, sizeof buf);
    const auto t1 = Clock::now();
    if (r <= 0) die("server read");
    const ssize_t w = server_write(way, p.server, buf, static_cast<std::size_t>(r));
    const auto t2 = Clock::now();
    if (w != r) die("server write");
    std::size_t got = 0;
    while (got < static_cast<std::size_t>(r)) {
      const ssize_t c = read(p.client, buf, sizeof buf);
      if (c <= 0) die("client read");
      got += static_cast<std::size_t>(c);
    }
    rd += std::chrono::duration<double, std::nano>(t1 - t0).count();
    wr += std::chrono::duration<double, std::nano>(t2 - t1).count();
  }
  return {rd / rounds, wr / rounds};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 200000, runs = 5;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], "--rounds=", 9) == 0) {
      rounds = std::atoi(argv[i] + 9);
    } else if (std::strncmp(argv[i], "--runs=", 7) == 0) {
      runs = std::atoi(argv[i] + 7);
    } else {
      std::fprintf(stderr, "usage: %s [--rounds=N] [--runs=R]\n", argv[0]);
      return 2;
    }
  }
  if (rounds < 1 || runs < 1) {
    std::fprintf(stderr, "rounds and runs must be positive\n");
    return 2;
  }
  std::atomic<bool> stop{false};
  std::thread sleeper([&] {
    // relaxed: a flag that only ends this loop; join() orders the rest.
    while (!stop.load(std::memory_order_relaxed)) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  });
  const Pair p = loopback_pair();
  run(p, Way::read_write, rounds / 10 + 1);  // warm-up
  std::vector<double> rd[kWays], wr[kWays];
  for (int k = 0; k < runs; ++k) {
    for (int s = 0; s < kWays; ++s) {
      const Result r = run(p, static_cast<Way>(s), rounds);
      rd[s].push_back(r.read_ns);
      wr[s].push_back(r.write_ns);
      std::printf("run %d %-10s read %6.1f ns  write %7.1f ns\n", k + 1, kWayName[s], r.read_ns, r.write_ns);
    }
  }
  stop.store(true, std::memory_order_relaxed);
  sleeper.join();
  std::printf("median of %d runs of %d: read %.1f ns, recv %.1f ns (%.3fx); write %.1f ns, send %.1f ns (%.3fx)\n",
              runs, rounds, median(rd[0]), median(rd[1]), median(rd[1]) / median(rd[0]), median(wr[0]),
              median(wr[1]), median(wr[1]) / median(wr[0]));
  std::printf("raw against glibc's recv/send (raw_syscall.hpp%s): recv %.1f -> %.1f ns (%.3fx); send %.1f -> %.1f ns (%.3fx)\n",
              SPINDLE_IO_RAW_SYSCALLS ? "" : ", off in this build: both are glibc's", median(rd[1]), median(rd[2]),
              median(rd[2]) / median(rd[1]), median(wr[1]), median(wr[2]), median(wr[2]) / median(wr[1]));
  close(p.client);
  close(p.server);
}
