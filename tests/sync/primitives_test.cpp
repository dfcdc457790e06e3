// primitives_test.cpp: Event, Semaphore, WaitGroup, Barrier.
#include <cstddef>
#include <limits>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "sync_test_util.hpp"

using namespace sync_test;
namespace sp = spindle;

TEST_CASE("Event: set wakes every waiter, fibers and plain threads", "[event]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [&] {
    sp::Event ev;
    sp::WaitGroup wg(10 + 2);
    std::atomic<int> woke{0}, entered{0};
    PlainThreads pts;
    for (int i = 0; i < 2; ++i) pts.start([&] { ++entered; ev.wait(); ++woke; wg.done(); });
    for (int i = 0; i < 10; ++i) sp::spawn([&] { ev.wait(); ++woke; wg.done(); }).detach();
    wait_suspended("event", 10);
    plain_grace(entered, 2);
    REQUIRE(woke.load() == 0);
    REQUIRE_FALSE(ev.is_set());
    ev.set();
    wg.wait();
    REQUIRE(woke.load() == 12);
    REQUIRE(ev.is_set());
    ev.wait();  // already set: returns at once
    ev.clear();
    REQUIRE_FALSE(ev.wait_for(15ms));
    auto w = sp::spawn([&] { ev.wait(); });
    wait_suspended(w, "event");
    w.cancel();
    REQUIRE_THROWS_AS(w.join(), sp::Cancelled);
    // A plain thread sets it for a fiber.
    pts.start([&] { std::this_thread::sleep_for(10ms); ev.set(); });
    REQUIRE(ev.wait_for(10s));
  });
}

TEST_CASE("Semaphore: bounds concurrency under contention", "[semaphore]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  const int jobs = static_cast<int>(scaled(400));
  run_checked(workers, [&] {
    sp::Semaphore sem(3);
    std::atomic<int> inside{0}, peak{0};
    sp::WaitGroup wg(jobs + 2);
    auto job = [&] {
      auto permit = sem.acquire_guard();
      const int n = ++inside;
      int p = peak.load();
      while (n > p && !peak.compare_exchange_weak(p, n)) {}
      if (sp::this_fiber::in_fiber()) sp::yield(); else std::this_thread::yield();
      --inside;
    };
    PlainThreads pts;
    for (int t = 0; t < 2; ++t) pts.start([&] { for (int i = 0; i < 20; ++i) job(); wg.done(); });
    for (int i = 0; i < jobs; ++i) sp::spawn([&] { job(); wg.done(); }).detach();
    wg.wait();
    REQUIRE(peak.load() <= 3);
    REQUIRE(sem.available() == 3);
  });
}

TEST_CASE("Semaphore: try_acquire, acquire_for, cancellation", "[semaphore][cancel]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [&] {
    sp::Semaphore sem(1);
    REQUIRE(sem.try_acquire());
    REQUIRE_FALSE(sem.try_acquire());
    REQUIRE_FALSE(sem.acquire_for(15ms));
    auto c = sp::spawn([&] { sem.acquire(); });
    wait_suspended(c, "semaphore");
    c.cancel();
    REQUIRE_THROWS_AS(c.join(), sp::Cancelled);
    // The cancelled waiter took nothing: the next release goes to a live one.
    auto ok = sp::spawn([&] { return sem.acquire_for(10s); });
    wait_suspended(ok, "semaphore");
    sem.release();
    REQUIRE(ok.join());
    REQUIRE(sem.available() == 0);
    sem.release(2);
    REQUIRE(sem.available() == 2);
  });
}

TEST_CASE("WaitGroup: wait returns when the counter reaches zero", "[wait_group]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [&] {
    sp::WaitGroup wg;
    wg.wait();  // zero: at once
    std::atomic<int> done{0};
    wg.add(20);
    for (int i = 0; i < 20; ++i) {
      sp::spawn([&] { sp::yield(); ++done; wg.done(); }).detach();
    }
    std::vector<sp::Task<void>> waiters;
    for (int i = 0; i < 3; ++i) waiters.push_back(sp::spawn([&] { wg.wait(); }));
    wg.wait();
    REQUIRE(done.load() == 20);
    for (auto& w : waiters) w.join();
    wg.add(1);
    REQUIRE_FALSE(wg.wait_for(10ms));
    auto c = sp::spawn([&] { wg.wait(); });
    wait_suspended(c, "wait group");
    c.cancel();
    REQUIRE_THROWS_AS(c.join(), sp::Cancelled);
    PlainThreads pts;
    pts.start([&] { std::this_thread::sleep_for(5ms); wg.done(); });
    wg.wait();
    REQUIRE(wg.count() == 0);
  });
}

// Counts at ptrdiff_t's edge: a clear error, the count unchanged. Before,
// release() overflowed (undefined behaviour) to a negative count that
// blocked every later acquire.
TEST_CASE("Semaphore and WaitGroup: a count past ptrdiff_t's range is overflow_error, nothing changed", "[semaphore][wait_group]") {
  constexpr auto kMax = std::numeric_limits<std::ptrdiff_t>::max();
  sp::Semaphore s(kMax);
  CHECK(spindle_test::raises<std::overflow_error>([&] { s.release(1); }));
  CHECK(s.available() == kMax);
  CHECK(s.try_acquire());
  s.release(1);
  CHECK(s.available() == kMax);
  sp::Semaphore half(kMax / 2 + 1);
  CHECK(spindle_test::raises<std::overflow_error>([&] { half.release(kMax / 2 + 1); }));
  CHECK(half.available() == kMax / 2 + 1);
  sp::WaitGroup wg(kMax);
  CHECK(spindle_test::raises<std::overflow_error>([&] { wg.add(1); }));
  CHECK(wg.count() == kMax);
  wg.add(-kMax);
  CHECK(wg.count() == 0);
  wg.wait();  // zero: returns at once
}

// A negative start: Semaphore(-2) was accepted and its release() handed a
// permit to the oldest waiter at once (a "wait for 3 releases" that woke
// after one); WaitGroup(-3) aborted at the first done().
TEST_CASE("Semaphore and WaitGroup: a negative initial count is invalid_argument", "[semaphore][wait_group]") {
  CHECK(spindle_test::raises<std::invalid_argument>([] { sp::Semaphore s(-1); }));
  CHECK(spindle_test::raises<std::invalid_argument>([] { sp::WaitGroup wg(-3); }));
  sp::Semaphore zero(0);
  CHECK(zero.available() == 0);
  sp::WaitGroup none(0);
  none.wait();
}

TEST_CASE("Barrier: phases keep participants in step", "[barrier]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  const int phases = static_cast<int>(scaled(200));
  const int n = 6;
  run_checked(workers, [&] {
    sp::Barrier barrier(n);
    std::atomic<int> arrived{0};
    std::atomic<bool> bad{false};
    sp::WaitGroup wg(n);
    auto part = [&] {
      for (int p = 0; p < phases; ++p) {
        ++arrived;
        barrier.arrive_and_wait();
        // Everyone of phase p has arrived before anyone leaves it.
        if (arrived.load() < (p + 1) * n) bad = true;
        barrier.arrive_and_wait();
      }
      wg.done();
    };
    PlainThreads pts;
    pts.start(part);  // one participant is a plain thread
    for (int i = 1; i < n; ++i) sp::spawn(part).detach();
    wg.wait();
    REQUIRE_FALSE(bad.load());
    REQUIRE(arrived.load() == phases * n);
  });
}

TEST_CASE("Barrier: a cancelled participant is withdrawn", "[barrier][cancel]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [&] {
    sp::Barrier barrier(2);
    auto c = sp::spawn([&] { barrier.arrive_and_wait(); });
    wait_suspended(c, "barrier");
    c.cancel();
    REQUIRE_THROWS_AS(c.join(), sp::Cancelled);
    // Its arrival no longer counts: two fresh participants are needed.
    auto a = sp::spawn([&] { return barrier.arrive_and_wait(); });
    wait_suspended(a, "barrier");  // had the cancelled arrival counted, a would pass
    REQUIRE_FALSE(a.done());
    barrier.arrive_and_wait();
    REQUIRE(a.join() == 0);
  });
}

// The race: a participant's with_timeout ends its wait, and before it runs
// again to withdraw, the last participant completes the phase, counting it.
// It passed; before 2026-11-30 the scope still raised TimedOut. Set up on
// two workers: the participant (a) and the last arrival (c) are pinned to
// worker 0, and c holds that worker, never suspending, until a's overdue
// timer has been fired by worker 1 (the watcher: docs/runtime.md "Timers of
// a worker without a core") and a is ready but cannot run. c must be on
// worker 0 before a's deadline; a loaded machine may start it late (then a
// withdraws first: a miss), so up to 5 tries, one of which must hit.
TEST_CASE("Barrier: a timeout that comes as the phase completes is no timeout", "[barrier][timeout]") {
  run_checked(2, [&] {
    int hits = 0;
    for (int attempt = 0; attempt < 5 && hits == 0; ++attempt) {
      sp::Barrier barrier(2);
      std::atomic<bool> a_back{false};
      auto a = sp::spawn([&] {
        sp::detail::hop_to_worker(0);
        bool timed_out = false;
        try {
          sp::with_timeout(slack(100ms), [&] { barrier.arrive_and_wait(); });
        } catch (const sp::TimedOut&) {
          timed_out = true;
        }
        a_back = true;
        return timed_out;
      });
      wait_suspended(a, "barrier");
      auto c = sp::spawn([&] {
        sp::detail::hop_to_worker(0);
        // Spins: a suspension here would let a run and withdraw.
        const auto limit = Clock::now() + slack(10s);
        while (sp::detail::count_suspended("barrier", a.id()) != 0 && Clock::now() < limit) {
        }
        // Missed: a's wait did not end in time, or a ran and came back.
        if (sp::detail::count_suspended("barrier", a.id()) != 0 || a_back.load()) return false;
        barrier.arrive_and_wait();  // the last arrival: completes the phase
        return true;
      });
      if (c.join()) {
        ++hits;
        REQUIRE_FALSE(a.join());  // passed: no TimedOut
      } else {
        // a withdrew (TimedOut) or still waits for a partner that will not
        // come: end it either way.
        a.cancel();
        try {
          a.join();
        } catch (const sp::Cancelled&) {
        }
      }
    }
    REQUIRE(hits == 1);
  });
}

TEST_CASE("Event: created set; wait_until with past and future deadlines", "[event]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [&] {
    sp::Event on(true);
    REQUIRE(on.is_set());
    on.wait();  // set from the start: returns at once
    REQUIRE(on.wait_until(Clock::now() - 1s));
    REQUIRE(on.wait_for(0ms));
    on.clear();
    REQUIRE_FALSE(on.is_set());

    sp::Event ev;
    // A past deadline on a clear event: false at once, never a hang.
    REQUIRE_FALSE(ev.wait_until(Clock::now() - 1s));
    REQUIRE_FALSE(ev.wait_until(Clock::time_point{}));
    // A future deadline is honoured: false, and not before it.
    const auto until = Clock::now() + 15ms;
    REQUIRE_FALSE(ev.wait_until(until));
    REQUIRE(Clock::now() >= until);
    // A set before the deadline ends the wait with true.
    auto w = sp::spawn([&] { return ev.wait_until(Clock::now() + 1h); });
    wait_suspended(w, "event");
    REQUIRE_FALSE(w.done());
    ev.set();
    REQUIRE(w.join());
  });
}

TEST_CASE("Semaphore: waiters are served FIFO and a release is not barged", "[semaphore]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  constexpr int kWaiters = 6;
  run_checked(workers, [&] {
    sp::Semaphore sem(0);
    std::mutex mu;
    std::vector<int> order;  // guarded by mu
    std::vector<sp::Task<void>> ts;
    for (int i = 0; i < kWaiters; ++i) {
      ts.push_back(sp::spawn([&, i] {
        sem.acquire();
        std::lock_guard g(mu);
        order.push_back(i);
      }));
      // Each joins the queue only after the one before it.
      wait_suspended("semaphore", static_cast<std::size_t>(i) + 1);
    }
    auto served = [&] {
      std::lock_guard g(mu);
      return order.size();
    };
    for (int k = 1; k <= kWaiters; ++k) {
      sem.release();
      // The permit went straight to the oldest waiter: a newcomer cannot
      // take it, not even before that waiter has run.
      REQUIRE_FALSE(sem.try_acquire());
      REQUIRE(sem.available() == 0);
      wait_until([&] { return served() == static_cast<std::size_t>(k); }, "semaphore waiter served");
    }
    for (auto& t : ts) t.join();
    std::vector<int> expected(kWaiters);
    for (int i = 0; i < kWaiters; ++i) expected[i] = i;
    REQUIRE(order == expected);
    // With no waiter left, a release is kept for the next acquire.
    sem.release();
    REQUIRE(sem.try_acquire());
  });
}

TEST_CASE("Semaphore: exactly the count gets in; the next one waits", "[semaphore]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [&] {
    sp::Semaphore sem(3);
    sp::Event release;
    std::atomic<int> inside{0};
    std::vector<sp::Task<void>> ts;
    for (int i = 0; i < 4; ++i) {
      ts.push_back(sp::spawn([&] {
        auto permit = sem.acquire_guard();
        ++inside;
        release.wait();
        --inside;
      }));
    }
    wait_suspended("event", 3);      // three hold a permit
    wait_suspended("semaphore", 1);  // the fourth is queued for one
    REQUIRE(inside.load() == 3);
    REQUIRE(sem.available() == 0);
    release.set();
    for (auto& t : ts) t.join();
    REQUIRE(sem.available() == 3);
  });
}

TEST_CASE("Semaphore: acquire_until with past and future deadlines", "[semaphore]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [&] {
    sp::Semaphore sem(1);
    REQUIRE(sem.acquire_until(Clock::now() - 1s));  // a permit is there: taken
    REQUIRE(sem.available() == 0);
    REQUIRE_FALSE(sem.acquire_until(Clock::now() - 1s));  // none: false at once
    const auto until = Clock::now() + 15ms;
    REQUIRE_FALSE(sem.acquire_until(until));
    REQUIRE(Clock::now() >= until);
    REQUIRE(sem.available() == 0);
    // A release before the deadline is handed to the timed waiter.
    auto w = sp::spawn([&] { return sem.acquire_until(Clock::now() + 1h); });
    wait_suspended(w, "semaphore");
    sem.release();
    REQUIRE(w.join());
    REQUIRE(sem.available() == 0);
    // A waiter that timed out left the queue: the next release is kept.
    auto late = sp::spawn([&] { return sem.acquire_until(Clock::now() + 5ms); });
    REQUIRE_FALSE(late.join());
    sem.release();
    REQUIRE(sem.available() == 1);
  });
}
