// this_fiber.hpp: what a fiber can ask about and do to itself.
//
// Thread state a fiber shares: after any suspension point a fiber may run on
// another worker thread, so thread_locals and the floating-point environment
// (fesetround, exception masks, flush-to-zero) are the worker's, not the
// fiber's. A fiber that changes the FP environment restores it before it
// suspends (docs/decisions/0003-context-switch.md). Use FiberLocal
// (fiber_local.hpp) for per-fiber data.
#pragma once

#include <chrono>
#include <cstdint>
#include <string_view>

#include <spindle/runtime/detail/deadline.hpp>
#include <spindle/runtime/detail/macros.hpp>

namespace spindle {

// yield: moves the calling fiber to the back of its worker's run order so
// that every other runnable fiber there runs first (asyncio.sleep(0),
// Gosched). A cancellation point. On a plain thread: std::this_thread::yield
// (raising Cancelled, as a wait would, once the thread's deadline scope has
// passed).
SPINDLE_MAY_SUSPEND void yield();

// sleep_until / sleep_for: suspend the calling fiber until the time has come
// (the worker's timer heap wakes it at the deadline or later, never early). A
// cancellation point. On a plain thread they block the thread. sleep_for
// with a d too long for the clock sleeps until cancelled; with zero or a
// negative d it returns at once.
SPINDLE_MAY_SUSPEND void sleep_until(std::chrono::steady_clock::time_point t);
template <class Rep, class Period>
SPINDLE_MAY_SUSPEND void sleep_for(std::chrono::duration<Rep, Period> d) {
  sleep_until(detail::deadline_after(d));
}

// cancellation_requested: true when the calling fiber's task was cancelled
// or a deadline scope it runs in has passed (its next wait would raise
// Cancelled), so long CPU loops can stop on their own. Inside shield(), only
// the scopes opened inside it count. On a plain thread: its deadline scopes
// only (no cancel reaches a thread). Never suspends.
bool cancellation_requested() noexcept;

namespace this_fiber {
// id: the calling fiber's id (as Task::id()); 0 on a plain thread.
std::uint64_t id() noexcept;
// name: the calling fiber's name ("" if unnamed or on a plain thread). The
// view stays valid while the fiber lives.
std::string_view name() noexcept;
// in_fiber: true when called on a spindle fiber.
bool in_fiber() noexcept;
// worker_index: index of the worker thread running the caller right now, or
// -1 on a plain thread. It may differ after any suspension point.
int worker_index() noexcept;
}  // namespace this_fiber

}  // namespace spindle
