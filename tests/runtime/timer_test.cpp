// timer_test.cpp: sleep_for / sleep_until. Sleeps never end early; sleepers
// wake in deadline order; upper bounds are loose (never a speed claim, only
// "it did not hang").
#include <algorithm>
#include <mutex>
#include <numeric>
#include <vector>

#include <spindle/sync/event.hpp>

#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;

TEST_CASE("sleep_for never returns early", "[timer]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  std::atomic<int> early{0}, hung{0}, done{0};
  const auto sleeps = run_checked(workers, [&] {
    std::vector<sp::Task<void>> tasks;
    constexpr int kFibers = 200;
    for (int k = 0; k < kFibers; ++k) {
      tasks.push_back(sp::spawn([&, k] {
        Xorshift rng(static_cast<std::uint64_t>(k) + 1);
        for (int i = 0; i < 3; ++i) {
          // 0..20 ms, with sub-millisecond values among them.
          const auto d = std::chrono::microseconds(rng() % 20'000);
          const auto t0 = Clock::now();
          sp::sleep_for(d);
          const auto slept = Clock::now() - t0;
          if (slept < d) early.fetch_add(1);
          if (slept > d + slack(2s)) hung.fetch_add(1);
          done.fetch_add(1);
        }
      }));
    }
    for (auto& t : tasks) t.join();
    return kFibers * 3;
  });
  CHECK(done.load() == sleeps);
  CHECK(early.load() == 0);
  CHECK(hung.load() == 0);
}

TEST_CASE("a 10 ms sleep takes at least 10 ms and well under a second", "[timer]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  const auto slept = run_checked(workers, [] {
    const auto t0 = Clock::now();
    sp::sleep_for(10ms);
    return Clock::now() - t0;
  });
  CHECK(slept >= 10ms);
  CHECK(slept < slack(1s));
}

TEST_CASE("sleep_until: a past deadline returns, a future one is honoured", "[timer]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [] {
    const auto t0 = Clock::now();
    sp::sleep_until(t0 - 1s);  // already due: returns without hanging
    sp::sleep_until(Clock::time_point{});
    const auto until = Clock::now() + 15ms;
    sp::sleep_until(until);
    CHECK(Clock::now() >= until);
    CHECK(Clock::now() - t0 < slack(2s));
  });
}

// time_point::min() as a deadline ("long past") went into the timer heap
// as it was, and another worker's look at the heap computed `now - due`:
// a signed overflow (undefined behaviour; the asan-ubsan preset halts on
// it). Many fibers on two workers, so that the other worker looks while
// such a timer is queued.
TEST_CASE("sleep_until and wait_until time_point::min() return at once", "[timer]") {
  run_checked(2, [] {
    std::vector<sp::Task<void>> ts;
    for (int i = 0; i < 16; ++i)
      ts.push_back(sp::spawn([] {
        for (int k = 0; k < 2000; ++k) sp::sleep_until(Clock::time_point::min());
      }));
    sp::Event never;
    FIBER_CHECK(!never.wait_until(Clock::time_point::min()));
    for (auto& t : ts) t.join();
  });
}

// A worker late by more than the spacing fires two sleepers at once;
// fire_due_timers wakes timers due together in deadline order (see
// "timers that come due together ..." below), so the test holds under
// load. A wider spacing would only hide a wrong fire order
// (docs/decisions/0011-timers.md "Sleep accuracy").
//
// One worker: the order is the scheduler's to keep only where the sleepers
// share a thread. With two, a woken fiber's worker can be preempted for
// longer than the spacing before the fiber records itself (load averages of
// 16-59 on this 2-core machine: 8 failures in 30 runs, main and branch
// alike), and the next sleeper, woken on the other worker, records first;
// "never early" for any worker count is "sleep_for never returns early".
TEST_CASE("sleepers wake in deadline order", "[timer]") {
  const unsigned workers = 1;
  // Spacing well above the loop's granularity; wider under sanitizers,
  // where a worker can be late by more than 5 ms on a busy machine.
  const auto spacing = kSanitized ? 25ms : 10ms;
  constexpr int kSleepers = 12;
  std::vector<int> order;
  std::mutex mu;
  std::atomic<int> early{0};
  run_checked(workers, [&] {
    // Spawn in a scrambled order so that spawn order does not give the
    // answer away.
    std::vector<int> idx(kSleepers);
    std::iota(idx.begin(), idx.end(), 0);
    std::reverse(idx.begin(), idx.end());
    std::rotate(idx.begin(), idx.begin() + 5, idx.end());
    // Far enough ahead that every sleeper is asleep before the first
    // deadline: one that first ran past its own woke in run order, not
    // deadline order (20 ms was the margin for a descheduled worker).
    const auto base = Clock::now() + slack(100ms);
    std::vector<sp::Task<void>> tasks;
    for (int i : idx) {
      tasks.push_back(sp::spawn([&, i] {
        const auto deadline = base + i * spacing;
        sp::sleep_until(deadline);
        if (Clock::now() < deadline) early.fetch_add(1);
        std::lock_guard lk(mu);
        order.push_back(i);
      }));
    }
    for (auto& t : tasks) t.join();
  });
  std::vector<int> expected(kSleepers);
  std::iota(expected.begin(), expected.end(), 0);
  CHECK(order == expected);
  CHECK(early.load() == 0);
}

// Timers that come due at one firing (the worker ran late by more than
// their spacing: preempted, or busy in a fiber) must still run in deadline
// order. Each wake puts its fiber in the LIFO slot and bumps the previous
// one onto the deque, whose owner pops the newest first, so
// fire_due_timers wakes them latest first; waking them in deadline order
// ran them in reverse ("sleepers wake in deadline order" above then failed
// now and then under load). Here they come due together deterministically:
// the only worker is held by the main fiber past all four deadlines.
TEST_CASE("timers that come due together wake in deadline order", "[timer]") {
  const unsigned workers = 1;
  std::vector<int> order;
  std::mutex mu;
  run_checked(workers, [&] {
    // Room for all four to start and suspend before the first deadline: a
    // sleeper that first runs after its deadline never suspends, and
    // wait_suspended below would wait for it in vain (seen under TSan on a
    // loaded machine with 5 ms, where starting a fiber costs about 1 ms).
    const auto base = Clock::now() + slack(50ms);
    std::vector<sp::Task<void>> tasks;
    for (int i = 0; i < 4; ++i) {
      tasks.push_back(sp::spawn([&, i] {
        sp::sleep_until(base + i * 1ms);
        std::lock_guard lk(mu);
        order.push_back(i);
      }));
    }
    for (auto& t : tasks) wait_suspended(t, "sleep");
    // Hold the only worker past every deadline without suspending: all
    // four come due at the same firing. (With more workers an idle one
    // may fire some on time, so the outcome would depend on timing.)
    while (Clock::now() < base + 20ms) spin(1000);
    for (auto& t : tasks) t.join();
  });
  CHECK(order == std::vector<int>{0, 1, 2, 3});
}

TEST_CASE("every sleep is one timer firing", "[timer][stats]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  constexpr int kFibers = 100;
  constexpr int kSleeps = 5;
  sp::Runtime rt(options(workers));
  rt.block_on([] {
    std::vector<sp::Task<void>> tasks;
    for (int k = 0; k < kFibers; ++k) {
      tasks.push_back(sp::spawn([k] {
        for (int i = 0; i < kSleeps; ++i) sp::sleep_for(std::chrono::microseconds((k * 37 + i * 101) % 3000));
      }));
    }
    for (auto& t : tasks) t.join();
  });
  rt.shutdown();
  const auto s = rt.stats();
  CHECK(s.live_fibers == 0);
  // Exactly one each: a sleep whose timer fired twice, or one woken some
  // other way (no firing), would change the count.
  CHECK(s.total().timers_fired == static_cast<std::uint64_t>(kFibers) * kSleeps);
}

TEST_CASE("sleep_for on a plain thread blocks the thread", "[timer]") {
  const auto t0 = Clock::now();
  sp::sleep_for(5ms);
  CHECK(Clock::now() - t0 >= 5ms);
  sp::yield();  // a no-op on a plain thread, must not crash
}

TEST_CASE("a due timer fires within a few picks while its worker runs short CPU-bound fibers",
          "[timer]") {
  // One worker, so no idle worker takes the timer over (hand-off). The
  // sleeper's deadline passes while the worker runs one short fiber after
  // another, none of which suspends. The worker must notice the deadline
  // within kTimerLookTicks (8) picks, not only at its next maintenance
  // round (every 61 picks: with 50 us fibers up to 3 ms late). What is
  // counted is picks, not time: spinners that started after the deadline
  // and before the sleeper ran again. Where the deadline falls among the
  // maintenance rounds varies, so a runtime that only fires timers there
  // stays under the bound in a round now and then; it is 5 rounds.
  constexpr int kRounds = 5;
  constexpr int kSpinners = 100;
  constexpr int kBound = 12;
  std::vector<int> before_sleeper, after_due_total;
  run_checked(1, [&] {
    for (int r = 0; r < kRounds; ++r) {
      Clock::time_point due{};
      bool armed = false;
      int after_due = 0, seen = -1;
      auto sleeper = sp::spawn([&] {
        due = Clock::now() + 2ms;
        armed = true;
        sp::sleep_until(due);
        seen = after_due;
      });
      while (!armed) sp::yield();
      std::vector<sp::Task<void>> spinners;
      for (int i = 0; i < kSpinners; ++i) {
        spinners.push_back(sp::spawn([&] {
          const auto t0 = Clock::now();
          if (t0 >= due) ++after_due;
          while (Clock::now() - t0 < 50us) {
          }
        }));
      }
      sleeper.join();
      for (auto& t : spinners) t.join();
      before_sleeper.push_back(seen);
      after_due_total.push_back(after_due);
    }
  });
  for (int r = 0; r < kRounds; ++r) {
    INFO("round " << r << ": spinners that started after the deadline " << after_due_total[r] << " of "
                  << kSpinners << ", before the sleeper ran " << before_sleeper[r]);
    // The spinners ran well past the deadline (else the round shows nothing).
    REQUIRE(after_due_total[r] > kBound * 2);
    CHECK(before_sleeper[r] >= 0);
    CHECK(before_sleeper[r] <= kBound);
  }
}
