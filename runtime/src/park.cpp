// park.cpp: how a worker sleeps and how other threads wake it: park(),
// unpark() and the wake eventfd, the park timer (a timerfd), and the io
// poller's epoll instance that a worker parks in once io gave it one. The
// idle set and the waker's side (Scheduler::notify_work) are in idle.cpp.
//
// Why no wake-up is lost (docs/runtime.md "Park/unpark"): a waker publishes
// work, then a seq_cst fence, then reads the parked flags; a parker sets its
// parked flag, then a seq_cst fence, then re-reads every queue. Whichever
// fence comes first in the total order, the other side sees the write.
#include <algorithm>
#include <cerrno>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "check.hpp"
#include "coarse_clock.hpp"
#include "placement.hpp"
#include "scheduler.hpp"
#include "worker.hpp"

namespace spindle::detail {

namespace {
// A waker wrote to the wake eventfd. Read the counter FIRST, then clear the
// flag: while the flag is set no waker writes, so the read consumed the only
// write, and a waker after the clear writes anew (the next poll sees it).
// The other order loses wake-ups: a waker between the clear and the read
// would have its write consumed and leave the flag set, so every later
// unpark would skip its write. Wakers that skipped theirs while the flag was
// set published their work before it; the clear is an RMW (acq_rel) that
// reads their flag, and the worker re-checks its queues after the loop
// returns. The loop returning is the point.
void on_wake_fd(uv_poll_t* h, int, int) {
  auto* w = static_cast<Worker*>(h->data);
  std::uint64_t count;
  (void)!read(w->wake_fd(), &count, sizeof count);
  w->clear_wake_pending();
}
// The park timerfd expired. uv_stop makes a poll that is about to start
// return at once (the flag is cleared when uv_run returns): docs/runtime.md
// "No libuv timer in the park".
void on_timerfd(uv_poll_t* h, int, int) {
  std::uint64_t expirations;
  (void)!read(static_cast<Worker*>(h->data)->timer_fd(), &expirations, sizeof expirations);
  uv_stop(h->loop);
}
// The worker's own entries in the io poller's epoll instance (io_hook.hpp).
constexpr std::uint64_t kWakeTag = (kRuntimeTagByte << 56) | 1;
constexpr std::uint64_t kLoopTag = (kRuntimeTagByte << 56) | 2;

// epoll_pwait2 where it helps: a deadline in nanoseconds without a timerfd
// (two timerfd_settime calls per timed park saved). Plain epoll_wait with
// the timeout rounded up to whole milliseconds where the kernel lacks it
// (Linux < 5.11), and under TSan, whose interceptors (GCC 12) know
// epoll_wait's happens-before edge (epoll_ctl -> epoll_wait) but not
// epoll_pwait2's.
int wait_epoll(int epfd, epoll_event* ev, int max, const timespec* timeout) noexcept {
  const bool zero = timeout != nullptr && timeout->tv_sec == 0 && timeout->tv_nsec == 0;
#if !defined(__SANITIZE_THREAD__)
  static std::atomic<bool> no_pwait2{false};
  if (!zero && !no_pwait2.load(std::memory_order_relaxed)) {
    const int n = epoll_pwait2(epfd, ev, max, timeout, nullptr);
    if (n >= 0 || errno != ENOSYS) return n;
    no_pwait2.store(true, std::memory_order_relaxed);
  }
#endif
  int ms = -1;
  if (timeout != nullptr) {
    const std::int64_t ns = std::int64_t{timeout->tv_sec} * 1'000'000'000 + timeout->tv_nsec;
    ms = static_cast<int>(std::min<std::int64_t>((ns + 999'999) / 1'000'000, 1 << 30));
  }
  return epoll_wait(epfd, ev, max, zero ? 0 : ms);
}
}  // namespace

// open_park_handles: the wake eventfd and the park timerfd, each watched by
// the loop (until install_poller moves the worker into the io instance).
void Worker::open_park_handles() {
  remote_.wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  SPINDLE_CHECK(remote_.wake_fd >= 0, "eventfd failed");
  SPINDLE_CHECK(uv_poll_init(&core_.loop, &core_.wake_poll, remote_.wake_fd) == 0, "uv_poll_init failed");
  core_.wake_poll.data = this;
  uv_poll_start(&core_.wake_poll, UV_READABLE, &on_wake_fd);
  uv_unref(reinterpret_cast<uv_handle_t*>(&core_.wake_poll));
  core_.timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  SPINDLE_CHECK(core_.timer_fd >= 0, "timerfd_create failed");
  SPINDLE_CHECK(uv_poll_init(&core_.loop, &core_.timer_poll, core_.timer_fd) == 0, "uv_poll_init failed");
  core_.timer_poll.data = this;
  uv_poll_start(&core_.timer_poll, UV_READABLE, &on_timerfd);
  uv_unref(reinterpret_cast<uv_handle_t*>(&core_.timer_poll));
}

// ---- parking --------------------------------------------------------------

bool Worker::has_work_for_park() const {
  if (lifo() || remote_.deque.size_hint() > 0 || !core_.fifo.empty() || !core_.pinned.empty() ||
      !core_.polled.empty() || !remote_.inbox.empty()) {
    return true;
  }
  if (!sched_.global_empty() || sched_.stopping()) return true;
  const auto now = std::chrono::steady_clock::now();
  // While stealing pauses (steal_pays), the others' deques are theirs to
  // run; the park's timer ends the pause, and a worker stuck in one fiber
  // is watched (hand-off, which ends it at once).
  if (now >= core_.quiet_until) {
    for (unsigned i = 0; i < sched_.size(); ++i) {
      if (sched_.worker(i).has_stealable()) return true;
    }
  }
  return next_deadline() <= now;
}

void Worker::park() {
  // 0. Before sleeping, look after the workers that are stuck in one fiber
  // (their due timers, their queued fibers); it may give us work.
  auto look_again = watch_others(std::chrono::steady_clock::now());
  if (has_local_work()) return;
  // Idle: give the memory of cold free stacks back, a chunk at a time, and
  // stop as soon as there is work (stack_pool.hpp).
  while (sched_.stacks().scavenge_some()) {
    if (has_work_for_park()) return;
  }
  // 1. Advertise. 2. Full fence. 3. Re-check everything a waker could have
  // published before it read our flag (see the file comment).
  // In a pause of stealing (steal_pays), a worker that only shares its
  // deque does not wake us (IdleSet::take_one), and the park's timer ends
  // the pause.
  const auto pause_end = core_.quiet_until;
  const bool pausing = pause_end != std::chrono::steady_clock::time_point{} &&
                       std::chrono::steady_clock::now() < pause_end;
  remote_.parked.store(true, std::memory_order_relaxed);
  sched_.idle().add(this, pausing);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (has_work_for_park()) {
    sched_.idle().remove(this);
    remote_.parked.store(false, std::memory_order_relaxed);
    fire_own_timers();
    return;
  }
  // Someone must watch the workers that run fibers (docs/runtime.md
  // "Hand-off"). Read after the fence: a worker that left its park before
  // it either is seen here or sees us in the idle set (ensure_watcher).
  if (look_again == std::chrono::steady_clock::time_point::max() && others_active()) {
    look_again = placement::idle_look(sched_.placement(), std::chrono::steady_clock::now());
  }
  const bool watching = look_again != std::chrono::steady_clock::time_point::max();
  if (watching) sched_.idle().add_watcher(1);
  std::uint64_t mark = 0;
  const bool watch = sched_.all_asleep(mark);
  const auto watch_since = std::chrono::steady_clock::now();
  const auto wake_at = std::min({next_deadline(), look_again,
                                 pausing ? pause_end : std::chrono::steady_clock::time_point::max()});
  if (core_.io_poll_on) {
    // Parked in the io poller's instance (install_poller): a relative
    // timeout, measured from after every check above, so never early.
    timespec ts{};
    const timespec* timeout = nullptr;
    std::chrono::nanoseconds rel{-1};
    if (wake_at != std::chrono::steady_clock::time_point::max()) {
      rel = std::max(wake_at - std::chrono::steady_clock::now(), std::chrono::steady_clock::duration::zero());
    } else if (watch) {
      // Capped: a huge grace must not overflow nanoseconds (the detector
      // compares the real elapsed time; a longer grace just parks again).
      rel = std::min<std::chrono::nanoseconds>(sched_.options().deadlock_grace, std::chrono::hours(24));
    }
    if (rel.count() >= 0) {
      ts.tv_sec = static_cast<time_t>(rel.count() / 1'000'000'000);
      ts.tv_nsec = static_cast<long>(rel.count() % 1'000'000'000);
      timeout = &ts;
    }
    poll_events(timeout, kOwnInstance);
  } else {
    arm_park_timer(wake_at, watch);
    uv_ref(reinterpret_cast<uv_handle_t*>(&core_.wake_poll));
    DispatchingIo dispatching(this);
    uv_run(&core_.loop, UV_RUN_ONCE);
    uv_unref(reinterpret_cast<uv_handle_t*>(&core_.wake_poll));
  }
  if (watching) sched_.idle().add_watcher(-1);
  core_.unparked = true;
  disarm_park_timer();
  core_.recent_time = coarse_now();
  if (watch) sched_.check_deadlock(mark, watch_since);
  sched_.idle().remove(this);
  remote_.parked.store(false, std::memory_order_relaxed);
  remote_.parks.inc();
  drain_inbox();
  fire_own_timers();
  if (core_.io_poll_on) sample_load(core_.recent_time);  // load.cpp: io workers only
}

// arm_park_timer: wake at `at` (max: no deadline), else, when the deadlock
// detector watches, after its grace period.
void Worker::arm_park_timer(std::chrono::steady_clock::time_point at, bool deadlock_watch) {
  itimerspec its{};
  if (at != std::chrono::steady_clock::time_point::max()) {
    // steady_clock is CLOCK_MONOTONIC on Linux, so the deadline is absolute.
    const auto ns = at.time_since_epoch() / std::chrono::nanoseconds(1);
    its.it_value.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
    its.it_value.tv_nsec = static_cast<long>(ns % 1'000'000'000);
    if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1;
    timerfd_settime(core_.timer_fd, TFD_TIMER_ABSTIME, &its, nullptr);
    core_.timer_armed = true;
  } else if (deadlock_watch) {
    const auto ms = sched_.options().deadlock_grace.count();
    its.it_value.tv_sec = static_cast<time_t>(ms / 1000);
    its.it_value.tv_nsec = static_cast<long>(ms % 1000) * 1'000'000;
    timerfd_settime(core_.timer_fd, 0, &its, nullptr);
    core_.timer_armed = true;
  }
}

void Worker::disarm_park_timer() {
  if (!core_.timer_armed) return;
  itimerspec its{};
  timerfd_settime(core_.timer_fd, 0, &its, nullptr);
  core_.timer_armed = false;
}

// unpark: one eventfd write per wake-up cycle. Not uv_async_send: its
// woken loop spins until the sender finishes its write, and a sender
// preempted by the worker it woke stalls that worker for a time slice
// (docs/decisions/0002-dependencies.md).
void Worker::unpark() noexcept {
  // acq_rel: an unpark that finds the flag set relies on the pending write.
  if (remote_.wake_pending.exchange(true, std::memory_order_acq_rel)) return;
  write_wake_fd();
}

// write_wake_fd: the write of an unpark (or a rescuer's returned edge),
// safe against the owner closing the eventfd at its exit: a plain thread
// that woke a fiber (Event::set from a signal thread, say) may still be
// between its flag and its write when the runtime shuts down, and its write
// must not land on a closed, perhaps reused, descriptor. seq_cst on both
// sides (Dekker): either close_wake_fd sees the writer counted and waits,
// or the writer sees remote_.wake_closed and skips (the owner has left its loop).
void Worker::write_wake_fd() noexcept {
  remote_.wake_writers.fetch_add(1, std::memory_order_seq_cst);
  if (!remote_.wake_closed.load(std::memory_order_seq_cst)) {
    const std::uint64_t one = 1;
    (void)!write(remote_.wake_fd, &one, sizeof one);
  }
  // release; pairs with the acquire in close_wake_fd.
  remote_.wake_writers.fetch_sub(1, std::memory_order_release);
}

void Worker::close_wake_fd() noexcept {
  remote_.wake_closed.store(true, std::memory_order_seq_cst);
  while (remote_.wake_writers.load(std::memory_order_seq_cst) != 0) std::this_thread::yield();
  close(remote_.wake_fd);
}

void Worker::push_inbox(Fiber* f) {
  remote_.inbox.push(f);
  // Pairs with the fence in park(): either we see remote_.parked or it sees f.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (remote_.parked.load(std::memory_order_relaxed)) unpark();
}

// ---- io poller ------------------------------------------------------------

void Worker::set_poller(int fd, WorkerPollFn fn, void* ctx) noexcept {
  SPINDLE_CHECK(!remote_.poller_set.load(std::memory_order_relaxed), "set_worker_poller called twice");
  remote_.poller_fd = fd;
  remote_.poller_fn = fn;
  remote_.poller_ctx = ctx;
  // release; pairs with the acquire in install_poller and rescue_poll.
  remote_.poller_set.store(true, std::memory_order_release);
  // The owner installs the handle itself (its loop, its thread) at its next
  // maintenance round; a parked owner must wake for that. An fd registered
  // with the poller before the handle exists is not lost: its readiness
  // waits in the epoll instance, and maintenance polls it directly.
  unpark();
}

// install_poller: owner thread. From here on the worker parks in the io
// poller's epoll instance: its wake eventfd and its loop's backend fd move
// there, so a wake-up for readiness is one epoll_wait instead of libuv's
// epoll_wait followed by the io layer's (docs/runtime.md "Park/unpark").
//  - The eventfd is edge-triggered and never read: every write is a new
//    edge (eventfd_write wakes the epoll callback each time), and the
//    counter cannot overflow in practice (one write per wake-up cycle).
//  - The loop's backend fd is level-triggered: it stays readable while
//    libuv has events (the SIGQUIT handle), which only the owner runs.
//  - The libuv polls of both fds stop, so each wake-up is reported once.
void Worker::install_poller() {
  // acquire; pairs with the release in set_poller.
  if (!remote_.poller_set.load(std::memory_order_acquire)) return;
  uv_poll_stop(&core_.wake_poll);
  uv_poll_stop(&core_.timer_poll);
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLET;
  ev.data.u64 = kWakeTag;
  // A write already pending is not lost: adding a ready fd queues an event.
  SPINDLE_CHECK(epoll_ctl(remote_.poller_fd, EPOLL_CTL_ADD, remote_.wake_fd, &ev) == 0,
                "epoll_ctl (wake fd) failed");
  ev.events = EPOLLIN;
  ev.data.u64 = kLoopTag;
  SPINDLE_CHECK(epoll_ctl(remote_.poller_fd, EPOLL_CTL_ADD, uv_backend_fd(&core_.loop), &ev) == 0,
                "epoll_ctl (loop fd) failed");
  // libuv adds a watcher to its epoll instance only when it next polls, and
  // nothing may have polled the loop yet (io can arrive before the first
  // park): without this turn, the SIGQUIT dump's async handle (libuv's
  // async eventfd) would never be watched, and the dump never printed.
  turn_loop();
  // epoll_pwait2 sleeps with the thread's timer slack (50 us by default);
  // the timerfd it replaces had none. Keep the park deadline precise.
  (void)prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  core_.io_poll_on = true;
}

void Worker::poll_events(const timespec* timeout, std::uint8_t mode) noexcept {
  const bool owner = mode == kOwnInstance;
  DispatchingIo dispatching(owner ? this : current_worker(), mode);
  epoll_event ev[64];
  const int n = wait_epoll(remote_.poller_fd, ev, 64, timeout);
  bool woken = false, loop_ready = false;
  int io = 0;  // io events, moved to the front
  for (int i = 0; i < n; ++i) {
    const std::uint64_t tag = ev[i].data.u64;
    if (tag == kWakeTag) {
      woken = true;
    } else if (tag == kLoopTag) {
      loop_ready = true;
    } else {
      ev[io++] = ev[i];
    }
  }
  if (io > 0) remote_.poller_fn(remote_.poller_ctx, ev, io);
  if (woken) {
    if (owner) {
      // As on_wake_fd, with the edge in place of the read: consumed first,
      // then the flag cleared; a waker in between skipped its write, but
      // its work is published and the owner re-checks its queues after
      // this (maintenance's caller, or park's return).
      clear_wake_pending();
    } else {
      // A rescuer took the owner's edge: the owner may be parked by now,
      // and the flag is still set (no waker writes). Give the edge back.
      write_wake_fd();
    }
  }
  if (loop_ready && owner) turn_loop();
}

// turn_loop: uv_run returns at once, without polling, when the loop is not
// alive, and once the poller is installed its only handle may be the
// SIGQUIT one, unref'd so that it keeps nothing alive (maintenance's turns
// of the loop stay skipped). That would leave the signal undelivered and
// the loop's fd readable (level-triggered above) for good. So the handle
// is ref'd for this one turn.
void Worker::turn_loop() noexcept {
  auto* quit = reinterpret_cast<uv_handle_t*>(&core_.sigquit);
  if (core_.sigquit_on) uv_ref(quit);
  uv_run(&core_.loop, UV_RUN_NOWAIT);
  if (core_.sigquit_on) uv_unref(quit);
}

}  // namespace spindle::detail
