// spinlock.hpp: a tiny test-and-test-and-set lock for very short critical
// sections (a handful of pointer updates). Never suspend or wake a fiber while
// holding one; see docs/runtime.md "Lock ranks".
#pragma once

#include <atomic>

namespace spindle::detail {

// spin_hint: the spin-wait hint of the CPU (x86 `pause`, Arm `yield`): lets
// the other hyperthread run and avoids a memory-order flush when the wait
// ends. A compiler barrier elsewhere. (Not `cpu_relax`: Boost.Fiber defines
// that as a macro, and the benchmarks include both.)
inline void spin_hint() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
  asm volatile("yield" ::: "memory");
#else
  std::atomic_signal_fence(std::memory_order_seq_cst);
#endif
}

class SpinLock {
 public:
  void lock() noexcept {
    for (;;) {
      // acquire; pairs with the release in unlock().
      if (!locked_.exchange(true, std::memory_order_acquire)) return;
      while (locked_.load(std::memory_order_relaxed)) {
        spin_hint();
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
