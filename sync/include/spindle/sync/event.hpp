// event.hpp: Event, a manual-reset flag fibers can wait on (asyncio.Event).
//
// set() wakes every waiter and leaves the flag set until clear(); wait()
// returns at once while the flag is set. Waiting suspends the fiber (a plain
// thread blocks); set/clear/is_set never suspend and may be called from any
// fiber or thread, so an offload job or plain thread can signal fibers.
//
// Memory ordering: everything a thread did before set() happens before
// everything a waiter does after the wait() that observed that set returns,
// and after an is_set() that returns true because of it.
//
// Destruction: once a wait() (or an is_set() that returned true) has
// returned, that thread may destroy the Event at once, even while the
// set() it saw is still on its way out: `Event done; spawn([&] { ...;
// done.set(); }); done.wait(); return;` is fine (as POSIX allows
// sem_destroy right after the sem_wait a sem_post ended). The destructor
// waits for such a set() to release mu_, its last touch of the Event
// (docs/sync.md "When a primitive may be destroyed"). No wait may still be
// in progress (~WaitList stops the process).
#pragma once

#include <atomic>
#include <chrono>

#include <spindle/sync/detail/wait_queue.hpp>

namespace spindle {

class Event {
 public:
  Event() = default;
  explicit Event(bool initially_set) : set_(initially_set) {}
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  // A waiter can see set_ (lock-free) while the set() that stored it still
  // holds mu_ and is about to pop waiters from waiters_. Taking mu_ here
  // waits for that unlock: the setter took mu_ before it stored set_, and
  // the destroying thread saw the store (acquire), so its exchange comes
  // after the setter's in mu_'s order and can only succeed on that
  // unlock or a later one. (A waiter that set() woke runs only after that
  // unlock anyway.) The wakes set() does after the unlock touch only the
  // waiters' own nodes, never the Event.
  ~Event() {
    mu_.lock();
    mu_.unlock();
  }

  // set: sets the flag and wakes all waiters. Never suspends; any thread.
  void set();
  // clear: resets the flag. Never suspends; any thread.
  void clear() noexcept;
  // is_set: the flag (acquire). Never suspends; any thread.
  bool is_set() const noexcept { return set_.load(std::memory_order_acquire); }

  // wait: returns once the flag is set. May suspend; a cancellation point
  // (raises Cancelled). Any fiber or thread.
  SPINDLE_MAY_SUSPEND void wait();
  // wait_for / wait_until: wait with a time limit; returns is_set()-at-wake,
  // i.e. false when the time ran out first. May suspend; a cancellation point.
  template <class Rep, class Period>
  SPINDLE_MAY_SUSPEND bool wait_for(std::chrono::duration<Rep, Period> d) {
    return wait_until(detail::deadline_after(d));
  }
  SPINDLE_MAY_SUSPEND bool wait_until(std::chrono::steady_clock::time_point t);

 private:
  bool wait_impl(const detail::TimePoint* deadline);

  detail::SpinLock mu_;
  // Written under mu_ (release) so waiters' re-checks are ordered; read
  // without the lock (acquire) by is_set() and the fast path of wait().
  std::atomic<bool> set_{false};
  detail::WaitList waiters_;  // SPINDLE_GUARDED_BY(mu_)
};

}  // namespace spindle
