// ticker.hpp: Ticker, a fixed-rate clock for periodic work (Go's
// time.Ticker; asyncio's `while True: ...; await asyncio.sleep(period)`
// without the drift).
//
//   sp::Ticker every(100ms);
//   for (;;) {
//     every.tick();          // waits for the next multiple of 100ms
//     poll();
//   }
//
// Ticks fall at start + k * period (start: construction or reset()), so
// the time the work takes does not push later ticks back, unlike a loop of
// sleep_for(period).
//
// Missed ticks: when the work overruns one or more ticks, they are not
// delivered in a burst to catch up. The next tick() returns at once, counts
// the ticks that went by in its return value, and the schedule continues at
// the next multiple of the period that is still ahead. Go's Ticker drops
// them the same way (its channel holds one tick); here the count says how
// many there were.
//
// A Ticker is a plain value owned by one fiber (or thread); it starts no
// fiber and arms no timer of its own while nobody waits in tick().
#pragma once

#include <chrono>
#include <cstdint>
#include <stdexcept>

#include <spindle/runtime/detail/deadline.hpp>
#include <spindle/runtime/detail/macros.hpp>
#include <spindle/runtime/this_fiber.hpp>

namespace spindle {

class Ticker {
 public:
  using Clock = std::chrono::steady_clock;

  // Ticker(period): the first tick is one period from now. A period that is
  // zero or negative is std::invalid_argument (Go panics); one past ten
  // years (detail::kLongestTimeout, hours::max() for instance) is ten
  // years: in the clock's nanoseconds it would overflow.
  template <class Rep, class Period>
  explicit Ticker(std::chrono::duration<Rep, Period> period)
      : period_(checked(period)),
        next_(Clock::now() + period_) {}

  // tick: waits until the next tick and returns how many ticks went by
  // since the previous tick() returned: 1 when on time, more after the
  // caller overran (see "Missed ticks" above). May suspend; a cancellation
  // point (Cancelled; with_timeout's TimedOut around it). On a plain thread
  // it blocks the thread.
  SPINDLE_MAY_SUSPEND std::uint64_t tick() {
    sleep_until(next_);  // returns at once when next_ has passed
    const auto now = Clock::now();
    // Ticks at next_, next_ + period, ... up to now all went by.
    const auto due = static_cast<std::uint64_t>((now - next_) / period_) + 1;
    next_ += period_ * static_cast<Clock::duration::rep>(due);
    return due;
  }

  // reset: a new period; the next tick is one (new) period from now.
  template <class Rep, class Period>
  void reset(std::chrono::duration<Rep, Period> period) {
    period_ = checked(period);
    next_ = Clock::now() + period_;
  }

  Clock::duration period() const noexcept { return period_; }
  // next: when the next tick falls.
  Clock::time_point next() const noexcept { return next_; }

 private:
  // checked: the period in the clock's unit. Tested in its own unit
  // first: a NaN or a -1e300 s period converted to nanoseconds is
  // undefined behaviour before any test of the result could refuse it.
  template <class Rep, class Period>
  static Clock::duration checked(std::chrono::duration<Rep, Period> p) {
    if (!(p > std::chrono::duration<Rep, Period>::zero()))
      throw std::invalid_argument("spindle::Ticker: period must be positive");
    return std::chrono::ceil<Clock::duration>(detail::capped(p));
  }
  Clock::duration period_;
  Clock::time_point next_;
};

}  // namespace spindle
