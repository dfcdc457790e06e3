// registry.cpp: Registry's list operations (registry.hpp).
#include "registry.hpp"

#include <mutex>
#include <utility>

namespace spindle::detail {

namespace {
void unlink(Registry& r, Fiber* f) noexcept {
  if (f->reg_prev_) f->reg_prev_->reg_next_ = f->reg_next_; else r.head = f->reg_next_;
  if (f->reg_next_) f->reg_next_->reg_prev_ = f->reg_prev_;
  f->reg_prev_ = f->reg_next_ = nullptr;
  f->reg_list_ = nullptr;
}
}  // namespace

void Registry::insert(Fiber* f) noexcept {
  std::lock_guard lk(lock);
  f->reg_list_ = this;
  f->reg_prev_ = nullptr;
  f->reg_next_ = head;
  if (head) head->reg_prev_ = f;
  head = f;
}

void Registry::erase(Fiber* f) noexcept {
  std::lock_guard lk(lock);
  unlink(*this, f);
}

void Registry::defer_erase(Fiber* f) noexcept {
  Fiber* top = remote.load(std::memory_order_relaxed);
  do {
    f->next_ = top;
    // release; pairs with the acquire exchange in drain_remote.
  } while (!remote.compare_exchange_weak(top, f, std::memory_order_release, std::memory_order_relaxed));
  // The line is ours after the CAS, so this add is cheap.
  if (remote_count.fetch_add(1, std::memory_order_relaxed) + 1 >= kDrainBy) drain_remote();
}

void Registry::drain_remote() noexcept {
  Fiber* const first = remote.exchange(nullptr, std::memory_order_acquire);
  if (first == nullptr) return;
  // Uncount them before taking the lock: a finisher that pushes meanwhile
  // must not see the old count and drain (and wait for the lock) too.
  std::int64_t n = 0;
  for (Fiber* f = first; f != nullptr; f = f->next_) ++n;
  remote_count.fetch_sub(n, std::memory_order_relaxed);
  {
    std::lock_guard lk(lock);
    for (Fiber* f = first; f != nullptr; f = f->next_) unlink(*this, f);
  }
  // Outside the lock: a last release runs the fiber's destructor (its
  // result's, and the report of an exception nobody joined).
  for (Fiber* f = first; f != nullptr;) {
    Fiber* const next = std::exchange(f->next_, nullptr);
    f->release();
    f = next;
  }
}

}  // namespace spindle::detail
