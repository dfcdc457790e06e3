// SpreadTrials (runtime/src/gather.hpp): a saturation spread that a
// starved gather follows within kTrial, or whose workers ran less than
// kBoughtShare of a core over kTrial (the verdict), backs the next spreads
// off, the backoff doubling from kFirstBackoff up to kMaxBackoff; a spread
// that held starts it over. Driven with made-up times and CPU times, no
// runtime.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>

#include "gather.hpp"

using spindle::detail::SpreadTrials;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {
const Clock::time_point t0 = Clock::time_point{} + std::chrono::hours(1);

// Spreads are backed off until `end` and allowed from it on.
void check_backed_off_until(const SpreadTrials& t, Clock::time_point end) {
  CHECK_FALSE(t.allowed(end - milliseconds(1)));
  CHECK(t.allowed(end));
}

// A trial started at `at` and failed by a starved gather 10 ms later backs
// off kFirstBackoff: what follows a trial that held (or no trial at all).
void check_next_failure_backs_off_first(SpreadTrials& t, Clock::time_point at) {
  t.spread(at, 0);
  t.starved_gather(at + milliseconds(10));
  check_backed_off_until(t, at + milliseconds(10) + SpreadTrials::kFirstBackoff);
}
}  // namespace

TEST_CASE("spreads are allowed until one is followed by a starved gather") {
  SpreadTrials t;
  CHECK(t.allowed(t0));
  t.starved_gather(t0);  // no spread before it: no verdict
  CHECK(t.allowed(t0 + milliseconds(1)));
  t.spread(t0, 0);
  CHECK(t.allowed(t0 + milliseconds(1)));  // a spread alone backs nothing off
  t.starved_gather(t0 + milliseconds(40));
  CHECK_FALSE(t.allowed(t0 + milliseconds(41)));
  CHECK_FALSE(t.allowed(t0 + milliseconds(139)));
  CHECK(t.allowed(t0 + milliseconds(140)));  // kFirstBackoff after the gather
}

TEST_CASE("a starved gather after kTrial is no verdict on the spread") {
  SpreadTrials t;
  t.spread(t0, 0);
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
    t.spread(now, 0);
    now += milliseconds(10);
    t.starved_gather(now);
    t.starved_gather(now + milliseconds(5));  // one verdict a trial
    check_backed_off_until(t, now + expect);
    now += expect;
    expect = std::min<Clock::duration>(expect * 2, SpreadTrials::kMaxBackoff);
  }
  CHECK(expect == SpreadTrials::kMaxBackoff);
}

TEST_CASE("a spread that held starts the backoff over") {
  SpreadTrials t;
  // Two failed trials: the backoff is at 200 ms.
  t.spread(t0, 0);
  t.starved_gather(t0 + milliseconds(10));
  Clock::time_point now = t0 + milliseconds(10) + SpreadTrials::kFirstBackoff;
  t.spread(now, 0);
  t.starved_gather(now + milliseconds(10));
  now += milliseconds(10) + 2 * SpreadTrials::kFirstBackoff;
  REQUIRE(t.allowed(now));
  // A trial that held (no starved gather within kTrial) ...
  t.spread(now, 0);
  now += SpreadTrials::kTrial + milliseconds(50);
  // ... so the next failure backs off kFirstBackoff again, not 400 ms.
  check_next_failure_backs_off_first(t, now);
}

TEST_CASE("spreads within kTrial of the first belong to its trial") {
  SpreadTrials t;
  CHECK(t.opens_trial(t0));
  t.spread(t0, 0);
  CHECK_FALSE(t.opens_trial(t0 + milliseconds(60)));
  t.spread(t0 + milliseconds(60), 0);  // the watcher asks again: same trial
  CHECK(t.opens_trial(t0 + SpreadTrials::kTrial + milliseconds(1)));
  t.starved_gather(t0 + SpreadTrials::kTrial + milliseconds(10));  // 110 ms after the first
  CHECK(t.allowed(t0 + SpreadTrials::kTrial + milliseconds(11)));
}

namespace {
// CPU time, in nanoseconds, of `permille` of one core over `d`.
std::int64_t cpu_of(std::int64_t permille, Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count() * permille / 1000;
}
}  // namespace

TEST_CASE("a trial whose workers ran under kBoughtShare of a core fails at its verdict") {
  SpreadTrials t;
  const std::int64_t base = 5'000'000'000;  // the workers' CPU time before the spread
  t.spread(t0, base);
  const auto verdict_at = t0 + SpreadTrials::kTrial;
  CHECK_FALSE(t.verdict_due(verdict_at - milliseconds(1)));
  // Too early: no verdict, however little the workers ran.
  t.judge(verdict_at - milliseconds(1), base);
  CHECK(t.allowed(verdict_at));
  REQUIRE(t.verdict_due(verdict_at));
  // 1.1 cores over the trial: less than kBoughtShare (1.2).
  t.judge(verdict_at, base + cpu_of(1100, SpreadTrials::kTrial));
  CHECK_FALSE(t.verdict_due(verdict_at));  // one verdict a trial
  check_backed_off_until(t, verdict_at + SpreadTrials::kFirstBackoff);
}

TEST_CASE("a trial whose workers ran kBoughtShare of a core or more holds") {
  SpreadTrials t;
  const std::int64_t base = 1'000'000;
  t.spread(t0, base);
  const auto verdict_at = t0 + SpreadTrials::kTrial + milliseconds(20);
  t.judge(verdict_at, base + cpu_of(SpreadTrials::kBoughtShare, SpreadTrials::kTrial + milliseconds(20)));
  CHECK(t.allowed(verdict_at));
  // Held: a later failure backs off kFirstBackoff, as after no failure.
  check_next_failure_backs_off_first(t, verdict_at + milliseconds(10));
}

TEST_CASE("failed verdicts double the backoff like starved gathers") {
  SpreadTrials t;
  Clock::time_point now = t0;
  std::int64_t cpu = 0;
  Clock::duration expect = SpreadTrials::kFirstBackoff;
  for (int i = 0; i < 3; ++i) {
    INFO("trial " << i);
    REQUIRE(t.allowed(now));
    t.spread(now, cpu);
    now += SpreadTrials::kTrial;
    cpu += cpu_of(1000, SpreadTrials::kTrial);  // one core: the workers took turns on it
    t.judge(now, cpu);
    check_backed_off_until(t, now + expect);
    now += expect;
    expect *= 2;
  }
}

TEST_CASE("a trial a starved gather failed gets no second failure at its verdict") {
  SpreadTrials t;
  t.spread(t0, 0);
  t.starved_gather(t0 + milliseconds(20));  // fails: backoff kFirstBackoff from t0 + 20 ms
  t.judge(t0 + SpreadTrials::kTrial, 0);    // would fail too: it must not double the backoff
  CHECK(t.allowed(t0 + milliseconds(20) + SpreadTrials::kFirstBackoff));
}
