// barrier.hpp: Barrier, a reusable rendezvous of a fixed number of
// participants (std::barrier without a completion function).
//
// Each participant calls arrive_and_wait(); the call returns in all of them
// once `count` have arrived, and the barrier resets for the next phase.
//
// Memory ordering: everything every participant did before arriving in a
// phase happens before everything any participant does after that phase's
// arrive_and_wait() returns.
#pragma once

#include <cstddef>
#include <cstdint>

#include <spindle/sync/detail/wait_queue.hpp>

namespace spindle {

class Barrier {
 public:
  explicit Barrier(std::ptrdiff_t count);
  Barrier(const Barrier&) = delete;
  Barrier& operator=(const Barrier&) = delete;

  // arrive_and_wait: arrives and waits for the rest of this phase. May
  // suspend (a plain thread blocks). A cancellation point: a cancelled
  // participant is withdrawn (its arrival no longer counts) and Cancelled is
  // raised, unless the phase completed first: then it returns as one that
  // passed, and a with_timeout around it whose deadline came at that moment
  // does not raise TimedOut (before 2026-11-30 it did, for a participant the
  // others had already counted). Any fiber or thread. Returns the number of
  // the phase it completed (0, 1, ...).
  SPINDLE_MAY_SUSPEND std::uint64_t arrive_and_wait();

 private:
  detail::SpinLock mu_;
  const std::ptrdiff_t count_;
  std::ptrdiff_t arrived_ = 0;  // SPINDLE_GUARDED_BY(mu_)
  std::uint64_t phase_ = 0;     // SPINDLE_GUARDED_BY(mu_)
  detail::WaitList waiters_;    // SPINDLE_GUARDED_BY(mu_)
};

}  // namespace spindle
