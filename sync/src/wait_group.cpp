// wait_group.cpp: WaitGroup and Barrier (see wait_group.hpp, barrier.hpp).
#include <spindle/sync/barrier.hpp>
#include <spindle/sync/wait_group.hpp>

#include <stdexcept>

namespace spindle {

void WaitGroup::add(std::ptrdiff_t n) {
  detail::Wakeups wakeups;
  std::lock_guard g(mu_);
  if (std::ptrdiff_t sum; __builtin_add_overflow(count_, n, &sum))
    throw std::overflow_error("spindle::WaitGroup::add: the counter would leave ptrdiff_t's range");
  count_ += n;
  SPINDLE_CHECK(count_ >= 0, "WaitGroup counter went negative: done() was called more often than add() counted; call add(n) before starting the n fibers that each call done() once (as Go's sync.WaitGroup)");
  if (count_ == 0) {
    while (detail::WaitNode* w = waiters_.pop_winner()) wakeups.add(w);
  }
}

std::ptrdiff_t WaitGroup::count() const noexcept {
  std::lock_guard g(mu_);
  return count_;
}

void WaitGroup::wait() { wait_impl(nullptr); }

bool WaitGroup::wait_impl(const detail::TimePoint* deadline) {
  {
    std::lock_guard g(mu_);
    if (count_ == 0) return true;
  }
  detail::WaitNode node;
  const auto s = detail::suspend_on(
      mu_, waiters_, node, deadline, [&](detail::Wakeups&) { return count_ == 0; },
      "wait group");
  detail::throw_if_cancelled(s);
  return s == detail::Waiter::notified;
}

Barrier::Barrier(std::ptrdiff_t count) : count_(count) {
  SPINDLE_CHECK(count > 0, "Barrier needs a positive count: Barrier(n) with n >= 1, the number of fibers that call arrive_and_wait()");
}

std::uint64_t Barrier::arrive_and_wait() {
  std::uint64_t my_phase;
  {
    detail::Wakeups wakeups;
    std::lock_guard g(mu_);
    my_phase = phase_;
    if (++arrived_ == count_) {
      arrived_ = 0;
      ++phase_;
      // Every arrival of this phase that has not been withdrawn counts, and
      // completes the phase. That includes a participant whose cancel (or
      // deadline scope) already won its Waiter but which has not yet taken
      // mu_ to withdraw: pop_winner drops its node if it is still linked
      // (its CAS fails), and when it takes mu_ it finds the phase over and
      // returns as one that passed (below). Only one that withdrew under mu_
      // before this arrival is not counted.
      while (detail::WaitNode* w = waiters_.pop_winner()) wakeups.add(w);
      return my_phase;
    }
  }
  detail::WaitNode node;
  const std::uint64_t scope_mark = detail::expired_scope();
  const auto s = detail::suspend_on(
      mu_, waiters_, node, nullptr, [&](detail::Wakeups&) { return phase_ != my_phase; },
      "barrier");
  if (s != detail::Waiter::notified) {
    std::lock_guard g(mu_);
    if (phase_ == my_phase) {
      --arrived_;  // withdraw: this phase did not complete
    } else {
      // It completed meanwhile, our arrival counted: we passed. A deadline
      // scope that ended the wait must not call that a timeout (a cancel
      // from outside stays pending, raised at the next wait).
      detail::restore_expired_scope(scope_mark);
      return my_phase;
    }
  }
  detail::throw_if_cancelled(s);
  return my_phase;
}

}  // namespace spindle
