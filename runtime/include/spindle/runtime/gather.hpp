// gather.hpp: combinators over Tasks (asyncio.gather, asyncio.wait,
// asyncio.as_completed), built only on the public Task API and the join
// primitives of detail/fiber.hpp (wait_any, cancel_fiber).
//
//   gather(t1, t2, ...)        -> std::tuple of the values, in argument order
//   gather(tasks)              -> std::vector of the values, in input order
//   gather_settled(...)        -> Settled<T> per task (asyncio's
//                                 return_exceptions=True): ok(), value(), what()
//   when_any(...)              -> index of the first task to finish
//   as_completed(tasks)        -> range over the tasks in completion order
//   wait(tasks, WaitFor, [d])  -> WaitResult{done, pending} index sets
//
// Common contract (each declaration below adds its own):
//  - May suspend the calling fiber; on a plain thread they block the thread.
//  - Callers: one fiber or thread per call; the Task objects passed in belong
//    to the caller for the duration of the call. Every Task must be non-empty
//    (a default-constructed or detached Task is a checked misuse).
//  - They are cancellation points: if the *caller* is cancelled (or a
//    with_timeout / with_deadline scope around the call expires) they raise
//    Cancelled (turned into TimedOut by the scope). What happens to the tasks
//    then is said per function. Where they wait for cancelled tasks to end
//    (gather, gather_settled), that wait is shielded, as Trio's scopes
//    wait for their children: a task whose clean-up takes 1.5 s (a
//    shielded close) holds a with_timeout(100ms) around gather for those
//    1.5 s, and the TimedOut comes after. Bound such clean-up inside the
//    task (its own with_timeout under the shield) where the caller's
//    deadline must hold.
//  - Cost: a combinator that must see completions in order (gather,
//    as_completed, wait with first_exception) re-registers on the still
//    pending tasks after each wake-up, O(pending) per wake-up; fine for the
//    tens to thousands of tasks these are meant for. gather_settled and
//    wait(all_completed) are O(n) in total.
//
// Memory ordering: a task's value or exception is written by its fiber
// before the fiber is marked done (release); every combinator observes
// doneness with an acquire load before reading a result, so whatever the
// task wrote before it returned is visible to the caller afterwards.
#pragma once

#include <chrono>
#include <concepts>
#include <cstddef>
#include <exception>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include <spindle/runtime/detail/deadline.hpp>
#include <spindle/runtime/detail/fiber.hpp>
#include <spindle/runtime/detail/macros.hpp>
#include <spindle/runtime/errors.hpp>
#include <spindle/runtime/spawn.hpp>
#include <spindle/runtime/task.hpp>

namespace spindle {

// WaitFor: when wait() returns (asyncio's return_when).
enum class WaitFor {
  first_completed,  // at least one task finished (any way)
  first_exception,  // one task ended with an exception, or all finished.
                    // A task that ended with Cancelled is not an exception
                    // here (asyncio's rule), it is only "completed".
  all_completed,    // every task finished
};

// WaitResult: indices into the tasks vector, each set ascending. A task in
// `done` has finished: join() on it returns at once.
struct WaitResult {
  std::vector<std::size_t> done;
  std::vector<std::size_t> pending;
};

namespace detail {

// The message of an exception: what() for std::exception and Cancelled,
// "unknown exception" otherwise. Empty for a null pointer.
std::string exception_what(const std::exception_ptr& e);
// True when e holds spindle::TimedOut.
bool is_timed_out(const std::exception_ptr& e) noexcept;
// Rethrows a done fiber's exception, marking it observed (as join does).
[[noreturn]] void rethrow_error(Fiber* f);

// The engines behind the templates; fs are the tasks' fibers, all non-null.
//
// gather_all: waits until every fiber is done or one ends with an exception
// (Cancelled included); returns the index of that one (the lowest index
// among those seen failing at the same wake-up), or -1 when all succeeded.
// On a failure, and when the caller is cancelled, it first cancels the
// other fibers and waits (shielded) until all are done.
std::ptrdiff_t gather_all(Fiber* const* fs, std::size_t n);
// settle_all: waits until every fiber is done. If the caller is cancelled,
// cancels the rest, waits for them (shielded) and raises Cancelled.
void settle_all(Fiber* const* fs, std::size_t n);
// cancel_and_drain: cancels every fiber not yet done and waits, shielded,
// until all are done (Trio's "a scope does not end before its children").
void cancel_and_drain(Fiber* const* fs, std::size_t n);
// wait_tasks: the engine of wait(); deadline nullptr for none.
void wait_tasks(Fiber* const* fs, std::size_t n, WaitFor mode,
                const std::chrono::steady_clock::time_point* deadline, WaitResult& out);

template <class T>
Fiber* fiber_of(const Task<T>& t) {
  SPINDLE_CHECK(static_cast<bool>(t), "combinator given an empty or detached Task: pass Tasks that spawn returned and that were not moved from or detached (a moved-from Task is empty)");
  return TaskAccess::fiber(t);
}

template <class T>
std::vector<Fiber*> fibers_of(const std::vector<Task<T>>& tasks) {
  std::vector<Fiber*> fs;
  fs.reserve(tasks.size());
  for (const auto& t : tasks) fs.push_back(fiber_of(t));
  return fs;
}

template <class>
inline constexpr bool is_task_v = false;
template <class T>
inline constexpr bool is_task_v<Task<T>> = true;

template <class X>
concept TaskArg = is_task_v<std::remove_cvref_t<X>> && !std::is_const_v<std::remove_reference_t<X>>;

template <class X>
using task_value_t = decltype(std::declval<std::remove_cvref_t<X>&>().join());

// gather's element type: void results become std::monostate.
template <class T>
using gathered_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

// take: the value of a done task, as join() gives it: an lvalue Task is
// joined as an lvalue (a copyable value is copied and stays in the task), a
// temporary or std::move'd one gives its value up (moved, no copy).
template <class X>
gathered_t<task_value_t<X>> take(X&& t) {
  if constexpr (std::is_void_v<task_value_t<X>>) {
    std::forward<X>(t).join();
    return std::monostate{};
  } else {
    return std::forward<X>(t).join();
  }
}

// result_taken: true when join() on the task would raise AlreadyJoined (its
// move-only result was moved out earlier). Checked for every task before
// gather takes any value, so a misuse costs no other task its result.
template <class T>
bool result_taken(const Task<T>& t) noexcept {
  if constexpr (std::is_void_v<T>) {
    return false;
  } else {
    return TaskAccess::fiber(t)->taken();
  }
}

}  // namespace detail

// Settled<T>: how one task ended: its value, or its exception (Cancelled
// included). asyncio's gather(return_exceptions=True) element. Move-only
// when T is. Not thread-safe; a plain value.
template <class T>
class Settled {
 public:
  explicit Settled(std::exception_ptr e) noexcept : error_(std::move(e)) {}
  template <class... A>
  explicit Settled(std::in_place_t, A&&... a) : value_(std::in_place, std::forward<A>(a)...) {}

  // ok: true when the task returned a value.
  bool ok() const noexcept { return !error_; }
  // cancelled: true when the task ended with spindle::Cancelled.
  bool cancelled() const noexcept { return detail::is_cancellation(error_); }
  // timed_out: true when the task ended with spindle::TimedOut (a
  // with_timeout / wait_for inside it ran out), so callers need not rethrow
  // to find out.
  bool timed_out() const noexcept { return detail::is_timed_out(error_); }
  // value: the task's value; rethrows the task's exception if it failed.
  T& value() & {
    if (error_) std::rethrow_exception(error_);
    return *value_;
  }
  const T& value() const& {
    if (error_) std::rethrow_exception(error_);
    return *value_;
  }
  T&& value() && {
    if (error_) std::rethrow_exception(error_);
    return std::move(*value_);
  }
  // error: the exception (null when ok()).
  const std::exception_ptr& error() const noexcept { return error_; }
  // what: the exception's message ("" when ok()); "unknown exception" for
  // a thrown object that is neither a std::exception nor Cancelled.
  std::string what() const { return detail::exception_what(error_); }

 private:
  std::optional<T> value_;
  std::exception_ptr error_;
};

template <>
class Settled<void> {
 public:
  Settled() noexcept = default;
  explicit Settled(std::exception_ptr e) noexcept : error_(std::move(e)) {}
  bool ok() const noexcept { return !error_; }
  bool cancelled() const noexcept { return detail::is_cancellation(error_); }
  bool timed_out() const noexcept { return detail::is_timed_out(error_); }
  void value() const {
    if (error_) std::rethrow_exception(error_);
  }
  const std::exception_ptr& error() const noexcept { return error_; }
  std::string what() const { return detail::exception_what(error_); }

 private:
  std::exception_ptr error_;
};

namespace detail {
// settle: the outcome of a task that is done (join does not suspend); an
// lvalue is joined as an lvalue, a temporary gives its value up. A task
// whose move-only result was already taken settles as AlreadyJoined.
template <class X>
Settled<task_value_t<X>> settle(X&& t) {
  using T = task_value_t<X>;
  try {
    if constexpr (std::is_void_v<T>) {
      std::forward<X>(t).join();
      return Settled<T>();
    } else {
      return Settled<T>(std::in_place, std::forward<X>(t).join());
    }
  } catch (...) {
    return Settled<T>(std::current_exception());
  }
}
}  // namespace detail

// gather(t1, t2, ...): waits for every task and returns their values as a
// tuple in argument order (void results are std::monostate). Takes the
// tasks as lvalues or temporaries (gather(spawn(a), spawn(b))) and joins
// each as join() would: an lvalue task keeps a copyable value (join it or
// gather it again: the same value), a temporary or a move-only result is
// moved out (a later join raises AlreadyJoined, and so does gather when
// any of its tasks was already joined that way, before taking any value).
//
// First exception: as soon as one task ends with an exception (Cancelled
// included), gather cancels the remaining tasks, waits until they have
// ended, and rethrows that exception. The siblings' own outcomes are left
// unjoined in their Tasks (a sibling's real failure is still reported if
// nobody joins it). Why not asyncio's behaviour (leave them running)? With
// stackful fibers a task usually borrows its caller's stack ([&] captures);
// letting it run past the point where gather threw is a use-after-scope
// waiting to happen, and asyncio users routinely leak such orphans. So
// gather is structured: when it returns or throws, none of its tasks runs.
//
// If the caller is cancelled meanwhile, the tasks are cancelled and waited
// for (shielded) and Cancelled propagates.
template <class... Ts>
  requires(sizeof...(Ts) > 0 && (detail::TaskArg<Ts> && ...))
SPINDLE_MAY_SUSPEND auto gather(Ts&&... ts)
    -> std::tuple<detail::gathered_t<detail::task_value_t<Ts>>...> {
  detail::Fiber* fs[] = {detail::fiber_of(ts)...};
  const std::ptrdiff_t failed = detail::gather_all(fs, sizeof...(Ts));
  if (failed >= 0) detail::rethrow_error(fs[failed]);
  if ((detail::result_taken(ts) || ...)) throw AlreadyJoined();
  // Braced initialisation evaluates left to right; every join is immediate.
  return std::tuple<detail::gathered_t<detail::task_value_t<Ts>>...>{
      detail::take(std::forward<Ts>(ts))...};
}

namespace detail {
// gather_vector / settle_vector: the engines of the vector overloads. With
// `give_up`, each task gives its value up (moved out, as from a temporary).
template <bool give_up, class T>
std::vector<gathered_t<T>> gather_vector(std::vector<Task<T>>& tasks) {
  const std::vector<Fiber*> fs = fibers_of(tasks);
  const std::ptrdiff_t failed = gather_all(fs.data(), fs.size());
  if (failed >= 0) rethrow_error(fs[static_cast<std::size_t>(failed)]);
  for (const auto& t : tasks) {
    if (result_taken(t)) throw AlreadyJoined();
  }
  std::vector<gathered_t<T>> out;
  out.reserve(tasks.size());
  for (auto& t : tasks) {
    if constexpr (give_up) out.push_back(take(std::move(t)));
    else out.push_back(take(t));
  }
  return out;
}
template <bool give_up, class T>
std::vector<Settled<T>> settle_vector(std::vector<Task<T>>& tasks) {
  const std::vector<Fiber*> fs = fibers_of(tasks);
  settle_all(fs.data(), fs.size());
  std::vector<Settled<T>> out;
  out.reserve(tasks.size());
  for (auto& t : tasks) {
    if constexpr (give_up) out.push_back(settle(std::move(t)));
    else out.push_back(settle(t));
  }
  return out;
}

// TaskBody: what gather/gather_settled accept instead of Tasks: a callable
// with no parameters (spawned as a task by the combinator itself).
template <class F>
concept TaskBody = !is_task_v<std::remove_cvref_t<F>> && std::invocable<std::decay_t<F>>;

// spawn_each / spawn_all: spawn each body, in argument order, as a task. If
// a later spawn throws (the copy of its callable, or bad_alloc), every task
// already spawned is cancelled, all at once, and waited for (shielded)
// before the exception leaves: dropped, they would run on detached,
// borrowing the caller's stack through their [&] captures, and gather
// promises that none of its tasks outlives the call.
template <class Tasks, class Bodies, std::size_t... I>
Tasks spawn_each(Bodies&& bodies, std::index_sequence<I...>) {
  std::tuple<std::optional<std::tuple_element_t<I, Tasks>>...> made;
  Fiber* spawned[sizeof...(I)] = {};
  std::size_t k = 0;
  try {
    // A fold over the comma operator: left to right, one spawn at a time.
    // A defaulted source_location cannot follow a pack: the spawn site is
    // unknown rather than a line of this header.
    ((std::get<I>(made).emplace(
          make_task(nullptr, nullptr, spindle::source_location{}, std::get<I>(std::move(bodies)))),
      spawned[k++] = TaskAccess::fiber(*std::get<I>(made))),
     ...);
  } catch (...) {
    cancel_and_drain(spawned, k);
    throw;
  }
  return Tasks{std::move(*std::get<I>(made))...};
}
template <class... Fs>
auto spawn_all(Fs&&... fs) {
  using Tasks = std::tuple<decltype(make_task(nullptr, nullptr, spindle::source_location{},
                                              std::forward<Fs>(fs)))...>;
  return spawn_each<Tasks>(std::forward_as_tuple(std::forward<Fs>(fs)...), std::index_sequence_for<Fs...>{});
}
}  // namespace detail

// gather(tasks): as above for a vector; the values come back in input order.
// An empty vector gives an empty result at once. An lvalue vector's tasks
// are joined as lvalues (copyable values stay in them); gather(std::move(v))
// or gather(a_function_returning_the_vector()) moves the values out.
template <class T>
SPINDLE_MAY_SUSPEND std::vector<detail::gathered_t<T>> gather(std::vector<Task<T>>& tasks) {
  return detail::gather_vector<false>(tasks);
}
template <class T>
SPINDLE_MAY_SUSPEND std::vector<detail::gathered_t<T>> gather(std::vector<Task<T>>&& tasks) {
  return detail::gather_vector<true>(tasks);
}

// gather(f1, f2, ...): spawns each callable (no parameters) as a task, then
// gathers them as gather(t1, t2, ...) does: a tuple of the values in
// argument order; on the first exception the others are cancelled and
// waited for. gather([&] { return a(); }, [&] { return b(); }).
template <class... Fs>
  requires(sizeof...(Fs) > 0 && (detail::TaskBody<Fs> && ...))
SPINDLE_MAY_SUSPEND auto gather(Fs&&... fs) {
  auto tasks = detail::spawn_all(std::forward<Fs>(fs)...);
  return std::apply([](auto&... t) { return gather(std::move(t)...); }, tasks);
}

namespace detail {
template <class...>
inline constexpr bool gather_misuse_v = false;
template <class>
inline constexpr bool is_task_vector_v = false;
template <class T>
inline constexpr bool is_task_vector_v<std::vector<Task<T>>> = true;
// GatherMisuse: arguments that are neither all Tasks nor all callables
// (and not one vector of Tasks): the catch-all overloads below turn the
// compiler's list of candidates into one sentence.
template <class... Xs>
concept GatherMisuse =
    !(sizeof...(Xs) > 0 && (TaskArg<Xs> && ...)) && !(sizeof...(Xs) > 0 && (TaskBody<Xs> && ...)) &&
    !(sizeof...(Xs) == 1 && (is_task_vector_v<std::remove_cvref_t<Xs>> && ...));
}  // namespace detail

// gather(fetch("a"), fetch("b")), asyncio's gather(fetch("a"), fetch("b"))
// habit: every argument is a value that cannot be called, so the calls
// already ran, one after the other, on the caller. The tuple then holds the
// values' types, so that the static_assert is the only error.
template <class... Xs>
  requires detail::GatherMisuse<Xs...>
auto gather(Xs&&...) {
  if constexpr (sizeof...(Xs) > 0 && (detail::NotCallable<Xs> && ...) &&
                !(detail::is_task_v<std::remove_cvref_t<Xs>> || ...)) {
    static_assert(detail::gather_misuse_v<Xs...>,
                  "gather takes functions or Tasks, not results: write gather([&]{ return "
                  "fetch(\"a\"); }, [&]{ return fetch(\"b\"); }) or gather(spawn(fetch, \"a\"), "
                  "spawn(fetch, \"b\")); gather(fetch(\"a\"), fetch(\"b\")) ran them one after "
                  "the other");
    if constexpr ((std::is_void_v<detail::result_guess_t<Xs>> || ...)) {
      return std::tuple<>();
    } else {
      return detail::misuse_result<std::tuple<detail::result_guess_t<Xs>...>>();  // no follow-on errors
    }
  } else {
    static_assert(detail::gather_misuse_v<Xs...>,
                  "Pass gather either Tasks from spawn (gather(t1, t2) or gather(spawn(f), "
                  "spawn(g))), or callables taking no arguments (gather(f, g)), or one "
                  "std::vector<Task<T>>; not a mix, not const Tasks, not a callable that needs "
                  "arguments (bind them in a lambda: [&] { return f(x); }).");
    return std::tuple<>();
  }
}

// gather_settled(tasks): waits for every task and returns how each ended,
// in input order; never throws a task's exception (asyncio's
// return_exceptions=True). A task that fails does not disturb the others.
// Joins each task (an rvalue vector gives the values up, as gather does).
// If the caller is cancelled meanwhile, the tasks are cancelled and waited
// for (shielded) and Cancelled propagates.
template <class T>
SPINDLE_MAY_SUSPEND std::vector<Settled<T>> gather_settled(std::vector<Task<T>>& tasks) {
  return detail::settle_vector<false>(tasks);
}
template <class T>
SPINDLE_MAY_SUSPEND std::vector<Settled<T>> gather_settled(std::vector<Task<T>>&& tasks) {
  return detail::settle_vector<true>(tasks);
}

// gather_settled(t1, t2, ...): the same as a tuple of Settled<T>.
template <class... Ts>
  requires(sizeof...(Ts) > 0 && (detail::TaskArg<Ts> && ...))
SPINDLE_MAY_SUSPEND auto gather_settled(Ts&&... ts)
    -> std::tuple<Settled<detail::task_value_t<Ts>>...> {
  detail::Fiber* fs[] = {detail::fiber_of(ts)...};
  detail::settle_all(fs, sizeof...(Ts));
  return std::tuple<Settled<detail::task_value_t<Ts>>...>{
      detail::settle(std::forward<Ts>(ts))...};
}

// gather_settled(f1, f2, ...): spawns each callable as a task, then as
// gather_settled(t1, t2, ...).
template <class... Fs>
  requires(sizeof...(Fs) > 0 && (detail::TaskBody<Fs> && ...))
SPINDLE_MAY_SUSPEND auto gather_settled(Fs&&... fs) {
  auto tasks = detail::spawn_all(std::forward<Fs>(fs)...);
  return std::apply([](auto&... t) { return gather_settled(std::move(t)...); }, tasks);
}

template <class... Xs>
  requires detail::GatherMisuse<Xs...>
auto gather_settled(Xs&&...) {
  if constexpr (sizeof...(Xs) > 0 && (detail::NotCallable<Xs> && ...) &&
                !(detail::is_task_v<std::remove_cvref_t<Xs>> || ...)) {
    static_assert(detail::gather_misuse_v<Xs...>,
                  "gather_settled takes functions or Tasks, not results: write "
                  "gather_settled([&]{ return fetch(\"a\"); }, [&]{ return fetch(\"b\"); }); "
                  "gather_settled(fetch(\"a\"), fetch(\"b\")) ran them one after the other");
  } else {
    static_assert(detail::gather_misuse_v<Xs...>,
                  "Pass gather_settled either Tasks from spawn (gather_settled(t1, t2)), or "
                  "callables taking no arguments (gather_settled(f, g)), or one "
                  "std::vector<Task<T>>; not a mix, not const Tasks, not a callable that needs "
                  "arguments (bind them in a lambda: [&] { return f(x); }).");
  }
  return std::tuple<>();
}

// when_any(tasks) / when_any(t1, t2, ...): waits until one task has
// finished (value, exception or cancellation) and returns its index (the
// lowest, if several are done). Joins nothing and cancels nothing: the
// caller joins the winner and decides about the rest (cancel them, or let
// them finish). If the caller is cancelled, Cancelled propagates and the
// tasks are left alone. An empty vector is std::invalid_argument.
template <class T>
SPINDLE_MAY_SUSPEND std::size_t when_any(std::vector<Task<T>>& tasks) {
  if (tasks.empty()) throw std::invalid_argument("spindle::when_any: no tasks");
  const std::vector<detail::Fiber*> fs = detail::fibers_of(tasks);
  return static_cast<std::size_t>(detail::wait_any(fs.data(), fs.size(), nullptr));
}

template <class... Ts>
  requires(sizeof...(Ts) > 0 && (detail::TaskArg<Ts> && ...))
SPINDLE_MAY_SUSPEND std::size_t when_any(Ts&&... ts) {
  detail::Fiber* fs[] = {detail::fiber_of(ts)...};
  return static_cast<std::size_t>(detail::wait_any(fs, sizeof...(Ts), nullptr));
}

// AsCompleted<T>: the range as_completed returns. Iterating yields each
// Task<T>& of the vector once, in the order the tasks finish, so join() on
// it returns (or throws) at once. Advancing (begin(), ++) suspends until the
// next task finishes; with a timeout, advancing past the deadline throws
// TimedOut (asyncio.as_completed(timeout=)). Breaking out early leaves the
// remaining tasks running; a cancelled caller gets Cancelled from the
// advance and the tasks are left alone. The vector must outlive the range
// and must not be resized meanwhile. One fiber iterates.
template <class T>
class AsCompleted {
 public:
  class iterator {
   public:
    using value_type = Task<T>;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(AsCompleted* r) : r_(r) {}
    Task<T>& operator*() const { return (*r_->tasks_)[r_->current_]; }
    Task<T>* operator->() const { return &**this; }
    SPINDLE_MAY_SUSPEND iterator& operator++() {
      r_->advance();
      return *this;
    }
    SPINDLE_MAY_SUSPEND void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t) const noexcept { return r_->current_ == npos; }

   private:
    AsCompleted* r_ = nullptr;
  };

  // limit: the timeout the deadline came from, named by TimedOut's text.
  AsCompleted(std::vector<Task<T>>& tasks,
              std::optional<std::chrono::steady_clock::time_point> deadline,
              std::chrono::nanoseconds limit = {})
      : tasks_(&tasks), pending_(detail::fibers_of(tasks)), deadline_(deadline), limit_(limit) {
    index_.reserve(pending_.size());
    for (std::size_t i = 0; i < pending_.size(); ++i) index_.push_back(i);
  }
  AsCompleted(const AsCompleted&) = delete;
  AsCompleted& operator=(const AsCompleted&) = delete;

  // begin: waits for the first task to finish. Call once.
  SPINDLE_MAY_SUSPEND iterator begin() {
    advance();
    return iterator(this);
  }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  void advance() {
    current_ = npos;
    if (pending_.empty()) return;
    const int i = detail::wait_any(pending_.data(), pending_.size(),
                                   deadline_ ? &*deadline_ : nullptr);
    if (i < 0) throw TimedOut("as_completed", limit_);
    const auto at = static_cast<std::size_t>(i);
    current_ = index_[at];
    // erase (not swap-remove) keeps ties in input order: wait_any reports
    // the lowest pending index among those already done.
    pending_.erase(pending_.begin() + i);
    index_.erase(index_.begin() + i);
  }

  std::vector<Task<T>>* tasks_;
  std::vector<detail::Fiber*> pending_;  // fibers not yet yielded
  std::vector<std::size_t> index_;       // their positions in *tasks_
  std::optional<std::chrono::steady_clock::time_point> deadline_;
  std::chrono::nanoseconds limit_;
  std::size_t current_ = npos;
};

// as_completed(tasks[, timeout]): see AsCompleted. Use it as
//   for (auto& t : sp::as_completed(tasks)) use(t.join());
template <class T>
AsCompleted<T> as_completed(std::vector<Task<T>>& tasks) {
  return AsCompleted<T>(tasks, std::nullopt);
}
template <class T, class Rep, class Period>
AsCompleted<T> as_completed(std::vector<Task<T>>& tasks, std::chrono::duration<Rep, Period> timeout) {
  // limit_ns: defined for any timeout (a plain cast of hours::min()
  // overflows).
  return AsCompleted<T>(tasks, detail::deadline_after(timeout), detail::limit_ns(timeout));
}

// wait(tasks, mode[, timeout]): asyncio.wait. Suspends until `mode` is met
// or the timeout passes, then returns which tasks are done and which are
// pending (indices). Joins nothing and cancels nothing, also on timeout
// (no exception then: look at `pending`). If the caller is cancelled,
// Cancelled propagates and the tasks are left alone. An empty vector
// returns two empty sets at once.
template <class T>
SPINDLE_MAY_SUSPEND WaitResult wait(std::vector<Task<T>>& tasks,
                                    WaitFor mode = WaitFor::all_completed) {
  const std::vector<detail::Fiber*> fs = detail::fibers_of(tasks);
  WaitResult r;
  detail::wait_tasks(fs.data(), fs.size(), mode, nullptr, r);
  return r;
}
template <class T, class Rep, class Period>
SPINDLE_MAY_SUSPEND WaitResult wait(std::vector<Task<T>>& tasks, WaitFor mode,
                                    std::chrono::duration<Rep, Period> timeout) {
  const std::vector<detail::Fiber*> fs = detail::fibers_of(tasks);
  const auto deadline = detail::deadline_after(timeout);
  WaitResult r;
  detail::wait_tasks(fs.data(), fs.size(), mode, &deadline, r);
  return r;
}

}  // namespace spindle
