// idle.cpp: the idle set (idle.hpp) and the waker's side of the park
// protocol: Scheduler::notify_work and the wake-ups it leads to. The
// parker's side is Worker::park (park.cpp); docs/runtime.md "Park/unpark".
#include "idle.hpp"

#include <algorithm>
#include <mutex>

#include "scheduler.hpp"
#include "worker.hpp"

namespace spindle::detail {

void IdleSet::add(Worker* w) {
  std::lock_guard lk(lock_);
  workers_.push_back(w);
  count_.fetch_add(1, std::memory_order_seq_cst);
}

void IdleSet::remove(Worker* w) {
  std::lock_guard lk(lock_);
  auto it = std::find(workers_.begin(), workers_.end(), w);
  if (it != workers_.end()) {
    workers_.erase(it);
    count_.fetch_sub(1, std::memory_order_seq_cst);
  }
}

Worker* IdleSet::take_newest() {
  std::lock_guard lk(lock_);
  if (workers_.empty()) return nullptr;
  Worker* w = workers_.back();
  workers_.pop_back();
  count_.fetch_sub(1, std::memory_order_seq_cst);
  return w;
}

void Scheduler::notify_work(bool strict) {
  // strict: pairs with the fence in Worker::park() (Dekker: publish, fence,
  // read the other's flag). Non-strict callers pushed onto their own deque:
  // they will run the work themselves if nobody wakes, so a missed notify
  // only delays parallelism until the next maintenance() backstop.
  if (strict) std::atomic_thread_fence(std::memory_order_seq_cst);
  if (idle_.anyone_searching_hint()) return;
  if (!idle_.anyone_parked_hint()) return;
  unpark_one();
}

// unpark_one: takes the most recently parked worker out of the idle set and
// wakes it (outside the idle set's lock: no wake-up under a runtime lock).
void Scheduler::unpark_one() {
  if (Worker* w = idle_.take_newest()) w->unpark();
}

void Scheduler::ensure_watcher() {
  if (opts_.handoff_after.count() <= 0 || size() < 2) return;
  // Pairs with the fence in Worker::park(): our remote_.parked flag was cleared
  // before this fence; a parker that registered before it is seen here, and
  // one that registers after it sees us active (others_active) and watches.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (idle_.anyone_watching_hint()) return;
  if (!idle_.anyone_parked_hint()) return;
  unpark_one();
}

void Scheduler::end_search(bool found) noexcept {
  const bool last = idle_.end_search();
  // The last searcher that found work wakes another worker: there may be
  // more where that came from (tokio's transition_from_searching).
  if (found && last) notify_work(true);
}

}  // namespace spindle::detail
