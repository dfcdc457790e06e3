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
// one (watch_others). What a look concludes is the placement policy's
// (placement.hpp: stuck, slow, saturated, overdue timers, consolidation);
// this file applies it:
//  - due timers of another worker fire here (the heap has a lock; the woken
//    fibers run on this worker);
//  - a hand-off request is a SIGURG to the other worker's thread. The
//    handler runs there. If it interrupted user code (core_.rt_depth == 0),
//    the owner-only queues are quiescent, so it moves them onto the deque
//    -- it *is* the owner -- and unparks the asker, which steals them. If it
//    interrupted runtime code it does nothing but the unpark: the worker is
//    switching and will run its queues itself;
//  - a rescue poll delivers the other worker's sockets' readiness here.
// The idle worker parks with a timer for its next look (LookActions::next).
#include <errno.h>
#include <signal.h>

#include <algorithm>
#include <cstring>
#include <mutex>

#include "handoff.hpp"
#include "placement.hpp"
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

placement::PeerSnapshot Worker::peer_snapshot(bool my_target) const noexcept {
  placement::PeerSnapshot v;
  v.fiber = reinterpret_cast<std::uintptr_t>(running_hint());
  v.switches = switch_count();
  v.parks = park_count();
  v.parked = parked_hint();
  v.holds_fibers = holds_fibers();
  v.holds_polled = holds_polled();
  v.pending = holds_fifo() || has_stealable();
  v.io = remote_.poller_set.load(std::memory_order_relaxed);
  v.my_target = my_target;
  v.next_deadline = next_deadline();
  return v;
}

// watch_others: the policy decides (placement::look); this applies it.
std::chrono::steady_clock::time_point Worker::watch_others(std::chrono::steady_clock::time_point now) {
  const placement::Config& c = sched_.placement();
  if (!c.watching() || sched_.stopping()) return placement::TimePoint::max();
  const bool allowed = sched_.spread_allowed(now);
  auto next = placement::TimePoint::max();
  for (unsigned i = 0; i < c.workers; ++i) {
    if (i == index_) continue;
    Worker& v = sched_.worker(i);
    const auto snap = v.peer_snapshot(consolidation_target() == static_cast<int>(i));
    const placement::LookActions a = placement::look(c, i, snap, core_.watch[i], now, sched_.cpu(), allowed);
    if (a.spread) {
      remote_.spreads.inc();
      if (c.consolidate) spread(v, now);
    }
    if (a.handoff) {
      // v is stuck: what it hands off, and its deque, are ours to steal
      // now, whatever the last steal was worth (steal_pays).
      core_.quiet_until = {};
      v.request_handoff(*this, a.move);
      v.await_handoff();
    }
    if (a.rescue_poll) v.rescue_poll(a.move);
    if (a.take_timers) take_timers(v, now);
    next = std::min(next, a.next);
  }
  return next;
}

// fire_overdue_peers: a running worker's share of rule 4 (placement.hpp),
// in each maintenance round. The watchers are idle workers, and an idle
// worker can be idle without a core: on a 2-vCPU guest both workers'
// threads shared one vCPU while the other idled, and a parked worker's
// timerfd fired but its thread waited behind the running worker for 1-3 ms
// (docs/runtime.md "Timers of a worker without a core"). The woken fibers
// run here, where a core is. Costs a round one relaxed load per other
// worker, and a clock read only while one of them has a timer.
void Worker::fire_overdue_peers() {
  const placement::Config& c = sched_.placement();
  if (!c.watching()) return;
  placement::TimePoint now{};  // read once, at the first other worker with a timer
  for (unsigned i = 0; i < c.workers; ++i) {
    if (i == index_) continue;
    Worker& v = sched_.worker(i);
    const auto due = v.next_deadline();
    if (due == placement::TimePoint::max()) continue;
    if (now == placement::TimePoint{}) now = placement::Clock::now();
    if (placement::timer_overdue(c, due, now)) take_timers(v, now);
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
