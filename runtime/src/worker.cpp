// worker.cpp: the worker loop. Summary (the full essay is docs/runtime.md):
//
// A worker is one OS thread running fibers. It looks for the next fiber in
// this order, one named step each:
//   next_local(): LIFO slot (capped at kLifoCap runs in a row) -> local deque
//                 (LIFO, stealable) -> local FIFO (yielded fibers, oldest
//                 first; the rest of it moves into the deque so thieves see it)
//   maintenance() every kMaintenanceInterval picks, and whenever the worker
//                 runs dry: inbox (fibers that must run here), one fiber of
//                 the global queue (a batch once it runs dry), due timers,
//                 a non-blocking poll of the loop and of the io instance.
//   steal():      half of a random victim's deque, if fewer than half of the
//                 workers are searching already.
//   park():       first look after workers stuck in one fiber (fire their
//                 due timers, ask them by signal to make their queued fibers
//                 stealable: handoff.cpp), then sleep in uv_run(UV_RUN_ONCE)
//                 (or, once io gave us its epoll instance, in that instance:
//                 install_poller) until I/O, the nearest timer, the next
//                 look, or a waker's write to our wake eventfd.
//
// Fibers switch directly to the next fiber when one is at hand (no trip
// through the scheduler context); the landing side finishes the switch for
// the fiber that left (Pending), e.g. runs its publish step. See land().
//
// park() and unpark(), with the wake eventfd, the park timer and the io
// poller the worker sleeps in, are in park.cpp; the idle set and the
// waker's side (notify_work) in idle.cpp.
#include "worker.hpp"

#include "sigquit_dump.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <pthread.h>
#include <unistd.h>
#include <iostream>

#include "check.hpp"
#include "context.hpp"
#include "overflow.hpp"
#include "run_fiber.hpp"
#include "scheduler.hpp"
#include "stack_canary.hpp"

namespace spindle::detail {

// The steps of a switch between fibers: each is small and called from one
// or two places, and the call frames they would otherwise add cost as much
// as their bodies on a yield (measured: docs/runtime.md "Switch and spawn cost").
#define SPINDLE_SWITCH_STEP [[gnu::always_inline]] inline

namespace {
// initial-exec: one %fs-relative load instead of a __tls_get_addr call (the
// objects are PIC, which defaults to the general-dynamic model). spindle is a
// static library linked into executables, where this model always works.
[[gnu::tls_model("initial-exec")]] thread_local Worker* tls_worker = nullptr;

// A fiber in the LIFO slot cannot be stolen; after this many LIFO runs in a
// row it goes to the back of the FIFO, so two chatting fibers cannot starve
// the rest (tokio uses 3 per tick; measured in docs/runtime.md).
constexpr unsigned kLifoCap = 8;
// Picks between looks at the inbox, global queue, timers and I/O (tokio and
// Go use 61, a prime, so it does not beat with user loops).
constexpr std::uint64_t kMaintenanceInterval = 61;
// Between maintenance rounds, every this many picks a worker that has a
// timer reads the clock and fires the timer once due (look). Picks count
// fibers, not time: with fibers that ran 20-100 us each, a 1 ms sleeper
// waited for the 61st and woke 1-13 ms late. 8 picks of 100 us fibers
// bound the wait at under a millisecond, for one clock read (~25 ns here)
// per 8 switches, and none while no timer is set.
constexpr std::uint64_t kTimerLookTicks = 8;
constexpr std::size_t kStealMax = 128;
// A push onto the own deque wakes an idle worker only once this many fibers
// wait there (docs/runtime.md "Waking for spawns"): a worker woken for a
// handful of short fibers steals them, runs dry and parks again, and the
// spawner pays an eventfd write for each such round (3 per batch of 1,000
// in spawn_join on 2 workers). Fewer are taken by the idle workers' looks
// at the busy ones (hand-off), so with hand-off off every push notifies.
constexpr std::size_t kWakeDepth = 64;
// Steal pacing (steal_pays; docs/runtime.md "Stealing what pays"): the
// pause after an unpaid steal (RuntimeOptions::steal_worth). kQuietMax is
// of the order of an idle worker's look at the busy ones (3 x
// handoff_after, 0.6 ms by default: docs/runtime.md "Hand-off").
constexpr std::chrono::microseconds kQuietMin{50};
constexpr std::chrono::microseconds kQuietMax{1000};
// force_steal_pauses (introspect.hpp): every judged steal counts as unpaid.
// Relaxed on both sides: a hint; a worker that reads it late judges one
// more steal by the other rule, and a pause is safe either way.
std::atomic<bool> g_force_steal_pauses{false};

void on_sigquit(uv_async_t* h) {
  static_cast<Scheduler*>(h->data)->dump(std::cerr);
}
}  // namespace

void force_steal_pauses(bool on) noexcept { g_force_steal_pauses.store(on, std::memory_order_relaxed); }

[[gnu::noinline]] Worker* current_worker() noexcept {
  Worker* w = tls_worker;
  asm volatile("" ::: "memory");
  return w;
}

Worker::Worker(Scheduler& s, unsigned index)
    : sched_(s), index_(index), core_(0x9E3779B97F4A7C15ull * (index + 1), s.stacks()) {
  // Allocations first, before the loop and its descriptors exist: a
  // bad_alloc here leaves no loop open (a half-made Worker gets no
  // destructor to close one). One entry per worker (placement().workers:
  // the count the scheduler is making), here rather than in thread_main,
  // the thread's entry, where an exception ended the process (CI:
  // http_client_alloc_fail, a late worker thread took the failure the
  // test injected while user code ran).
  core_.scratch.reserve(decltype(remote_.deque)::capacity());
  core_.watch.resize(s.placement().workers);
  core_.loads.resize(s.placement().workers);
  SPINDLE_CHECK(uv_loop_init(&core_.loop) == 0, "uv_loop_init failed");
  open_park_handles();
  // sigquit_on: whether the handle was made (close_loop closes it); an
  // eventfd libuv could not open (no descriptors left) leaves no dump. Not
  // a libuv signal handle: those take SIGQUIT from whoever handles it and
  // reset it to SIG_DFL when they stop (sigquit_dump.hpp).
  if (index == 0 && s.options().dump_on_sigquit && uv_async_init(&core_.loop, &core_.sigquit, &on_sigquit) == 0) {
    core_.sigquit.data = &s;
    uv_unref(reinterpret_cast<uv_handle_t*>(&core_.sigquit));
    core_.sigquit_on = true;
    (void)sigquit_dump_attach(&core_.sigquit);  // false: 64 runtimes dump already
  }
  core_.wake_depth = s.options().handoff_after.count() > 0 ? kWakeDepth : 1;
}

// A worker whose thread never started (the Scheduler's constructor threw:
// another worker's thread could not be made, or an allocation after this
// worker was made failed) closes its loop here, on the maker's thread: its
// handles were never run, and worker 0's SIGQUIT handle would otherwise
// stay in the dump handler's process-wide table (sigquit_dump.hpp),
// pointing into freed memory.
Worker::~Worker() {
  if (!started_) close_loop();
}

void Worker::start() {
  thread_ = std::thread([this] { thread_main(); });
  started_ = true;
}

void Worker::wait_started() const noexcept {
  // acquire; pairs with the release in thread_main.
  while (!remote_.tid_set.load(std::memory_order_acquire)) std::this_thread::yield();
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::thread_main() {
  tls_worker = this;
  // Named for top -H, perf and gdb ("spindle-w0", ...; 15 characters at most).
  char name[16];
  std::snprintf(name, sizeof name, "spindle-w%u", index_);
  pthread_setname_np(pthread_self(), name);
  sched_.cpus().pin_worker(index_);  // RuntimeOptions::pin_workers; else nothing
  remote_.tid.store(pthread_self(), std::memory_order_relaxed);
  // Only where something reads it (load.cpp: the policy's consolidation and
  // CPU source); without it sample_load and KernelCpu read nothing.
  const RuntimeOptions& o = sched_.options();
  if (sched_.size() > 1 && o.handoff_after.count() > 0 && o.consolidate_io) {
    remote_.schedstat_fd = open_schedstat();
    if (pthread_getcpuclockid(pthread_self(), &remote_.cpu_clock) == 0) remote_.stat_fd = open_thread_stat();
  }
  // release; pairs with the acquire in request_handoff, had_core and
  // wait_started.
  remote_.tid_set.store(true, std::memory_order_release);
  // Each other worker's slow window (placement.hpp, rule 2) starts now,
  // before any has run much: the first look judges a worker's whole life
  // if it never parked since (a park starts the window over), so a worker
  // that has run one long fiber since it started is slow then.
  // Sized in the constructor (nothing here may allocate: user code runs
  // once every worker has passed the store above).
  const auto started_at = std::chrono::steady_clock::now();
  for (placement::PeerMemory& m : core_.watch) m.window_at = started_at;
  context_init_thread(core_.sched_ctx);
  core_.eh = context_thread_eh();
  thread_altstack_init();
  loop();
  // Our fibers that ended elsewhere, released while the other workers may
  // still run what a result's destructor wakes; the drain below catches
  // the ones that end after this.
  remote_.registry.drain_remote();
  sched_.wait_unparks_done();
  // Every worker has left its loop: no fiber ends any more, so nobody
  // pushes onto our registry's remote stack after this.
  remote_.registry.drain_remote();
  close_loop();
  thread_altstack_free();
  tls_worker = nullptr;
}

void Worker::close_loop() noexcept {
  // Close our handles and let the loop run their close callbacks; a loop
  // that will not close means a handle leaked (a bug, so we say so).
  uv_close(reinterpret_cast<uv_handle_t*>(&core_.wake_poll), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&core_.timer_poll), nullptr);
  if (core_.sigquit_on) {
    sigquit_dump_detach(&core_.sigquit);  // no handler sends it once this returns
    uv_close(reinterpret_cast<uv_handle_t*>(&core_.sigquit), nullptr);
  }
  uv_run(&core_.loop, UV_RUN_DEFAULT);
  close(core_.timer_fd);
  if (remote_.schedstat_fd >= 0) close(remote_.schedstat_fd);
  if (remote_.stat_fd >= 0) close(remote_.stat_fd);
  close_wake_fd();
  const int rc = uv_loop_close(&core_.loop);
  if (rc != 0) std::fprintf(stderr, "spindle: worker %u: uv_loop_close: %s\n", index_, uv_strerror(rc));
}

// ---- the loop -------------------------------------------------------------

void Worker::loop() {
  while (!sched_.stopping()) {
    // tick + 1: the tick of the pick below (next_local counts it).
    const Look l = look(core_.tick + 1);
    if (l == Look::maintenance) {
      maintenance();
    } else if (l == Look::timers || core_.timer_due) [[unlikely]] {
      fire_own_timers();
    }
    core_.timer_due = false;
    Fiber* f = next_local();
    if (!f) f = find_work();
    if (f) {
      if (core_.unparked) [[unlikely]] {
        // Back to running fibers after a park: make sure an idle worker
        // watches us (docs/runtime.md "Hand-off"). Not on every unpark:
        // a worker woken only to watch would wake the next, and so on.
        core_.unparked = false;
        sched_.ensure_watcher();
      }
      resume(f);
      continue;
    }
    park();
  }
}

// prepare: makes f ready to be switched to on this worker (ready), or says
// why not: f must run on another worker and was forwarded there
// (forwarded), or f could not get its stack yet and was requeued here
// (requeued).
SPINDLE_SWITCH_STEP Worker::Prepared Worker::prepare(Fiber* f) {
  Worker* a = f->affinity_;
  if (a != nullptr && a != this) [[unlikely]] {
    a->push_inbox(f);
    return Prepared::forwarded;
  }
  if (f->state_.load(std::memory_order_relaxed) == FiberState::created) {
    // A fiber gets its stack when it first runs, here, in no fiber's frame
    // (the scheduler, or a suspending fiber's switch), so a bad_alloc (the
    // stack lists' growth) has no caller to go to. f waits for memory
    // instead: still `created`, it goes to the back of our FIFO and a later
    // pick tries again, after the fibers ahead of it (whose ends may free
    // memory) and with the loop's maintenance (I/O, timers) in between, as
    // a fiber that yields in a loop. This was fatal until 2026-12-01: one
    // failed allocation at any fiber's first run ended the process (CI,
    // http_client_alloc_fail: a reaper's first run took the failure the
    // test injected). A failed mmap of a slab is still fatal (stack_pool.cpp).
    try {
      f->stack_ = core_.stacks.get(f->stack_size_);
    } catch (const std::bad_alloc&) {
      push_fifo(f);  // the pinned FIFO for a fiber bound here
      return Prepared::requeued;
    }
    f->unguarded_ = f->stack_.guard == 0;
    context_make(f->ctx_, f->stack_, &Worker::fiber_main);
  }
  if (f->handed_off_) [[unlikely]] {
    // Moved here for load: its socket follows (io_hook.hpp). Ours: the
    // queue that brought f published the mark.
    f->handed_off_ = false;
    sched_.tell_moved(f, index_);
  }
  f->state_.store(FiberState::running, std::memory_order_relaxed);
  remote_.running.store(f, std::memory_order_relaxed);
  remote_.switches.inc();
  return Prepared::ready;
}

void Worker::resume(Fiber* f) {
  if (prepare(f) != Prepared::ready) return;  // the loop picks again
  core_.pending = Pending{Pending::from_scheduler};
  void* from = context_switch(core_.sched_ctx, f->ctx_, core_.eh, false);
  land(from);
}

// pop_warm: the head of a non-empty FIFO, with the loads of the fiber
// after it started (prefetch_for_switch).
[[gnu::always_inline]] inline Fiber* Worker::pop_warm(FiberList& q) noexcept {
  Fiber* f = q.pop_front();
  if (Fiber* after = q.front()) prefetch_for_switch(after);
  return f;
}

// next_fifo: next_local's pick from the FIFO, exposing the rest to idle
// workers.
[[gnu::always_inline]] inline Fiber* Worker::next_fifo() {
  if (core_.fifo.empty()) return nullptr;
  Fiber* f = pop_warm(core_.fifo);
  // Only make the rest stealable when someone idles: otherwise the moves
  // are pure cost (yield n=1000 pays a deque push and pop per yield).
  if (!core_.fifo.empty() && sched_.anyone_parked_hint() && transfer_fifo() > 1) {
    sched_.notify_work(false);
  }
  return f;
}

SPINDLE_SWITCH_STEP Fiber* Worker::next_local() {
  ++core_.tick;
  if (lifo() != nullptr) {
    if (core_.lifo_runs < kLifoCap) {
      ++core_.lifo_runs;
      return swap_lifo(nullptr);
    }
    push_fifo(swap_lifo(nullptr));
  }
  core_.lifo_runs = 0;
  if (Fiber* f = remote_.deque.pop()) return f;
  core_.deque_ran_dry = true;
  if (core_.pinned.empty() && core_.polled.empty()) [[likely]] return next_fifo();
  // Take turns among the FIFOs that have fibers, so none starves the others.
  for (unsigned k = 0; k < 3; ++k) {
    switch ((core_.tick + k) % 3) {
      case 0:
        if (!core_.fifo.empty()) return next_fifo();
        break;
      case 1:
        if (!core_.pinned.empty()) return core_.pinned.pop_front();
        break;
      default:
        if (!core_.polled.empty()) return pop_warm(core_.polled);
    }
  }
  return nullptr;
}

// prefetch_for_switch: f runs after the fiber about to run. Among many
// yielding fibers each switch otherwise misses on the new fiber's stack
// frames and control block; this starts those loads one switch early: f's
// saved frames (its line was prefetched one switch ago, as the fiber after
// next), with a load that also brings in their page's TLB entry
// (load_frames), and the control block of the fiber after f.
void Worker::prefetch_for_switch(Fiber* f) noexcept {
  if (Fiber* later = f->next_) __builtin_prefetch(later);
  load_frames(f);
}

// push_fifo: to the back of q, or of the pinned FIFO for a fiber bound to
// this worker.
SPINDLE_SWITCH_STEP void Worker::push_fifo(Fiber* f, FiberList& q) {
  (f->affinity_ == this ? core_.pinned : q).push_back(f);
}
SPINDLE_SWITCH_STEP void Worker::push_fifo(Fiber* f) { push_fifo(f, core_.fifo); }

// next_direct: the next fiber a suspending fiber may switch to directly, or
// nullptr to go through the scheduler context (maintenance due, stopping, or
// nothing local).
SPINDLE_SWITCH_STEP Fiber* Worker::next_direct() {
  for (;;) {
    if (const Look l = look(core_.tick + 1); l != Look::none || sched_.stopping()) [[unlikely]] {
      core_.timer_due = l == Look::timers;
      return nullptr;
    }
    Fiber* f = next_local();
    if (f == nullptr) return nullptr;
    const Prepared r = prepare(f);
    if (r == Prepared::ready) return f;
    // A fiber that could not get its stack: through the scheduler, rather
    // than retry it here up to a maintenance round's worth of picks.
    if (r == Prepared::requeued) return nullptr;
  }
}

Fiber* Worker::find_work() {
  maintenance();
  if (Fiber* f = next_local()) return f;
  // Out of local work: now take a batch of the global queue.
  if (take_global_share()) {
    if (Fiber* f = next_local()) return f;
  }
  return steal();
}

void Worker::maintenance() {
  core_.last_maintenance = core_.tick;
  core_.next_look = core_.tick + kTimerLookTicks;
  core_.recent_time = coarse_now();
  // Our fibers that ended on other workers leave the registry here, in one
  // pass (registry.hpp).
  if (remote_.registry.remote_pending()) remote_.registry.drain_remote();
  drain_inbox();
  // Fairness only: one fiber from the global queue, to the back of the FIFO.
  // A batch on top of the LIFO deque here would run new fibers ahead of the
  // ones timers just woke, and with 100,000 sleepers every one of them would
  // start (and hold a stack) before the first could finish.
  take_global_one();
  fire_own_timers();
  fire_overdue_peers();
  if (!core_.io_poll_on && remote_.poller_set.load(std::memory_order_relaxed)) [[unlikely]] install_poller();
  // Busy workers see readiness here, without blocking (io_hook.hpp).
  if (core_.io_poll_on) {
    poll_events(&kNoWait, kOwnInstance);
    sample_load(core_.recent_time);
  }
  if (uv_loop_alive(&core_.loop)) {
    DispatchingIo dispatching(this);
    uv_run(&core_.loop, UV_RUN_NOWAIT);
    remote_.polls.inc();
  }
  // Backstop for a missed (non-strict) notify: more here than we can run.
  // With hand-off on (wake_depth > 1), only a backlog that outlived a
  // whole round: a deque this worker ran dry since the last round holds
  // fibers pushed since, which it mostly runs itself within the round, and a
  // parked worker woken for them steals one or two and parks again (an
  // HTTP/2 connection's stream fibers at 2 workers: 4,000-7,000 such
  // wakes a second; docs/runtime.md "The backstop waits for a round").
  // What takes a backlog that stays is an idle worker's look (watch_others
  // steals from a deque that holds fibers), so the backstop still fires
  // when nobody watches: a worker may have parked without a timer while
  // this one looked parked to it (its early return from park()), and a
  // fiber that runs long after this round would otherwise keep the
  // backlog until it yields.
  if (remote_.deque.size_hint() > 1 &&
      (core_.wake_depth == 1 || !core_.deque_ran_dry || !sched_.idle().anyone_watching_hint())) {
    sched_.notify_work(false);
  }
  core_.deque_ran_dry = false;
}

void Worker::drain_inbox() {
  if (remote_.inbox.empty()) return;
  FiberList l = remote_.inbox.take_all();
  while (Fiber* f = l.pop_front()) push_fifo(f);
}

// take_global_one: one fiber from the global queue, to the back of the FIFO.
bool Worker::take_global_one() {
  if (sched_.global_empty()) return false;
  FiberList l = sched_.take_global(1);
  if (l.empty()) return false;
  push_fifo(l.pop_front());
  return true;
}

// take_global_share: a fair share of the global queue (its length over the
// number of workers, plus one; at most 64 and half the deque's free room),
// onto the deque (the FIFO takes what does not fit).
bool Worker::take_global_share() {
  if (sched_.global_empty()) return false;
  const std::size_t free = remote_.deque.capacity() - remote_.deque.size_hint();
  std::size_t n = sched_.global_size_hint() / sched_.size() + 1;
  n = std::min({n, free / 2, std::size_t{64}});
  if (n == 0) return false;
  FiberList l = sched_.take_global(n);
  bool any = !l.empty();
  while (Fiber* f = l.pop_front()) {
    if (!remote_.deque.push(f)) push_fifo(f);
  }
  return any;
}

// transfer_fifo: moves the FIFO into the deque so idle workers can steal it,
// pushing the newest first so that the owner's LIFO pops still return the
// oldest first. Pinned fibers live in core_.pinned and never come here.
std::size_t Worker::transfer_fifo() {
  const std::size_t room = remote_.deque.capacity() - remote_.deque.size_hint();
  core_.scratch.clear();
  // The oldest move; what does not fit stays in core_.fifo and, since the deque
  // is popped first, still runs after them.
  while (!core_.fifo.empty() && core_.scratch.size() < room) core_.scratch.push_back(core_.fifo.pop_front());
  for (auto it = core_.scratch.rbegin(); it != core_.scratch.rend(); ++it) {
    // room is an underestimate (thieves only free slots), so this holds.
    SPINDLE_CHECK(remote_.deque.push(*it), "transfer_fifo: the run queue was fuller than its size said");
  }
  return core_.scratch.size();
}

// steal_pays: judges the last steal, if one is pending, and says whether
// this worker may steal now (docs/runtime.md "Stealing what pays"). A
// stolen fiber costs cache-line transfers whatever it does: its control
// block comes over, its end goes back to its joiner and its spawner's
// registry. A batch whose fibers ran here for less than a few transfers
// each (placement::steal_unpaid: kCostTransfers times what taking one off
// the victim's deque cost, at most RuntimeOptions::steal_worth; measured
// from the steal to the next time this worker ran dry: the fibers, whatever
// they spawned, and the transfers) cost its victim more than it took off
// it, so the thief leaves the others' fibers to their owners for a while:
// kQuietMin, doubling with each unpaid steal in a row up to kQuietMax, the
// most a queued fiber can wait for this worker because of a pause. A
// worker stuck in one fiber is handed off at once (watch_others ends the
// pause).
bool Worker::steal_pays(std::chrono::steady_clock::time_point now) noexcept {
  if (core_.stolen_n != 0) {
    const auto per = (now - core_.stolen_at) / core_.stolen_n;
    core_.stolen_n = 0;
    if (g_force_steal_pauses.load(std::memory_order_relaxed) ||
        placement::steal_unpaid(per, core_.steal_cost, sched_.options().steal_worth)) {
      core_.quiet_len = std::clamp(core_.quiet_len * 2, decltype(core_.quiet_len)(kQuietMin),
                                   decltype(core_.quiet_len)(kQuietMax));
      core_.quiet_until = now + core_.quiet_len;
      remote_.steal_pauses.inc();
    } else {
      core_.quiet_len = {};
      core_.quiet_until = {};
    }
  }
  if (now < core_.quiet_until) return false;
  core_.quiet_until = {};  // over: no clock reads until the next judgement
  return true;
}

Fiber* Worker::steal() {
  const unsigned n = sched_.size();
  if (n < 2) return nullptr;
  // The clock only while a steal is to be judged or a pause runs.
  if (core_.stolen_n != 0 || core_.quiet_until != std::chrono::steady_clock::time_point{}) {
    if (!steal_pays(std::chrono::steady_clock::now())) return nullptr;
  }
  if (!sched_.try_begin_search()) return nullptr;
  core_.rng ^= core_.rng << 13;
  core_.rng ^= core_.rng >> 7;
  core_.rng ^= core_.rng << 17;
  const unsigned start = static_cast<unsigned>(core_.rng % n);
  for (unsigned i = 0; i < n; ++i) {
    Worker& v = sched_.worker((start + i) % n);
    // size_hint is what has_work_for_park reads too: a push it misses is
    // seen at the next look.
    if (&v == this || v.remote_.deque.size_hint() == 0) continue;
    // Bounded by our own free room, so every push below succeeds: top_ only
    // grows, so the room size_hint shows can only be an underestimate.
    const std::size_t room = remote_.deque.capacity() - remote_.deque.size_hint();
    std::size_t want = std::min(kStealMax, std::max<std::size_t>(1, v.remote_.deque.size_hint() / 2));
    want = std::min(want, room + 1);  // the first one is returned, not pushed
    Fiber* first = nullptr;
    std::size_t got = 0;
    int races = 0;
    const auto loop_t0 = std::chrono::steady_clock::now();
    while (got < want) {
      Fiber* x = nullptr;
      auto r = v.remote_.deque.steal(x);
      if (r == decltype(v.remote_.deque)::StealResult::ok) {
        if (first == nullptr) {
          first = x;
        } else if (!remote_.deque.push(x)) {
          push_fifo(x);  // unreachable by the bound above; never lose a fiber
        }
        ++got;
      } else if (r == decltype(v.remote_.deque)::StealResult::empty || ++races > 8) {
        break;
      }
    }
    if (first != nullptr) {
      remote_.steals.add(got);
      core_.stolen_at = std::chrono::steady_clock::now();
      core_.stolen_n = got;
      // What taking one fiber cost (the victim's deque lines come over):
      // a running average, a quarter of each new steal.
      const auto took = (core_.stolen_at - loop_t0) / got;
      core_.steal_cost = core_.steal_cost == decltype(took){} ? took : (core_.steal_cost * 3 + took) / 4;
      sched_.end_search(true);
      return first;
    }
  }
  sched_.end_search(false);
  return nullptr;
}

// ---- local queues ---------------------------------------------------------

// Reached from user code (spawn, a wake-up): runtime sections.
void Worker::push_local(Fiber* f) {
  RuntimeSection rs(*this);
  // overflow_half frees at least one slot (a steal that loses its race
  // lost it to a thief, which freed one), so this loop runs at most twice.
  while (!remote_.deque.push(f)) overflow_half();
  // Fewer waiting: this worker runs them itself once its fiber suspends,
  // and an idle worker that watches us steals them at its next look; the
  // next maintenance() notifies as before.
  if (remote_.deque.size_hint() >= core_.wake_depth) sched_.notify_work(false);
}

void Worker::push_polled(Fiber* f) {
  RuntimeSection rs(*this);
  push_fifo(f, core_.polled);
}

void Worker::push_lifo(Fiber* f) {
  RuntimeSection rs(*this);
  if (Fiber* old = swap_lifo(f)) push_local(old);
}

bool Worker::has_local_work() noexcept {
  RuntimeSection rs(*this);
  return lifo() != nullptr || remote_.deque.size_hint() > 0 || !core_.fifo.empty() || !core_.pinned.empty() ||
         !core_.polled.empty();
}

// overflow_half: the deque is full; move its older half to the global queue
// (taking from our own top like a thief, so no protocol changes).
void Worker::overflow_half() {
  FiberList l;
  for (std::size_t i = 0; i < remote_.deque.capacity() / 2; ++i) {
    Fiber* x = nullptr;
    if (remote_.deque.steal(x) != decltype(remote_.deque)::StealResult::ok) break;
    l.push_back(x);
  }
  sched_.push_global(l);
}

// ---- timers ---------------------------------------------------------------

// The heap is shared (timers_.lock): the owner adds, any worker fires or
// removes. Who may touch a Waiter when (docs/runtime.md "Timers"):
//  - add: the owner, in after_wait_publish, before it clears publishing_;
//    the woken fiber waits for that clear before it reads timer_owner.
//  - fire: pop and try_complete under the lock. A winner's fiber cannot run
//    (so its Waiter cannot die) until we wake it, after the unlock. A loser
//    is never touched again after the unlock.
//  - remove: the fiber itself, after its wait ended, under the lock, so a
//    firer that popped it is done with it (it lost the CAS) or woke it.
void Worker::set_next_deadline_locked() noexcept {
  const auto t = timers_.heap.empty() ? std::chrono::steady_clock::time_point::max()
                                       : timers_.heap.top_deadline();
  timers_.next_deadline.store(t.time_since_epoch().count(), std::memory_order_relaxed);
  timers_.count.store(timers_.heap.size(), std::memory_order_relaxed);
}

void Worker::add_timer(Waiter* w) noexcept {
  // The owner adds (after_wait_publish): a worker that had no timer at its
  // last look looks again within kTimerLookTicks picks.
  core_.next_look = std::min(core_.next_look, core_.tick + kTimerLookTicks);
  std::lock_guard lk(timers_.lock);
  w->timer_owner = this;
  timers_.heap.push(w);  // noexcept: allocates if it can, never fails
  set_next_deadline_locked();
}

void Worker::remove_timer(Waiter* w) noexcept {
  std::lock_guard lk(timers_.lock);
  if (!TimerHeap::queued(w)) return;
  timers_.heap.remove(w);
  set_next_deadline_locked();
}

namespace {
// How many run entries ahead fire_due_timers prefetches a Waiter: far
// enough for the miss to resolve while the ones between complete.
constexpr std::size_t kFirePrefetch = 4;
}  // namespace

std::size_t Worker::fire_due_timers(std::chrono::steady_clock::time_point now) {
  // Latest deadline first: linked through next_ (a suspended fiber is in
  // no queue), each new winner in front of the earlier ones.
  Fiber* won = nullptr;
  std::size_t fired = 0;
  {
    std::lock_guard lk(timers_.lock);
    // The order reads only the timers' own arrays (timer_heap.hpp); what is
    // left cold is each due fiber's Waiter (on its stack) and wait cell,
    // which try_complete reads and CASes: fetch them ahead.
    while (!timers_.heap.empty() && timers_.heap.top_deadline() <= now) {
      Waiter* w = timers_.heap.pop();
      ++fired;
      // From the run, two stages ahead: the Waiter (a cold stack line) a
      // few entries on, then the next one's wait cell.
      if (Waiter* ahead = timers_.heap.run_peek(kFirePrefetch)) __builtin_prefetch(ahead);
      if (!timers_.heap.empty()) __builtin_prefetch(timers_.heap.top()->cell, 1);
      if (w->try_complete(Waiter::timed_out)) {
        w->fiber->next_ = won;
        won = w->fiber;
      }
    }
    set_next_deadline_locked();
  }
  // Outside the lock (lock ranks: nothing is woken under a runtime lock).
  // From this worker the fibers go to its LIFO slot and deque; from an idle
  // worker taking over, to that worker's: they run where a core is free.
  // Woken latest deadline first, because each wake puts its fiber in the
  // LIFO slot and bumps the previous one onto the deque, which its owner
  // pops newest first: the earliest deadline then runs first, and timers
  // that came due together run in deadline order.
  while (Fiber* f = won) {
    won = f->next_;
    f->next_ = nullptr;
    f->sched_->wake_fiber(f);
  }
  return fired;
}

// look: what must happen before the pick at tick `t`. A maintenance round
// every kMaintenanceInterval picks; between rounds, every kTimerLookTicks
// picks while this worker has a timer, a clock read that says whether it
// is due. The hot path is one compare (core_.next_look); a worker without
// timers looks once a round, finds none, and waits for the next round.
SPINDLE_SWITCH_STEP Worker::Look Worker::look(std::uint64_t t) noexcept {
  if (t < core_.next_look) [[likely]] return Look::none;
  if (t - core_.last_maintenance >= kMaintenanceInterval) return Look::maintenance;
  return timer_look(t);
}

Worker::Look Worker::timer_look(std::uint64_t t) noexcept {
  const std::uint64_t round = core_.last_maintenance + kMaintenanceInterval;
  const auto due = timers_.next_deadline.load(std::memory_order_relaxed);
  if (due == std::chrono::steady_clock::time_point::max().time_since_epoch().count()) {
    core_.next_look = round;
    return Look::none;
  }
  core_.next_look = std::min(t + kTimerLookTicks, round);
  return std::chrono::steady_clock::now().time_since_epoch().count() >= due ? Look::timers : Look::none;
}

void Worker::fire_own_timers() {
  if (next_deadline() == std::chrono::steady_clock::time_point::max()) return;
  remote_.timers_fired.add(fire_due_timers(std::chrono::steady_clock::now()));
}

// ---- switching ------------------------------------------------------------

// to_user: the runtime returns to a fiber's user code (depth 1 -> 0).
// Publishes remote_.held for idle workers (watch_others) and, when someone idles
// while fibers wait in our FIFO, makes them stealable now rather than after
// a hand-off: the code we return to may run for long.
// The LIFO slot is not exposed: it runs next, and a woken fiber moving to
// another core at once would turn every ping-pong into a cross-core one.
// Only a hand-off (after handoff_after) takes it. Costs a yield a load of
// the FIFO's size and head, one of the parked-count hint and one of remote_.held.
SPINDLE_SWITCH_STEP void Worker::to_user() noexcept {
  // Two or more, as next_local's transfer: a single yielder behind the
  // fiber we return to is most often its partner in a yield or ping-pong
  // pair, which is faster kept on one core; if the fiber runs long, the
  // hand-off takes it.
  if (core_.fifo.size() > 1 && sched_.anyone_parked_hint()) [[unlikely]] expose_fifo();
  const std::uint8_t held = held_bits();
  if (remote_.held.load(std::memory_order_relaxed) != held) {
    remote_.held.store(held, std::memory_order_relaxed);
  }
  std::atomic_signal_fence(std::memory_order_seq_cst);
  core_.rt_depth.store(0, std::memory_order_relaxed);
}

// A section nests (push_lifo calls push_local; land calls push_lifo); only
// the outermost one, entered from user code, goes back through to_user.
SPINDLE_SWITCH_STEP Worker::RuntimeSection::RuntimeSection(Worker& w) noexcept
    : w_(w), depth_(w.core_.rt_depth.load(std::memory_order_relaxed)) {
  w_.core_.rt_depth.store(depth_ + 1, std::memory_order_relaxed);
  std::atomic_signal_fence(std::memory_order_seq_cst);
}

SPINDLE_SWITCH_STEP Worker::RuntimeSection::~RuntimeSection() {
  if (depth_ == 0) {
    w_.to_user();
  } else {
    std::atomic_signal_fence(std::memory_order_seq_cst);
    w_.core_.rt_depth.store(depth_, std::memory_order_relaxed);
  }
}

[[gnu::noinline]] void Worker::expose_fifo() noexcept {
  if (transfer_fifo() > 0) sched_.notify_work(true);
}

// Inlined into both switch_out overloads: one frame less on every
// suspended fiber's stack (see context.hpp).
[[gnu::always_inline]] inline void Worker::switch_from(Fiber* self) {
  check_canary(*self);
  enter_rt_from_user();
  void* from;
  if (Fiber* next = next_direct()) {
    from = context_switch(self->ctx_, next->ctx_, core_.eh, false);
  } else {
    remote_.running.store(nullptr, std::memory_order_relaxed);
    from = context_switch(self->ctx_, core_.sched_ctx, core_.eh, false);
  }
  // Resumed, perhaps on another thread: `this` may be stale.
  Worker* me = current_worker();
  me->land(from);
  me->to_user();
}

void Worker::switch_out(const Pending& p) {
  core_.pending = p;
  switch_from(p.prev);
}

void Worker::switch_out_wait(Fiber* self, Waiter* w,
                             const std::chrono::steady_clock::time_point* deadline,
                             FunctionRef<bool()>* publish) {
  core_.pending.kind = Pending::wait;
  core_.pending.prev = self;
  core_.pending.waiter = w;
  core_.pending.deadline = deadline;
  core_.pending.publish = publish;
  switch_from(self);
}

void Worker::switch_out(Pending::Kind kind, Fiber* self) {
  core_.pending.kind = kind;
  core_.pending.prev = self;
  switch_from(self);
}

void Worker::exit_fiber(Fiber* f) {
  check_canary(*f);
  enter_rt_from_user();
  core_.pending = Pending{Pending::finish, f};
  if (Fiber* next = next_direct()) {
    context_switch(f->ctx_, next->ctx_, core_.eh, true);
  } else {
    remote_.running.store(nullptr, std::memory_order_relaxed);
    context_switch(f->ctx_, core_.sched_ctx, core_.eh, true);
  }
  SPINDLE_CHECK(false, "a finished fiber was resumed");
  __builtin_unreachable();
}

void Worker::land(void* from) noexcept {
  // A yield (the hot case) needs two words of core_.pending and no call.
  Fiber* const prev = core_.pending.prev;
  if (core_.pending.kind == Pending::yield) [[likely]] {
    core_.pending.kind = Pending::none;
    prev->ctx_.fctx = from;
    prev->state_.store(FiberState::ready, std::memory_order_relaxed);
    push_fifo(prev);
    return;
  }
  land_slow(from);
}

void Worker::land_slow(void* from) noexcept {
  const Pending::Kind kind = core_.pending.kind;
  Fiber* const prev = core_.pending.prev;
  core_.pending.kind = Pending::none;
  switch (kind) {
    case Pending::from_scheduler:
      core_.sched_ctx.fctx = from;
      break;
    case Pending::wait:
      prev->ctx_.fctx = from;
      // core_.pending stays intact until the next switch, which cannot happen
      // before this returns: no copy needed.
      after_wait_publish(core_.pending);
      break;
    case Pending::yield:
      prev->ctx_.fctx = from;
      prev->state_.store(FiberState::ready, std::memory_order_relaxed);
      push_fifo(prev);
      break;
    case Pending::finish:
      finish(prev);
      break;
    case Pending::hop:
      prev->ctx_.fctx = from;
      prev->state_.store(FiberState::ready, std::memory_order_relaxed);
      core_.pending.target->push_inbox(prev);
      break;
    case Pending::none:
      SPINDLE_CHECK(false, "landed with no pending action");
  }
}

// after_wait_publish: runs the waiting fiber's publish step now that it is
// off its stack, then makes the wait cancellable.
//  - Everything read from the fiber or its Waiter is read before publish:
//    once publish made the Waiter visible, a completer on another thread may
//    wake the fiber, and (with no deadline pinning it here) another worker
//    may run it. Only the fiber's own cell is touched after that, and
//    publishing_ keeps the fiber (and so the Fiber and its Waiter) from
//    returning out of suspend() until we clear it at the very end.
//  - Cancellation is never lost: we mark the cell cancellable with a
//    seq_cst CAS and then read cancel_requested_ (seq_cst); cancel_fiber
//    stores the flag (seq_cst) and then reads the cell. In the single order
//    of those four operations one side sees the other's write.
void Worker::after_wait_publish(const Pending& p) {
  Fiber* const f = p.prev;
  Waiter* const w = p.waiter;
  const std::uint64_t gen = w->gen;
  const bool shielded = f->shield_depth_ != 0;
  f->state_.store(FiberState::suspended, std::memory_order_relaxed);
  // wait_over: the wait is over and nobody else will wake the fiber (publish
  // declined, or we completed it as cancelled ourselves): it goes back on
  // the LIFO slot.
  bool wait_over = !(*p.publish)();
  if (!wait_over && !shielded) {
    std::uint64_t expected = gen;  // waiting, not yet cancellable
    wait_over = f->wait_cell_.compare_exchange_strong(expected, gen | Waiter::kCancellable,
                                                      std::memory_order_seq_cst,
                                                      std::memory_order_relaxed) &&
                f->cancel_requested_.load(std::memory_order_seq_cst) &&
                w->try_complete(Waiter::cancelled);
    // Otherwise the wait goes on, or (CAS failed) a completer already won
    // and its wake resumes the fiber.
  }
  if (wait_over) {
    f->state_.store(FiberState::ready, std::memory_order_relaxed);
    push_lifo(f);
  } else if (p.deadline != nullptr) {
    // The fiber may be woken (and run elsewhere) already; it then waits for
    // publishing_ to clear before it looks at w.timer_owner, so the timer we
    // add now is removed by it, or fired and found gone.
    // Clamped to the clock's epoch (long past): sleep_until(time_point::
    // min()) put min in the heap, and the placement policy's `now - due`
    // overflowed (undefined behaviour). Any deadline before now fires at
    // the same next look.
    w->deadline = std::max(*p.deadline, std::chrono::steady_clock::time_point{});
    add_timer(w);
  }
  // The last touch of the fiber for this wait; pairs with the acquire load
  // in suspend() (see Fiber::publishing_).
  f->publishing_.store(false, std::memory_order_release);
}

void Worker::finish(Fiber* f) {
  context_destroy(f->ctx_);
  core_.stacks.put(f->stack_);
  f->stack_ = StackSlot{};
  f->unguarded_ = false;
  remote_.finished.inc();
  // Off its registry, then the scheduler's reference goes (registry.hpp).
  // Ended away from the worker that spawned it: that worker unlinks it at
  // its next maintenance, and takes the reference with it.
  Registry* const reg = f->reg_list_;
  if (reg != nullptr && reg != &remote_.registry && reg != &sched_.external_registry()) {
    reg->defer_erase(f);
    return;
  }
  if (reg != nullptr) reg->erase(f);
  f->release();  // the scheduler's reference
}

void Worker::fiber_main(void* from) {
  context_first_entry();
  Worker* w = current_worker();
  w->land(from);
  w->to_user();
  Fiber* f = w->running();
  run_fiber(f);
  current_worker()->exit_fiber(f);
}

std::uint64_t Worker::next_fiber_id() noexcept {
  if (core_.id_next == core_.id_end) {
    constexpr std::uint64_t kBlock = 256;
    core_.id_next = sched_.take_id_block(kBlock);
    core_.id_end = core_.id_next + kBlock;
  }
  return core_.id_next++;
}

WorkerStats Worker::stats() const noexcept {
  WorkerStats s;
  s.switches = remote_.switches.get();
  s.spawns = remote_.spawns.get();
  s.finished = remote_.finished.get();
  s.steals = remote_.steals.get();
  s.parks = remote_.parks.get();
  s.polls = remote_.polls.get();
  s.timers_fired = remote_.timers_fired.get();
  s.handed_off = remote_.handed_off.get();
  s.timers_rescued = remote_.timers_rescued.get();
  s.spreads = remote_.spreads.get();
  s.steal_pauses = remote_.steal_pauses.get();
  return s;
}

}  // namespace spindle::detail
