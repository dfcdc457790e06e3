// worker.hpp: one worker thread: its run queues, timers, stack cache and
// libuv loop. docs/runtime.md describes the loop phases and the protocols;
// worker.cpp opens with the summary.
#pragma once

#include <uv.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include <spindle/runtime/detail/fiber.hpp>
#include <spindle/runtime/stats.hpp>
#include <spindle/runtime/suspend.hpp>

#include "context.hpp"
#include "fiber_list.hpp"
#include "run_queue.hpp"
#include "stack_pool.hpp"
#include "timer_heap.hpp"

namespace spindle::detail {

class Scheduler;

// coarse_now: steady_clock's epoch at jiffy resolution.
// CLOCK_MONOTONIC_COARSE reads a kernel-updated value without the TSC.
std::chrono::steady_clock::time_point coarse_now() noexcept;

// Registry of live fibers for dumps: an intrusive list under a spin lock.
struct Registry {
  SpinLock lock;  // rank: leaf
  Fiber* head = nullptr;
  void insert(Fiber* f) noexcept;
  void erase(Fiber* f) noexcept;
};

// What the context that lands after a switch must do for the one that left
// (which can no longer act: it is off its stack). See Worker::land.
struct Pending {
  enum Kind : std::uint8_t { none, from_scheduler, wait, yield, finish, requeue };
  Kind kind = none;
  Fiber* prev = nullptr;
  // wait
  Waiter* waiter = nullptr;
  const std::chrono::steady_clock::time_point* deadline = nullptr;
  FunctionRef<bool()>* publish = nullptr;
  // requeue
  class Worker* target = nullptr;
};

// Relaxed counter written by one thread, read by any (no RMW needed).
struct Counter {
  std::atomic<std::uint64_t> v{0};
  void inc() noexcept { v.store(v.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed); }
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
  bool has_local_work() const noexcept {
    return lifo_ != nullptr || deque_.size_hint() > 0 || !fifo_.empty() || !pinned_.empty();
  }
  void push_local(Fiber* f);          // a new or woken fiber, stealable
  void push_lifo(Fiber* f);           // a woken fiber: runs next
  void add_timer(Waiter* w);
  void remove_timer(Waiter* w) noexcept;
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
  void land_other(void* from_fctx);  // every kind but yield

 private:
  friend class Scheduler;
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
  bool take_global(std::size_t max);
  Fiber* steal();
  void park();
  bool has_work_for_park() const;
  void fire_timers();
  void arm_park_timer(bool deadlock_watch);
  void disarm_park_timer();
  void transfer_fifo();
  void push_fifo(Fiber* f);
  static void prefetch_for_switch(Fiber* f) noexcept;
  void overflow_half();
  void finish(Fiber* f);
  void after_wait_publish(const Pending& p);
  void switch_from(Fiber* self);

  Scheduler& sched_;
  const unsigned index_;
  std::thread thread_;

  // Owner only.
  ExecContext sched_ctx_;
  EhGlobals* eh_ = nullptr;  // this thread's exception globals (context.hpp)
  Pending pending_;
  Fiber* lifo_ = nullptr;
  unsigned lifo_runs_ = 0;
  FiberList fifo_;    // yielded, capped-LIFO and inbox fibers, oldest first
  FiberList pinned_;  // the same, for fibers that must run on this worker
  std::vector<Fiber*> scratch_;
  std::uint64_t tick_ = 0;
  std::uint64_t last_maintenance_ = 0;
  std::chrono::steady_clock::time_point recent_time_ = coarse_now();
  std::uint64_t rng_;
  TimerHeap timers_;
  StackCache stacks_;
  std::uint64_t id_next_ = 0, id_end_ = 0;
  uv_loop_t loop_;
  // Wake-ups from other threads (unpark): an eventfd watched by the loop,
  // and a flag so that one write serves every waker until the loop runs.
  int wake_fd_ = -1;
  uv_poll_t wake_poll_;
  std::atomic<bool> wake_pending_{false};
  // Park timeout: a timerfd (nanosecond deadlines) watched by the loop, not
  // a uv_timer_t (epoll_wait's millisecond timeout would make every sleep up
  // to 1 ms late). docs/runtime.md "Timers".
  int timer_fd_ = -1;
  bool timer_armed_ = false;
  uv_poll_t timer_poll_;
  uv_signal_t sigquit_;
  bool sigquit_on_ = false;

  // Shared.
  RunQueue<Fiber, 1024> deque_;
  InjectQueue inbox_;
  std::atomic<bool> parked_{false};
  std::atomic<Fiber*> running_{nullptr};
  std::atomic<std::size_t> timer_count_{0};
  Registry registry_;
  Counter switches_, spawns_, finished_, steals_, parks_, polls_, timers_fired_;
};

// current_worker: the worker running on this thread, or nullptr. Never
// inlined: a fiber may resume on another thread, and the compiler must not
// reuse a thread_local address computed before a switch.
Worker* current_worker() noexcept;

}  // namespace spindle::detail
