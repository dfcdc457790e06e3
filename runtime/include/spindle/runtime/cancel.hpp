// cancel.hpp: deadlines and shields, the scoped side of cancellation.
//
// Cancellation model (docs/runtime.md "Cancellation"): Task::cancel() marks
// the fiber; spindle::Cancelled is raised at its current suspension point
// (if it waits) or its next one. The mark stays: a fiber that catches
// Cancelled and goes on gets Cancelled again at its next suspension point,
// until it ends. Code that must finish (clean-up that waits) runs in shield().
#pragma once

#include <chrono>
#include <concepts>
#include <cstdint>
#include <type_traits>
#include <utility>

#include <spindle/runtime/detail/deadline.hpp>
#include <spindle/runtime/detail/macros.hpp>
#include <spindle/runtime/errors.hpp>

namespace spindle {

namespace detail {
class Fiber;
struct DeadlineScope {
  Fiber* fiber = nullptr;
  std::chrono::steady_clock::time_point saved_deadline{};
  std::uint64_t saved_id = 0;
  std::uint64_t id = 0;
};
void enter_deadline(DeadlineScope& s, std::chrono::steady_clock::time_point t) noexcept;
// Leaves the scope; true when this scope's own deadline cancelled the work
// (and no outside cancel is pending), i.e. the scope must raise TimedOut.
bool leave_deadline(DeadlineScope& s) noexcept;
void enter_shield() noexcept;
void leave_shield() noexcept;
}  // namespace detail

// with_deadline: runs f() on the calling fiber; if `t` passes first, the wait
// f is in (or its next suspension point) is cancelled, the Cancelled unwinds
// f, and with_deadline raises TimedOut. Nested scopes: the earliest deadline
// wins and is reported by its own scope (inner scopes let it pass). A cancel
// from outside the scope surfaces as Cancelled, never TimedOut. A scope that
// finishes in time leaves nothing behind (no timer is armed for the scope
// itself: each wait inside uses min(its own deadline, the scope's)).
// CPU-bound code inside is only interrupted at suspension points (check
// cancellation_requested()). On a plain thread f runs without a deadline.
template <class F>
  requires std::invocable<F&>
SPINDLE_MAY_SUSPEND auto with_deadline(std::chrono::steady_clock::time_point t, F&& f)
    -> std::invoke_result_t<F&> {
  detail::DeadlineScope scope;
  detail::enter_deadline(scope, t);
  try {
    if constexpr (std::is_void_v<std::invoke_result_t<F&>>) {
      f();
      detail::leave_deadline(scope);
    } else {
      auto r = f();
      detail::leave_deadline(scope);
      return r;
    }
  } catch (const Cancelled&) {
    if (detail::leave_deadline(scope)) throw TimedOut();
    throw;
  } catch (...) {
    detail::leave_deadline(scope);
    throw;
  }
}

// with_timeout: with_deadline(now + d, f). asyncio.timeout / wait_for. A d too
// long for the clock means no deadline; zero or negative, one already passed.
//
// with_timeout bounds the *wait*, not a task: with_timeout(d, [&] { return
// task.join(); }) leaves the task running when d passes. To cancel the task
// then, use wait_for(task, d) (wait_for.hpp).
template <class Rep, class Period, class F>
  requires std::invocable<F&>
SPINDLE_MAY_SUSPEND auto with_timeout(std::chrono::duration<Rep, Period> d, F&& f)
    -> std::invoke_result_t<F&> {
  return with_deadline(detail::deadline_after(d), std::forward<F>(f));
}

// Misuse: something that cannot be called with no arguments (a Task, a
// value). One sentence instead of "no type named 'type' in invoke_result".
namespace detail {
template <class...>
inline constexpr bool timeout_misuse_v = false;
}  // namespace detail
template <class Rep, class Period, class F>
  requires(!std::invocable<F&>)
auto with_timeout(std::chrono::duration<Rep, Period>, F&&) {
  static_assert(detail::timeout_misuse_v<F>,
                "Pass with_timeout a callable taking no arguments: with_timeout(d, [&] { return "
                "task.join(); }) to bound a wait, or use wait_for(task, d) to wait for a Task and "
                "cancel it when d passes.");
}
template <class F>
  requires(!std::invocable<F&>)
auto with_deadline(std::chrono::steady_clock::time_point, F&&) {
  static_assert(detail::timeout_misuse_v<F>,
                "Pass with_deadline a callable taking no arguments: with_deadline(t, [&] { "
                "return task.join(); }) to bound a wait, or use wait_for(task, t - now) to wait "
                "for a Task and cancel it when the deadline passes.");
}

// shield: runs f() with cancellation and deadlines held off: waits inside
// are not interrupted. A cancel that arrives meanwhile stays pending and is
// raised at the first suspension point after the shield. For clean-up that
// must complete (flush, close, rollback). Nestable.
template <class F>
SPINDLE_MAY_SUSPEND auto shield(F&& f) -> std::invoke_result_t<F&> {
  struct Guard {
    Guard() noexcept { detail::enter_shield(); }
    ~Guard() { detail::leave_shield(); }
  } g;
  return f();
}

}  // namespace spindle
