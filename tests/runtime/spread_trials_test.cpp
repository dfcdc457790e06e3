// SpreadTrials (runtime/src/gather.hpp): a saturation spread that a
// starved gather follows within kTrial backs the next spreads off, the
// backoff doubling from kFirstBackoff up to kMaxBackoff; a spread that held
// starts it over. Driven with made-up times, no runtime.
#include <catch2/catch.hpp>

#include <chrono>

#include "gather.hpp"

using spindle::detail::SpreadTrials;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {
const Clock::time_point t0 = Clock::time_point{} + std::chrono::hours(1);
}

TEST_CASE("spreads are allowed until one is followed by a starved gather") {
  SpreadTrials t;
  CHECK(t.allowed(t0));
  t.starved_gather(t0);  // no spread before it: no verdict
  CHECK(t.allowed(t0 + milliseconds(1)));
  t.spread(t0);
  CHECK(t.allowed(t0 + milliseconds(1)));  // a spread alone backs nothing off
  t.starved_gather(t0 + milliseconds(40));
  CHECK_FALSE(t.allowed(t0 + milliseconds(41)));
  CHECK_FALSE(t.allowed(t0 + milliseconds(139)));
  CHECK(t.allowed(t0 + milliseconds(140)));  // kFirstBackoff after the gather
}

TEST_CASE("a starved gather after kTrial is no verdict on the spread") {
  SpreadTrials t;
  t.spread(t0);
  t.starved_gather(t0 + SpreadTrials::kTrial + milliseconds(1));
  CHECK(t.allowed(t0 + SpreadTrials::kTrial + milliseconds(2)));
}

TEST_CASE("each failed trial doubles the backoff, up to kMaxBackoff") {
  SpreadTrials t;
  Clock::time_point now = t0;
  Clock::duration expect = SpreadTrials::kFirstBackoff;
  for (int i = 0; i < 10; ++i) {
    INFO("trial " << i);
    REQUIRE(t.allowed(now));
    t.spread(now);
    now += milliseconds(10);
    t.starved_gather(now);
    t.starved_gather(now + milliseconds(5));  // one verdict a trial
    CHECK_FALSE(t.allowed(now + expect - milliseconds(1)));
    CHECK(t.allowed(now + expect));
    now += expect;
    expect = std::min<Clock::duration>(expect * 2, SpreadTrials::kMaxBackoff);
  }
  CHECK(expect == SpreadTrials::kMaxBackoff);
}

TEST_CASE("a spread that held starts the backoff over") {
  SpreadTrials t;
  // Two failed trials: the backoff is at 200 ms.
  t.spread(t0);
  t.starved_gather(t0 + milliseconds(10));
  Clock::time_point now = t0 + milliseconds(10) + SpreadTrials::kFirstBackoff;
  t.spread(now);
  t.starved_gather(now + milliseconds(10));
  now += milliseconds(10) + 2 * SpreadTrials::kFirstBackoff;
  REQUIRE(t.allowed(now));
  // A trial that held (no starved gather within kTrial) ...
  t.spread(now);
  now += SpreadTrials::kTrial + milliseconds(50);
  // ... so the next failure backs off kFirstBackoff again, not 400 ms.
  t.spread(now);
  t.starved_gather(now + milliseconds(10));
  CHECK_FALSE(t.allowed(now + milliseconds(10) + SpreadTrials::kFirstBackoff - milliseconds(1)));
  CHECK(t.allowed(now + milliseconds(10) + SpreadTrials::kFirstBackoff));
}

TEST_CASE("spreads within kTrial of the first belong to its trial") {
  SpreadTrials t;
  t.spread(t0);
  t.spread(t0 + milliseconds(60));  // the watcher asks again: same trial
  t.starved_gather(t0 + SpreadTrials::kTrial + milliseconds(10));  // 110 ms after the first
  CHECK(t.allowed(t0 + SpreadTrials::kTrial + milliseconds(11)));
}
