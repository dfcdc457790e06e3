// worker.hpp: one worker thread: its run queues, timers, stack cache and
// libuv loop. docs/runtime.md describes the loop phases and the protocols;
// worker.cpp opens with the summary.
#pragma once

#include <uv.h>

#include <pthread.h>
#include <time.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include <spindle/runtime/detail/fiber.hpp>
#include <spindle/runtime/detail/io_hook.hpp>
#include <spindle/runtime/stats.hpp>
#include <spindle/runtime/suspend.hpp>

#include "coarse_clock.hpp"
#include "context.hpp"
#include "fiber_list.hpp"
#include "registry.hpp"
#include "run_queue.hpp"
#include "stack_pool.hpp"
#include "timer_heap.hpp"

namespace spindle::detail {

class Scheduler;

// What the context that lands after a switch must do for the one that left
// (which can no longer act: it is off its stack). See Worker::land.
struct Pending {
  enum Kind : std::uint8_t { none, from_scheduler, wait, yield, finish, hop };
  Kind kind = none;
  Fiber* prev = nullptr;
  // wait
  Waiter* waiter = nullptr;
  const std::chrono::steady_clock::time_point* deadline = nullptr;
  FunctionRef<bool()>* publish = nullptr;
  // hop (hop_to_worker): the worker whose inbox takes the fiber
  class Worker* target = nullptr;
};

// Relaxed counter written by one thread, read by any (no RMW needed).
struct Counter {
  std::atomic<std::uint64_t> v{0};
  void inc() noexcept { add(1); }
  void add(std::uint64_t n) noexcept {
    v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  std::uint64_t get() const noexcept { return v.load(std::memory_order_relaxed); }
};

class Worker {
 public:
  Worker(Scheduler& s, unsigned index);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void start();
  void join();

  // --- any thread ---
  // Queues f (which must run here) on the inbox and wakes the worker.
  void push_inbox(Fiber* f);
  void unpark() noexcept;
  bool has_stealable() const noexcept { return deque_.size_hint() > 0; }
  bool parked_hint() const noexcept { return parked_.load(std::memory_order_relaxed); }
  // For the slow-fiber report: what queued behind the running fiber here
  // went elsewhere, and what is still here.
  struct HeldBack {
    std::uint64_t handed_off, timers_taken;
    bool holds;
    std::size_t stealable, timers;
  };
  HeldBack held_back() const noexcept {
    return {handed_off_.get(), timers_taken_.load(std::memory_order_relaxed), holds_fibers(),
            deque_.size_hint(), timer_count()};
  }
  // The earliest deadline in this worker's timer heap (max when empty).
  std::chrono::steady_clock::time_point next_deadline() const noexcept {
    return std::chrono::steady_clock::time_point(
        std::chrono::steady_clock::duration(next_deadline_.load(std::memory_order_relaxed)));
  }
  // Fires the timers of this worker's heap that are due at `now` and wakes
  // their fibers; returns how many it fired. Any worker thread (an idle one
  // takes over the timers of a busy one: docs/runtime.md "Hand-off").
  std::size_t fire_due_timers(std::chrono::steady_clock::time_point now);
  // Removes w's timer from this worker's heap if it is still there. Any
  // thread; w.timer_owner must be this worker.
  void remove_timer(Waiter* w) noexcept;
  // Hint: a fiber waits in this worker's LIFO slot or FIFO, where only this
  // worker can run it (held_ mirrors the FIFO as of the last return to user
  // code; the slot is read directly).
  bool holds_fifo() const noexcept { return held_.load(std::memory_order_relaxed); }
  bool holds_fibers() const noexcept {
    return held_.load(std::memory_order_relaxed) || lifo_.load(std::memory_order_relaxed) != nullptr;
  }
  bool inbox_empty() const noexcept { return inbox_.empty(); }
  std::size_t timer_count() const noexcept { return timer_count_.load(std::memory_order_relaxed); }
  WorkerStats stats() const noexcept;
  unsigned index() const noexcept { return index_; }
  int timer_fd() const noexcept { return timer_fd_; }
  int wake_fd() const noexcept { return wake_fd_; }
  void clear_wake_pending() noexcept { wake_pending_.exchange(false, std::memory_order_acq_rel); }
  Fiber* running_hint() const noexcept { return running_.load(std::memory_order_relaxed); }
  std::uint64_t switch_count() const noexcept { return switches_.get(); }

  // --- owner thread only ---
  // Some fiber is ready to run here (LIFO slot, deque, FIFOs).
  bool has_local_work() noexcept;
  void push_local(Fiber* f);          // a new or woken fiber, stealable
  void push_lifo(Fiber* f);           // a woken fiber: runs next
  // A fiber woken by this worker's poll of I/O readiness (or its libuv
  // loop): to the back of the FIFO, so that under steady load every ready
  // connection takes its turn (the LIFO slot and deque would serve the
  // latest wake first and leave the earliest waiting while new readiness
  // keeps coming: seconds at 1,000 echo connections on one worker).
  void push_polled(Fiber* f);
  // True while this worker dispatches readiness (poll_events, uv_run from
  // maintenance or park): Scheduler::wake_fiber then uses push_polled.
  bool dispatching_io() const noexcept { return dispatching_io_; }
  void add_timer(Waiter* w);
  // Switches away from the running fiber; `p.prev` must be it. Returns when
  // the fiber is resumed (possibly on another worker).
  void switch_out(const Pending& p);
  void switch_out(Pending::Kind kind, Fiber* self);  // yield, or any kind with no extra fields
  void switch_out_wait(Fiber* self, Waiter* w,
                       const std::chrono::steady_clock::time_point* deadline,
                       FunctionRef<bool()>* publish);  // Pending::wait, without a copy
  [[noreturn]] void exit_fiber(Fiber* f);
  Fiber* running() const noexcept { return running_.load(std::memory_order_relaxed); }
  Scheduler& scheduler() noexcept { return sched_; }
  Registry& registry() noexcept { return registry_; }
  std::uint64_t next_fiber_id() noexcept;
  void count_spawn() noexcept { spawns_.inc(); }
  // A recent time (at most one maintenance round old) for stamping fibers'
  // birth; dumps show ages in milliseconds.
  std::chrono::steady_clock::time_point recent_time() const noexcept { return recent_time_; }

  // The landing side of every switch (see Pending).
  void land(void* from_fctx);
  void land_slow(void* from_fctx);  // every other kind (land() inlines yield)

  // --- hand-off (handoff.cpp; docs/runtime.md "Hand-off") ---
  // The SIGURG handler's side, on this worker's thread: if the signal
  // interrupted a fiber's user code (rt_depth_ == 0), the LIFO slot and the
  // FIFO go onto the deque, where idle workers steal them. Then it unparks
  // the worker that asked. False when the signal was not ours.
  bool handoff_in_signal() noexcept;

  // --- io poller (detail/io_hook.hpp) ---
  // set_poller: any thread, once. rescue_poll: a rescuer that found this
  // worker stuck polls its instance without blocking (the owner polls in
  // maintenance and parks in it; the callback's contract allows both at
  // once).
  void set_poller(int fd, WorkerPollFn fn, void* ctx) noexcept;
  void rescue_poll() noexcept {
    // acquire; pairs with the release in set_poller (fd, fn, ctx).
    if (poller_set_.load(std::memory_order_acquire)) poll_events(&kNoWait, false);
  }

 private:
  friend class Scheduler;
  class DispatchingIo;  // worker.cpp
  static void fiber_main(void* from_fctx);
  void thread_main();
  void loop();
  void resume(Fiber* f);
  bool prepare(Fiber* f);
  Fiber* next_local();
  Fiber* next_direct();
  Fiber* find_work();
  void maintenance();
  void drain_inbox();
  bool take_global_one();    // to the back of the FIFO
  bool take_global_share();  // a batch onto the deque
  Fiber* steal();
  void park();
  bool has_work_for_park() const;
  void fire_own_timers();
  void arm_park_timer(std::chrono::steady_clock::time_point at, bool deadlock_watch);
  void disarm_park_timer();
  std::size_t transfer_fifo();
  void push_fifo(Fiber* f);
  static void prefetch_for_switch(Fiber* f) noexcept;
  void overflow_half();
  void finish(Fiber* f);
  void after_wait_publish(const Pending& p);
  void switch_from(Fiber* self);
  void set_next_deadline_locked() noexcept;

  // rt_depth_ > 0 while this thread runs runtime code that may touch the
  // LIFO slot, the FIFOs or the owner's end of the deque; 0 exactly while a
  // fiber's user code runs, the only time the hand-off signal handler may
  // touch them (it runs on this thread, so signal fences order the two).
  // The scheduler context is at depth 1; every switch happens at depth 1;
  // a fiber entering the runtime from user code adds one, and leaves
  // through to_user(). Owner thread and its signal handler only.
  // Entry points reachable from user code that touch those queues
  // (push_local, push_lifo, has_local_work) hold one; defined in worker.cpp
  // so that to_user is inlined.
  class RuntimeSection {
   public:
    explicit RuntimeSection(Worker& w) noexcept;
    ~RuntimeSection();
    RuntimeSection(const RuntimeSection&) = delete;
    RuntimeSection& operator=(const RuntimeSection&) = delete;

   private:
    Worker& w_;
    const int depth_;  // on entry
  };
  // Switches start from user code (depth 0): nothing to load.
  void enter_rt_from_user() noexcept {
    rt_depth_.store(1, std::memory_order_relaxed);
    std::atomic_signal_fence(std::memory_order_seq_cst);
  }
  void to_user() noexcept;       // depth 1 -> 0: publish held_, expose the FIFO
  void expose_fifo() noexcept;   // the FIFO onto the deque, and notify
  // An idle worker's look at the others before it parks: fires the due
  // timers of a stuck worker, asks a stuck worker to hand off its fibers,
  // and returns when to look again (max: no need).
  std::chrono::steady_clock::time_point watch_others(std::chrono::steady_clock::time_point now);
  void request_handoff(Worker& rescuer) noexcept;
  void await_handoff() const noexcept;
  bool others_active() const noexcept;  // some other worker is not parked
  bool unparked_ = false;  // owner only: parked since it last ran a fiber

  Scheduler& sched_;
  const unsigned index_;
  std::thread thread_;

  // Owner only.
  ExecContext sched_ctx_;
  EhGlobals* eh_ = nullptr;  // this thread's exception globals (context.hpp)
  Pending pending_;
  // The LIFO slot. Owner (and its hand-off handler) only, except that idle
  // workers read it as a hint (holds_fibers): relaxed loads and stores, the
  // same instructions as a plain pointer.
  std::atomic<Fiber*> lifo_{nullptr};
  Fiber* lifo() const noexcept { return lifo_.load(std::memory_order_relaxed); }
  Fiber* swap_lifo(Fiber* f) noexcept {
    Fiber* old = lifo_.load(std::memory_order_relaxed);
    lifo_.store(f, std::memory_order_relaxed);
    return old;
  }
  unsigned lifo_runs_ = 0;
  FiberList fifo_;    // yielded, capped-LIFO and inbox fibers, oldest first
  FiberList pinned_;  // the same, for fibers that must run on this worker
  std::vector<Fiber*> scratch_;
  std::uint64_t tick_ = 0;
  std::uint64_t last_maintenance_ = 0;
  std::chrono::steady_clock::time_point recent_time_ = coarse_now();
  std::uint64_t rng_;
  // What this worker saw of each other worker at its last look
  // (watch_others): the fiber running there, its switch count, since when,
  // and when it last asked that worker for a hand-off.
  struct Watch {
    Fiber* fiber = nullptr;
    std::uint64_t switches = 0;
    std::chrono::steady_clock::time_point since{}, asked{};
  };
  std::vector<Watch> watch_;
  StackCache stacks_;
  std::uint64_t id_next_ = 0, id_end_ = 0;
  uv_loop_t loop_;
  // Wake-ups from other threads (unpark): an eventfd watched by the loop,
  // and a flag so that one write serves every waker until the loop runs.
  int wake_fd_ = -1;
  uv_poll_t wake_poll_;
  std::atomic<bool> wake_pending_{false};
  // Writers of wake_fd_ in progress, and whether the owner closed it
  // (write_wake_fd / close_wake_fd: any thread / the owner at its exit).
  std::atomic<int> wake_writers_{0};
  std::atomic<bool> wake_closed_{false};
  void write_wake_fd() noexcept;
  void close_wake_fd() noexcept;
  // Park timeout: a timerfd (nanosecond deadlines) watched by the loop, not
  // a uv_timer_t (epoll_wait's millisecond timeout would make every sleep up
  // to 1 ms late). docs/runtime.md "Timers".
  int timer_fd_ = -1;
  bool timer_armed_ = false;
  uv_poll_t timer_poll_;
  uv_signal_t sigquit_;
  bool sigquit_on_ = false;
  // The io poller. poller_fd_/fn_/ctx_ are written once by set_poller before
  // the release store of poller_set_, and only read after an acquire load
  // of it. Once io_poll_on_ (owner only), wake_fd_ and the loop's backend fd
  // are entries of poller_fd_ and the worker parks there, not in uv_run.
  std::atomic<bool> poller_set_{false};
  int poller_fd_ = -1;
  WorkerPollFn poller_fn_ = nullptr;
  void* poller_ctx_ = nullptr;
  bool io_poll_on_ = false;
  bool dispatching_io_ = false;  // owner thread only: see dispatching_io()
  void install_poller();
  static constexpr timespec kNoWait{};
  // poll_events: one wait on poller_fd_ (timeout nullptr: until an event),
  // io events to the callback, the worker's own entries handled here. `owner`:
  // the calling thread is this worker's.
  void poll_events(const timespec* timeout, bool owner) noexcept;

  // Shared.
  // The timer heap: its owner adds (after_wait_publish); any worker may fire
  // due timers or remove a timer (the woken fiber, wherever it runs).
  SpinLock timer_lock_;  // rank: leaf (nothing is locked or woken under it)
  TimerHeap timers_;     // SPINDLE_GUARDED_BY(timer_lock_)
  std::atomic<std::chrono::steady_clock::rep> next_deadline_{
      std::chrono::steady_clock::time_point::max().time_since_epoch().count()};
  // Hand-off state (docs/runtime.md "Hand-off").
  std::atomic<int> rt_depth_{1};
  std::atomic<bool> held_{false};             // the FIFO is non-empty; owner writes at to_user
  std::atomic<bool> handoff_asked_{false};    // set by a rescuer before its signal
  std::atomic<Worker*> rescuer_{nullptr};     // unparked by the handler
  std::atomic<pthread_t> tid_{};              // set by the thread itself
  std::atomic<bool> tid_set_{false};
  RunQueue<Fiber, 1024> deque_;
  InjectQueue inbox_;
  std::atomic<bool> parked_{false};
  std::atomic<Fiber*> running_{nullptr};
  std::atomic<std::size_t> timer_count_{0};
  Registry registry_;
  Counter switches_, spawns_, finished_, steals_, parks_, polls_, timers_fired_;
  Counter handed_off_;       // written by the signal handler on the owner thread
  Counter timers_rescued_;   // timers of other workers fired by this one
  std::atomic<std::uint64_t> timers_taken_{0};  // this worker's timers fired by others (RMW: many writers)
};

// current_worker: the worker running on this thread, or nullptr. Never
// inlined: a fiber may resume on another thread, and the compiler must not
// reuse a thread_local address computed before a switch.
Worker* current_worker() noexcept;

}  // namespace spindle::detail
