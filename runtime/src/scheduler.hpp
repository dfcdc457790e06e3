// scheduler.hpp: what the workers of one Runtime share: the global queue,
// the idle set (idle.hpp), the stack pool, the external registry, shutdown
// and deadlock state.
#pragma once

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <spindle/runtime/options.hpp>
#include <spindle/runtime/stats.hpp>

#include "cpu_pin.hpp"
#include "fiber_list.hpp"
#include "idle.hpp"
#include "offload_pools.hpp"
#include "registry.hpp"
#include "placement.hpp"
#include "stack_pool.hpp"
#include "worker.hpp"

namespace spindle::detail {

class Scheduler;

// KernelCpu: the placement policy's CPU-time source (placement::CpuSource):
// the workers' threads' CPU clocks, stat files and published wait shares
// (load.cpp). Any worker thread.
class KernelCpu final : public placement::CpuSource {
 public:
  explicit KernelCpu(Scheduler& s) noexcept : sched_(s) {}
  std::int64_t thread_cpu_ns(unsigned worker) const noexcept override;
  char thread_state(unsigned worker) const noexcept override;
  std::uint32_t wait_share(unsigned worker) const noexcept override;

 private:
  Scheduler& sched_;
};

class Scheduler {
 public:
  explicit Scheduler(const RuntimeOptions& o);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  const RuntimeOptions& options() const noexcept { return opts_; }
  const CpuPlan& cpus() const noexcept { return cpus_; }
  unsigned size() const noexcept { return static_cast<unsigned>(workers_.size()); }
  Worker& worker(unsigned i) noexcept { return *workers_[i]; }
  StackPool& stacks() noexcept { return stacks_; }
  // The runtime's offload and blocking pools (offload.cpp). Any thread.
  OffloadPools& offload_pools() noexcept { return offload_pools_; }
  bool stopping() const noexcept { return stopping_.load(std::memory_order_relaxed); }

  // --- queues and wake-ups (any thread) ---
  void spawn(Fiber* f);       // a new fiber
  void wake_fiber(Fiber* f);  // a fiber whose waiter was won (see wake())
  // wake_from: wake_fiber from `me`, the calling thread's worker if it is
  // one of this runtime's, else nullptr.
  void wake_from(Worker* me, Fiber* f);
  // wake_fiber_checked: f->sched_->wake_fiber(f), unless f was abandoned
  // at its runtime's shutdown (then nothing: the scheduler may be gone).
  // From a worker of f's own runtime (alive, so f is not abandoned) it is
  // wake_fiber; from anywhere else it counts itself in f->wakers_.
  // Inline: the common case (a wake from f's own runtime, pingpong's every
  // send) costs what wake_fiber did; out of line it measured ~9% slower.
  static void wake_fiber_checked(Fiber* f) noexcept {
    Worker* w = current_worker();
    if (w != nullptr && &w->scheduler() == f->sched_) [[likely]] {
      f->sched_->wake_from(w, f);  // f's runtime runs: abandon_all comes after its workers
      return;
    }
    wake_foreign(f);
  }
  static void wake_foreign(Fiber* f) noexcept;  // the rest of wake_fiber_checked
  void push_global(Fiber* f);
  void push_global(FiberList& l);
  FiberList take_global(std::size_t max) { return global_.take_up_to(max); }
  bool global_empty() const noexcept { return global_.empty(); }
  std::size_t global_size_hint() const noexcept { return global_.size_hint(); }
  // notify_work: new stealable work exists; unpark one worker if nobody is
  // searching. strict: the work was pushed by another thread than the one
  // that will run it, so the full fence of the park protocol is needed.
  // idle.cpp, with the rest of the waker's side.
  void notify_work(bool strict);

  // --- idle set (workers; idle.hpp) ---
  IdleSet& idle() noexcept { return idle_; }
  // --- placement (placement.hpp) ---
  // The policy's configuration, from the options and the worker count.
  const placement::Config& placement() const noexcept { return placement_; }
  // Whether saturation spreads paid lately.
  placement::SpreadTrials& spread_trials() noexcept { return spread_trials_; }
  // Whether a spread may open now: the trials allow it and the machine had
  // a core to spare lately (reads the kernel once a SpareCpu::kWindow;
  // load.cpp). Any worker thread.
  bool spread_allowed(std::chrono::steady_clock::time_point now) noexcept;
  const placement::CpuSource& cpu() const noexcept { return cpu_; }
  const IdleSet& idle() const noexcept { return idle_; }
  bool try_begin_search() noexcept { return idle_.try_begin_search(size()); }
  void end_search(bool found) noexcept;
  // A hint for deciding whether sharing work is worth it (not for the park
  // protocol, which uses the fenced reads).
  bool anyone_parked_hint() const noexcept { return idle_.anyone_parked_hint(); }
  // Called by a worker that runs fibers again after a park: if no parked
  // worker watches, unpark one (it becomes the watcher when it parks again;
  // docs/runtime.md "Hand-off").
  void ensure_watcher();

  // --- fibers ---
  std::uint64_t take_id_block(std::uint64_t n) noexcept {
    return next_id_.fetch_add(n, std::memory_order_relaxed);
  }
  Registry& external_registry() noexcept { return external_registry_; }
  std::uint64_t live_fibers() const noexcept;
  // cancel_all: cancels every live fiber; with workers_only, only those on
  // the workers' registries (not main, nor fibers spawned from plain
  // threads). workers_live: how many of those are not done yet.
  void cancel_all(bool workers_only = false);
  std::size_t workers_live();
  void abandon_all();
  void dump(std::ostream& os);
  bool find_and_describe(const Fiber* f, std::string& out);
  Stats stats() const;

  // --- deadlock detection ---
  // all_asleep: true when this worker, about to park last, sees nothing
  // that could ever wake a fiber. `activity_mark` receives the activity
  // count that check_deadlock compares after the grace period.
  bool all_asleep(std::uint64_t& activity_mark) const noexcept;
  void check_deadlock(std::uint64_t mark, std::chrono::steady_clock::time_point since);

  // --- main fiber / shutdown (the thread in block_on) ---
  void begin_main();
  void main_finished() noexcept;
  void wait_main();  // throws Deadlock
  void shutdown();
  // A worker that left its loop waits here before closing its wake eventfd:
  // shutdown() or a worker still finishing its last fiber may be about to
  // write to it, and the number could be reused by then. So
  // every worker waits until all workers have left their loops and
  // shutdown() has sent its last unpark.
  void wait_unparks_done() noexcept;

  // --- io layer (detail/io_hook.hpp) ---
  void* extension(void* (*make)(unsigned), void (*destroy)(void*) noexcept);
  // acquire; pairs with extension()'s release store of ext_.
  void* extension_if_made() const noexcept { return ext_.load(std::memory_order_acquire); }
  void set_move_listener(MoveFn fn, void* ctx) noexcept {
    move_ctx_ = ctx;
    // release; pairs with the acquire in tell_moved: ctx is visible with fn.
    move_fn_.store(fn, std::memory_order_release);
  }
  // A worker about to resume f, which the runtime moved there for load
  // (Fiber::handed_off_): tells the io layer where f's socket should go.
  void tell_moved(const Fiber* f, unsigned worker) const noexcept {
    if (f->io_wait_tag_ == 0) return;
    if (MoveFn fn = move_fn_.load(std::memory_order_acquire)) fn(move_ctx_, f->io_wait_tag_, worker);
  }

 private:
  std::uint64_t activity() const noexcept;
  void unpark_one(bool for_deque = false);  // for_deque: IdleSet::take_one
  void monitor_main();

  const RuntimeOptions opts_;
  // Before offload_pools_, which keeps a pointer to it (cpu_pin.hpp).
  const CpuPlan cpus_;
  StackPool stacks_;
  // Stopped by shutdown() between the fibers and the workers (see there).
  OffloadPools offload_pools_;
  std::vector<std::unique_ptr<Worker>> workers_;
  InjectQueue global_;
  Registry external_registry_;
  std::atomic<std::uint64_t> external_spawns_{0};
  std::atomic<std::uint64_t> next_id_{1};

  IdleSet idle_;
  placement::Config placement_;  // set in the constructor, before any worker starts
  std::atomic<MoveFn> move_fn_{nullptr};  // set_move_listener
  void* move_ctx_ = nullptr;              // written before move_fn_'s release
  placement::SpreadTrials spread_trials_;
  placement::SpareCpu spare_cpu_;
  // /proc/stat, open for the runtime's life, and the CPUs online when it
  // started, for spread_allowed's samples (load.cpp). Opened per sample
  // (with get_nprocs() opening /sys/devices/system/cpu/online), these were
  // descriptors that came and went under a program's feet at any moment:
  // tests that compare /proc/self/fd around a scope failed 1 run in ~30
  // under load. Written before the workers start; -1: none.
  // Closed by its destructor: after ~Scheduler's body joined the workers,
  // and also when the constructor throws after opening it.
  struct OwnedFd {
    int fd = -1;
    OwnedFd() = default;
    OwnedFd(const OwnedFd&) = delete;
    OwnedFd& operator=(const OwnedFd&) = delete;
    ~OwnedFd() {
      if (fd >= 0) ::close(fd);
    }
  } proc_stat_;
  unsigned online_cpus_ = 1;
  KernelCpu cpu_{*this};

  std::atomic<bool> stopping_{false};
  std::atomic<bool> unparks_done_{false};  // shutdown() sent its last unpark
  // Wakes from outside this runtime still inside wake_fiber. Incremented
  // (relaxed) before the fiber is pushed: the push's release and the pop's
  // acquire order the increment before anything the woken fiber does, so
  // the runtime cannot reach ~Scheduler without seeing it. Decremented with
  // release when the waker is done; ~Scheduler waits for zero (acquire).
  std::atomic<unsigned> foreign_wakes_{0};
  struct ForeignWake {
    Scheduler* s;
    explicit ForeignWake(Scheduler* sc) noexcept : s(sc) {
      if (s != nullptr) s->foreign_wakes_.fetch_add(1, std::memory_order_relaxed);
    }
    ~ForeignWake() {
      if (s != nullptr) s->foreign_wakes_.fetch_sub(1, std::memory_order_release);
    }
  };
  std::atomic<unsigned> left_loop_{0};      // workers past their loop
  bool shut_ = false;  // shutdown() caller only

  std::mutex main_mu_;  // rank: leaf
  std::condition_variable main_cv_;
  bool main_done_ = false;   // guarded by main_mu_
  bool deadlock_ = false;    // guarded by main_mu_

  // The io layer's object: created under ext_mu_ (rank: leaf; make() takes
  // no runtime lock), read lock-free afterwards (acquire; pairs with the
  // release store after make), destroyed after the workers joined.
  std::mutex ext_mu_;
  std::atomic<void*> ext_{nullptr};
  void (*ext_destroy_)(void*) noexcept = nullptr;

  std::thread monitor_;
  std::mutex monitor_mu_;
  std::condition_variable monitor_cv_;
};

// The runtime spawns from plain threads go to when none is named.
Scheduler* default_scheduler() noexcept;

// Number of ExternalWork guards alive on plain threads (all runtimes);
// those of fibers count on their workers (Worker::external_work_count).
long external_work() noexcept;

}  // namespace spindle::detail
