// offload.hpp: run a CPU-bound or blocking call off the workers and wait for
// it (asyncio's run_in_executor, tokio's spawn_blocking).
//
// A worker thread that runs a 2 ms computation or a blocking read() stalls
// every fiber queued behind it, its timers and its I/O. offload(f) and
// blocking(f) hand f to a separate pool of plain threads and suspend only the
// calling fiber until f has finished. The worker threads never run f.
//
// The two pools (runtime/src/offload.cpp has the details):
//  - offload: a fixed pool for CPU work, sized like the machine (one thread
//    per hardware thread), so CPU jobs share the cores instead of
//    oversubscribing them.
//  - blocking: a pool for calls that mostly wait (a blocking syscall, a
//    library without an async API). It grows on demand up to a bound, since
//    a blocked thread costs no CPU, and a thread idle for 5 s retires.
//
// Each Runtime owns its two pools. A pool is created by the first call that
// needs it, sized from that runtime's RuntimeOptions (offload_threads /
// blocking_threads, 0: hardware_concurrency() and 64; offload_low_priority),
// so two runtimes in one process, one after the other or side by side, each
// get pools of their own size. Runtime::shutdown stops them (docs/runtime.md
// "Shutdown"), and no queued job is run or lost silently there:
//  - shutdown first cancels the runtime's fibers; a caller cancelled while
//    its job is queued takes the job off the queue (it never runs) and
//    raises Cancelled, as any cancelled caller does. While shutdown waits
//    for the fibers to finish (shutdown_timeout) the pools keep working, so
//    clean-up code may still offload inside shield();
//  - then it stops the pools: a job still queued (its caller waited inside
//    shield() past shutdown_timeout, or is a job of the other pool) is not
//    run; its caller raises Cancelled, and the count is reported on stderr.
//    Jobs already running finish, and shutdown waits for them (it cannot
//    interrupt them);
//  - an offload call that reaches the pools after that raises Cancelled.
// A job's own offload/blocking calls (on a pool thread) go to the pools of
// the runtime that pool belongs to.
//
// A plain thread outside any runtime shares one process-wide pair of pools
// with the default sizes (created on first use; stopped at static
// destruction the same way: running jobs finish, queued ones fail with
// Cancelled). So do not call offload() from code that runs during static
// destruction.
#pragma once

#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <new>
#include <optional>
#include <type_traits>
#include <utility>

#include <spindle/runtime/detail/function_ref.hpp>
#include <spindle/runtime/detail/macros.hpp>
#include <spindle/runtime/detail/not_callable.hpp>
#include <spindle/runtime/source_location.hpp>
#include <spindle/runtime/suspend.hpp>

namespace spindle {

namespace detail {

enum class PoolKind : std::uint8_t { cpu, blocking };

// OffloadJob: the state one offload call shares with the pool thread that
// runs it. Heap-allocated and reference-counted, because either side may be
// the last to use it: the caller may be cancelled and leave while the job
// still runs, and then the job's result must land here, never on the dead
// fiber's stack. References: one for the caller (taken at construction),
// one for the pool (taken when the job is queued).
class OffloadJob {
 public:
  OffloadJob() noexcept = default;
  OffloadJob(const OffloadJob&) = delete;
  OffloadJob& operator=(const OffloadJob&) = delete;

  // execute: runs the user's callable, stores its value or exception, and
  // then destroys the callable (with everything it captured), so that is
  // done before the waiter is completed: whichever side releases the job
  // last, a lock guard or permit f captured is released before offload
  // returns, not later on the pool thread. Called at most once, on a pool
  // thread (or inline on a thread of the same pool). Never throws.
  virtual void execute() noexcept = 0;
  // discard: destroys the callable without running it (a job stop fails,
  // offload.cpp step 6), before its waiter is completed, for the same
  // reason. Never throws.
  virtual void discard() noexcept = 0;

  void add_ref() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  // acq_rel: whoever deletes the job must see every write of the other side
  // (the result, the waiter's state) first.
  void release() noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  // Completed by the pool thread after execute(); the caller waits on it.
  Waiter waiter;
  // The offload or blocking call's site: shutdown names it while it waits
  // for the job to return (offload.cpp, Pool::join). Set before queueing.
  spindle::source_location where{};
  // The pool's queue links, and whether the job is linked now. All three
  // guarded by the pool's mutex; whoever clears queued_ (the pool thread
  // that pops the job, the cancelled caller that withdraws it, or the pool's
  // stop) takes over the pool's references (offload.cpp, the protocol), and
  // stop then walks the jobs it took through next_ without the mutex.
  OffloadJob* next_ = nullptr;
  OffloadJob* prev_ = nullptr;
  bool queued_ = false;

 protected:
  virtual ~OffloadJob() = default;

 private:
  std::atomic<std::uint32_t> refs_{1};
};

// OffloadTask: an OffloadJob with a callable F returning R. R may be void,
// an object type (move-only is fine) or an lvalue reference.
template <class R, class F>
class OffloadTask final : public OffloadJob {
  static_assert(!std::is_rvalue_reference_v<R>,
                "spindle::offload: a job may not return an rvalue reference");
  using Stored = std::conditional_t<std::is_lvalue_reference_v<R>,
                                    std::reference_wrapper<std::remove_reference_t<R>>, R>;

 public:
  template <class G>
  explicit OffloadTask(G&& g) : fn_(std::in_place, std::forward<G>(g)) {}

  void execute() noexcept override {
    try {
      if constexpr (std::is_void_v<R>) {
        std::invoke(*fn_);
      } else {
        value_.emplace(std::invoke(*fn_));
      }
    } catch (...) {
      error_ = std::current_exception();
    }
    // Before the caller hears of the result (see OffloadJob::execute): left
    // to the job's last release, the captures died on the pool thread after
    // offload returned in 99% of calls (a review's probe), concurrently with
    // the caller's next steps. tokio's spawn_blocking consumes its FnOnce
    // before sending the result the same way.
    fn_.reset();
  }

  void discard() noexcept override { fn_.reset(); }

  // take: the job's value, or rethrows its exception. Only after the job
  // finished (the waiter was notified, or execute() ran inline).
  R take() {
    if (error_) {
      // Move the exception out, so the caller's thread drops the last
      // reference to it: if the pool thread released the job last, it would
      // otherwise free the exception object the caller's handler used,
      // ordered only by libstdc++'s internal refcount (invisible to TSan).
      std::exception_ptr e = std::exchange(error_, nullptr);
      std::rethrow_exception(e);
    }
    if constexpr (std::is_void_v<R>) {
      return;
    } else if constexpr (std::is_lvalue_reference_v<R>) {
      return value_->get();
    } else {
      return std::move(*value_);
    }
  }

 private:
  // Engaged from construction until execute() or discard() is done with it.
  std::optional<F> fn_;
  std::conditional_t<std::is_void_v<R>, char, std::optional<Stored>> value_{};
  std::exception_ptr error_;
};

// OffloadRef: the caller's reference, released however the call ends.
struct OffloadRef {
  OffloadJob* job;
  ~OffloadRef() { job->release(); }
};

// run_offload: queues `job` on the pool `kind` and waits until the pool has
// executed it. Returns normally once it has (the result is in the job).
// Throws Cancelled if the caller is cancelled first: a job still queued is
// taken off the queue and never runs; a job already running runs to
// completion on the pool, which keeps its own reference, and the result is
// dropped with the job. Also throws Cancelled when the pools stopped
// (shutdown) before the job ran. On a plain thread it blocks the thread; on
// a thread of that very pool it runs the job inline (so a job that offloads
// cannot deadlock its pool).
SPINDLE_MAY_SUSPEND void run_offload(PoolKind kind, OffloadJob& job);

// OffloadPoolStats: one pool as the calling code would use it (a fiber: its
// runtime's pool; a plain thread: the process-wide one). For tests and
// debugging; a snapshot taken under the pool's lock.
struct OffloadPoolStats {
  unsigned bound = 0;    // most threads it may have (its options' size)
  unsigned threads = 0;  // threads started and not retired
  unsigned running = 0;  // threads running a job now
  std::size_t queued = 0;       // jobs linked in the queue, waiting for a thread
  std::uint64_t withdrawn = 0;  // jobs taken off the queue by their cancelled callers
};
OffloadPoolStats offload_pool_stats(PoolKind kind);

// start_unlowered_thread: runs `start`, a call that starts a long-lived
// helper thread (io's signal hub, its process reaper), so that the new
// thread does not inherit a lowered priority: called on a thread of a
// low-priority offload pool (SCHED_IDLE and nice 19, which an unprivileged
// thread can never leave), `start` runs on that pool group's starter
// thread (runtime/src/thread_starter.hpp) and this call waits for it;
// anywhere else it runs here. Rethrows what `start` throws. The thread
// still inherits the starting thread's CPU affinity and name: the helper
// sets those itself.
void start_unlowered_thread(FunctionRef<void()> start);

template <class F>
decltype(auto) offload_on(PoolKind kind, F&& f, spindle::source_location where) {
  using Fn = std::decay_t<F>;
  using R = std::invoke_result_t<Fn&>;
  auto* job = new OffloadTask<R, Fn>(std::forward<F>(f));
  OffloadRef ref{job};
  job->where = where;
  run_offload(kind, *job);
  return job->take();
}

}  // namespace detail

// offload: runs f() on the CPU offload pool and suspends the calling fiber
// until it has finished; returns f's value or rethrows its exception. For
// CPU-bound work of about a millisecond or more: a shorter job costs more in
// hand-offs (two thread wake-ups, ~10-50 us) than it saves.
//  - May suspend. f is decay-copied (moved) into a heap job, so it may be
//    move-only; its result may be move-only, void or an lvalue reference.
//  - A cancellation point: if the caller is cancelled while f is queued or
//    running, offload raises spindle::Cancelled at once. If f had not
//    started, it never runs: the caller takes it off the queue and destroys
//    it (and what it captured) before Cancelled propagates. If f is running
//    it is not stopped: it runs to completion on the pool (its captures are
//    then destroyed there, whenever it ends) and its result is
//    dropped (a caller that was already cancelled before the call raises
//    Cancelled without queueing f at all). So f must not use references
//    into the caller's stack that the caller's unwinding would destroy:
//    capture by value (or shared ownership), as f may outlive the call.
//    A deadline scope (with_timeout) ends the wait the same way and its
//    scope raises TimedOut; inside shield() the wait is not interrupted by
//    the cancel or by the scopes outside the shield (a scope opened inside
//    it does end the wait; the job runs on).
//  - Who may call: any fiber (f goes to its runtime's pool); any plain
//    thread, which then blocks until f has finished, unless a deadline
//    scope of the thread's own ends the wait first (then, as for a fiber,
//    f runs on: capture by value there too; before 2026-11-30 a plain
//    thread's scopes did nothing); outside any runtime f goes to the
//    process-wide pool. Called on a
//    thread of the offload pool itself (a job offloading more work), it runs
//    f inline.
//  - f runs on a pool thread, never on a worker: inside f,
//    this_fiber::in_fiber() is false, and spindle's fiber waits (sync/
//    primitives, sleep_for) block that pool thread as on any plain thread.
//  - While the call waits the runtime's deadlock detector counts it as
//    outside work that may still wake a fiber, so it never reports fibers
//    waiting on offload as deadlocked.
//
// Lifetime of f: when offload returns or rethrows f's exception, f (the
// decay-copied callable) and everything it captured has been destroyed, on
// the pool thread right after f returned: a captured lock guard, semaphore
// permit or shared_ptr is released before the caller's next statement, never
// concurrently with it (before 2026-12-01 the pool thread usually destroyed
// it after offload had returned). A job that never ran (withdrawn by a
// cancelled caller, or failed by shutdown) is destroyed before its caller
// raises Cancelled too, except when shutdown fails it while the caller is
// cancelled at the same moment: shutdown's thread destroys it then.
//
// Memory ordering: everything f did (including constructing its result and
// destroying the callable) happens-before offload returns in the caller. The pool thread stores the
// result and then completes the waiter with a compare-exchange that is
// acq_rel; the caller reads the waiter's state with acquire before it reads
// the result. Conversely, everything the caller did before calling offload
// happens-before f starts (the job is handed over under the pool's mutex).
template <class F>
  requires std::invocable<std::decay_t<F>&>
SPINDLE_MAY_SUSPEND decltype(auto) offload(F&& f, spindle::source_location where = spindle::source_location::current()) {
  return detail::offload_on(detail::PoolKind::cpu, std::forward<F>(f), where);
}

// blocking: as offload, but on the pool for blocking calls (file or database
// APIs without async variants, sleeps, waits on other processes). The pool
// starts empty, adds a thread whenever every thread is busy, up to
// RuntimeOptions::blocking_threads (64 when 0); beyond that, calls queue.
// A thread idle for 5 s retires. Same contract as offload in every other
// respect (may suspend, cancellation point, any fiber or plain thread, runs
// inline on a thread of the blocking pool itself, same memory ordering).
template <class F>
  requires std::invocable<std::decay_t<F>&>
SPINDLE_MAY_SUSPEND decltype(auto) blocking(F&& f, spindle::source_location where = spindle::source_location::current()) {
  return detail::offload_on(detail::PoolKind::blocking, std::forward<F>(f), where);
}

// Misuse: offload(compute(x)) (the call already ran here, on the worker, and
// offload got its result), or a callable that needs arguments
// (offload(compute, x): asyncio's to_thread(f, *args) takes them, offload
// does not). One sentence instead of "no matching function". The deduced
// type is what the user meant to get back, so that nothing else is reported.
namespace detail {
template <class...>
inline constexpr bool offload_misuse_v = false;
template <class F, class... Args>
using offload_misuse_result_t =
    typename std::conditional_t<NotCallable<F>, std::type_identity<result_guess_t<F>>,
                                std::conditional_t<std::is_invocable_v<std::decay_t<F>&, Args...>,
                                                   std::invoke_result<std::decay_t<F>&, Args...>,
                                                   std::type_identity<void>>>::type;
}  // namespace detail

template <class F, class... Args>
  requires(sizeof...(Args) > 0 || !std::invocable<std::decay_t<F>&>)
auto offload(F&&, Args&&...) {
  static_assert(detail::offload_misuse_v<F, Args...> || !detail::NotCallable<F>,
                "offload takes the function to run on the pool, not its result: write "
                "offload([=] { return compute(x); }) (capture by value: the job may outlive a "
                "cancelled caller)");
  static_assert(detail::offload_misuse_v<F, Args...> || detail::NotCallable<F>,
                "offload takes a callable with no arguments: bind them in a lambda, "
                "offload([=] { return compute(x); }) (capture by value: the job may outlive a "
                "cancelled caller)");
  return detail::misuse_result<detail::offload_misuse_result_t<F, Args...>>();
}

template <class F, class... Args>
  requires(sizeof...(Args) > 0 || !std::invocable<std::decay_t<F>&>)
auto blocking(F&&, Args&&...) {
  static_assert(detail::offload_misuse_v<F, Args...> || !detail::NotCallable<F>,
                "blocking takes the function to run on the pool, not its result: write "
                "blocking([=] { return read_config(path); }) (capture by value: the job may "
                "outlive a cancelled caller)");
  static_assert(detail::offload_misuse_v<F, Args...> || detail::NotCallable<F>,
                "blocking takes a callable with no arguments: bind them in a lambda, "
                "blocking([=] { return read_config(path); }) (capture by value: the job may "
                "outlive a cancelled caller)");
  return detail::misuse_result<detail::offload_misuse_result_t<F, Args...>>();
}

}  // namespace spindle
