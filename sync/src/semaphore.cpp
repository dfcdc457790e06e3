// semaphore.cpp: Semaphore (see semaphore.hpp).
#include <spindle/sync/semaphore.hpp>

#include <stdexcept>

namespace spindle {

bool Semaphore::try_acquire() noexcept {
  std::lock_guard g(mu_);
  if (count_ <= 0) return false;  // count_ > 0 implies no live waiters
  --count_;
  return true;
}

void Semaphore::acquire() {
  if (try_acquire()) return;
  acquire_slow(nullptr);
}

bool Semaphore::acquire_until(std::chrono::steady_clock::time_point t) {
  if (try_acquire()) return true;
  return acquire_slow(&t);
}

bool Semaphore::acquire_slow(const detail::TimePoint* deadline) {
  detail::WaitNode node;
  const auto s = detail::suspend_on(
      mu_, waiters_, node, deadline,
      [&](detail::Wakeups&) {
        if (count_ <= 0) return false;
        --count_;
        return true;
      },
      "semaphore");
  detail::throw_if_cancelled(s);
  return s == detail::Waiter::notified;
}

void Semaphore::release(std::ptrdiff_t n) {
  SPINDLE_CHECK(n >= 0, "Semaphore::release with a negative count: release(n) gives back n >= 0 permits; to take permits, call acquire()");
  detail::Wakeups wakeups;
  std::lock_guard g(mu_);
  // Checked before anything moves: the permits handed to waiters only
  // lower what is added (Semaphore(PTRDIFF_MAX).release() was undefined
  // behaviour, and left a negative count that blocked every acquire).
  if (std::ptrdiff_t sum; __builtin_add_overflow(count_, n, &sum))
    throw std::overflow_error("spindle::Semaphore::release: the count would pass PTRDIFF_MAX");
  for (; n > 0; --n) {
    detail::WaitNode* w = waiters_.pop_winner();
    if (w == nullptr) break;
    wakeups.add(w);  // the permit passes straight to w
  }
  count_ += n;
}

std::ptrdiff_t Semaphore::available() const noexcept {
  std::lock_guard g(mu_);
  return count_;
}

}  // namespace spindle
