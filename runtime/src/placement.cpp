// placement.cpp: the placement policy (placement.hpp). Pure: every input is
// an argument, every effect a returned action or the caller's memory.
#include "placement.hpp"

namespace spindle::detail::placement {

namespace {
std::int64_t ns(Clock::duration d) noexcept { return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count(); }

// Whether V's thread had a core between the last running look m recorded
// and now; records this look. No, if it ran less than kHadCoreShare of the
// time and is runnable: it waits in the kernel's run queue. A thread that
// ran less because it slept (a fiber in a blocking call: 'S', 'D') had one:
// its fibers are stuck behind it like behind a busy one. The CPU clock, not
// schedstat's wait, because the kernel adds a wait to schedstat only when
// it ends (docs/decisions/0015-gather.md "The stuck looks were run-queue
// waits"). Without an earlier look, V's last window's wait share decides.
bool had_core(unsigned peer, PeerMemory& m, TimePoint now, const CpuSource& cpu) noexcept {
  const std::int64_t t = cpu.thread_cpu_ns(peer);
  bool had;
  if (t >= 0 && m.cpu_ns >= 0 && now > m.cpu_at) {
    had = (t - m.cpu_ns) * 1000 >= kHadCoreShare * ns(now - m.cpu_at) || cpu.thread_state(peer) != 'R';
  } else {
    had = cpu.wait_share(peer) < static_cast<std::uint32_t>(kHadCoreShare);
  }
  m.cpu_ns = t;
  m.cpu_at = now;
  return had;
}
}  // namespace

LookActions look(const Config& c, unsigned peer, const PeerSnapshot& v, PeerMemory& m, TimePoint now,
                 const CpuSource& cpu, bool spreads_allowed) noexcept {
  LookActions a;
  if (!c.watching()) return a;
  const auto after = c.period;
  // A consolidating io worker: its looks back off while it keeps
  // switching, and it may be without a core (had_core).
  const bool io_policy = c.consolidate && v.io;
  const auto paced = [&] { return (after * kIdleLookPeriods) * (io_policy ? (1 << m.backoff) : 1); };
  if (v.fiber == 0) {
    // Parked or in its scheduler: it runs its own queues and timers (a
    // parked worker's timer fd fires for its heap). Keep watching while it
    // is awake or switched since the last look, so a worker that parks and
    // wakes often keeps its watcher (Scheduler::ensure_watcher).
    if (!v.parked || v.switches != m.switches) a.next = now + paced();
    // Every window starts over now; only the pace's backoff is kept.
    m = PeerMemory{.switches = v.switches,
                   .since = now,
                   .window_switches = v.switches,
                   .window_at = now,
                   .parks = v.parks,
                   .awake_since = now,
                   .backoff = m.backoff};
    return a;
  }
  const bool progressed = v.fiber != m.fiber || v.switches != m.switches;
  if (progressed) {
    m.fiber = v.fiber;
    m.switches = v.switches;
    m.since = now;
  }
  const bool stuck = now - m.since >= after;
  // Rule 2: a window of at least a period with fewer than kSlowSwitches
  // switches a period on average: looks paced slower than a period (the
  // idle pace, its backoff) see longer windows, and a count per window
  // would let fibers of up to a window / kSlowSwitches pass. The window
  // restarts at each look that ends one. A memory that never had one
  // (the workers start theirs at the runtime's start) starts it: no
  // verdict. So does a look that finds V parked since the last one
  // (m.parks, rule 3's count, not yet updated): V ran out of fibers in
  // the window, so nothing waited behind its fibers there, and its idle
  // time would pass for slowness. A light load (a few switches per
  // period, each burst run out and parked) was asked for a hand-off at
  // every look that found it running, and each took its fibers to the
  // watcher's core and their sockets away from consolidation (spread_test
  // "a light load ... consolidates on one" failed 3 runs of 8).
  bool slow = false;
  if (m.window_at == TimePoint{} || v.parks != m.parks) {
    m.window_switches = v.switches;
    m.window_at = now;
  } else if (const auto window = now - m.window_at; window >= after) {
    // Both sides in switches x nanoseconds: < 2^64 for windows of days.
    slow = (v.switches - m.window_switches) * static_cast<std::uint64_t>(ns(after)) <
           kSlowSwitches * static_cast<std::uint64_t>(ns(window));
    m.window_switches = v.switches;
    m.window_at = now;
  }
  // Rule 3: no park for kSaturatedPeriods while holding readiness-woken
  // fibers. The window restarts at each park seen and after it triggers.
  if (v.parks != m.parks || m.awake_since == TimePoint{}) {
    m.parks = v.parks;
    m.awake_since = now;
  }
  const bool saturated = now - m.awake_since >= after * kSaturatedPeriods && v.holds_polled;
  if (saturated) m.awake_since = now;
  // Rule 5's "no core": an io worker waiting for a core is left alone (its
  // sockets stay, its fibers stay), since taking them takes a core from no
  // one; but for kNoCorePeriods in one fiber (the kernel may never move it).
  const bool core = io_policy ? had_core(peer, m, now, cpu) : true;
  const bool take = core || now - m.since >= after * kNoCorePeriods;
  const bool long_stuck = now - m.since >= after * kSaturatedPeriods;
  a.spread = (saturated || long_stuck) && core && (!c.consolidate || spreads_allowed);
  const bool triggered = stuck || slow || a.spread;
  // Sockets follow the fibers taken, unless they are consolidated on V and
  // V is not spreading: this worker would move them back.
  a.move = triggered && core && (!v.my_target || a.spread);
  // Only once it is stuck, slow or saturated: asking a worker that merely
  // runs would split every pair of ping-ponging fibers across cores.
  if (triggered && take && v.holds_fibers && now - m.asked >= after) {
    a.handoff = true;
    m.asked = now;
  }
  // Its sockets' readiness waits in its instance until its next
  // maintenance round: deliver it from here.
  a.rescue_poll = stuck && take;
  // Rule 4: a due timer of a stuck worker, or one overdue a quarter period.
  const auto overdue_after = after / kOverdueDivisor;
  const TimePoint due = v.next_deadline;
  a.take_timers = due <= now && (stuck || now - due >= overdue_after);
  // The pace: back to the idle pace at anything a look acts on, one
  // doubling slower at each look that found it past its last switch.
  if (triggered || v.pending) {
    m.backoff = 0;
  } else if (progressed && m.backoff < kMaxLookBackoff) {
    ++m.backoff;
  }
  // Next: one period after it got stuck while it holds FIFO or stealable
  // fibers; else the (backed-off) idle pace, but never before it could be
  // stuck. And when its next timer may be taken: once overdue, or at its
  // deadline if by then it has been in this fiber a period. Saturating: a
  // deadline near TimePoint::max() must not wrap.
  const TimePoint timer_at = due >= TimePoint::max() - overdue_after
                                 ? due
                                 : std::min(due + overdue_after, std::max(due, m.since + after));
  const TimePoint at = v.pending ? (stuck ? now + after : m.since + after) : std::max(m.since + after, now + paced());
  a.next = std::min(at, timer_at);
  return a;
}

TargetDecision consolidation_target(const Config& c, unsigned self, std::span<const LoadSnapshot> loads,
                                    int current, std::int64_t now_ns, bool backed_off) noexcept {
  TargetDecision d;
  if (!c.consolidate || !c.watching() || self >= loads.size()) return d;
  const std::int64_t stale = ns(kLoadWindow) * kStaleWindows;
  const auto fresh = [&](const LoadSnapshot& l) { return l.shares_at != 0 && now_ns - l.shares_at <= stale; };
  const LoadSnapshot& me = loads[self];
  const std::uint32_t my_run = fresh(me) ? me.run : 0;
  const std::uint32_t my_wait = fresh(me) ? me.wait : 0;
  // Always toward a lower index, so two workers never consolidate to each other.
  for (unsigned j = 0; j < self; ++j) {
    const LoadSnapshot& a = loads[j];
    // Not to a worker without an instance, nor one that consolidates
    // itself, nor one a watcher lately saw unable to keep up.
    if (!a.io || a.target >= 0 || now_ns < a.refused_until) continue;
    if (current == static_cast<int>(j)) {
      d.target = current;  // until a watcher stops it (a spread)
      return d;
    }
    const std::uint32_t run = fresh(a) ? a.run : 0;
    const std::uint32_t wait = fresh(a) ? a.wait : 0;
    const std::uint32_t sum = run + my_run;
    if (sum <= kLightLoad || (backed_off && sum <= SpreadTrials::kBoughtShare)) {
      d.target = static_cast<int>(j);
      return d;
    }
    if (sum <= kFitsOneCore && (wait >= kStarvedWait || my_wait >= kStarvedWait)) {
      d.target = static_cast<int>(j);
      d.starved = true;
      return d;
    }
  }
  return d;
}

void SpreadTrials::spread(TimePoint now, std::int64_t cpu_ns) noexcept {
  if (!opens_trial(now)) return;
  // A new trial; the last one held: start the backoff over.
  if (!failed_.exchange(false, std::memory_order_relaxed)) backoff_.store(0, std::memory_order_relaxed);
  cpu_at_spread_.store(cpu_ns, std::memory_order_relaxed);
  last_.store(now.time_since_epoch().count(), std::memory_order_relaxed);
  // release; pairs with the acquire in judge(): the verdict reads this
  // trial's cpu_at_spread_ and last_, not the trial's before.
  open_.store(true, std::memory_order_release);
}

void SpreadTrials::starved_consolidation(TimePoint now) noexcept {
  // Outside any trial's kTrial, or the trial failed already: no verdict.
  if (opens_trial(now) || failed_.load(std::memory_order_relaxed)) return;
  fail(now.time_since_epoch().count());
}

void SpreadTrials::judge(TimePoint now, std::int64_t cpu_ns) noexcept {
  // acquire; pairs with the release in spread().
  if (!verdict_due(now) || !open_.exchange(false, std::memory_order_acquire)) return;
  if (failed_.load(std::memory_order_relaxed)) return;  // a starved consolidation failed it already
  const Clock::rep t = now.time_since_epoch().count();
  const std::int64_t span = ns(Clock::duration(t - last_.load(std::memory_order_relaxed)));
  const std::int64_t used = cpu_ns - cpu_at_spread_.load(std::memory_order_relaxed);
  if (span > 0 && used * 1000 < kBoughtShare * span) fail(t);
}

void SpreadTrials::fail(Clock::rep t) noexcept {
  failed_.store(true, std::memory_order_relaxed);
  const Clock::rep b =
      std::clamp<Clock::rep>(backoff_.load(std::memory_order_relaxed) * 2, kFirstBackoff.count(), kMaxBackoff.count());
  backoff_.store(b, std::memory_order_relaxed);
  until_.store(t + b, std::memory_order_relaxed);
}

void SpareCpu::sample(TimePoint now, const Times& t) noexcept {
  // acquire/release: the next sampler sees last_ as this one left it.
  if (sampling_.exchange(true, std::memory_order_acquire)) return;
  const Clock::rep n = now.time_since_epoch().count();
  const Clock::rep at = at_.load(std::memory_order_relaxed);
  std::int64_t p = -1;
  if (at != 0 && n - at <= kStale.count() && t.total > last_.total && t.idle >= last_.idle && t.cpus > 0) {
    p = static_cast<std::int64_t>((t.idle - last_.idle) * 1000 * t.cpus / (t.total - last_.total));
  }
  if (at == 0 || n - at >= kWindow.count()) {
    idle_permille_.store(p, std::memory_order_relaxed);
    last_ = t;
    at_.store(n, std::memory_order_relaxed);
  }
  sampling_.store(false, std::memory_order_release);
}

}  // namespace spindle::detail::placement
