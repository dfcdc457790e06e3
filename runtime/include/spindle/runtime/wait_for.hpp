// wait_for.hpp: wait_for(task, d), asyncio.wait_for over a Task: wait for
// it with a time limit, and cancel it when the limit passes.
//
// Compare with_timeout(d, [&] { return task.join(); }): that bounds only the
// *wait*; on timeout the task keeps running. wait_for bounds the task.
#pragma once

#include <chrono>
#include <type_traits>
#include <utility>

#include <spindle/runtime/detail/deadline.hpp>
#include <spindle/runtime/detail/fiber.hpp>
#include <spindle/runtime/detail/macros.hpp>
#include <spindle/runtime/errors.hpp>
#include <spindle/runtime/task.hpp>

namespace spindle {

namespace detail {
// finish_or_cancel: waits until f is done or `deadline` passes. True when f
// is done in time. On timeout, cancels f and waits (shielded) until it has
// ended: false if it ended with Cancelled, true if it ended otherwise (its
// value, or an exception of its own). If the caller is cancelled meanwhile (or a
// with_timeout scope around it expires), cancels f, waits for it the same
// way and raises Cancelled. Defined in runtime/src/combinators.cpp.
bool finish_or_cancel(Fiber* f, std::chrono::steady_clock::time_point deadline);
}  // namespace detail

// wait_for(task, d): waits up to d for the task and returns what join()
// returns (its value, or rethrows its exception). If d passes first, the
// task is cancelled and wait_for waits until it has ended (its RAII clean-up
// has run), then raises TimedOut ("spindle: timed out after 2.5 s
// (wait_for)") if the cancel ended it. A task that ended otherwise all the
// same (it computed past d without reaching a wait, or caught Cancelled and
// returned) gives its outcome as join() would: its value, or its own
// exception (asyncio 3.12's wait_for the same); before 2026-12-01 that was
// TimedOut too, and a temporary task's value was lost with it. If
// the *caller* is cancelled meanwhile, the task is cancelled and waited for
// the same way and Cancelled propagates (asyncio's wait_for does the same).
// A d too long for the clock means no limit; zero or negative, the limit has
// already passed (a task that is already done still returns its value).
//
// May suspend the calling fiber (on a plain thread it blocks); a
// cancellation point. The task must be non-empty. An lvalue task is joined
// as join() would (a copyable value stays in it); a temporary
// (wait_for(spawn(f), 1s)) gives its value up.
template <class T, class Rep, class Period>
SPINDLE_MAY_SUSPEND T wait_for(Task<T>& task, std::chrono::duration<Rep, Period> d) {
  SPINDLE_CHECK_TASK(detail::TaskAccess::fiber(task));
  if (!detail::finish_or_cancel(detail::TaskAccess::fiber(task), detail::deadline_after(d)))
    throw TimedOut("wait_for", detail::limit_ns(d));
  return task.join();
}
template <class T, class Rep, class Period>
SPINDLE_MAY_SUSPEND T wait_for(Task<T>&& task, std::chrono::duration<Rep, Period> d) {
  SPINDLE_CHECK_TASK(detail::TaskAccess::fiber(task));
  if (!detail::finish_or_cancel(detail::TaskAccess::fiber(task), detail::deadline_after(d)))
    throw TimedOut("wait_for", detail::limit_ns(d));
  return std::move(task).join();
}

}  // namespace spindle
