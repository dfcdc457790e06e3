// condition_variable.hpp: ConditionVariable, a fiber-aware condition
// variable (std::condition_variable_any shape) for use with spindle::Mutex
// (or any Lockable, e.g. std::unique_lock<Mutex>, std::unique_lock<std::mutex>).
//
// wait(lock) atomically releases `lock` and waits for a notify; it returns
// with `lock` held again, also when it raises (Cancelled) — the relock is
// shielded from cancellation so RAII sees the invariant it expects. Spurious
// wakeups are possible (as with std's), so wait in a loop or use
// wait(lock, pred).
//
// No lost wakeup: the waiter reads the notify epoch while still holding the
// user's lock, so a notify issued after the unlock either finds the waiter
// queued or bumps the epoch, which the waiter checks under the internal lock
// before it parks (returning as a wakeup).
//
// Memory ordering: as std's — the protected state is ordered by the user's
// mutex; a notify that wakes a waiter happens before that wait returns.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>

#include <spindle/sync/mutex.hpp>
#include <spindle/sync/detail/wait_queue.hpp>

namespace spindle {

enum class cv_status { no_timeout, timeout };

class ConditionVariable {
 public:
  ConditionVariable() = default;
  ConditionVariable(const ConditionVariable&) = delete;
  ConditionVariable& operator=(const ConditionVariable&) = delete;

  // notify_one / notify_all: wake one / every waiter. Never suspend; any
  // fiber or thread, with or without the user's lock held.
  void notify_one() noexcept;
  void notify_all() noexcept;

  // wait: releases lock, waits for a notify, reacquires lock. May suspend
  // (a plain thread blocks). A cancellation point: raises Cancelled, with
  // the lock held again. Caller must hold `lock`.
  template <class Lock>
  SPINDLE_MAY_SUSPEND void wait(Lock& lock) {
    const auto s = wait_impl(lock, nullptr);
    detail::throw_if_cancelled(s);
  }
  // wait(lock, pred): while (!pred()) wait(lock). pred runs with lock held.
  template <class Lock, class Pred>
  SPINDLE_MAY_SUSPEND void wait(Lock& lock, Pred pred) {
    while (!pred()) wait(lock);
  }
  // wait_until / wait_for: wait with a time limit. Returns cv_status::timeout
  // when it ran out (lock held again either way). A cancellation point.
  template <class Lock>
  SPINDLE_MAY_SUSPEND cv_status wait_until(Lock& lock, std::chrono::steady_clock::time_point t) {
    const auto s = wait_impl(lock, &t);
    detail::throw_if_cancelled(s);
    return s == detail::Waiter::timed_out ? cv_status::timeout : cv_status::no_timeout;
  }
  template <class Lock, class Rep, class Period>
  SPINDLE_MAY_SUSPEND cv_status wait_for(Lock& lock, std::chrono::duration<Rep, Period> d) {
    return wait_until(lock, detail::deadline_after(d));
  }
  // Predicate forms: return pred() at the end (false = timed out with the
  // predicate still false).
  template <class Lock, class Pred>
  SPINDLE_MAY_SUSPEND bool wait_until(Lock& lock, std::chrono::steady_clock::time_point t,
                                      Pred pred) {
    while (!pred()) {
      if (wait_until(lock, t) == cv_status::timeout) return pred();
    }
    return true;
  }
  template <class Lock, class Rep, class Period, class Pred>
  SPINDLE_MAY_SUSPEND bool wait_for(Lock& lock, std::chrono::duration<Rep, Period> d, Pred pred) {
    return wait_until(lock, detail::deadline_after(d), std::move(pred));
  }

 private:
  std::uint64_t epoch() noexcept;
  detail::Waiter::State park(std::uint64_t epoch, const detail::TimePoint* deadline);

  template <class Lock>
  detail::Waiter::State wait_impl(Lock& lock, const detail::TimePoint* deadline) {
    const std::uint64_t e = epoch();  // under the user's lock
    lock.unlock();
    const auto s = park(e, deadline);
    relock(lock);
    return s;
  }
  // Reacquire without being interrupted by cancellation (a shielded wait
  // ignores a pending cancel, which then surfaces at the next wait).
  template <class Lock>
  static void relock(Lock& l) {
    detail::CancelShield shield;
    l.lock();
  }

  detail::SpinLock mu_;
  std::uint64_t epoch_ = 0;   // SPINDLE_GUARDED_BY(mu_): bumped by every notify
  detail::WaitList waiters_;  // SPINDLE_GUARDED_BY(mu_)
};

}  // namespace spindle
