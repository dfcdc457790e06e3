// detail/channel_lock.hpp: ChannelLock, the lock of a Channel (and of the
// channels of one select). Not for user code.
//
// A test-and-test-and-set spin lock like detail::SpinLock, except that a
// locker that has spun kSpinsBeforeYield rounds gives its OS thread's time
// slice away (sched_yield) before spinning again. Why: a channel under
// traffic from two workers is locked most of the time, and on a machine with
// more runnable threads than cores (a shared VM, a build running beside the
// program) the OS often preempts the holder inside its few-dozen-nanosecond
// critical section. A plain spin lock then burns the waiter's whole time
// slice (milliseconds) while the holder waits for a core that the spinner
// occupies. Figures, and the options measured (backoff between polls did
// no better than the plain poll): docs/decisions/0009-channel-lock.md.
//
// A normal critical section (a value moved, a node linked, or the switch-out
// of suspend_on_locked: well under a microsecond) ends long before the yield
// point (64 rounds of one `pause`, about 3 us), so on an idle machine the
// lock behaves exactly as SpinLock.
//
// Memory ordering: the acquire exchange that takes the lock pairs with the
// release store in unlock(), as in SpinLock; yielding changes nothing there.
// Never suspend or wake a fiber while holding one (the channel's rules in
// wait_queue.hpp), except suspend_on_locked's hand-over to publish.
#pragma once

#include <atomic>
#include <thread>

#include <spindle/runtime/detail/spinlock.hpp>

namespace spindle::detail {

class ChannelLock {
 public:
  void lock() noexcept {
    // acquire; pairs with the release in unlock().
    if (!locked_.exchange(true, std::memory_order_acquire)) return;
    lock_slow();
  }
  bool try_lock() noexcept {
    return !locked_.load(std::memory_order_relaxed) &&
           !locked_.exchange(true, std::memory_order_acquire);
  }
  void unlock() noexcept { locked_.store(false, std::memory_order_release); }

 private:
  static constexpr int kSpinsBeforeYield = 64;

  [[gnu::noinline]] void lock_slow() noexcept {
    for (int spins = 0;;) {
      while (locked_.load(std::memory_order_relaxed)) {
        spin_hint();
        if (++spins == kSpinsBeforeYield) {
          // The holder is most likely preempted: let it (or anything else
          // on this core) run instead of spinning out the time slice.
          std::this_thread::yield();
          spins = 0;
        }
      }
      // acquire; pairs with the release in unlock().
      if (!locked_.exchange(true, std::memory_order_acquire)) return;
    }
  }

  std::atomic<bool> locked_{false};
};

}  // namespace spindle::detail
