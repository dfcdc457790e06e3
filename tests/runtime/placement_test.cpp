// The placement policy (runtime/src/placement.hpp), driven with scripted
// snapshots: look() at another worker (stuck, slow, saturated, overdue
// timers, the next look, a worker without a core), consolidation_target(),
// timer_overdue() and SpreadTrials. Tables of rows, one trigger and one
// non-trigger per rule and constant, and scenarios as sequences of looks.
// Made-up times and CPU times: no runtime, no thread, no sleep.
#include <catch2/catch.hpp>

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "placement.hpp"

namespace pl = spindle::detail::placement;
using pl::Clock;
using pl::TimePoint;
using namespace std::chrono_literals;
using std::chrono::milliseconds;

namespace {

// One period (RuntimeOptions::handoff_after's default) and a start well
// after the clock's epoch, which PeerMemory's zero times stand for.
constexpr Clock::duration P = 200us;
const TimePoint t0 = TimePoint{} + 1h;
constexpr unsigned kPeer = 2;  // the worker looked at
constexpr std::uintptr_t kFiber = 0x1000, kOtherFiber = 0x2000;
// CPU time V's thread had used at t0, when the CPU clock is known.
constexpr std::int64_t kCpuAtT0 = 1'000'000'000;

pl::Config config(bool consolidate, Clock::duration period = P, unsigned workers = 4) {
  pl::Config c;
  c.period = period;
  c.consolidate = consolidate;
  c.workers = workers;
  return c;
}

std::int64_t ns(Clock::duration d) { return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count(); }

// The CPU clocks of the workers' threads, scripted per worker. It counts
// the calls, so a test can tell that the policy did not read it.
class FakeCpu final : public pl::CpuSource {
 public:
  struct Thread {
    std::int64_t cpu_ns = -1;  // -1: unknown
    char state = 'R';
    std::uint32_t wait_share = 0;
  };
  std::array<Thread, 4> threads{};
  mutable int calls = 0;

  std::int64_t thread_cpu_ns(unsigned w) const noexcept override {
    ++calls;
    return threads.at(w).cpu_ns;
  }
  char thread_state(unsigned w) const noexcept override {
    ++calls;
    return threads.at(w).state;
  }
  std::uint32_t wait_share(unsigned w) const noexcept override {
    ++calls;
    return threads.at(w).wait_share;
  }
};

// V as seen at t0: running kFiber, 500 switches and 7 parks so far.
pl::PeerSnapshot at_t0() {
  pl::PeerSnapshot v;
  v.fiber = kFiber;
  v.switches = 500;
  v.parks = 7;
  v.holds_fibers = true;
  return v;
}

// What a look at `v` at `at` leaves in the watcher's memory: running
// v.fiber since `at`, the slow and awake windows begun at `at`, no ask,
// no CPU time recorded.
pl::PeerMemory seen(const pl::PeerSnapshot& v, TimePoint at) {
  pl::PeerMemory m;
  m.fiber = v.fiber;
  m.switches = v.switches;
  m.since = at;
  m.window_switches = v.switches;
  m.window_at = at;
  m.parks = v.parks;
  m.awake_since = at;
  return m;
}

// The actions a look returned, as words, so that a failed check prints
// both sides readably.
std::string acts(const pl::LookActions& a) {
  std::string s;
  const auto add = [&](bool on, const char* w) {
    if (!on) return;
    if (!s.empty()) s += ' ';
    s += w;
  };
  add(a.handoff, "handoff");
  add(a.move, "move");
  add(a.rescue_poll, "rescue");
  add(a.take_timers, "timers");
  add(a.spread, "spread");
  return s;
}

// ---- look(): one row per trigger and non-trigger ----

// A look at now = t0 + dt at V, which the watcher saw at t0 as at_t0().
struct LookRow {
  const char* name;
  Clock::duration dt;
  bool consolidate = false;
  bool fiber_changed = false;
  std::uint64_t switches = 0;  // since t0
  std::uint64_t parks = 0;     // since t0
  bool holds_fibers = true;
  bool holds_polled = false;
  bool io = false;
  bool my_target = false;
  std::optional<Clock::duration> asked_ago{};  // the watcher's last ask, before now
  TimePoint due = TimePoint::max();            // V's next timer
  bool allowed = true;                         // spreads_allowed
  // V's thread: the CPU time it ran since a look at t0 recorded it (none:
  // no earlier look recorded any), its state and its wait share.
  std::optional<Clock::duration> ran{};
  char state = 'R';
  std::uint32_t wait_share = 0;
  const char* expect = "";
};

struct LookResult {
  pl::LookActions a;
  pl::PeerMemory m;
  int cpu_calls;
};

LookResult run_row(const LookRow& r) {
  const TimePoint now = t0 + r.dt;
  pl::PeerSnapshot v = at_t0();
  pl::PeerMemory m = seen(v, t0);
  if (r.asked_ago) m.asked = now - *r.asked_ago;
  FakeCpu cpu;
  cpu.threads[kPeer].cpu_ns = kCpuAtT0;
  if (r.ran) {
    m.cpu_ns = kCpuAtT0;
    m.cpu_at = t0;
    cpu.threads[kPeer].cpu_ns += ns(*r.ran);
  }
  cpu.threads[kPeer].state = r.state;
  cpu.threads[kPeer].wait_share = r.wait_share;
  if (r.fiber_changed) v.fiber = kOtherFiber;
  v.switches += r.switches;
  v.parks += r.parks;
  v.holds_fibers = r.holds_fibers;
  v.holds_polled = r.holds_polled;
  v.io = r.io;
  v.my_target = r.my_target;
  v.next_deadline = r.due;
  const pl::LookActions a = pl::look(config(r.consolidate), kPeer, v, m, now, cpu, r.allowed);
  return {a, m, cpu.calls};
}

void check_rows(const std::vector<LookRow>& rows) {
  for (const LookRow& r : rows) {
    INFO(r.name);
    const LookResult res = run_row(r);
    CHECK(acts(res.a) == r.expect);
    // The CPU source is read only for a consolidating io worker.
    if (!(r.consolidate && r.io)) CHECK(res.cpu_calls == 0);
  }
}

// Saturated: V switched a thousand times since t0, never parked.
constexpr std::uint64_t kBusy = 1000;

}  // namespace

TEST_CASE("look: stuck, slow, saturated, hand-off, move, timers", "[placement][look]") {
  const Clock::duration S5 = P * pl::kSaturatedPeriods;
  const Clock::duration Q = P / pl::kOverdueDivisor;
  check_rows({
      // Rule 1: the same fiber and switch count for one period.
      {.name = "stuck: one period in one fiber", .dt = P, .expect = "handoff move rescue"},
      {.name = "not stuck one ns before the period", .dt = P - 1ns},
      {.name = "not stuck: another fiber", .dt = P, .fiber_changed = true, .switches = 100},
      {.name = "not stuck: the same fiber, switched since", .dt = P, .switches = 100},
      // Rule 2: fewer than kSlowSwitches switches a period, over a window of
      // at least one.
      {.name = "slow: kSlowSwitches - 1 switches in a period", .dt = P, .fiber_changed = true,
       .switches = pl::kSlowSwitches - 1, .expect = "handoff move"},
      {.name = "not slow: kSlowSwitches switches", .dt = P, .fiber_changed = true, .switches = pl::kSlowSwitches},
      {.name = "not slow: the window one ns short of a period", .dt = P - 1ns, .fiber_changed = true, .switches = 1},
      // ... on average: a window of 3 periods (looks at the idle pace) is slow
      // below 3 x kSlowSwitches switches, so fibers of 40 us are caught
      // however slowly the watcher looks.
      {.name = "slow: 3 x kSlowSwitches - 1 switches in 3 periods", .dt = 3 * P, .fiber_changed = true,
       .switches = 3 * pl::kSlowSwitches - 1, .expect = "handoff move"},
      {.name = "not slow: 3 x kSlowSwitches switches in 3 periods", .dt = 3 * P, .fiber_changed = true,
       .switches = 3 * pl::kSlowSwitches},
      // ... over a window in which V never parked: a light load runs out of
      // fibers and parks between its few switches.
      {.name = "not slow: one switch in 3 periods and a park", .dt = 3 * P, .fiber_changed = true, .switches = 1,
       .parks = 1},
      // Rule 3: awake kSaturatedPeriods holding readiness-woken fibers.
      {.name = "saturated: awake kSaturatedPeriods holding polled fibers", .dt = S5, .fiber_changed = true,
       .switches = kBusy, .holds_polled = true, .expect = "handoff move spread"},
      {.name = "not saturated one ns before", .dt = S5 - 1ns, .fiber_changed = true, .switches = kBusy,
       .holds_polled = true},
      {.name = "not saturated: no polled fibers", .dt = S5, .fiber_changed = true, .switches = kBusy},
      {.name = "not saturated: a park in between", .dt = S5, .fiber_changed = true, .switches = kBusy, .parks = 1,
       .holds_polled = true},
      // In one fiber kSaturatedPeriods: stuck long enough to spread.
      {.name = "long stuck spreads", .dt = S5, .expect = "handoff move rescue spread"},
      {.name = "long stuck one ns before: no spread", .dt = S5 - 1ns, .expect = "handoff move rescue"},
      // The hand-off: only with fibers to hand, once a period.
      {.name = "stuck without queued fibers: no hand-off", .dt = P, .holds_fibers = false, .expect = "move rescue"},
      {.name = "asked P - 1ns ago: no hand-off", .dt = P, .asked_ago = P - 1ns, .expect = "move rescue"},
      {.name = "asked P ago: hand-off", .dt = P, .asked_ago = P, .expect = "handoff move rescue"},
      // Move: not the sockets consolidated on V, unless V spreads.
      {.name = "stuck, my target: no move", .dt = P, .my_target = true, .expect = "handoff rescue"},
      {.name = "saturated, my target: spreading moves", .dt = S5, .fiber_changed = true, .switches = kBusy,
       .holds_polled = true, .my_target = true, .expect = "handoff move spread"},
      {.name = "long stuck, my target: spreading moves", .dt = S5, .my_target = true,
       .expect = "handoff move rescue spread"},
      // Rule 4: a due timer of a stuck worker, or one overdue P / kOverdueDivisor.
      {.name = "stuck, timer due now", .dt = P, .due = t0 + P, .expect = "handoff move rescue timers"},
      {.name = "stuck, timer due in 1ns", .dt = P, .due = t0 + P + 1ns, .expect = "handoff move rescue"},
      {.name = "not stuck, timer overdue a quarter period", .dt = P / 2, .due = t0 + P / 2 - Q, .expect = "timers"},
      {.name = "not stuck, timer overdue 1ns less", .dt = P / 2, .due = t0 + P / 2 - Q + 1ns},
      // Spreads with consolidation: SpreadTrials decides (the CPU source
      // says it had a core: no earlier CPU time, wait share 0).
      {.name = "consolidating, saturated, spreads allowed", .dt = S5, .consolidate = true, .fiber_changed = true,
       .switches = kBusy, .holds_polled = true, .io = true, .expect = "handoff move spread"},
      {.name = "consolidating, saturated, spreads backed off: nothing", .dt = S5, .consolidate = true,
       .fiber_changed = true, .switches = kBusy, .holds_polled = true, .io = true, .allowed = false},
      {.name = "consolidating, long stuck, spreads backed off: hand-off, no spread", .dt = S5, .consolidate = true,
       .io = true, .allowed = false, .expect = "handoff move rescue"},
      {.name = "not consolidating: spreads_allowed ignored", .dt = S5, .fiber_changed = true, .switches = kBusy,
       .holds_polled = true, .io = true, .allowed = false, .expect = "handoff move spread"},
  });
}

TEST_CASE("look: a slow worker without queued fibers is asked nothing", "[placement][look]") {
  const LookResult res = run_row({.name = "slow, no fibers",
                                  .dt = P,
                                  .fiber_changed = true,
                                  .switches = 1,
                                  .holds_fibers = false});
  CHECK_FALSE(res.a.handoff);
  CHECK_FALSE(res.a.rescue_poll);
  CHECK_FALSE(res.a.spread);
  CHECK(res.m.asked == TimePoint{});
}

// A memory that never had a slow window (default-constructed) only starts
// one at its first look: otherwise the window would have begun at the
// clock's epoch, and any worker that switched fewer than kSlowSwitches
// times a period since then would be slow at once.
TEST_CASE("look: a first look sees no slow window yet", "[placement][look]") {
  pl::PeerSnapshot v = at_t0();
  v.switches = pl::kSlowSwitches - 1;  // a worker just started
  v.pending = true;
  pl::PeerMemory m;
  FakeCpu cpu;
  const pl::LookActions a = pl::look(config(false), kPeer, v, m, t0, cpu, true);
  CHECK(acts(a) == "");
  // A period later, the same count: now it is slow (and stuck).
  const pl::LookActions b = pl::look(config(false), kPeer, v, m, t0 + P, cpu, true);
  CHECK(acts(b) == "handoff move rescue");
}

// The workers start each memory's window at the runtime's start
// (worker.cpp, thread_main): a watcher's first look then judges the other
// worker's whole life, so one that has run a single long fiber since it
// started is slow at that look, and one that started under a period ago
// is not judged yet.
TEST_CASE("look: a first look judges the worker's life since the runtime started", "[placement][look]") {
  pl::PeerSnapshot v = at_t0();
  v.switches = 2;  // started one long fiber (and the main one)
  v.parks = 0;     // and never parked
  v.pending = true;
  v.holds_fibers = true;
  FakeCpu cpu;
  {
    pl::PeerMemory m{.window_at = t0};
    CHECK(acts(pl::look(config(false), kPeer, v, m, t0 + P, cpu, true)) == "handoff move");
  }
  {
    pl::PeerMemory m{.window_at = t0};
    CHECK(acts(pl::look(config(false), kPeer, v, m, t0 + P - 1ns, cpu, true)) == "");
  }
}

// A look that finds V parked since the last one starts the slow window
// over, without a verdict: the window that ends a period later, with no
// park in it, is judged (a burst of long fibers after an idle spell is
// still caught, a period later).
TEST_CASE("look: a park starts the slow window over", "[placement][look]") {
  pl::PeerSnapshot v = at_t0();
  pl::PeerMemory m = seen(v, t0);
  FakeCpu cpu;
  v.fiber = kOtherFiber;
  v.switches += 1;
  v.parks += 1;
  CHECK(acts(pl::look(config(false), kPeer, v, m, t0 + 3 * P, cpu, true)) == "");
  CHECK(m.window_at == t0 + 3 * P);
  CHECK(m.window_switches == v.switches);
  // A period later, one more switch and no park: slow.
  v.fiber = kFiber;
  v.switches += 1;
  CHECK(acts(pl::look(config(false), kPeer, v, m, t0 + 4 * P, cpu, true)) == "handoff move");
}

TEST_CASE("look: a hand-off is remembered for a period", "[placement][look]") {
  const LookResult res = run_row({.name = "stuck", .dt = P});
  REQUIRE(res.a.handoff);
  CHECK(res.m.asked == t0 + P);
}

TEST_CASE("look: an io worker without a core is left alone", "[placement][look][core]") {
  const Clock::duration half = P * pl::kHadCoreShare / 1000;  // of the period between the looks
  const Clock::duration N = P * pl::kNoCorePeriods;
  const Clock::duration S5 = P * pl::kSaturatedPeriods;
  check_rows({
      // Stuck a period; its thread ran less than kHadCoreShare of it.
      {.name = "ran under half, runnable: no core", .dt = P, .consolidate = true, .io = true, .ran = half - 1ns},
      {.name = "ran 40% of the period, runnable: no core", .dt = P, .consolidate = true, .io = true, .ran = P * 2 / 5},
      {.name = "ran under half, sleeping: had a core", .dt = P, .consolidate = true, .io = true, .ran = half - 1ns,
       .state = 'S', .expect = "handoff move rescue"},
      {.name = "ran under half, in disk sleep: had a core", .dt = P, .consolidate = true, .io = true,
       .ran = half - 1ns, .state = 'D', .expect = "handoff move rescue"},
      {.name = "ran under half, state unknown: had a core", .dt = P, .consolidate = true, .io = true,
       .ran = half - 1ns, .state = 0, .expect = "handoff move rescue"},
      {.name = "ran half: had a core", .dt = P, .consolidate = true, .io = true, .ran = half,
       .expect = "handoff move rescue"},
      {.name = "no core: no spread while long stuck", .dt = S5, .consolidate = true, .io = true,
       .ran = Clock::duration{0}},
      {.name = "no core: no spread while saturated", .dt = S5, .consolidate = true, .fiber_changed = true,
       .switches = kBusy, .holds_polled = true, .io = true, .ran = Clock::duration{0}},
      {.name = "no core: its due timers are still taken", .dt = P, .consolidate = true, .io = true, .due = t0 + P,
       .ran = Clock::duration{0},
       .expect = "timers"},
      // Left alone at most kNoCorePeriods in one fiber: then its fibers
      // are taken, its sockets stay.
      {.name = "no core kNoCorePeriods - 1ns: left alone", .dt = N - 1ns, .consolidate = true, .io = true,
       .ran = Clock::duration{0}},
      {.name = "no core kNoCorePeriods: hand-off and rescue, no move", .dt = N, .consolidate = true, .io = true,
       .ran = Clock::duration{0},
       .expect = "handoff rescue"},
      // No earlier look recorded its CPU time: its wait share decides.
      {.name = "no earlier look, wait share 499: had a core", .dt = P, .consolidate = true, .io = true,
       .wait_share = pl::kHadCoreShare - 1, .expect = "handoff move rescue"},
      {.name = "no earlier look, wait share 500: no core", .dt = P, .consolidate = true, .io = true,
       .wait_share = pl::kHadCoreShare},
      // Without consolidation, or at a worker without io, every worker has
      // a core and the CPU source is not read (check_rows counts the calls).
      {.name = "not consolidating: had a core", .dt = P, .io = true, .ran = Clock::duration{0},
       .wait_share = 1000,
       .expect = "handoff move rescue"},
      {.name = "consolidating, no io: had a core", .dt = P, .consolidate = true, .ran = Clock::duration{0},
       .wait_share = 1000,
       .expect = "handoff move rescue"},
  });
}

TEST_CASE("look: an unknown CPU clock falls back on the wait share", "[placement][look][core]") {
  for (const std::uint32_t wait : {std::uint32_t{pl::kHadCoreShare - 1}, std::uint32_t{pl::kHadCoreShare}}) {
    INFO("wait share " << wait);
    pl::PeerSnapshot v = at_t0();
    v.io = true;
    pl::PeerMemory m = seen(v, t0);
    m.cpu_ns = kCpuAtT0;  // an earlier look knew it ...
    m.cpu_at = t0;
    FakeCpu cpu;  // ... this one does not
    cpu.threads[kPeer].wait_share = wait;
    const pl::LookActions a = pl::look(config(true), kPeer, v, m, t0 + P, cpu, true);
    CHECK(a.handoff == (wait < pl::kHadCoreShare));
    CHECK(m.cpu_ns == -1);
    CHECK(m.cpu_at == t0 + P);
  }
}

namespace {
// When look() says to look again, with V seen at t0 as at_t0().
struct NextRow {
  const char* name;
  Clock::duration dt;
  bool consolidate = false;
  bool io = false;
  bool pending = false;
  bool fiber_changed = false;
  std::uint64_t switches = 0;
  std::uint8_t backoff = 0;  // the watcher's, before the look
  TimePoint due = TimePoint::max();
  Clock::duration next{};  // after now
  std::optional<std::uint8_t> backoff_after{};
};
}  // namespace

TEST_CASE("look: when to look again", "[placement][look][next]") {
  const Clock::duration I = P * pl::kIdleLookPeriods;
  constexpr std::uint8_t kMax = pl::kMaxLookBackoff;
  const std::vector<NextRow> rows{
      {.name = "pending, not stuck: when it could be stuck", .dt = P / 2, .pending = true, .next = P / 2},
      {.name = "pending, stuck: a period on", .dt = P, .pending = true, .next = P},
      {.name = "switched: the idle pace", .dt = P / 2, .fiber_changed = true, .switches = 100, .next = I},
      {.name = "not switched: the idle pace", .dt = P / 2, .next = I},
      {.name = "consolidating io, switched: one doubling", .dt = P / 2, .consolidate = true, .io = true,
       .fiber_changed = true, .switches = 100, .next = 2 * I, .backoff_after = 1},
      {.name = "consolidating io, switched again: two doublings", .dt = P / 2, .consolidate = true, .io = true,
       .fiber_changed = true, .switches = 100, .backoff = 1, .next = 4 * I, .backoff_after = 2},
      {.name = "consolidating io: at most kMaxLookBackoff doublings", .dt = P / 2, .consolidate = true, .io = true,
       .fiber_changed = true, .switches = 100, .backoff = kMax, .next = (1 << kMax) * I, .backoff_after = kMax},
      {.name = "consolidating io, not switched: no doubling", .dt = P / 2, .consolidate = true, .io = true,
       .backoff = 1, .next = 2 * I, .backoff_after = 1},
      {.name = "consolidating, no io: never backs off", .dt = P / 2, .consolidate = true, .fiber_changed = true,
       .switches = 100, .backoff = kMax, .next = I},
      {.name = "io, not consolidating: never backs off", .dt = P / 2, .io = true, .fiber_changed = true,
       .switches = 100, .backoff = kMax, .next = I},
      {.name = "consolidating io, slow: back to the idle pace", .dt = P, .consolidate = true, .io = true,
       .fiber_changed = true, .switches = 1, .backoff = kMax, .next = I, .backoff_after = 0},
      {.name = "consolidating io, pending: back to the idle pace", .dt = P / 2, .consolidate = true, .io = true,
       .pending = true, .fiber_changed = true, .switches = 100, .backoff = kMax, .next = P, .backoff_after = 0},
      // Its next timer: once overdue, or at its deadline if by then V has
      // run one fiber for a period.
      {.name = "a timer due before it could be stuck: once overdue", .dt = P / 2, .fiber_changed = true,
       .switches = 100, .due = t0 + P, .next = P / 2 + P / pl::kOverdueDivisor},
      {.name = "a timer due after it could be stuck: at the deadline", .dt = P / 2, .fiber_changed = true,
       .switches = 100, .due = t0 + P / 2 + 2 * P, .next = 2 * P},
      {.name = "a timer due after the idle pace", .dt = P / 2, .due = t0 + 10 * P, .next = I},
      // Deadlines near TimePoint::max() must not wrap.
      {.name = "deadline max - 1ns", .dt = P / 2, .due = TimePoint::max() - 1ns, .next = I},
      {.name = "deadline max - P/4", .dt = P / 2, .due = TimePoint::max() - P / pl::kOverdueDivisor, .next = I},
      {.name = "deadline max - P/4 - 1ns", .dt = P / 2, .due = TimePoint::max() - P / pl::kOverdueDivisor - 1ns,
       .next = I},
  };
  for (const NextRow& r : rows) {
    INFO(r.name);
    const TimePoint now = t0 + r.dt;
    pl::PeerSnapshot v = at_t0();
    pl::PeerMemory m = seen(v, t0);
    m.backoff = r.backoff;
    v.io = r.io;
    v.pending = r.pending;
    if (r.fiber_changed) v.fiber = kOtherFiber;
    v.switches += r.switches;
    v.next_deadline = r.due;
    FakeCpu cpu;
    const pl::LookActions a = pl::look(config(r.consolidate), kPeer, v, m, now, cpu, true);
    CHECK(a.next - now == r.next);
    if (r.backoff_after) CHECK(int{m.backoff} == int{*r.backoff_after});
  }
}

TEST_CASE("look: a worker in its scheduler or parked", "[placement][look][parked]") {
  const Clock::duration I = P * pl::kIdleLookPeriods;
  struct Row {
    const char* name;
    bool parked;
    bool switched;  // since the last look
    bool consolidating_io;
    std::optional<Clock::duration> next;  // none: never
  };
  const std::vector<Row> rows{
      {"awake in its scheduler: the idle pace", false, false, false, I},
      {"consolidating io in its scheduler: the backed-off pace", false, false, true, (1 << pl::kMaxLookBackoff) * I},
      {"parked, switched since: the idle pace", true, true, false, I},
      {"parked, not switched since: not again", true, false, false, std::nullopt},
  };
  for (const Row& r : rows) {
    INFO(r.name);
    const TimePoint now = t0 + 40 * P;
    pl::PeerSnapshot v = at_t0();
    pl::PeerMemory m = seen(v, t0);  // stuck since t0, with a CPU time, asked at t0
    m.asked = t0;
    m.cpu_ns = kCpuAtT0;
    m.cpu_at = t0;
    m.backoff = pl::kMaxLookBackoff;
    v.fiber = 0;
    v.parked = r.parked;
    v.parks += 3;
    if (r.switched) v.switches += 10;
    v.io = r.consolidating_io;
    v.holds_fibers = true;
    v.holds_polled = true;
    v.next_deadline = t0;  // long overdue: its own scheduler fires it
    FakeCpu cpu;
    const pl::LookActions a = pl::look(config(r.consolidating_io), kPeer, v, m, now, cpu, true);
    CHECK(acts(a) == "");
    CHECK(a.next == (r.next ? now + *r.next : TimePoint::max()));
    CHECK(cpu.calls == 0);
    // The memory starts over at now, but for the backoff.
    CHECK(m.fiber == 0);
    CHECK(m.switches == v.switches);
    CHECK(m.since == now);
    CHECK(m.asked == TimePoint{});
    CHECK(m.window_switches == v.switches);
    CHECK(m.window_at == now);
    CHECK(m.parks == v.parks);
    CHECK(m.awake_since == now);
    CHECK(m.cpu_ns == -1);
    CHECK(int{m.backoff} == pl::kMaxLookBackoff);
  }
}

TEST_CASE("look: no policy without a period or a second worker", "[placement][look]") {
  const Clock::duration none{0};
  for (const pl::Config& c : {config(false, none), config(true, none), config(true, P, 1)}) {
    pl::PeerSnapshot v = at_t0();
    v.next_deadline = t0;
    pl::PeerMemory m = seen(v, t0);
    FakeCpu cpu;
    const pl::LookActions a = pl::look(c, kPeer, v, m, t0 + 100 * P, cpu, true);
    CHECK(acts(a) == "");
    CHECK(a.next == TimePoint::max());
    CHECK(m.since == t0);  // untouched
  }
}

TEST_CASE("timer_overdue: P / kOverdueDivisor past its deadline", "[placement][timer]") {
  const TimePoint now = t0 + 10 * P;
  const Clock::duration Q = P / pl::kOverdueDivisor;
  CHECK(pl::timer_overdue(config(false), now - Q, now));
  CHECK_FALSE(pl::timer_overdue(config(false), now - Q + 1ns, now));
  CHECK(pl::timer_overdue(config(true), now - 10 * P, now));
  CHECK_FALSE(pl::timer_overdue(config(false), TimePoint::max(), now));
  CHECK_FALSE(pl::timer_overdue(config(false, Clock::duration{0}), now - 10 * P, now));
  CHECK_FALSE(pl::timer_overdue(config(false, P, 1), now - 10 * P, now));
  CHECK(pl::idle_look(config(false), now) == now + P * pl::kIdleLookPeriods);
}

// ---- consolidation_target() ----

namespace {
const std::int64_t kNowNs = ns(t0.time_since_epoch());
const std::int64_t kStaleNs = ns(pl::kLoadWindow) * pl::kStaleWindows;

// A worker with io that published run and wait shares 1 ms ago.
pl::LoadSnapshot load(std::uint32_t run, std::uint32_t wait = 0) {
  pl::LoadSnapshot l;
  l.io = true;
  l.run = run;
  l.wait = wait;
  l.shares_at = kNowNs - 1'000'000;
  return l;
}
pl::LoadSnapshot published_at(pl::LoadSnapshot l, std::int64_t at) {
  l.shares_at = at;
  return l;
}
pl::LoadSnapshot targeting(pl::LoadSnapshot l, int target) {
  l.target = target;
  return l;
}
pl::LoadSnapshot refused_until(pl::LoadSnapshot l, std::int64_t until) {
  l.refused_until = until;
  return l;
}
pl::LoadSnapshot without_io(pl::LoadSnapshot l) {
  l.io = false;
  return l;
}

struct TargetRow {
  const char* name;
  unsigned self;
  std::vector<pl::LoadSnapshot> loads;
  int target;
  bool starved = false;
  int current = -1;
  bool backed_off = false;
  pl::Config c = config(true);
};
}  // namespace

TEST_CASE("consolidation_target: where a worker's sockets go", "[placement][consolidate]") {
  constexpr std::uint32_t L = pl::kLightLoad, F = pl::kFitsOneCore, W = pl::kStarvedWait;
  constexpr auto B = static_cast<std::uint32_t>(pl::SpreadTrials::kBoughtShare);
  const std::vector<TargetRow> rows{
      // A light load: the two run shares add up to kLightLoad.
      {"light load", 1, {load(L / 2), load(L - L / 2)}, 0},
      {"light load + 1", 1, {load(L / 2), load(L - L / 2 + 1)}, -1},
      // Fits one core while one of the two is starved.
      {"fits one core, the target starved", 1, {load(F / 2, W), load(F - F / 2)}, 0, true},
      {"fits one core, self starved", 1, {load(F / 2), load(F - F / 2, W)}, 0, true},
      {"fits one core, waits kStarvedWait - 1", 1, {load(F / 2, W - 1), load(F - F / 2, W - 1)}, -1},
      {"starved, kFitsOneCore + 1", 1, {load(F / 2, W), load(F - F / 2 + 1, W)}, -1},
      // Spreads backed off: the share they failed to exceed also fits.
      {"backed off: kBoughtShare", 1, {load(B / 2), load(B - B / 2)}, 0, false, -1, true},
      {"backed off: kBoughtShare + 1", 1, {load(B / 2), load(B - B / 2 + 1)}, -1, false, -1, true},
      {"not backed off: kBoughtShare", 1, {load(B / 2), load(B - B / 2)}, -1},
      // Shares older than kStaleWindows windows, or never published, are 0.
      {"target's shares exactly stale-old: counted", 1, {published_at(load(900), kNowNs - kStaleNs), load(100)}, -1},
      {"target's shares 1ns older: zero", 1, {published_at(load(900), kNowNs - kStaleNs - 1), load(100)}, 0},
      {"target never published: zero", 1, {published_at(load(900), 0), load(100)}, 0},
      {"own shares stale: zero", 1, {load(400), published_at(load(900), kNowNs - kStaleNs - 1)}, 0},
      // Only toward a lower index, to a worker with io that does not
      // consolidate itself and was not refused.
      {"worker 0 never consolidates", 0, {load(0), load(0)}, -1},
      {"the lowest index that fits", 3, {load(0), load(0), load(0), load(0)}, 0},
      {"skips a worker without io", 2, {without_io(load(0)), load(0), load(0)}, 1},
      {"skips a worker that consolidates itself", 2, {without_io(load(0)), targeting(load(0), 0), load(0)}, -1},
      {"skips a refused worker", 2, {refused_until(load(0), kNowNs + 1), load(0), load(0)}, 1},
      {"at refused_until: allowed again", 2, {refused_until(load(0), kNowNs), load(0), load(0)}, 0},
      {"skips a worker that fits but is refused", 1, {refused_until(load(0), kNowNs + 1), load(0)}, -1},
      // The current target stays while allowed, whatever the loads.
      {"keeps its target under load", 1, {load(1000, 1000), load(1000, 1000)}, 0, false, 0},
      {"drops a refused target", 1, {refused_until(load(100), kNowNs + 1), load(100)}, -1, false, 0},
      {"drops a target without io", 2, {without_io(load(1000)), load(1000), load(1000)}, -1, false, 0},
      // No consolidation at all.
      {"consolidate off", 1, {load(0), load(0)}, -1, false, -1, false, config(false)},
      {"period 0", 1, {load(0), load(0)}, -1, false, -1, false, config(true, Clock::duration{0})},
      {"one worker", 1, {load(0), load(0)}, -1, false, -1, false, config(true, P, 1)},
      {"self out of range", 2, {load(0), load(0)}, -1},
  };
  for (const TargetRow& r : rows) {
    INFO(r.name);
    const pl::TargetDecision d = pl::consolidation_target(r.c, r.self, r.loads, r.current, kNowNs, r.backed_off);
    CHECK(d.target == r.target);
    CHECK(d.starved == r.starved);
  }
}

TEST_CASE("consolidation_target: shares never published count 0 near the clock's start", "[placement][consolidate]") {
  // now_ns within kStaleWindows windows of the epoch: a zero shares_at is
  // not merely old.
  const std::vector<pl::LoadSnapshot> loads{published_at(load(900), 0), published_at(load(100), kStaleNs)};
  CHECK(pl::consolidation_target(config(true), 1, loads, -1, kStaleNs, false).target == 0);
}

// ---- scenarios: sequences of looks ----

namespace {
// One look of a scenario: at t0 + at, V runs `fiber` with `switches` so
// far, its thread has used kCpuAtT0 + cpu.
struct Step {
  Clock::duration at;
  std::uintptr_t fiber;
  std::uint64_t switches;
  const char* expect;
  Clock::duration cpu{};
  bool allowed = true;
  std::optional<Clock::duration> next{};  // after t0
};

// Runs the steps against one watcher's memory, from none.
void run_steps(const pl::Config& c, const pl::PeerSnapshot& base, FakeCpu& cpu, const std::vector<Step>& steps) {
  pl::PeerMemory m;
  for (std::size_t i = 0; i < steps.size(); ++i) {
    const Step& s = steps[i];
    INFO("step " << i << " at " << ns(s.at) << " ns");
    pl::PeerSnapshot v = base;
    v.fiber = s.fiber;
    v.switches = s.switches;
    cpu.threads[kPeer].cpu_ns = kCpuAtT0 + ns(s.cpu);
    const pl::LookActions a = pl::look(c, kPeer, v, m, t0 + s.at, cpu, s.allowed);
    CHECK(acts(a) == s.expect);
    if (s.next) CHECK(a.next == t0 + *s.next);
  }
}
}  // namespace

TEST_CASE("scenario: a worker stuck in one fiber", "[placement][scenario]") {
  pl::PeerSnapshot v;
  v.parks = 3;
  v.holds_fibers = true;
  v.pending = true;
  FakeCpu cpu;
  const auto F = kFiber;
  const std::uint64_t n = 500;
  const Clock::duration S5 = 5 * P;  // kSaturatedPeriods, in numbers
  run_steps(config(false), v, cpu,
            {
                {0ns, F, n, "", {}, true, P},  // first look: when it could be stuck
                {P, F, n, "handoff move rescue", {}, true, 2 * P},
                {P + P / 2, F, n, "move rescue"},  // not asked again within a period
                {2 * P, F, n, "handoff move rescue"},
                {3 * P, F, n, "handoff move rescue"},
                {4 * P, F, n, "handoff move rescue"},
                {S5 - 1ns, F, n, "move rescue"},
                {S5, F, n, "handoff move rescue spread"},
                // It switched: all over.
                {S5 + P / 2, kOtherFiber, n + 1, ""},
            });
  CHECK(cpu.calls == 0);
}

TEST_CASE("scenario: a saturated io worker spreads, until spreads back off", "[placement][scenario]") {
  pl::PeerSnapshot v;
  v.parks = 3;
  v.io = true;
  v.holds_fibers = true;
  v.holds_polled = true;
  FakeCpu cpu;  // it runs all the time: its CPU time is the time
  constexpr int kSat = 5;  // kSaturatedPeriods, in numbers
  std::vector<Step> steps;
  const auto step = [&](Clock::duration at, const char* expect, bool allowed = true) {
    const std::uintptr_t fiber = steps.size() % 2 ? kFiber : kOtherFiber;
    steps.push_back({at, fiber, 1000 * (steps.size() + 1), expect, at, allowed});
  };
  for (int i = 0; i < kSat; ++i) step(i * P, "");
  step(P * kSat, "handoff move spread");
  // The awake window starts over after it triggered.
  for (int i = 1; i < kSat; ++i) step(P * (kSat + i), "");
  step(2 * P * kSat, "handoff move spread");
  // The spread trial failed: saturated, but nothing is done.
  step(3 * P * kSat, "", false);
  // Allowed again.
  step(4 * P * kSat, "handoff move spread");
  run_steps(config(true), v, cpu, steps);
}

TEST_CASE("scenario: a light load consolidates to worker 0", "[placement][scenario][consolidate]") {
  for (const unsigned n : {2u, 4u}) {
    INFO(n << " workers");
    const pl::Config c = config(true, P, n);
    std::vector<pl::LoadSnapshot> loads(n, load(100));
    std::vector<int> expect(n);
    // One publishing round: each worker in turn picks its target from its
    // current one and publishes it.
    const auto round = [&](std::int64_t now_ns) {
      for (unsigned w = 0; w < n; ++w) {
        loads[w].shares_at = now_ns - 1'000'000;
        loads[w].target = pl::consolidation_target(c, w, loads, loads[w].target, now_ns, false).target;
      }
      std::vector<int> got;
      for (const auto& l : loads) got.push_back(l.target);
      return got;
    };
    // All to worker 0.
    expect.assign(n, 0);
    expect[0] = -1;
    CHECK(round(kNowNs) == expect);
    // A watcher saw worker 0 unable to keep up: worker 1 stops, and the
    // others go to worker 1, which no longer consolidates itself.
    const std::int64_t refused = kNowNs + ns(pl::kReconsolidateAfter);
    loads[0].refused_until = refused;
    expect.assign(n, 1);
    expect[0] = -1;
    expect[1] = -1;
    CHECK(round(kNowNs + 1'000'000) == expect);
    // Once the refusal ends, all go back to worker 0.
    expect.assign(n, 0);
    expect[0] = -1;
    CHECK(round(refused) == expect);
  }
}

TEST_CASE("scenario: a preempted vCPU is left alone kNoCorePeriods", "[placement][scenario][core]") {
  pl::PeerSnapshot v;
  v.parks = 3;
  v.io = true;
  v.holds_fibers = true;
  FakeCpu cpu;
  cpu.threads[kPeer].state = 'R';
  cpu.threads[kPeer].wait_share = 600;  // its last window: waiting for a core
  const auto F = kFiber;
  const Clock::duration N = 25 * P;  // kNoCorePeriods, in numbers
  // Its CPU time does not advance while it is runnable.
  run_steps(config(true), v, cpu,
            {
                {0ns, F, 50, ""},
                {P, F, 50, ""},
                {2 * P, F, 50, ""},
                {5 * P, F, 50, ""},  // long stuck, but no spread without a core
                {10 * P, F, 50, ""},
                {N - P, F, 50, ""},
                {N - 1ns, F, 50, ""},
                {N, F, 50, "handoff rescue"},  // its fibers go, its sockets stay
                // It got its core back: a period on the CPU since the last look.
                {N + P, F, 50, "handoff move rescue spread", P},
            });
}

TEST_CASE("scenario: a stall after a long healthy run, looks at the watcher's pace", "[placement][scenario][next]") {
  // An io worker holding polled fibers switches and parks between the
  // looks, then right after one look makes a last burst and stalls in one
  // fiber. The watcher looks
  // when look() says. The look one pace after the stall still sees the
  // switches made before it, so the stall is noticed two paces later:
  // ~6 periods at the idle pace, ~24 at a consolidating worker's backed-off
  // pace (kMaxLookBackoff; docs/decisions/0017-placement.md).
  struct Row {
    bool consolidate;
    Clock::duration noticed;  // after the stall
    const char* expect;
  };
  for (const Row& r : {Row{false, 6 * P, "handoff move rescue"}, Row{true, 24 * P, "handoff move rescue spread"}}) {
    INFO("consolidate " << r.consolidate);
    pl::PeerSnapshot v;
    v.io = true;
    v.holds_fibers = true;
    v.holds_polled = true;
    pl::PeerMemory m;
    FakeCpu cpu;  // had a core: no CPU clock, wait share 0
    TimePoint now = t0;
    std::optional<TimePoint> stall;
    pl::LookActions a;
    for (std::uint64_t k = 0;; ++k) {
      REQUIRE(k < 20);
      if (!stall) {
        v.fiber = k % 2 ? kFiber : kOtherFiber;
        v.switches = 100 * (k + 1);
        v.parks = k;
      }
      a = pl::look(config(r.consolidate), kPeer, v, m, now, cpu, true);
      if (acts(a) != "") break;
      if (!stall && now - t0 >= 18 * P) {
        // It parks once more, makes a last burst of switches (more than
        // kSlowSwitches: not slow), ends in one fiber and stays there.
        stall = now + 1ns;
        v.fiber = 0x3000;
        v.switches += 100;
        v.parks += 1;
      }
      now = a.next;
    }
    REQUIRE(stall);
    CHECK(now - *stall == r.noticed - 1ns);
    CHECK(acts(a) == r.expect);
  }
}

// ---- SpreadTrials ----
// A saturation spread that a starved consolidation follows within kTrial,
// or whose workers ran less than kBoughtShare of a core over kTrial (the
// verdict), backs the next spreads off, the backoff doubling from
// kFirstBackoff up to kMaxBackoff; a spread that held starts it over.

namespace {
using pl::SpreadTrials;

// Spreads are backed off until `end` and allowed from it on.
void check_backed_off_until(const SpreadTrials& t, TimePoint end) {
  CHECK_FALSE(t.allowed(end - 1ns));
  CHECK(t.allowed(end));
}

// A trial started at `at` and failed by a starved consolidation 10 ms
// later backs off kFirstBackoff: what follows a trial that held (or no
// trial at all).
void check_next_failure_backs_off_first(SpreadTrials& t, TimePoint at) {
  t.spread(at, 0);
  t.starved_consolidation(at + milliseconds(10));
  check_backed_off_until(t, at + milliseconds(10) + SpreadTrials::kFirstBackoff);
}

// CPU time, in nanoseconds, of `permille` of one core over `d`.
std::int64_t cpu_of(std::int64_t permille, Clock::duration d) { return ns(d) * permille / 1000; }
}  // namespace

TEST_CASE("spreads are allowed until one is followed by a starved consolidation", "[placement][trials]") {
  SpreadTrials t;
  CHECK(t.allowed(t0));
  t.starved_consolidation(t0);  // no spread before it: no verdict
  CHECK(t.allowed(t0 + milliseconds(1)));
  t.spread(t0, 0);
  CHECK(t.allowed(t0 + milliseconds(1)));  // a spread alone backs nothing off
  t.starved_consolidation(t0 + milliseconds(40));
  CHECK_FALSE(t.allowed(t0 + milliseconds(41)));
  CHECK_FALSE(t.allowed(t0 + milliseconds(139)));
  CHECK(t.allowed(t0 + milliseconds(140)));  // kFirstBackoff after the consolidation
}

TEST_CASE("a starved consolidation after kTrial is no verdict on the spread", "[placement][trials]") {
  SpreadTrials t;
  t.spread(t0, 0);
  t.starved_consolidation(t0 + SpreadTrials::kTrial);  // at kTrial: still its trial
  CHECK_FALSE(t.allowed(t0 + SpreadTrials::kTrial + 1ns));
  SpreadTrials u;
  u.spread(t0, 0);
  u.starved_consolidation(t0 + SpreadTrials::kTrial + 1ns);
  CHECK(u.allowed(t0 + SpreadTrials::kTrial + 2ns));
}

TEST_CASE("each failed trial doubles the backoff, up to kMaxBackoff", "[placement][trials]") {
  // kFirstBackoff doubling up to kMaxBackoff, in numbers.
  const std::vector<Clock::duration> backoffs{100ms, 200ms, 400ms, 800ms, 1600ms, 3200ms, 5s, 5s, 5s};
  SpreadTrials t;
  TimePoint now = t0;
  for (std::size_t i = 0; i < backoffs.size(); ++i) {
    INFO("trial " << i);
    REQUIRE(t.allowed(now));
    t.spread(now, 0);
    now += milliseconds(10);
    t.starved_consolidation(now);
    t.starved_consolidation(now + milliseconds(5));  // one verdict a trial
    check_backed_off_until(t, now + backoffs[i]);
    now += backoffs[i];
  }
}

TEST_CASE("a spread that held starts the backoff over", "[placement][trials]") {
  SpreadTrials t;
  // Two failed trials: the backoff is at 200 ms.
  t.spread(t0, 0);
  t.starved_consolidation(t0 + milliseconds(10));
  TimePoint now = t0 + milliseconds(10) + SpreadTrials::kFirstBackoff;
  t.spread(now, 0);
  t.starved_consolidation(now + milliseconds(10));
  now += milliseconds(10) + 2 * SpreadTrials::kFirstBackoff;
  REQUIRE(t.allowed(now));
  // A trial that held (no starved consolidation within kTrial) ...
  t.spread(now, 0);
  now += SpreadTrials::kTrial + milliseconds(50);
  // ... so the next failure backs off kFirstBackoff again, not 400 ms.
  check_next_failure_backs_off_first(t, now);
}

TEST_CASE("spreads within kTrial of the first belong to its trial", "[placement][trials]") {
  SpreadTrials t;
  CHECK(t.opens_trial(t0));
  t.spread(t0, 0);
  CHECK_FALSE(t.opens_trial(t0 + milliseconds(60)));
  CHECK_FALSE(t.opens_trial(t0 + SpreadTrials::kTrial));
  t.spread(t0 + milliseconds(60), 0);  // the watcher asks again: same trial
  CHECK(t.opens_trial(t0 + SpreadTrials::kTrial + 1ns));
  t.starved_consolidation(t0 + SpreadTrials::kTrial + milliseconds(10));  // 110 ms after the first
  CHECK(t.allowed(t0 + SpreadTrials::kTrial + milliseconds(11)));
}

TEST_CASE("a trial whose workers ran under kBoughtShare of a core fails at its verdict", "[placement][trials]") {
  SpreadTrials t;
  const std::int64_t base = 5'000'000'000;  // the workers' CPU time before the spread
  t.spread(t0, base);
  const auto verdict_at = t0 + SpreadTrials::kTrial;
  CHECK_FALSE(t.verdict_due(verdict_at - 1ns));
  // Too early: no verdict, however little the workers ran.
  t.judge(verdict_at - 1ns, base);
  CHECK(t.allowed(verdict_at));
  REQUIRE(t.verdict_due(verdict_at));
  // Just under kBoughtShare over the trial.
  t.judge(verdict_at, base + cpu_of(SpreadTrials::kBoughtShare, SpreadTrials::kTrial) - 1);
  CHECK_FALSE(t.verdict_due(verdict_at));  // one verdict a trial
  check_backed_off_until(t, verdict_at + SpreadTrials::kFirstBackoff);
}

TEST_CASE("a trial whose workers ran kBoughtShare of a core or more holds", "[placement][trials]") {
  SpreadTrials t;
  const std::int64_t base = 1'000'000;
  t.spread(t0, base);
  const auto verdict_at = t0 + SpreadTrials::kTrial + milliseconds(20);
  t.judge(verdict_at, base + cpu_of(SpreadTrials::kBoughtShare, SpreadTrials::kTrial + milliseconds(20)));
  CHECK(t.allowed(verdict_at));
  // Held: a later failure backs off kFirstBackoff, as after no failure.
  check_next_failure_backs_off_first(t, verdict_at + milliseconds(10));
}

TEST_CASE("failed verdicts double the backoff like starved consolidations", "[placement][trials]") {
  SpreadTrials t;
  TimePoint now = t0;
  std::int64_t cpu = 0;
  Clock::duration expect = SpreadTrials::kFirstBackoff;
  for (int i = 0; i < 3; ++i) {
    INFO("trial " << i);
    REQUIRE(t.allowed(now));
    t.spread(now, cpu);
    now += SpreadTrials::kTrial;
    cpu += cpu_of(1000, SpreadTrials::kTrial);  // one core: the workers took turns on it
    t.judge(now, cpu);
    check_backed_off_until(t, now + expect);
    now += expect;
    expect *= 2;
  }
}

TEST_CASE("a trial a starved consolidation failed gets no second failure at its verdict", "[placement][trials]") {
  SpreadTrials t;
  t.spread(t0, 0);
  t.starved_consolidation(t0 + milliseconds(20));  // fails: backoff kFirstBackoff from t0 + 20 ms
  t.judge(t0 + SpreadTrials::kTrial, 0);           // would fail too: it must not double the backoff
  CHECK(t.allowed(t0 + milliseconds(20) + SpreadTrials::kFirstBackoff));
}

// ---- SpareCpu ----
// Whether the machine had a core to spare over the last window of at least
// kWindow, from the kernel's CPU times (jiffies summed over the CPUs).

namespace {
using pl::SpareCpu;
SpareCpu::Times times(std::uint64_t idle, std::uint64_t total, unsigned cpus = 2) { return {idle, total, cpus}; }
}  // namespace

TEST_CASE("spare CPU is unknown, so spare, until a window has passed", "[placement][spare]") {
  SpareCpu s;
  CHECK(s.idle_permille() == -1);
  CHECK(s.spare());
  CHECK(s.wants_sample(t0));
  s.sample(t0, times(0, 0));
  CHECK(s.spare());  // one sample is no window
  CHECK_FALSE(s.wants_sample(t0 + SpareCpu::kWindow - 1ns));
  CHECK(s.wants_sample(t0 + SpareCpu::kWindow));
}

TEST_CASE("a window with every core busy leaves nothing spare", "[placement][spare]") {
  SpareCpu s;
  s.sample(t0, times(1000, 5000));
  // 2 CPUs over 100 ms: 20 jiffies of CPU time, none idle.
  s.sample(t0 + SpareCpu::kWindow, times(1000, 5020));
  CHECK(s.idle_permille() == 0);
  CHECK_FALSE(s.spare());
}

TEST_CASE("a window needs kSparePermille of one core idle to be spare", "[placement][spare]") {
  SpareCpu below, at, half;
  for (SpareCpu* s : {&below, &at, &half}) s->sample(t0, times(0, 0));
  // 2 CPUs, 1,000 jiffies in the window: 100 idle jiffies are 0.2 of a core.
  below.sample(t0 + SpareCpu::kWindow, times(99, 1000));
  at.sample(t0 + SpareCpu::kWindow, times(100, 1000));
  half.sample(t0 + SpareCpu::kWindow, times(250, 1000));
  CHECK(below.idle_permille() == 198);
  CHECK_FALSE(below.spare());
  CHECK(at.idle_permille() == SpareCpu::kSparePermille);
  CHECK(at.spare());
  CHECK(half.idle_permille() == 500);
  CHECK(half.spare());
}

TEST_CASE("samples closer than kWindow change nothing; the next window starts at the last sample", "[placement][spare]") {
  SpareCpu s;
  s.sample(t0, times(0, 0));
  s.sample(t0 + SpareCpu::kWindow, times(0, 100));  // busy
  s.sample(t0 + SpareCpu::kWindow + milliseconds(50), times(100, 200));  // too soon: ignored
  CHECK_FALSE(s.spare());
  // The window from the last taken sample (0 idle of 100) to here: 100 of 200 idle.
  s.sample(t0 + 2 * SpareCpu::kWindow, times(100, 300));
  CHECK(s.idle_permille() == 1000);
  CHECK(s.spare());
}

TEST_CASE("a window longer than kStale is unknown again", "[placement][spare]") {
  SpareCpu s;
  s.sample(t0, times(0, 0));
  s.sample(t0 + SpareCpu::kWindow, times(0, 100));
  REQUIRE_FALSE(s.spare());
  s.sample(t0 + SpareCpu::kWindow + SpareCpu::kStale + 1ns, times(0, 200));  // a quiet spell: no looks
  CHECK(s.idle_permille() == -1);
  CHECK(s.spare());
  s.sample(t0 + 2 * SpareCpu::kWindow + SpareCpu::kStale + 1ns, times(0, 300));
  CHECK_FALSE(s.spare());
}

TEST_CASE("counters that went backwards give no verdict", "[placement][spare]") {
  SpareCpu s;
  s.sample(t0, times(500, 1000));
  s.sample(t0 + SpareCpu::kWindow, times(400, 900));
  CHECK(s.idle_permille() == -1);
}

// ---- steal_unpaid ----
// A steal did not pay when its fibers ran on the thief for less than
// kCostTransfers times what taking one off the victim cost, capped at
// steal_worth.

TEST_CASE("a steal pays unless its fibers ran for less than a few transfers each", "[placement][steal]") {
  using namespace std::chrono;
  struct Row {
    nanoseconds per, took, worth;
    bool unpaid;
  };
  const std::vector<Row> rows{
      // dear transfers (100 ns a fiber taken): the bar is the cap, 400 ns
      {150ns, 100ns, 400ns, true},    // a trivial fiber: pause
      {399ns, 100ns, 400ns, true},
      {400ns, 100ns, 400ns, false},   // at the bar: paid
      {250ns, 100ns, 200ns, false},   // a lower cap
      // cheap transfers (10 ns): 40 ns
      {39ns, 10ns, 400ns, true},
      {40ns, 10ns, 400ns, false},
      {120ns, 10ns, 400ns, false},    // 100 ns of work: worth stealing here
      // no transfer measured yet: nothing is unpaid
      {10ns, 0ns, 400ns, false},
      // pausing off
      {10ns, 100ns, 0ns, false},
  };
  for (const Row& r : rows) {
    INFO("per " << r.per.count() << " ns, took " << r.took.count() << " ns, worth " << r.worth.count() << " ns");
    CHECK(pl::steal_unpaid(r.per, r.took, r.worth) == r.unpaid);
  }
  CHECK(pl::kCostTransfers == 4);
}
