// event.cpp: Event (see event.hpp).
#include <spindle/sync/event.hpp>

#include "test_hooks.hpp"

namespace spindle {

// A waiter may see set_ and destroy the Event before this returns (the
// point just below). Everything after the store touches the Event only
// under mu_, and the unlock is the last touch: ~Event takes mu_, so it
// waits for that. The wakes (Wakeups, after the unlock) touch only the
// nodes, which live on the waiters' stacks until they are woken.
void Event::set() {
  detail::Wakeups wakeups;  // destroyed (woken) after the guard below
  std::lock_guard g(mu_);
  // release; pairs with the acquire loads in is_set() and wait().
  set_.store(true, std::memory_order_release);
  SPINDLE_SYNC_TEST_POINT(event_set_published, this);
  while (detail::WaitNode* n = waiters_.pop_winner()) wakeups.add(n);
}

void Event::clear() noexcept {
  std::lock_guard g(mu_);
  set_.store(false, std::memory_order_release);
}

void Event::wait() {
  if (is_set()) return;
  wait_impl(nullptr);
}

bool Event::wait_until(std::chrono::steady_clock::time_point t) {
  if (is_set()) return true;
  return wait_impl(&t);
}

bool Event::wait_impl(const detail::TimePoint* deadline) {
  detail::WaitNode node;
  const auto s = detail::suspend_on(
      mu_, waiters_, node, deadline,
      [&](detail::Wakeups&) { return set_.load(std::memory_order_relaxed); }, "event");
  detail::throw_if_cancelled(s);
  return s == detail::Waiter::notified;
}

}  // namespace spindle
