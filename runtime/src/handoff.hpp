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

// Installs the handler, once per process (a Scheduler with more than one
// worker and a handoff_after does it).
void install_handoff_handler();

}  // namespace spindle::detail
