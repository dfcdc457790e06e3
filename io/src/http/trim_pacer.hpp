// trim_pacer.hpp: when the server's idle sweep may hand the heap's free
// pages back to the kernel (Server::State::sweep_idle, trim_heap in
// server.cpp). Internal to http; no clock or malloc here, so the rule is
// tested alone (tests/http/trim_pacer_test.cpp).
//
// A trim walks every malloc arena and gives back each free page run with
// its own madvise, so it costs in proportion to what it returns: the
// sweep trims only once kAfter connections were released since the last
// trim, never for a trickle. Its time is then paced by a budget, Go's
// scavenger's idea (a share of the CPU, not a fixed period): the budget
// fills at 1/kShare of wall time (1%) up to kBurst, each trim spends what
// it took, and a trim may start while the budget is above zero. Over any
// stretch of T ms, trims take at most kBurst + T / kShare ms.
//
// Why a budget and not a wait after each trim: the wait (100 x the last
// trim's time) made a burst's memory stay resident for seconds. A burst
// of 10,000 connections going idle at once frees ~4 KiB each, between
// live chunks; its trim took 20-34 ms on the 2-core VM (2026-12-02; an
// LD_PRELOAD probe around malloc_trim), so the next one waited 2-3.4 s
// while the releases after it (the burst's later passes) stayed resident:
// the idle-connection row read 3.7-3.9 KiB per connection at 1 s in 3 of
// 5 rounds, 2.3 in the others (docs/benchmarks.md "Idle connections").
// With the budget, a burst after a quiet stretch is trimmed on the next
// passes, and a busy server's trims still average at most 1% of a core.
//
// Who may touch what: one pacer per server, used only by its sweep fiber.
#pragma once

#include <algorithm>
#include <cstdint>

namespace spindle::http::detail {

class TrimPacer {
 public:
  static constexpr std::uint64_t kAfter = 64;        // releases since the last trim
  static constexpr std::uint64_t kShare = 100;       // the budget fills at 1/kShare of wall time
  static constexpr std::uint64_t kBurstUs = 100'000;  // at most this much trim time saved up

  // due: whether the sweep should trim now (`now_ms`: a steady ms count;
  // `releases`: every release so far).
  bool due(std::uint64_t now_ms, std::uint64_t releases) noexcept {
    if (releases - trimmed_at_ < kAfter) return false;
    refill(now_ms);
    return budget_us_ > 0;
  }

  // trimmed: a trim that started at `now_ms`, with `releases` counted
  // before it, took `took_us`.
  void trimmed(std::uint64_t now_ms, std::uint64_t releases, std::uint64_t took_us) noexcept {
    refill(now_ms);
    budget_us_ -= static_cast<std::int64_t>(std::min<std::uint64_t>(took_us, kBurstUs * 100));
    trimmed_at_ = releases;
  }

 private:
  // 1 ms of wall time earns 1000 / kShare us of trim time.
  void refill(std::uint64_t now_ms) noexcept {
    if (now_ms > filled_at_ms_) {
      // Capped at what the budget can take (it may be deep below zero
      // after a long trim): a cap of its own on `earned` threw away the
      // rest of a long quiet stretch, and a burst after it waited.
      const std::uint64_t room = static_cast<std::uint64_t>(static_cast<std::int64_t>(kBurstUs) - budget_us_);
      const std::uint64_t dt = std::min<std::uint64_t>(now_ms - filled_at_ms_, room);  // >= room / 10 us: enough
      const std::uint64_t earned = std::min(dt * 1000 / kShare, room);
      budget_us_ += static_cast<std::int64_t>(earned);
    }
    filled_at_ms_ = std::max(filled_at_ms_, now_ms);
  }

  std::uint64_t trimmed_at_ = 0;   // `releases` at the last trim
  std::uint64_t filled_at_ms_ = 0;  // when the budget was last brought up to date
  std::int64_t budget_us_ = static_cast<std::int64_t>(kBurstUs);  // may go below zero: the trim that overdrew it
};

}  // namespace spindle::http::detail
