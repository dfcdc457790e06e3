// mutex.hpp: Mutex, a fiber-aware mutual-exclusion lock.
//
// Mutex suspends the waiting fiber, never its worker thread; a plain thread
// that waits blocks itself. It meets the standard Lockable and
// TimedLockable requirements, so std::unique_lock, std::scoped_lock and
// std::lock_guard work with it.
//
// Fairness: Go's two modes (sync.Mutex). In normal mode an unlock frees the
// word and wakes at most one waiter, which then competes with newcomers
// (the running fiber usually wins and keeps the lock on its core: no switch
// per critical section under contention). A waiter that loses goes back to
// the FRONT of the queue, and once a waiter has been losing for longer
// than kStarvationThreshold (1 ms), counted from the first time it ran
// after a wake-up, the mutex turns to starvation mode: unlock hands
// ownership straight to the oldest waiter and newcomers queue behind it.
// It returns to normal mode when a waiter that had not been losing that
// long, or the last waiter, takes it over. So no waiter starves. The time
// a waiter spends queued behind others does not count (the queue serves
// them in order; Go counts it, and with hundreds of waiters the mode then
// never ends: docs/sync.md "Choices", Mutex).
//
// Spinning: a locker that finds the word locked in normal mode spins a few
// rounds (a few hundred pause instructions) before it queues, but only when
// another worker could be the owner and its own worker has nothing else to
// run (detail::may_spin); while it spins it sets WOKEN, so unlock does not
// wake a second waiter for nothing.
//
// Fast path: one atomic word, state_ = LOCKED | WOKEN | STARVING | WAITERS
// | EVER_QUEUED. A lock() that finds the word free is a load and one CAS
// (any word without LOCKED and STARVING -> the same with LOCKED), an
// unlock() one fetch_sub (and two stores to its thread's unlock slot:
// Destruction, below); it touches the wait list and its spin lock only
// when it must wake or hand over (WAITERS without WOKEN, or STARVING). WAITERS changes only under mu_ (it mirrors "the list is not
// empty"); LOCKED, WOKEN and STARVING change by atomic RMW anywhere;
// EVER_QUEUED, set by the first waiter, stays.
//
// Memory ordering: everything the owner did before unlock() happens before
// everything the next owner does after its lock()/try_lock() returns: the
// release RMW in unlock() pairs with the acquire CAS that takes LOCKED; a
// starvation-mode hand-off is ordered by the waiter's acq_rel CAS and the
// wake.
//
// Destruction: as pthread_mutex_destroy allows, the last user may destroy
// the mutex right after its own unlock(), e.g. an object with a Mutex and a
// reference count that each user locks, decrements and unlocks, the last
// one deleting it. That holds even while another thread's unlock() is
// still on its way out: its release let the last user in, and what it
// does after the release (wake a waiter, hand over) it does while its
// thread's unlock slot names the mutex, which the destructor waits to be
// cleared (mutex.cpp, unlock; sync/src/unlock_slots.hpp;
// docs/sync.md "When a primitive may be destroyed").
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include <spindle/sync/detail/wait_queue.hpp>

namespace spindle {

class Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;
  // Precondition: unlocked, no waiters. It may follow the last user's
  // unlock() at once, even while an earlier unlock() is still on its way
  // out (the reference-count pattern; see Destruction above): it waits
  // until no thread's unlock slot names it (mutex.cpp, unlock).
  ~Mutex();

  // lock: acquires the mutex, waiting while it is held (who gets it next:
  // see Fairness above).
  // May suspend (a plain thread blocks). A cancellation point: raises
  // spindle::Cancelled (the mutex is then not held). Any fiber or thread.
  // Not recursive: locking a mutex you hold deadlocks.
  SPINDLE_MAY_SUSPEND void lock();

  // try_lock: acquires the mutex only if it is free right now (in normal
  // mode it may take it ahead of queued waiters, as Go's TryLock does).
  // Never suspends; not a cancellation point.
  bool try_lock() noexcept;

  // try_lock_for / try_lock_until: lock() with a time limit. Returns false
  // when the time ran out first. May suspend; a cancellation point.
  template <class Rep, class Period>
  SPINDLE_MAY_SUSPEND bool try_lock_for(std::chrono::duration<Rep, Period> d) {
    return try_lock_until(detail::deadline_after(d));
  }
  SPINDLE_MAY_SUSPEND bool try_lock_until(std::chrono::steady_clock::time_point t);

  // unlock: releases the mutex (see Fairness for who gets it next). Never
  // suspends. Any fiber or thread may call it (it is not checked that
  // the caller is the owner); unlocking a free mutex aborts.
  // Never inlined (link-time optimisation included): it reads the calling
  // thread's unlock slot (mutex.cpp), and a fiber may move to another
  // thread at any wait of its caller.
  [[gnu::noinline]] void unlock();

 private:
  detail::Waiter::State lock_slow(const detail::TimePoint* deadline);  // notified: held
  detail::WaitNode* hand_off_locked() noexcept;
  bool claim_wake(std::uint32_t st) noexcept;
  detail::WaitNode* pop_woken_locked() noexcept;
  bool grab_if_free(std::uint32_t& st, bool& awoke) noexcept;

  static constexpr std::uint32_t kLocked = 1, kWoken = 2, kStarving = 4, kWaiters = 8;
  // EVER_QUEUED: some waiter has queued at some time (never cleared); only
  // then can an unlock be on its contended path, which ~Mutex waits for.
  static constexpr std::uint32_t kEverQueued = 16;
  // WaitNode::outcome written by unlock for the waiter it wakes.
  // kOutcomeTaken: publish found it free and took it.
  static constexpr std::uint32_t kOutcomeWake = 1, kOutcomeHandoff = 2, kOutcomeTaken = 3;

  std::atomic<std::uint32_t> state_{0};  // any thread, atomic; WAITERS changes under mu_
  detail::SpinLock mu_;
  detail::WaitList waiters_;  // SPINDLE_GUARDED_BY(mu_)
};

}  // namespace spindle
