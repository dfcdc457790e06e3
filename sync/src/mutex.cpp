// mutex.cpp: Mutex (see mutex.hpp). FIFO hand-off on the shared wait queue.
#include <spindle/sync/mutex.hpp>

namespace spindle {

bool Mutex::try_lock() noexcept {
  std::uint32_t expected = 0;
  // acquire; pairs with the release CAS / store in unlock().
  return state_.compare_exchange_strong(expected, kLocked, std::memory_order_acquire,
                                        std::memory_order_relaxed);
}

void Mutex::lock() {
  if (try_lock()) return;
  detail::throw_for(lock_slow(nullptr) ? detail::Waiter::notified : detail::Waiter::cancelled);
}

bool Mutex::try_lock_until(std::chrono::steady_clock::time_point t) {
  if (try_lock()) return true;
  return lock_slow(&t);
}

bool Mutex::lock_slow(const detail::TimePoint* deadline) {
  detail::WaitNode node;
  const auto s = detail::wait_on(
      mu_, waiters_, node, deadline,
      [&](detail::Wakeups&) {
        // Under mu_: take the lock if it is free, else announce a waiter so
        // the owner's unlock() takes the slow path and hands over.
        std::uint32_t st = state_.load(std::memory_order_relaxed);
        for (;;) {
          if ((st & kLocked) == 0) {
            if (state_.compare_exchange_weak(st, st | kLocked, std::memory_order_acquire,
                                             std::memory_order_relaxed)) {
              return true;
            }
          } else if ((st & kWaiters) != 0 ||
                     state_.compare_exchange_weak(st, st | kWaiters, std::memory_order_relaxed,
                                                  std::memory_order_relaxed)) {
            return false;
          }
        }
      },
      "mutex");
  if (s != detail::Waiter::notified) {
    // wait_on unlinked our node; if we were the last waiter, drop the flag
    // (harmless if a new waiter sets it again: it does so under mu_).
    std::lock_guard g(mu_);
    if (waiters_.empty()) state_.fetch_and(~kWaiters, std::memory_order_relaxed);
  }
  detail::throw_if_cancelled(s);
  return s == detail::Waiter::notified;
}

void Mutex::unlock() {
  std::uint32_t expected = kLocked;
  // release; pairs with the acquire CAS in try_lock()/lock_slow().
  if (state_.compare_exchange_strong(expected, 0, std::memory_order_release,
                                     std::memory_order_relaxed)) {
    return;
  }
  SPINDLE_CHECK((expected & kLocked) != 0, "Mutex::unlock on a mutex that is not locked");
  unlock_slow();
}

void Mutex::unlock_slow() {
  detail::WaitNode* next;
  {
    std::lock_guard g(mu_);
    next = waiters_.pop_winner();
    if (next == nullptr) {
      state_.store(0, std::memory_order_release);  // nobody left: free it
    } else if (waiters_.empty()) {
      state_.store(kLocked, std::memory_order_relaxed);  // handed over; no more waiters
    }  // else stays LOCKED | WAITERS, ownership passes to `next`
  }
  if (next != nullptr) detail::wake(*next->waiter);
}

}  // namespace spindle
