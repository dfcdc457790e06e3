// mutex.hpp: Mutex, a fiber-aware mutual-exclusion lock.
//
// Mutex suspends the waiting fiber, never its worker thread; a plain thread
// that waits blocks itself. It meets the standard Lockable and
// TimedLockable requirements, so std::unique_lock, std::scoped_lock and
// std::lock_guard work with it.
//
// Fairness: strict FIFO hand-off. unlock() with waiters passes ownership
// straight to the oldest waiter (the lock never becomes free in between), so
// no waiter starves under a hot lock: a waiter is served after at most the
// waiters that queued before it. The price is a switch per hand-off under
// contention (Go's "starvation mode" all the time).
//
// Fast path: one atomic word, state_ = LOCKED | WAITERS. An uncontended
// lock() is one CAS 0 -> LOCKED, an uncontended unlock() one CAS LOCKED -> 0;
// the wait list and its spin lock are touched only when WAITERS is set. While
// anyone waits the word never returns to 0 (ownership is handed over), so a
// newcomer's CAS cannot barge ahead of the queue: FIFO holds.
//
// Memory ordering: everything the owner did before unlock() happens before
// everything the next owner does after its lock()/try_lock() returns: the
// fast paths pair the release CAS in unlock() with the acquire CAS in
// lock(); a hand-off is ordered by the waiter's acq_rel CAS and the wake.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include <spindle/sync/wait_queue.hpp>

namespace spindle {

class Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;
  ~Mutex() = default;  // precondition: unlocked, no waiters

  // lock: acquires the mutex, waiting in FIFO order while it is held.
  // May suspend (a plain thread blocks). A cancellation point: raises
  // spindle::Cancelled (the mutex is then not held). Any fiber or thread.
  // Not recursive: locking a mutex you hold deadlocks.
  SPINDLE_MAY_SUSPEND void lock();

  // try_lock: acquires the mutex only if it is free and nobody waits for it
  // (no barging past waiters). Never suspends; not a cancellation point.
  bool try_lock() noexcept;

  // try_lock_for / try_lock_until: lock() with a time limit. Returns false
  // when the time ran out first. May suspend; a cancellation point.
  template <class Rep, class Period>
  SPINDLE_MAY_SUSPEND bool try_lock_for(std::chrono::duration<Rep, Period> d) {
    return try_lock_until(detail::deadline_after(d));
  }
  SPINDLE_MAY_SUSPEND bool try_lock_until(std::chrono::steady_clock::time_point t);

  // unlock: releases the mutex, handing it to the oldest live waiter if any.
  // Never suspends. Any fiber or thread may call it (it is not checked that
  // the caller is the owner); unlocking a free mutex aborts.
  void unlock();

 private:
  bool lock_slow(const detail::TimePoint* deadline);

  void unlock_slow();
  static constexpr std::uint32_t kLocked = 1, kWaiters = 2;

  std::atomic<std::uint32_t> state_{0};  // any thread, atomic; WAITERS changes under mu_
  detail::SpinLock mu_;
  detail::WaitList waiters_;  // SPINDLE_GUARDED_BY(mu_)
};

}  // namespace spindle
