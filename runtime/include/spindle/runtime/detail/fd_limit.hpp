// fd_limit.hpp: the descriptor limit spindle raises for itself
// (docs/runtime.md "Descriptor limit").
#pragma once

namespace spindle::detail {

// raise_fd_limit_once: the first call in the process raises RLIMIT_NOFILE's
// soft limit to its hard limit; later calls do nothing. Called by the first Runtime whose options allow it.
// Never throws; a limit the kernel refuses to raise is left as it was.
void raise_fd_limit_once() noexcept;

}  // namespace spindle::detail
