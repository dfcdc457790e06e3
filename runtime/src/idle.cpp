// idle.cpp: the idle set (idle.hpp) and the waker's side of the park
// protocol: Scheduler::notify_work and the wake-ups it leads to. The
// parker's side is Worker::park (park.cpp); docs/runtime.md "Park/unpark".
#include "idle.hpp"

#include "scheduler.hpp"
#include "worker.hpp"

namespace spindle::detail {

void IdleSet::reserve(unsigned workers) {
  nwords_ = (workers + kBits - 1) / kBits;
  words_ = std::make_unique<std::atomic<std::uint64_t>[]>(nwords_);
  pausing_ = std::make_unique<std::atomic<std::uint64_t>[]>(nwords_);
  for (unsigned i = 0; i < nwords_; ++i) {
    words_[i].store(0, std::memory_order_relaxed);
    pausing_[i].store(0, std::memory_order_relaxed);
  }
}

// seq_cst throughout: count_ is the flag of the park protocol's Dekker
// pattern (the parker's add, then its fence; the waker's fence, then its
// read of count_).
void IdleSet::add(const Worker* w, bool pausing) {
  const unsigned i = w->index();
  if (pausing) pausing_[i / kBits].fetch_or(std::uint64_t{1} << (i % kBits), std::memory_order_seq_cst);
  // count_ first: a taker decrements only after it cleared a bit, which
  // was set after this, so count_ never goes below zero.
  count_.fetch_add(1, std::memory_order_seq_cst);
  words_[i / kBits].fetch_or(std::uint64_t{1} << (i % kBits), std::memory_order_seq_cst);
}

void IdleSet::remove(const Worker* w) {
  const unsigned i = w->index();
  const std::uint64_t bit = std::uint64_t{1} << (i % kBits);
  if ((words_[i / kBits].fetch_and(~bit, std::memory_order_seq_cst) & bit) != 0) {
    count_.fetch_sub(1, std::memory_order_seq_cst);
  }
  // After the bit above, and before this worker's next add sets it again:
  // a taker sees the pause bit of the park whose bit it sees (take_one).
  pausing_[i / kBits].fetch_and(~bit, std::memory_order_relaxed);
}

int IdleSet::take_one(bool for_deque) {
  for (unsigned wi = 0; wi < nwords_; ++wi) {
    // seq_cst: if this load misses a parker's bit, it comes before that
    // bit's fetch_or in the single order, so before the parker's fence,
    // and our fence (the caller's, before it read count_) came earlier
    // still: by the fence-to-fence rule the parker's re-check after its
    // fence sees the work published before ours.
    std::uint64_t v = words_[wi].load(std::memory_order_seq_cst);
    // After that load (acquire): a parker sets its pause bit before its bit
    // in words_, and clears it before its next add, so this load sees the
    // pause bit of the park whose bit v shows.
    const std::uint64_t skip = for_deque ? pausing_[wi].load(std::memory_order_acquire) : 0;
    v &= ~skip;
    while (v != 0) {
      const std::uint64_t bit = v & -v;
      const std::uint64_t old = words_[wi].fetch_and(~bit, std::memory_order_seq_cst);
      if ((old & bit) != 0) {
        count_.fetch_sub(1, std::memory_order_seq_cst);
        return static_cast<int>(wi * kBits) + __builtin_ctzll(bit);
      }
      v = old & ~bit & ~skip;  // someone else took that one; try the others
    }
  }
  return -1;
}

void Scheduler::notify_work(bool strict) {
  // strict: pairs with the fence in Worker::park() (Dekker: publish, fence,
  // read the other's flag). Non-strict callers pushed onto their own deque:
  // they will run the work themselves if nobody wakes, so a missed notify
  // only delays parallelism until the next maintenance() backstop.
  if (strict) std::atomic_thread_fence(std::memory_order_seq_cst);
  if (idle_.anyone_searching_hint()) return;
  if (!idle_.anyone_parked_hint()) return;
  unpark_one(!strict);
}

// unpark_one: takes a parked worker out of the idle set and wakes it.
void Scheduler::unpark_one(bool for_deque) {
  const int i = idle_.take_one(for_deque);
  if (i >= 0) worker(static_cast<unsigned>(i)).unpark();
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
