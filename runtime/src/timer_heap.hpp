// timer_heap.hpp: a worker's timers: a FIFO "run" of timers added in
// deadline order, and a 4-ary min-heap of (deadline, Waiter*) entries for
// the rest. The earliest timer is the earlier of the run's front and the
// heap's top.
//
// Why the run: most timers on a worker arrive in deadline order (every
// fiber of a server waiting with the same timeout, a batch of sleep_for(d)
// with one d), and a heap pays for them anyway: each pop sifts the last
// entry down ~log4(n) levels and writes the heap_index of every Waiter it
// moves, one cold stack line each (at 100,000 timers those stores were ~80%
// of fire_due_timers; docs/decisions/0011-timers.md). A timer whose
// deadline is no earlier than the run's last is appended to the run
// instead: O(1) in, O(1) out, and firing reads the run's array in order, so
// the Waiters ahead can be prefetched (run_peek).
//
// The heap keeps the deadline in the entry, so ordering it reads only its
// own array (the Waiters live on their fibers' stacks). Each Waiter records
// where it is (heap_index: its heap position, kInRun with run_seq, or
// kNone), so a timer no longer needed (its wait ended another way) is
// removed in O(log n) from the heap, O(1) from the run: its run entry
// becomes a hole, skipped at the run's ends and squeezed out once holes
// outnumber live entries (so a run of mostly cancelled timeouts holds at
// most about twice its live timers).
// Out of memory (the run's ring or the heap's array cannot grow), a timer
// goes on an intrusive list through its Waiter (Waiter::overflow_next),
// unordered, scanned for its earliest: push cannot fail, because the
// worker adds a timer after the waiting fiber has switched out, where an
// exception would surface in another fiber (docs/runtime.md "Nothing after
// the switch may fail"). The list is empty unless memory ran out, and the
// common paths test one pointer for it.
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
  static constexpr std::int32_t kNone = -1;      // Waiter::heap_index: not here
  static constexpr std::int32_t kInRun = -2;     // in the run, at run_seq
  static constexpr std::int32_t kOverflow = -3;  // on the out-of-memory list

  static bool queued(const Waiter* w) noexcept { return w->heap_index != kNone; }

  bool empty() const noexcept { return heap_.empty() && live_ == 0 && overflow_ == nullptr; }
  std::size_t size() const noexcept { return heap_.size() + live_ + overflow_count_; }
  // The earliest deadline; there must be a timer.
  time_point top_deadline() const noexcept { return time_point(time_point::duration(top_entry().deadline)); }
  Waiter* top() const noexcept { return top_entry().w; }

  // push: never fails; allocates when the run or the heap must grow, and
  // without memory puts the timer on the overflow list.
  void push(Waiter* w) noexcept {
    const Entry e{w->deadline.time_since_epoch().count(), w};
    if (count_ == 0 || e.deadline >= at(count_ - 1).deadline) {
      if (run_append(e)) {
        if (overflow_ != nullptr) [[unlikely]] absorb_overflow();
        return;
      }
    }
    try {
      heap_.push_back(e);
    } catch (...) {
      overflow_push(w);
      return;
    }
    up(heap_.size() - 1);
    if (overflow_ != nullptr) [[unlikely]] absorb_overflow();
  }
  Waiter* pop() noexcept {
    if (overflow_ != nullptr) [[unlikely]] {
      Waiter* m = overflow_min();
      if (!ordered_nonempty() || m->deadline.time_since_epoch().count() < ordered_top().deadline) {
        overflow_remove(m);
        return m;
      }
    }
    if (top_in_run()) {
      Waiter* w = at(0).w;
      w->heap_index = kNone;
      drop_front();
      --live_;
      trim();
      return w;
    }
    Waiter* w = heap_.front().w;
    remove_at(0);
    return w;
  }
  void remove(Waiter* w) noexcept {
    if (w->heap_index >= 0) {
      remove_at(static_cast<std::size_t>(w->heap_index));
    } else if (w->heap_index == kInRun) {
      // Unsigned: the distance from the front, modulo 2^32 (the run holds
      // far fewer entries).
      at(w->run_seq - front_seq_).w = nullptr;
      w->heap_index = kNone;
      --live_;
      trim();
      if (count_ - live_ > kMinHoles && count_ - live_ > live_) compact();
    } else if (w->heap_index == kOverflow) {
      overflow_remove(w);
    }
  }
  // The Waiter k entries behind the run's front (nullptr for a hole or past
  // the end): fire_due_timers prefetches it while it fires the front.
  Waiter* run_peek(std::size_t k) const noexcept { return k < count_ ? at(k).w : nullptr; }
  // Timers on the out-of-memory list (tests).
  std::size_t overflow_count() const noexcept { return overflow_count_; }
  // Entries the run holds, holes included (tests: the memory bound).
  std::size_t run_slots() const noexcept { return count_; }

 private:
  // Four children per node: half the levels of a binary heap, and the
  // four keys a sift-down compares share a cache line or two.
  static constexpr std::size_t kArity = 4;
  // Holes are squeezed out only past this many, so a handful of cancelled
  // timers does not cost a pass over the run.
  static constexpr std::size_t kMinHoles = 32;
  struct Entry {
    std::chrono::steady_clock::rep deadline;
    Waiter* w;  // nullptr: a hole (a removed run entry)
  };

  // ---- the run: a ring of entries, front_ .. front_ + count_ - 1 -------
  // Invariant: when count_ > 0 its first and last entries are live (trim).
  Entry& at(std::size_t i) noexcept { return ring_[(front_ + i) & (ring_.size() - 1)]; }
  const Entry& at(std::size_t i) const noexcept { return ring_[(front_ + i) & (ring_.size() - 1)]; }
  bool top_in_run() const noexcept {
    return live_ > 0 && (heap_.empty() || at(0).deadline <= heap_.front().deadline);
  }
  // The run's and the heap's earliest (ordered_nonempty() first).
  bool ordered_nonempty() const noexcept { return live_ > 0 || !heap_.empty(); }
  const Entry& ordered_top() const noexcept { return top_in_run() ? at(0) : heap_.front(); }
  Entry top_entry() const noexcept {
    if (overflow_ != nullptr) [[unlikely]] {
      Waiter* m = overflow_min();
      const Entry o{m->deadline.time_since_epoch().count(), m};
      if (!ordered_nonempty() || o.deadline < ordered_top().deadline) return o;
    }
    return ordered_top();
  }

  // ---- the overflow list (out of memory only) -----------------------------
  void overflow_push(Waiter* w) noexcept {
    w->heap_index = kOverflow;
    w->overflow_next = overflow_;
    overflow_ = w;
    ++overflow_count_;
  }
  // absorb_overflow: memory may be back (a push just succeeded): the list moves
  // into the heap, so that it is scanned only while memory is out; left as
  // it is if the heap cannot make room for all of it at once.
  void absorb_overflow() noexcept {
    try {
      heap_.reserve(heap_.size() + overflow_count_);
    } catch (...) {
      return;
    }
    while (Waiter* w = overflow_) {
      overflow_ = w->overflow_next;
      w->overflow_next = nullptr;
      heap_.push_back(Entry{w->deadline.time_since_epoch().count(), w});  // within capacity
      up(heap_.size() - 1);
    }
    overflow_count_ = 0;
  }
  // O(n): the list holds only what arrived while memory was out.
  Waiter* overflow_min() const noexcept {
    Waiter* m = overflow_;
    for (Waiter* x = m->overflow_next; x != nullptr; x = x->overflow_next) {
      if (x->deadline < m->deadline) m = x;
    }
    return m;
  }
  void overflow_remove(Waiter* w) noexcept {
    Waiter** p = &overflow_;
    while (*p != w) p = &(*p)->overflow_next;
    *p = w->overflow_next;
    w->overflow_next = nullptr;
    w->heap_index = kNone;
    --overflow_count_;
  }

  // run_append: false when the ring is full and cannot grow (no memory).
  bool run_append(const Entry& e) noexcept {
    if (count_ == ring_.size()) {
      try {
        regrow(ring_.empty() ? 16 : ring_.size() * 2);
      } catch (...) {
        return false;
      }
    }
    at(count_) = e;
    e.w->heap_index = kInRun;
    e.w->run_seq = front_seq_ + static_cast<std::uint32_t>(count_);
    ++count_;
    ++live_;
    return true;
  }
  void drop_front() noexcept {
    front_ = (front_ + 1) & (ring_.size() - 1);
    ++front_seq_;
    --count_;
  }
  // trim: restores the invariant (holes at either end go).
  void trim() noexcept {
    while (count_ > 0 && at(0).w == nullptr) drop_front();
    while (count_ > 0 && at(count_ - 1).w == nullptr) --count_;
    if (count_ == 0 && ring_.size() > 1024) ring_ = std::vector<Entry>();  // give a big, empty ring back
  }
  // compact: squeezes the holes out, in order, renumbering the live
  // entries from the same front_seq_; shrinks the ring when it is mostly
  // empty. Amortised O(1): runs after at least as many removals as it moves.
  void compact() noexcept {
    std::size_t n = 0;
    for (std::size_t i = 0; i < count_; ++i) {
      const Entry e = at(i);
      if (e.w == nullptr) continue;
      e.w->run_seq = front_seq_ + static_cast<std::uint32_t>(n);
      at(n++) = e;
    }
    count_ = n;
    std::size_t want = 16;
    while (want < 2 * count_) want *= 2;
    if (want * 4 <= ring_.size()) {
      try {
        regrow(want);
      } catch (...) {  // no memory for the smaller ring: keep the big one
      }
    }
  }
  // regrow: a ring of `cap` slots (a power of two, >= count_), same order.
  void regrow(std::size_t cap) {
    std::vector<Entry> r(cap);
    for (std::size_t i = 0; i < count_; ++i) r[i] = at(i);
    ring_.swap(r);
    front_ = 0;
  }

  // ---- the heap ----------------------------------------------------------
  void set(std::size_t i, const Entry& e) noexcept {
    heap_[i] = e;
    e.w->heap_index = static_cast<std::int32_t>(i);
  }
  void remove_at(std::size_t i) noexcept {
    heap_[i].w->heap_index = kNone;
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
  std::vector<Entry> ring_;        // the run's slots (a power of two, or none)
  std::size_t front_ = 0;          // ring_ index of the run's first entry
  std::size_t count_ = 0;          // entries in the run, holes included
  std::size_t live_ = 0;           // entries in the run that are timers
  std::uint32_t front_seq_ = 0;    // run_seq of the first entry
  Waiter* overflow_ = nullptr;     // the out-of-memory list's head
  std::size_t overflow_count_ = 0;
};

}  // namespace spindle::detail
