// select.hpp: select(), Go's select statement over channel operations.
//
//   sp::select(sp::on_recv(jobs, [](std::optional<Job> j) { /* nullopt: closed */ }),
//              sp::on_send(results, r, [] { /* r was sent */ }),
//              sp::on_timeout(100ms, [] { /* nothing was ready in time */ }));
//   // or sp::on_default([] { ... }) instead of on_timeout: runs at once when
//   // no channel case is ready.
//
// Exactly one case runs. If several channel cases are ready, one is chosen
// uniformly at random (so no case starves). Otherwise: with on_default its
// handler runs at once; else the caller waits until a case becomes ready
// (or on_timeout's time passes). A recv case on a closed, drained channel is
// ready and gets nullopt; a send case on a closed channel raises
// ChannelClosed. Handlers run after every internal lock is released.
// Returns the index (0-based, in argument order) of the case that ran.
//
// May suspend (a plain thread blocks); a cancellation point (Cancelled, no
// case ran). Any fiber or thread.
//
// Memory ordering: as for the channel operation that ran (channel.hpp).
//
// How it waits: detail/select.hpp.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <type_traits>
#include <utility>

#include <spindle/sync/channel.hpp>
#include <spindle/sync/detail/select.hpp>

namespace spindle {

// on_recv(ch, f): a case receiving from ch; f(std::optional<T>) gets the
// value, or nullopt if ch is closed and drained.
template <class T, class F>
auto on_recv(Channel<T>& ch, F f) {
  return detail::RecvCase<T, F>{&ch, std::move(f)};
}
// on_send(ch, v, f): a case sending v on ch; f() runs once it was sent.
// v is copied (or moved) into the case, which owns it: a moved-in value
// goes with the case when another case runs, or the select is cancelled
// or raises. on_send(ch, std::ref(v), f) borrows the caller's object
// instead and moves from it only if this case sends, so nothing is lost;
// v must then outlive the select (as with std::thread's std::ref). A type
// that cannot be copied (a std::unique_ptr) must be sent that way: handed
// over as an rvalue it would be lost as above, so that is refused at
// compile time. (A container of such values, which reports itself
// copyable, is not refused: send it with std::ref too.)
namespace detail {
template <class U>
inline constexpr bool is_ref_wrapper_v = false;
template <class U>
inline constexpr bool is_ref_wrapper_v<std::reference_wrapper<U>> = true;
}  // namespace detail

template <class T, class U, class F>
  requires(std::is_copy_constructible_v<T> && !detail::is_ref_wrapper_v<std::remove_cvref_t<U>>)
auto on_send(Channel<T>& ch, U&& v, F f) {
  return detail::SendCase<T, F>{&ch, T(std::forward<U>(v)), std::move(f)};
}
template <class T, class F>
auto on_send(Channel<T>& ch, std::reference_wrapper<T> v, F f) {
  return detail::SendCase<T, F, true>{&ch, &v.get(), std::move(f)};
}
template <class T, class U, class F>
  requires(!std::is_copy_constructible_v<T> && !detail::is_ref_wrapper_v<std::remove_cvref_t<U>>)
auto on_send(Channel<T>&, U&&, F) {
  static_assert(sizeof(U) == 0,
                "spindle::on_send: a value that cannot be copied goes as on_send(ch, std::ref(v), f): it is "
                "moved from only if this case sends (handed over, it would be lost when another case runs)");
}

// on_timeout(d, f): f() runs if no channel case became ready within d.
template <class Rep, class Period, class F>
auto on_timeout(std::chrono::duration<Rep, Period> d, F f) {
  return detail::TimeoutCase<F>{detail::deadline_after(d), std::move(f)};
}
// on_deadline(t, f): as on_timeout, with an absolute steady_clock time.
template <class F>
auto on_deadline(std::chrono::steady_clock::time_point t, F f) {
  return detail::TimeoutCase<F>{t, std::move(f)};
}
// on_default(f): f() runs at once if no channel case is ready.
template <class F>
auto on_default(F f) {
  return detail::DefaultCase<F>{std::move(f)};
}

// select: see the file comment.
template <class... C>
SPINDLE_MAY_SUSPEND std::size_t select(C&&... cases) {
  static_assert(sizeof...(C) > 0, "select needs at least one case");
  static_assert(((std::remove_cvref_t<C>::kind == detail::CaseKind::timeout) + ... + 0) <= 1,
                "select: at most one on_timeout");
  static_assert(((std::remove_cvref_t<C>::kind == detail::CaseKind::fallback) + ... + 0) <= 1,
                "select: at most one on_default");
  detail::Selector<std::remove_reference_t<C>...> s(cases...);
  return s.run();
}

}  // namespace spindle
