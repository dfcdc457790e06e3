// fiber_list.hpp: intrusive FIFO of fibers through Fiber::next_. No locking:
// the owner of the list guards it (a worker, or InjectQueue's lock).
#pragma once

#include <atomic>
#include <cstddef>
#include <mutex>

#include <spindle/runtime/detail/fiber.hpp>

namespace spindle::detail {

class FiberList {
 public:
  bool empty() const noexcept { return head_ == nullptr; }
  Fiber* front() const noexcept { return head_; }
  std::size_t size() const noexcept { return size_; }
  void push_back(Fiber* f) noexcept {
    f->next_ = nullptr;
    if (tail_) tail_->next_ = f; else head_ = f;
    tail_ = f;
    ++size_;
  }
  Fiber* pop_front() noexcept {
    Fiber* f = head_;
    if (!f) return nullptr;
    head_ = f->next_;
    if (!head_) tail_ = nullptr;
    f->next_ = nullptr;
    --size_;
    return f;
  }
  // Appends all of o (leaving it empty).
  void splice_back(FiberList& o) noexcept {
    if (o.empty()) return;
    if (tail_) tail_->next_ = o.head_; else head_ = o.head_;
    tail_ = o.tail_;
    size_ += o.size_;
    o.head_ = o.tail_ = nullptr;
    o.size_ = 0;
  }

 private:
  Fiber* head_ = nullptr;
  Fiber* tail_ = nullptr;
  std::size_t size_ = 0;
};

// InjectQueue: a locked FIFO any thread may push to (the global queue, and
// each worker's inbox for fibers that must run on it). The length is
// mirrored in an atomic so emptiness checks take no lock.
class InjectQueue {
 public:
  void push(Fiber* f) {
    std::lock_guard lk(lock_);
    list_.push_back(f);
    // release; pairs with the acquire in empty(): a reader that sees the new
    // length then takes the lock and sees the element.
    len_.store(list_.size(), std::memory_order_release);
  }
  void push_all(FiberList& l) {
    std::lock_guard lk(lock_);
    list_.splice_back(l);
    len_.store(list_.size(), std::memory_order_release);
  }
  // Takes every fiber.
  FiberList take_all() { return take_up_to(kAll); }
  // Takes up to max fibers, oldest first.
  FiberList take_up_to(std::size_t max) {
    FiberList out;
    if (empty()) return out;
    std::lock_guard lk(lock_);
    while (out.size() < max && !list_.empty()) out.push_back(list_.pop_front());
    len_.store(list_.size(), std::memory_order_relaxed);
    return out;
  }
  bool empty() const noexcept { return len_.load(std::memory_order_acquire) == 0; }
  std::size_t size_hint() const noexcept { return len_.load(std::memory_order_relaxed); }

 private:
  static constexpr std::size_t kAll = static_cast<std::size_t>(-1);
  SpinLock lock_;  // rank: leaf
  FiberList list_;  // SPINDLE_GUARDED_BY(lock_)
  std::atomic<std::size_t> len_{0};
};

}  // namespace spindle::detail
