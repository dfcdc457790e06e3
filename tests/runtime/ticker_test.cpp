// ticker_test.cpp: Ticker (issue #15). Ticks fall on the fixed schedule
// start + k * period; overrun ticks are counted, not delivered in a burst;
// tick() is a cancellation point. Checks are on the schedule the Ticker
// reports and on lower bounds of elapsed time (never an upper bound on
// speed: the CI machine is shared).
#include <chrono>
#include <cstdint>
#include <stdexcept>

#include <limits>

#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;

TEST_CASE("Ticker: ticks never come early and keep a fixed schedule", "[ticker]") {
  run_checked(SPINDLE_TEST_WORKERS(), [] {
    const auto period = 5ms;
    const auto start = Clock::now();
    sp::Ticker ticker(period);
    const auto first = ticker.next();
    FIBER_CHECK(first >= start + period);
    std::uint64_t total = 0;
    for (int i = 0; i < 10; ++i) {
      const auto due = ticker.next();
      const std::uint64_t n = ticker.tick();
      FIBER_CHECK(n >= 1);
      FIBER_CHECK(Clock::now() >= due);  // never early
      total += n;
      // The schedule only moves in whole periods from the first tick.
      FIBER_CHECK(ticker.next() == first + period * static_cast<long>(total));
      FIBER_CHECK(ticker.next() > due);
    }
    // Every counted tick went by: at least total periods since the start.
    FIBER_CHECK(Clock::now() - start >= period * static_cast<long>(total));
  });
}

TEST_CASE("Ticker: an overrun is counted and not delivered as a burst", "[ticker]") {
  run_checked(SPINDLE_TEST_WORKERS(), [] {
    const auto period = 10ms;
    sp::Ticker ticker(period);
    (void)ticker.tick();
    sp::sleep_for(period * 3 + period / 2);  // the work overruns three ticks
    const auto before_tick = Clock::now();
    const std::uint64_t missed = ticker.tick();
    FIBER_CHECK(missed >= 3);  // returned at once, counting them
    // The next tick lies ahead of the call: the missed ones were skipped,
    // not queued up (a catch-up schedule would be 2 periods behind here).
    FIBER_CHECK(ticker.next() > before_tick);
    const auto due = ticker.next();
    FIBER_CHECK(ticker.tick() >= 1);
    FIBER_CHECK(Clock::now() >= due);
  });
}

TEST_CASE("Ticker: tick is a cancellation point; reset; bad periods", "[ticker]") {
  run_checked(SPINDLE_TEST_WORKERS(), [] {
    auto t = sp::spawn([] {
      sp::Ticker slow(1h);
      slow.tick();
    });
    wait_suspended(t, "sleep");
    t.cancel();
    FIBER_CHECK(raises_cancelled([&] { t.join(); }));

    bool timed_out = false;
    try {
      sp::with_timeout(5ms, [] {
        sp::Ticker slow(1h);
        slow.tick();
      });
    } catch (const sp::TimedOut&) {
      timed_out = true;
    }
    FIBER_CHECK(timed_out);

    sp::Ticker ticker(1h);
    const auto before = Clock::now();
    ticker.reset(2ms);
    FIBER_CHECK(ticker.period() == std::chrono::milliseconds(2));
    FIBER_CHECK(ticker.next() >= before + 2ms);
    FIBER_CHECK(ticker.tick() >= 1);

    bool invalid = false;
    try {
      sp::Ticker bad(0ms);
    } catch (const std::invalid_argument&) {
      invalid = true;
    }
    FIBER_CHECK(invalid);
    // A NaN or a hugely negative floating period: refused before any
    // conversion to nanoseconds (undefined behaviour for these).
    for (const double secs : {std::numeric_limits<double>::quiet_NaN(), -1e300, -0.0}) {
      FIBER_CHECK(spindle_test::raises<std::invalid_argument>([&] { sp::Ticker bad{std::chrono::duration<double>(secs)}; }));
      FIBER_CHECK(spindle_test::raises<std::invalid_argument>([&] { ticker.reset(std::chrono::duration<double>(secs)); }));
    }
    FIBER_CHECK(ticker.period() == std::chrono::milliseconds(2));  // a refused reset changed nothing
  });
}

TEST_CASE("Ticker: a period of max() is ten years, not an error or a tick in the past", "[ticker]") {
  // In the clock's nanoseconds hours::max() overflowed: the constructor
  // threw "period must be positive", and nanoseconds::max() put the first
  // tick in the past (tick() returned at once).
  const auto ten_years = std::chrono::hours(24 * 3653);
  const auto before = Clock::now();
  sp::Ticker h(std::chrono::hours::max());
  CHECK(h.period() == ten_years);
  CHECK(h.next() >= before + ten_years);
  sp::Ticker n(std::chrono::nanoseconds::max());
  CHECK(n.period() == ten_years);
  CHECK(n.next() >= before + ten_years);
  n.reset(std::chrono::milliseconds::max());
  CHECK(n.period() == ten_years);
  CHECK(n.next() > before);
  run_checked(SPINDLE_TEST_WORKERS(), [] {
    bool timed_out = false;
    try {
      sp::with_timeout(20ms, [] {
        sp::Ticker t(std::chrono::nanoseconds::max());
        t.tick();
      });
    } catch (const sp::TimedOut&) {
      timed_out = true;
    }
    FIBER_CHECK(timed_out);  // it waited: the first tick is ten years away
  });
}
