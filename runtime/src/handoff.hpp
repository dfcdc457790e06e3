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
