// event.cpp: Event (see event.hpp).
#include <spindle/sync/event.hpp>

namespace spindle {

void Event::set() {
  detail::Wakeups wakeups;  // destroyed (woken) after the guard below
  std::lock_guard g(mu_);
  // release; pairs with the acquire loads in is_set() and wait().
  set_.store(true, std::memory_order_release);
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
