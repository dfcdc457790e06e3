// offload.cpp: the offload and blocking pools behind spindle::offload and
// spindle::blocking (offload.hpp has the contract).
//
// One call, as a numbered protocol:
//  1. The caller allocates an OffloadJob (refcount 1: its own reference) and
//     calls run_offload. On a thread of the target pool itself it runs the
//     job inline and is done (waiting would block a pool thread on a queue
//     that only pool threads drain).
//  2. prepare() announces one more job (demand_) and, when every live thread
//     is already claimed, starts one more thread, up to the pool's bound.
//     Starting threads here, before the fiber suspends, keeps thread
//     creation (which can fail and takes tens of microseconds) out of
//     publish, which runs on the worker's side of the switch.
//  3. wait() switches the fiber off its stack and runs publish, which takes
//     the pool's reference (add_ref) and one on the waiting fiber, and
//     links the job into the queue: noexcept and allocation-free (intrusive
//     list), as publish must be.
//     Queueing in publish rather than before wait() is what makes an early
//     finish safe: the job can only complete a waiter whose fiber is
//     already off its stack (suspend.hpp, step 2).
//  4. A pool thread pops the job, runs execute() (the result or exception
//     lands in the job, on the heap), then try_complete(notified); only the
//     winner calls wake(). Then it drops the pool's reference, and the
//     reference to the waiting fiber taken in step 3 (the Waiter's state
//     lives in the fiber's wait cell; a cancelled caller may be gone).
//  5. The caller resumes. notified: it takes the result. cancelled: it
//     raises Cancelled; the pool thread's CAS fails later, it wakes nobody,
//     and whichever side releases last frees the job, result included.
//  An ExternalWork guard lives from before the wait until the caller runs
//  again, so the deadlock detector never sees a fiber waiting on a job
//  without outside work pending.
//
// The queue is a mutex, a condition variable and an intrusive FIFO. Jobs
// are meant to be CPU work of a millisecond or more (or blocking calls), so
// a hand-off costs a few microseconds against milliseconds of work, and the
// lock is taken twice per job; a lock-free queue would buy nothing
// measurable here and would need its own parking protocol.
//
// Lock ranks: Pool::mu_ is a leaf. It is taken inside publish and never
// held while calling into the runtime: wake() runs after it is released.
// A cancelled caller's job still completes its Waiter later: the CAS fails
// on the generation (the caller's fiber has moved on to other waits).
#include <spindle/runtime/errors.hpp>
#include <spindle/runtime/offload.hpp>

#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <list>
#include <mutex>
#include <thread>

#include "scheduler.hpp"

namespace spindle::detail {

namespace {

// A blocking-pool thread idle this long retires: long enough that a burst of
// blocking calls every second or two reuses warm threads, short enough that
// a process which had one burst goes back to few threads soon.
constexpr auto kIdleRetire = std::chrono::seconds(5);
// Default bound of the blocking pool. A blocked thread costs no CPU, only a
// stack (8 MiB reserved, little touched); 64 keeps a burst of blocking file
// or DNS calls concurrent without letting a runaway loop create thousands.
constexpr unsigned kDefaultBlockingThreads = 64;

class Pool;

// The pool the calling thread belongs to, or nullptr (workers, plain
// threads). Pool threads are plain threads, so this never migrates; it is
// read through a non-inlined accessor anyway, as every scheduler
// thread-local is (DESIGN.md "Thread-locals and migration").
thread_local const Pool* t_pool = nullptr;
[[gnu::noinline]] const Pool* current_pool() noexcept { return t_pool; }

class Pool {
 public:
  // name: thread name (15 characters at most). max_threads: bound on live
  // threads (>= 1). retire_idle: whether idle threads retire.
  // low_priority: threads run at nice 19 (RuntimeOptions::offload_low_priority).
  Pool(const char* name, unsigned max_threads, bool retire_idle, bool low_priority)
      : name_(name), max_(max_threads), retire_idle_(retire_idle), low_priority_(low_priority) {}
  ~Pool() { stop(); }
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  bool owns_current_thread() const noexcept { return current_pool() == this; }

  // prepare: announces one job that submit() or unprepare() will follow,
  // starting a thread if none is free for it. May throw std::system_error
  // (thread creation), then nothing was announced. Any thread.
  void prepare() {
    std::list<std::thread> finished;
    std::list<std::thread>::iterator slot;
    bool start = false;
    {
      std::lock_guard lk(mu_);
      ++demand_;
      if (demand_ > free_ && live_ < max_) {
        ++live_;
        ++free_;  // it will look for work as soon as it runs
        slot = threads_.emplace(threads_.end());
        start = true;
      }
      finished.swap(retired_);
    }
    for (auto& t : finished) t.join();  // they have left thread_main already
    if (start) start_thread(slot);
  }

  // unprepare: withdraws an announced job that was never submitted (the
  // caller was cancelled before it suspended).
  void unprepare() noexcept {
    std::lock_guard lk(mu_);
    --demand_;
  }

  // submit: queues an announced job (the pool's reference already taken).
  // noexcept and allocation-free: it runs inside publish. Any thread.
  void submit(OffloadJob* job) noexcept {
    {
      std::lock_guard lk(mu_);
      job->next_ = nullptr;
      if (tail_ != nullptr) {
        tail_->next_ = job;
      } else {
        head_ = job;
      }
      tail_ = job;
    }
    cv_.notify_one();
  }

 private:
  void start_thread(std::list<std::thread>::iterator slot) {
    try {
      std::thread t([this, slot] { thread_main(slot); });
      std::lock_guard lk(mu_);
      *slot = std::move(t);  // under mu_: a retiring thread splices its node
    } catch (...) {
      std::lock_guard lk(mu_);
      threads_.erase(slot);
      --live_;
      --free_;
      --demand_;
      throw;
    }
  }

  // thread_main: pop, run, repeat; park on the condition variable when the
  // queue is empty. Counters (all under mu_): a thread is `free_` except
  // while it runs a job; a job is `demand_` from prepare() until a thread
  // pops it.
  void thread_main(std::list<std::thread>::iterator self) {
    t_pool = this;
    pthread_setname_np(pthread_self(), name_);
    if (low_priority_) {
      // Lowering our own priority needs no privilege. If it fails (not
      // Linux, a seccomp filter) the pool just runs at normal priority.
      (void)setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 19);
    }
    std::unique_lock lk(mu_);
    for (;;) {
      if (OffloadJob* job = pop_locked()) {
        lk.unlock();
        run(job);
        lk.lock();
        ++free_;
        continue;
      }
      if (stop_) return;
      if (!retire_idle_) {
        cv_.wait(lk);
        continue;
      }
      // Retire only when the others still cover every announced job, so a
      // job prepared (but not yet queued) never finds the pool empty.
      if (cv_.wait_for(lk, kIdleRetire) == std::cv_status::timeout && head_ == nullptr &&
          !stop_ && demand_ < free_) {
        --live_;
        --free_;
        // Hand our own std::thread to the next prepare() or stop() to join
        // (a thread cannot join itself).
        retired_.splice(retired_.end(), threads_, self);
        return;
      }
    }
  }

  OffloadJob* pop_locked() noexcept {
    OffloadJob* job = head_;
    if (job == nullptr) return nullptr;
    head_ = job->next_;
    if (head_ == nullptr) tail_ = nullptr;
    job->next_ = nullptr;
    --demand_;
    --free_;
    return job;
  }

  // run: step 4 of the protocol. The result is written by execute() before
  // the acq_rel CAS in try_complete; the woken caller reads the state with
  // acquire, so it sees the result. If the caller was cancelled the CAS
  // fails and the result dies with the job.
  static void run(OffloadJob* job) noexcept {
    job->execute();
    if (job->waiter.try_complete(Waiter::notified)) wake(job->waiter);
    release_pool_ref(job);
  }

  // release_pool_ref: drops the pool's reference to the job and the
  // reference to the waiting fiber taken with it in publish. The fiber must
  // outlive our try_complete: a fiber waiter's state is in the fiber's wait
  // cell (suspend.hpp), and a caller cancelled meanwhile may have finished.
  static void release_pool_ref(OffloadJob* job) noexcept {
    Fiber* const f = job->waiter.fiber;  // read before the job may go
    job->release();
    if (f != nullptr) f->release();
  }

  // stop: process exit. Queued jobs are dropped (their waiters are never
  // woken); running ones finish; every thread is joined.
  void stop() noexcept {
    OffloadJob* dropped = nullptr;
    {
      std::lock_guard lk(mu_);
      stop_ = true;
      dropped = std::exchange(head_, nullptr);
      tail_ = nullptr;
    }
    cv_.notify_all();
    while (dropped != nullptr) {
      OffloadJob* next = dropped->next_;
      // Not release_pool_ref: this runs at process exit, after the exiting
      // thread's thread_locals (the Fiber block cache among them) are gone,
      // and the waiting fiber never resumes anyway; its reference is left.
      dropped->release();
      dropped = next;
    }
    // After stop_ is set no thread retires (it checks stop_ under mu_), so
    // both lists are stable now.
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
    for (auto& t : retired_) t.join();
  }

  const char* const name_;
  const unsigned max_;
  const bool retire_idle_;
  const bool low_priority_;

  std::mutex mu_;  // leaf rank; see the top of this file
  std::condition_variable cv_;
  OffloadJob* head_ = nullptr;  // SPINDLE_GUARDED_BY(mu_)
  OffloadJob* tail_ = nullptr;  // SPINDLE_GUARDED_BY(mu_)
  unsigned live_ = 0;           // SPINDLE_GUARDED_BY(mu_) threads started, not retired
  unsigned free_ = 0;           // SPINDLE_GUARDED_BY(mu_) live threads not running a job
  unsigned demand_ = 0;         // SPINDLE_GUARDED_BY(mu_) announced jobs not yet popped
  bool stop_ = false;           // SPINDLE_GUARDED_BY(mu_)
  std::list<std::thread> threads_;  // SPINDLE_GUARDED_BY(mu_) live threads
  std::list<std::thread> retired_;  // SPINDLE_GUARDED_BY(mu_) exited, not joined
};

// The options of the runtime whose fiber calls, or nullptr on a plain
// thread. This reads the Scheduler's options (the only use of runtime
// internals here); a public detail accessor would let this file include
// suspend.hpp alone.
const RuntimeOptions* caller_options() noexcept {
  Fiber* f = current_fiber();
  return f != nullptr && f->sched_ != nullptr ? &f->sched_->options() : nullptr;
}

unsigned hardware_threads() noexcept {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : n;
}

Pool& cpu_pool() {
  // Sized once, by the first caller (see offload.hpp). A function-local
  // static: thread-safe first use, and its destructor is the clean stop at
  // exit.
  static Pool pool = [] {
    const RuntimeOptions* o = caller_options();
    return Pool("spindle-offload",
                o != nullptr && o->offload_threads != 0 ? o->offload_threads : hardware_threads(),
                /*retire_idle=*/false, /*low_priority=*/o == nullptr || o->offload_low_priority);
  }();
  return pool;
}

Pool& blocking_pool() {
  static Pool pool("spindle-block", [] {
    const RuntimeOptions* o = caller_options();
    return o != nullptr && o->blocking_threads != 0 ? o->blocking_threads
                                                    : kDefaultBlockingThreads;
  }(), /*retire_idle=*/true, /*low_priority=*/false);
  return pool;
}

}  // namespace

void run_offload(PoolKind kind, OffloadJob& job) {
  Pool& pool = kind == PoolKind::cpu ? cpu_pool() : blocking_pool();
  if (pool.owns_current_thread()) {  // step 1: a job offloading to its own pool
    job.execute();
    return;
  }
  pool.prepare();  // step 2
  ExternalWork pending;
  bool queued = false;
  const Waiter::State s = wait(
      job.waiter, nullptr,
      [&] {
        // Step 3. `queued` is written before submit: once the job is queued
        // it may complete and resume the caller on another worker at once.
        queued = true;
        job.add_ref();
        // The pool's try_complete may come after we were cancelled and our
        // fiber finished: keep the fiber (its wait cell) alive until then.
        // Dropped in release_pool_ref. relaxed: a new reference from an owner.
        if (Fiber* f = job.waiter.fiber) f->add_ref();
        pool.submit(&job);
        return true;
      },
      kind == PoolKind::cpu ? "offload" : "blocking");
  if (!queued) pool.unprepare();  // cancelled before it suspended
  if (s == Waiter::notified) return;
  if (s == Waiter::timed_out) throw TimedOut{};  // no deadline today; future-proof
  throw Cancelled{};
}

}  // namespace spindle::detail
