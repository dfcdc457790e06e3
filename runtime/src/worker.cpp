// worker.cpp: the worker loop. Summary (the full essay is docs/runtime.md):
//
// A worker is one OS thread running fibers. It looks for the next fiber in
// this order, one named step each:
//   next_local(): LIFO slot (capped at kLifoCap runs in a row) -> local deque
//                 (LIFO, stealable) -> local FIFO (yielded fibers, oldest
//                 first; the rest of it moves into the deque so thieves see it)
//   maintenance() every kMaintenanceInterval picks, and whenever the worker
//                 runs dry: inbox (fibers that must run here), a batch of the
//                 global queue, due timers, a non-blocking poll of the loop
//                 and of the io instance.
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
// Why no wake-up is lost (docs/runtime.md "Park/unpark"): a waker publishes
// work, then a seq_cst fence, then reads the parked flags; a parker sets its
// parked flag, then a seq_cst fence, then re-reads every queue. Whichever
// fence comes first in the total order, the other side sees the write.
#include "worker.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/timerfd.h>
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
constexpr std::size_t kStealMax = 128;

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
void on_sigquit(uv_signal_t* h, int) {
  static_cast<Scheduler*>(h->data)->dump(std::cerr);
}
}  // namespace

[[gnu::noinline]] Worker* current_worker() noexcept {
  Worker* w = tls_worker;
  asm volatile("" ::: "memory");
  return w;
}

// Marks the calling thread's worker as dispatching readiness for a scope
// (a rescuer polling a stuck worker's instance wakes into its own FIFO).
class Worker::DispatchingIo {
 public:
  explicit DispatchingIo(Worker* w) noexcept : w_(w), was_(w != nullptr && w->dispatching_io_) {
    if (w_ != nullptr) w_->dispatching_io_ = true;
  }
  ~DispatchingIo() {
    if (w_ != nullptr) w_->dispatching_io_ = was_;
  }
  DispatchingIo(const DispatchingIo&) = delete;
  DispatchingIo& operator=(const DispatchingIo&) = delete;

 private:
  Worker* w_;
  bool was_;
};

Worker::Worker(Scheduler& s, unsigned index)
    : sched_(s), index_(index), rng_(0x9E3779B97F4A7C15ull * (index + 1)), stacks_(s.stacks()) {
  SPINDLE_CHECK(uv_loop_init(&loop_) == 0, "uv_loop_init failed");
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  SPINDLE_CHECK(wake_fd_ >= 0, "eventfd failed");
  SPINDLE_CHECK(uv_poll_init(&loop_, &wake_poll_, wake_fd_) == 0, "uv_poll_init failed");
  wake_poll_.data = this;
  uv_poll_start(&wake_poll_, UV_READABLE, &on_wake_fd);
  uv_unref(reinterpret_cast<uv_handle_t*>(&wake_poll_));
  timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  SPINDLE_CHECK(timer_fd_ >= 0, "timerfd_create failed");
  SPINDLE_CHECK(uv_poll_init(&loop_, &timer_poll_, timer_fd_) == 0, "uv_poll_init failed");
  timer_poll_.data = this;
  uv_poll_start(&timer_poll_, UV_READABLE, &on_timerfd);
  uv_unref(reinterpret_cast<uv_handle_t*>(&timer_poll_));
  if (index == 0 && s.options().dump_on_sigquit) {
    uv_signal_init(&loop_, &sigquit_);
    sigquit_.data = &s;
    if (uv_signal_start(&sigquit_, &on_sigquit, SIGQUIT) == 0) {
      uv_unref(reinterpret_cast<uv_handle_t*>(&sigquit_));
    }
    sigquit_on_ = true;
  }
  scratch_.reserve(decltype(deque_)::capacity());
}

Worker::~Worker() = default;

void Worker::start() {
  thread_ = std::thread([this] { thread_main(); });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::thread_main() {
  tls_worker = this;
  tid_.store(pthread_self(), std::memory_order_relaxed);
  // release; pairs with the acquire in request_handoff.
  tid_set_.store(true, std::memory_order_release);
  watch_.resize(sched_.size());
  context_init_thread(sched_ctx_);
  eh_ = context_thread_eh();
  thread_altstack_init();
  loop();
  sched_.wait_unparks_done();
  // Close our handles and let the loop run their close callbacks; a loop
  // that will not close means a handle leaked (a bug, so we say so).
  uv_close(reinterpret_cast<uv_handle_t*>(&wake_poll_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_poll_), nullptr);
  if (sigquit_on_) uv_close(reinterpret_cast<uv_handle_t*>(&sigquit_), nullptr);
  uv_run(&loop_, UV_RUN_DEFAULT);
  close(timer_fd_);
  close_wake_fd();
  const int rc = uv_loop_close(&loop_);
  if (rc != 0) std::fprintf(stderr, "spindle: worker %u: uv_loop_close: %s\n", index_, uv_strerror(rc));
  thread_altstack_free();
  tls_worker = nullptr;
}

// ---- the loop -------------------------------------------------------------

void Worker::loop() {
  while (!sched_.stopping()) {
    if (tick_ - last_maintenance_ >= kMaintenanceInterval) maintenance();
    Fiber* f = next_local();
    if (!f) f = find_work();
    if (f) {
      if (unparked_) [[unlikely]] {
        // Back to running fibers after a park: make sure an idle worker
        // watches us (docs/runtime.md "Hand-off"). Not on every unpark:
        // a worker woken only to watch would wake the next, and so on.
        unparked_ = false;
        sched_.ensure_watcher();
      }
      resume(f);
      continue;
    }
    park();
  }
}

// prepare: makes f ready to be switched to on this worker. False when f must
// run on another worker (it was forwarded there).
SPINDLE_SWITCH_STEP bool Worker::prepare(Fiber* f) {
  Worker* a = f->affinity_;
  if (a != nullptr && a != this) [[unlikely]] {
    a->push_inbox(f);
    return false;
  }
  if (f->state_.load(std::memory_order_relaxed) == FiberState::created) {
    f->stack_ = stacks_.get(f->stack_size_);
    f->unguarded_ = f->stack_.guard == 0;
    context_make(f->ctx_, f->stack_, &Worker::fiber_main);
  }
  f->state_.store(FiberState::running, std::memory_order_relaxed);
  running_.store(f, std::memory_order_relaxed);
  switches_.inc();
  return true;
}

void Worker::resume(Fiber* f) {
  if (!prepare(f)) return;
  pending_ = Pending{Pending::from_scheduler};
  void* from = context_switch(sched_ctx_, f->ctx_, eh_, false);
  land(from);
}

SPINDLE_SWITCH_STEP Fiber* Worker::next_local() {
  ++tick_;
  if (lifo() != nullptr) {
    if (lifo_runs_ < kLifoCap) {
      ++lifo_runs_;
      return swap_lifo(nullptr);
    }
    push_fifo(swap_lifo(nullptr));
  }
  lifo_runs_ = 0;
  if (Fiber* f = deque_.pop()) return f;
  // Alternate between the two FIFOs when both have fibers, so neither
  // starves the other.
  if (!pinned_.empty() && (fifo_.empty() || (tick_ & 1) != 0)) return pinned_.pop_front();
  if (!fifo_.empty()) {
    Fiber* f = fifo_.pop_front();
    if (Fiber* after = fifo_.front()) prefetch_for_switch(after);
    // Only make the rest stealable when someone idles: otherwise the moves
    // are pure cost (yield n=1000 pays a deque push and pop per yield).
    if (!fifo_.empty() && sched_.anyone_parked_hint() && transfer_fifo() > 1) {
      sched_.notify_work(false);
    }
    return f;
  }
  return nullptr;
}

// prefetch_for_switch: f runs after the fiber about to run. Among many
// yielding fibers each switch otherwise misses on the new fiber's stack
// frames and control block; this starts those loads one switch early: f's
// saved frames (its line was prefetched one switch ago, as the fiber after
// next) and the control block of the fiber after f.
void Worker::prefetch_for_switch(Fiber* f) noexcept {
  if (Fiber* later = f->next_) __builtin_prefetch(later);
  if (const char* sp = static_cast<const char*>(f->ctx_.fctx)) {
    for (int i = 0; i < 4; ++i) __builtin_prefetch(sp + 64 * i);
  }
}

SPINDLE_SWITCH_STEP void Worker::push_fifo(Fiber* f) {
  if (f->affinity_ == this) pinned_.push_back(f); else fifo_.push_back(f);
}

// next_direct: the next fiber a suspending fiber may switch to directly, or
// nullptr to go through the scheduler context (maintenance due, stopping, or
// nothing local).
SPINDLE_SWITCH_STEP Fiber* Worker::next_direct() {
  for (;;) {
    if (tick_ + 1 - last_maintenance_ >= kMaintenanceInterval || sched_.stopping()) return nullptr;
    Fiber* f = next_local();
    if (f == nullptr || prepare(f)) return f;
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
  last_maintenance_ = tick_;
  recent_time_ = coarse_now();
  drain_inbox();
  // Fairness only: one fiber from the global queue, to the back of the FIFO.
  // A batch on top of the LIFO deque here would run new fibers ahead of the
  // ones timers just woke, and with 100,000 sleepers every one of them would
  // start (and hold a stack) before the first could finish.
  take_global_one();
  fire_own_timers();
  if (!io_poll_on_ && poller_set_.load(std::memory_order_relaxed)) [[unlikely]] install_poller();
  // Busy workers see readiness here, without blocking (io_hook.hpp).
  if (io_poll_on_) poll_events(&kNoWait, true);
  if (uv_loop_alive(&loop_)) {
    DispatchingIo dispatching(this);
    uv_run(&loop_, UV_RUN_NOWAIT);
    polls_.inc();
  }
  // Backstop for a missed (non-strict) notify: more here than we can run.
  if (deque_.size_hint() > 1) sched_.notify_work(false);
}

void Worker::drain_inbox() {
  if (inbox_.empty()) return;
  FiberList l = inbox_.take_all();
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
  const std::size_t free = deque_.capacity() - deque_.size_hint();
  std::size_t n = sched_.global_size_hint() / sched_.size() + 1;
  n = std::min({n, free / 2, std::size_t{64}});
  if (n == 0) return false;
  FiberList l = sched_.take_global(n);
  bool any = !l.empty();
  while (Fiber* f = l.pop_front()) {
    if (!deque_.push(f)) push_fifo(f);
  }
  return any;
}

// transfer_fifo: moves the FIFO into the deque so idle workers can steal it,
// pushing the newest first so that the owner's LIFO pops still return the
// oldest first. Pinned fibers live in pinned_ and never come here.
std::size_t Worker::transfer_fifo() {
  const std::size_t room = deque_.capacity() - deque_.size_hint();
  scratch_.clear();
  // The oldest move; what does not fit stays in fifo_ and, since the deque
  // is popped first, still runs after them.
  while (!fifo_.empty() && scratch_.size() < room) scratch_.push_back(fifo_.pop_front());
  for (auto it = scratch_.rbegin(); it != scratch_.rend(); ++it) {
    // room is an underestimate (thieves only free slots), so this holds.
    SPINDLE_CHECK(deque_.push(*it), "transfer_fifo: the run queue was fuller than its size said");
  }
  return scratch_.size();
}

Fiber* Worker::steal() {
  const unsigned n = sched_.size();
  if (n < 2 || !sched_.try_begin_search()) return nullptr;
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 7;
  rng_ ^= rng_ << 17;
  const unsigned start = static_cast<unsigned>(rng_ % n);
  for (unsigned i = 0; i < n; ++i) {
    Worker& v = sched_.worker((start + i) % n);
    if (&v == this) continue;
    // Bounded by our own free room, so every push below succeeds: top_ only
    // grows, so the room size_hint shows can only be an underestimate.
    const std::size_t room = deque_.capacity() - deque_.size_hint();
    std::size_t want = std::min(kStealMax, std::max<std::size_t>(1, v.deque_.size_hint() / 2));
    want = std::min(want, room + 1);  // the first one is returned, not pushed
    Fiber* first = nullptr;
    std::size_t got = 0;
    int races = 0;
    while (got < want) {
      Fiber* x = nullptr;
      auto r = v.deque_.steal(x);
      if (r == decltype(v.deque_)::StealResult::ok) {
        if (first == nullptr) {
          first = x;
        } else if (!deque_.push(x)) {
          push_fifo(x);  // unreachable by the bound above; never lose a fiber
        }
        ++got;
      } else if (r == decltype(v.deque_)::StealResult::empty || ++races > 8) {
        break;
      }
    }
    if (first != nullptr) {
      steals_.add(got);
      sched_.end_search(true);
      return first;
    }
  }
  sched_.end_search(false);
  return nullptr;
}

// ---- io poller ------------------------------------------------------------

void Worker::set_poller(int fd, WorkerPollFn fn, void* ctx) noexcept {
  SPINDLE_CHECK(!poller_set_.load(std::memory_order_relaxed), "set_worker_poller called twice");
  poller_fd_ = fd;
  poller_fn_ = fn;
  poller_ctx_ = ctx;
  // release; pairs with the acquire in install_poller and rescue_poll.
  poller_set_.store(true, std::memory_order_release);
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
  if (!poller_set_.load(std::memory_order_acquire)) return;
  uv_poll_stop(&wake_poll_);
  uv_poll_stop(&timer_poll_);
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLET;
  ev.data.u64 = kWakeTag;
  // A write already pending is not lost: adding a ready fd queues an event.
  SPINDLE_CHECK(epoll_ctl(poller_fd_, EPOLL_CTL_ADD, wake_fd_, &ev) == 0, "epoll_ctl (wake fd) failed");
  ev.events = EPOLLIN;
  ev.data.u64 = kLoopTag;
  SPINDLE_CHECK(epoll_ctl(poller_fd_, EPOLL_CTL_ADD, uv_backend_fd(&loop_), &ev) == 0,
                "epoll_ctl (loop fd) failed");
  // epoll_pwait2 sleeps with the thread's timer slack (50 us by default);
  // the timerfd it replaces had none. Keep the park deadline precise.
  (void)prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
  io_poll_on_ = true;
}

void Worker::poll_events(const timespec* timeout, bool owner) noexcept {
  DispatchingIo dispatching(owner ? this : current_worker());
  epoll_event ev[64];
  const int n = wait_epoll(poller_fd_, ev, 64, timeout);
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
  if (io > 0) poller_fn_(poller_ctx_, ev, io);
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
  if (loop_ready && owner) uv_run(&loop_, UV_RUN_NOWAIT);
}

// ---- parking --------------------------------------------------------------

bool Worker::has_work_for_park() const {
  if (lifo() || deque_.size_hint() > 0 || !fifo_.empty() || !pinned_.empty() || !inbox_.empty()) {
    return true;
  }
  if (!sched_.global_empty() || sched_.stopping()) return true;
  for (unsigned i = 0; i < sched_.size(); ++i) {
    if (sched_.worker(i).has_stealable()) return true;
  }
  return next_deadline() <= std::chrono::steady_clock::now();
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
  parked_.store(true, std::memory_order_relaxed);
  sched_.register_parked(this);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (has_work_for_park()) {
    sched_.unregister_parked(this);
    parked_.store(false, std::memory_order_relaxed);
    fire_own_timers();
    return;
  }
  // Someone must watch the workers that run fibers (docs/runtime.md
  // "Hand-off"). Read after the fence: a worker that left its park before
  // it either is seen here or sees us in the idle set (ensure_watcher).
  if (look_again == std::chrono::steady_clock::time_point::max() && others_active()) {
    look_again = std::chrono::steady_clock::now() + sched_.options().handoff_after * 5;
  }
  const bool watching = look_again != std::chrono::steady_clock::time_point::max();
  if (watching) sched_.add_watcher(1);
  std::uint64_t mark = 0;
  const bool watch = sched_.all_asleep(mark);
  const auto watch_since = std::chrono::steady_clock::now();
  const auto wake_at = std::min(next_deadline(), look_again);
  if (io_poll_on_) {
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
    poll_events(timeout, true);
  } else {
    arm_park_timer(wake_at, watch);
    uv_ref(reinterpret_cast<uv_handle_t*>(&wake_poll_));
    DispatchingIo dispatching(this);
    uv_run(&loop_, UV_RUN_ONCE);
    uv_unref(reinterpret_cast<uv_handle_t*>(&wake_poll_));
  }
  if (watching) sched_.add_watcher(-1);
  unparked_ = true;
  disarm_park_timer();
  recent_time_ = coarse_now();
  if (watch) sched_.check_deadlock(mark, watch_since);
  sched_.unregister_parked(this);
  parked_.store(false, std::memory_order_relaxed);
  parks_.inc();
  drain_inbox();
  fire_own_timers();
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
    timerfd_settime(timer_fd_, TFD_TIMER_ABSTIME, &its, nullptr);
    timer_armed_ = true;
  } else if (deadlock_watch) {
    const auto ms = sched_.options().deadlock_grace.count();
    its.it_value.tv_sec = static_cast<time_t>(ms / 1000);
    its.it_value.tv_nsec = static_cast<long>(ms % 1000) * 1'000'000;
    timerfd_settime(timer_fd_, 0, &its, nullptr);
    timer_armed_ = true;
  }
}

void Worker::disarm_park_timer() {
  if (!timer_armed_) return;
  itimerspec its{};
  timerfd_settime(timer_fd_, 0, &its, nullptr);
  timer_armed_ = false;
}

// unpark: one eventfd write per wake-up cycle. Not uv_async_send: it marks
// the handle busy around its write, and the woken loop spins (sched_yield)
// until the sender finishes; a sender preempted by the very worker it woke
// (an offload thread at low priority, say) then stalls that worker for a
// time slice (measured: offload ticks 10-40 ms late; docs/runtime.md).
void Worker::unpark() noexcept {
  // acq_rel: an unpark that finds the flag set relies on the pending write.
  if (wake_pending_.exchange(true, std::memory_order_acq_rel)) return;
  write_wake_fd();
}

// write_wake_fd: the write of an unpark (or a rescuer's returned edge),
// safe against the owner closing the eventfd at its exit: a plain thread
// that woke a fiber (Event::set from a signal thread, say) may still be
// between its flag and its write when the runtime shuts down, and its write
// must not land on a closed, perhaps reused, descriptor. seq_cst on both
// sides (Dekker): either close_wake_fd sees the writer counted and waits,
// or the writer sees wake_closed_ and skips (the owner has left its loop).
void Worker::write_wake_fd() noexcept {
  wake_writers_.fetch_add(1, std::memory_order_seq_cst);
  if (!wake_closed_.load(std::memory_order_seq_cst)) {
    const std::uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof one);
  }
  // release; pairs with the acquire in close_wake_fd.
  wake_writers_.fetch_sub(1, std::memory_order_release);
}

void Worker::close_wake_fd() noexcept {
  wake_closed_.store(true, std::memory_order_seq_cst);
  while (wake_writers_.load(std::memory_order_seq_cst) != 0) std::this_thread::yield();
  close(wake_fd_);
}

void Worker::push_inbox(Fiber* f) {
  inbox_.push(f);
  // Pairs with the fence in park(): either we see parked_ or it sees f.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (parked_.load(std::memory_order_relaxed)) unpark();
}

// ---- local queues ---------------------------------------------------------

// Reached from user code (spawn, a wake-up): runtime sections.
void Worker::push_local(Fiber* f) {
  RuntimeSection rs(*this);
  // overflow_half frees at least one slot (a steal that loses its race
  // lost it to a thief, which freed one), so this loop runs at most twice.
  while (!deque_.push(f)) overflow_half();
  sched_.notify_work(false);
}

void Worker::push_polled(Fiber* f) {
  RuntimeSection rs(*this);
  push_fifo(f);
}

void Worker::push_lifo(Fiber* f) {
  RuntimeSection rs(*this);
  if (Fiber* old = swap_lifo(f)) push_local(old);
}

bool Worker::has_local_work() noexcept {
  RuntimeSection rs(*this);
  return lifo() != nullptr || deque_.size_hint() > 0 || !fifo_.empty() || !pinned_.empty();
}

// overflow_half: the deque is full; move its older half to the global queue
// (taking from our own top like a thief, so no protocol changes).
void Worker::overflow_half() {
  FiberList l;
  for (std::size_t i = 0; i < deque_.capacity() / 2; ++i) {
    Fiber* x = nullptr;
    if (deque_.steal(x) != decltype(deque_)::StealResult::ok) break;
    l.push_back(x);
  }
  sched_.push_global(l);
}

// ---- timers ---------------------------------------------------------------

// The heap is shared (timer_lock_): the owner adds, any worker fires or
// removes. Who may touch a Waiter when (docs/runtime.md "Timers"):
//  - add: the owner, in after_wait_publish, before it clears publishing_;
//    the woken fiber waits for that clear before it reads timer_owner.
//  - fire: pop and try_complete under the lock. A winner's fiber cannot run
//    (so its Waiter cannot die) until we wake it, after the unlock. A loser
//    is never touched again after the unlock.
//  - remove: the fiber itself, after its wait ended, under the lock, so a
//    firer that popped it is done with it (it lost the CAS) or woke it.
void Worker::set_next_deadline_locked() noexcept {
  const auto t = timers_.empty() ? std::chrono::steady_clock::time_point::max() : timers_.top()->deadline;
  next_deadline_.store(t.time_since_epoch().count(), std::memory_order_relaxed);
  timer_count_.store(timers_.size(), std::memory_order_relaxed);
}

void Worker::add_timer(Waiter* w) {
  std::lock_guard lk(timer_lock_);
  w->timer_owner = this;
  timers_.push(w);
  set_next_deadline_locked();
}

void Worker::remove_timer(Waiter* w) noexcept {
  std::lock_guard lk(timer_lock_);
  if (w->heap_index < 0) return;
  timers_.remove(w);
  set_next_deadline_locked();
}

std::size_t Worker::fire_due_timers(std::chrono::steady_clock::time_point now) {
  // Latest deadline first: linked through next_ (a suspended fiber is in
  // no queue), each new winner in front of the earlier ones.
  Fiber* won = nullptr;
  std::size_t fired = 0;
  {
    std::lock_guard lk(timer_lock_);
    while (!timers_.empty() && timers_.top()->deadline <= now) {
      Waiter* w = timers_.pop();
      ++fired;
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

void Worker::fire_own_timers() {
  if (next_deadline() == std::chrono::steady_clock::time_point::max()) return;
  timers_fired_.add(fire_due_timers(std::chrono::steady_clock::now()));
}

// ---- switching ------------------------------------------------------------

// to_user: the runtime returns to a fiber's user code (depth 1 -> 0).
// Publishes held_ for idle workers (watch_others) and, when someone idles
// while fibers wait in our FIFO, makes them stealable now rather than after
// a hand-off: the code we return to may run for long.
// The LIFO slot is not exposed: it runs next, and a woken fiber moving to
// another core at once would turn every ping-pong into a cross-core one.
// Only a hand-off (after handoff_after) takes it. Costs a yield a load of
// the FIFO's size and head, one of the parked-count hint and one of held_.
SPINDLE_SWITCH_STEP void Worker::to_user() noexcept {
  // Two or more, as next_local's transfer: a single yielder behind the
  // fiber we return to is most often its partner in a yield or ping-pong
  // pair, which is faster kept on one core; if the fiber runs long, the
  // hand-off takes it.
  if (fifo_.size() > 1 && sched_.anyone_parked_hint()) [[unlikely]] expose_fifo();
  const bool fifo = !fifo_.empty();
  if (held_.load(std::memory_order_relaxed) != fifo) held_.store(fifo, std::memory_order_relaxed);
  std::atomic_signal_fence(std::memory_order_seq_cst);
  rt_depth_.store(0, std::memory_order_relaxed);
}

// A section nests (push_lifo calls push_local; land calls push_lifo); only
// the outermost one, entered from user code, goes back through to_user.
SPINDLE_SWITCH_STEP Worker::RuntimeSection::RuntimeSection(Worker& w) noexcept
    : w_(w), depth_(w.rt_depth_.load(std::memory_order_relaxed)) {
  w_.rt_depth_.store(depth_ + 1, std::memory_order_relaxed);
  std::atomic_signal_fence(std::memory_order_seq_cst);
}

SPINDLE_SWITCH_STEP Worker::RuntimeSection::~RuntimeSection() {
  if (depth_ == 0) {
    w_.to_user();
  } else {
    std::atomic_signal_fence(std::memory_order_seq_cst);
    w_.rt_depth_.store(depth_, std::memory_order_relaxed);
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
    from = context_switch(self->ctx_, next->ctx_, eh_, false);
  } else {
    running_.store(nullptr, std::memory_order_relaxed);
    from = context_switch(self->ctx_, sched_ctx_, eh_, false);
  }
  // Resumed, perhaps on another thread: `this` may be stale.
  Worker* me = current_worker();
  me->land(from);
  me->to_user();
}

void Worker::switch_out(const Pending& p) {
  pending_ = p;
  switch_from(p.prev);
}

void Worker::switch_out_wait(Fiber* self, Waiter* w,
                             const std::chrono::steady_clock::time_point* deadline,
                             FunctionRef<bool()>* publish) {
  pending_.kind = Pending::wait;
  pending_.prev = self;
  pending_.waiter = w;
  pending_.deadline = deadline;
  pending_.publish = publish;
  switch_from(self);
}

void Worker::switch_out(Pending::Kind kind, Fiber* self) {
  pending_.kind = kind;
  pending_.prev = self;
  switch_from(self);
}

void Worker::exit_fiber(Fiber* f) {
  check_canary(*f);
  enter_rt_from_user();
  pending_ = Pending{Pending::finish, f};
  if (Fiber* next = next_direct()) {
    context_switch(f->ctx_, next->ctx_, eh_, true);
  } else {
    running_.store(nullptr, std::memory_order_relaxed);
    context_switch(f->ctx_, sched_ctx_, eh_, true);
  }
  SPINDLE_CHECK(false, "a finished fiber was resumed");
  __builtin_unreachable();
}

void Worker::land(void* from) {
  // A yield (the hot case) needs two words of pending_ and no call.
  Fiber* const prev = pending_.prev;
  if (pending_.kind == Pending::yield) [[likely]] {
    pending_.kind = Pending::none;
    prev->ctx_.fctx = from;
    prev->state_.store(FiberState::ready, std::memory_order_relaxed);
    push_fifo(prev);
    return;
  }
  land_slow(from);
}

void Worker::land_slow(void* from) {
  const Pending::Kind kind = pending_.kind;
  Fiber* const prev = pending_.prev;
  pending_.kind = Pending::none;
  switch (kind) {
    case Pending::from_scheduler:
      sched_ctx_.fctx = from;
      break;
    case Pending::wait:
      prev->ctx_.fctx = from;
      // pending_ stays intact until the next switch, which cannot happen
      // before this returns: no copy needed.
      after_wait_publish(pending_);
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
      pending_.target->push_inbox(prev);
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
    w->deadline = *p.deadline;
    add_timer(w);
  }
  // The last touch of the fiber for this wait; pairs with the acquire load
  // in suspend() (see Fiber::publishing_).
  f->publishing_.store(false, std::memory_order_release);
}

void Worker::finish(Fiber* f) {
  context_destroy(f->ctx_);
  stacks_.put(f->stack_);
  f->stack_ = StackSlot{};
  f->unguarded_ = false;
  finished_.inc();
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
  if (id_next_ == id_end_) {
    constexpr std::uint64_t kBlock = 256;
    id_next_ = sched_.take_id_block(kBlock);
    id_end_ = id_next_ + kBlock;
  }
  return id_next_++;
}

WorkerStats Worker::stats() const noexcept {
  WorkerStats s;
  s.switches = switches_.get();
  s.spawns = spawns_.get();
  s.finished = finished_.get();
  s.steals = steals_.get();
  s.parks = parks_.get();
  s.polls = polls_.get();
  s.timers_fired = timers_fired_.get();
  s.handed_off = handed_off_.get();
  s.timers_rescued = timers_rescued_.get();
  return s;
}

}  // namespace spindle::detail
