// spread_test.cpp: fibers woken by one worker's I/O readiness stay on that
// worker while they are short (worker.hpp, core_.polled: a thief would run
// them on a cold core and park again), but when each runs long enough that
// the ones queued behind it wait while another worker idles, the idle one
// takes some (the slow rule, runtime/src/placement.hpp, rule 2). Every socket of the first case is registered with worker
// 0, so every readiness wake queues its fiber there; only a hand-off moves
// one. The second case: accepted connections, registered with the workers
// in turn. The last two: a socket follows a fiber that a hand-off or a
// stuck worker's rescue moved (Reactor::follow), and a worker saturated by
// short fibers spreads its connections (placement.hpp, rule 3). Each runs
// the shipped policy but the mechanism test (see there).
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <spindle/io/all.hpp>
#include <spindle/runtime/detail/introspect.hpp>
#include <spindle/spindle.hpp>

#include "io_test.hpp"

using namespace spindle_test;
namespace sp = spindle;
namespace io = spindle::io;

namespace {
// Computes for `d` without suspending: less than handoff_after (200 us), so
// no single fiber counts as stuck.
void compute_for(std::chrono::microseconds d) {
  const auto until = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < until) spin(100);
}
}  // namespace

TEST_CASE("fibers that compute after each readiness wake are spread over the workers") {
  constexpr int kConns = 8;
  constexpr int kRounds = 20;
  std::array<std::atomic<int>, 2> computed_on{};
  run_checked(options(2), [&] {
    // Registered with worker 0 (Reactor::open uses the caller's worker).
    sp::detail::hop_to_worker(0);
    auto [ends, peers] = socketpair_streams(kConns);
    sp::detail::unpin();
    // Each round: one byte to every connection at once, so worker 0's next
    // poll wakes all six readers into its polled FIFO, and each computes
    // 100 us when its turn comes. The last of a round sets the round's
    // event (one wake, so this fiber adds almost no switches).
    std::atomic<int> done{0};
    std::vector<sp::Event> round_done(kRounds);
    std::vector<sp::Task<void>> readers;
    for (int i = 0; i < kConns; ++i) {
      readers.push_back(sp::spawn([&, i] {
        for (int r = 0; r < kRounds; ++r) {
          char c;
          FIBER_CHECK(ends[i].read_some(&c, 1) == 1);
          const int w = sp::this_fiber::worker_index();
          FIBER_CHECK(w == 0 || w == 1);
          if (w == 0 || w == 1) computed_on[w].fetch_add(1);
          compute_for(std::chrono::microseconds(150));
          if (done.fetch_add(1) + 1 == kConns * (r + 1)) round_done[r].set();
        }
      }));
    }
    for (int r = 0; r < kRounds; ++r) {
      for (int fd : peers) FIBER_CHECK(::write(fd, "x", 1) == 1);
      round_done[r].wait();
    }
    for (auto& t : readers) t.join();
    for (int fd : peers) ::close(fd);
  });
  const int on0 = computed_on[0].load(), on1 = computed_on[1].load();
  INFO("requests computed on worker 0: " << on0 << ", on worker 1: " << on1);
  CHECK(on0 + on1 == kConns * kRounds);
  // Without the rule worker 1 computes only first requests, of readers it
  // stole at their spawn (at most one a connection): measured 2-4 in dev
  // and TSan builds. With it: 40-48 in dev, 20-33 under TSan; 66-83 in
  // both since a reader's socket follows it (Reactor::follow), which keeps
  // a reader that was handed over on its new worker.
  CHECK(on1 > kConns);
}

// Accepted connections: TcpListener::accept registers each with the next
// worker's epoll instance (ListenOptions::spread), so a server whose
// acceptor runs on one worker still serves on all of them. Before, every
// connection lived on the acceptor's worker and the others idled however
// busy it was (a 2-worker echo server: one worker 95% of a core, the
// other 3%). The client is a plain thread with blocking sockets, so only
// the server's fibers are on the workers.
TEST_CASE("accepted connections are served on every worker") {
  constexpr int kConns = 8;
  constexpr int kRounds = 10;
  const unsigned workers = GENERATE(2u, 4u);
  const bool spread = GENERATE(true, false);
  INFO("workers " << workers << ", spread " << spread);
  std::vector<std::atomic<int>> served(workers);
  std::thread client;
  JoinOnExit join{client};
  // Hand-offs off: a worker that looks stuck (a thread preempted for a
  // period, common with 4 workers and the client on 2 vCPUs under ASan)
  // would give up its connections, and their sockets follow them
  // (Reactor::follow; the last two cases). This case is about where
  // accept puts them.
  sp::RuntimeOptions ro;
  ro.workers = workers;
  ro.handoff_after = std::chrono::microseconds(0);
  run_checked(ro, [&] {
    io::ListenOptions lo;
    lo.spread = spread;
    auto listener = io::TcpListener::bind(io::Endpoint("127.0.0.1", 0), lo);
    const std::uint16_t port = listener.local_endpoint().port();
    client = std::thread([port] {
      std::vector<int> fds;
      for (int i = 0; i < kConns; ++i) fds.push_back(connect_loopback(port));
      // One byte to every connection, then every echo: kConns requests in
      // flight at once, each answered by its connection's fiber.
      for (int r = 0; r < kRounds; ++r) {
        for (int fd : fds) FIBER_CHECK(::write(fd, "x", 1) == 1);
        for (int fd : fds) {
          char c = 0;
          FIBER_CHECK(::read(fd, &c, 1) == 1 && c == 'x');
        }
      }
      for (int fd : fds) ::close(fd);
    });
    // The acceptor and so every accept() run on worker 0.
    sp::detail::hop_to_worker(0);
    sp::TaskGroup conns;
    for (int i = 0; i < kConns; ++i) {
      conns.spawn([&, s = listener.accept()]() mutable {
        for (int r = 0; r < kRounds; ++r) {
          char c;
          FIBER_CHECK(s.read_some(&c, 1) == 1);
          // Round 0 may find its byte without waiting, on whichever worker
          // ran the new fiber; every later read waited for readiness.
          const int w = sp::this_fiber::worker_index();
          if (r > 0 && w >= 0 && w < static_cast<int>(workers)) served[static_cast<unsigned>(w)].fetch_add(1);
          s.write_all(&c, 1);
        }
        char c;
        FIBER_CHECK(s.read_some(&c, 1) == 0);  // the client closed
      });
    }
    sp::detail::unpin();
    conns.wait();
  });
  int total = 0;
  for (unsigned w = 0; w < workers; ++w) {
    INFO("worker " << w << " served " << served[w].load() << " reads");
    total += served[w].load();
  }
  CHECK(total == kConns * (kRounds - 1));
  if (spread) {
    // kConns / workers connections live on each worker; half the fair
    // share is far from what a missing spread gives (about zero).
    for (unsigned w = 0; w < workers; ++w) {
      INFO("worker " << w << " served " << served[w].load() << " of " << total);
      CHECK(served[w].load() * static_cast<int>(workers) * 2 >= total);
    }
  } else {
    INFO("worker 0 served " << served[0].load() << " of " << total);
    CHECK(served[0].load() * 2 > total);
  }
}

// A socket follows its fiber when a stuck worker gives the fiber up
// (Reactor::follow; docs/io.md "Where a connection lives"). The socket is
// registered with worker 0; worker 0 then computes without suspending
// until worker 1, its watcher, has polled worker 0's instance and run the
// reader (the rescue of a stuck worker, handoff.cpp). The reader's next
// wait moves the socket to worker 1's instance, so every later readiness
// wakes it on worker 1, though worker 0 is idle again. Without the move
// each of those wakes would come from worker 0's instance and run there.
TEST_CASE("a socket whose fiber a stuck worker gave up moves to the fiber's new worker") {
  constexpr int kAfter = 5;
  std::vector<int> read_on;  // the reader's worker at each read; reader only
  std::atomic<int> reads{0};
  std::vector<sp::Event> got(2 + kAfter);
  int handle = -1;
  // The io mechanism, not the policy: with consolidation (the default),
  // worker 1, lightly loaded, would rightly move the socket back to worker
  // 0 at one of the reader's next waits, and which wait depends on its
  // load windows. The policy's side is placement_test's.
  auto o = options(2);
  o.consolidate_io = false;
  run_checked(o, [&] {
    sp::detail::hop_to_worker(0);  // the controller stays on worker 0
    auto [ends, peers] = socketpair_streams(1);  // registered with worker 0
    handle = ends[0].native_handle();
    auto reader = sp::spawn([&] {
      for (int k = 0; k < 2 + kAfter; ++k) {
        char c;
        FIBER_CHECK(ends[0].read_some(&c, 1) == 1);
        read_on.push_back(sp::this_fiber::worker_index());
        reads.fetch_add(1);
        got[static_cast<std::size_t>(k)].set();
      }
    });
    // 1: worker 0 is free.
    FIBER_CHECK(::write(peers[0], "a", 1) == 1);
    got[0].wait();
    // 2: worker 0 stuck in this fiber until another worker ran the reader.
    FIBER_CHECK(::write(peers[0], "b", 1) == 1);
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (reads.load() < 2 && std::chrono::steady_clock::now() < give_up) spin(100);
    FIBER_CHECK(reads.load() == 2);
    got[1].wait();
    // 3: worker 0 idle again (this fiber waits); the socket's readiness
    // must now come from worker 1's instance.
    for (int k = 2; k < 2 + kAfter; ++k) {
      FIBER_CHECK(::write(peers[0], "c", 1) == 1);
      got[static_cast<std::size_t>(k)].wait();
    }
    reader.join();
    // The move leaves the socket in exactly one instance (ADD, then DEL).
    FIBER_CHECK(epoll_instances_holding(handle) == 1);
    ::close(peers[0]);
    sp::detail::unpin();
  });
  REQUIRE(read_on.size() == 2 + kAfter);
  // read_on[0] is either: the reader may first run (and find its byte) on
  // a worker that stole it at its spawn.
  CHECK(read_on[1] == 1);
  for (int k = 2; k < 2 + kAfter; ++k) {
    INFO("read " << k);
    CHECK(read_on[static_cast<std::size_t>(k)] == 1);
  }
}

// A worker that serves its connections without a pause is saturated
// (placement.hpp, rule 3: awake kSaturatedPeriods holding readiness-woken
// fibers): its watcher spreads its connections, asking it for the fibers
// its readiness woke, however short each runs, and the sockets of those it
// takes follow them. Sixteen connections registered with worker 0, each
// request costing the server ~10 us (less than a slow fiber's 25 us), and
// a plain-thread client that keeps every connection busy: worker 0 never
// parks. The shipped policy (consolidation on), with a core to spare:
// the spread is a trial whose verdict depends on the machine (ctest -j2, a
// client thread), and the connections may consolidate back, so how many
// stay on worker 1 depends on the machine; that the rule fires and moves
// connections does not. The share a spread buys with a free core is
// placement_test's to check (scripted snapshots).
// The saturated worker of the two cases below: sixteen connections
// registered with worker 0, served for 600 ms by a plain-thread client
// that keeps every one busy. Returns how many requests each worker served
// and the runtime's stats.
struct Saturated {
  int on0 = 0, on1 = 0;
  sp::Stats stats;
};
Saturated saturate_worker_0() {
  constexpr int kConns = 16;
  std::array<std::atomic<int>, 2> served_on{};
  std::thread client;
  JoinOnExit join{client};
  sp::Stats stats;
  run_checked(options(2), [&] {
    sp::detail::hop_to_worker(0);
    auto [ends, peers] = socketpair_streams(kConns);  // registered with worker 0
    sp::detail::unpin();
    client = std::thread([&, peers = peers] {
      for (int fd : peers) FIBER_CHECK(::write(fd, "x", 1) == 1);
      const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(600);
      while (std::chrono::steady_clock::now() < end) {
        for (int fd : peers) {
          char c = 0;
          FIBER_CHECK(::read(fd, &c, 1) == 1);
          FIBER_CHECK(::write(fd, "x", 1) == 1);
        }
      }
      for (int fd : peers) ::shutdown(fd, SHUT_WR);
    });
    sp::TaskGroup servers;
    for (int i = 0; i < kConns; ++i) {
      servers.spawn([&, i] {
        for (;;) {
          char c;
          if (ends[static_cast<std::size_t>(i)].read_some(&c, 1) == 0) return;
          const int w = sp::this_fiber::worker_index();
          if (w == 0 || w == 1) served_on[static_cast<std::size_t>(w)].fetch_add(1);
          compute_for(std::chrono::microseconds(10));
          ends[static_cast<std::size_t>(i)].write_all(&c, 1);
        }
      });
    }
    servers.wait();
    client.join();
    for (int fd : peers) ::close(fd);
    stats = sp::current_stats();
  });
  return {served_on[0].load(), served_on[1].load(), stats};
}

// Restores the kernel's answer to "a core to spare?" at scope exit.
struct SpareCpuAs {
  explicit SpareCpuAs(int v) { sp::detail::override_spare_cpu(v); }
  ~SpareCpuAs() { sp::detail::override_spare_cpu(-1); }
};

TEST_CASE("a saturated worker's connections move to an idle worker") {
  // The machine has a core to spare (placement.hpp, SpareCpu): on this
  // test's own machine the client thread and worker 0 may keep every core
  // busy, and then no spread opens (the next case).
  SpareCpuAs spare{1};
  Saturated r = saturate_worker_0();
  // Up to three trials, as the consolidation case below: beside another
  // test suite on the same 2 cores (2026-12-01, ASan beside TSan) worker 1
  // spread twice and worker 0 handed off 20 fibers, but worker 1's thread
  // got no core before worker 0 took them back (worker 1: 0 switches).
  // Without the rule every trial spreads nothing.
  for (int retry = 0; retry < 2 && r.on1 == 0; ++retry) {
    WARN("trial " << retry + 1 << " moved nothing (worker 0: " << r.on0 << " requests)\n" << r.stats << "again");
    r = saturate_worker_0();
  }
  INFO("requests served on worker 0: " << r.on0 << ", on worker 1: " << r.on1 << "\n" << r.stats);
  REQUIRE(r.on0 + r.on1 > 0);
  // The rule fired (worker 1 watching worker 0) ...
  CHECK(r.stats.workers.at(1).spreads >= 1);
  // ... and moved connections: worker 1 served requests. Without the rule
  // (mutate.sh saturation_never_spreads) no spread is counted.
  CHECK(r.on1 > 0);
}

TEST_CASE("a saturated worker's connections stay while no core is spare") {
  // Every core busy (SpareCpu says none idle): a spread could not buy a
  // core, so none opens. Without the check (mutate.sh
  // spread_ignores_spare_cpu) the watcher spreads as in the case above.
  SpareCpuAs spare{0};
  const Saturated r = saturate_worker_0();
  INFO("requests served on worker 0: " << r.on0 << ", on worker 1: " << r.on1 << "\n" << r.stats);
  REQUIRE(r.on0 + r.on1 > 0);
  CHECK(r.stats.total().spreads == 0);
}

// Consolidation (runtime/src/placement.hpp, rule 5): connections that two workers serve
// while one would keep up with them move to one worker's epoll instance.
// Eight connections, four registered with each worker, and a plain-thread
// client sending each one byte every 2 ms: a few thousand trivial requests
// a second, far below the light-load bound (the two workers' time on a
// core adding up to half a core). Worker 1 consolidates to worker 0 (always
// toward the lower index), so after the first load windows (10 ms each)
// worker 1 serves next to nothing. Without consolidation each connection
// stays where it was registered and worker 1 serves more than a tenth.
namespace {

struct LightSplit {
  int on0 = 0, on1 = 0;  // reads in the trial's last 200 ms on worker 0, 1
};

// light_trial: one run of the case below.
LightSplit light_trial(bool consolidate) {
  constexpr int kConns = 8;
  std::array<std::atomic<int>, 2> late_on{};  // reads in the last 200 ms
  std::atomic<bool> late{false};
  std::thread client;
  JoinOnExit join{client};
  auto o = options(2);
  o.consolidate_io = consolidate;
  run_checked(o, [&] {
    std::vector<io::FdStream> ends;
    std::vector<int> peers;
    for (int w = 0; w < 2; ++w) {
      sp::detail::hop_to_worker(static_cast<unsigned>(w));
      auto half = socketpair_streams(kConns / 2);  // registered with worker w
      for (auto& e : half.ends) ends.push_back(std::move(e));
      peers.insert(peers.end(), half.peers.begin(), half.peers.end());
    }
    sp::detail::unpin();
    client = std::thread([&, peers = peers] {
      const auto start = std::chrono::steady_clock::now();
      const auto last = start + std::chrono::milliseconds(400);
      const auto end = start + std::chrono::milliseconds(600);
      while (std::chrono::steady_clock::now() < end) {
        if (std::chrono::steady_clock::now() >= last) late.store(true);
        for (int fd : peers) FIBER_CHECK(::write(fd, "x", 1) == 1);
        for (int fd : peers) {
          char c = 0;
          FIBER_CHECK(::read(fd, &c, 1) == 1);
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
      for (int fd : peers) ::shutdown(fd, SHUT_WR);
    });
    sp::TaskGroup servers;
    for (int i = 0; i < kConns; ++i) {
      servers.spawn([&, i] {
        auto& s = ends[static_cast<std::size_t>(i)];
        for (;;) {
          char c;
          if (s.read_some(&c, 1) == 0) return;
          const int w = sp::this_fiber::worker_index();
          if (late.load() && (w == 0 || w == 1)) late_on[static_cast<std::size_t>(w)].fetch_add(1);
          s.write_all(&c, 1);
        }
      });
    }
    servers.wait();
    client.join();
    for (int fd : peers) ::close(fd);
  });
  return {late_on[0].load(), late_on[1].load()};
}

}  // namespace

// Consolidation (runtime/src/placement.hpp, rule 5): connections that two workers serve
// while one would keep up with them move to one worker's epoll instance.
// Eight connections, four registered with each worker, and a plain-thread
// client sending each one byte every 2 ms: a few thousand trivial requests
// a second, far below the light-load bound (the two workers' time on a
// core adding up to half a core). Worker 1 consolidates to worker 0 (always
// toward the lower index), so after the first load windows (10 ms each)
// worker 1 serves next to nothing. Without consolidation each connection
// stays where it was registered and worker 1 serves more than a tenth.
// The rule reads the workers' CPU time from the kernel and, by design,
// moves nothing off a worker whose thread had no core (placement.hpp):
// beside a heavy test on the same 2 cores (ctest -j2 ran it next to
// runtime_wake_stress: 81 of 760 reads on worker 1) a trial may not
// consolidate. So the consolidating side gets up to three trials and must
// consolidate in one; broken consolidation fails all three.
TEST_CASE("a light load spread over two workers consolidates on one") {
  const bool consolidate = GENERATE(true, false);
  INFO("consolidate_io " << consolidate);
  LightSplit r = light_trial(consolidate);
  for (int retry = 0; consolidate && retry < 2 && r.on1 * 10 > r.on0 + r.on1; ++retry) {
    WARN("trial " << retry + 1 << " did not consolidate (worker 0: " << r.on0 << ", worker 1: " << r.on1
                  << " reads); again");
    r = light_trial(consolidate);
  }
  const int on0 = r.on0, on1 = r.on1;
  INFO("reads in the last 200 ms on worker 0: " << on0 << ", on worker 1: " << on1);
  REQUIRE(on0 + on1 > 0);
  if (consolidate) {
    CHECK(on1 * 10 <= on0 + on1);
  } else {
    // Each connection stays registered where it was, so worker 1 serves
    // more than the consolidated bound above allows: the check above fails
    // without consolidation. Not "about half": a read whose fiber worker 0
    // stole from worker 1's queue returns on worker 0, so the split moves
    // with the machine's load (446 of 664 on worker 1 in a dev run, 162
    // of 672 in a CI run under ASan).
    CHECK(on1 * 10 > on0 + on1);
  }
}
