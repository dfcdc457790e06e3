// offload.cpp: the offload and blocking pools behind spindle::offload and
// spindle::blocking (offload.hpp has the contract, offload_pools.hpp who
// owns which pools).
//
// One call, as a numbered protocol:
//  1. The caller allocates an OffloadJob (refcount 1: its own reference) and
//     calls run_offload, which picks the pools: the calling fiber's
//     runtime's; on a pool thread, the pools of the runtime that pool
//     belongs to; on any other plain thread, the process-wide ones. On a
//     thread of the target pool itself it runs the job inline and is done
//     (waiting would block a pool thread on a queue that only pool threads
//     drain).
//  2. prepare() announces one more job (demand_) and, when every live thread
//     is already claimed, starts one more thread, up to the pool's bound.
//     Starting threads here, before the fiber suspends, keeps thread
//     creation (which can fail and takes tens of microseconds) out of
//     publish, which runs on the worker's side of the switch.
//  3. suspend() switches the fiber off its stack and runs publish, which calls
//     submit(): under mu_ it takes the pool's reference (add_ref) and one on
//     the waiting fiber, links the job into the queue and sets queued_:
//     noexcept and allocation-free (intrusive list), as publish must be.
//     Queueing in publish rather than before suspend() is what makes an early
//     finish safe: the job can only complete a waiter whose fiber is
//     already off its stack (suspend.hpp, step 2). A stopped pool (step 6)
//     refuses the job; publish then completes the waiter as cancelled
//     itself and declines to wait.
//  4. A pool thread pops the job (under mu_, clearing queued_), runs
//     execute() (the result or exception lands in the job, on the heap,
//     and the callable is destroyed), then try_complete(notified); only the winner calls wake(). Then it
//     drops the pool's reference, and the reference to the waiting fiber
//     taken in step 3 (the Waiter's state lives in the fiber's wait cell; a
//     cancelled caller may be gone).
//  5. The caller resumes (suspend() returns only once publish has finished, so
//     submit is done). notified: it takes the result. Otherwise (a cancel,
//     or a deadline scope, won the waiter's CAS) it calls withdraw(): under
//     mu_, if queued_ is still set, it unlinks the job and clears queued_,
//     and then, after unlocking, drops the two references of step 3 itself;
//     its own reference goes as Cancelled leaves offload_on (OffloadRef), so
//     the closure and everything it captured is destroyed on the caller's
//     fiber before the caller's code sees Cancelled, and never runs. If
//     queued_ was already clear, a pool thread popped the job: it runs to
//     completion, its CAS fails on the generation (the caller's fiber has
//     moved on to other waits), it wakes nobody, and whichever side
//     releases last frees the job, result included.
//  6. stop() (the owner's shutdown, or exit for the process-wide pools):
//     under mu_ it sets stop_ and unlinks every queued job, clearing
//     queued_; after unlocking it destroys each one's callable (discard)
//     and completes its waiter as cancelled
//     (the caller raises Cancelled; a caller that was cancelled meanwhile
//     finds queued_ clear in step 5 and leaves the job to us) and drops the
//     references of step 3. Running jobs finish; every thread is joined.
//  queued_ changes only under mu_, and exactly one of pop (4), withdraw (5)
//  and stop (6) clears it for a job that step 3 linked; that one owns the
//  references of step 3 from then on. So a pool thread runs only jobs it
//  popped itself, never one a caller withdrew or stop failed; and the
//  pool's reference, which keeps the job alive while it is linked, is
//  dropped only after the job left the queue: nobody frees a linked job.
//  Withdrawing on the caller's side, rather than skipping cancelled jobs
//  when a thread pops them, frees a dropped job at once: callers cancelled
//  in a loop while every pool thread is busy do not pile up jobs.
//  An ExternalWork guard lives from before the wait until the caller runs
//  again, so the deadlock detector never sees a fiber waiting on a job
//  without outside work pending.
//
// The queue is a mutex, a condition variable and an intrusive FIFO (doubly
// linked, for withdraw). Jobs are meant to be CPU work of a millisecond or
// more (or blocking calls), so a hand-off costs a few microseconds against
// milliseconds of work, and the lock is taken twice per job; a lock-free
// queue would buy nothing measurable here and would need its own parking
// protocol.
//
// Lock ranks: Pool::mu_ is a leaf. It is taken inside publish and never
// held while calling into the runtime: wake() runs after it is released.
// OffloadPools::mu_ is a leaf too, never held with Pool::mu_ (a
// ThreadStarter is created under it: that takes no lock of ours).
// ThreadStarter::mu_ is a leaf, and no Pool::mu_ is held while a pool
// thread waits on the starter (prepare() starts threads after unlocking).
#include <spindle/runtime/detail/deadline.hpp>
#include <spindle/runtime/detail/pool_identity.hpp>
#include <spindle/runtime/errors.hpp>
#include <spindle/runtime/offload.hpp>

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <list>
#include <mutex>
#include <thread>
#include <vector>

#include "offload_pools.hpp"
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

unsigned hardware_threads() noexcept {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : n;
}

// The pool the calling thread belongs to, or nullptr (workers, plain
// threads). Pool threads are plain threads, so this never migrates; it is
// read through a non-inlined accessor anyway, as every scheduler
// thread-local is (docs/hacking.md "Thread-locals and migration").
thread_local const Pool* t_pool = nullptr;
[[gnu::noinline]] const Pool* current_pool() noexcept { return t_pool; }

}  // namespace

class Pool {
 public:
  // group: the OffloadPools that owns this pool. max_threads: bound on live
  // threads (>= 1). retire_idle: whether idle threads retire.
  // low_priority: threads run at SCHED_IDLE (RuntimeOptions::offload_low_priority;
  // thread_main).
  Pool(OffloadPools& group, PoolKind kind, unsigned max_threads, bool retire_idle,
       bool low_priority)
      : group_(group),
        kind_(kind),
        name_(kind == PoolKind::cpu ? "spindle-offload" : "spindle-block"),
        max_(max_threads),
        retire_idle_(retire_idle),
        low_priority_(low_priority) {
    running_.reserve(max_threads);  // one per live thread at most: pushed under mu_ with no allocation
  }
  ~Pool() {
    (void)close();
    report_running(deadline_after(group_.report_after()));
    join();
  }
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  OffloadPools& group() const noexcept { return group_; }
  PoolKind kind() const noexcept { return kind_; }
  // Whether its threads run at lowered priority (offload_low_priority).
  bool low_priority() const noexcept { return low_priority_; }

  // prepare: announces one job that submit() or unprepare() will follow,
  // starting a thread if none is free for it. Throws Cancelled once the pool
  // is stopped, std::system_error if thread creation fails; either way
  // nothing was announced. Any thread.
  void prepare() {
    std::list<std::thread> finished;
    std::list<std::thread>::iterator slot;
    bool start = false;
    {
      std::lock_guard lk(mu_);
      if (stop_) throw Cancelled{};
      ++demand_;
      if (demand_ > free_ && live_ < max_) {
        ++live_;
        ++free_;  // it will look for work as soon as it runs
        ++starting_;
        slot = threads_.emplace(threads_.end());
        start = true;
      }
      finished.swap(retired_);
    }
    for (auto& t : finished) t.join();  // they have left thread_main already
    if (!start) return;
    // A thread started here inherits our priority. On a thread of the
    // low-priority CPU pool (a blocking() from an offload job) that would
    // leave a blocking-pool thread at SCHED_IDLE for life: the group's
    // starter thread starts it instead.
    if (const Pool* caller = current_pool(); caller != nullptr && caller->low_priority_ && !low_priority_) {
      group_.start_unlowered([&] { start_thread(slot); });
    } else {
      start_thread(slot);
    }
  }

  // unprepare: withdraws an announced job that was never submitted (the
  // caller was cancelled before it suspended, or submit refused it).
  void unprepare() noexcept {
    std::lock_guard lk(mu_);
    --demand_;
  }

  // submit: step 3. Queues an announced job, taking the pool's references;
  // false (nothing taken, nothing linked) once the pool is stopped.
  // noexcept and allocation-free: it runs inside publish. Any thread.
  bool submit(OffloadJob* job) noexcept {
    {
      std::lock_guard lk(mu_);
      if (stop_) return false;
      job->add_ref();
      // The pool's try_complete may come after the caller was cancelled and
      // its fiber finished: keep the fiber (its wait cell) alive until then.
      // Dropped with the job reference. relaxed: a new reference from an
      // owner.
      if (Fiber* f = job->waiter.fiber) f->add_ref();
      job->next_ = nullptr;
      job->prev_ = tail_;
      if (tail_ != nullptr) {
        tail_->next_ = job;
      } else {
        head_ = job;
      }
      tail_ = job;
      job->queued_ = true;
      ++queued_count_;
    }
    cv_.notify_one();
    return true;
  }

  // withdraw: step 5. Takes a job whose caller gave up off the queue if no
  // thread has popped it yet; returns whether it did. The caller only, after
  // its wait ended other than `notified`.
  bool withdraw(OffloadJob* job) noexcept {
    {
      std::lock_guard lk(mu_);
      if (!job->queued_) return false;  // running or run (4), or failed (6)
      unlink_locked(job);
      --demand_;
      ++withdrawn_;
    }
    // Not the last references: the caller holds its own on the job, and its
    // fiber is running.
    release_pool_ref(job);
    return true;
  }

  OffloadPoolStats stats() const {
    std::lock_guard lk(mu_);
    return OffloadPoolStats{max_, live_, live_ - free_, queued_count_, withdrawn_};
  }

  // close: first half of step 6. Sets stop_ and fails every queued job (its
  // caller raises Cancelled). Returns how many it failed. Idempotent.
  std::size_t close() noexcept {
    OffloadJob* failed = nullptr;
    std::size_t n = 0;
    {
      std::lock_guard lk(mu_);
      stop_ = true;
      failed = head_;
      for (OffloadJob* j = head_; j != nullptr; j = j->next_) {
        j->queued_ = false;
        --demand_;
        ++n;
      }
      head_ = tail_ = nullptr;
      queued_count_ = 0;
    }
    cv_.notify_all();  // idle threads: stop_ is set, the queue is empty
    while (failed != nullptr) {
      OffloadJob* const next = failed->next_;  // read before the job may go
      failed->next_ = failed->prev_ = nullptr;
      // The callable goes before its caller hears Cancelled (offload.hpp,
      // "Lifetime of f"). Not under mu_: its destructor is user code, which
      // may offload again.
      failed->discard();
      // Loses only to a cancel (or a deadline scope) of the caller, who then
      // finds queued_ clear and leaves the references to us.
      if (failed->waiter.try_complete(Waiter::cancelled)) wake(failed->waiter);
      // The waiters of the process-wide pools are plain threads (fibers use
      // their runtime's pools), so at exit this drops no Fiber reference:
      // the exiting thread's Fiber block cache may be gone by then.
      release_pool_ref(failed);
      failed = next;
    }
    return n;
  }

  // report_running: jobs still running at `at` (the owner's
  // shutdown_timeout after its stop began) are named on stderr, each by
  // its call site (a job is never interrupted, so join waits for it;
  // without a word, a `blocking(getline(cin))` left the program hanging at
  // exit with no clue why). Waits until `at` or until none runs. After
  // close() (its stop_ makes a job's end notify running_cv_). OffloadPools
  // reports both pools before joining either: a CPU job waiting on a stuck
  // blocking job was named, and the blocking job, the cause, never was.
  void report_running(std::chrono::steady_clock::time_point at) noexcept {
    std::unique_lock lk(mu_);
    if (running_.empty()) return;
    if (running_cv_.wait_until(lk, at, [&] { return running_.empty(); })) return;
    const std::vector<Running> left = running_;  // copied: printed without the lock
    lk.unlock();
    for (const Running& r : left) {
      std::fprintf(stderr,
                   "spindle: %s: waiting for a running %s job called at %s:%u in %s (a running job is "
                   "not interrupted: the %s ends when it returns)\n",
                   group_.who(), kind_ == PoolKind::cpu ? "offload" : "blocking", r.where.file_name(),
                   static_cast<unsigned>(r.where.line()), r.where.function_name(), group_.who());
    }
  }

  // join: second half of step 6: waits for running jobs and joins every
  // thread. After close() (and report_running). Idempotent.
  void join() noexcept {
    std::list<std::thread> all;
    {
      std::unique_lock lk(mu_);
      // A prepare() that passed the stop_ check before close() may still be
      // creating its thread: wait until its std::thread sits in threads_.
      started_cv_.wait(lk, [&] { return starting_ == 0; });
      // After stop_ no thread retires and no prepare() starts one, so the
      // lists are final. Splicing keeps each thread's own iterator valid.
      all.splice(all.end(), threads_);
      all.splice(all.end(), retired_);
    }
    for (auto& t : all) {
      if (t.joinable()) t.join();
    }
  }

 private:
  void start_thread(std::list<std::thread>::iterator slot) {
    try {
      std::thread t([this, slot] { thread_main(slot); });
      std::lock_guard lk(mu_);
      *slot = std::move(t);  // under mu_: a retiring thread splices its node
      --starting_;
    } catch (...) {
      {
        std::lock_guard lk(mu_);
        threads_.erase(slot);
        --live_;
        --free_;
        --demand_;
        --starting_;
      }
      started_cv_.notify_all();
      throw;
    }
    started_cv_.notify_all();
  }

  // thread_main: pop, run, repeat; park on the condition variable when the
  // queue is empty. Counters (all under mu_): a thread is `free_` except
  // while it runs a job; a job is `demand_` from prepare() until a thread
  // pops it, its caller withdraws it or stop fails it.
  void thread_main(std::list<std::thread>::iterator self) {
    t_pool = this;
    pthread_setname_np(pthread_self(), name_);
    // Started from a pinned worker, we inherited its one CPU (cpu_pin.hpp).
    if (const CpuPlan* c = group_.cpus()) c->restore();
    if (low_priority_) {
      // Lowering our own priority needs no privilege (raising it again
      // would). SCHED_IDLE rather than only nice 19: the kernel preempts an
      // idle-policy thread at once for a normal one that wakes on its CPU,
      // while a nice-19 thread can keep a woken worker waiting for
      // milliseconds (EEVDF runs a woken task only once it is eligible:
      // docs/runtime.md "Offload"). Nice 19 first, so a refused
      // sched_setscheduler (a seccomp filter) still leaves the thread low;
      // if both fail the pool runs at normal priority.
      (void)setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 19);
      sched_param param{};
      if (sched_setscheduler(0, SCHED_IDLE, &param) == 0) {
        // A worker that woke on this CPU while we still ran at normal
        // priority waits for us until the next tick: the policy change
        // does not reschedule. Let it run now.
        sched_yield();
      }
    }
    const std::thread::id me = std::this_thread::get_id();
    std::unique_lock lk(mu_);
    for (;;) {
      if (OffloadJob* job = pop_locked()) {
        running_.push_back(Running{me, job->where});  // never reallocates (reserved)
        lk.unlock();
        run(job);
        lk.lock();
        ++free_;
        for (auto& r : running_) {
          if (r.thread != me) continue;
          r = running_.back();
          running_.pop_back();
          break;
        }
        if (stop_) running_cv_.notify_all();  // report_running waits on it
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
        // Hand our own std::thread to the next prepare() or join() to join
        // (a thread cannot join itself).
        retired_.splice(retired_.end(), threads_, self);
        return;
      }
    }
  }

  void unlink_locked(OffloadJob* job) noexcept {
    (job->prev_ != nullptr ? job->prev_->next_ : head_) = job->next_;
    (job->next_ != nullptr ? job->next_->prev_ : tail_) = job->prev_;
    job->next_ = job->prev_ = nullptr;
    job->queued_ = false;
    --queued_count_;
  }

  OffloadJob* pop_locked() noexcept {
    OffloadJob* job = head_;
    if (job == nullptr) return nullptr;
    unlink_locked(job);
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
  // reference to the waiting fiber taken with it in submit. The fiber must
  // outlive our try_complete: a fiber waiter's state is in the fiber's wait
  // cell (suspend.hpp), and a caller cancelled meanwhile may have finished.
  static void release_pool_ref(OffloadJob* job) noexcept {
    Fiber* const f = job->waiter.fiber;  // read before the job may go
    job->release();
    if (f != nullptr) f->release();
  }

  OffloadPools& group_;
  const PoolKind kind_;
  const char* const name_;  // thread name, 15 characters at most
  const unsigned max_;
  const bool retire_idle_;
  const bool low_priority_;

  mutable std::mutex mu_;  // leaf rank; see the top of this file
  std::condition_variable cv_;          // pool threads wait here for jobs
  std::condition_variable started_cv_;  // join() waits here for starting_ == 0
  std::condition_variable running_cv_;  // report_running waits here for running_ to empty
  // running_: the jobs pool threads run now, by thread, with their call
  // sites (report_running). Reserved for max_ at construction.
  struct Running {
    std::thread::id thread;
    spindle::source_location where;
  };
  std::vector<Running> running_;  // SPINDLE_GUARDED_BY(mu_)
  OffloadJob* head_ = nullptr;  // SPINDLE_GUARDED_BY(mu_)
  OffloadJob* tail_ = nullptr;  // SPINDLE_GUARDED_BY(mu_)
  std::size_t queued_count_ = 0;  // SPINDLE_GUARDED_BY(mu_) jobs linked head_..tail_
  std::uint64_t withdrawn_ = 0;   // SPINDLE_GUARDED_BY(mu_) jobs unlinked by withdraw()
  unsigned live_ = 0;           // SPINDLE_GUARDED_BY(mu_) threads started, not retired
  unsigned free_ = 0;           // SPINDLE_GUARDED_BY(mu_) live threads not running a job
  unsigned demand_ = 0;         // SPINDLE_GUARDED_BY(mu_) announced jobs not yet popped
  unsigned starting_ = 0;       // SPINDLE_GUARDED_BY(mu_) slots whose std::thread is not set yet
  bool stop_ = false;           // SPINDLE_GUARDED_BY(mu_)
  std::list<std::thread> threads_;  // SPINDLE_GUARDED_BY(mu_) live threads
  std::list<std::thread> retired_;  // SPINDLE_GUARDED_BY(mu_) exited, not joined
};

// ---- OffloadPools -----------------------------------------------------------

OffloadPools::OffloadPools(const RuntimeOptions* o, const char* who, const CpuPlan* cpus) noexcept
    : cpu_threads_(o != nullptr && o->offload_threads != 0 ? o->offload_threads
                                                           : hardware_threads()),
      blocking_threads_(o != nullptr && o->blocking_threads != 0 ? o->blocking_threads
                                                                 : kDefaultBlockingThreads),
      low_priority_(o == nullptr || o->offload_low_priority),
      who_(who),
      cpus_(cpus),
      report_after_(o != nullptr ? o->shutdown_timeout : std::chrono::milliseconds(2000)) {}

OffloadPools::~OffloadPools() { stop(); }

Pool& OffloadPools::get(PoolKind kind) {
  const auto i = static_cast<std::size_t>(kind);
  // acquire; pairs with the release store below: the Pool is constructed.
  if (Pool* p = pools_[i].load(std::memory_order_acquire)) return *p;
  std::lock_guard lk(mu_);
  if (stopped_) throw Cancelled{};
  if (!owned_[i]) {
    // The starter first, on this thread, so it has this thread's priority
    // (not the lowered one of the pool threads that will use it).
    if (kind == PoolKind::cpu && low_priority_ && !starter_) starter_ = std::make_unique<ThreadStarter>();
    owned_[i] = kind == PoolKind::cpu
                    ? std::make_unique<Pool>(*this, kind, cpu_threads_, /*retire_idle=*/false,
                                             low_priority_)
                    : std::make_unique<Pool>(*this, kind, blocking_threads_,
                                             /*retire_idle=*/true, /*low_priority=*/false);
    pools_[i].store(owned_[i].get(), std::memory_order_release);
  }
  return *owned_[i];
}

OffloadPoolStats OffloadPools::stats(PoolKind kind) const {
  const auto i = static_cast<std::size_t>(kind);
  // acquire; pairs with the release store in get().
  if (const Pool* p = pools_[i].load(std::memory_order_acquire)) return p->stats();
  OffloadPoolStats s;
  s.bound = kind == PoolKind::cpu ? cpu_threads_ : blocking_threads_;
  return s;
}

void OffloadPools::stop() noexcept {
  std::array<Pool*, 2> ps{};
  {
    std::lock_guard lk(mu_);
    if (stopped_) return;
    stopped_ = true;  // get() creates no pool from now on
    for (std::size_t i = 0; i < ps.size(); ++i) ps[i] = owned_[i].get();
  }
  // Close both before joining either: a running job of one pool may wait on
  // a queued job of the other, which must fail rather than wait for threads
  // that are being joined.
  std::size_t failed = 0;
  for (Pool* p : ps) {
    if (p != nullptr) failed += p->close();
  }
  if (failed != 0) {
    std::fprintf(stderr,
                 "spindle: %s: %zu offload/blocking job(s) still queued were not run; "
                 "their callers raise Cancelled\n",
                 who_, failed);
  }
  const auto report_at = deadline_after(report_after_);  // saturates: shutdown_timeout may be max()
  for (Pool* p : ps) {
    if (p != nullptr) p->report_running(report_at);
  }
  for (Pool* p : ps) {
    if (p != nullptr) p->join();
  }
  std::unique_ptr<ThreadStarter> starter;
  {
    std::lock_guard lk(mu_);
    starter = std::move(starter_);
  }
  // Its destructor joins it: every thread start it ran is over (the pools'
  // join waited for them).
}

void OffloadPools::start_unlowered(FunctionRef<void()> f) {
  // No lock: starter_ was set before the CPU pool, whose thread calls this,
  // was published, and stop() resets it only after joining that thread.
  if (ThreadStarter* s = starter_.get()) {
    s->run(f);
  } else {
    f();
  }
}

// ---- calls ------------------------------------------------------------------

namespace {

// The pools a plain thread outside any runtime uses. A function-local
// static: thread-safe first use, and its destructor stops them at exit.
OffloadPools& process_pools() {
  static OffloadPools pools(nullptr, "exit");
  return pools;
}

// Step 1: the pools of the calling code.
OffloadPools& caller_pools() {
  if (Fiber* f = current_fiber(); f != nullptr && f->sched_ != nullptr) {
    return f->sched_->offload_pools();
  }
  if (const Pool* p = current_pool()) return p->group();
  return process_pools();
}

}  // namespace

OffloadPoolStats offload_pool_stats(PoolKind kind) { return caller_pools().stats(kind); }

const void* offload_group_key() { return &caller_pools(); }

bool on_offload_thread(PoolKind kind) noexcept {
  const Pool* own = current_pool();
  return own != nullptr && own->kind() == kind;
}

void start_unlowered_thread(FunctionRef<void()> start) {
  if (const Pool* p = current_pool(); p != nullptr && p->low_priority()) {
    p->group().start_unlowered(start);
  } else {
    start();
  }
}

void run_offload(PoolKind kind, OffloadJob& job) {
  // Step 1: a job offloading to its own pool. Checked before looking the
  // pool up, so it works while the pool is stopping too.
  if (const Pool* own = current_pool(); own != nullptr && own->kind() == kind) {
    job.execute();
    return;
  }
  Pool& pool = caller_pools().get(kind);  // throws Cancelled once stopped
  pool.prepare();                         // step 2; likewise
  ExternalWork pending;
  bool queued = false;
  const Waiter::State s = suspend(
      job.waiter, nullptr,
      [&] {
        // Step 3. `queued` is written before submit: once the job is queued
        // it may complete and resume the caller on another worker at once.
        queued = true;
        if (pool.submit(&job)) return true;
        // Stopped: the job was never visible to a pool thread.
        queued = false;
        // We win unless someone else completed the waiter (nothing else can
        // before publish returns, but publish's contract says what to do):
        // then that completer's wake resumes us, and we must not decline.
        return !job.waiter.try_complete(Waiter::cancelled);
      },
      kind == PoolKind::cpu ? "offload" : "blocking");
  if (!queued) {
    pool.unprepare();  // cancelled before it suspended, or refused by stop
  } else if (s != Waiter::notified) {
    pool.withdraw(&job);  // step 5
  }
  if (s == Waiter::notified) return;
  if (s == Waiter::timed_out) throw TimedOut{};  // no deadline today; future-proof
  throw Cancelled{};
}

}  // namespace spindle::detail
