// spawn.hpp: start a fiber. asyncio.create_task / go f() / fibers::fiber.
#pragma once

#include <concepts>
#include <functional>
#include <spindle/runtime/source_location.hpp>
#include <tuple>
#include <type_traits>
#include <utility>

#include <spindle/runtime/detail/not_callable.hpp>
#include <spindle/runtime/options.hpp>
#include <spindle/runtime/task.hpp>

namespace spindle {

namespace detail {

// make_task_maybe_cancelled: make_task whose fiber may be marked cancelled
// before it is scheduled (TaskGroup: a child spawned after a failure must
// never run its body, and an idle worker could steal and start it at once).
template <class F, class... Args>
auto make_task_maybe_cancelled(Scheduler* target, const SpawnOptions* opts,
                               const spindle::source_location& where, bool start_cancelled, F&& f,
                               Args&&... args) {
  using R = std::invoke_result_t<std::decay_t<F>, std::decay_t<Args>...>;
  auto body = [fn = std::forward<F>(f),
               tup = std::make_tuple(std::forward<Args>(args)...)]() mutable -> R {
    return std::apply(fn, std::move(tup));
  };
  if (opts) check_stack_size(opts->stack_size, "spindle::spawn: SpawnOptions::stack_size");
  auto* fiber = new TaskFiber<R, decltype(body)>(std::move(body));
  fiber->add_ref();  // one for the Task, one for the scheduler
  if (start_cancelled) fiber->cancel_requested_.store(true, std::memory_order_relaxed);
  const std::string* name = opts ? &opts->name : nullptr;
  schedule_new(fiber, target, name ? name->data() : nullptr, name ? name->size() : 0,
               opts ? opts->stack_size : 0, where);
  return TaskAccess::make<R>(fiber);
}

template <class F, class... Args>
auto make_task(Scheduler* target, const SpawnOptions* opts, const spindle::source_location& where,
               F&& f, Args&&... args) {
  return make_task_maybe_cancelled(target, opts, where, false, std::forward<F>(f),
                                   std::forward<Args>(args)...);
}

// SpawnArgument: an argument for f in the spawn overloads that end in a
// defaulted spindle::source_location: anything but a source_location, so that
// spawn(f, where) takes `where` as the spawn site, not as an argument for f.
template <class T>
concept SpawnArgument = !std::same_as<std::decay_t<T>, spindle::source_location>;

}  // namespace detail

// spawn: starts f(args...) as a new fiber and returns its Task. The
// arguments are decay-copied into the fiber (use std::ref to share). Never
// suspends; the new fiber runs later on this worker or a thief.
// Callable from a fiber or from a thread inside a Runtime's block_on; from
// any other thread it needs a Runtime that is running (it goes to that
// runtime's global queue). The fiber gets its stack only when it first runs.
// f and the copied arguments are destroyed on the fiber when its body
// returns or throws, or when it was cancelled before it started (before
// join() returns either way), not when the Task goes; a fiber that never
// got to run (a runtime shut down first) destroys them with its last
// reference.
template <class F>
  requires std::invocable<std::decay_t<F>>
auto spawn(F&& f, spindle::source_location where = spindle::source_location::current()) {
  return detail::make_task(nullptr, nullptr, where, std::forward<F>(f));
}

// With arguments. A defaulted spindle::source_location cannot follow a
// parameter pack, so up to three arguments have their own overloads (the
// spawn site then points at the caller); with more, the site is unknown.
template <class F, detail::SpawnArgument A0>
  requires std::invocable<std::decay_t<F>, std::decay_t<A0>>
auto spawn(F&& f, A0&& a0, spindle::source_location where = spindle::source_location::current()) {
  return detail::make_task(nullptr, nullptr, where, std::forward<F>(f), std::forward<A0>(a0));
}

template <class F, detail::SpawnArgument A0, detail::SpawnArgument A1>
  requires std::invocable<std::decay_t<F>, std::decay_t<A0>, std::decay_t<A1>>
auto spawn(F&& f, A0&& a0, A1&& a1,
           spindle::source_location where = spindle::source_location::current()) {
  return detail::make_task(nullptr, nullptr, where, std::forward<F>(f), std::forward<A0>(a0),
                           std::forward<A1>(a1));
}

template <class F, detail::SpawnArgument A0, detail::SpawnArgument A1, detail::SpawnArgument A2>
  requires std::invocable<std::decay_t<F>, std::decay_t<A0>, std::decay_t<A1>, std::decay_t<A2>>
auto spawn(F&& f, A0&& a0, A1&& a1, A2&& a2,
           spindle::source_location where = spindle::source_location::current()) {
  return detail::make_task(nullptr, nullptr, where, std::forward<F>(f), std::forward<A0>(a0),
                           std::forward<A1>(a1), std::forward<A2>(a2));
}

template <class F, class A0, class A1, class A2, class A3, class... Args>
  requires std::invocable<std::decay_t<F>, std::decay_t<A0>, std::decay_t<A1>, std::decay_t<A2>,
                          std::decay_t<A3>, std::decay_t<Args>...>
auto spawn(F&& f, A0&& a0, A1&& a1, A2&& a2, A3&& a3, Args&&... args) {
  return detail::make_task(nullptr, nullptr, spindle::source_location{}, std::forward<F>(f),
                           std::forward<A0>(a0), std::forward<A1>(a1), std::forward<A2>(a2),
                           std::forward<A3>(a3), std::forward<Args>(args)...);
}

// spawn with options: a name (shown in dumps and error reports) and a stack
// size. `SpawnOptions{.name = "reader"}` records the call site itself.
template <class F, class... Args>
  requires std::invocable<std::decay_t<F>, std::decay_t<Args>...>
auto spawn(const SpawnOptions& opts, F&& f, Args&&... args) {
  return detail::make_task(nullptr, &opts, opts.where, std::forward<F>(f),
                           std::forward<Args>(args)...);
}

// Misuse: f cannot be called with the arguments as spawn hands them over.
// Without these two overloads the compiler lists every candidate above; with
// them the error's first line says what to write. Two mistakes look alike:
//  - the first argument cannot be called at all: asyncio's
//    create_task(fetch("a")) habit, spawn(fetch("a")), already ran fetch and
//    passes its result. The Task then holds that result's type, so that the
//    lines after the call compile and the static_assert is the only error;
//  - f is callable, but not with copies of the arguments as rvalues: a T&
//    parameter (std::ref), or the wrong count or types.
namespace detail {
template <class...>
inline constexpr bool spawn_misuse_v = false;
}  // namespace detail

template <class F, class... Args>
  requires(!std::same_as<std::remove_cvref_t<F>, SpawnOptions> &&
           !std::invocable<std::decay_t<F>, std::decay_t<Args>...>)
auto spawn(F&&, Args&&...) {
  if constexpr (detail::NotCallable<F>) {
    static_assert(detail::spawn_misuse_v<F, Args...>,
                  "spawn takes the function and its arguments, not its result: write "
                  "spawn(fetch, \"a\") or spawn([&]{ return fetch(\"a\"); })");
    return Task<detail::result_guess_t<F>>();  // never reached (see above)
  } else {
    static_assert(detail::spawn_misuse_v<F, Args...>,
                  "To pass an argument by reference, write spawn(f, std::ref(x)) (std::cref(x) "
                  "for a const T& parameter). spawn(f, args...) copies each argument into the "
                  "fiber and passes the copy as an rvalue, and f cannot be called that way "
                  "(if no parameter is a reference, check the argument count and types).");
    return Task<void>();  // never reached: only so that `auto t = spawn(...)` reports nothing else
  }
}

template <class F, class... Args>
  requires(!std::invocable<std::decay_t<F>, std::decay_t<Args>...>)
auto spawn(const SpawnOptions&, F&&, Args&&...) {
  if constexpr (detail::NotCallable<F>) {
    static_assert(detail::spawn_misuse_v<F, Args...>,
                  "spawn takes the function and its arguments, not its result: write "
                  "spawn(options, fetch, \"a\") or spawn(options, [&]{ return fetch(\"a\"); })");
    return Task<detail::result_guess_t<F>>();  // never reached (see above)
  } else {
    static_assert(detail::spawn_misuse_v<F, Args...>,
                  "To pass an argument by reference, write spawn(options, f, std::ref(x)) "
                  "(std::cref(x) for a const T& parameter). spawn copies each argument into the "
                  "fiber and passes the copy as an rvalue, and f cannot be called that way "
                  "(if no parameter is a reference, check the argument count and types).");
    return Task<void>();  // never reached: only so that `auto t = spawn(...)` reports nothing else
  }
}

}  // namespace spindle
