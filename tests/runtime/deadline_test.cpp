// deadline_test.cpp: timeouts at the ends of the duration range. A timeout
// too long for steady_clock (hours::max(), duration::max() of any
// representation) means "no deadline"; a zero, negative or NaN one has
// already passed. Run in the asan-ubsan preset, these also check that no
// deadline computation overflows (detail/deadline.hpp).
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;
namespace chr = std::chrono;

namespace {

// Calls f with durations that do not fit steady_clock's range from now, in
// several representations: integral coarser and finer than the clock's
// tick, unsigned, floating, infinite; and one that fits (24.8 days), for
// the ordinary path.
template <class F>
void for_each_huge(F&& f) {
  f(chr::hours::max());
  f(chr::nanoseconds::max());
  f(chr::milliseconds::max());
  f(chr::duration<std::int64_t, std::pico>::max());
  f(chr::duration<std::uint64_t, std::micro>::max());
  f(chr::duration<double>::max());
  f(chr::duration<float, std::ratio<86400>>::max());
  f(chr::duration<double>(std::numeric_limits<double>::infinity()));
  f(chr::duration<std::int32_t, std::milli>::max());
}

// Durations whose deadline is already past: zero, negative, the most
// negative of several representations, NaN.
template <class F>
void for_each_expired(F&& f) {
  f(chr::nanoseconds(0));
  f(chr::milliseconds(-1));
  f(chr::hours::min());
  f(chr::nanoseconds::min());
  f(chr::duration<std::int64_t, std::pico>::min());
  f(chr::duration<double>(std::numeric_limits<double>::lowest()));
  f(chr::duration<double>(-std::numeric_limits<double>::infinity()));
  f(chr::duration<double>(std::numeric_limits<double>::quiet_NaN()));
}

// A wait that a working timeout ends at once; bounded, so that a timeout
// that never fires fails the test instead of hanging it.
void long_sleep() { sp::sleep_for(30s); }

}  // namespace

TEST_CASE("with_timeout longer than the clock's range returns f's value", "[deadline]") {
  const unsigned workers = GENERATE(1u, 2u);
  run_checked(workers, [] {
    for_each_huge([](auto d) {
      INFO("count " << d.count());
      // f suspends, so the scope's deadline is consulted by a real wait.
      const int r = sp::with_timeout(d, [] {
        sp::sleep_for(1ms);
        sp::yield();
        return 42;
      });
      CHECK(r == 42);
      // The scope must not hide an inner, shorter one.
      CHECK_THROWS_AS(sp::with_timeout(d, [] { sp::with_timeout(1ms, long_sleep); }), sp::TimedOut);
    });
  });
}

TEST_CASE("with_deadline(time_point::max()) never expires", "[deadline]") {
  const unsigned workers = GENERATE(1u, 2u);
  run_checked(workers, [] {
    const int r = sp::with_deadline(Clock::time_point::max(), [] {
      sp::sleep_for(1ms);
      return sp::with_timeout(chr::hours::max(), [] {
        sp::yield();
        return 7;
      });
    });
    CHECK(r == 7);
    // An outside cancel inside a never-expiring scope is Cancelled, not TimedOut.
    std::atomic<bool> started{false};
    auto t = sp::spawn([&] {
      sp::with_deadline(Clock::time_point::max(), [&] {
        started.store(true);
        sp::sleep_for(chr::hours::max());
      });
    });
    while (!started.load()) sp::yield();
    t.cancel();
    CHECK_THROWS_AS(t.join(), sp::Cancelled);
  });
}

TEST_CASE("a cancelled sleep_for longer than the clock's range raises Cancelled", "[deadline]") {
  const unsigned workers = GENERATE(1u, 2u);
  run_checked(workers, [] {
    for_each_huge([](auto d) {
      INFO("count " << d.count());
      std::atomic<bool> started{false};
      auto t = sp::spawn([&started, d] {
        started.store(true);
        sp::sleep_for(d);
      });
      while (!started.load()) sp::yield();
      // Not a wait for time to pass: a sleep whose deadline had wrapped into
      // the past would end here, as the worker fires due timers between
      // fibers; a correct one is still asleep after any number of these.
      for (int i = 0; i < 1000; ++i) sp::yield();
      t.cancel();
      CHECK_THROWS_AS(t.join(), sp::Cancelled);
    });
  });
}

TEST_CASE("a zero, negative or NaN timeout has already expired", "[deadline]") {
  const unsigned workers = GENERATE(1u, 2u);
  run_checked(workers, [] {
    for_each_expired([](auto d) {
      INFO("count " << d.count());
      CHECK_THROWS_AS(sp::with_timeout(d, long_sleep), sp::TimedOut);
      sp::sleep_for(d);  // returns at once (it would throw if cancelled)
      std::vector<sp::Task<int>> tasks;
      tasks.push_back(sp::spawn([] {
        long_sleep();
        return 1;
      }));
      const sp::WaitResult w = sp::wait(tasks, sp::WaitFor::all_completed, d);
      CHECK(w.done.empty());
      CHECK(w.pending.size() == 1);
      auto ac = sp::as_completed(tasks, d);
      CHECK_THROWS_AS(ac.begin(), sp::TimedOut);
      tasks[0].cancel();
      CHECK_THROWS_AS(tasks[0].join(), sp::Cancelled);
    });
  });
  // A plain thread too: sleep_for returns at once.
  sp::sleep_for(chr::hours::min());
  sp::sleep_for(chr::duration<double>(std::numeric_limits<double>::quiet_NaN()));
}

TEST_CASE("wait and as_completed with a timeout longer than the clock's range", "[deadline]") {
  const unsigned workers = GENERATE(1u, 2u);
  run_checked(workers, [] {
    for_each_huge([](auto d) {
      INFO("count " << d.count());
      std::vector<sp::Task<int>> tasks;
      for (int i = 0; i < 3; ++i) {
        tasks.push_back(sp::spawn([i] {
          sp::sleep_for(1ms);
          return i;
        }));
      }
      const sp::WaitResult w = sp::wait(tasks, sp::WaitFor::all_completed, d);
      CHECK(w.done.size() == 3);
      CHECK(w.pending.empty());
      std::vector<sp::Task<int>> more;
      for (int i = 0; i < 3; ++i) {
        more.push_back(sp::spawn([i] {
          sp::sleep_for(1ms);
          return 10 + i;
        }));
      }
      int sum = 0;
      for (auto& t : sp::as_completed(more, d)) sum += t.join();
      CHECK(sum == 33);
    });
  });
}

TEST_CASE("shutdown_timeout of milliseconds::max() waits for the cancelled fibers", "[deadline]") {
  const unsigned workers = GENERATE(1u, 2u);
  sp::RuntimeOptions o = options(workers);
  o.shutdown_timeout = chr::milliseconds::max();
  std::atomic<int> cleaned{0};
  std::atomic<bool> started{false};
  run_checked(o, [&] {
    sp::spawn([&] {
      CountOnExit g{cleaned};
      started.store(true);
      sp::sleep_for(chr::hours::max());
    }).detach();
    while (!started.load()) sp::yield();
  });
  CHECK(cleaned.load() == 1);
}
