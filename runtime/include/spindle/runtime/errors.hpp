// errors.hpp: the exceptions the runtime raises at suspension points.
#pragma once

#include <chrono>
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
// timed waits. what() names the call and its limit where the call knows
// them: "spindle: timed out after 2.5 s (with_timeout)", "spindle: timed out
// (with_deadline: the deadline passed)"; otherwise "spindle: timed out".
// The text is built only when a timeout is raised, never on the path that
// finishes in time (the two constructors below are out of line).
struct TimedOut : std::runtime_error {
  TimedOut() : std::runtime_error("spindle: timed out") {}
  // operation: a string literal naming the call ("with_timeout").
  TimedOut(const char* operation, std::chrono::nanoseconds limit);
  // For a call that has a deadline but no duration (with_deadline).
  explicit TimedOut(const char* operation);
};

// Deadlock is raised by Runtime::block_on and run when every fiber is blocked
// and nothing (timer, I/O, offload, another thread) is left to wake one.
struct Deadlock : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// AlreadyJoined is raised by a second join() of a Task whose result was
// moved out: by the first join() of a Task with a move-only result, or by
// std::move(task).join() (and gather / gather_settled over such a task).
// A copyable result is never moved out by an lvalue join(): join() again
// returns the same value, as awaiting an asyncio.Task again does.
struct AlreadyJoined : std::logic_error {
  AlreadyJoined()
      : std::logic_error(
            "spindle: join() on a Task whose move-only result was already taken by an "
            "earlier join(); join once and keep the value") {}
};

}  // namespace spindle
