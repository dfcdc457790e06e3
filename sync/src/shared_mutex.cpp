// shared_mutex.cpp: SharedMutex (see shared_mutex.hpp).
#include <spindle/sync/shared_mutex.hpp>

namespace spindle {

namespace {
constexpr std::uint32_t kShared = 1;
}

bool SharedMutex::can_take(bool shared) const noexcept {
  if (writer_ || !waiters_.empty()) return false;
  return shared || readers_ == 0;
}

void SharedMutex::take(bool shared) noexcept {
  if (shared) ++readers_; else writer_ = true;
}

bool SharedMutex::try_lock() noexcept {
  std::lock_guard g(mu_);
  if (!can_take(false)) return false;
  take(false);
  return true;
}

bool SharedMutex::try_lock_shared() noexcept {
  std::lock_guard g(mu_);
  if (!can_take(true)) return false;
  take(true);
  return true;
}

void SharedMutex::lock() {
  if (!try_lock()) lock_slow(false, nullptr);
}

void SharedMutex::lock_shared() {
  if (!try_lock_shared()) lock_slow(true, nullptr);
}

bool SharedMutex::lock_slow(bool shared, const detail::TimePoint* deadline) {
  detail::WaitNode node;
  node.kind = shared ? kShared : 0;
  const auto s = detail::suspend_on(
      mu_, waiters_, node, deadline,
      [&](detail::Wakeups&) {
        if (!can_take(shared)) return false;
        take(shared);
        return true;
      },
      shared ? "shared mutex (shared)" : "shared mutex");
  if (s != detail::Waiter::notified) {
    // Leaving the queue may unblock the ones behind us (readers behind a
    // departed writer).
    detail::Wakeups wakeups;
    std::lock_guard g(mu_);
    grant(wakeups);
  }
  detail::throw_if_cancelled(s);
  return s == detail::Waiter::notified;
}

// grant: under mu_. Serves the head of the queue while the lock allows it.
void SharedMutex::grant(detail::Wakeups& wakeups) noexcept {
  while (!writer_ && !waiters_.empty()) {
    detail::WaitNode* n = waiters_.front();
    const bool shared = n->kind == kShared;
    if (!shared && readers_ != 0) return;
    waiters_.pop_front();
    if (!n->waiter->try_complete(detail::Waiter::notified)) continue;  // gone
    take(shared);
    wakeups.add(n);
  }
}

void SharedMutex::unlock() {
  detail::Wakeups wakeups;
  std::lock_guard g(mu_);
  SPINDLE_CHECK(writer_, "SharedMutex::unlock without an exclusive owner: unlock() pairs with lock(); a reader calls unlock_shared() (prefer std::unique_lock / std::shared_lock)");
  writer_ = false;
  grant(wakeups);
}

void SharedMutex::unlock_shared() {
  detail::Wakeups wakeups;
  std::lock_guard g(mu_);
  SPINDLE_CHECK(readers_ > 0, "SharedMutex::unlock_shared without a shared owner: unlock_shared() pairs with lock_shared(); a writer calls unlock() (prefer std::shared_lock / std::unique_lock)");
  --readers_;
  grant(wakeups);
}

}  // namespace spindle
