// handoff.cpp: idle workers taking over from a worker stuck in one fiber.
// The essay is docs/runtime.md "Hand-off"; in short:
//
// spindle is cooperative: a fiber that computes for seconds without
// suspending keeps its worker. What must not happen is that the work queued
// behind it waits too while another core idles. Two kinds of work can:
//  - fibers in the stuck worker's LIFO slot and FIFO, which are owner-only
//    (no atomics on the hot path: yield is ~15 ns);
//  - timers in its heap, which its owner fires in its own maintenance.
// The deque is stealable anyway, and fibers pinned with hop_to_worker stay
// where the user put them.
//
// The watchers are the idle workers themselves (no extra thread, no cost
// while every worker is busy): before parking, a worker looks at each other
// worker's (running fiber, switch count). The same pair for handoff_after
// means that worker is stuck. Then the idle worker
//  - fires the stuck worker's due timers itself (the heap has a lock; the
//    woken fibers run on the idle worker); also those of a worker not yet
//    stuck whose timer is a quarter period overdue; and
//  - if the stuck worker holds fibers (remote_.held), sends it SIGURG; also
//    a worker that holds fibers and switched fewer than kSlowSwitches times
//    in a period (handoff.hpp: it runs long fibers, each held one waits for
//    several). The handler
//    runs on the stuck worker's own thread. If it interrupted user code
//    (core_.rt_depth == 0), the owner-only queues are quiescent, so it moves
//    them onto the deque -- it *is* the owner -- and unparks the idle worker,
//    which steals them. If it interrupted runtime code it does nothing but
//    the unpark: the worker is switching and will run its queues itself.
// The idle worker parks with a timer for its next look (handoff_after while
// the other holds FIFO fibers, kIdleLookPeriods (3) times that while it
// merely runs or holds only its LIFO slot, up to 4x that again at an io
// worker that keeps switching: kMaxLookBackoff), so detection takes
// between one and two periods, or up to about six (about twenty-four at
// an io worker after a long healthy run).
#include <errno.h>
#include <signal.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "gather.hpp"
#include "handoff.hpp"
#include "scheduler.hpp"
#include "signal_chain.hpp"

namespace spindle::detail {

namespace {
struct sigaction g_previous;
std::once_flag g_once;

// Async-signal-safe: reads a thread_local pointer, atomics, one write().
void on_sigurg(int sig, siginfo_t* info, void* uctx) {
  const int saved_errno = errno;
  Worker* w = current_worker();
  const bool ours = w != nullptr && w->handoff_in_signal();
  // Not a hand-off request (a socket's out-of-band data, someone else's
  // kill): give it to whoever had SIGURG before us (its default is ignore).
  if (!ours) call_previous_handler(g_previous, sig, info, uctx);
  errno = saved_errno;
}
}  // namespace

void install_handoff_handler() {
  std::call_once(g_once, [] {
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = &on_sigurg;
    // SA_RESTART: a fiber blocked in a restartable system call (a blocking
    // read someone forgot to offload) does not see EINTR. SA_ONSTACK: the
    // busy fiber may be deep in its stack; the worker's alternate stack is
    // there for the overflow report anyway.
    sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGURG, &sa, &g_previous);
  });
}

bool Worker::handoff_in_signal() noexcept {
  // acquire; pairs with the release in request_handoff (remote_.rescuer is set).
  if (!remote_.handoff_asked.exchange(false, std::memory_order_acquire)) return false;
  // Written before the release store of handoff_asked: ordered by the
  // acquire exchange above.
  const bool move = remote_.handoff_move.load(std::memory_order_relaxed);
  if (core_.rt_depth.load(std::memory_order_relaxed) == 0) {
    // We interrupted user code: nothing else on this thread is using the
    // LIFO slot, the FIFO or our end of the deque, and the signal fences in
    // RuntimeSection/to_user keep the compiler from moving runtime accesses across
    // the depth changes. Oldest first, so that thieves (who take the oldest
    // entries) start with the fiber that has waited longest. Only as many as
    // the deque has room for (thieves only make more room); a later request
    // takes the rest.
    std::atomic_signal_fence(std::memory_order_seq_cst);
    const std::size_t room = remote_.deque.capacity() - remote_.deque.size_hint();
    std::size_t moved = 0;
    while (moved < room && !core_.fifo.empty()) {
      remote_.deque.push(core_.fifo.pop_front());
      ++moved;
    }
    // Fibers woken by our readiness dispatch too: eager transfers leave
    // them here (worker.hpp, core_.polled), a stuck worker gives them up.
    // Marked: the io layer moves the registration of a socket whose fiber
    // a hand-off took, so its next readiness wakes it where it now runs.
    while (moved < room && !core_.polled.empty()) {
      Fiber* f = core_.polled.pop_front();
      f->handed_off_ = move;
      remote_.deque.push(f);
      ++moved;
    }
    if (moved < room && lifo() != nullptr) {
      remote_.deque.push(swap_lifo(nullptr));
      ++moved;
    }
    remote_.handed_off.add(moved);
    remote_.held.store(held_bits(), std::memory_order_relaxed);
    std::atomic_signal_fence(std::memory_order_seq_cst);
  }
  // Wake the asker either way: it steals what we pushed, or looks again.
  if (Worker* r = remote_.rescuer.exchange(nullptr, std::memory_order_acq_rel)) r->unpark();
  return true;
}

void Worker::request_handoff(Worker& rescuer, bool move) noexcept {
  // acquire; pairs with the release in thread_main.
  if (!remote_.tid_set.load(std::memory_order_acquire)) return;
  remote_.rescuer.store(&rescuer, std::memory_order_relaxed);
  remote_.handoff_move.store(move, std::memory_order_relaxed);
  // release: the handler that sees the request sees remote_.rescuer and
  // remote_.handoff_move.
  remote_.handoff_asked.store(true, std::memory_order_release);
  // The worker's thread runs until every worker has left its loop
  // (Scheduler::wait_unparks_done), and we are in ours.
  pthread_kill(remote_.tid.load(std::memory_order_relaxed), SIGURG);
}

// await_handoff: the asker spins (it is idle anyway) until the handler ran,
// for at most ~50 us; then its park sees the handed-off fibers in the deque
// and it steals them at once, instead of sleeping until the handler's
// unpark arrives (a wake-up costs tens of microseconds here). Delivering
// the signal to a running thread takes a few microseconds.
void Worker::await_handoff() const noexcept {
  const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(50);
  while (remote_.rescuer.load(std::memory_order_acquire) != nullptr) {
    for (int i = 0; i < 64; ++i) spin_hint();
    if (std::chrono::steady_clock::now() >= until) return;
  }
}

std::chrono::steady_clock::time_point Worker::watch_others(std::chrono::steady_clock::time_point now) {
  using clock = std::chrono::steady_clock;
  const auto after = sched_.options().handoff_after;
  const unsigned n = sched_.size();
  if (after.count() <= 0 || n < 2 || sched_.stopping()) return clock::time_point::max();
  // While a worker merely runs (nothing held, no timer due), look again at
  // this slower pace: it bounds the time to notice a worker that got stuck
  // while we slept, at one wake-up per period (~0.1% of a core).
  const auto idle_look = after * kIdleLookPeriods;
  const bool gathering = sched_.options().gather_io;
  auto next = clock::time_point::max();
  for (unsigned i = 0; i < n; ++i) {
    if (i == index_) continue;
    Worker& v = sched_.worker(i);
    Watch& s = core_.watch[i];
    Fiber* const f = v.running_hint();
    const std::uint64_t sw = v.switch_count();
    // A worker with an io poller while gathering: its looks back off
    // (kMaxLookBackoff) and it may be without a core (had_core).
    const bool gathered_io = gathering && v.remote_.poller_set.load(std::memory_order_relaxed);
    const auto paced = [&] { return gathered_io ? idle_look * (1 << s.backoff) : idle_look; };
    if (f == nullptr) {
      // Parked or in its scheduler context: it looks after its own queues
      // and timers (a parked worker's timerfd fires for its heap). Keep
      // watching while it is awake or was busy since our last look, so a
      // worker that parks and wakes often keeps its watcher instead of
      // unparking one each time (Scheduler::ensure_watcher).
      if (!v.parked_hint() || sw != s.switches) next = std::min(next, now + paced());
      const std::uint8_t backoff = s.backoff;
      s = Watch{nullptr, sw, now, clock::time_point{}, sw, now, v.park_count(), now};
      s.backoff = backoff;
      continue;
    }
    const bool progressed = f != s.fiber || sw != s.switches;
    if (progressed) {
      s.fiber = f;
      s.switches = sw;
      s.since = now;
    }
    const bool stuck = now - s.since >= after;
    // A window of at least a period with fewer than kSlowSwitches switches
    // (handoff.hpp): it runs long fibers. A window restarts at each look
    // that ends one, and after the worker parked (above).
    bool slow = false;
    if (now - s.window_at >= after) {
      slow = sw - s.window_switches < kSlowSwitches;
      s.window_switches = sw;
      s.window_at = now;
    }
    // Saturated: it has not parked for kSaturatedPeriods while holding
    // fibers its readiness woke (handoff.hpp). A window restarts at each
    // park seen, and after a request.
    if (const std::uint64_t pk = v.park_count(); pk != s.parks || s.awake_since == clock::time_point{}) {
      s.parks = pk;
      s.awake_since = now;
    }
    const bool saturated = now - s.awake_since >= after * kSaturatedPeriods && v.holds_polled();
    if (saturated) s.awake_since = now;
    // Whether it had a core. A worker whose thread waits in the kernel's
    // run queue is not stuck, slow or saturated by its fibers: the machine
    // has no core for it, and we take none from anyone by taking its
    // fibers or their sockets (gather.cpp). So we leave them there: our
    // park leaves our core idle, and the kernel gives it to the waiting
    // thread (its idle balancing). Running them here once cost more than
    // it bought: each such hand-off took up to a hundred of a gathered
    // echo worker's fibers, and the two workers then took turns on one
    // core, each seeing the other stuck (docs/decisions/0015-gather.md
    // "The stuck looks were run-queue waits"). Unless it stays in one
    // fiber kNoCorePeriods: the kernel may never move it (handoff.hpp).
    //
    // One read of its thread's CPU clock a look (and a pread of its stat
    // when it ran under half the time), recorded at every look, and only
    // at a worker with an io poller, since only sockets move (a program
    // without io pays none). With gather_io off every worker counts as
    // having had a core (the policy before gathering: each trigger moves
    // sockets, each saturation spreads).
    const bool core = gathered_io ? had_core(v, s, now) : true;
    // Left alone without a core, for at most kNoCorePeriods in one fiber.
    const bool take = core || now - s.since >= after * kNoCorePeriods;
    // It has a core and cannot keep up (saturated, or stuck in one fiber
    // kSaturatedPeriods): its connections spread, unless recent spreads
    // bought no core (gather.hpp, SpreadTrials), and no worker gathers
    // there for a while (gather.cpp). A shorter stuck or slow spell, or
    // one while spreads are backed off, leaves any gathering to it, and
    // what it hands off runs here this once, its sockets staying there.
    // Without a core: none of it (above), but for kNoCorePeriods' bound.
    const bool long_stuck = now - s.since >= after * kSaturatedPeriods;
    const bool spread = (saturated || long_stuck) && core && (!gathering || sched_.spread_trials().allowed(now));
    if (spread && gathering) {
      SpreadTrials& trials = sched_.spread_trials();
      if (trials.opens_trial(now)) trials.spread(now, workers_cpu_ns());
      refuse_gathering(v, now);
    }
    const bool triggered = stuck || slow || spread;
    const bool move = triggered && core && gather_target() != static_cast<int>(i);
    // Only once it is stuck, slow or saturated: asking a worker that merely runs would
    // split every pair of yielding or ping-ponging fibers across cores
    // (measured: yield n=2 on 2 workers 18 -> 30 ns when the FIFO was asked
    // for at once; docs/runtime.md "Hand-off").
    if (triggered && take && v.holds_fibers() && now - s.asked >= after) {
      v.request_handoff(*this, move);
      s.asked = now;
      v.await_handoff();
    }
    // Its sockets' readiness waits in its io poller until its next
    // maintenance round: deliver it from here (io_hook.hpp).
    if (stuck && take) v.rescue_poll(move);
    // A due timer is taken from a stuck worker, and also from one that
    // merely let it go overdue by a quarter period: an owner that runs its
    // maintenance fires timers within microseconds of their deadline, so
    // one still due after 50 us has an owner in a long fiber, however
    // recently we first saw that fiber. Without this a look that came at
    // the deadline (our idle pace, 5 periods then, lined up with a 1 ms sleep)
    // saw a fresh pair and fired a period later: stranded_sleep 0.3 ms.
    const auto overdue_after = after / 4;
    if (const auto due = v.next_deadline(); due <= now && (stuck || now - due >= overdue_after)) {
      take_timers(v, now);
    }
    // Look again after one period while it holds FIFO fibers (or stealable
    // ones: a notify may have missed us); at the idle pace when it holds
    // only its LIFO slot, which flips on every message of a ping-pong
    // (measured: a 200 us pace cost 2-worker pingpong ~8%), or only
    // readiness-woken fibers, which an I/O worker holds nearly always
    // (measured: the one-period pace cost 2-worker echo64 ~5% of its CPU). And when its
    // next timer may be taken: once it is overdue as above, or at its
    // deadline if by then the worker has been in this fiber a period.
    // Both lie ahead of now (every timer due by now and taken is gone).
    const bool pending = v.holds_fifo() || v.has_stealable();
    // The backoff: back to the idle pace at anything a look acts on, one
    // doubling more at each look that found it past its last switch.
    if (triggered || pending) {
      s.backoff = 0;
    } else if (progressed && s.backoff < kMaxLookBackoff) {
      ++s.backoff;
    }
    const auto due = v.next_deadline();
    // (Saturating: a deadline near time_point::max() must not wrap.)
    const auto timer_at = due >= clock::time_point::max() - overdue_after
                              ? due
                              : std::min(due + overdue_after, std::max(due, s.since + after));
    const auto at = pending ? (stuck ? now + after : s.since + after) : std::max(s.since + after, now + paced());
    next = std::min({next, at, timer_at});
  }
  return next;
}

// fire_overdue_peers: the watchers above are idle workers, and an idle
// worker can be idle without a core. Seen on this 2-vCPU guest (perf sched,
// docs/runtime.md "Timers of a worker without a core"): both workers' threads
// share one vCPU while the other vCPU idles; the parked worker's timerfd
// fires, but its thread waits in the run queue behind the running worker,
// whose slice the kernel protects, for 1-3 ms. So a running worker, in each
// maintenance round, also fires another worker's timers once they are as
// overdue as the watcher's rule says (a quarter of handoff_after): an owner
// that runs fires its own within microseconds, so such a timer's owner has
// no core, or is in one long fiber. The woken fibers run here, where a core
// is. Costs a round one relaxed load per other worker (next_deadline: a
// hint, stored relaxed under the heap lock; fire_due_timers takes that lock
// and pops only what is due), and a clock read only while one of them has
// a timer.
void Worker::fire_overdue_peers() {
  using clock = std::chrono::steady_clock;
  const auto after = sched_.options().handoff_after;
  const unsigned n = sched_.size();
  if (after.count() <= 0 || n < 2) return;
  const auto overdue_after = std::chrono::duration_cast<clock::duration>(after / 4);
  clock::time_point now{};  // read once, at the first other worker with a timer
  for (unsigned i = 0; i < n; ++i) {
    if (i == index_) continue;
    Worker& v = sched_.worker(i);
    const auto due = v.next_deadline();
    if (due == clock::time_point::max()) continue;
    if (now == clock::time_point{}) now = clock::now();
    if (due <= now - overdue_after) take_timers(v, now);
  }
}

// take_timers: fires v's due timers from this worker (a watcher's or a
// running worker's rescue), counted on both sides.
void Worker::take_timers(Worker& v, std::chrono::steady_clock::time_point now) {
  const std::size_t fired = v.fire_due_timers(now);
  v.remote_.timers_taken.fetch_add(fired, std::memory_order_relaxed);  // read by the monitor only
  remote_.timers_fired.add(fired);
  remote_.timers_rescued.add(fired);
}

bool Worker::others_active() const noexcept {
  if (sched_.options().handoff_after.count() <= 0) return false;
  for (unsigned i = 0; i < sched_.size(); ++i) {
    if (i != index_ && !sched_.worker(i).parked_hint()) return true;
  }
  return false;
}

}  // namespace spindle::detail
