// placement.hpp: where fibers and their sockets run, as one policy.
//
// Every placement decision of the runtime is made here, by pure functions:
// they read a snapshot (what a worker saw of another one, the load shares
// the workers published, a CPU-time source, the time `now`) and return
// actions. They touch no thread, no queue and no clock; the workers take
// the snapshots and apply the actions (handoff.cpp: watch_others and
// fire_overdue_peers; load.cpp: sample_load). So tests drive the policy
// with scripted snapshots (tests/runtime/placement_test.cpp), and the
// runtime runs the same code.
//
// The rules, in the order look() applies them to another worker V:
//  1. stuck: V has run the same fiber for a period (handoff_after). Its
//     queued fibers go to idle workers (hand-off), its sockets' readiness
//     is delivered from here (rescue poll), its due timers fire here.
//  2. slow: V switched fewer than kSlowSwitches times in a period: it is
//     asked for a hand-off as if stuck (if it holds queued fibers).
//  3. saturated: V has not parked for kSaturatedPeriods while holding
//     fibers its own readiness woke: hand-off, and V's connections spread
//     (the fibers handed off take their sockets along).
//  4. a timer of V overdue by a quarter period fires here (V's owner would
//     fire it within microseconds if it ran its scheduler).
//  5. consolidation (RuntimeOptions::consolidate_io, on by default): a
//     worker whose load and a lower-numbered one's fit on one core moves
//     the sockets it waits on there (consolidation_target), and while it
//     does, a look at an io worker that has no core (its thread waits in
//     the kernel's run queue) neither hands off nor moves anything, and a
//     spread is a trial that backs off when it buys no core (SpreadTrials).
// Each constant below is justified, with what breaks below and above it,
// in docs/decisions/0017-placement.md "The constants".
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <span>

namespace spindle::detail::placement {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

// ---- the constants (docs/decisions/0017-placement.md "The constants") ----

// A watcher looks at a worker that merely runs every this many periods.
inline constexpr int kIdleLookPeriods = 3;
// ... and at a consolidating io worker that keeps switching, up to 2^this
// times slower.
inline constexpr int kMaxLookBackoff = 2;
// Fewer switches than this in a period, with fibers queued: slow.
inline constexpr unsigned kSlowSwitches = 8;
// Awake this many periods holding readiness-woken fibers: saturated; in one
// fiber this long: stuck long enough to spread.
inline constexpr int kSaturatedPeriods = 5;
// A worker without a core is left alone at most this many periods.
inline constexpr int kNoCorePeriods = 25;
// A timer this fraction of a period overdue fires on another worker.
inline constexpr int kOverdueDivisor = 4;
// A watched thread that ran less than this permille of the time between
// two looks, and is runnable, had no core.
inline constexpr std::int64_t kHadCoreShare = 500;
// Each worker publishes its shares of a window this long.
inline constexpr std::chrono::milliseconds kLoadWindow{10};
// Permille of a window: waited for a core this long: starved.
inline constexpr std::uint32_t kStarvedWait = 200;
// Two run shares adding up to this fit on one core (while starved) ...
inline constexpr std::uint32_t kFitsOneCore = 1000;
// ... or to this (always).
inline constexpr std::uint32_t kLightLoad = 500;
// Shares older than this many windows count as zero (the worker parked).
inline constexpr int kStaleWindows = 3;
// After a spread, nobody consolidates to that worker for this long.
inline constexpr std::chrono::milliseconds kReconsolidateAfter{30};

struct Config {
  Clock::duration period{};  // RuntimeOptions::handoff_after; zero: no policy at all
  bool consolidate = false;  // RuntimeOptions::consolidate_io
  unsigned workers = 1;
  bool watching() const noexcept { return period.count() > 0 && workers >= 2; }
};

// ---- looks at another worker (rules 1-4) ----

// What a watcher reads of another worker V at one look: relaxed hints,
// each read once.
struct PeerSnapshot {
  std::uintptr_t fiber = 0;  // V's running fiber; 0: parked or in its scheduler
  std::uint64_t switches = 0;
  std::uint64_t parks = 0;
  bool parked = false;
  bool holds_fibers = false;  // its LIFO slot, FIFO or polled FIFO holds one
  bool holds_polled = false;  // its polled FIFO holds one (woken by its readiness)
  bool pending = false;       // its FIFO or stealable deque holds one
  bool io = false;            // it has an io poller
  bool my_target = false;     // the watcher consolidates its sockets to V
  TimePoint next_deadline = TimePoint::max();  // V's earliest timer
};

// What the watcher remembers of V between looks. Owned by the watcher.
struct PeerMemory {
  std::uintptr_t fiber = 0;  // the fiber seen last, since `since`
  std::uint64_t switches = 0;
  TimePoint since{};
  TimePoint asked{};                 // the last hand-off request
  std::uint64_t window_switches = 0;  // switch count when the slow window began
  TimePoint window_at{};
  std::uint64_t parks = 0;  // park count at the last look (the awake and slow windows began after it)
  TimePoint awake_since{};
  std::int64_t cpu_ns = -1;  // V's thread CPU time at the last running look (-1: none)
  TimePoint cpu_at{};
  std::uint8_t backoff = 0;  // doublings of the idle pace (kMaxLookBackoff)
};

// The CPU time of the workers' threads, read through here: the runtime
// reads the kernel (load.cpp, KernelCpu), tests script it.
class CpuSource {
 public:
  // V's thread's CPU time so far, or -1 when unknown.
  virtual std::int64_t thread_cpu_ns(unsigned worker) const noexcept = 0;
  // V's thread's state letter ('R' runnable; 'S', 'D' blocked), 0 unknown.
  virtual char thread_state(unsigned worker) const noexcept = 0;
  // V's last published wait share (permille), for when no CPU time is known.
  virtual std::uint32_t wait_share(unsigned worker) const noexcept = 0;

 protected:
  ~CpuSource() = default;
};

// What the watcher does about V after one look.
struct LookActions {
  bool handoff = false;      // ask V to hand its queued fibers to idle workers
  bool move = false;         // the fibers taken (handed off or rescued) take their sockets along
  bool rescue_poll = false;  // poll V's io instance from here
  bool take_timers = false;  // fire V's due timers here
  bool spread = false;       // V cannot keep up: stop consolidating to it (and open a spread trial)
  TimePoint next = TimePoint::max();  // look at V again by then
};

// One look at worker `peer`: updates `m` and returns the actions.
// spreads_allowed: SpreadTrials::allowed(now) (ignored without consolidate).
LookActions look(const Config& c, unsigned peer, const PeerSnapshot& v, PeerMemory& m, TimePoint now,
                 const CpuSource& cpu, bool spreads_allowed) noexcept;

// When a watcher that found nothing to act on looks again while some
// worker is awake.
inline TimePoint idle_look(const Config& c, TimePoint now) noexcept { return now + c.period * kIdleLookPeriods; }

// Whether a running worker fires another worker's timer due at `due` in its
// maintenance round (rule 4, without the stuck part a watcher adds).
inline bool timer_overdue(const Config& c, TimePoint due, TimePoint now) noexcept {
  return c.watching() && due != TimePoint::max() && due <= now - c.period / kOverdueDivisor;
}

// ---- consolidation (rule 5) ----

// A worker's load as it published it (load.cpp, sample_load).
struct LoadSnapshot {
  bool io = false;                 // it has an io poller
  int target = -1;                 // where it consolidates to itself
  std::int64_t refused_until = 0;  // nobody consolidates to it before this (ns)
  std::uint32_t run = 0, wait = 0;  // permille of its last window on a core / waiting for one
  std::int64_t shares_at = 0;      // when those were published (ns); 0: never
};

struct TargetDecision {
  int target = -1;       // the worker to move sockets to, or -1
  bool starved = false;  // chosen because a worker waited for a core (fails an open spread trial)
};

// Where worker `self` consolidates its sockets at now_ns, given every
// worker's load (`loads[self]` its own), its current target, and whether
// spreads are backed off (a failed trial: the share it failed to exceed
// then also fits).
TargetDecision consolidation_target(const Config& c, unsigned self, std::span<const LoadSnapshot> loads,
                                    int current, std::int64_t now_ns, bool backed_off) noexcept;

// Permille of `whole` that `part` is, clamped to 0..1000.
inline std::uint32_t permille(std::int64_t part, std::int64_t whole) noexcept {
  if (whole <= 0 || part <= 0) return 0;
  return static_cast<std::uint32_t>(std::min<std::int64_t>(part * 1000 / whole, 1000));
}

// ---- spread trials ----

// SpreadTrials: whether spreading a saturated worker's connections pays
// here (one per runtime). A spread buys a core only if one is free, and
// nothing cheap tells that beforehand (the machine's idle time did not:
// docs/decisions/0015-gather.md). So a spread is a trial, and it fails
//  - when a starved consolidation follows it within kTrial (the workers
//    waited for cores and came back together), or
//  - at its verdict, the first judge() kTrial or more after its first
//    spread, when the workers' threads ran less than kBoughtShare of one
//    core in all since that spread.
// Each failed trial doubles how long spreads stay off (kFirstBackoff up to
// kMaxBackoff), and while they are off the workers consolidate back; a
// trial that held starts the backoff over. Times are passed in (now); the
// workers' CPU time too. Any worker may call any member: relaxed atomics
// (a race costs one trial or verdict more or less), but for open_, whose
// release in spread() and acquire in judge() give a verdict its own
// trial's baseline.
class SpreadTrials {
 public:
  static constexpr Clock::duration kTrial = std::chrono::milliseconds(100);
  static constexpr Clock::duration kFirstBackoff = std::chrono::milliseconds(100);
  static constexpr Clock::duration kMaxBackoff = std::chrono::seconds(5);
  // Permille of one core over a trial below which it bought none (a
  // saturated worker ran ~1,000 before the spread).
  static constexpr std::int64_t kBoughtShare = 1200;

  bool allowed(TimePoint now) const noexcept {
    return now.time_since_epoch().count() >= until_.load(std::memory_order_relaxed);
  }
  // A watcher spreads now; cpu_ns: the workers' CPU time so far, summed.
  // Spreads within kTrial of the first belong to its trial.
  void spread(TimePoint now, std::int64_t cpu_ns) noexcept;
  // Whether a spread now would open a new trial (the caller sums the
  // workers' CPU clocks for spread() only then).
  bool opens_trial(TimePoint now) const noexcept {
    const Clock::rep last = last_.load(std::memory_order_relaxed);
    return last == 0 || now.time_since_epoch().count() - last > kTrial.count();
  }
  // A worker began consolidating because workers waited for cores.
  void starved_consolidation(TimePoint now) noexcept;
  // Whether a trial waits for its verdict.
  bool verdict_due(TimePoint now) const noexcept {
    return open_.load(std::memory_order_relaxed) &&
           now.time_since_epoch().count() - last_.load(std::memory_order_relaxed) >= kTrial.count();
  }
  // The verdict on the open trial, once.
  void judge(TimePoint now, std::int64_t cpu_ns) noexcept;

 private:
  void fail(Clock::rep t) noexcept;

  std::atomic<Clock::rep> last_{0};             // the last trial's first spread
  std::atomic<bool> failed_{false};             // the last trial failed
  std::atomic<bool> open_{false};               // the last trial awaits judge()
  std::atomic<std::int64_t> cpu_at_spread_{0};  // spread()'s cpu_ns
  std::atomic<Clock::rep> backoff_{0};          // the last suppression's length
  std::atomic<Clock::rep> until_{0};            // no spread before this
};

// steal_unpaid: whether a steal did not pay (Worker::steal_pays;
// docs/runtime.md "Stealing what pays"). per: the thief's time per stolen
// fiber, from the steal until it ran dry again (the fibers, whatever they
// spawned, and the transfers); took: what taking one fiber off the
// victim's deque cost the thief, a running average over its steals (the
// victim's deque lines coming over: this machine's cache-line transfer, as
// it is now); worth: RuntimeOptions::steal_worth, the cap. A fiber that ran
// for less than kCostTransfers such transfers cost its owner more than it
// took off it: its end must go back (the joiner's flag, the registry), and
// its owner's next fibers wait behind those lines. Measured on the 2-core
// VM, whose transfers are cheap in one state (two hyperthreads of a core,
// ~8-30 ns a fiber taken) and dear in another: there a flat 400 ns bar
// paused steals of fibers doing 100-300 ns of work that ran 1.5x faster
// stolen.
constexpr int kCostTransfers = 4;
inline bool steal_unpaid(Clock::duration per, Clock::duration took, Clock::duration worth) noexcept {
  return per < std::min(worth, took * kCostTransfers);
}

// SpareCpu: whether the machine lately had a core to spare, sampled from
// the kernel's CPU times (the whole machine's idle and total time; load.cpp
// reads /proc/stat) at most once a kWindow by the watchers' looks. A spread
// can only buy what is idle: when the workers' saturated worker and the
// rest of the machine (a client, other processes) keep every core busy, a
// trial cannot reach kBoughtShare, and each one costs a hand-off and the
// move of a batch of sockets there and back (echo64 at 1,000 connections on
// 2 workers, with its client on the other core: docs/io.md "Where a
// connection lives"). So no spread opens while under kSparePermille of a
// core was idle over the last window. Unknown (no /proc/stat, the first
// window, or a window of over kStale after a quiet spell): spare, and the
// trial's verdict decides as before.
class SpareCpu {
 public:
  static constexpr Clock::duration kWindow = std::chrono::milliseconds(100);
  static constexpr Clock::duration kStale = std::chrono::seconds(1);
  // What a trial must buy beyond the saturated worker's own core.
  static constexpr std::int64_t kSparePermille = SpreadTrials::kBoughtShare - 1000;

  // The kernel's CPU times, in any one unit (jiffies), summed over CPUs.
  struct Times {
    std::uint64_t idle = 0, total = 0;
    unsigned cpus = 0;
  };
  // Whether a sample is due (the caller reads the kernel only then).
  bool wants_sample(TimePoint now) const noexcept {
    const Clock::rep at = at_.load(std::memory_order_relaxed);
    return at == 0 || now.time_since_epoch().count() - at >= kWindow.count();
  }
  // Any thread; a sample that finds another one in progress is dropped.
  void sample(TimePoint now, const Times& t) noexcept;
  // Idle over the last window, permille of one core; -1 unknown.
  std::int64_t idle_permille() const noexcept { return idle_permille_.load(std::memory_order_relaxed); }
  bool spare() const noexcept {
    const std::int64_t p = idle_permille();
    return p < 0 || p >= kSparePermille;
  }

 private:
  std::atomic<bool> sampling_{false};  // held by the one sample() in progress
  std::atomic<Clock::rep> at_{0};      // when the last sample was taken (0: none)
  Times last_{};                       // the last sample; only under sampling_
  std::atomic<std::int64_t> idle_permille_{-1};
};

}  // namespace spindle::detail::placement
