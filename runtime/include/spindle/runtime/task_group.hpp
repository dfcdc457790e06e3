// task_group.hpp: TaskGroup, a scope that owns fibers (asyncio.TaskGroup,
// Trio's nursery, Go's errgroup).
//
//   {
//     sp::TaskGroup g;
//     g.spawn(fetch, a);
//     g.spawn(fetch, b);     // children may call g.spawn too
//     g.wait();              // rethrows the first child failure
//   }                        // the destructor waits as well
//
// Rules:
//  1. No child outlives the group: wait() and the destructor return only
//     after every child's fiber (including children spawned meanwhile by
//     other children) has ended.
//  2. The first child failure (any exception but Cancelled) cancels every
//     other child, and children spawned afterwards start cancelled (their
//     bodies never run). wait() rethrows that first failure once all
//     children ended; errors() holds every failure in the order they
//     happened. A child that ends with Cancelled is not a failure.
//  3. cancel() cancels every child (and later spawns); wait() then returns
//     normally unless a child failed.
//  4. If the fiber in wait() is cancelled (Task::cancel, or a with_timeout
//     around it expires), the group cancels all children, waits for them
//     (shielded, so the wait itself cannot be interrupted again) and
//     rethrows Cancelled (with_timeout turns it into TimedOut).
//  5. The destructor waits too and never throws. If it runs during stack
//     unwinding (the scope's body threw), it cancels the children first (as
//     asyncio.TaskGroup aborts on an exception in its body). If the waiting
//     fiber is cancelled there, the children are cancelled and waited for;
//     the cancellation stays pending and surfaces at the fiber's next
//     suspension point. Failures that no wait() or errors() delivered are
//     reported on stderr, never lost.
//
// Who may call: spawn and cancel from any fiber (the owner or a child) while
// the group is alive; wait, errors and the destructor from the owner. A
// plain thread may own a group (wait blocks the thread).
//
// Thread-safety and memory ordering: the group's state is guarded by one
// mutex. A child's failure is recorded under it before the child's fiber is
// marked done, and wait() reads the record under it after it saw every
// child done (acquire), so errors() after wait() sees every failure.
// Task values follow Task<T>'s rules (join the Task spawn returned).
#pragma once

#include <concepts>
#include <cstddef>
#include <exception>
#include <mutex>
#include <spindle/runtime/source_location.hpp>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include <spindle/runtime/detail/fiber.hpp>
#include <spindle/runtime/detail/macros.hpp>
#include <spindle/runtime/detail/not_callable.hpp>
#include <spindle/runtime/errors.hpp>
#include <spindle/runtime/options.hpp>
#include <spindle/runtime/spawn.hpp>
#include <spindle/runtime/task.hpp>

namespace spindle {

class TaskGroup {
 public:
  TaskGroup() noexcept;
  ~TaskGroup();
  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;

  // spawn: starts f(args...) as a child of the group and returns its Task
  // (join it for the value after wait(), or drop it: the group keeps
  // track either way). Same argument rules as spindle::spawn. Never
  // suspends. After a failure or cancel() the child is spawned cancelled.
  template <class F>
    requires std::invocable<std::decay_t<F>>
  auto spawn(F&& f, spindle::source_location where = spindle::source_location::current()) {
    return spawn_child(nullptr, where, std::forward<F>(f));
  }
  // With arguments, as spindle::spawn: a defaulted spindle::source_location
  // cannot follow a parameter pack, so up to three arguments have their own
  // overloads (the spawn site is the caller's); with more it is unknown
  // unless SpawnOptions come first (they record the site where they are made).
  template <class F, detail::SpawnArgument A0>
    requires std::invocable<std::decay_t<F>, std::decay_t<A0>>
  auto spawn(F&& f, A0&& a0, spindle::source_location where = spindle::source_location::current()) {
    return spawn_child(nullptr, where, std::forward<F>(f), std::forward<A0>(a0));
  }
  template <class F, detail::SpawnArgument A0, detail::SpawnArgument A1>
    requires std::invocable<std::decay_t<F>, std::decay_t<A0>, std::decay_t<A1>>
  auto spawn(F&& f, A0&& a0, A1&& a1,
             spindle::source_location where = spindle::source_location::current()) {
    return spawn_child(nullptr, where, std::forward<F>(f), std::forward<A0>(a0),
                       std::forward<A1>(a1));
  }
  template <class F, detail::SpawnArgument A0, detail::SpawnArgument A1, detail::SpawnArgument A2>
    requires std::invocable<std::decay_t<F>, std::decay_t<A0>, std::decay_t<A1>,
                            std::decay_t<A2>>
  auto spawn(F&& f, A0&& a0, A1&& a1, A2&& a2,
             spindle::source_location where = spindle::source_location::current()) {
    return spawn_child(nullptr, where, std::forward<F>(f), std::forward<A0>(a0),
                       std::forward<A1>(a1), std::forward<A2>(a2));
  }
  template <class F, class A0, class A1, class A2, class A3, class... Args>
    requires std::invocable<std::decay_t<F>, std::decay_t<A0>, std::decay_t<A1>,
                            std::decay_t<A2>, std::decay_t<A3>, std::decay_t<Args>...>
  auto spawn(F&& f, A0&& a0, A1&& a1, A2&& a2, A3&& a3, Args&&... args) {
    return spawn_child(nullptr, spindle::source_location{}, std::forward<F>(f),
                       std::forward<A0>(a0), std::forward<A1>(a1), std::forward<A2>(a2),
                       std::forward<A3>(a3), std::forward<Args>(args)...);
  }
  template <class F, class... Args>
    requires std::invocable<std::decay_t<F>, std::decay_t<Args>...>
  auto spawn(const SpawnOptions& opts, F&& f, Args&&... args) {
    return spawn_child(&opts, opts.where, std::forward<F>(f), std::forward<Args>(args)...);
  }
  // Misuse, as spindle::spawn's: a first argument that cannot be called
  // (group.spawn(fetch("a")), the result of a call), or a callable that
  // cannot take copies of the arguments. One sentence instead of the list of
  // candidates above.
  template <class F, class... Args>
    requires(!std::same_as<std::remove_cvref_t<F>, SpawnOptions> &&
             !std::invocable<std::decay_t<F>, std::decay_t<Args>...>)
  auto spawn(F&&, Args&&...) {
    if constexpr (detail::NotCallable<F>) {
      static_assert(detail::spawn_misuse_v<F, Args...>,
                    "TaskGroup::spawn takes the function and its arguments, not its result: "
                    "write group.spawn(fetch, \"a\") or group.spawn([&]{ return fetch(\"a\"); })");
      return Task<detail::result_guess_t<F>>();  // never reached: no follow-on errors
    } else {
      static_assert(detail::spawn_misuse_v<F, Args...>,
                    "To pass an argument by reference, write group.spawn(f, std::ref(x)) "
                    "(std::cref(x) for a const T& parameter): spawn copies each argument into "
                    "the fiber and passes the copy as an rvalue (if no parameter is a "
                    "reference, check the argument count and types).");
      return Task<void>();  // never reached
    }
  }
  template <class F, class... Args>
    requires(!std::invocable<std::decay_t<F>, std::decay_t<Args>...>)
  auto spawn(const SpawnOptions&, F&&, Args&&...) {
    if constexpr (detail::NotCallable<F>) {
      static_assert(detail::spawn_misuse_v<F, Args...>,
                    "TaskGroup::spawn takes the function and its arguments, not its result: "
                    "write group.spawn(options, fetch, \"a\") or group.spawn(options, [&]{ "
                    "return fetch(\"a\"); })");
      return Task<detail::result_guess_t<F>>();  // never reached: no follow-on errors
    } else {
      static_assert(detail::spawn_misuse_v<F, Args...>,
                    "To pass an argument by reference, write group.spawn(options, f, "
                    "std::ref(x)) (std::cref(x) for a const T& parameter): spawn copies each "
                    "argument into the fiber and passes the copy as an rvalue (if no parameter "
                    "is a reference, check the argument count and types).");
      return Task<void>();  // never reached
    }
  }

  // wait: suspends until every child ended, then rethrows the first child
  // failure, if any. A cancellation point (rule 4). May be called again
  // after more spawns; a failed group keeps rethrowing its first failure.
  // A child of this group that calls it would wait for itself: it gets
  // std::logic_error instead, once the children spawned after it ended.
  SPINDLE_MAY_SUSPEND void wait();

  // cancel: cancels every child, now and spawned later (rule 3). Any fiber
  // or thread; never suspends.
  void cancel() noexcept;

  // errors: every child failure so far, in the order they happened.
  std::vector<std::exception_ptr> errors() const;

  // failed: true once a child failed.
  bool failed() const;

 private:
  template <class F, class... Args>
  auto spawn_child(const SpawnOptions* opts, const spindle::source_location& where, F&& f,
                   Args&&... args) {
    using R = std::invoke_result_t<std::decay_t<F>, std::decay_t<Args>...>;
    // The wrapper reports a failure to the group from inside the child,
    // before the child's fiber is marked done, so the siblings are cancelled
    // at once, whether or not anyone is waiting. It must not touch the group
    // after child_failed returns: the group may end as soon as the fiber is
    // done. A child cancelled before it first runs never runs the wrapper;
    // that is fine, Cancelled is not a failure.
    auto body = [g = this, fn = std::forward<F>(f),
                 tup = std::make_tuple(std::forward<Args>(args)...)]() mutable -> R {
      try {
        return std::apply(fn, std::move(tup));
      } catch (const Cancelled&) {
        throw;
      } catch (...) {
        g->child_failed(std::current_exception());
        throw;
      }
    };
    // The child's place in children_ and whether it starts cancelled are
    // decided before it is scheduled (a thief could start it at once); a
    // failure that comes later is handled by adopt(), which cannot fail.
    struct Unreserve {
      TaskGroup* g;
      ~Unreserve() {
        if (g != nullptr) g->unreserve();
      }
    };
    const bool start_cancelled = reserve();
    Unreserve undo{this};
    auto task = detail::make_task_maybe_cancelled(nullptr, opts, where, start_cancelled, std::move(body));
    undo.g = nullptr;
    adopt(detail::TaskAccess::fiber(task));
    return task;
  }

  // reserve: room in children_ for one more child, made before the child
  // is scheduled, so that adopt() allocates nothing. Before, adopt's
  // push_back came after the schedule: a bad_alloc there left a running
  // child outside the group (never waited for, holding a pointer to a
  // group that might be gone) and a reference leaked (a helper's review).
  // Returns whether the child must start cancelled. unreserve: the spawn
  // failed between reserve() and adopt().
  bool reserve();
  void unreserve() noexcept;
  void adopt(detail::Fiber* f) noexcept;
  void child_failed(std::exception_ptr e) noexcept;
  void cancel_children(detail::Fiber* except) noexcept;
  void wait_children();
  void drain() noexcept;
  void report_undelivered() noexcept;

  mutable std::mutex mu_;
  // Children not yet seen done by a wait; one reference each. Pruned of done
  // ones in reserve() when it doubles, so a long-lived group stays small.
  // Invariant: capacity >= size + reserved_ (reserve, adopt).
  std::vector<detail::Fiber*> children_;  // guarded by mu_
  std::size_t prune_at_ = 64;             // guarded by mu_
  std::size_t reserved_ = 0;              // places reserved, not yet adopted; guarded by mu_
  std::vector<std::exception_ptr> errors_;  // guarded by mu_
  mutable std::size_t delivered_ = 0;  // errors_ handed out by wait()/errors(); guarded by mu_
  bool cancelling_ = false;    // failure or cancel(): new children start cancelled; guarded by mu_
  int uncaught_at_birth_;      // owner only: std::uncaught_exceptions() at construction
};

}  // namespace spindle
