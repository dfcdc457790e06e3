// suspend.hpp: the suspension API, the one thing sync/ and io/ use to make a
// fiber wait. Nothing here exposes worker internals.
//
// The protocol (docs/runtime.md "The suspension protocol"):
//  1. The waiting fiber (or thread) owns a Waiter, usually on its stack.
//  2. suspend(w, deadline, publish) switches the fiber off its stack FIRST, and
//     only then runs `publish` (on the worker's side of the switch). publish
//     hands &w to whoever will complete it (a wait list, an I/O callback).
//     So nobody can resume a fiber that is still running on its own stack.
//  3. A completer calls w.try_complete(how) (a CAS out of `waiting`); only
//     the winner may then call wake(w), after releasing its own locks. The
//     first of {event, timer, cancellation} wins, the others do nothing.
//  4. When suspend returns, the waiter is no longer referenced by the runtime
//     (timer removed). If the state is not `notified`, the caller removes w
//     from its own wait list (under its lock) before w dies: a completer
//     that lost the CAS may still hold a pointer until then, so it must
//     check the state under the same lock. A completer that keeps w beyond
//     the wait instead (w lives in a heap object it shares, as an offload
//     job's does) must hold a reference on w.fiber (Fiber::add_ref) until
//     its try_complete: the state is in the fiber's cell (point 5).
//  5. Cancellation never touches a Waiter: the state lives in the fiber's
//     wait cell (see Waiter), which becomes cancellable only after publish
//     returned. The publisher marks the cell cancellable with a seq_cst RMW
//     and then reads cancel_requested_ (seq_cst); cancel_fiber sets the
//     flag (seq_cst) and then reads the cell: one of them sees the other.
//
// publish runs with no runtime lock held, so it may take any primitive lock.
// See docs/runtime.md "The suspension protocol" and "Lock ranks".
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include <spindle/runtime/detail/fiber.hpp>
#include <spindle/runtime/detail/function_ref.hpp>
#include <spindle/runtime/detail/macros.hpp>

namespace spindle::detail {

struct ThreadParker;

struct Waiter {
  enum State : std::uint8_t { waiting, notified, timed_out, cancelled };

  // The state lives in a 64-bit *cell*: bits 0-1 the State, bit 2
  // kCancellable, bits 3.. a generation. A fiber's waits all use the
  // fiber's own cell (Fiber::wait_cell_), each with a new generation, so
  // cancel_fiber can complete the current wait by touching only the Fiber
  // (never a Waiter that may already be gone), and a stale completer (an
  // offload job finishing after its caller was cancelled) holding an older
  // Waiter fails its CAS on the generation. A plain thread's wait uses the
  // Waiter's own cell, generation 0.
  static constexpr std::uint64_t kStateMask = 3;
  static constexpr std::uint64_t kCancellable = 4;
  static constexpr std::uint64_t kGenUnit = 8;

  Waiter() noexcept = default;
  Waiter(const Waiter&) = delete;  // cell may point into the Waiter itself
  Waiter& operator=(const Waiter&) = delete;

  // try_complete: moves the waiter out of `waiting`. Returns true for the one
  // caller that did; that caller must call wake(*this) (outside its locks).
  // acq_rel: the release half publishes only what the winner wrote before
  // its CAS (to the woken side's acquire read of the state, result()). A
  // completer writes the value it hands over (a channel's slot, a
  // WaitNode's outcome) after it has won, so this CAS does not order those
  // writes: wake() does. Its hand-off (the scheduler's run queue, or the
  // thread parker's mutex) comes after them, and the woken side cannot run
  // before it (sync/include/spindle/sync/detail/wait_queue.hpp, protocol
  // step 4).
  bool try_complete(State how) noexcept {
    // First guess: an unshielded fiber wait, already marked cancellable.
    std::uint64_t expected = gen | kCancellable;
    for (;;) {
      if (cell->compare_exchange_weak(expected, gen | how, std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
        return true;
      }
      // Another generation, or out of `waiting` already: someone else won.
      if ((expected & ~kCancellable) != gen) return false;
    }
  }
  // result: the state; meaningful to the waiting side once suspend() returned.
  State result() const noexcept {
    return static_cast<State>(cell->load(std::memory_order_acquire) & kStateMask);
  }

  std::atomic<std::uint64_t> own{waiting};  // the cell of a plain-thread wait
  std::atomic<std::uint64_t>* cell = &own;  // set by suspend(); see above
  std::uint64_t gen = 0;                     // this wait's generation (<< 3)
  Fiber* fiber = nullptr;            // set by suspend(); nullptr on a plain thread
  ThreadParker* parker = nullptr;    // set by suspend() on a plain thread
  // Timer bookkeeping, guarded by the timer_lock_ of the worker whose heap
  // holds the timer (timer_owner; see TimerHeap). A timed wait does not pin
  // the fiber: any worker may fire the timer, and the woken fiber, wherever
  // it runs, removes its own entry under that lock (docs/runtime.md
  // "Timers").
  std::chrono::steady_clock::time_point deadline{};
  std::int32_t heap_index = -1;  // heap position, or -1 (not queued), -2 (the run), -3 (overflow)
  std::uint32_t run_seq = 0;     // with -2: its place in the run (timer_heap.hpp)
  Waiter* overflow_next = nullptr;  // with -3: the next on the out-of-memory list
  Worker* timer_owner = nullptr;
};

// suspend: blocks the calling fiber (or plain thread) until w is completed by a
// waker (notified), `deadline` passes (timed_out; pass nullptr for none), or
// the fiber is cancelled or a deadline scope of the fiber's (or the plain
// thread's) ends the wait (cancelled). Returns the final state.
//  - `publish` runs after the fiber left its stack (no runtime lock held); it
//    returns false to not wait after all: the runtime then re-queues the
//    fiber itself, and suspend returns w's state (`waiting`, or `notified` if
//    publish completed it). Contract: publish may return false only if
//    nobody else can complete w any more -- w was never visible to anyone,
//    or publish itself won w's CAS. If w was already visible (publish linked
//    it somewhere before changing its mind) and another completer won, it
//    must return true: that completer's wake will resume the fiber, and a
//    second queueing would run it twice.
//  - A fiber whose cancellation is already requested (and not shielded)
//    returns `cancelled` at once without calling publish. A cancel that
//    arrives after that check, even before the switch, still lets publish
//    run, and then completes the wait as `cancelled`.
//  - `what` describes the wait for fiber dumps ("mutex", "sleep", ...).
SPINDLE_MAY_SUSPEND Waiter::State suspend(Waiter& w,
                                       const std::chrono::steady_clock::time_point* deadline,
                                       FunctionRef<bool()> publish, const char* what);

// wake: makes w's fiber runnable (or unblocks its thread). Only the winner of
// w.try_complete may call it, once, and not while holding a lock that the
// woken side could need. From a worker the fiber runs next on that worker
// (LIFO slot); from elsewhere it goes to its affinity worker or the global
// queue, unparking a worker if needed. Never suspends; any thread.
void wake(Waiter& w) noexcept;

// throw_if_cancelled: raises Cancelled for the `cancelled` state.
void throw_if_cancelled(Waiter::State s);

// hop_to_worker: moves the calling fiber to worker `index` and pins it there
// (I/O affinity: libuv handles may only be touched on their loop's thread).
// It stays pinned until unpin() or the next hop. Returns the previous pin
// (-1 for none). Not a cancellation point.
SPINDLE_MAY_SUSPEND int hop_to_worker(int index);
void unpin() noexcept;

// may_spin: whether a short busy-wait (a few hundred pause instructions)
// for a resource held elsewhere is worth it: on a plain thread when the
// machine has more than one core; in a fiber when the runtime has more than
// one worker and this worker has no other fiber ready to run. Never
// suspends; any thread.
bool may_spin() noexcept;

// scope_deadline: the earliest deadline of the with_deadline /
// with_timeout scopes the calling fiber is in, as its waits see it (inside
// shield(), the scopes opened inside it): time_point::max() for none. On a
// plain thread, the thread's own scopes. For
// calls that split the time left among their steps (io connect).
std::chrono::steady_clock::time_point scope_deadline() noexcept;

// current_fiber: the fiber running on this thread, or nullptr.
Fiber* current_fiber() noexcept;

// ExternalWork: while one is alive the deadlock detector assumes an
// outside event (I/O, offload job) may still wake a fiber. Any thread.
class ExternalWork {
 public:
  ExternalWork() noexcept;
  ~ExternalWork();
  ExternalWork(const ExternalWork&) = delete;
  ExternalWork& operator=(const ExternalWork&) = delete;
};

}  // namespace spindle::detail
