// detail/wait_queue.hpp: the one intrusive, cancellation-aware wait queue
// that every sync primitive is built on. Not for user code.
//
// Pieces:
//  - WaitNode: one entry in a primitive's wait list. It lives on the waiting
//    fiber's (or thread's) stack and points at that fiber's Waiter. A plain
//    wait uses one node; select() uses one node per case, all pointing at the
//    same Waiter, so the first channel to win the Waiter's CAS is the case
//    that fires and every other channel sees a lost CAS.
//  - WaitList: a doubly linked FIFO of nodes, guarded by the owning
//    primitive's lock (a SpinLock named in each primitive).
//  - Wakeups: nodes whose Waiter a completer won, collected under the
//    primitive's lock and woken after it is released (wake never runs under
//    one of our locks).
//  - suspend_on(): the standard "try, else enqueue and suspend" step, and
//    suspend_on_locked(), the same with the lock held from the try into
//    publish (channels; see step 2 and docs/sync.md).
//
// Protocol (see runtime/suspend.hpp):
//  1. The caller tries the operation under the primitive's lock (fast path,
//     no switch). If it cannot complete, it calls detail::suspend().
//  2. suspend() switches the fiber off its stack and runs publish, which takes
//     the lock again, retries (the state may have changed meanwhile) and
//     only if it still cannot complete links the node into the list. A retry
//     that succeeds completes the Waiter itself and returns false.
//     suspend_on_locked instead keeps the lock from step 1, links the node
//     before suspend(), and publish only releases the lock: nothing changed
//     meanwhile, so there is nothing to retry.
//  3. A completer, under the lock, pops nodes until one's Waiter wins
//     try_complete(notified); only then does it hand over a value into the
//     node's slot (still under the lock) and add the node to a Wakeups. Nodes
//     whose CAS fails (timer or cancel won) are just unlinked and skipped.
//  4. The completer releases the lock, then wakes. The woken side cannot run
//     before wake, so the slot is complete when it reads it; wake's hand-off
//     through the scheduler (or the thread parker's mutex) orders the write.
//  5. A wait that ends timed_out/cancelled takes the lock and unlinks its
//     node if it is still linked, before the node dies. A completer that lost
//     the CAS has already unlinked it, under the same lock.
//
// Lock order: primitive locks are leaves. With several (select), they are
// taken in address order. A primitive never wakes under its lock. Only
// suspend_on_locked holds one across a context switch: taken by the fiber,
// released by publish on the landing side before anything else runs there.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>

#include <spindle/runtime/cancel.hpp>
#include <spindle/runtime/detail/deadline.hpp>
#include <spindle/runtime/detail/fiber.hpp>
#include <spindle/runtime/detail/macros.hpp>
#include <spindle/runtime/detail/spinlock.hpp>
#include <spindle/runtime/errors.hpp>
#include <spindle/runtime/suspend.hpp>

namespace spindle::detail {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

// WaitNode: an entry in a WaitList (see the file comment). All fields but
// `waiter` are guarded by the lock of the list the node is in; once a
// completer has won the Waiter's CAS it owns the node until it wakes it.
struct WaitNode {
  Waiter* waiter = nullptr;
  WaitNode* next = nullptr;
  WaitNode* prev = nullptr;
  bool linked = false;
  // Payload: where a handed-over value goes (recv) or comes from (send).
  void* slot = nullptr;
  // Primitive-specific: requested kind (shared/exclusive), case index in a
  // select, or the outcome written by the completer (delivered/closed).
  std::uint32_t kind = 0;
  std::uint32_t outcome = 0;
};

// open_wait: w (linked, so alive) is still waiting, and its fiber is
// neither cancelled nor abandoned (~WaitList). A plain thread's wait
// counts as open. Acquire loads, each of its one writer: the cell of
// try_complete's acq_rel CAS (and cancel_fiber's), abandoned_ of
// abandon_all's seq_cst store, cancel_requested_ of cancel_fiber's seq_cst
// store; a fiber cancelled on another thread without an order to this one
// may read as open (it was, when the primitive died).
inline bool open_wait(const Waiter& w) noexcept {
  if ((w.cell->load(std::memory_order_acquire) & ~Waiter::kCancellable) != w.gen) return false;
  return w.fiber == nullptr || (!w.fiber->abandoned_.load(std::memory_order_acquire) &&
                                !w.fiber->cancel_requested_.load(std::memory_order_acquire));
}

// WaitList: intrusive FIFO of WaitNodes. Not thread-safe by itself: every
// call happens under the owning primitive's lock.
class WaitList {
 public:
  WaitList() = default;
  WaitList(const WaitList&) = delete;
  WaitList& operator=(const WaitList&) = delete;
  // A primitive destroyed while one of its waits is still open: that
  // waiter would never be woken (or its timer would wake it to unlink
  // itself from freed memory). Stopped here with the reason instead, as
  // std::thread's destructor stops for a joinable thread. Not stopped for
  // nodes whose wait is already over (a timeout or cancel won and the
  // owner has yet to unlink: nothing wakes it again, though that unlink
  // still locks the primitive, which this cannot catch), nor for a fiber
  // that is cancelled or abandoned: a shutdown unwinds the fibers whose
  // locals these primitives are in no set order, and a shielded wait of a
  // cancelled fiber ends only with it (docs/sync.md "A primitive outlives
  // every wait on it").
  ~WaitList() {
    for (const WaitNode* n = head_; n != nullptr; n = n->next) {
      SPINDLE_CHECK(!open_wait(*n->waiter),
                    "a sync primitive (Mutex, Event, Semaphore, Channel, Queue, ...) destroyed "
                    "while a fiber waits on it: that wait would never be woken. destroy it only "
                    "after every wait on it returned (join or cancel the fibers that wait first)");
    }
  }
  bool empty() const noexcept { return head_ == nullptr; }
  std::size_t size() const noexcept { return size_; }
  WaitNode* front() const noexcept { return head_; }

  void push_back(WaitNode* n) noexcept {
    n->next = nullptr;
    n->prev = tail_;
    if (tail_ != nullptr) tail_->next = n; else head_ = n;
    tail_ = n;
    n->linked = true;
    ++size_;
  }
  void push_front(WaitNode* n) noexcept {
    n->prev = nullptr;
    n->next = head_;
    if (head_ != nullptr) head_->prev = n; else tail_ = n;
    head_ = n;
    n->linked = true;
    ++size_;
  }
  void remove(WaitNode* n) noexcept {
    if (!n->linked) return;
    if (n->prev != nullptr) n->prev->next = n->next; else head_ = n->next;
    if (n->next != nullptr) n->next->prev = n->prev; else tail_ = n->prev;
    n->next = n->prev = nullptr;
    n->linked = false;
    --size_;
  }
  WaitNode* pop_front() noexcept {
    WaitNode* n = head_;
    if (n != nullptr) remove(n);
    return n;
  }
  // pop_winner: pops nodes until one's Waiter wins try_complete(notified)
  // and returns it (or nullptr). Losers (timed out / cancelled) are dropped:
  // their owners find them unlinked and leave.
  WaitNode* pop_winner() noexcept {
    while (WaitNode* n = pop_front()) {
      if (n->waiter->try_complete(Waiter::notified)) return n;
    }
    return nullptr;
  }

 private:
  WaitNode* head_ = nullptr;
  WaitNode* tail_ = nullptr;
  std::size_t size_ = 0;
};

// Wakeups: nodes to wake once the primitive's lock is released. Chained
// through WaitNode::next, which the completer owns after winning the CAS.
class Wakeups {
 public:
  Wakeups() = default;
  Wakeups(const Wakeups&) = delete;
  Wakeups& operator=(const Wakeups&) = delete;
  ~Wakeups() { wake_all(); }

  void add(WaitNode* n) noexcept {
    n->next = head_;
    head_ = n;
  }
  bool empty() const noexcept { return head_ == nullptr; }
  // wake_all: call with no primitive lock held.
  void wake_all() noexcept {
    while (WaitNode* n = head_) {
      head_ = n->next;  // read before wake: the node may die right after
      wake(*n->waiter);
    }
  }

 private:
  WaitNode* head_ = nullptr;
};

// suspend_on: the standard slow path. `try_now(Wakeups&)` is called under `mu`
// from inside publish; it returns true if the operation completed (and may
// queue wakeups of other waiters), else the node is linked into `list`. If
// it throws, it must leave the primitive unchanged; the exception is raised
// from suspend_on on the waiting fiber (after the wakeups it queued).
// Returns the Waiter's final state; on any state but `notified` the node is
// unlinked again before returning. May suspend; a cancellation point only in
// that it returns `cancelled` (callers throw).
template <class Lock, class TryNow>
SPINDLE_MAY_SUSPEND Waiter::State suspend_on(Lock& mu, WaitList& list, WaitNode& node,
                                          const TimePoint* deadline, TryNow&& try_now,
                                          const char* what) {
  Waiter w;
  node.waiter = &w;
  Wakeups wakeups;
  std::exception_ptr failed;
  const Waiter::State s = suspend(
      w, deadline,
      [&]() -> bool {
        std::lock_guard g(mu);
        try {
          if (try_now(wakeups)) {
            w.try_complete(Waiter::notified);  // nobody else can see w yet
            return false;
          }
        } catch (...) {
          // publish runs on the worker's side of the switch, where nothing
          // may escape (select's rule too): what the retry threw (a Queue's
          // store: bad_alloc, a PriorityQueue's operator<) is raised on the
          // fiber instead. try_now leaves its primitive as it was when it
          // throws (its own contract), so the wait simply did not happen.
          failed = std::current_exception();
          w.try_complete(Waiter::notified);
          return false;
        }
        list.push_back(&node);
        return true;
      },
      what);
  wakeups.wake_all();
  if (failed) std::rethrow_exception(failed);
  if (s != Waiter::notified) {
    std::lock_guard g(mu);
    list.remove(&node);
  }
  return s;
}

// suspend_on_locked: the slow path for a caller that holds `g` (the
// primitive's lock) and has just found that the operation cannot complete.
// Links `node` into `list` at once and suspends; the lock is released by
// publish, once the fiber is off its stack, so no completer can see the
// node before then and no retry is needed (suspend_on's second lock and second
// try). Returns with `g` unlocked and the Waiter's final state; on any state
// but `notified` the node is unlinked again. May suspend.
template <class Lock>
SPINDLE_MAY_SUSPEND Waiter::State suspend_on_locked(std::unique_lock<Lock>& g, WaitList& list,
                                                 WaitNode& node, const TimePoint* deadline,
                                                 const char* what) {
  Waiter w;
  node.waiter = &w;
  list.push_back(&node);
  const Waiter::State s = suspend(
      w, deadline,
      [&]() -> bool {
        g.unlock();
        return true;
      },
      what);
  if (g.owns_lock()) {
    // suspend() returned before publish (cancellation already requested, or a
    // deadline scope already expired): nobody saw the node.
    list.remove(&node);
    g.unlock();
  } else if (s != Waiter::notified) {
    g.lock();
    list.remove(&node);
    g.unlock();
  }
  return s;
}

// Raise the exception for a wait that ended `cancelled` or `timed_out`
// (TimedOut is only used by waits that have no way to report a timeout in
// their return value).
inline void throw_for(Waiter::State s) {
  if (s == Waiter::cancelled) throw Cancelled{};
  if (s == Waiter::timed_out) throw TimedOut{};
}

// CancelShield: while alive, waits of the calling fiber ignore cancellation
// and the deadline scopes it was made in (a cancel stays pending and is
// raised at the next unshielded wait):
// spindle::shield (cancel.hpp) as a scope object. Used where a wait must
// complete to restore an invariant, e.g. relocking the user's mutex at the
// end of ConditionVariable::wait. On a plain thread it holds off the
// thread's deadline scopes.
class CancelShield {
 public:
  CancelShield() noexcept { enter_shield(s_); }
  ~CancelShield() { leave_shield(s_); }
  CancelShield(const CancelShield&) = delete;
  CancelShield& operator=(const CancelShield&) = delete;

 private:
  ShieldScope s_;
};

// Per-thread xorshift generator for select's fair choice (no locking).
std::uint32_t fast_random() noexcept;

}  // namespace spindle::detail
