// stress_test.cpp: 10,000 concurrent TCP connections. The clients run in a
// child process (forked before either process starts a runtime), so each
// process needs about 10,000 descriptors rather than 20,000; the test
// raises RLIMIT_NOFILE to the hard limit and skips, saying why, when that
// is too low. Every client holds its connection open until all of them are
// connected, so the server sees them all at once, then runs sequence-checked
// round trips and closes.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <string>

#include <spindle/io/all.hpp>
#include <spindle/sync/all.hpp>

#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;
namespace io = spindle::io;

namespace {

// TSan keeps shadow state per fiber and per socket: 2,000 there.
constexpr std::size_t kConnections = kTsan ? 2000 : 10000;
constexpr std::size_t kRounds = 3;

std::string message(std::size_t c, std::size_t r) {
  return std::to_string(c) + ":" + std::to_string(r) + std::string(1 + (c + r) % 100, '.');
}

// The client process: exit status 0 when every connection made every round
// trip, 1 otherwise.
[[noreturn]] void client_main(int port_pipe) {
  std::uint16_t port = 0;
  const bool got_port = ::read(port_pipe, &port, sizeof port) == sizeof port;
  std::atomic<std::size_t> ok{0};
  if (got_port) {
    sp::run(
        [&] {
          std::atomic<std::size_t> connected{0};
          sp::Event all_connected;
          sp::TaskGroup g;
          for (std::size_t c = 0; c < kConnections; ++c) {
            g.spawn([&, c] {
              try {
                auto s = io::TcpStream::connect(io::Endpoint("127.0.0.1", port));
                if (connected.fetch_add(1) + 1 == kConnections) all_connected.set();
                all_connected.wait();
                for (std::size_t r = 0; r < kRounds; ++r) {
                  const std::string out = message(c, r);
                  s.write_all(out);
                  std::string in(out.size(), '\0');
                  s.read_exact(in.data(), in.size());
                  if (in != out) return;
                }
                ok.fetch_add(1);
              } catch (const std::exception& e) {
                std::fprintf(stderr, "stress client %zu: %s\n", c, e.what());
                // A failed connect would leave the others waiting forever.
                all_connected.set();
              }
            });
          }
          g.wait();
        },
        options(2));
  }
  std::fflush(stderr);
  ::_exit(ok.load() == kConnections ? 0 : 1);
}

}  // namespace

TEST_CASE("10,000 concurrent connections") {
  rlimit lim{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &lim) == 0);
  const rlim_t need = kConnections + 256;  // sockets, epoll and pipes, stdio
  if (lim.rlim_max != RLIM_INFINITY && lim.rlim_max < need) {
    WARN("skipped: RLIMIT_NOFILE hard limit " << lim.rlim_max << " is below the " << need << " this test needs");
    return;
  }
  const rlimit saved = lim;
  lim.rlim_cur = lim.rlim_max == RLIM_INFINITY ? need : std::max<rlim_t>(need, std::min<rlim_t>(lim.rlim_max, need));
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &lim) == 0);

  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  // Forked while this process has no runtime (no other threads): the child
  // starts its own.
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(p[1]);
    client_main(p[0]);
  }
  ::close(p[0]);

  std::atomic<std::size_t> live{0}, echoed{0};
  std::size_t live_at_gate = 0;
  run_checked(2, [&] {
    auto l = io::TcpListener::bind(io::Endpoint("127.0.0.1", 0), {.backlog = 4096});
    const std::uint16_t port = l.local_endpoint().port();
    FIBER_CHECK(::write(p[1], &port, sizeof port) == sizeof port);
    sp::TaskGroup conns;
    // The server side holds too: no connection is served (so none ends)
    // until all are accepted, so all are open at once on both sides.
    sp::Event all_accepted;
    for (std::size_t i = 0; i < kConnections; ++i) {
      io::TcpStream s = l.accept();
      live.fetch_add(1);
      conns.spawn([&, s = std::move(s)]() mutable {
        all_accepted.wait();
        char buf[256];
        try {
          for (;;) {
            const std::size_t n = s.read_some(buf, sizeof buf);
            if (n == 0) break;
            s.write_all(buf, n);
            echoed.fetch_add(n, std::memory_order_relaxed);
          }
        } catch (const std::system_error& e) {
          FIBER_CHECK(e.code() == std::errc::connection_reset);
        }
        s.close();
        live.fetch_sub(1);
      });
    }
    live_at_gate = live.load();
    all_accepted.set();
    conns.wait();
  });
  ::close(p[1]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  ::setrlimit(RLIMIT_NOFILE, &saved);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  CHECK(live_at_gate == kConnections);
  std::size_t expect = 0;
  for (std::size_t c = 0; c < kConnections; ++c) {
    for (std::size_t r = 0; r < kRounds; ++r) expect += message(c, r).size();
  }
  CHECK(echoed.load() == expect);
  CHECK(live.load() == 0);
}
