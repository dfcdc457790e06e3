// fiber.hpp: the fiber control block. Public only because Task<T> and spawn
// are templates; user code never touches it. Its fields are documented with
// who may touch them.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <spindle/runtime/source_location.hpp>
#include <new>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include <spindle/runtime/detail/spinlock.hpp>

namespace spindle::detail {

class Worker;
class Scheduler;
struct Waiter;
struct Registry;

// One waiter's registration on one fiber's completion. Lives on the waiting
// side's stack; linked into Fiber::joiners_ under that fiber's join_lock_.
struct JoinNode {
  Waiter* waiter = nullptr;
  JoinNode* prev = nullptr;
  JoinNode* next = nullptr;
  bool linked = false;  // SPINDLE_GUARDED_BY(fiber's join_lock_)
};
struct FiberLocalSlots;

// Fiber lifecycle (Fiber::state_). The runtime stores the new state at each
// transition; the store orders nothing (the run queues and the Waiter's CAS
// do), so readers other than the fiber's own worker, such as dumps, take it
// as a hint.
enum class FiberState : std::uint8_t {
  created,    // spawned, never run, owns no stack; in some run queue
  ready,      // has run before, runnable, in some run queue or LIFO slot
  running,    // on a worker thread right now
  suspended,  // waiting; whoever was handed its Waiter will wake it
  done,       // body finished (set before its joiners wake); the stack goes
              // back as it switches out
};
const char* to_string(FiberState s) noexcept;

// Execution context of one stack (a fiber's or a worker's own thread stack).
// Only the context-switch wrapper (runtime/src/context.cpp) reads these.
struct ExecContext {
  // Hot (every switch) first; the rest only on first run and with sanitizers.
  void* fctx = nullptr;          // saved Boost.Context fcontext_t
  // The C++ runtime's per-thread exception state (__cxa_eh_globals: the
  // caught-exception stack and the uncaught count) of this context while it
  // is switched out. Fibers migrate between threads, so it travels with them.
  void* eh_caught = nullptr;
  unsigned eh_uncaught = 0;
  void* stack_bottom = nullptr;  // lowest usable address (ASan)
  std::size_t stack_size = 0;
  void* asan_fake_stack = nullptr;
  void* tsan_fiber = nullptr;
};

struct StackSlot {
  void* base = nullptr;    // lowest address of the mapping (guard page first)
  std::size_t size = 0;    // usable bytes above the guard
  std::size_t guard = 0;   // bytes of PROT_NONE guard at base (0: unguarded)
  char* bottom() const noexcept { return static_cast<char*>(base) + guard; }
  char* top() const noexcept { return bottom() + size; }
  explicit operator bool() const noexcept { return base != nullptr; }
};

class Fiber {
 public:
  Fiber() noexcept;
  Fiber(const Fiber&) = delete;
  Fiber& operator=(const Fiber&) = delete;
  virtual ~Fiber();

  // Runs the user body, stores value or exception. Never throws.
  virtual void invoke() noexcept = 0;
  // For a fiber cancelled before it ran: destroys the body without calling
  // it, on the fiber, as invoke() would after calling it.
  virtual void drop_body() noexcept {}

  // Fiber blocks come from a per-thread cache of freed blocks
  // (runtime/src/fiber_alloc.cpp): spawning and joining in batches would
  // otherwise take malloc's slow path for most of them. The size passed to
  // delete is the dynamic type's (the destructor is virtual).
  static void* operator new(std::size_t size);
  static void operator delete(void* p, std::size_t size) noexcept;

  void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  // acq_rel: the last owner must see every write of the others before delete.
  void release() noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  std::uint64_t id() const noexcept { return id_; }
  const std::string& name() const noexcept { return name_; }
  bool done() const noexcept {
    // acquire; pairs with the release in Fiber::complete().
    return done_.load(std::memory_order_acquire);
  }

  // --- scheduling (the worker running or queueing the fiber) ---
  // The fields every switch touches come first, so with the vtable pointer
  // they share one cache line (yield among 1,000 fibers misses on each).
  Fiber* next_ = nullptr;       // link of whichever intrusive queue holds it
  // Worker the fiber must run on (hop_to_worker), or nullptr. Written by
  // the fiber itself while running; read by wakers after the fiber
  // published itself (the publish happens-after the write). Timed waits do
  // not pin: any worker may fire a timer (docs/runtime.md "Timers").
  Worker* affinity_ = nullptr;
  // Written by whoever holds the fiber (runner, waker); relaxed because
  // dumps read it from other threads as a hint.
  std::atomic<FiberState> state_{FiberState::created};
  // True from the moment the fiber switches out to wait until its worker has
  // finished after_wait_publish (the last time the worker touches the
  // fiber or its Waiter for that wait). Set by the fiber before the switch,
  // cleared with release by that worker; a fiber resumed early on another
  // worker waits for it to clear (acquire) before its Waiter can die.
  std::atomic<bool> publishing_{false};
  // The stack has no guard page, so every switch away checks its canary
  // (runtime/src/stack_canary.hpp). Here rather than read from stack_,
  // which lies on the next cache line. Set with stack_, by its worker.
  bool unguarded_ = false;
  // The runtime moved the fiber for load away from the worker whose
  // epoll instance holds its socket: a hand-off took it from that worker's
  // polled queue (stuck, slow or saturated: runtime/src/placement.hpp), or
  // a rescuer's poll of that stuck worker's instance woke it
  // (Scheduler::wake_fiber). Set by the hand-off handler or the rescuer
  // while the fiber is suspended or queued (the queue push that follows
  // publishes it); read and cleared by the worker that next prepares the
  // fiber to run, which tells the io layer once (io_hook.hpp,
  // set_move_listener, with io_wait_tag_).
  bool handed_off_ = false;
  ExecContext ctx_;
  Scheduler* sched_ = nullptr;  // immutable after spawn
  StackSlot stack_;
  std::size_t stack_size_ = 0;  // requested; 0 = runtime default

  // --- identity (immutable after spawn) ---
  std::uint64_t id_ = 0;
  std::string name_;
  spindle::source_location where_{};
  std::chrono::steady_clock::time_point born_{};

  // --- join (guarded by join_lock_) ---
  SpinLock join_lock_;
  JoinNode* joiners_ = nullptr;  // SPINDLE_GUARDED_BY(join_lock_)
  std::atomic<bool> done_{false};
  std::exception_ptr error_;           // written once before done_
  std::atomic<bool> error_observed_{false};
  bool detached_ = false;              // set by the handle owner

  // --- cancellation and waits ---
  // The state cell of the fiber's current (or last) wait: Waiter's layout
  // (state, kCancellable, generation). Written by the fiber itself to start
  // a wait; afterwards only by CAS (completers, the cancel path, and the
  // worker marking it cancellable after publish). See suspend.hpp.
  std::atomic<std::uint64_t> wait_cell_{0};
  std::atomic<const char*> wait_what_{nullptr};  // what it waits on (dumps)
  std::atomic<bool> cancel_requested_{false};
  // abandoned_: the fiber outlived its runtime's shutdown_timeout and was
  // left (Scheduler::abandon_all): its stack and this block stay (leaked),
  // a wake or cancel does nothing (its scheduler is gone), a join raises
  // Cancelled. Set once, under join_lock_. wakers_: wakes from outside the
  // fiber's runtime in progress (wake_fiber_checked): abandon_all stores
  // abandoned_ and then waits for none, each side seq_cst (Dekker), so a
  // waker that read abandoned_ false is done with the scheduler before it
  // can be freed. Both in the padding before shield_depth_ (sizeof(Fiber)
  // unchanged: 8 more bytes measured ~10% on pingpong): 16 bits are ample,
  // as only the one winner of a wait's CAS wakes (or a cancel) at a time.
  std::atomic<bool> abandoned_{false};
  std::atomic<std::uint16_t> wakers_{0};
  int shield_depth_ = 0;               // fiber itself only
  // The io layer's tag of the socket the fiber last waited to read
  // (note_read_wait, io_hook.hpp); 0: none. Written by the fiber itself;
  // read by the worker that prepares it after a move (handed_off_), when
  // the fiber's suspension has published the write.
  std::uint64_t io_wait_tag_ = 0;
  // Deadline scopes (with_timeout): the earliest active deadline and the id
  // of the scope that set it; expired_scope_ names the scope whose deadline
  // cancelled a wait. Fiber itself only.
  std::chrono::steady_clock::time_point scope_deadline_ =
      std::chrono::steady_clock::time_point::max();
  std::uint64_t scope_id_ = 0;
  std::uint64_t expired_scope_ = 0;
  std::uint64_t scope_counter_ = 0;

  // --- registry for dump_fibers (guarded by the registry list's lock) ---
  Fiber* reg_prev_ = nullptr;
  Fiber* reg_next_ = nullptr;
  Registry* reg_list_ = nullptr;  // the registry it is in (runtime/src/registry.hpp)

  FiberLocalSlots* locals_ = nullptr;  // fiber itself only

 private:
  std::atomic<std::uint32_t> refs_{1};
};

// Result storage shared by the fiber and its Task<T>.
template <class T>
class ResultFiber : public Fiber {
 public:
  ~ResultFiber() override {
    if (has_value_) reinterpret_cast<T*>(storage_)->~T();
  }
  // set_value_from: the value is what f() returns, built in place: a
  // prvalue result is never moved, so no move constructor runs outside
  // the callable (where a TaskGroup child's wrapper could not see it
  // throw, and the group would miss that failure).
  template <class G>
  void set_value_from(G& f) {
    new (storage_) T(f());
    has_value_ = true;
  }
  // The value, left in place (a copyable result is joined any number of
  // times). Only once the fiber is done and only if has_value().
  const T& peek() const noexcept { return *reinterpret_cast<const T*>(storage_); }
  // Moves the value out; afterwards taken() is true and the value is
  // moved-from (Task refuses to hand it out again).
  T take() {
    taken_ = true;
    return std::move(*reinterpret_cast<T*>(storage_));
  }
  // Both only for the Task's owner (one fiber or thread at a time).
  bool taken() const noexcept { return taken_; }

 private:
  alignas(T) unsigned char storage_[sizeof(T)];
  bool has_value_ = false;
  bool taken_ = false;
};

template <>
class ResultFiber<void> : public Fiber {
 public:
  void set_value() noexcept {}
  void take() noexcept {}
};

template <class T, class F>
class TaskFiber final : public ResultFiber<T> {
 public:
  explicit TaskFiber(F&& f) : fn_(std::move(f)) {}
  void invoke() noexcept override {
    try {
      if constexpr (std::is_void_v<T>) {
        (*fn_)();
        this->set_value();
      } else {
        this->set_value_from(*fn_);
      }
    } catch (...) {
      this->error_ = std::current_exception();
    }
    // The callable and what it captured die here, on the fiber, before its
    // joiners wake: not with the control block, whose last reference may
    // go much later (a Task kept after join, or the spawner's registry
    // unlinking a fiber that ended on another worker: registry.hpp). A
    // captured semaphore guard or socket is released when the fiber ends.
    fn_.reset();
  }
  void drop_body() noexcept override { fn_.reset(); }

 private:
  std::optional<F> fn_;  // engaged until invoke() ends (or never run)
};

// check_stack_size: throws std::length_error for a stack size over
// kMaxStackSize (1 GiB, Go's limit on 64-bit): SIZE_MAX wrapped to 0 when
// rounded to pages (a plain SIGSEGV at the fiber's first run), and sizes
// from 2^50 aborted on the worker instead of failing the spawn.
inline constexpr std::size_t kMaxStackSize = std::size_t{1} << 30;
void check_stack_size(std::size_t size, const char* what);

// Hands a new fiber to the scheduler of the calling worker (or, from a plain
// thread, to the runtime registered as current; see Runtime). Takes one
// reference (the scheduler's); the caller keeps its own.
// `target` is the runtime to use from a plain thread (nullptr: the calling
// worker's, else the most recently started runtime).
void schedule_new(Fiber* f, Scheduler* target, const char* name, std::size_t name_len,
                  std::size_t stack_size, const spindle::source_location& where);

// Joins f: suspends the calling fiber (or blocks the thread) until f is done,
// then rethrows its exception, if any. A cancellation point.
void join_fiber(Fiber* f);
// Requests cancellation of f (idempotent; nothing happens if f is done).
void cancel_fiber(Fiber* f) noexcept;
// True when e holds spindle::Cancelled (a fiber's error_, say).
bool is_cancellation(const std::exception_ptr& e) noexcept;
// wait_any: suspends the caller until one of fs[0..n) is done, `deadline`
// (nullptr: none) passes, or the caller is cancelled (raises Cancelled).
// Returns the index of a done fiber (the lowest, if several), or -1 when the
// deadline passed first. Several waiters may wait on one fiber at once.
int wait_any(Fiber* const* fs, std::size_t n,
             const std::chrono::steady_clock::time_point* deadline);

}  // namespace spindle::detail
