// condition_variable.cpp: ConditionVariable (see condition_variable.hpp).
#include <spindle/sync/condition_variable.hpp>

namespace spindle {

std::uint64_t ConditionVariable::epoch() noexcept {
  std::lock_guard g(mu_);
  return epoch_;
}

void ConditionVariable::notify_one() noexcept {
  detail::Wakeups wakeups;
  std::lock_guard g(mu_);
  ++epoch_;
  if (detail::WaitNode* w = waiters_.pop_winner()) wakeups.add(w);
}

void ConditionVariable::notify_all() noexcept {
  detail::Wakeups wakeups;
  std::lock_guard g(mu_);
  ++epoch_;
  while (detail::WaitNode* w = waiters_.pop_winner()) wakeups.add(w);
}

detail::Waiter::State ConditionVariable::park(std::uint64_t e, const detail::TimePoint* deadline) {
  detail::WaitNode node;
  // A notify since we read the epoch (after we released the user's lock)
  // counts as our wakeup: return instead of parking.
  return detail::suspend_on(
      mu_, waiters_, node, deadline, [&](detail::Wakeups&) { return epoch_ != e; },
      "condition variable");
}

}  // namespace spindle
