// wait_queue.cpp: the shared pieces of the sync wait queue (wait_queue.hpp).
// The protocol and its invariants are written down in wait_queue.hpp.
#include <chrono>
#include <cstdint>
#include <thread>

#include <spindle/sync/detail/wait_queue.hpp>

namespace spindle::detail {

[[gnu::noinline]] std::uint32_t fast_random() noexcept {
  // xorshift32 per thread; seeded from the clock and the thread id. Only
  // used to shuffle select cases, so quality needs are modest. Read-modify-
  // write of a thread_local with no suspension in between (migration-safe);
  // never inlined, so no caller that waits keeps its address (LTO).
  thread_local std::uint32_t state = [] {
    auto seed = static_cast<std::uint32_t>(
        std::chrono::steady_clock::now().time_since_epoch().count() ^
        std::hash<std::thread::id>{}(std::this_thread::get_id()));
    return seed != 0 ? seed : 0x9e3779b9u;
  }();
  std::uint32_t x = state;
  x ^= x << 13;
  x ^= x >> 17;
  x ^= x << 5;
  state = x;
  return x;
}

}  // namespace spindle::detail
