// spinlock.hpp: a tiny test-and-test-and-set lock for very short critical
// sections (a handful of pointer updates). Never suspend or wake a fiber while
// holding one; see docs/runtime.md "Lock ranks".
#pragma once

#include <atomic>

namespace spindle::detail {

class SpinLock {
 public:
  void lock() noexcept {
    for (;;) {
      // acquire; pairs with the release in unlock().
      if (!locked_.exchange(true, std::memory_order_acquire)) return;
      while (locked_.load(std::memory_order_relaxed)) {
        __builtin_ia32_pause();
      }
    }
  }
  bool try_lock() noexcept {
    return !locked_.load(std::memory_order_relaxed) &&
           !locked_.exchange(true, std::memory_order_acquire);
  }
  void unlock() noexcept { locked_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> locked_{false};
};

}  // namespace spindle::detail
