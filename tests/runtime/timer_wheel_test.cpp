// timer_wheel_test.cpp: timer_wheel.hpp driven directly. A randomized walk
// against a model (a std::multimap of deadlines) checks that a poll takes
// out exactly the timers whose deadline is at or before `now` rounded down
// to a tick -- none early, none left behind -- in deadline order; that
// removal from anywhere keeps the wheel consistent; that contains() says
// whether a Waiter is in; and that next_expiry() is never later than the
// first due timer and reaches it in a bounded number of hops (one per
// level it moves down). Deterministic cases pin the edges: many timers in
// one tick in reverse order, a slot's head/middle/tail removed, deadlines
// at the ends of the clock, and a poll whose `now` is behind the wheel's.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "rng.hpp"
#include "timer_wheel.hpp"

using spindle::detail::TimerWheel;
using spindle::detail::Waiter;
using Clock = std::chrono::steady_clock;
using std::chrono::nanoseconds;

namespace {

constexpr std::int64_t kTick = std::int64_t{1} << TimerWheel::kTickShift;

Clock::time_point at(std::int64_t ns) { return Clock::time_point(nanoseconds(ns)); }

// The latest deadline a poll at `now` takes out: now rounded down to a tick.
Clock::time_point due_bound(Clock::time_point now) {
  const auto ns = now.time_since_epoch().count();
  return at(ns <= 0 ? 0 : ns / kTick * kTick);
}

std::vector<Waiter*> poll_all(TimerWheel& wheel, Clock::time_point now) {
  std::vector<Waiter*> out;
  const std::size_t n = wheel.poll(now, [&](Waiter* w) { out.push_back(w); });
  CHECK(n == out.size());
  return out;
}

// A deadline `from` plus an offset drawn from many scales: within a tick,
// microseconds, milliseconds, seconds, hours, years, or in the past.
Clock::time_point random_deadline(spindle_test::Xorshift& rng, Clock::time_point from) {
  const auto base = from.time_since_epoch().count();
  switch (rng() % 10) {
    case 0: return at(base - static_cast<std::int64_t>(rng() % 5'000'000));  // past
    case 1: return at(base + static_cast<std::int64_t>(rng() % 2'048));       // this tick or next
    case 2:
    case 3: return at(base + static_cast<std::int64_t>(rng() % 100'000));     // < 100 us
    case 4:
    case 5: return at(base + static_cast<std::int64_t>(rng() % 20'000'000));  // < 20 ms
    case 6: return at(base + static_cast<std::int64_t>(rng() % 5'000'000'000));  // < 5 s
    case 7: return at(base + static_cast<std::int64_t>(rng() % (std::int64_t{1} << 42)));  // ~1 h
    case 8: return at(base + static_cast<std::int64_t>(rng() % (std::int64_t{1} << 56)));  // ~2 years
    default: return at(base + static_cast<std::int64_t>(rng() % 64) * kTick);  // tick-aligned ties
  }
}

}  // namespace

TEST_CASE("the timer wheel fires exactly the due timers, in deadline order, against a model", "[timer_wheel]") {
  for (std::uint64_t seed : {1u, 2u, 3u, 4u}) {
    spindle_test::Xorshift rng(seed);
    // A realistic steady_clock origin (hours since boot), not tick-aligned.
    Clock::time_point now = at(3'600'000'000'000 + static_cast<std::int64_t>(rng() % 1'000'000'007));
    TimerWheel wheel(now);
    std::vector<std::unique_ptr<Waiter>> pool;
    std::vector<Waiter*> in;  // waiters in the wheel
    std::multimap<Clock::time_point, Waiter*> model;
    auto erase_model = [&](Waiter* w) {
      auto [b, e] = model.equal_range(w->deadline);
      for (auto it = b; it != e; ++it) {
        if (it->second == w) {
          model.erase(it);
          return true;
        }
      }
      return false;
    };
    auto check_poll = [&](Clock::time_point t) {
      const std::vector<Waiter*> fired = poll_all(wheel, t);
      const Clock::time_point bound = due_bound(t);
      for (std::size_t i = 0; i < fired.size(); ++i) {
        Waiter* w = fired[i];
        CHECK_FALSE(TimerWheel::contains(w));
        CHECK(w->deadline <= bound);  // never early
        if (i > 0) CHECK(fired[i - 1]->deadline <= w->deadline);
        REQUIRE(erase_model(w));
        std::erase(in, w);
      }
      // None left behind.
      if (!model.empty()) CHECK(model.begin()->first > bound);
      return fired.size();
    };
    for (int step = 0; step < 30000; ++step) {
      const unsigned op = static_cast<unsigned>(rng() % 16);
      if (op < 7 || in.empty()) {
        pool.push_back(std::make_unique<Waiter>());
        Waiter* w = pool.back().get();
        w->deadline = random_deadline(rng, now);
        wheel.insert(w);
        CHECK(TimerWheel::contains(w));
        in.push_back(w);
        model.emplace(w->deadline, w);
      } else if (op < 10) {
        const std::size_t k = static_cast<std::size_t>(rng() % in.size());
        Waiter* w = in[k];
        REQUIRE(TimerWheel::contains(w));
        wheel.remove(w);
        CHECK_FALSE(TimerWheel::contains(w));
        wheel.remove(w);  // a second remove is a no-op
        REQUIRE(erase_model(w));
        in.erase(in.begin() + static_cast<std::ptrdiff_t>(k));
      } else if (op < 14) {
        // Time moves on by a random amount, often not at all.
        const std::int64_t adv[] = {0, 1, 700, 5'000, 70'000, 3'000'000, 300'000'000};
        now += nanoseconds(adv[rng() % 7]);
        check_poll(now);
      } else if (!model.empty() && model.begin()->first <= now + nanoseconds(std::int64_t{1} << 42)) {
        // Hop along next_expiry(): never later than the first due timer
        // (rounded up to a tick), nothing due before it, and the first
        // timer comes out after at most one hop per level. (Only when it
        // is within hours: hopping years ahead would run the clock out.)
        const Clock::time_point first = model.begin()->first;
        int hops = 0;
        for (;;) {
          const Clock::time_point next = wheel.next_expiry();
          REQUIRE(next != Clock::time_point::max());
          CHECK(next <= std::max(now, first) + nanoseconds(kTick));
          if (next > now) {
            CHECK(check_poll(next - nanoseconds(1)) == 0);
            now = next;
          }
          ++hops;
          REQUIRE(hops <= static_cast<int>(TimerWheel::kLevels) + 1);
          if (check_poll(now) > 0) break;
        }
        if (now < first) FAIL("fired before the first deadline");
      }
      REQUIRE(wheel.size() == model.size());
      CHECK(wheel.empty() == model.empty());
    }
    // Drain: everything left comes out in order by the end of time.
    check_poll(Clock::time_point::max());
    CHECK(wheel.empty());
    CHECK(model.empty());
    CHECK(wheel.next_expiry() == Clock::time_point::max());
  }
}

TEST_CASE("timers in one tick come out sorted by their exact deadlines", "[timer_wheel]") {
  const Clock::time_point t0 = at(1'000'000'000'000);
  TimerWheel wheel(t0);
  // 200 deadlines inside one tick (inserted latest first) and in the next
  // few ticks, scrambled.
  std::vector<std::unique_ptr<Waiter>> ws;
  spindle_test::Xorshift rng(99);
  for (int i = 0; i < 600; ++i) {
    ws.push_back(std::make_unique<Waiter>());
    const std::int64_t off = i < 200 ? 1000 - i * 5 : static_cast<std::int64_t>(rng() % (4 * kTick));
    ws.back()->deadline = t0 + nanoseconds(off);
    wheel.insert(ws.back().get());
  }
  const std::vector<Waiter*> fired = poll_all(wheel, t0 + nanoseconds(10 * kTick));
  REQUIRE(fired.size() == ws.size());
  for (std::size_t i = 1; i < fired.size(); ++i) CHECK(fired[i - 1]->deadline <= fired[i]->deadline);
}

TEST_CASE("removing a slot's head, middle and tail keeps the rest", "[timer_wheel]") {
  const Clock::time_point t0 = at(5 * kTick);
  TimerWheel wheel(t0);
  Waiter a, b, c, d;
  for (Waiter* w : {&a, &b, &c, &d}) {
    w->deadline = t0 + nanoseconds(3 * kTick);  // one slot
    wheel.insert(w);
  }
  wheel.remove(&d);  // the head (inserted last)
  wheel.remove(&b);  // the middle
  wheel.remove(&a);  // the tail
  CHECK(wheel.size() == 1);
  CHECK(wheel.next_expiry() == t0 + nanoseconds(3 * kTick));
  CHECK(poll_all(wheel, t0 + nanoseconds(3 * kTick - 1)).empty());  // not early
  const auto fired = poll_all(wheel, t0 + nanoseconds(3 * kTick));
  REQUIRE(fired.size() == 1);
  CHECK(fired[0] == &c);
  CHECK(wheel.empty());
  CHECK(wheel.next_expiry() == Clock::time_point::max());
  // The emptied slot's bit is clear: a new timer there is found again.
  wheel.insert(&a);
  CHECK(wheel.next_expiry() == a.deadline);
  wheel.remove(&a);
  CHECK(wheel.next_expiry() == Clock::time_point::max());
}

TEST_CASE("deadlines at the ends of the clock and a poll behind the wheel", "[timer_wheel]") {
  const Clock::time_point t0 = at(7'000'000'000'000);
  TimerWheel wheel(t0);
  Waiter past, never, soon;
  past.deadline = Clock::time_point::min();
  never.deadline = Clock::time_point::max();
  soon.deadline = t0 + std::chrono::milliseconds(1);
  wheel.insert(&past);
  wheel.insert(&never);
  wheel.insert(&soon);
  // The past timer is due at once.
  CHECK(wheel.next_expiry() <= t0);
  auto fired = poll_all(wheel, t0);
  REQUIRE(fired.size() == 1);
  CHECK(fired[0] == &past);
  // A `now` behind the wheel's time (another worker's clock read, taken
  // before the owner's poll) fires nothing.
  CHECK(poll_all(wheel, t0 - std::chrono::seconds(1)).empty());
  CHECK(poll_all(wheel, soon.deadline - nanoseconds(1)).empty());
  // Due within one tick of its deadline (ticks are rounded up).
  fired = poll_all(wheel, soon.deadline + nanoseconds(kTick - 1));
  REQUIRE(fired.size() == 1);
  CHECK(fired[0] == &soon);
  // The far timer: nowhere near due within a century.
  CHECK(wheel.next_expiry() > t0 + std::chrono::milliseconds(1));
  CHECK(poll_all(wheel, t0 + std::chrono::hours(24 * 365 * 100)).empty());
  CHECK(wheel.size() == 1);
  // A deadline of time_point::max() never comes (as with the heap before):
  // not even a poll at max() takes it, and it asks for no wake-up.
  CHECK(poll_all(wheel, Clock::time_point::max()).empty());
  CHECK(wheel.next_expiry() == Clock::time_point::max());
  CHECK(TimerWheel::contains(&never));
  wheel.remove(&never);
  CHECK(wheel.empty());
}
