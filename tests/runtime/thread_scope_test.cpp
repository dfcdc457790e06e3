// thread_scope_test.cpp: with_timeout / with_deadline and shield on a plain
// thread (a thread of the test's own, and a blocking-pool job). Before
// 2026-11-30 a scope there did nothing: with_timeout(d, f) ran f without a
// deadline, so a pool job's bounded wait on an empty queue waited for good.
// The scopes keep a fiber's rules (cancel.hpp): the earliest deadline wins
// and is reported by its own scope, a shield holds the scopes outside it
// off, a scope opened inside a shield still bounds the waits inside it.
#include <atomic>
#include <mutex>
#include <string>
#include <thread>

#include <spindle/runtime/offload.hpp>
#include <spindle/runtime/task_group.hpp>
#include <spindle/sync/condition_variable.hpp>
#include <spindle/sync/event.hpp>
#include <spindle/sync/mutex.hpp>
#include <spindle/sync/queue.hpp>
#include <spindle/sync/wait_group.hpp>

#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;

namespace {
// on_thread: runs f on a new plain thread (no runtime) and waits for it.
template <class F>
void on_thread(F&& f) {
  std::thread t(std::forward<F>(f));
  t.join();
}
}  // namespace

TEST_CASE("with_timeout on a plain thread ends its waits", "[deadline][thread]") {
  sp::Event never;
  // Without the scopes the first wait below would last for good: set after
  // 10 s, it fails that check instead of hanging the binary.
  std::atomic<bool> done{false};
  std::thread watchdog([&] {
    const auto until = Clock::now() + 10s;
    while (!done.load() && Clock::now() < until) std::this_thread::sleep_for(1ms);
    never.set();
  });
  on_thread([&] {
    const auto start = Clock::now();
    CHECK(raises_timeout([&] { sp::with_timeout(20ms, [&] { never.wait(); }); }));
    CHECK(Clock::now() - start >= 20ms);
    CHECK(raises_timeout([&] { sp::with_timeout(20ms, [] { sp::sleep_for(1h); }); }));
    sp::Queue<int> q;
    CHECK(raises_timeout([&] { sp::with_deadline(Clock::now() + 20ms, [&] { return q.get(); }); }));
    // Done in time: the value, and nothing left behind for the next wait.
    q.put(7);
    CHECK(sp::with_timeout(1h, [&] { return q.get(); }) == 7);
    CHECK_FALSE(never.wait_for(1ms));
    // A deadline already past ends the first wait at once.
    CHECK(raises_timeout([&] { sp::with_timeout(0ms, [&] { never.wait(); }); }));
    // The wait's own deadline, when earlier, is the wait's: no TimedOut.
    CHECK(sp::with_timeout(1h, [&] { return never.wait_for(5ms); }) == false);
  });
  done = true;
  watchdog.join();
}

TEST_CASE("nested scopes on a plain thread: the earliest deadline wins, reported by its scope", "[deadline][thread]") {
  on_thread([] {
    sp::Event never;
    std::string what;
    bool inner_raised = false;
    try {
      sp::with_timeout(20ms, [&] {
        try {
          sp::with_timeout(1h, [&] { never.wait(); });
        } catch (const sp::TimedOut&) {
          inner_raised = true;
          throw;
        }
      });
    } catch (const sp::TimedOut& e) {
      what = e.what();
    } catch (const sp::Cancelled&) {
      what = "Cancelled";
    }
    INFO(what);
    CHECK_FALSE(inner_raised);
    CHECK(what.find("20 ms") != std::string::npos);
  });
}

TEST_CASE("shield on a plain thread holds the scopes outside it off", "[deadline][thread][shield]") {
  on_thread([] {
    sp::Event never;
    // The shielded sleep runs to its end; no wait was cut, so no TimedOut.
    const auto start = Clock::now();
    sp::with_timeout(10ms, [] { sp::shield([] { sp::sleep_for(40ms); }); });
    CHECK(Clock::now() - start >= 40ms);
    // A scope opened inside the shield still bounds the waits inside it.
    CHECK(raises_timeout([&] { sp::shield([&] { sp::with_timeout(20ms, [&] { never.wait(); }); }); }));
    // The outer scope expired during the shield: the next wait after it ends.
    CHECK(raises_timeout([&] {
      sp::with_timeout(10ms, [&] {
        sp::shield([] { sp::sleep_for(30ms); });
        never.wait();
      });
    }));
  });
}

TEST_CASE("a blocking-pool job's with_timeout bounds its wait", "[deadline][thread][offload]") {
  run_checked(2, [] {
    sp::Queue<int> q;
    const bool timed_out = sp::blocking([&] {
      return raises_timeout([&] { sp::with_timeout(30ms, [&] { return q.get(); }); });
    });
    FIBER_CHECK(timed_out);
    // The pool thread keeps nothing of that scope: its next job waits as
    // long as it must.
    auto putter = sp::spawn([&] {
      sp::sleep_for(50ms);
      q.put(3);
    });
    FIBER_CHECK(sp::blocking([&] { return q.get(); }) == 3);
    putter.join();
  });
}

TEST_CASE("cancellation_requested and yield on a plain thread see an expired scope", "[deadline][thread]") {
  on_thread([] {
    CHECK_FALSE(sp::cancellation_requested());
    bool saw = false;
    CHECK(raises_timeout([&] {
      sp::with_timeout(10ms, [&] {
        while (!sp::cancellation_requested()) std::this_thread::sleep_for(1ms);
        saw = true;
        sp::yield();  // the scope has passed: raises, which the scope turns into TimedOut
      });
    }));
    CHECK(saw);
    CHECK_FALSE(sp::cancellation_requested());
  });
}

// ConditionVariable::wait takes the user's lock back shielded (relock in
// condition_variable.hpp), so a scope that expired during the wait cannot
// cut the relock: the wait raises with the lock held, as on a fiber. Here
// another thread takes the lock while the waiter waits and holds it past
// the waiter's deadline, so the relock must wait for it. A try in which
// the holder came only after the deadline (a slow start) proves nothing
// and is made again.
TEST_CASE("a ConditionVariable wait cut by a plain thread's scope raises with the lock held", "[deadline][thread][cv]") {
  const auto limit = slack(50ms);
  bool proved = false;
  for (int attempt = 0; attempt < 5 && !proved; ++attempt) {
    sp::Mutex m;
    sp::ConditionVariable cv;
    std::atomic<bool> waiting{false}, holding{false}, let_go{false};
    std::thread holder([&] {
      while (!waiting.load()) std::this_thread::sleep_for(1ms);
      std::unique_lock lk(m);  // granted once the waiter's wait let it go
      holding = true;
      std::this_thread::sleep_for(limit * 3);  // past the waiter's deadline
      let_go = true;
    });
    on_thread([&] {
      std::unique_lock lk(m);
      waiting = true;
      const bool timed_out = raises_timeout([&] { sp::with_timeout(limit, [&] { cv.wait(lk); }); });
      CHECK(timed_out);
      CHECK(lk.owns_lock());
      if (!holding.load()) return;  // the holder came late: no proof, lk goes first
      proved = true;
      CHECK(let_go.load());  // the lock came back only after the holder let it go
    });
    holder.join();
  }
  CHECK(proved);
}

// A TaskGroup owned by a plain thread (a blocking-pool job) whose wait()
// a scope cuts: the children are cancelled and waited for before wait()
// raises (rule 4 of task_group.hpp), and the scope reports TimedOut, as on
// a fiber. The job waits until every child runs before it waits (a child
// cancelled before its first run never runs its body, and would not be
// counted), and counts the cancelled ones before the group's destructor,
// which would wait for them too.
TEST_CASE("a pool job's with_timeout around TaskGroup::wait cancels the children and raises TimedOut",
          "[deadline][thread][offload]") {
  run_checked(2, [] {
    std::atomic<int> started{0}, cancelled{0};
    int cancelled_at_raise = -1;
    const bool timed_out = sp::blocking([&] {
      sp::TaskGroup g;
      for (int i = 0; i < 3; ++i) {
        g.spawn([&] {
          started.fetch_add(1);
          sleep_until_cancelled(cancelled);
        });
      }
      while (started.load() < 3) std::this_thread::sleep_for(1ms);
      const bool raised = raises_timeout([&] { sp::with_timeout(slack(30ms), [&] { g.wait(); }); });
      cancelled_at_raise = cancelled.load();
      return raised;
    });
    FIBER_CHECK(timed_out);
    FIBER_CHECK(cancelled_at_raise == 3);  // each ended by the cancel, before wait() raised
  });
}
