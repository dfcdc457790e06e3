// wait_group.hpp: WaitGroup (Go's sync.WaitGroup): wait until a counter of
// outstanding jobs drops to zero.
//
// add(n) raises the counter, done() lowers it by one; when it reaches zero
// every wait()er is woken. wait() on a zero counter returns at once. The
// counter may rise again after reaching zero (the group is reusable).
//
// Memory ordering: everything done before a done() (or add(-n)) happens
// before everything after the wait() that it released.
#pragma once

#include <chrono>
#include <cstddef>
#include <stdexcept>

#include <spindle/sync/detail/wait_queue.hpp>

namespace spindle {

class WaitGroup {
 public:
  // A negative initial counter is std::invalid_argument here, not an
  // abort at the first done() far from the mistake.
  explicit WaitGroup(std::ptrdiff_t initial = 0) : count_(initial) {
    if (initial < 0) throw std::invalid_argument("spindle::WaitGroup: a negative initial counter");
  }
  WaitGroup(const WaitGroup&) = delete;
  WaitGroup& operator=(const WaitGroup&) = delete;

  // add: adds n (may be negative) to the counter; at zero wakes all waiters.
  // A negative counter aborts; one that would leave ptrdiff_t's range is
  // std::overflow_error, the counter unchanged. Never suspends; any fiber
  // or thread.
  void add(std::ptrdiff_t n = 1);
  // done: add(-1).
  void done() { add(-1); }
  // count: the counter now (a snapshot). Never suspends.
  std::ptrdiff_t count() const noexcept;
  // wait: returns once the counter is zero. May suspend (a plain thread
  // blocks); a cancellation point (raises Cancelled). Any fiber or thread.
  SPINDLE_MAY_SUSPEND void wait();
  // wait_for: wait with a time limit; false when it ran out first.
  template <class Rep, class Period>
  SPINDLE_MAY_SUSPEND bool wait_for(std::chrono::duration<Rep, Period> d) {
    const auto t = detail::deadline_after(d);
    return wait_impl(&t);
  }

 private:
  bool wait_impl(const detail::TimePoint* deadline);

  mutable detail::SpinLock mu_;
  std::ptrdiff_t count_;      // SPINDLE_GUARDED_BY(mu_)
  detail::WaitList waiters_;  // SPINDLE_GUARDED_BY(mu_)
};

}  // namespace spindle
