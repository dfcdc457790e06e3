// scheduler.cpp: state shared by one runtime's workers. See scheduler.hpp
// and docs/runtime.md ("Shutdown", "Deadlock detection"); the idle set and
// the waker's side of "Park/unpark" are in idle.cpp.
#include "scheduler.hpp"

#include <fcntl.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <sstream>

#include <spindle/runtime/detail/deadline.hpp>
#include <spindle/runtime/errors.hpp>

#include "check.hpp"
#include "coarse_clock.hpp"
#include "handoff.hpp"
#include "overflow.hpp"

namespace spindle::detail {

namespace {
std::mutex g_schedulers_mu;
std::vector<Scheduler*> g_schedulers;  // guarded by g_schedulers_mu
std::atomic<long> g_external_work{0};

const RuntimeOptions& checked(const RuntimeOptions& o) {
  check_stack_size(o.stack_size, "spindle::Runtime: RuntimeOptions::stack_size");
  return o;
}

unsigned worker_count(const RuntimeOptions& o) {
  if (o.workers != 0) return o.workers;
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : n;
}
}  // namespace

// A guard taken on a worker thread (every socket wait takes one) counts on
// that worker: a single-writer counter, no locked instruction and no cache
// line that every worker's I/O wait would bounce. Its fiber may end the
// guard on another worker, so one worker's count may go "negative"
// (wrapping); only the sum over the runtime's workers means anything, and
// all_asleep reads it only while every worker is parked (see there). Plain
// threads have no worker: they count on the global counter, which every
// runtime's detector reads.
ExternalWork::ExternalWork() noexcept {
  if (Worker* w = current_worker()) {
    w->add_external_work(1);
  } else {
    g_external_work.fetch_add(1, std::memory_order_relaxed);
  }
}
ExternalWork::~ExternalWork() {
  if (Worker* w = current_worker()) {
    w->add_external_work(~std::uint64_t{0});  // -1, wrapping
  } else {
    g_external_work.fetch_sub(1, std::memory_order_relaxed);
  }
}
long external_work() noexcept { return g_external_work.load(std::memory_order_relaxed); }

Scheduler* default_scheduler() noexcept {
  std::lock_guard lk(g_schedulers_mu);
  return g_schedulers.empty() ? nullptr : g_schedulers.back();
}

void main_finished(Scheduler* s) noexcept { s->main_finished(); }

namespace {

// capped_options: o with each duration at most kLongestTimeout (deadline.hpp:
// milliseconds::max() wrapped to -1 ms once in nanoseconds, so a grace of
// "no limit" reported a deadlock at once and a slow-fiber threshold of it
// spun the monitor).
RuntimeOptions capped_options(RuntimeOptions o) noexcept {
  o.slow_fiber_threshold = capped(o.slow_fiber_threshold);
  o.handoff_after = capped(o.handoff_after);
  o.steal_worth = capped(o.steal_worth);
  o.shutdown_timeout = capped(o.shutdown_timeout);
  o.deadlock_grace = capped(o.deadlock_grace);
  return o;
}

// each_live: f(fiber) for every fiber listed in r that has not ended,
// under r's lock (a leaf: f takes no lock). An ended fiber stays listed
// until its worker unlinks it (registry.hpp).
template <class F>
void each_live(Registry& r, F&& f) {
  std::lock_guard lk(r.lock);
  for (Fiber* x = r.head; x != nullptr; x = x->reg_next_) {
    if (x->state_.load(std::memory_order_relaxed) != FiberState::done) f(x);
  }
}

}  // namespace

Scheduler::Scheduler(const RuntimeOptions& o)
    : opts_(capped_options(o)),
      cpus_(o.pin_workers),
      stacks_(checked(o).stack_size, o.guard_pages),
      offload_pools_(&opts_, "shutdown", &cpus_) {
  install_overflow_handler();
  proc_stat_.fd = ::open("/proc/stat", O_RDONLY | O_CLOEXEC);
  online_cpus_ = static_cast<unsigned>(std::max(1, get_nprocs()));
  const unsigned n = worker_count(o);
  placement_.period = opts_.handoff_after;
  placement_.consolidate = o.consolidate_io;
  placement_.workers = n;
  if (placement_.watching()) install_handoff_handler();
  workers_.reserve(n);
  for (unsigned i = 0; i < n; ++i) workers_.push_back(std::make_unique<Worker>(*this, i));
  idle_.reserve(n);
  try {
    for (auto& w : workers_) w->start();
    // The descriptors a worker's thread opens for itself (schedstat) exist
    // before user code runs, so a program that counts its descriptors sees
    // none come and go (tests/io compare /proc/self/fd around a scope).
    for (auto& w : workers_) w->wait_started();
    if (opts_.slow_fiber_threshold.count() > 0) monitor_ = std::thread([this] { monitor_main(); });
    // Listed last, once it can run fibers: a plain thread's spawn finds
    // it here (default_scheduler), and must not find one that may still
    // fail below and be freed.
    std::lock_guard lk(g_schedulers_mu);
    g_schedulers.push_back(this);
  } catch (...) {
    // A thread that could not be made (std::thread allocates its state:
    // bad_alloc; or system_error), or no room in the list: the workers
    // started are stopped and joined, so the maker gets the exception.
    // Before, the workers' joinable threads were destroyed with the
    // half-made scheduler (std::terminate). A worker whose thread never
    // started counts as having left its loop (wait_unparks_done waits for
    // every worker); its destructor closes its loop (~Worker).
    unsigned never = 0;
    for (auto& w : workers_) never += w->started() ? 0 : 1;
    // acq_rel, as in wait_unparks_done: before any started worker can
    // leave its loop (stopping_ is set by shutdown below).
    left_loop_.fetch_add(never, std::memory_order_acq_rel);
    shutdown();
    throw;
  }
}

Scheduler::~Scheduler() {
  shutdown();
  // acquire; pairs with the release decrement in ForeignWake: every
  // foreign waker is done with this object before it is freed.
  while (foreign_wakes_.load(std::memory_order_acquire) != 0) std::this_thread::yield();
  // After the workers joined: their loops no longer watch the io fds.
  if (void* e = ext_.load(std::memory_order_acquire)) ext_destroy_(e);
  std::lock_guard lk(g_schedulers_mu);
  g_schedulers.erase(std::find(g_schedulers.begin(), g_schedulers.end(), this));
}

void* Scheduler::extension(void* (*make)(unsigned), void (*destroy)(void*) noexcept) {
  if (void* e = ext_.load(std::memory_order_acquire)) return e;
  std::lock_guard lk(ext_mu_);
  if (void* e = ext_.load(std::memory_order_relaxed)) return e;
  void* e = make(size());
  ext_destroy_ = destroy;
  // release; pairs with the acquire loads above and in the destructor.
  ext_.store(e, std::memory_order_release);
  return e;
}

void* runtime_extension(void* (*make)(unsigned), void (*destroy)(void*) noexcept) {
  Worker* w = current_worker();
  // Reached by every io call that needs its runtime's reactor (sockets,
  // pipes, processes), so this is where io on a plain thread stops.
  SPINDLE_CHECK(w != nullptr,
                "spindle io used outside a fiber (on a plain thread, or in an offload/blocking "
                "job): call it inside spindle::run(...) or Runtime::block_on(...), or in a fiber "
                "they spawn; from a plain thread while a Runtime runs, spindle::spawn(f).join() "
                "runs f on a fiber and waits for it");
  return w->scheduler().extension(make, destroy);
}

const void* current_runtime() noexcept {
  Worker* w = current_worker();
  return w != nullptr ? &w->scheduler() : nullptr;
}

const void* runtime_of(const Fiber* f) noexcept { return f->sched_; }

void set_move_listener(MoveFn fn, void* ctx) noexcept {
  Worker* w = current_worker();
  SPINDLE_CHECK(w != nullptr, "set_move_listener outside a fiber");
  w->scheduler().set_move_listener(fn, ctx);
}

void set_worker_poller(unsigned worker, int fd, WorkerPollFn fn, void* ctx) noexcept {
  Worker* w = current_worker();
  SPINDLE_CHECK(w != nullptr, "set_worker_poller outside a fiber");
  w->scheduler().worker(worker).set_poller(fd, fn, ctx);
}

// ---- queues ---------------------------------------------------------------

void Scheduler::spawn(Fiber* f) {
  Worker* me = current_worker();
  if (me != nullptr && &me->scheduler() == this) {
    me->count_spawn();
    f->born_ = me->recent_time();
    f->id_ = me->next_fiber_id();
    me->registry().insert(f);
    me->push_local(f);
    return;
  }
  external_spawns_.fetch_add(1, std::memory_order_relaxed);
  f->born_ = coarse_now();
  f->id_ = take_id_block(1);
  external_registry_.insert(f);
  push_global(f);
  notify_work(true);
}

void Scheduler::wake_fiber(Fiber* f) {
  Worker* me = current_worker();
  wake_from(me != nullptr && &me->scheduler() == this ? me : nullptr, f);
}

void Scheduler::wake_from(Worker* me, Fiber* f) {
  // A waker outside this runtime (a plain thread, another runtime's worker)
  // still reads the scheduler and a worker after the push below, and by
  // then the fiber may have run, ended the runtime and had it destroyed:
  // count it in flight, and ~Scheduler waits for the count to drop.
  ForeignWake guard(me == nullptr ? this : nullptr);
  f->state_.store(FiberState::ready, std::memory_order_relaxed);
  // affinity_ was written by the fiber before it published its waiter; we
  // won the waiter's CAS after that publish, so the read is ordered.
  Worker* a = f->affinity_;
  if (a != nullptr && a != me) {
    a->push_inbox(f);
  } else if (me != nullptr) {
    // It runs on this core, maybe after others woken with it (a batch of
    // timers, a readiness dispatch): its saved frames are cold after its
    // wait. Ours to read: it is suspended, and its context was saved
    // before the publish whose waiter we won (Worker::land_slow).
    Worker::prefetch_frames(f);
    if (me->dispatching_io()) [[unlikely]] {
      // From a stuck worker's instance: its socket should follow it here
      // (fiber.hpp, handed_off_; ours to write, as above).
      if (me->rescuing_io()) f->handed_off_ = true;
      me->push_polled(f);
    } else {
      me->push_lifo(f);
    }
  } else {
    push_global(f);
    notify_work(true);
  }
}

void Scheduler::push_global(Fiber* f) { global_.push(f); }
void Scheduler::push_global(FiberList& l) { global_.push_all(l); }

// ---- fibers ---------------------------------------------------------------

std::uint64_t Scheduler::live_fibers() const noexcept {
  std::uint64_t spawned = external_spawns_.load(std::memory_order_relaxed);
  std::uint64_t finished = 0;
  for (auto& w : workers_) {
    const WorkerStats s = w->stats();
    spawned += s.spawns;
    finished += s.finished;
  }
  return spawned > finished ? spawned - finished : 0;
}

std::uint64_t Scheduler::activity() const noexcept {
  std::uint64_t a = external_spawns_.load(std::memory_order_relaxed);
  for (auto& w : workers_) a += w->switch_count() + w->stats().spawns;
  return a;
}

std::size_t Scheduler::workers_live() {
  std::size_t n = 0;
  for (auto& w : workers_) each_live(w->registry(), [&](Fiber*) { ++n; });
  return n;
}

void Scheduler::cancel_all(bool workers_only) {
  std::vector<Fiber*> all;
  auto collect = [&](Registry& r) {
    each_live(r, [&](Fiber* f) {
      f->add_ref();
      all.push_back(f);
    });
  };
  if (!workers_only) collect(external_registry_);
  for (auto& w : workers_) collect(w->registry());
  for (Fiber* f : all) {
    cancel_fiber(f);
    f->release();
  }
}

// wake_foreign: wake_fiber_checked from outside f's runtime (a plain
// thread, another runtime's worker).
void Scheduler::wake_foreign(Fiber* f) noexcept {
  // A reference for the count's sake: once woken, f may run, end and be
  // freed before the fetch_sub below (a fiber of a running runtime).
  // Taken before the wake, while f cannot end (its wait was won).
  f->add_ref();
  f->wakers_.fetch_add(1, std::memory_order_seq_cst);
  if (!f->abandoned_.load(std::memory_order_seq_cst)) f->sched_->wake_fiber(f);
  // release: this waker's use of the scheduler happens before abandon_all
  // sees the count at 0.
  f->wakers_.fetch_sub(1, std::memory_order_release);
  f->release();
}

// abandon_all: the fibers still live after shutdown_timeout are left for
// good. What user objects may still reach them must stay valid after this
// Scheduler is gone: their stacks (a wait node there may be linked into an
// Event, a Channel, a SignalSet that a plain thread sets later) and their
// control blocks (the scheduler's reference is never dropped). Marked
// abandoned_, each is never woken (wake, cancel_fiber: its scheduler is
// gone), and its joiners, now and later, raise Cancelled (wait_any): a
// Task::join on a plain thread waited for ever.
// After the workers stopped: all are marked before any joiner is woken, so
// a joiner that is itself one of them is not woken onto a stopped worker.
void Scheduler::abandon_all() {
  stacks_.leak();
  // Listed under each Registry::lock (a leaf), marked under join_lock_
  // after it (rank 1: never inside a leaf). Never freed: the scheduler's
  // reference to each stays.
  std::vector<Fiber*> left;
  auto collect = [&](Registry& r) { each_live(r, [&](Fiber* f) { left.push_back(f); }); };
  collect(external_registry_);
  for (auto& w : workers_) collect(w->registry());
  for (Fiber* f : left) {
    std::lock_guard jl(f->join_lock_);
    // seq_cst: with the wakers_ load below, pairs with wake_fiber_checked.
    if (!f->done_.load(std::memory_order_relaxed)) f->abandoned_.store(true, std::memory_order_seq_cst);
  }
  // A waker that read abandoned_ false before the store is done with this
  // scheduler before it may be freed (wake_fiber_checked).
  for (Fiber* f : left) {
    while (f->wakers_.load(std::memory_order_seq_cst) != 0) std::this_thread::yield();
  }
  std::vector<Waiter*> joiners;
  for (Fiber* f : left) {
    if (!f->abandoned_.load(std::memory_order_relaxed)) continue;
    joiners.clear();
    {
      // Completed here, woken after the lock: each wait_any unlinks its
      // node under join_lock_ once woken.
      std::lock_guard jl(f->join_lock_);
      for (JoinNode* j = f->joiners_; j != nullptr; j = j->next) {
        if (j->waiter->try_complete(Waiter::cancelled)) joiners.push_back(j->waiter);
      }
    }
    for (Waiter* w : joiners) wake(*w);
  }
}

Stats Scheduler::stats() const {
  Stats s;
  for (auto& w : workers_) s.workers.push_back(w->stats());
  s.live_fibers = live_fibers();
  s.stacks_released = stacks_.released_count();
  return s;
}

// ---- deadlock detection ---------------------------------------------------

bool Scheduler::all_asleep(std::uint64_t& activity_mark) const noexcept {
  if (opts_.deadlock_grace.count() <= 0) return false;
  if (idle_.parked_count() != static_cast<int>(size())) return false;
  // The count alone can be stale: a waker that cleared a worker's idle bit
  // and was preempted before it decremented the count leaves that worker
  // counted while it runs. Its own parked flag is cleared when it wakes.
  for (auto& w : workers_) {
    if (!w->parked_hint()) return false;
  }
  if (external_work() != 0 || !global_.empty()) return false;
  // Guards held by this runtime's fibers: the sum of the workers' counts.
  // Each worker wrote its count before it joined the idle set (a seq_cst
  // RMW on the count just loaded), so those writes are visible here. A
  // worker that leaves its park meanwhile and runs fibers while we add
  // (the sum may then be torn) changes activity(), and check_deadlock
  // reports only when activity() is the same a full grace period later.
  std::uint64_t guards = 0;
  for (auto& w : workers_) guards += w->external_work_count();
  if (guards != 0) return false;
  for (auto& w : workers_) {
    // A fiber in an inbox or a deque is runnable: its worker may simply not
    // have woken from the unpark yet.
    if (w->timer_count() != 0 || w->has_stealable() || !w->inbox_empty()) return false;
  }
  if (live_fibers() == 0) return false;
  activity_mark = activity();
  return true;
}

void Scheduler::check_deadlock(std::uint64_t mark,
                               std::chrono::steady_clock::time_point since) {
  // The park may have ended early (any async or stale eventfd wakes it):
  // only a full grace period of quiet counts; otherwise park() starts over.
  if (std::chrono::steady_clock::now() - since < opts_.deadlock_grace) return;
  std::uint64_t again = 0;
  if (!all_asleep(again) || again != mark) return;
  {
    std::lock_guard lk(main_mu_);
    if (deadlock_ || main_done_) return;
    deadlock_ = true;
  }
  std::ostringstream os;
  os << "spindle: deadlock: all fibers are asleep (" << live_fibers()
     << " alive; no timer, I/O or offload pending)\n";
  dump(os);
  std::cerr << os.str() << std::flush;
  main_cv_.notify_all();
}

// ---- main fiber and shutdown ----------------------------------------------

void Scheduler::wait_unparks_done() noexcept {
  // acq_rel/acquire; pair with each other and with the release in shutdown().
  if (left_loop_.fetch_add(1, std::memory_order_acq_rel) + 1 == size()) left_loop_.notify_all();
  for (unsigned n; (n = left_loop_.load(std::memory_order_acquire)) < size();) left_loop_.wait(n);
  while (!unparks_done_.load(std::memory_order_acquire)) unparks_done_.wait(false);
}

void Scheduler::begin_main() {
  std::lock_guard lk(main_mu_);
  main_done_ = false;
  deadlock_ = false;
}

void Scheduler::main_finished() noexcept {
  {
    std::lock_guard lk(main_mu_);
    main_done_ = true;
  }
  main_cv_.notify_all();
}

void Scheduler::wait_main() {
  std::unique_lock lk(main_mu_);
  main_cv_.wait(lk, [&] { return main_done_ || deadlock_; });
  if (main_done_) return;
  // Deadlock: unwind every fiber (main included) so their RAII runs, then
  // report. The workers' fibers first (every fiber main spawned is one),
  // until they ended or shutdown_timeout passed, and only then main and
  // the fibers of plain threads: a child that main joins often waits on
  // one of main's locals, and main unwinding at the same time destroyed
  // that primitive while the child had yet to unlink its wait (its unlink
  // then wrote into main's dead frame). The main fiber then gets
  // shutdown_timeout to finish.
  lk.unlock();
  const auto children_until = deadline_after(opts_.shutdown_timeout);
  do {
    cancel_all(/*workers_only=*/true);  // again: clean-up code may spawn
    if (workers_live() == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  } while (std::chrono::steady_clock::now() < children_until);
  cancel_all();
  lk.lock();
  main_cv_.wait_until(lk, deadline_after(opts_.shutdown_timeout), [&] { return main_done_; });
  throw Deadlock("spindle: deadlock: all fibers are asleep (see the fiber dump on stderr)");
}

void Scheduler::shutdown() {
  if (shut_) return;
  shut_ = true;
  using namespace std::chrono;
  const auto until = deadline_after(opts_.shutdown_timeout);
  // Cancel repeatedly: clean-up code may spawn fibers of its own.
  while (live_fibers() != 0 && steady_clock::now() < until) {
    cancel_all();
    std::this_thread::sleep_for(milliseconds(1));
  }
  if (const auto left = live_fibers(); left != 0) {
    std::ostringstream os;
    os << "spindle: shutdown: " << left << " fiber(s) did not finish within "
       << opts_.shutdown_timeout.count() << " ms of being cancelled; abandoning them\n";
    dump(os);
    std::cerr << os.str() << std::flush;
  }
  // The pools stop after the fibers had their chance to finish (clean-up
  // code may offload inside shield()) and before the workers do: a job
  // finishing while we join the pool threads, and stop failing a queued
  // job, each wake a fiber, and a wake needs running workers (after they
  // stop, nobody runs the fiber, and waking one pinned to a worker writes
  // to that worker's closed eventfd; Worker::push_inbox).
  offload_pools_.stop();
  stopping_.store(true, std::memory_order_relaxed);
  for (auto& w : workers_) w->unpark();
  // release; pairs with the acquire in wait_unparks_done().
  unparks_done_.store(true, std::memory_order_release);
  unparks_done_.notify_all();
  for (auto& w : workers_) w->join();
  // Only now: the pools' stop above still wakes fibers (a shielded caller
  // of a job that was queued), and the workers ran them to their end.
  if (live_fibers() != 0) abandon_all();
  if (monitor_.joinable()) {
    monitor_cv_.notify_all();
    monitor_.join();
  }
}

// ---- slow fiber monitor ---------------------------------------------------

// Samples each worker's (running fiber, switch count) every quarter
// threshold; the same pair for longer than the threshold means one fiber ran
// that long without suspending (asyncio's slow-callback warning). No cost on
// the switch path beyond the counters the stats keep anyway.
void Scheduler::monitor_main() {
  using namespace std::chrono;
  const auto threshold = opts_.slow_fiber_threshold;
  const auto period = std::max(milliseconds(1), threshold / 4);
  struct Seen {
    Fiber* f = nullptr;
    std::uint64_t switches = 0;
    steady_clock::time_point since{};
    bool warned = false;
    // The worker's hand-off counters at the last sample before this fiber
    // was seen (so what happened between that sample and this one counts).
    Worker::HeldBack at_start{};
    Worker::HeldBack last{};  // at the previous sample
  };
  std::vector<Seen> seen(size());
  std::unique_lock lk(monitor_mu_);
  while (!stopping()) {
    monitor_cv_.wait_for(lk, period);
    const auto now = steady_clock::now();
    for (unsigned i = 0; i < size(); ++i) {
      Worker& w = *workers_[i];
      Fiber* f = w.running_hint();
      const std::uint64_t sw = w.switch_count();
      Seen& s = seen[i];
      const Worker::HeldBack h = w.held_back();
      if (f != s.f || sw != s.switches || f == nullptr) {
        s = Seen{f, sw, now, false, s.last, h};
        continue;
      }
      s.last = h;
      if (!s.warned && now - s.since >= threshold) {
        s.warned = true;
        std::string who;
        if (find_and_describe(f, who)) {
          // What it held back: what idle workers took over meanwhile
          // (docs/runtime.md "Hand-off"), and what still waits there.
          std::fprintf(stderr,
                       "spindle: slow fiber: %s has run for over %lld ms on worker %u "
                       "without suspending; behind it, %llu fiber(s) were handed to idle "
                       "workers and %llu of its timer(s) fired by them; still there: %s, "
                       "%zu stealable fiber(s), %zu timer(s)\n",
                       who.c_str(), static_cast<long long>(threshold.count()), i,
                       static_cast<unsigned long long>(h.handed_off - s.at_start.handed_off),
                       static_cast<unsigned long long>(h.timers_taken - s.at_start.timers_taken),
                       h.holds ? "fibers only it can run" : "no fiber only it can run",
                       h.stealable, h.timers);
        }
      }
    }
  }
}

}  // namespace spindle::detail
