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
#include <spindle/runtime/detail/not_callable.hpp>
#include <spindle/runtime/errors.hpp>

namespace spindle {

template <class T>
class Task;

namespace detail {
class Fiber;
// A plain thread (a pool job, a thread of the user's) keeps the same state
// as a fiber's scope fields in a thread_local (suspend.cpp, ThreadScopes):
// on_thread says a scope or shield was entered there.
struct DeadlineScope {
  Fiber* fiber = nullptr;
  bool on_thread = false;
  std::chrono::steady_clock::time_point saved_deadline{};
  std::uint64_t saved_id = 0;
  std::uint64_t id = 0;
};
void enter_deadline(DeadlineScope& s, std::chrono::steady_clock::time_point t) noexcept;
// Leaves the scope; true when this scope's own deadline cancelled the work
// and no outside cancel is pending or the fiber is shielded (the cancel is
// held off there), i.e. the scope must raise TimedOut.
bool leave_deadline(DeadlineScope& s) noexcept;
// expired_scope / restore_expired_scope: for a wait that a deadline scope
// ended (suspend reported `cancelled` and marked the scope expired) whose
// operation completed all the same: a Barrier participant whose phase passed,
// its arrival counted, before it could withdraw. Such a wait takes the mark
// back, so the scope does not raise TimedOut for work that was done. Read
// the mark before the wait (a fiber's, or a plain thread's).
std::uint64_t expired_scope() noexcept;
void restore_expired_scope(std::uint64_t saved) noexcept;
// A shield saves the fiber's deadline scope on entry and clears it, so the
// scopes outside are held off while the ones opened inside work; leaving
// restores it. ShieldScope is that saved state (the shield's own, as
// shields nest), with the record of an outer scope that had already
// expired (a shield in code unwinding from that scope's Cancelled: its
// TimedOut must still be raised when the scope is left).
struct ShieldScope {
  Fiber* fiber = nullptr;
  bool on_thread = false;
  std::chrono::steady_clock::time_point saved_deadline{};
  std::uint64_t saved_id = 0;
  std::uint64_t saved_expired = 0;
};
void enter_shield(ShieldScope& s) noexcept;
void leave_shield(ShieldScope& s) noexcept;

// in_deadline_scope: with_deadline's body. raise() throws the scope's
// TimedOut; it runs only when this scope's own deadline cancelled f, so the
// message is built then and never on the path that finishes in time.
template <class F, class Raise>
SPINDLE_MAY_SUSPEND auto in_deadline_scope(std::chrono::steady_clock::time_point t, F& f,
                                           Raise raise) -> std::invoke_result_t<F&> {
  DeadlineScope scope;
  enter_deadline(scope, t);
  // f may return normally after the scope's deadline cut one of its waits
  // short: something inside caught that Cancelled and went on (a TaskGroup
  // destructor, which cannot throw, cancels and drains its children so).
  // The scope still raises TimedOut, as a cancel's mark stays raised (the
  // file comment): otherwise the caller took work cut short for finished.
  // A scope whose deadline ended no wait returns f's result, late or not.
  bool left = false;  // the scope is left once, whichever way f ends
  try {
    if constexpr (std::is_void_v<std::invoke_result_t<F&>>) {
      f();
      left = true;
      if (leave_deadline(scope)) raise();
    } else {
      auto r = f();
      left = true;
      if (leave_deadline(scope)) raise();
      return r;
    }
  } catch (const Cancelled&) {
    if (!left && leave_deadline(scope)) raise();
    throw;
  } catch (...) {
    if (!left) leave_deadline(scope);
    throw;
  }
}
}  // namespace detail

// with_deadline: runs f() on the calling fiber; if `t` passes first, the wait
// f is in (or its next suspension point) is cancelled, the Cancelled unwinds
// f, and with_deadline raises TimedOut ("spindle: timed out (with_deadline: the
// deadline passed)"), also when code inside f caught that Cancelled and
// returned normally. Nested scopes: the earliest deadline
// wins and is reported by its own scope (inner scopes let it pass). A cancel
// from outside the scope surfaces as Cancelled, never TimedOut (inside
// shield(), where the cancel is held off, the scope's TimedOut). A scope that
// finishes in time leaves nothing behind (no timer is armed for the scope
// itself: each wait inside uses min(its own deadline, the scope's)).
// CPU-bound code inside is only interrupted at suspension points (check
// cancellation_requested()). On a plain thread (a pool job, a thread of
// the user's) the scope bounds the thread's blocking waits the same way
// (before 2026-11-30 f ran there without a deadline: a job's
// with_timeout(1s, [&] { q.get(); }) waited for good on an empty queue).
template <class F>
  requires std::invocable<F&>
SPINDLE_MAY_SUSPEND auto with_deadline(std::chrono::steady_clock::time_point t, F&& f)
    -> std::invoke_result_t<F&> {
  return detail::in_deadline_scope(t, f, [] { throw TimedOut("with_deadline"); });
}

// with_timeout: with_deadline(now + d, f). asyncio.timeout / wait_for. A d too
// long for the clock means no deadline; zero or negative, one already passed.
// Its TimedOut names d: "spindle: timed out after 2.5 s (with_timeout)".
//
// with_timeout bounds the *wait*, not a task: with_timeout(d, [&] { return
// task.join(); }) leaves the task running when d passes. To cancel the task
// then, use wait_for(task, d) (wait_for.hpp).
template <class Rep, class Period, class F>
  requires std::invocable<F&>
SPINDLE_MAY_SUSPEND auto with_timeout(std::chrono::duration<Rep, Period> d, F&& f)
    -> std::invoke_result_t<F&> {
  // limit_ns runs only on a timeout (and is defined for any d: a negative
  // one expires at once).
  return detail::in_deadline_scope(detail::deadline_after(d), f, [d] {
    throw TimedOut("with_timeout", detail::limit_ns(d));
  });
}

// Misuse: something that cannot be called with no arguments. A Task: say
// wait_for. Any other value that cannot be called, with_timeout(d,
// fetch("a")) (asyncio's wait_for(coro, d) habit): the call already ran,
// without a limit, and with_timeout got its result. The deduced type is that
// result's (a Task's: its value's), so that nothing after the call is
// reported too. One sentence instead of "no type named 'type' in
// invoke_result".
namespace detail {
template <class...>
inline constexpr bool timeout_misuse_v = false;
// timeout_misuse_result: Task<T> gives T (what join() returns), any other
// value its own type (what the call before with_timeout returned).
template <class X>
struct timeout_misuse_result {
  static constexpr bool task = false;
  using type = result_guess_t<X>;
};
template <class T>
struct timeout_misuse_result<Task<T>> {
  static constexpr bool task = true;
  using type = T;
};
template <class F>
concept ResultNotWork = NotCallable<F> && !timeout_misuse_result<std::remove_cvref_t<F>>::task;
template <class F>
using timeout_misuse_result_t = typename timeout_misuse_result<std::remove_cvref_t<F>>::type;
}  // namespace detail
template <class Rep, class Period, class F>
  requires(!std::invocable<F&>)
auto with_timeout(std::chrono::duration<Rep, Period>, F&&) {
  static_assert(detail::timeout_misuse_v<F> || !detail::ResultNotWork<F>,
                "with_timeout takes the work as a function, not its result: write "
                "with_timeout(d, [&] { return fetch(\"a\"); }); with_timeout(d, fetch(\"a\")) "
                "runs fetch before the limit starts");
  static_assert(detail::timeout_misuse_v<F> || detail::ResultNotWork<F>,
                "Pass with_timeout a callable taking no arguments: with_timeout(d, [&] { return "
                "task.join(); }) to bound a wait, or use wait_for(task, d) to wait for a Task and "
                "cancel it when d passes.");
  return detail::misuse_result<detail::timeout_misuse_result_t<F>>();
}
template <class F>
  requires(!std::invocable<F&>)
auto with_deadline(std::chrono::steady_clock::time_point, F&&) {
  static_assert(detail::timeout_misuse_v<F> || !detail::ResultNotWork<F>,
                "with_deadline takes the work as a function, not its result: write "
                "with_deadline(t, [&] { return fetch(\"a\"); }); with_deadline(t, "
                "fetch(\"a\")) runs fetch before the deadline applies");
  static_assert(detail::timeout_misuse_v<F> || detail::ResultNotWork<F>,
                "Pass with_deadline a callable taking no arguments: with_deadline(t, [&] { "
                "return task.join(); }) to bound a wait, or use wait_for(task, t - now) to wait "
                "for a Task and cancel it when the deadline passes.");
  return detail::misuse_result<detail::timeout_misuse_result_t<F>>();
}

// shield: runs f() with what is outside it held off: the fiber's
// cancellation and the deadline scopes f runs in. Waits inside are not
// interrupted by them; a cancel that arrives meanwhile stays pending and is
// raised at the first suspension point after the shield, and an outer scope
// that expired meanwhile cancels that point too. A deadline scope opened
// inside f still bounds the waits inside it (trio's shielded cancel scope
// works the same way), so clean-up that must complete can still be bounded:
//   sp::shield([&] { sp::with_timeout(5s, [&] { conn.write_all(goodbye); }); });
// For clean-up that must complete (flush, close, rollback). Nestable.
template <class F>
SPINDLE_MAY_SUSPEND auto shield(F&& f) -> std::invoke_result_t<F&> {
  struct Guard {
    detail::ShieldScope s;
    Guard() noexcept { detail::enter_shield(s); }
    ~Guard() { detail::leave_shield(s); }
  } g;
  return f();
}

}  // namespace spindle
