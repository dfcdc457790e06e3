// deadline.hpp: deadline_after, the one conversion from a relative timeout
// to a steady_clock deadline. Every `_for` / `with_timeout` style call goes
// through it, because `now() + d` is undefined behaviour once d reaches
// past time_point::max() (hours::max(), duration::max(): "wait forever"),
// and converting d to nanoseconds can overflow before the addition does.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <ratio>
#include <type_traits>

namespace spindle::detail {

// time_after(from, d): from + d, rounded up to the clock's tick (a
// timeout never ends early), saturated at time_point::max() (which the
// timers treat as "never"): a plain `from + d` is undefined behaviour for
// the milliseconds::max() users pass to mean "no limit" (UBSan caught it
// in shutdown's report). Zero, negative and NaN durations give `from`.
// `from` is a steady_clock reading (>= 0).
template <class Rep, class Period>
std::chrono::steady_clock::time_point time_after(std::chrono::steady_clock::time_point now,
                                                 std::chrono::duration<Rep, Period> d) noexcept {
  using Clock = std::chrono::steady_clock;
  using Tick = Clock::duration;
  // steady_clock counts up from boot (CLOCK_MONOTONIC), so now >= 0 and
  // this subtraction cannot overflow.
  const Tick::rep room = (Clock::time_point::max() - now).count();
  using Ratio = std::ratio_divide<Period, Tick::period>;
  if constexpr (std::is_integral_v<Rep> && Ratio::den == 1) {
    // The usual case (an integral count of ticks, microseconds, seconds,
    // hours...): exact integer arithmetic, d fits iff d <= room / ticks.
    if (d.count() <= 0) return now;
    constexpr auto ticks = static_cast<std::uintmax_t>(Ratio::num);
    if (static_cast<std::uintmax_t>(d.count()) > static_cast<std::uintmax_t>(room) / ticks) {
      return Clock::time_point::max();
    }
    return now + Tick(static_cast<Tick::rep>(static_cast<std::uintmax_t>(d.count()) * ticks));
  } else {
    // Floating counts and units finer than a tick. In long double any
    // arithmetic count converts without overflow (hours::max() is ~3e31
    // ns), and the result is cast back to an integer only below `room`.
    const long double n = std::chrono::duration<long double, Tick::period>(d).count();
    if (!(n > 0)) return now;
    const long double up = std::ceil(n);
    if (up >= static_cast<long double>(room)) return Clock::time_point::max();
    return now + Tick(static_cast<Tick::rep>(up));
  }
}

// deadline_after(d): time_after(steady_clock::now(), d). Zero, negative
// and NaN durations give now(): the deadline has already passed, so a
// wait times out at once.
template <class Rep, class Period>
std::chrono::steady_clock::time_point deadline_after(std::chrono::duration<Rep, Period> d) noexcept {
  return time_after(std::chrono::steady_clock::now(), d);
}

// kLongestTimeout and capped(d): an option's duration is kept at most ten
// years. Users write milliseconds::max() for "no limit" (the docs allow
// it), and such a value, converted to the clock's nanoseconds, wraps to
// -1 ms: a comparison `now - since >= d` then always held (an HTTP/2
// connection closed as soon as it was quiet, a runtime reported a deadlock
// at once). Ten years is "no limit" in practice and leaves room for the
// arithmetic the owners do with it (the placement policy multiplies
// handoff_after by 25: 7.9e18 ns, under the 9.2e18 of int64). Each owner
// caps its options once, when it copies them (Scheduler, Server, Client,
// WebSocket, Ticker). Compared in d's own unit, so that no conversion of
// d itself can overflow.
inline constexpr std::chrono::hours kLongestTimeout{24 * 3653};

template <class Rep, class Period>
constexpr std::chrono::duration<Rep, Period> capped(std::chrono::duration<Rep, Period> d) noexcept {
  const auto cap = std::chrono::floor<std::chrono::duration<Rep, Period>>(kLongestTimeout);
  return d > cap ? cap : d;
}

// limit_ns(d): d in nanoseconds for a TimedOut's text ("timed out after
// 2.5 s"), defined for every d: zero, negative and NaN give 0 (they expire
// at once), a d past nanoseconds' range gives its max. A plain
// duration_cast overflows (undefined behaviour) for hours::min() and the
// like, which the tests pass as "already expired".
template <class Rep, class Period>
std::chrono::nanoseconds limit_ns(std::chrono::duration<Rep, Period> d) noexcept {
  using Ns = std::chrono::nanoseconds;
  // As deadline_after: long double holds any count without overflow.
  const long double n = std::chrono::duration<long double, std::nano>(d).count();
  if (!(n > 0)) return Ns::zero();
  if (n >= static_cast<long double>(Ns::max().count())) return Ns::max();
  return Ns(static_cast<Ns::rep>(n));
}

}  // namespace spindle::detail
