// shared_mutex.hpp: SharedMutex, a fiber-aware readers-writer lock
// (std::shared_mutex shape; works with std::shared_lock / std::unique_lock).
//
// Fairness: one FIFO queue for readers and writers. A new reader does not
// pass a queued writer, and when the lock frees up the head of the queue is
// served: a writer alone, or the whole run of readers at the head. So
// neither writers nor readers starve.
//
// Memory ordering: an unlock() happens before every later lock/lock_shared
// that acquires; an unlock_shared() happens before the next lock() that
// acquires.
#pragma once

#include <chrono>
#include <cstddef>

#include <spindle/sync/detail/wait_queue.hpp>

namespace spindle {

class SharedMutex {
 public:
  SharedMutex() = default;
  SharedMutex(const SharedMutex&) = delete;
  SharedMutex& operator=(const SharedMutex&) = delete;

  // lock / lock_shared: acquire exclusively / shared. May suspend (a plain
  // thread blocks); cancellation points (Cancelled; not acquired). Any
  // fiber or thread.
  SPINDLE_MAY_SUSPEND void lock();
  SPINDLE_MAY_SUSPEND void lock_shared();
  // try_ forms: acquire only if possible without waiting (and nobody is
  // queued). Never suspend.
  bool try_lock() noexcept;
  bool try_lock_shared() noexcept;
  // Timed forms: false when the time ran out. May suspend; cancellation points.
  template <class Rep, class Period>
  SPINDLE_MAY_SUSPEND bool try_lock_for(std::chrono::duration<Rep, Period> d) {
    const auto t = detail::deadline_after(d);
    return lock_slow(false, &t);
  }
  template <class Rep, class Period>
  SPINDLE_MAY_SUSPEND bool try_lock_shared_for(std::chrono::duration<Rep, Period> d) {
    const auto t = detail::deadline_after(d);
    return lock_slow(true, &t);
  }
  // unlock / unlock_shared: release; hand the lock to the head of the queue.
  // Never suspend. Releasing a lock that is not held aborts.
  void unlock();
  void unlock_shared();

 private:
  bool can_take(bool shared) const noexcept;
  void take(bool shared) noexcept;
  bool lock_slow(bool shared, const detail::TimePoint* deadline);
  void grant(detail::Wakeups& wakeups) noexcept;

  detail::SpinLock mu_;
  std::ptrdiff_t readers_ = 0;  // SPINDLE_GUARDED_BY(mu_)
  bool writer_ = false;         // SPINDLE_GUARDED_BY(mu_)
  detail::WaitList waiters_;    // SPINDLE_GUARDED_BY(mu_): node.kind 1 = shared
};

}  // namespace spindle
