// hooks_test.cpp: io behaviour a test cannot provoke from outside, driven
// through io/src/test_hooks.hpp. This program alone compiles its own copy
// of tcp.cpp with SPINDLE_IO_TEST_HOOKS (tests/io/CMakeLists.txt).
//  - accept4 failing with the errnos accept(2) says to retry (a pending
//    network error of the connection, a firewall's EPERM): accept retries
//    them and returns the next connection; any other errno still throws.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <mutex>
#include <string>
#include <vector>

#include <spindle/io/all.hpp>

#include "io_test.hpp"
#include "spindle_test.hpp"
#include "test_hooks.hpp"

using namespace spindle_test;
namespace sp = spindle;
namespace io = spindle::io;
namespace hooks = spindle::io::detail::io_test_hooks;

namespace {

// ---- accept ---------------------------------------------------------------

// The errnos the accept hook injects, one per accept4 try, then none.
std::mutex inject_mu;
std::vector<int> to_inject;  // guarded by inject_mu; back() first
std::atomic<int> injected{0};

int inject_errno(hooks::Point p, int) {
  if (p != hooks::Point::accept) return 0;
  std::lock_guard lk(inject_mu);
  if (to_inject.empty()) return 0;
  const int e = to_inject.back();
  to_inject.pop_back();
  injected.fetch_add(1);
  return e;
}

void inject(std::vector<int> errnos) {
  std::lock_guard lk(inject_mu);
  to_inject.assign(errnos.rbegin(), errnos.rend());
  injected.store(0);
}

struct HookGuard {
  explicit HookGuard(hooks::Hook h) { hooks::hook.store(h); }
  ~HookGuard() { hooks::hook.store(nullptr); }
};

// One connection that waits in l's backlog (connect returns once the
// kernel completed the handshake, before any accept), its client end.
int queued_connection(const io::TcpListener& l) {
  const int fd = connect_loopback(l.local_endpoint().port());
  REQUIRE(fd >= 0);
  return fd;
}

}  // namespace

TEST_CASE("accept retries the network errnos accept(2) says to, and EPERM; any other still throws") {
  run_checked(2, [] {
    HookGuard g(inject_errno);
    auto l = io::TcpListener::bind("127.0.0.1", 0);
    const int c = queued_connection(l);
    std::vector<int> transient{ENETDOWN, EPROTO, ENOPROTOOPT, EHOSTDOWN,   ENONET,
                               EHOSTUNREACH, EOPNOTSUPP, ENETUNREACH, EPERM};
    inject(transient);
    // Before, the first of them threw out of accept (and ended the loop
    // of every server built on it).
    std::error_code ec;
    io::TcpStream s;
    try {
      s = l.accept();
    } catch (const std::system_error& e) {
      ec = e.code();
    }
    FIBER_CHECK(ec == std::error_code());
    FIBER_CHECK(injected.load() == static_cast<int>(transient.size()));
    FIBER_CHECK(::write(c, "hi", 2) == 2);
    char buf[2];
    if (s.is_open()) {
      s.read_exact(buf, 2);
      FIBER_CHECK(std::string(buf, 2) == "hi");
    }
    ::close(c);

    // One that persists: retried at once 8 times, then paced (1, 2, 4 ms
    // here); the connection behind it is still accepted.
    const int c2 = queued_connection(l);
    inject(std::vector<int>(12, EPERM));
    ec.clear();
    try {
      l.accept();
    } catch (const std::system_error& e) {
      ec = e.code();
    }
    FIBER_CHECK(ec == std::error_code());
    FIBER_CHECK(injected.load() == 12);

    // Any other errno is the listener's: thrown, the connection left queued.
    const int c3 = queued_connection(l);
    inject({EINVAL});
    ec.clear();
    try {
      l.accept();
    } catch (const std::system_error& e) {
      ec = e.code();
    }
    FIBER_CHECK(ec == std::errc::invalid_argument);
    FIBER_CHECK(l.accept().is_open());
    ::close(c2);
    ::close(c3);
  });
}
