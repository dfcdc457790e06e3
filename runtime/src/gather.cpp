// gather.cpp: each worker's load, and gathering connections on fewer
// workers while one would serve them (docs/io.md "Where a connection
// lives", docs/decisions/0015-gather.md).
//
// Spreading (accept's round robin, the saturation hand-off) buys cores.
// Where it buys none, it costs: two workers that share a load one worker
// keeps up with each park and wake more often, and on a machine with
// fewer free cores than busy threads (a 2-core VM whose client holds one)
// they take turns on one core, each wake-up a context switch. So:
//  - Each worker samples its thread's time on a core and time waiting for
//    one (schedstat.hpp) once a kLoadWindow and publishes the window's
//    shares.
//  - A worker B gathers to a lower-numbered worker A (gather_to) when the
//    two would fit on one core: their run shares add up to at most
//    kFitsOneCore while either waited kStarvedWait for a core, or to at
//    most kLightLoad, or, while spreads are backed off, to at most the
//    share a spread failed to exceed (SpreadTrials::kBoughtShare). Then
//    each read wait on B moves its socket to A's epoll instance
//    (io_hook.hpp, take_move_target): the fiber's next readiness wakes it
//    on A. Always toward the lower index, so two
//    workers never gather to each other.
//  - B keeps gathering until a watcher of A sees A saturated, or stuck in
//    one fiber kSaturatedPeriods, with a core, and spreads A's
//    connections (handoff.cpp): then nobody gathers to A for
//    kRegatherAfter.
//  - Such a spread is a trial (gather.hpp, SpreadTrials): if the workers
//    are starved again soon after, or ran less than kBoughtShare of a core
//    in all over kTrial, it bought no core, and spreads back off.
//  - A worker without a core is not stuck: the watcher neither hands off
//    nor rescues such a worker's fibers, and their sockets stay (had_core).
//    Else the kernel's preemption of one worker moved its connections to
//    the next, and gathering would never hold.
// With RuntimeOptions::gather_io off, or handoff_after = 0 (no watchers),
// none of it happens.
#include <algorithm>
#include <ctime>

#include "gather.hpp"
#include "scheduler.hpp"
#include "worker.hpp"

namespace spindle::detail {

namespace {
std::int64_t ns_of(std::chrono::steady_clock::time_point t) noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}
std::uint32_t permille(std::int64_t part, std::int64_t whole) noexcept {
  if (whole <= 0 || part <= 0) return 0;
  return static_cast<std::uint32_t>(std::min<std::int64_t>(part * 1000 / whole, 1000));
}
}  // namespace

void Worker::sample_load(std::chrono::steady_clock::time_point coarse) noexcept {
  if (coarse < core_.next_sample) [[likely]] return;
  const auto now = std::chrono::steady_clock::now();
  core_.next_sample = now + kLoadWindow;
  const SchedSample s = read_schedstat(remote_.schedstat_fd);
  if (!s.valid()) return;
  const std::int64_t at = ns_of(now);
  if (core_.last_sample.valid() && at > core_.last_sample_at) {
    const std::int64_t span = at - core_.last_sample_at;
    remote_.run_share.store(permille(s.run_ns - core_.last_sample.run_ns, span), std::memory_order_relaxed);
    remote_.wait_share.store(permille(s.wait_ns - core_.last_sample.wait_ns, span), std::memory_order_relaxed);
    remote_.shares_at.store(at, std::memory_order_relaxed);
  }
  core_.last_sample = s;
  core_.last_sample_at = at;
  decide_gather(now);
}

void Worker::decide_gather(std::chrono::steady_clock::time_point now) noexcept {
  const std::int64_t now_ns = ns_of(now);
  int to = -1;
  const auto after = sched_.options().handoff_after;
  if (sched_.options().gather_io && after.count() > 0 && sched_.size() >= 2 && core_.io_poll_on &&
      !sched_.stopping()) {
    // A spread's trial gets its verdict from whichever worker samples
    // first once it is due (gather.hpp, SpreadTrials).
    SpreadTrials& trials = sched_.spread_trials();
    if (trials.verdict_due(now)) trials.judge(now, workers_cpu_ns());
    // While spreads are backed off, the last one bought no core: gather
    // back whatever it left spread, up to the share it failed to exceed.
    const bool backed_off = !trials.allowed(now);
    const int current = gather_target();
    const std::int64_t stale = std::chrono::nanoseconds(kLoadWindow).count() * kStaleWindows;
    const bool fresh_me = now_ns - remote_.shares_at.load(std::memory_order_relaxed) <= stale;
    const std::uint32_t my_run = fresh_me ? remote_.run_share.load(std::memory_order_relaxed) : 0;
    const std::uint32_t my_wait = fresh_me ? remote_.wait_share.load(std::memory_order_relaxed) : 0;
    for (unsigned j = 0; j < index_; ++j) {
      Worker& a = sched_.worker(j);
      // Not to a worker without an instance, nor one that gathers itself,
      // nor one a watcher lately saw unable to keep up (refuse_gathering).
      if (!a.remote_.poller_set.load(std::memory_order_relaxed) || a.gather_target() >= 0 ||
          now_ns < a.remote_.no_gather_until.load(std::memory_order_relaxed)) {
        continue;
      }
      if (current == static_cast<int>(j)) {
        to = current;  // until a watcher stops it (handoff.cpp)
        break;
      }
      const bool fresh = now_ns - a.remote_.shares_at.load(std::memory_order_relaxed) <= stale;
      const std::uint32_t run = fresh ? a.remote_.run_share.load(std::memory_order_relaxed) : 0;
      const std::uint32_t wait = fresh ? a.remote_.wait_share.load(std::memory_order_relaxed) : 0;
      const std::uint32_t sum = run + my_run;
      if (sum <= kLightLoad || (backed_off && sum <= SpreadTrials::kBoughtShare)) {
        to = static_cast<int>(j);
        break;
      }
      if (sum <= kFitsOneCore && (wait >= kStarvedWait || my_wait >= kStarvedWait)) {
        to = static_cast<int>(j);
        // A spread just before bought no core (gather.hpp, SpreadTrials).
        trials.starved_gather(now);
        break;
      }
    }
  }
  remote_.gather_to.store(to, std::memory_order_relaxed);
}

void Worker::refuse_gathering(Worker& v, std::chrono::steady_clock::time_point now) noexcept {
  v.remote_.no_gather_until.store(ns_of(now + kRegatherAfter), std::memory_order_relaxed);
  // Ours at once (we are the owner of our gather_to); the others' at their
  // next window.
  if (gather_target() == static_cast<int>(v.index_)) remote_.gather_to.store(-1, std::memory_order_relaxed);
}

// had_core: the watcher's two looks at v, the last one (s.cpu_ns at
// s.cpu_at) and this one (now): did v's thread have a core? No, if it ran
// less than half the time between and is runnable now: it waits in the
// kernel's run queue (or ran briefly and waits again). A thread that ran
// less because it slept (a fiber in a blocking call: state S or D) had
// one; its fibers are stuck behind it like behind a busy one.
//
// Why the CPU clock and not schedstat's wait: the kernel adds a run-queue
// wait to schedstat only when the wait ends, so a thread still waiting
// shows none of it. Measured on the 2-core VM (docs/decisions/0015-gather.md
// "The stuck looks were run-queue waits"): with schedstat, most stuck looks
// of a gathered echo worker counted as having a core. The thread's CPU
// clock includes the slice it is running now.
//
// Without the earlier look (v was parked then, or the clock cannot be
// read), v's last window's wait share decides.
bool Worker::had_core(const Worker& v, Watch& s, std::chrono::steady_clock::time_point now) noexcept {
  const std::int64_t cpu = thread_cpu_ns(v);
  bool had;
  if (cpu >= 0 && s.cpu_ns >= 0 && now > s.cpu_at) {
    const std::int64_t span = std::chrono::duration_cast<std::chrono::nanoseconds>(now - s.cpu_at).count();
    had = (cpu - s.cpu_ns) * 2 >= span || read_thread_state(v.remote_.stat_fd) != 'R';
  } else {
    had = v.remote_.wait_share.load(std::memory_order_relaxed) < 500;
  }
  s.cpu_ns = cpu;
  s.cpu_at = now;
  return had;
}

std::int64_t Worker::thread_cpu_ns(const Worker& v) noexcept {
  // acquire; pairs with the release in thread_main (stat_fd, cpu_clock).
  if (!v.remote_.tid_set.load(std::memory_order_acquire) || v.remote_.stat_fd < 0) return -1;
  timespec ts;
  if (clock_gettime(v.remote_.cpu_clock, &ts) != 0) return -1;
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

std::int64_t Worker::workers_cpu_ns() const noexcept {
  std::int64_t sum = 0;
  for (unsigned i = 0; i < sched_.size(); ++i) sum += std::max<std::int64_t>(thread_cpu_ns(sched_.worker(i)), 0);
  return sum;
}

}  // namespace spindle::detail
