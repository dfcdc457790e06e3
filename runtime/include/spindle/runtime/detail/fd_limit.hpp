// fd_limit.hpp: the descriptor limit spindle raises for itself, and the one
// it hands back to the programs it starts (docs/runtime.md "Descriptor
// limit").
#pragma once

#include <sys/resource.h>

namespace spindle::detail {

// raise_fd_limit_once: the first call in the process raises RLIMIT_NOFILE's
// soft limit to its hard limit and remembers the soft limit it found; later
// calls do nothing. Called by the first Runtime whose options allow it.
// Never throws; a limit the kernel refuses to raise is left as it was.
void raise_fd_limit_once() noexcept;

// fd_limit_for_children: true, with the soft and hard limits the process
// started with in `out`, while the soft limit is still the one
// raise_fd_limit_once set. False when nothing was raised, or the program has
// set a limit of its own since (its choice then reaches its children too).
bool fd_limit_for_children(rlimit& out) noexcept;

}  // namespace spindle::detail
