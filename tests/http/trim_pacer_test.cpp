// trim_pacer_test: the idle sweep's rule for when to trim the heap
// (io/src/http/trim_pacer.hpp), driven with made-up clocks and trim
// times: no server, no malloc.
#include <cstdint>

#include <catch2/catch.hpp>

#include "trim_pacer.hpp"

using spindle::http::detail::TrimPacer;

namespace {
constexpr std::uint64_t kStart = 1'000'000;  // a steady ms count well past zero
}

TEST_CASE("no trim for fewer than kAfter releases since the last one, however long ago") {
  TrimPacer p;
  CHECK_FALSE(p.due(kStart, TrimPacer::kAfter - 1));
  CHECK(p.due(kStart, TrimPacer::kAfter));
  p.trimmed(kStart, TrimPacer::kAfter, 10);
  CHECK_FALSE(p.due(kStart + 3'600'000, 2 * TrimPacer::kAfter - 1));
  CHECK(p.due(kStart + 3'600'000, 2 * TrimPacer::kAfter));
}

TEST_CASE("a burst's later releases are trimmed on the next pass after a long trim") {
  // The case the budget is for: a first trim of 34 ms (10,000 connections
  // going idle at once, the 2-core VM) must not hold off the trim of the
  // releases that came after it. With a wait of 100 x the last trim, the
  // next was allowed only 3.4 s later.
  TrimPacer p;
  REQUIRE(p.due(kStart, 3000));
  p.trimmed(kStart, 3000, 34'000);
  CHECK(p.due(kStart + 125, 10'000));
  p.trimmed(kStart + 125, 10'000, 30'000);
  CHECK(p.due(kStart + 250, 10'064));
}

TEST_CASE("trims average at most 1% of a core while releases never stop") {
  // Each pass (125 ms) has enough releases and each trim takes 5 ms: 4% of
  // the time if every pass trimmed. Over 10 minutes the trims may take the
  // saved-up burst plus 1% of the stretch, and not much less (the budget
  // is spent, not wasted).
  TrimPacer p;
  std::uint64_t releases = 0, trimmed_us = 0;
  const std::uint64_t span_ms = 600'000;
  for (std::uint64_t t = 0; t < span_ms; t += 125) {
    releases += 100;
    if (p.due(kStart + t, releases)) {
      p.trimmed(kStart + t, releases, 5'000);
      trimmed_us += 5'000;
    }
  }
  const std::uint64_t allowed_us = TrimPacer::kBurstUs + span_ms * 1000 / TrimPacer::kShare;
  CHECK(trimmed_us <= allowed_us + 5'000);  // the last trim may overdraw by its own length
  CHECK(trimmed_us >= allowed_us - 2 * 5'000);
}

TEST_CASE("the saved-up budget stops at kBurstUs however long the server was quiet") {
  TrimPacer p;
  std::uint64_t releases = 0;
  std::uint64_t t = kStart + 86'400'000;  // a day with nothing to trim
  int trims = 0;
  // Trims of 30 ms back to back, one per pass: the burst holds 100 ms.
  for (int pass = 0; pass < 20; ++pass, t += 1) {
    releases += TrimPacer::kAfter;
    if (p.due(t, releases)) {
      p.trimmed(t, releases, 30'000);
      ++trims;
    }
  }
  CHECK(trims == 4);  // 100 ms: three full trims and a fourth that overdraws
}

TEST_CASE("an overdrawn budget holds the next trim off until it is earned back") {
  TrimPacer p;
  REQUIRE(p.due(kStart, TrimPacer::kAfter));
  p.trimmed(kStart, TrimPacer::kAfter, 150'000);  // 50 ms over the burst
  // 50 ms of trim time at 1% takes 5 s of wall time to earn back.
  CHECK_FALSE(p.due(kStart + 4'999, 2 * TrimPacer::kAfter));
  CHECK(p.due(kStart + 5'001, 2 * TrimPacer::kAfter));
}

TEST_CASE("a clock that steps back earns nothing and breaks nothing") {
  TrimPacer p;
  REQUIRE(p.due(kStart, TrimPacer::kAfter));
  p.trimmed(kStart, TrimPacer::kAfter, 150'000);
  CHECK_FALSE(p.due(kStart - 1'000, 2 * TrimPacer::kAfter));
  CHECK_FALSE(p.due(kStart + 4'999, 2 * TrimPacer::kAfter));
  CHECK(p.due(kStart + 5'001, 2 * TrimPacer::kAfter));
}

TEST_CASE("a long quiet stretch earns back even a trim far past the burst") {
  // A 500 ms trim leaves the budget 400 ms below zero; an hour later it is
  // full again, and the next burst is trimmed on its first pass. A cap of
  // its own on each refill's credit threw most of the hour away (161
  // passes of waiting, a reviewer's count).
  TrimPacer p;
  REQUIRE(p.due(kStart, TrimPacer::kAfter));
  p.trimmed(kStart, TrimPacer::kAfter, 500'000);
  CHECK(p.due(kStart + 3'600'000, 2 * TrimPacer::kAfter));
}
