// timer_heap.hpp: a worker's timers, a binary min-heap of Waiters keyed by
// deadline. Each waiter records its heap index, so a timer that is no longer
// needed (its wait ended another way) is removed in O(log n). Owner worker
// only; header-only so tests can drive it directly.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include <spindle/runtime/suspend.hpp>

namespace spindle::detail {

class TimerHeap {
 public:
  bool empty() const noexcept { return heap_.empty(); }
  std::size_t size() const noexcept { return heap_.size(); }
  Waiter* top() const noexcept { return heap_.front(); }

  void push(Waiter* w) {
    w->heap_index = static_cast<std::int32_t>(heap_.size());
    heap_.push_back(w);
    up(heap_.size() - 1);
  }
  Waiter* pop() noexcept {
    Waiter* w = heap_.front();
    remove_at(0);
    return w;
  }
  void remove(Waiter* w) noexcept {
    if (w->heap_index >= 0) remove_at(static_cast<std::size_t>(w->heap_index));
  }

 private:
  static bool less(const Waiter* a, const Waiter* b) noexcept { return a->deadline < b->deadline; }
  void set(std::size_t i, Waiter* w) noexcept {
    heap_[i] = w;
    w->heap_index = static_cast<std::int32_t>(i);
  }
  void remove_at(std::size_t i) noexcept {
    heap_[i]->heap_index = -1;
    Waiter* last = heap_.back();
    heap_.pop_back();
    if (i == heap_.size()) return;
    set(i, last);
    up(i);
    down(static_cast<std::size_t>(last->heap_index));
  }
  void up(std::size_t i) noexcept {
    Waiter* w = heap_[i];
    while (i > 0) {
      std::size_t p = (i - 1) / 2;
      if (!less(w, heap_[p])) break;
      set(i, heap_[p]);
      i = p;
    }
    set(i, w);
  }
  void down(std::size_t i) noexcept {
    Waiter* w = heap_[i];
    const std::size_t n = heap_.size();
    for (;;) {
      std::size_t c = 2 * i + 1;
      if (c >= n) break;
      if (c + 1 < n && less(heap_[c + 1], heap_[c])) ++c;
      if (!less(heap_[c], w)) break;
      set(i, heap_[c]);
      i = c;
    }
    set(i, w);
  }
  std::vector<Waiter*> heap_;
};

}  // namespace spindle::detail
