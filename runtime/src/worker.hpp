// worker.hpp: one worker thread: its run queues, timers, stack cache and
// libuv loop. docs/runtime.md describes the loop phases and the protocols;
// worker.cpp opens with the summary. Its members are defined in worker.cpp
// (the loop, queues, timers, switching), park.cpp (park/unpark, the wake
// eventfd, the io poller it sleeps in) and handoff.cpp (the hand-off).
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
#include "placement.hpp"
#include "schedstat.hpp"
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
  // Whether start() made the thread (the maker's thread only). A worker
  // whose thread never started closes its loop in its destructor.
  bool started() const noexcept { return started_; }
  void wait_started() const noexcept;  // until the thread set itself up (thread_main)

  // --- any thread ---
  // Queues f (which must run here) on the inbox and wakes the worker.
  void push_inbox(Fiber* f);
  void unpark() noexcept;
  bool has_stealable() const noexcept { return remote_.deque.size_hint() > 0; }
  bool parked_hint() const noexcept { return remote_.parked.load(std::memory_order_relaxed); }
  // For the slow-fiber report: what queued behind the running fiber here
  // went elsewhere, and what is still here.
  struct HeldBack {
    std::uint64_t handed_off, timers_taken;
    bool holds;
    std::size_t stealable, timers;
  };
  HeldBack held_back() const noexcept {
    return {remote_.handed_off.get(), remote_.timers_taken.load(std::memory_order_relaxed), holds_fibers(),
            remote_.deque.size_hint(), timer_count()};
  }
  // The earliest deadline in this worker's timer heap (max when empty).
  std::chrono::steady_clock::time_point next_deadline() const noexcept {
    return std::chrono::steady_clock::time_point(
        std::chrono::steady_clock::duration(timers_.next_deadline.load(std::memory_order_relaxed)));
  }
  // Fires the timers of this worker's heap that are due at `now` and wakes
  // their fibers; returns how many it fired. Any worker thread (an idle one
  // takes over the timers of a busy one: docs/runtime.md "Hand-off").
  std::size_t fire_due_timers(std::chrono::steady_clock::time_point now);
  // Removes w's timer from this worker's heap if it is still there. Any
  // thread; w.timer_owner must be this worker.
  void remove_timer(Waiter* w) noexcept;
  // Hints: a fiber waits in this worker's LIFO slot, FIFO or polled FIFO,
  // where only this worker can run it (remote_.held mirrors the two FIFOs
  // as of the last return to user code; the slot is read directly).
  // holds_fifo is the FIFO alone: a watcher looks again after one period
  // for it, but at its idle pace for polled fibers only (handoff.cpp).
  static constexpr std::uint8_t kHeldFifo = 1, kHeldPolled = 2;
  bool holds_fifo() const noexcept {
    return (remote_.held.load(std::memory_order_relaxed) & kHeldFifo) != 0;
  }
  bool holds_fibers() const noexcept {
    return remote_.held.load(std::memory_order_relaxed) != 0 ||
           remote_.lifo.load(std::memory_order_relaxed) != nullptr;
  }
  bool inbox_empty() const noexcept { return remote_.inbox.empty(); }
  std::size_t timer_count() const noexcept { return timers_.count.load(std::memory_order_relaxed); }
  WorkerStats stats() const noexcept;
  unsigned index() const noexcept { return index_; }
  int timer_fd() const noexcept { return core_.timer_fd; }
  int wake_fd() const noexcept { return remote_.wake_fd; }
  void clear_wake_pending() noexcept { remote_.wake_pending.exchange(false, std::memory_order_acq_rel); }
  Fiber* running_hint() const noexcept { return remote_.running.load(std::memory_order_relaxed); }
  std::uint64_t switch_count() const noexcept { return remote_.switches.get(); }
  std::uint64_t park_count() const noexcept { return remote_.parks.get(); }
  bool holds_polled() const noexcept {
    return (remote_.held.load(std::memory_order_relaxed) & kHeldPolled) != 0;
  }
  // ExternalWork guards begun minus ended on this worker's thread (mod
  // 2^64): the owner adds, the deadlock detector sums (scheduler.cpp).
  void add_external_work(std::uint64_t d) noexcept { remote_.external_work.add(d); }
  std::uint64_t external_work_count() const noexcept { return remote_.external_work.get(); }

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
  bool dispatching_io() const noexcept { return core_.dispatching_io != kNotDispatching; }
  // Dispatching a stuck worker's instance (rescue_poll) that had a core:
  // the fibers it wakes run here, and their sockets follow them
  // (Fiber::handed_off_, io_hook.hpp set_move_listener). Not for kRescuingStay.
  bool rescuing_io() const noexcept { return core_.dispatching_io == kRescuing; }
  // add_timer: after_wait_publish's, on the waiting fiber's worker. It
  // cannot fail (TimerHeap::push: out of memory, the timer waits on an
  // intrusive list), because it runs in no fiber's frame: a bad_alloc there
  // surfaced in whichever context ran next (another fiber's suspend,
  // skipping its retract: a Waiter left published on a socket, and a crash
  // at its close).
  void add_timer(Waiter* w) noexcept;
  // Switches away from the running fiber; `p.prev` must be it. Returns when
  // the fiber is resumed (possibly on another worker).
  void switch_out(const Pending& p);
  void switch_out(Pending::Kind kind, Fiber* self);  // yield, or any kind with no extra fields
  void switch_out_wait(Fiber* self, Waiter* w,
                       const std::chrono::steady_clock::time_point* deadline,
                       FunctionRef<bool()>* publish);  // Pending::wait, without a copy
  [[noreturn]] void exit_fiber(Fiber* f);
  // prefetch_frames: starts the loads of the saved frames of f (switched
  // out, its context saved), which a switch to it reads first. The caller
  // must own f's queue entry or have won its wait, so f->ctx_ is stable.
  static void prefetch_frames(const Fiber* f) noexcept {
    if (const char* sp = static_cast<const char*>(f->ctx_.fctx)) {
      for (int i = 0; i < 4; ++i) __builtin_prefetch(sp + 64 * i);
    }
  }
  // load_frames: as prefetch_frames, but the first line with a real load,
  // which also fills the TLB entry of f's stack page. Here (AMD EPYC under
  // KVM) a software prefetch whose page is out of the TLB behaves as if
  // dropped: with 1,000 fibers each switch missed on its saved frame
  // although the line had been prefetched one switch earlier (docs/
  // runtime.md "Switch and spawn cost"). The load waits for its page walk
  // where it is issued, so it is issued one switch ahead, not at wake-up:
  // a poll's later fibers run hundreds of microseconds after their wake,
  // and a load there made no difference. Same ownership rule.
  static void load_frames(const Fiber* f) noexcept {
    if (const char* sp = static_cast<const char*>(f->ctx_.fctx)) {
#if defined(__x86_64__)
      // In asm: ASan and TSan would check a C++ read of another fiber's
      // suspended stack (its frames' redzones, its last writer).
      asm volatile("cmpb $0, %0" : : "m"(*sp) : "cc");
#else
      __builtin_prefetch(sp);
#endif
      for (int i = 1; i < 4; ++i) __builtin_prefetch(sp + 64 * i);
    }
  }
  Fiber* running() const noexcept { return remote_.running.load(std::memory_order_relaxed); }
  Scheduler& scheduler() noexcept { return sched_; }
  Registry& registry() noexcept { return remote_.registry; }
  std::uint64_t next_fiber_id() noexcept;
  void count_spawn() noexcept { remote_.spawns.inc(); }
  // A recent time (at most one maintenance round old) for stamping fibers'
  // birth; dumps show ages in milliseconds.
  std::chrono::steady_clock::time_point recent_time() const noexcept { return core_.recent_time; }

  // The landing side of every switch (see Pending). noexcept: it runs in
  // no fiber's frame of its own (the scheduler, or the fiber switched to,
  // inside its suspend), so an exception would surface in that other
  // fiber; terminate is the honest end (docs/runtime.md "Nothing after the
  // switch may fail").
  void land(void* from_fctx) noexcept;
  void land_slow(void* from_fctx) noexcept;  // every other kind (land() inlines yield)

  // --- hand-off (handoff.cpp; docs/runtime.md "Hand-off") ---
  // The SIGURG handler's side, on this worker's thread: if the signal
  // interrupted a fiber's user code (core_.rt_depth == 0), the LIFO slot and
  // the FIFO go onto the deque, where idle workers steal them. Then it unparks
  // the worker that asked. False when the signal was not ours.
  bool handoff_in_signal() noexcept;

  // --- io poller (detail/io_hook.hpp) ---
  // set_poller: any thread, once. rescue_poll: a rescuer that found this
  // worker stuck polls its instance without blocking (the owner polls in
  // maintenance and parks in it; the callback's contract allows both at
  // once).
  void set_poller(int fd, WorkerPollFn fn, void* ctx) noexcept;
  // move: the fibers it wakes carry the hand-off mark (their sockets follow
  // them here); false for a worker without a core (placement.hpp, rule 5).
  void rescue_poll(bool move) noexcept {
    // acquire; pairs with the release in set_poller (fd, fn, ctx).
    if (remote_.poller_set.load(std::memory_order_acquire)) {
      poll_events(&kNoWait, move ? kRescuing : kRescuingStay);
    }
  }
  // Consolidation (placement.hpp rule 5; docs/io.md "Where a connection
  // lives"): the worker whose epoll instance this worker's read waits move
  // their sockets to, or -1. The owner writes it (once a load window, or
  // when, as a watcher, it spreads its target's connections); the io layer
  // reads it on the owner's thread (note_read_wait) and, as a hint, when
  // it places an accepted socket.
  int consolidation_target() const noexcept { return remote_.consolidate_to.load(std::memory_order_relaxed); }
  // What a watcher reads of this worker at one look (handoff.cpp);
  // my_target: the watcher consolidates to this worker.
  placement::PeerSnapshot peer_snapshot(bool my_target) const noexcept;
  // This worker's load as it last published it (load.cpp).
  placement::LoadSnapshot load_snapshot() const noexcept;

 private:
  friend class Scheduler;
  friend class KernelCpu;
  // DispatchingIo: marks the calling thread's worker as dispatching readiness for a scope
  // (a rescuer polling a stuck worker's instance wakes into its own FIFO).
  // kRescuingStay: a rescue of a worker that had no core (preempted, not
  // stuck): its fibers run here this once, their sockets stay.
  static constexpr std::uint8_t kNotDispatching = 0, kOwnInstance = 1, kRescuing = 2, kRescuingStay = 3;
  class DispatchingIo {
   public:
    explicit DispatchingIo(Worker* w, std::uint8_t what = kOwnInstance) noexcept
        : w_(w), was_(w != nullptr ? w->core_.dispatching_io : kNotDispatching) {
      if (w_ != nullptr) w_->core_.dispatching_io = what;
    }
    ~DispatchingIo() {
      if (w_ != nullptr) w_->core_.dispatching_io = was_;
    }
    DispatchingIo(const DispatchingIo&) = delete;
    DispatchingIo& operator=(const DispatchingIo&) = delete;

   private:
    Worker* w_;
    std::uint8_t was_;
  };
  static void fiber_main(void* from_fctx);
  void thread_main();
  // close_loop: closes the loop's handles (worker 0's SIGQUIT watch is in
  // libuv's process-wide signal tree) and descriptors. The thread's last
  // step, or ~Worker's for a worker whose thread never started.
  void close_loop() noexcept;
  void loop();
  void resume(Fiber* f);
  enum class Prepared : unsigned char { ready, forwarded, requeued };
  Prepared prepare(Fiber* f);
  Fiber* next_local();
  Fiber* next_direct();
  Fiber* find_work();
  void maintenance();
  void drain_inbox();
  bool take_global_one();    // to the back of the FIFO
  bool take_global_share();  // a batch onto the deque
  Fiber* steal();
  bool steal_pays(std::chrono::steady_clock::time_point now) noexcept;
  void fire_own_timers();
  // What must happen before the pick at a given tick (worker.cpp, look).
  enum class Look : unsigned char { none, maintenance, timers };
  Look look(std::uint64_t tick) noexcept;
  Look timer_look(std::uint64_t tick) noexcept;
  // Parking (park.cpp; docs/runtime.md "Park/unpark").
  void open_park_handles();
  void park();
  bool has_work_for_park() const;
  void arm_park_timer(std::chrono::steady_clock::time_point at, bool deadlock_watch);
  void disarm_park_timer();
  std::size_t transfer_fifo();
  Fiber* next_fifo();  // next_local's pick from core_.fifo, with its transfer
  void push_fifo(Fiber* f);
  void push_fifo(Fiber* f, FiberList& q);
  static void prefetch_for_switch(Fiber* f) noexcept;
  static Fiber* pop_warm(FiberList& q) noexcept;
  void overflow_half();
  void finish(Fiber* f);
  void after_wait_publish(const Pending& p);
  void switch_from(Fiber* self);
  void set_next_deadline_locked() noexcept;

  // RuntimeSection: one level of core_.rt_depth (see there), held by the
  // entry points reachable from user code that touch the LIFO slot, the
  // FIFOs or the owner's end of the deque (push_local, push_lifo,
  // has_local_work); defined in worker.cpp so that to_user is inlined.
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
    core_.rt_depth.store(1, std::memory_order_relaxed);
    std::atomic_signal_fence(std::memory_order_seq_cst);
  }
  void to_user() noexcept;       // depth 1 -> 0: publish remote_.held, expose the FIFO
  std::uint8_t held_bits() const noexcept {  // remote_.held's value now (owner only)
    return static_cast<std::uint8_t>((core_.fifo.empty() ? 0 : kHeldFifo) |
                                     (core_.polled.empty() ? 0 : kHeldPolled));
  }
  void expose_fifo() noexcept;   // the FIFO onto the deque, and notify
  // An idle worker's look at the others before it parks (placement::look
  // for each, its actions applied here): returns when to look again (max:
  // no need).
  std::chrono::steady_clock::time_point watch_others(std::chrono::steady_clock::time_point now);
  // move: the polled fibers it gives up carry the hand-off mark.
  void request_handoff(Worker& rescuer, bool move) noexcept;
  void await_handoff() const noexcept;
  bool others_active() const noexcept;  // some other worker is not parked
  // A running worker's share of the watching, in each maintenance round:
  // fires other workers' timers once they are overdue (handoff.cpp).
  void fire_overdue_peers();
  void take_timers(Worker& v, std::chrono::steady_clock::time_point now);  // v's due ones, fired here
  // The LIFO slot, read and swapped by the owner (remote_.lifo: see there).
  Fiber* lifo() const noexcept { return remote_.lifo.load(std::memory_order_relaxed); }
  Fiber* swap_lifo(Fiber* f) noexcept {
    Fiber* old = remote_.lifo.load(std::memory_order_relaxed);
    remote_.lifo.store(f, std::memory_order_relaxed);
    return old;
  }
  void write_wake_fd() noexcept;
  void close_wake_fd() noexcept;
  void install_poller();
  // turn_loop: owner thread. One non-blocking turn of the loop that polls
  // it even when its only handle is the unref'd SIGQUIT one (park.cpp).
  void turn_loop() noexcept;
  static constexpr timespec kNoWait{};
  // poll_events: one wait on the poller's fd (timeout nullptr: until an
  // event), io events to the callback, the worker's own entries handled
  // here. `mode`: kOwnInstance (the calling thread is this worker's), or
  // kRescuing / kRescuingStay (another worker's rescue_poll).
  void poll_events(const timespec* timeout, std::uint8_t mode) noexcept;
  // Load and consolidation (load.cpp). sample_load: owner, at most once a
  // kLoadWindow (maintenance, after a park); publishes the window's shares
  // and decides consolidate_to (placement::consolidation_target).
  void sample_load(std::chrono::steady_clock::time_point coarse) noexcept;
  void decide_consolidation(std::chrono::steady_clock::time_point now) noexcept;
  // A watcher saw v unable to keep up (placement: spread): nobody
  // consolidates to v for kReconsolidateAfter, we stop at once if we did,
  // and a spread trial opens if due.
  void spread(Worker& v, std::chrono::steady_clock::time_point now) noexcept;

  // v's thread's CPU time so far, or -1 where its clock is not open
  // (load.cpp; KernelCpu and workers_cpu_ns). One clock_gettime.
  static std::int64_t thread_cpu_ns(const Worker& v) noexcept;
  // The CPU time of every worker's thread so far, summed (load.cpp; a
  // spread trial's verdict, placement::SpreadTrials). Workers whose clock is not
  // open count zero.
  std::int64_t workers_cpu_ns() const noexcept;

  // The fields fall into three groups by who may touch them (tokio's Core,
  // Remote and Synced), so a field's owner shows in the expression that
  // reaches it: core_.x, remote_.x, timers_.heap.x.

  // Core: this worker's thread only (its scheduler context, its fibers'
  // entries into the runtime, and the hand-off signal handler, which runs
  // on this thread). No other thread reads or writes any of it.
  struct Core {
    ExecContext sched_ctx;
    EhGlobals* eh = nullptr;  // this thread's exception globals (context.hpp)
    Pending pending;
    unsigned lifo_runs = 0;
    FiberList fifo;    // yielded, capped-LIFO and inbox fibers, oldest first
    FiberList pinned;  // the same, for fibers that must run on this worker
    // Fibers woken by this worker's own readiness dispatch (push_polled).
    // Not moved to the deque when a worker idles, as the FIFO is: their
    // sockets are in this worker's epoll, so a thief runs one on a cold
    // core, and it comes back here on its next wake; the idle worker,
    // woken for a few microseconds of work, parks again. Measured on
    // echo64 with 2 workers: docs/runtime.md "Readiness wakes stay home".
    // A stuck worker gives them up (hand-off) like the FIFO.
    FiberList polled;
    std::vector<Fiber*> scratch;
    std::uint64_t tick = 0;
    std::uint64_t last_maintenance = 0;
    // The next tick that looks (worker.cpp, look): the next maintenance
    // round, or sooner a timer look. Lowered by add_timer.
    std::uint64_t next_look = 0;
    std::chrono::steady_clock::time_point recent_time = coarse_now();
    std::uint64_t rng;
    std::vector<placement::PeerMemory> watch;  // what this worker saw of each other one (watch_others)
    std::vector<placement::LoadSnapshot> loads;  // decide_consolidation's copy, one per worker
    StackCache stacks;
    std::uint64_t id_next = 0, id_end = 0;
    bool unparked = false;  // parked since it last ran a fiber
    // next_direct's timer look saw our earliest timer due and went to the
    // scheduler context, whose loop fires it (a switch is no place to wake
    // fibers).
    bool timer_due = false;
    // A push onto the deque notifies once this many wait (push_local).
    std::size_t wake_depth = 1;
    // next_local found the deque empty since the last maintenance round:
    // the backlog maintenance sees is newer than one round, and this
    // worker keeps up with it (maintenance's backstop).
    bool deque_ran_dry = false;
    // Steal pacing (steal_pays; docs/runtime.md "Stealing what pays"): the
    // last successful steal (when, how many fibers), judged at the next
    // attempt; while now < quiet_until this worker steals nothing, and
    // quiet_len is the pause the next unpaid steal earns (doubling).
    std::chrono::steady_clock::time_point stolen_at{};
    std::size_t stolen_n = 0;
    std::chrono::steady_clock::time_point quiet_until{};
    std::chrono::steady_clock::duration quiet_len{};
    // What taking one fiber off a victim's deque costs this worker (the
    // steal loop's time over the fibers taken; a running average): this
    // machine's cache-line transfer as it is now (placement::steal_unpaid).
    std::chrono::steady_clock::duration steal_cost{};
    uv_loop_t loop;
    uv_poll_t wake_poll;  // the loop's watch on remote_.wake_fd
    // Park timeout: a timerfd (nanosecond deadlines) watched by the loop,
    // not a uv_timer_t (epoll_wait's millisecond timeout would make every
    // sleep up to 1 ms late). docs/runtime.md "Timers".
    int timer_fd = -1;
    bool timer_armed = false;
    uv_poll_t timer_poll;
    // Worker 0's fiber dump: sent by the SIGQUIT handler (sigquit_dump.hpp).
    uv_async_t sigquit;
    bool sigquit_on = false;
    // Once set (install_poller), the wake eventfd and the loop's backend fd
    // are entries of the io poller's fd and the worker parks there, not in
    // uv_run.
    bool io_poll_on = false;
    std::uint8_t dispatching_io = kNotDispatching;  // see dispatching_io() and DispatchingIo
    // Load sampling (load.cpp): when the next window is due (coarse
    // clock), the last sample and when it was taken (steady_clock ns).
    std::chrono::steady_clock::time_point next_sample{};
    SchedSample last_sample{};
    std::int64_t last_sample_at = 0;
    // rt_depth > 0 while this thread runs runtime code that may touch the
    // LIFO slot, the FIFOs or the owner's end of the deque; 0 exactly while
    // a fiber's user code runs, the only time the hand-off signal handler
    // may touch them (it runs on this thread, so signal fences order the
    // two). The scheduler context is at depth 1; every switch happens at
    // depth 1; a fiber entering the runtime from user code adds one, and
    // leaves through to_user(). Entry points reachable from user code that
    // touch those queues (push_local, push_lifo, has_local_work) hold one
    // (RuntimeSection). Atomic only for the signal handler.
    std::atomic<int> rt_depth{1};

    Core(std::uint64_t seed, StackPool& pool) : rng(seed), stacks(pool) {}
  };

  // Remote: what other threads touch, each field with its protocol. The
  // owner writes all of it too.
  struct Remote {
    // The steal end of the run queue (thieves: Worker::steal) and the inbox
    // (any thread: push_inbox).
    RunQueue<Fiber, 1024> deque;
    InjectQueue inbox;
    // The LIFO slot. The owner (and its hand-off handler) reads and swaps
    // it; idle workers read it as a hint (holds_fibers): relaxed loads and
    // stores, the same instructions as a plain pointer.
    std::atomic<Fiber*> lifo{nullptr};
    // Park state (park.cpp; docs/runtime.md "Park/unpark"). parked: the
    // owner's flag, read by wakers after their fence. Wake-ups from other
    // threads (unpark): an eventfd watched by the loop, and a flag so that
    // one write serves every waker until the loop runs. wake_writers and
    // wake_closed: writers of wake_fd in progress, and whether the owner
    // closed it (write_wake_fd / close_wake_fd: any thread / the owner at
    // its exit).
    std::atomic<bool> parked{false};
    int wake_fd = -1;
    std::atomic<bool> wake_pending{false};
    std::atomic<int> wake_writers{0};
    std::atomic<bool> wake_closed{false};
    // The io poller. poller_fd/fn/ctx are written once by set_poller (any
    // thread) before the release store of poller_set, and only read after
    // an acquire load of it (the owner, or a rescuer's rescue_poll).
    std::atomic<bool> poller_set{false};
    int poller_fd = -1;
    WorkerPollFn poller_fn = nullptr;
    void* poller_ctx = nullptr;
    // Hand-off state (docs/runtime.md "Hand-off").
    std::atomic<std::uint8_t> held{0};         // kHeldFifo | kHeldPolled; owner writes at to_user, watchers read; relaxed: a hint
    std::atomic<bool> handoff_asked{false};    // set by a rescuer before its signal
    std::atomic<Worker*> rescuer{nullptr};     // unparked by the handler
    std::atomic<pthread_t> tid{};              // set by the thread itself
    std::atomic<bool> tid_set{false};
    std::atomic<Fiber*> running{nullptr};      // a hint for watchers and the monitor
    std::atomic<bool> handoff_move{false};     // the request's move (request_handoff), read by the handler
    // Load (load.cpp). schedstat_fd: written by the thread before the
    // release store of tid_set, read by others after its acquire load;
    // closed after every worker left its loop. The rest are written by the
    // owner once a window, read by other workers as hints (relaxed: a
    // reader may see a share from one window and its time from the next,
    // off by a window at most): the shares of the last window (permille of
    // its wall time), when they were computed (steady_clock ns), and
    // consolidate_to (consolidation_target()).
    int schedstat_fd = -1;
    // Its thread's stat file and CPU clock, for KernelCpu (load.cpp);
    // same rules as schedstat_fd. cpu_clock is valid when stat_fd >= 0.
    int stat_fd = -1;
    clockid_t cpu_clock{};
    std::atomic<std::uint32_t> run_share{0}, wait_share{0};
    std::atomic<std::int64_t> shares_at{0};
    std::atomic<int> consolidate_to{-1};
    // No worker consolidates to this one before this time (steady_clock
    // ns): written by a watcher that saw it unable to keep up (spread).
    std::atomic<std::int64_t> refused_until{0};
    // The fibers this worker spawned; erased by whichever worker ends one.
    Registry registry;
    // Statistics: written by the owner (handed_off: by its signal handler,
    // on its thread), read by any thread.
    Counter switches, spawns, finished, steals, parks, polls, timers_fired;
    Counter external_work;  // ExternalWork guards (add_external_work)
    Counter handed_off;
    Counter timers_rescued;  // timers of other workers fired by this one
    Counter spreads;         // other workers' connections spread by this one (a watcher)
    Counter steal_pauses;    // pauses in stealing after a steal that did not pay (steal_pays)
    std::atomic<std::uint64_t> timers_taken{0};  // this worker's timers fired by others (RMW: many writers)
  };

  // Synced: the timer heap, under its lock. Its owner adds
  // (after_wait_publish); any worker may fire due timers or remove a timer
  // (the woken fiber, wherever it runs). next_deadline and count mirror the
  // heap for lock-free reads (relaxed; written under the lock).
  struct Timers {
    SpinLock lock;  // rank: leaf (nothing is locked or woken under it)
    TimerHeap heap;  // SPINDLE_GUARDED_BY(lock)
    std::atomic<std::chrono::steady_clock::rep> next_deadline{
        std::chrono::steady_clock::time_point::max().time_since_epoch().count()};
    std::atomic<std::size_t> count{0};
  };

  Scheduler& sched_;
  const unsigned index_;
  std::thread thread_;   // start / join: the scheduler's thread
  bool started_ = false;  // likewise
  Core core_;
  Timers timers_;
  Remote remote_;

};

// current_worker: the worker running on this thread, or nullptr. Never
// inlined: a fiber may resume on another thread, and the compiler must not
// reuse a thread_local address computed before a switch.
Worker* current_worker() noexcept;

}  // namespace spindle::detail
