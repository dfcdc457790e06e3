// timer_heap.hpp: a worker's timers, a 4-ary min-heap of (deadline, Waiter*)
// entries. The deadline is kept in the entry, so ordering the heap reads
// only its own array: the Waiters live on their fibers' stacks, one page
// each, and a heap that compared through them took a cache miss per level
// per pop (at 100,000 timers, half of fire_due_timers; docs/decisions/
// 0011-timers.md). Each Waiter records its entry's index, so a timer that
// is no longer needed (its wait ended another way) is removed in O(log n).
// Owner's lock only; header-only so tests can drive it directly.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <vector>

#include <spindle/runtime/suspend.hpp>

namespace spindle::detail {

class TimerHeap {
 public:
  using time_point = std::chrono::steady_clock::time_point;

  bool empty() const noexcept { return heap_.empty(); }
  std::size_t size() const noexcept { return heap_.size(); }
  // The earliest deadline; the heap must not be empty.
  time_point top_deadline() const noexcept { return time_point(time_point::duration(heap_.front().deadline)); }
  Waiter* top() const noexcept { return heap_.front().w; }

  void push(Waiter* w) {
    heap_.push_back(Entry{w->deadline.time_since_epoch().count(), w});
    up(heap_.size() - 1);
  }
  Waiter* pop() noexcept {
    Waiter* w = heap_.front().w;
    remove_at(0);
    return w;
  }
  void remove(Waiter* w) noexcept {
    if (w->heap_index >= 0) remove_at(static_cast<std::size_t>(w->heap_index));
  }

 private:
  // Four children per node: half the levels of a binary heap, and the
  // four keys a sift-down compares share a cache line or two.
  static constexpr std::size_t kArity = 4;
  struct Entry {
    std::chrono::steady_clock::rep deadline;
    Waiter* w;
  };

  void set(std::size_t i, const Entry& e) noexcept {
    heap_[i] = e;
    e.w->heap_index = static_cast<std::int32_t>(i);
  }
  void remove_at(std::size_t i) noexcept {
    heap_[i].w->heap_index = -1;
    const Entry last = heap_.back();
    heap_.pop_back();
    if (i == heap_.size()) return;
    // The last entry fills the hole and moves whichever way it must.
    if (i > 0 && last.deadline < heap_[(i - 1) / kArity].deadline) {
      heap_[i] = last;
      up(i);
    } else {
      down(i, last);
    }
  }
  void up(std::size_t i) noexcept {
    const Entry e = heap_[i];
    while (i > 0) {
      const std::size_t p = (i - 1) / kArity;
      if (!(e.deadline < heap_[p].deadline)) break;
      set(i, heap_[p]);
      i = p;
    }
    set(i, e);
  }
  // down: places e at hole i or below.
  void down(std::size_t i, const Entry e) noexcept {
    const std::size_t n = heap_.size();
    for (;;) {
      const std::size_t first = kArity * i + 1;
      if (first >= n) break;
      const std::size_t end = first + kArity < n ? first + kArity : n;
      std::size_t c = first;
      for (std::size_t k = first + 1; k < end; ++k) {
        if (heap_[k].deadline < heap_[c].deadline) c = k;
      }
      if (!(heap_[c].deadline < e.deadline)) break;
      set(i, heap_[c]);
      i = c;
    }
    set(i, e);
  }
  std::vector<Entry> heap_;
};

}  // namespace spindle::detail
