// run_queue.hpp: a worker's local run queue, a bounded Chase-Lev deque
// (Lê, Pop, Cohen, Zappa Nardelli, PPoPP'13, the C11 version).
//
//  - The owner pushes and pops at the bottom (LIFO), so fork-join code runs
//    depth first and keeps few stacks live (skynet: ~60, not ~100,000).
//  - Thieves take from the top (the oldest, usually the biggest subtrees).
//  - Capacity is fixed; push reports a full queue and the owner moves half
//    to the global queue.
//
// Who may call what: push/pop/size_hint by the owner worker only; steal by
// any thread. Header-only and free of scheduler types so tests can drive it
// from many threads.
//
// Orderings: slots are relaxed atomics published by the release store of
// bottom_ in push() (thieves acquire it). pop() and steal() use seq_cst on
// bottom_/top_ in place of the paper's seq_cst fences (same cost on x86, and
// ThreadSanitizer understands it): the owner's store of bottom-1 and the
// thief's load of bottom are then totally ordered, which is what decides who
// gets the last element; the CAS on top_ settles the tie.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace spindle::detail {

template <class T, std::size_t Capacity>
class RunQueue {
  static_assert((Capacity & (Capacity - 1)) == 0, "capacity must be a power of two");
  static constexpr std::int64_t kMask = Capacity - 1;

 public:
  RunQueue() {
    for (auto& s : slots_) s.store(nullptr, std::memory_order_relaxed);
  }

  static constexpr std::size_t capacity() { return Capacity; }

  // Owner only. False when full (nothing was pushed).
  bool push(T* x) noexcept {
    const std::int64_t b = bottom_.load(std::memory_order_relaxed);
    // acquire; pairs with the CAS on top_ in steal(): the slot we overwrite
    // was read by its thief before that CAS.
    const std::int64_t t = top_.load(std::memory_order_acquire);
    if (b - t >= static_cast<std::int64_t>(Capacity)) return false;
    slots_[b & kMask].store(x, std::memory_order_relaxed);
    // release; pairs with the acquire loads of bottom_ in steal().
    bottom_.store(b + 1, std::memory_order_release);
    return true;
  }

  // Owner only. The most recently pushed element, or nullptr.
  T* pop() noexcept {
    // Empty fast path, no fence: top_ only grows and only we move bottom_,
    // so seeing top_ >= bottom_ even with a stale top_ proves emptiness.
    // (A yield among fibers that never spawn pays this check, not a fence.)
    if (top_.load(std::memory_order_relaxed) >= bottom_.load(std::memory_order_relaxed)) {
      return nullptr;
    }
    const std::int64_t b = bottom_.load(std::memory_order_relaxed) - 1;
    bottom_.store(b, std::memory_order_seq_cst);
    std::int64_t t = top_.load(std::memory_order_seq_cst);
    if (t > b) {
      bottom_.store(b + 1, std::memory_order_relaxed);
      return nullptr;
    }
    T* x = slots_[b & kMask].load(std::memory_order_relaxed);
    if (t == b) {
      // Last element: race the thieves for it.
      if (!top_.compare_exchange_strong(t, t + 1, std::memory_order_seq_cst,
                                        std::memory_order_relaxed)) {
        x = nullptr;
      }
      bottom_.store(b + 1, std::memory_order_relaxed);
    }
    return x;
  }

  enum class StealResult { ok, empty, lost_race };

  // Any thread. Takes the oldest element.
  StealResult steal(T*& out) noexcept {
    std::int64_t t = top_.load(std::memory_order_seq_cst);
    const std::int64_t b = bottom_.load(std::memory_order_seq_cst);
    if (t >= b) return StealResult::empty;
    T* x = slots_[t & kMask].load(std::memory_order_relaxed);
    if (!top_.compare_exchange_strong(t, t + 1, std::memory_order_seq_cst,
                                      std::memory_order_relaxed)) {
      return StealResult::lost_race;
    }
    out = x;
    return StealResult::ok;
  }

  // Any thread; a hint only (may be stale by the time it returns).
  std::size_t size_hint() const noexcept {
    const std::int64_t b = bottom_.load(std::memory_order_relaxed);
    const std::int64_t t = top_.load(std::memory_order_relaxed);
    return b > t ? static_cast<std::size_t>(b - t) : 0;
  }

 private:
  alignas(64) std::atomic<std::int64_t> top_{0};     // thieves' end
  alignas(64) std::atomic<std::int64_t> bottom_{0};  // owner's end
  alignas(64) std::atomic<T*> slots_[Capacity];
};

}  // namespace spindle::detail
