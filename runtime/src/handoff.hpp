// handoff.hpp: the SIGURG handler of the hand-off (handoff.cpp; the
// Worker's side is in worker.hpp, when to ask is placement.hpp, the essay
// is docs/runtime.md "Hand-off").
#pragma once

namespace spindle::detail {

// Installs the handler, once per process (a Scheduler with more than one
// worker and a handoff_after does it).
void install_handoff_handler();

}  // namespace spindle::detail
