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
// programs) take the rest, the workers then wait for cores in turn, and
// gathering takes the connections back within a window or two (that is a
// starved gather). Nothing cheap tells the two apart beforehand: the
// machine's idle time did not (a client blocked on a saturated server
// leaves its core idle, and spreading then doubled the served requests;
// docs/decisions/0015-gather.md). So a spread is a trial: each one that a
// starved gather follows within kTrial doubles how long saturation spreads
// nothing more (kFirstBackoff up to kMaxBackoff), and a spread after one
// that held starts over. Any worker may call any member (relaxed atomics:
// a race costs one trial more or less).
class SpreadTrials {
 public:
  using clock = std::chrono::steady_clock;
  static constexpr clock::duration kTrial = std::chrono::milliseconds(100);
  static constexpr clock::duration kFirstBackoff = std::chrono::milliseconds(100);
  static constexpr clock::duration kMaxBackoff = std::chrono::seconds(5);

  bool allowed(clock::time_point now) const noexcept { return now.time_since_epoch().count() >= until_.load(std::memory_order_relaxed); }
  // A watcher spreads a saturated worker's connections now. Spreads
  // within kTrial of the first belong to its trial (a watcher asks once a
  // period while the worker stays saturated).
  void spread(clock::time_point now) noexcept {
    const clock::rep t = now.time_since_epoch().count();
    const clock::rep last = last_.load(std::memory_order_relaxed);
    if (last != 0 && t - last <= kTrial.count()) return;
    // A new trial; the last one held: start the backoff over.
    if (!failed_.exchange(false, std::memory_order_relaxed)) backoff_.store(0, std::memory_order_relaxed);
    last_.store(t, std::memory_order_relaxed);
  }
  // A worker began gathering because workers waited for cores.
  void starved_gather(clock::time_point now) noexcept {
    const clock::rep last = last_.load(std::memory_order_relaxed);
    const clock::rep t = now.time_since_epoch().count();
    if (last == 0 || t - last > kTrial.count() || failed_.load(std::memory_order_relaxed)) return;
    failed_.store(true, std::memory_order_relaxed);
    const clock::rep b = std::clamp<clock::rep>(backoff_.load(std::memory_order_relaxed) * 2, kFirstBackoff.count(),
                                                kMaxBackoff.count());
    backoff_.store(b, std::memory_order_relaxed);
    until_.store(t + b, std::memory_order_relaxed);
  }

 private:
  std::atomic<clock::rep> last_{0};     // the last spread
  std::atomic<bool> failed_{false};     // a starved gather followed it
  std::atomic<clock::rep> backoff_{0};  // the last suppression's length
  std::atomic<clock::rep> until_{0};    // no spread before this
};

}  // namespace spindle::detail
