// gate.hpp: Gate, a one-shot start gate (a manual-reset event that is never
// reset) for the timers workload.
//
// TODO(sync module): replace with spindle::Event when the sync module lands;
// this exists only because spindle has no sync primitives yet. It is built on
// the runtime's suspension API (spindle/runtime/suspend.hpp) and follows its
// protocol:
//  1. wait() publishes its Waiter on the list under lock_, unless the gate
//     is already open (then publish returns false and wait() returns);
//  2. open() sets open_ and, still under lock_, detaches the list and moves
//     each waiter out of `waiting` with try_complete (so a waiter that was
//     cancelled meanwhile, and lost, is never touched again after lock_ is
//     released: its owner may free it as soon as it gets lock_);
//  3. after releasing lock_, open() wakes the winners. It reads w->next
//     before wake(*w), because the woken fiber may return and free w.
//
// Memory ordering: everything before open() happens-before every wait()
// that returns: through lock_ (publish saw open_ set) or through the
// acq_rel try_complete that the woken fiber reads with acquire.
#pragma once

#include <atomic>
#include <mutex>
#include <utility>

#include <spindle/runtime/errors.hpp>
#include <spindle/runtime/suspend.hpp>

namespace bench {

class Gate {
 public:
  // wait: returns once the gate is open. Suspends the calling fiber (or
  // blocks a plain thread) until then. Raises spindle::Cancelled if the
  // fiber is cancelled first.
  SPINDLE_MAY_SUSPEND void wait() {
    using spindle::detail::Waiter;
    // acquire; pairs with the release store in open().
    if (open_.load(std::memory_order_acquire)) return;
    Waiter w;
    const Waiter::State s = spindle::detail::wait(w, nullptr, [&] { return publish(w); }, "gate");
    if (s == Waiter::notified || s == Waiter::waiting) return;  // waiting: it opened first
    unlink(w);  // cancelled: take w off the list before it dies
    spindle::detail::throw_if_cancelled(s);
  }

  // open: opens the gate and wakes every waiter. Any fiber or thread; never
  // suspends. Call once.
  void open() {
    using spindle::detail::Waiter;
    Waiter* winners = nullptr;
    {
      std::lock_guard lk(lock_);
      open_.store(true, std::memory_order_release);
      for (Waiter* w = std::exchange(head_, nullptr); w != nullptr;) {
        Waiter* next = w->next;
        w->prev = nullptr;
        w->data = nullptr;  // off the list
        if (w->try_complete(Waiter::notified)) {
          w->next = winners;
          winners = w;
        }
        w = next;
      }
    }
    while (winners != nullptr) {
      Waiter* next = winners->next;  // before wake: the fiber may free *winners
      spindle::detail::wake(*winners);
      winners = next;
    }
  }

 private:
  using Waiter = spindle::detail::Waiter;

  // Runs on the scheduler side of wait(), after the fiber left its stack.
  bool publish(Waiter& w) {
    std::lock_guard lk(lock_);
    if (open_.load(std::memory_order_relaxed)) return false;  // lock_ orders it
    w.prev = nullptr;
    w.next = head_;
    if (head_ != nullptr) head_->prev = &w;
    head_ = &w;
    w.data = this;  // "on the list"; cleared by open() and unlink()
    return true;
  }

  void unlink(Waiter& w) {
    std::lock_guard lk(lock_);
    // Not on the list: never published (cancelled before wait got that
    // far), or open() already took the list.
    if (w.data != this) return;
    if (w.prev != nullptr) w.prev->next = w.next; else head_ = w.next;
    if (w.next != nullptr) w.next->prev = w.prev;
    w.next = w.prev = nullptr;
    w.data = nullptr;
  }

  spindle::detail::SpinLock lock_;  // rank: leaf (taken inside wait_lock_)
  std::atomic<bool> open_{false};   // written under lock_; read lock-free as a fast path
  Waiter* head_ = nullptr;          // guarded by lock_
};

}  // namespace bench
