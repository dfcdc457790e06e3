// readiness_test.cpp: the rules of the reactor's readiness protocol
// (reactor.hpp, try_io.hpp; docs/io.md), one case each, written so that the
// case fails whenever its rule is broken, not only when a race happens to
// hit it (scripts/mutate.sh breaks each rule on purpose: the mutation named
// beside each case):
//  - accept keeps readiness after a connection it took: under edge
//    triggering one event announces a whole burst (accept_clears_readiness);
//  - Dir::clear_ready clears only the readiness it saw: an event since (a
//    new tick) keeps it (clear_ready_ignores_tick);
//  - the hang-up bit is sticky: the read that takes the last data clears
//    readiness, not the end of stream behind it (hup_not_sticky);
//  - follow adds a socket to its new worker's instance before it deletes
//    it from the old one, so a failed move leaves it registered where it
//    was (follow_deletes_before_adding);
//  - close waits for the syscalls in flight on its descriptor before it
//    closes the fd (close_skips_inflight_wait).
//
// The last two need a syscall to fail or to stay in flight on demand. The
// library calls epoll_ctl, accept4 and sched_yield through libc and is
// linked statically, so this binary's own definitions of them take the
// library's calls (the fault hooks below: a plain pass-through to the
// syscall unless a case arms them). Not under TSan: its interceptors of
// the same functions model the happens-before edges the library relies on
// (an epoll_ctl releases, the epoll_wait that reports it acquires), and a
// definition here would replace them for the whole binary. Those two cases
// are skipped there; the dev and ASan builds run them.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <spindle/io/all.hpp>
#include <spindle/spindle.hpp>

#include "io_test.hpp"
#include "reactor.hpp"  // io/src: Dir, the per-direction state word

using namespace spindle_test;
namespace sp = spindle;
namespace io = spindle::io;
using io::detail::Dir;

#if defined(SPINDLE_TEST_TSAN)
#define READINESS_FAULT_HOOKS 0
#else
#define READINESS_FAULT_HOOKS 1
#endif

namespace {

// Faults: what the hooks below are armed with; any thread, atomics.
struct Faults {
  // The next EPOLL_CTL_ADD of this fd fails with ENOMEM (once; -1: none).
  std::atomic<int> fail_add_fd{-1};
  std::atomic<int> failed_adds{0};
  // The next accept4 stays in flight (before its syscall) until the closer
  // is seen waiting (it yields its thread while in close) or has returned
  // from close.
  std::atomic<bool> hold_accept{false};
  std::atomic<bool> in_accept{false};
  std::atomic<long> closer_tid{0};
  std::atomic<bool> in_close{false};
  std::atomic<bool> close_returned{false};
  std::atomic<int> closer_yields{0};
  // The held accept4 found its descriptor's close already returned.
  std::atomic<bool> closed_under_syscall{false};
};
[[maybe_unused]] constinit Faults g_faults;

[[maybe_unused]] long tid() noexcept { return ::syscall(SYS_gettid); }

// accept_queue: connections the kernel has completed and queued on a
// listening socket (TCP_INFO's tcpi_unacked is the accept queue's length
// for a listener).
unsigned accept_queue(int fd) {
  tcp_info ti{};
  socklen_t len = sizeof ti;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0) return 0;
  return ti.tcpi_unacked;
}

std::uint64_t state_word(std::uint32_t gen, std::uint64_t flags) {
  return (std::uint64_t{gen} << Dir::kGenShift) | flags;
}

}  // namespace

#if READINESS_FAULT_HOOKS
// The hooks. Each is the libc function of the same name as far as anyone
// but an armed case can tell: the raw syscall, errno set by syscall().
extern "C" int epoll_ctl(int epfd, int op, int fd, epoll_event* ev) noexcept {
  if (op == EPOLL_CTL_ADD && fd >= 0) {
    int armed = fd;
    if (g_faults.fail_add_fd.compare_exchange_strong(armed, -1)) {
      g_faults.failed_adds.fetch_add(1);
      errno = ENOMEM;
      return -1;
    }
  }
  return static_cast<int>(::syscall(SYS_epoll_ctl, epfd, op, fd, ev));
}

extern "C" int accept4(int fd, sockaddr* __restrict addr, socklen_t* __restrict len, int flags) {
  if (g_faults.hold_accept.exchange(false)) {
    // In flight: the caller holds its Inflight guard. Released as soon as
    // the closer yields its thread inside close (it waits for us: the rule
    // holds) or returns from close (it did not wait: the rule is broken).
    // The bound only keeps a broken build from hanging here.
    g_faults.in_accept = true;
    const auto give_up = std::chrono::steady_clock::now() + slack(std::chrono::seconds(5));
    for (;;) {
      if (g_faults.close_returned.load()) {
        g_faults.closed_under_syscall = true;
        break;
      }
      if (g_faults.closer_yields.load() > 0) break;
      if (std::chrono::steady_clock::now() > give_up) break;
      spin(100);
    }
  }
  return static_cast<int>(::syscall(SYS_accept4, fd, addr, len, flags));
}

// The reactor's close spins on in-flight syscalls with backoff(), which
// yields the thread after a few pauses: the closer's yields while it is in
// close are what says "close is waiting".
extern "C" int sched_yield() noexcept {
  if (g_faults.in_close.load(std::memory_order_relaxed) && g_faults.closer_tid.load() == tid()) {
    g_faults.closer_yields.fetch_add(1);
  }
  return static_cast<int>(::syscall(SYS_sched_yield));
}
#endif

// accept_clears_readiness. One worker, so nothing polls the listener's
// instance while this fiber runs: the burst of connections queued before
// the first accept is announced by at most two readiness events (the one
// that found the listener idle, and one more if the last handshake ended
// just after the worker fetched it). An accept that cleared readiness
// after each connection would take one or two of the eight and then wait
// for an event that never comes; bounded here so that it fails instead.
TEST_CASE("accept takes every connection of a burst that one readiness event announced") {
  run_checked(1, [] {
    constexpr unsigned kBurst = 8;
    auto l = io::TcpListener::bind("127.0.0.1", 0);
    const std::uint16_t port = l.local_endpoint().port();
    const int lfd = listener_fd(port);
    FIBER_CHECK(lfd >= 0);
    std::vector<int> clients;
    // Blocking connects: the kernel completes each handshake (the
    // listener's backlog holds them) without an accept.
    for (unsigned i = 0; i < kBurst; ++i) clients.push_back(connect_loopback(port));
    FIBER_CHECK(wait_until([&] { return accept_queue(lfd) == kBurst; }));
    unsigned accepted = 0;
    try {
      sp::with_timeout(slack(std::chrono::seconds(2)), [&] {
        for (unsigned i = 0; i < kBurst; ++i) {
          io::TcpStream s = l.accept();
          ++accepted;
        }
      });
    } catch (const sp::TimedOut&) {
    }
    FIBER_CHECK(accepted == kBurst);
    for (int fd : clients) ::close(fd);
  });
}

// clear_ready_ignores_tick. The window it guards (an event between the
// load of the state and the EAGAIN's clear) is a few instructions wide in
// a real read, so the rule is checked on the state word itself: a Dir
// alone, events given with signal as the poller gives them.
TEST_CASE("Dir: clear_ready clears the readiness it saw, never one that an event brought since") {
  constexpr std::uint32_t gen = 7;
  Dir d;
  d.state.store(state_word(gen, Dir::kReady));
  // The syscall saw EAGAIN after `seen`; an event came meanwhile: its
  // readiness must stay, or the data it announced waits for another edge.
  std::uint64_t seen = d.state.load();
  d.signal(gen, false, false);
  d.clear_ready(seen);
  CHECK(Dir::ready(d.state.load()));
  // No event since: cleared.
  seen = d.state.load();
  d.clear_ready(seen);
  CHECK_FALSE(Dir::ready(d.state.load()));
  // The same with the event arriving while ready from an earlier one.
  d.signal(gen, false, false);
  seen = d.state.load();
  d.signal(gen, false, false);
  d.signal(gen, false, false);
  d.clear_ready(seen);
  CHECK(Dir::ready(d.state.load()));
  // An event of a recycled slot (another generation) changes nothing.
  seen = d.state.load();
  d.signal(gen + 1, false, false);
  d.clear_ready(seen);
  CHECK_FALSE(Dir::ready(d.state.load()));
}

// hup_not_sticky, on the state word: the clear of a short read takes
// kReady only.
TEST_CASE("Dir: the hang-up bit survives clear_ready") {
  constexpr std::uint32_t gen = 3;
  Dir d;
  d.state.store(state_word(gen, 0));
  d.signal(gen, false, true);  // data and FIN (or an error) in one event
  const std::uint64_t seen = d.state.load();
  REQUIRE((seen & Dir::kHup) != 0);
  d.clear_ready(seen);
  CHECK((d.state.load() & Dir::kHup) != 0);
  CHECK(Dir::ready(d.state.load()));
}

// hup_not_sticky, end to end. One worker and an AF_UNIX pair, whose write
// and shutdown take effect on the reader's socket inside the syscalls: the
// reader is parked before the peer writes and shuts down, and this fiber
// does both without suspending, so the worker's next poll reports data and
// end of stream as one event. The read of the data is short, which clears
// readiness; the end of stream behind it must still be seen, by the next
// read at once. Were it cleared too, that read would wait for an event
// that never comes (bounded here).
TEST_CASE("the end of stream that came in one event with the last data is read after it") {
  run_checked(1, [] {
    auto [ends, peers] = socketpair_streams(1);
    io::FdStream& in = ends[0];
    auto reader = sp::spawn([&in] {
      char buf[64];
      FIBER_CHECK(in.read_some(buf, sizeof buf) == 5);  // short: clears readiness
      std::size_t end = 99;
      try {
        end = sp::with_timeout(slack(std::chrono::seconds(2)), [&] { return in.read_some(buf, sizeof buf); });
      } catch (const sp::TimedOut&) {
      }
      FIBER_CHECK(end == 0);
    });
    wait_suspended(reader, "io read");
    FIBER_CHECK(::write(peers[0], "hello", 5) == 5);
    FIBER_CHECK(::shutdown(peers[0], SHUT_WR) == 0);
    reader.join();
    ::close(peers[0]);
  });
}

// follow_deletes_before_adding. The reader's socket lives on worker 0; this
// fiber keeps worker 0 busy until worker 1 has rescued the reader (as in
// spread_test's "moves to the fiber's new worker"), whose next wait then
// moves the socket to worker 1: the hook makes that EPOLL_CTL_ADD fail (as
// ENOMEM or ENOSPC would). ADD first, the socket is still in worker 0's
// instance, and the next byte wakes the reader from there; DEL first, it
// would be in no instance at all, and no readiness would ever come again.
TEST_CASE("a socket whose move to another worker's instance fails stays registered where it was") {
#if !READINESS_FAULT_HOOKS
  WARN("skipped: needs the fault hooks, not built under TSan");
#else
  auto o = options(2);
  o.consolidate_io = false;  // the rescue's move alone (the io mechanism), as in spread_test
  run_checked(o, [&] {
    sp::detail::hop_to_worker(0);  // the controller stays on worker 0
    auto [ends, peers] = socketpair_streams(1);  // registered with worker 0
    io::FdStream& in = ends[0];
    const int handle = in.native_handle();
    std::atomic<int> reads{0};
    std::error_code failure;
    sp::Event first;
    auto reader = sp::spawn([&] {
      try {
        for (int k = 0; k < 3; ++k) {
          char c;
          FIBER_CHECK(in.read_some(&c, 1) == 1);
          reads.fetch_add(1);
          if (k == 0) first.set();
        }
      } catch (const std::system_error& e) {
        failure = e.code();
      }
    });
    FIBER_CHECK(::write(peers[0], "a", 1) == 1);
    first.wait();
    g_faults.fail_add_fd = handle;
    // Worker 0 stuck in this fiber until another worker ran the reader.
    FIBER_CHECK(::write(peers[0], "b", 1) == 1);
    const auto give_up = std::chrono::steady_clock::now() + slack(std::chrono::seconds(10));
    while (reads.load() < 2 && std::chrono::steady_clock::now() < give_up) spin(100);
    FIBER_CHECK(reads.load() == 2);
    // The reader's next wait tried the move, and it failed.
    FIBER_CHECK(wait_until([&] { return g_faults.failed_adds.load() == 1; }));
    wait_suspended(reader, "io read");
    FIBER_CHECK(epoll_instances_holding(handle) == 1);
    FIBER_CHECK(::write(peers[0], "c", 1) == 1);
    const bool woke = wait_until([&] { return reads.load() == 3; }, slack(std::chrono::seconds(2)));
    FIBER_CHECK(woke);
    if (!woke) in.close();  // lost: end the reader's wait (operation_canceled)
    reader.join();
    FIBER_CHECK(!failure);
    g_faults.fail_add_fd = -1;
    ::close(peers[0]);
    sp::detail::unpin();
  });
#endif
}

// close_skips_inflight_wait. An accept4 held in flight by the hook on
// worker 1 while this fiber closes the listener on worker 0: close must
// wait for it (the fd, and its number, stay the syscall's until it
// returns), so the syscall finds the socket open, and the accept reports
// the close (operation_canceled). Were the fd closed under it, the
// syscall would run on a closed (or reused) descriptor number.
TEST_CASE("close waits for a syscall in flight on its descriptor before closing the fd") {
#if !READINESS_FAULT_HOOKS
  WARN("skipped: needs the fault hooks, not built under TSan");
#else
  run_checked(2, [] {
    sp::detail::hop_to_worker(0);
    auto l = io::TcpListener::bind("127.0.0.1", 0);  // starts ready: accept calls accept4 at once
    g_faults.hold_accept = true;
    std::error_code accept_error;
    auto acceptor = sp::spawn([&] {
      sp::detail::hop_to_worker(1);
      accept_error = code_of([&] { (void)l.accept(); });
      sp::detail::unpin();
    });
    FIBER_CHECK(wait_until([] { return g_faults.in_accept.load(); }));
    g_faults.closer_tid = tid();
    g_faults.in_close = true;
    l.close();
    g_faults.in_close = false;
    g_faults.close_returned = true;
    acceptor.join();
    FIBER_CHECK(!g_faults.closed_under_syscall.load());
    FIBER_CHECK(accept_error == std::errc::operation_canceled);
    sp::detail::unpin();
  });
#endif
}
