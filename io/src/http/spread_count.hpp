// spread_count.hpp: SpreadCount, a counter that every worker adds to (the
// server's requests_served, once per request) without sharing a cache
// line: each worker adds to its own slot, and a read sums them. One
// atomic on one line, added to by two workers serving one server, moved
// that line between their cores on every request.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include <spindle/runtime/this_fiber.hpp>

namespace spindle::http::detail {

class SpreadCount {
 public:
  // add: one more. Relaxed, as the single counter was: a reader that saw
  // a later effect of the adder (its response on the wire) through a
  // syscall sees the count too.
  void add() noexcept { slots_[slot()].n.fetch_add(1, std::memory_order_relaxed); }
  std::uint64_t load() const noexcept {
    std::uint64_t sum = 0;
    for (const Slot& s : slots_) sum += s.n.load(std::memory_order_relaxed);
    return sum;
  }

 private:
  static constexpr std::size_t kSlots = 16;  // workers past 16 share slots (still correct)
  static std::size_t slot() noexcept {
    const int w = spindle::this_fiber::worker_index();
    return w < 0 ? 0 : static_cast<std::size_t>(w) % kSlots;
  }
  struct alignas(64) Slot {
    std::atomic<std::uint64_t> n{0};
  };
  Slot slots_[kSlots];
};

}  // namespace spindle::http::detail
