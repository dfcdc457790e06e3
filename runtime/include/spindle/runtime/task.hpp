// task.hpp: Task<T>, the handle spawn returns (a join handle, as
// asyncio.Task / std::thread / tokio's JoinHandle).
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>

#include <spindle/runtime/detail/fiber.hpp>
#include <spindle/runtime/detail/macros.hpp>
#include <spindle/runtime/errors.hpp>

namespace spindle {

template <class T>
class Task;

namespace detail {
// TaskAccess: the runtime's own way into a Task, which users do not have:
// spawn makes a Task from its fiber, and the combinators (gather, wait,
// wait_for, TaskGroup) reach the control block behind one.
struct TaskAccess {
  template <class T>
  static Task<T> make(ResultFiber<T>* f) noexcept {
    return Task<T>(f);
  }
  template <class T>
  static ResultFiber<T>* fiber(const Task<T>& t) noexcept {
    return t.f_;
  }
};
}  // namespace detail

// Task<T> refers to one spawned fiber and, once it finishes, its result.
// Move-only. Dropping a Task without join() detaches the fiber: it runs to
// completion, and an exception that nobody joined is reported on stderr with
// the fiber's name (never silently lost).
//
// Thread-safety: one Task object is used by one fiber or thread at a time,
// except cancel() and done(), which any fiber or thread may call meanwhile.
template <class T>
class Task {
 public:
  Task() noexcept = default;
  Task(Task&& o) noexcept : f_(std::exchange(o.f_, nullptr)) {}
  Task& operator=(Task&& o) noexcept {
    if (this != &o) {
      reset();
      f_ = std::exchange(o.f_, nullptr);
    }
    return *this;
  }
  ~Task() { reset(); }

  // join: waits until the fiber finished and returns its value or rethrows
  // its exception (Cancelled if it was cancelled). May suspend the calling
  // fiber; on a plain thread it blocks the thread. A cancellation point: if
  // the *caller* is cancelled meanwhile, raises Cancelled and the task keeps
  // running. A fiber joining its own Task: std::logic_error (it would wait
  // for ever).
  //
  // Joining again (asyncio: awaiting a task again) gives the same outcome:
  //  - a copyable result is copied out and stays in the task, so every
  //    join() returns the same value;
  //  - a move-only result is moved out by the first join(); a later one
  //    raises AlreadyJoined (never a moved-from value);
  //  - an exception is rethrown by every join().
  // std::move(task).join() moves the result out (no copy) for any T; after
  // it the task behaves as a joined move-only one.
  SPINDLE_MAY_SUSPEND T join() & {
    SPINDLE_CHECK_TASK(f_);
    detail::join_fiber(f_);
    if constexpr (std::is_void_v<T>) {
      return;
    } else {
      if (f_->taken()) throw AlreadyJoined();
      if constexpr (std::is_copy_constructible_v<T>) {
        return f_->peek();
      } else {
        return f_->take();
      }
    }
  }
  SPINDLE_MAY_SUSPEND T join() && {
    SPINDLE_CHECK_TASK(f_);
    detail::join_fiber(f_);
    if constexpr (!std::is_void_v<T>) {
      if (f_->taken()) throw AlreadyJoined();
      return f_->take();
    }
  }

  // done: true once the fiber's body has finished. Never suspends.
  bool done() const noexcept { return f_ && f_->done(); }

  // cancel: asks the fiber to stop; it receives spindle::Cancelled at its
  // current or next suspension point. A finished task is left alone. Any
  // thread. Never suspends.
  void cancel() noexcept {
    if (f_) detail::cancel_fiber(f_);
  }

  // detach: gives the fiber up; it runs on. Same as dropping the handle.
  void detach() noexcept { reset(); }

  // id: the fiber's id (as this_fiber::id() inside it); 0 for an empty Task.
  std::uint64_t id() const noexcept { return f_ ? f_->id() : 0; }
  explicit operator bool() const noexcept { return f_ != nullptr; }

 private:
  friend struct detail::TaskAccess;
  // Takes over the caller's reference to f (spawn: TaskAccess::make).
  explicit Task(detail::ResultFiber<T>* f) noexcept : f_(f) {}
  void reset() noexcept {
    if (f_) {
      f_->detached_ = true;
      std::exchange(f_, nullptr)->release();
    }
  }
  detail::ResultFiber<T>* f_ = nullptr;
};

}  // namespace spindle
