// errors.hpp: the exceptions the runtime raises at suspension points.
#pragma once

#include <stdexcept>

namespace spindle {

// Cancelled is raised at the current or next suspension point of a fiber
// whose task was cancelled (Task::cancel, runtime shutdown). Let it
// propagate: RAII does the clean-up, and `join` on the task raises it again.
// It deliberately does not derive from std::exception, so that a
// `catch (const std::exception&)` in user code does not swallow it.
struct Cancelled {
  const char* what() const noexcept { return "spindle: fiber cancelled"; }
};

// TimedOut is raised out of a with_timeout / with_deadline scope and by
// timed waits.
struct TimedOut : std::runtime_error {
  TimedOut() : std::runtime_error("spindle: timed out") {}
};

// Deadlock is raised by Runtime::block_on and run when every fiber is blocked
// and nothing (timer, I/O, offload, another thread) is left to wake one.
struct Deadlock : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace spindle
