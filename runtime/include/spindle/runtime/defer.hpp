// defer.hpp: defer(f), Go's `defer`: a scope guard that calls f() when the
// enclosing scope ends, however it ends.
//
//   hub.join(me);
//   auto leaving = sp::defer([&] { hub.leave(me); });
//
// runs hub.leave(me) once, at the end of the scope: on a normal return, on
// an exception, and when the fiber unwinds from Cancelled or TimedOut.
// Guards in one scope run in reverse order of declaration, like Go's.
//
// It is a plain C++ destructor, so it runs on the thread and fiber that
// leave the scope; it is not a cancellation point by itself. f runs
// shielded (runtime/cancel.hpp): a clean-up that waits (a contended
// spindle::Mutex in hub.leave(me)) while the fiber unwinds from Cancelled
// or TimedOut completes, where an unshielded wait would be cancelled at once
// and its Cancelled, leaving the destructor, would call std::terminate.
// Shielded also means that nothing outside f ends its waits: not the
// fiber's cancel, not a with_timeout around the guard (on a normal exit
// too); at the runtime's shutdown such a fiber is abandoned after
// shutdown_timeout. A clean-up that waits on something that may never come
// waits for ever. Bound one that waits on a peer with a scope of its own
// (a deadline scope opened inside a shield still ends its waits), and
// catch its TimedOut:
//   auto bye = sp::defer([&] {
//     try {
//       sp::with_timeout(5s, [&] { conn.write_all(goodbye); });
//     } catch (const std::exception&) {}  // TimedOut, or the peer gone
//   });
//
// If f throws, std::terminate is called, as for any destructor that
// throws: the destructor is noexcept, and a second exception while the
// scope unwinds from a first could not be reported anyway. Catch inside f
// what it may throw. (Requiring a noexcept callable would have caught this
// at compile time, but every `[&] { ... }` would then need `noexcept`
// spelled out, which is the clutter this header exists to remove.)
#pragma once

#include <type_traits>
#include <utility>

#include <spindle/runtime/cancel.hpp>

namespace spindle {

// Deferred<F>: the guard that defer(f) returns. Move-only, so exactly one
// object owns the call; a moved-from guard is disarmed.
template <class F>
class [[nodiscard]] Deferred {
  static_assert(std::is_invocable_v<F&>, "defer(f): f must be callable with no arguments");

 public:
  explicit Deferred(F f) noexcept(std::is_nothrow_move_constructible_v<F>) : f_(std::move(f)) {}
  // If moving F throws, `other` stays armed, so f still runs exactly once.
  Deferred(Deferred&& other) noexcept(std::is_nothrow_move_constructible_v<F>)
      : f_(std::move(other.f_)), armed_(std::exchange(other.armed_, false)) {}
  Deferred(const Deferred&) = delete;
  // No assignment: a guard is bound to the scope it was declared in.
  Deferred& operator=(const Deferred&) = delete;
  Deferred& operator=(Deferred&&) = delete;
  ~Deferred() {
    if (armed_) shield(f_);
  }

  // dismiss: disarms the guard; f will not be called (a commit after which
  // the roll-back is no longer wanted). Named apart from Task::cancel(),
  // which raises Cancelled in a fiber; this raises nothing.
  void dismiss() noexcept { armed_ = false; }

 private:
  F f_;
  bool armed_ = true;
};

// defer: calls f() when the returned guard goes out of scope. [[nodiscard]]
// because a discarded guard is destroyed at the end of the statement, so
// `sp::defer(f);` alone would call f at once, not at scope end.
template <class F>
[[nodiscard]] Deferred<std::decay_t<F>> defer(F&& f) {
  return Deferred<std::decay_t<F>>(std::forward<F>(f));
}

}  // namespace spindle
