// shutdown_test.cpp: run() returns promptly when main returns while other
// fibers still sleep, loop or wait: shutdown cancels them and their RAII
// runs. And after every run() no fiber is left alive.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <string>
#include <utility>
#include <vector>

#include <spindle/sync/event.hpp>

#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;

TEST_CASE("shutdown cancels fibers left alive when main returns", "[shutdown]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  constexpr int kEach = 10;
  std::atomic<int> cleaned{0};
  std::atomic<int> started{0};
  Gate never;  // outlives the runtime; nobody signals it
  sp::RuntimeOptions o = options(workers);
  // Long enough that a shutdown that failed to cancel would visibly give up
  // (and leave the guards unrun) rather than pass by waiting.
  o.shutdown_timeout = 10s;
  const auto t0 = Clock::now();
  const int r = run_checked(o, [&] {
    for (int k = 0; k < kEach; ++k) {
      sp::spawn([&] {
        CountOnExit g{cleaned};
        started.fetch_add(1);
        sp::sleep_for(1h);
      }).detach();
      // Dropped handles detach too.
      auto looping = sp::spawn([&] {
        CountOnExit g{cleaned};
        started.fetch_add(1);
        yield_until_cancelled();
      });
      sp::spawn([&] {
        CountOnExit g{cleaned};
        started.fetch_add(1);
        never.wait();
      }).detach();
    }
    while (started.load() != 3 * kEach) sp::sleep_for(1ms);
    return 42;
  });
  const auto took = Clock::now() - t0;
  CHECK(r == 42);
  CHECK(cleaned.load() == 3 * kEach);
  CHECK(took < slack(5s));
}

TEST_CASE("a runtime can be started and stopped many times", "[shutdown]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  for (int i = 0; i < 20; ++i) {
    const int r = run_checked(workers, [i] {
      auto t = sp::spawn([i] {
        sp::yield();
        return i;
      });
      return t.join();
    });
    CHECK(r == i);
  }
  // And via spindle::run itself.
  CHECK(sp::run([] { return sp::spawn([] { return 9; }).join(); }, options(workers)) == 9);
}

TEST_CASE("Runtime::block_on can be called repeatedly; stats are exact after shutdown", "[shutdown]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  sp::Runtime rt(options(workers));
  CHECK(rt.workers() == workers);
  int total = 0;
  for (int i = 0; i < 5; ++i) {
    total += rt.block_on([] {
      std::vector<sp::Task<int>> ts;
      for (int k = 0; k < 10; ++k) ts.push_back(sp::spawn([k] { return k; }));
      int s = 0;
      for (auto& t : ts) s += t.join();
      return s;
    });
  }
  CHECK(total == 5 * 45);
  rt.shutdown();
  rt.shutdown();  // idempotent
  const auto s = rt.stats();
  CHECK(s.live_fibers == 0);
  CHECK(s.total().spawns == 50);
  CHECK(s.total().finished == 55);  // 50 children + 5 "main" fibers
}

TEST_CASE("an exception from main propagates out of run", "[shutdown]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  CHECK_THROWS_MATCHES(run_checked(workers, []() -> int { throw std::runtime_error("from main"); }),
                       std::runtime_error, Catch::Matchers::Message("from main"));
}

namespace {
// Runs `child` in a forked child with its stderr into a pipe; returns what
// it wrote and its exit status (-1 unless it exited normally). The child
// leaves with _exit, so an abandoned fiber is not reported as a leak at
// exit: abandoning is what is under test.
template <class F>
std::pair<std::string, int> in_child(F child) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    ::dup2(fds[1], 2);
    child();
    std::fflush(nullptr);
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  return {out, WIFEXITED(status) ? WEXITSTATUS(status) : -1};
}
}  // namespace

TEST_CASE("shutdown reports and abandons fibers that outlive shutdown_timeout", "[shutdown]") {
  // A fiber that holds its cancellation off (shielded) past the timeout:
  // shutdown waits the timeout, prints the fiber dump, abandons the fiber
  // and returns. In a child process: the abandoned fiber is never freed.
  const auto [err, status] = in_child([] {
    sp::RuntimeOptions o = options(2);
    o.shutdown_timeout = 100ms;
    sp::Runtime rt(o);
    rt.block_on([] {
      auto t = sp::spawn(sp::SpawnOptions{.name = "stubborn"}, [] { sp::shield([] { sp::sleep_for(1h); }); });
      wait_suspended(t, "sleep");
      t.detach();
    });
    const auto t0 = Clock::now();
    rt.shutdown();
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
    std::fprintf(stderr, "child: shutdown returned after %lld ms\n", static_cast<long long>(ms));
  });
  INFO(err);
  CHECK(status == 0);
  CHECK_THAT(err, Catch::Matchers::Contains(
                      "spindle: shutdown: 1 fiber(s) did not finish within 100 ms of being cancelled; "
                      "abandoning them"));
  CHECK_THAT(err, Catch::Matchers::Contains("\"stubborn\" suspended on sleep (cancel requested)"));
  const auto at = err.find("child: shutdown returned after ");
  REQUIRE(at != std::string::npos);
  const long ms = std::atol(err.c_str() + at + std::strlen("child: shutdown returned after "));
  CHECK(ms >= 100);  // it did wait for the fiber
}

// What user code can still reach of a fiber abandoned at shutdown stays
// safe after the runtime is gone: an Event it waits on is set from a plain
// thread (its wait node is on the fiber's stack: the stacks were unmapped,
// SIGSEGV), its Task is cancelled and joined (the join waited for ever;
// now Cancelled), and a plain thread already joining it when it is
// abandoned gets Cancelled too. In a child: the fibers are never freed.
TEST_CASE("a fiber abandoned at shutdown can be woken, cancelled and joined after its runtime is gone", "[shutdown]") {
  const auto [err, status] = in_child([] {
    // A hang is a failure with a word, not a stuck test.
    std::thread([] {
      std::this_thread::sleep_for(slack(std::chrono::seconds(20)));
      std::fprintf(stderr, "child: hung\n");
      std::fflush(nullptr);
      ::_exit(3);
    }).detach();
    sp::Event ev;
    sp::Task<void> t, u;
    std::thread joiner;
    std::atomic<int> joined_cancelled{0};
    {
      sp::RuntimeOptions o = options(2);
      o.shutdown_timeout = 100ms;
      sp::Runtime rt(o);
      rt.block_on([&] {
        t = sp::spawn([&] { sp::shield([&] { ev.wait(); }); });
        u = sp::spawn([] { sp::shield([] { sp::sleep_for(1h); }); });
        wait_suspended(t, "event");
        wait_suspended(u, "sleep");
      });
      joiner = std::thread([&] {
        try {
          u.join();
        } catch (const sp::Cancelled&) {
          joined_cancelled.fetch_add(1);
        }
      });
      std::this_thread::sleep_for(50ms);  // parked in the join before the shutdown
    }
    joiner.join();
    ev.set();
    std::fprintf(stderr, "child: set\n");
    t.cancel();
    try {
      t.join();
    } catch (const sp::Cancelled&) {
      joined_cancelled.fetch_add(1);
    }
    std::fprintf(stderr, "child: joins cancelled %d\n", joined_cancelled.load());
  });
  INFO(err);
  CHECK(status == 0);
  CHECK_THAT(err, Catch::Matchers::Contains("abandoning them"));
  CHECK_THAT(err, Catch::Matchers::Contains("child: set"));
  CHECK_THAT(err, Catch::Matchers::Contains("child: joins cancelled 2"));
}

// A primitive that dies after its runtime, with an abandoned fiber's wait
// still linked in it (that fiber is never woken now): not stopped by
// ~WaitList, whose check is for waits that are still open. In a child.
TEST_CASE("an Event destroyed after shutdown abandoned a fiber waiting on it", "[shutdown]") {
  const auto [err, status] = in_child([] {
    {
      sp::Event ev;
      sp::RuntimeOptions o = options(2);
      o.shutdown_timeout = 100ms;
      sp::Runtime rt(o);
      rt.block_on([&] {
        auto t = sp::spawn([&] { sp::shield([&] { ev.wait(); }); });
        wait_suspended(t, "event");
        t.detach();
      });
      rt.shutdown();
    }  // ~Runtime, then ~Event with the abandoned fiber's node in it
    std::fprintf(stderr, "child: event gone\n");
  });
  INFO(err);
  CHECK(status == 0);
  CHECK_THAT(err, Catch::Matchers::Contains("abandoning them"));
  CHECK_THAT(err, Catch::Matchers::Contains("child: event gone"));
}
