// not_callable.hpp: NotCallable, for the compile errors of the entry points
// that take a function (spawn, TaskGroup::spawn, offload, blocking,
// with_timeout, with_deadline). asyncio's habit create_task(fetch("a")) gives
// spawn(fetch("a")) here: the call already ran and spawn got its result.
// Those misuse overloads test NotCallable to say so instead of explaining
// argument passing.
#pragma once

#include <type_traits>

namespace spindle::detail {

// NoOwnCallOperator<T>: the class T declares no operator() (none at all:
// overloaded and template ones count too). In a class derived from T and
// from a class with one operator(), the name operator() is ambiguous exactly
// when T has its own, and &Probe::operator() then fails to form.
struct CallOperatorProbe {
  void operator()() const;
};
template <class T>
struct CallOperatorProbeOf : T, CallOperatorProbe {};
template <class T>
concept NoOwnCallOperator = requires { &CallOperatorProbeOf<T>::operator(); };

// NotCallable<F>: a value of type F can never be called, whatever the
// arguments: not a function, a function pointer or reference, a member
// pointer, nor a class or union that might have an operator(). A final
// class or a union cannot be probed and counts as callable (the error then
// speaks of the arguments instead).
template <class F, class T = std::remove_cvref_t<F>>
concept NotCallable =
    !std::is_function_v<T> && !std::is_function_v<std::remove_pointer_t<T>> &&
    !std::is_member_pointer_v<T> && !std::is_union_v<T> &&
    (!std::is_class_v<T> || (!std::is_final_v<T> && NoOwnCallOperator<T>));

// result_guess_t<F>: what the user meant the Task to hold when F is the
// result of a call (spawn(fetch("a")): fetch's return type), so that the
// static_assert is the only error and the lines after the call compile.
template <class F, class D = std::decay_t<F>>
using result_guess_t = std::conditional_t<std::is_move_constructible_v<D>, D, void>;

// misuse_result<R>(): the value a misuse overload "returns" after its
// static_assert, so that its deduced type is R. With a deduced return type
// the overload's body is compiled at the call, and its static_assert is the
// first error reported, before any in the caller's code. Never runs.
template <class R>
R misuse_result() noexcept {
  __builtin_unreachable();
}

}  // namespace spindle::detail
