// handoff.hpp: the SIGURG handler of the hand-off (handoff.cpp; the
// Worker's side is in worker.hpp, the essay is docs/runtime.md "Hand-off").
#pragma once

namespace spindle::detail {

// While another worker runs but holds nothing for us, a watcher looks at
// it every this many handoff_after periods (handoff.cpp, park.cpp). It
// bounds how long a fiber that yields behind a worker stuck since our last
// look waits (about this many periods plus one); each look is a wake-up,
// and at one period a 2-worker pingpong (whose LIFO slot flips on every
// message) ran ~8% slower (docs/runtime.md "Hand-off").
inline constexpr int kIdleLookPeriods = 3;

// A watched worker with an io poller that has switched since each of the
// watcher's last looks, holds no FIFO or stealable fibers and triggered
// nothing is looked at after 2, then 4 times the idle pace (at most this
// many doublings: 2.4 ms at the default 200 us); anything a look acts on
// brings the pace back. Only while gathering (RuntimeOptions::gather_io).
// Why: each look is a wake-up of an idle worker, and on a machine without
// a spare core it preempts the worker it looks at, or a client: on the
// 2-core VM the looks at a gathered echo64 worker (1,600 a second) cost
// the 2-worker server several percent of its requests per CPU second
// (docs/decisions/0015-gather.md "The stuck looks were run-queue waits").
// The price: an io worker that gets stuck in one fiber after a long
// healthy run holding only polled fibers is noticed up to two paces
// later, ~24 periods (4.8 ms) instead of ~6: the look one pace after the
// stall still sees the switches made before it. Go's sysmon backs off
// the same way, to 10 ms. Programs without io keep the
// fixed pace (the stranded rows measure it).
inline constexpr int kMaxLookBackoff = 2;

// A worker with an io poller that waits for a core is left alone
// (handoff.cpp, had_core) until it has been in the same fiber this many
// handoff_after periods (5 ms at the default 200 us); then its fibers are
// taken as from a stuck worker (unmarked: their sockets stay). A bound,
// because "no core" is a guess about the kernel: a thread pinned with
// others to one CPU (pin_workers with more workers than CPUs, a cpuset)
// or sharing a core with other programs may run under half the time for
// as long as its fiber computes, and the kernel never moves it to our
// idle core. Run-queue waits of a gathered echo64 worker were 0.4-6.5 ms
// while hand-offs made the two workers take turns on one core
// (docs/decisions/0015-gather.md "The stuck looks were run-queue waits");
// the bound is for the rare one, and Go preempts after 10 ms.
inline constexpr int kNoCorePeriods = 25;

// A worker that holds queued fibers yet switched fewer than this many
// times in a period (handoff_after) since the watcher's last look runs
// fibers of a period / kSlowSwitches or longer, and what it holds waits
// for several of them while the watcher idles: it is asked for a
// hand-off as if stuck. The queued fibers this catches are the ones no
// eager transfer exposes: those its readiness woke (worker.hpp,
// core_.polled), and the single fiber behind a running one. A waiter's
// wake-up for a fiber that then runs a period / kSlowSwitches (25 us at
// the default 200 us) is worth it; echo and ping-pong workers switch
// hundreds of times a period and are left alone.
inline constexpr unsigned kSlowSwitches = 8;

// A worker that has not parked for this many handoff_after periods (1 ms
// at the default 200 us) and holds fibers its readiness dispatch woke is
// saturated: its connections arrive faster than it serves them, and a
// watcher asks it for a hand-off however short its fibers run. The io
// layer then moves the socket of each fiber it gave up to the instance of
// the worker that runs it (io_hook.hpp, take_move_target), so a server
// whose connections share one worker while it keeps up spreads them once
// it does not (docs/io.md "Where a connection lives"). A worker that keeps
// up parks between bursts: echo64 on one worker parked ~3,000 times a
// second on the 2-core VM.
inline constexpr int kSaturatedPeriods = 5;

// Installs the handler, once per process (a Scheduler with more than one
// worker and a handoff_after does it).
void install_handoff_handler();

}  // namespace spindle::detail
