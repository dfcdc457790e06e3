// gather.hpp: the constants of gathering (gather.cpp; docs/io.md "Where a
// connection lives", docs/decisions/0015-gather.md).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>

namespace spindle::detail {

// Each worker samples its thread's schedstat at most this often, from its
// maintenance rounds and after each park: one pread a window.
inline constexpr std::chrono::milliseconds kLoadWindow{10};

// Shares of a window's wall time, in permille.
// A worker whose thread waited this long for a core in its last window
// shares one with other threads: the machine has no core to spare.
inline constexpr std::uint32_t kStarvedWait = 200;
// Two workers whose time on a core adds up to at most this much would fit
// on one: gathering their connections there saves the other's wake-ups
// when the machine is short of cores (one of them starved) ...
inline constexpr std::uint32_t kFitsOneCore = 1000;
// ... and when it is not, below this much.
inline constexpr std::uint32_t kLightLoad = 500;
// A worker's shares older than this many windows are stale: it has been
// parked since (no load).
inline constexpr int kStaleWindows = 3;
// After a watcher spread a worker's connections (saturated, or stuck
// kSaturatedPeriods, with a core), no worker gathers to it for this long:
// gathering at once would take them back before the trial's verdict.
inline constexpr std::chrono::milliseconds kRegatherAfter{30};

// SpreadTrials: whether spreading a saturated worker's connections pays
// here (one per runtime: Scheduler::spread_trials). A spread buys a core
// only if one is free: on a machine whose other threads (a client, other
// programs) take the rest, the workers then wait for cores in turn, or one
// of them runs on a core it takes from the client. Nothing cheap tells the
// cases apart beforehand: the machine's idle time did not (a client
// blocked on a saturated server leaves its core idle, and spreading then
// doubled the served requests; docs/decisions/0015-gather.md). So a
// spread is a trial, and it fails
//  - when a starved gather follows it within kTrial (the workers waited
//    for cores and gathered back), or
//  - at its verdict, the first judge() kTrial or more after its first
//    spread, when the workers' threads ran less than kBoughtShare of one
//    core in all since that spread: it bought less than a fifth of a core.
//    Measured on the 2-core VM (0015 "Trials judged by the CPU they
//    bought"): after a spread the two echo64 workers ran 1,000-1,100
//    permille together, a worker taking a little of the client's core,
//    and no starved gather followed, so every other trial "held" and
//    reset the backoff: about a trial every quarter second, the 2-worker
//    server at 0.94x of libuv C per CPU second where no spreads at all
//    made 1.02x.
// Each failed trial doubles how long saturation spreads nothing more
// (kFirstBackoff up to kMaxBackoff), and while they are backed off the
// workers gather back (gather.cpp, decide_gather); a trial that held
// starts the backoff over. Any worker may call any member: relaxed
// atomics (a race costs one trial or verdict more or less), but for
// open_, whose release in spread() and acquire in judge() give a verdict
// its own trial's baseline.
class SpreadTrials {
 public:
  using clock = std::chrono::steady_clock;
  static constexpr clock::duration kTrial = std::chrono::milliseconds(100);
  static constexpr clock::duration kFirstBackoff = std::chrono::milliseconds(100);
  static constexpr clock::duration kMaxBackoff = std::chrono::seconds(5);
  // Permille of one core: the workers' CPU time over a trial, divided by
  // its length, below which the trial bought no core. A saturated worker
  // ran ~1,000 before the spread.
  static constexpr std::int64_t kBoughtShare = 1200;

  bool allowed(clock::time_point now) const noexcept { return now.time_since_epoch().count() >= until_.load(std::memory_order_relaxed); }
  // A watcher spreads a saturated worker's connections now; cpu_ns: the
  // workers' threads' CPU time so far, summed (judge's baseline). Spreads
  // within kTrial of the first belong to its trial (a watcher asks once a
  // period while the worker stays saturated).
  void spread(clock::time_point now, std::int64_t cpu_ns) noexcept {
    if (!opens_trial(now)) return;
    // A new trial; the last one held: start the backoff over.
    if (!failed_.exchange(false, std::memory_order_relaxed)) backoff_.store(0, std::memory_order_relaxed);
    cpu_at_spread_.store(cpu_ns, std::memory_order_relaxed);
    last_.store(now.time_since_epoch().count(), std::memory_order_relaxed);
    // release; pairs with the acquire in judge(): the verdict reads this
    // trial's cpu_at_spread_ and last_, not the trial's before.
    open_.store(true, std::memory_order_release);
  }
  // Whether a spread now would open a new trial: the caller sums the
  // workers' CPU clocks for spread() only then.
  bool opens_trial(clock::time_point now) const noexcept {
    const clock::rep last = last_.load(std::memory_order_relaxed);
    return last == 0 || now.time_since_epoch().count() - last > kTrial.count();
  }
  // A worker began gathering because workers waited for cores.
  void starved_gather(clock::time_point now) noexcept {
    // Outside any trial's kTrial, or the trial failed already: no verdict.
    if (opens_trial(now) || failed_.load(std::memory_order_relaxed)) return;
    fail(now.time_since_epoch().count());
  }
  // Whether a trial waits for its verdict (cheap: the caller sums the
  // workers' CPU clocks only then).
  bool verdict_due(clock::time_point now) const noexcept {
    return open_.load(std::memory_order_relaxed) &&
           now.time_since_epoch().count() - last_.load(std::memory_order_relaxed) >= kTrial.count();
  }
  // The verdict on the open trial, once: cpu_ns as in spread(), now.
  void judge(clock::time_point now, std::int64_t cpu_ns) noexcept {
    // acquire; pairs with the release in spread().
    if (!verdict_due(now) || !open_.exchange(false, std::memory_order_acquire)) return;
    if (failed_.load(std::memory_order_relaxed)) return;  // a starved gather already failed it
    const clock::rep t = now.time_since_epoch().count();
    const std::int64_t span =
        std::chrono::duration_cast<std::chrono::nanoseconds>(clock::duration(t - last_.load(std::memory_order_relaxed)))
            .count();
    const std::int64_t used = cpu_ns - cpu_at_spread_.load(std::memory_order_relaxed);
    if (span > 0 && used * 1000 < kBoughtShare * span) fail(t);
  }

 private:
  void fail(clock::rep t) noexcept {
    failed_.store(true, std::memory_order_relaxed);
    const clock::rep b = std::clamp<clock::rep>(backoff_.load(std::memory_order_relaxed) * 2, kFirstBackoff.count(),
                                                kMaxBackoff.count());
    backoff_.store(b, std::memory_order_relaxed);
    until_.store(t + b, std::memory_order_relaxed);
  }

  std::atomic<clock::rep> last_{0};     // the last trial's first spread
  std::atomic<bool> failed_{false};     // the last trial failed
  std::atomic<bool> open_{false};       // the last trial awaits judge()
  std::atomic<std::int64_t> cpu_at_spread_{0};  // spread()'s cpu_ns
  std::atomic<clock::rep> backoff_{0};  // the last suppression's length
  std::atomic<clock::rep> until_{0};    // no spread before this
};

}  // namespace spindle::detail
