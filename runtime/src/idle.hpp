// idle.hpp: the idle set of one runtime: which workers are parked, how many
// are searching for work to steal, and how many parked ones watch the
// others. The parker's side of the park protocol is Worker::park (park.cpp);
// the waker's side, Scheduler::notify_work (idle.cpp); why the two never
// lose a wake-up is docs/runtime.md "Park/unpark".
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

namespace spindle::detail {

class Worker;

class IdleSet {
 public:
  // Before any add: the number of workers (their indexes are 0..n-1).
  void reserve(unsigned workers);

  // --- parkers (a worker about to park, or back from a park) ---
  // pausing: w parks in a pause of its stealing (Worker::steal_pays), so
  // a waker that only shares its own deque passes it over (take_one).
  void add(const Worker* w, bool pausing = false);
  void remove(const Worker* w);  // no-op when a waker took w out already

  // --- wakers ---
  // The index of a parked worker, taken out of the set (-1 when none): the
  // lowest parked index, so that the same few workers take the work of a
  // light load and the rest stay asleep. The caller wakes it. for_deque:
  // the caller only shares the fibers of its own deque (a non-strict
  // notify, which may be missed), so workers parked in a pause of their
  // stealing are not taken: they would steal nothing, and park again.
  int take_one(bool for_deque = false);

  // The parked count, seq_cst: the park protocol and the deadlock detector
  // read it after their fence.
  int parked_count() const noexcept { return count_.load(std::memory_order_seq_cst); }
  // Hints (relaxed): for deciding whether sharing work is worth it, and for
  // wakers that read after their own fence (notify_work, ensure_watcher).
  bool anyone_parked_hint() const noexcept { return count_.load(std::memory_order_relaxed) != 0; }
  bool anyone_searching_hint() const noexcept {
    return searching_.load(std::memory_order_relaxed) != 0;
  }
  bool anyone_watching_hint() const noexcept {
    return watchers_.load(std::memory_order_relaxed) != 0;
  }

  // --- searchers (Worker::steal) ---
  // At most half of `workers` search at once (at least one), so idle
  // workers do not all hammer the same deques. False: do not search.
  bool try_begin_search(unsigned workers) noexcept {
    const int s = searching_.load(std::memory_order_relaxed);
    if (2 * s >= static_cast<int>(workers)) return false;
    searching_.fetch_add(1, std::memory_order_seq_cst);
    return true;
  }
  // True when the caller was the last searcher.
  bool end_search() noexcept { return searching_.fetch_sub(1, std::memory_order_seq_cst) == 1; }

  // --- watchers (docs/runtime.md "Hand-off") ---
  // Parked workers that will wake to look at the others (watch_others).
  void add_watcher(int d) noexcept { watchers_.fetch_add(d, std::memory_order_seq_cst); }

 private:
  // One bit per worker, set while it is in the set. Lock-free: at 16
  // workers, a spin lock around a vector here was 23% of spawn_join's
  // samples (docs/runtime.md "Park/unpark"). Each bit is claimed by exactly
  // one fetch_and that sees it set (the taker or the parker's remove), and
  // only that one decrements count_. count_ is what the park protocol reads;
  // it is incremented before the bit is set and decremented after a bit is
  // cleared, so it is never below the number of bits set.
  static constexpr unsigned kBits = 64;
  std::unique_ptr<std::atomic<std::uint64_t>[]> words_;
  // The same bits for the workers parked in a pause of stealing: set before
  // the worker's bit in words_ and cleared after it (add, remove), so a
  // taker that sees a worker's bit there sees its pause bit as of that park.
  std::unique_ptr<std::atomic<std::uint64_t>[]> pausing_;
  unsigned nwords_ = 0;
  alignas(64) std::atomic<int> count_{0};
  std::atomic<int> searching_{0};
  std::atomic<int> watchers_{0};
};

}  // namespace spindle::detail
