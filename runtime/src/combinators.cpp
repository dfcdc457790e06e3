// combinators.cpp: the non-template engines of gather.hpp and
// task_group.hpp. Everything here waits through the join registrations of
// detail/fiber.hpp (detail::wait_any: one registration per pending fiber
// per wake-up) and cancels
// through detail::cancel_fiber; it needs no scheduler internals.
#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>
#include <typeinfo>
#include <vector>

#include <spindle/runtime/cancel.hpp>
#include <spindle/runtime/gather.hpp>
#include <spindle/runtime/suspend.hpp>
#include <spindle/runtime/task_group.hpp>
#include <spindle/runtime/wait_for.hpp>

namespace spindle::detail {

std::string exception_what(const std::exception_ptr& e) {
  if (!e) return {};
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (const Cancelled& c) {
    return c.what();
  } catch (...) {
    return "unknown exception";
  }
}


void rethrow_error(Fiber* f) {
  // error_ was written before done_ (release); callers saw done() (acquire).
  f->error_observed_.store(true, std::memory_order_relaxed);
  std::rethrow_exception(f->error_);
}

namespace {

// wait_done: suspends until f is done. A cancellation point unless shielded.
void wait_done(Fiber* f) {
  while (!f->done()) wait_any(&f, 1, nullptr);
}

// Removes the done fibers from (pending, index), keeping order. Returns the
// lowest input index among the removed ones that ended with an exception
// (Cancelled counts when `cancelled_fails`), or -1.
std::ptrdiff_t harvest(std::vector<Fiber*>& pending, std::vector<std::size_t>& index,
                       bool cancelled_fails) {
  std::ptrdiff_t failed = -1;
  std::size_t keep = 0;
  for (std::size_t i = 0; i < pending.size(); ++i) {
    Fiber* f = pending[i];
    if (!f->done()) {
      pending[keep] = f;
      index[keep] = index[i];
      ++keep;
      continue;
    }
    if (f->error_ && (cancelled_fails || !is_cancellation(f->error_))) {
      const auto at = static_cast<std::ptrdiff_t>(index[i]);
      if (failed < 0 || at < failed) failed = at;
    }
  }
  pending.resize(keep);
  index.resize(keep);
  return failed;
}

}  // namespace

// Never suspend inside a catch handler: the C++ runtime keeps the stack of
// caught exceptions per thread, so a fiber that resumes on another thread
// (or interleaves with other fibers' handlers) and then rethrows with
// `throw;` finds the wrong exception or none (std::terminate). Handlers
// here only record what happened; the waiting comes after them, and
// Cancelled is thrown anew (it carries no state; the deadline scope that
// may have caused it is tracked on the fiber, so with_timeout still turns
// it into TimedOut).
void cancel_and_drain(Fiber* const* fs, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) cancel_fiber(fs[i]);
  // Shielded: the caller may itself be cancelled (that is often why we are
  // here), and its children must still end before it moves on.
  shield([&] {
    for (std::size_t i = 0; i < n; ++i) wait_done(fs[i]);
  });
}

std::ptrdiff_t gather_all(Fiber* const* fs, std::size_t n) {
  std::vector<Fiber*> pending(fs, fs + n);
  std::vector<std::size_t> index(n);
  for (std::size_t i = 0; i < n; ++i) index[i] = i;
  std::ptrdiff_t failed = -1;
  bool caller_cancelled = false;
  try {
    for (;;) {
      failed = harvest(pending, index, /*cancelled_fails=*/true);
      if (failed >= 0 || pending.empty()) break;
      wait_any(pending.data(), pending.size(), nullptr);
    }
  } catch (const Cancelled&) {
    caller_cancelled = true;  // never suspend inside a handler: see below
  }
  if (caller_cancelled || failed >= 0) cancel_and_drain(fs, n);
  if (caller_cancelled) throw Cancelled{};
  return failed;
}

bool is_timed_out(const std::exception_ptr& e) noexcept {
  if (!e) return false;
  try {
    std::rethrow_exception(e);
  } catch (const TimedOut&) {
    return true;
  } catch (...) {
    return false;
  }
}

bool finish_or_cancel(Fiber* f, std::chrono::steady_clock::time_point deadline) {
  bool in_time = false;
  bool caller_cancelled = false;
  try {
    // wait_any returns early only when f is done (or the deadline passed).
    in_time = f->done() || wait_any(&f, 1, &deadline) >= 0;
  } catch (const Cancelled&) {
    caller_cancelled = true;  // never suspend inside a handler (see above)
  }
  if (in_time) return true;
  cancel_and_drain(&f, 1);
  if (caller_cancelled) throw Cancelled{};
  return false;
}

void settle_all(Fiber* const* fs, std::size_t n) {
  bool caller_cancelled = false;
  try {
    // One fiber at a time: every one must end anyway, and waiting on a
    // single fiber costs one registration instead of n.
    for (std::size_t i = 0; i < n; ++i) wait_done(fs[i]);
  } catch (const Cancelled&) {
    caller_cancelled = true;
  }
  if (caller_cancelled) {
    cancel_and_drain(fs, n);
    throw Cancelled{};
  }
}

void wait_tasks(Fiber* const* fs, std::size_t n, WaitFor mode,
                const std::chrono::steady_clock::time_point* deadline, WaitResult& out) {
  if (mode == WaitFor::all_completed) {
    for (std::size_t i = 0; i < n; ++i) {
      if (!fs[i]->done() && wait_any(&fs[i], 1, deadline) < 0) break;  // timed out
    }
  } else {
    std::vector<Fiber*> pending(fs, fs + n);
    std::vector<std::size_t> index(n);
    for (std::size_t i = 0; i < n; ++i) index[i] = i;
    for (;;) {
      const std::ptrdiff_t failed = harvest(pending, index, /*cancelled_fails=*/false);
      if (pending.empty()) break;
      if (mode == WaitFor::first_completed && pending.size() < n) break;
      if (mode == WaitFor::first_exception && failed >= 0) break;
      if (wait_any(pending.data(), pending.size(), deadline) < 0) break;  // timed out
    }
  }
  // One snapshot decides both sets, so they partition the indices.
  for (std::size_t i = 0; i < n; ++i) (fs[i]->done() ? out.done : out.pending).push_back(i);
}

}  // namespace spindle::detail

namespace spindle {

using detail::Fiber;

TaskGroup::TaskGroup() noexcept : uncaught_at_birth_(std::uncaught_exceptions()) {}

TaskGroup::~TaskGroup() {
  // Unwinding out of the group's scope: abort the children (rule 5).
  if (std::uncaught_exceptions() > uncaught_at_birth_) cancel();
  bool interrupted = false;
  try {
    wait_children();
  } catch (...) {
    // Only Cancelled can get here (the owner was cancelled in our wait).
    // The mark stays on the owner, so it surfaces at its next suspension
    // point; the children must still end first (outside the handler).
    interrupted = true;
  }
  if (interrupted) {
    cancel();
    drain();
  }
  report_undelivered();
}

bool TaskGroup::cancelling() const {
  std::lock_guard lk(mu_);
  return cancelling_;
}

void TaskGroup::adopt(Fiber* f) {
  std::vector<Fiber*> pruned;
  bool cancel_it;
  {
    std::lock_guard lk(mu_);
    if (children_.size() >= prune_at_) {
      // Drop the children that already ended; their failures are in errors_.
      std::size_t keep = 0;
      for (Fiber* c : children_) {
        if (c->done()) pruned.push_back(c);
        else children_[keep++] = c;
      }
      children_.resize(keep);
      prune_at_ = std::max<std::size_t>(64, 2 * keep);
    }
    f->add_ref();
    children_.push_back(f);
    cancel_it = cancelling_;
  }
  // Outside the lock: cancel_fiber may wake a fiber, release may run a
  // fiber's destructor (user captures).
  if (cancel_it) detail::cancel_fiber(f);
  for (Fiber* c : pruned) {
    c->error_observed_.store(true, std::memory_order_relaxed);  // in errors_ or Cancelled
    c->release();
  }
}

void TaskGroup::child_failed(std::exception_ptr e) noexcept {
  bool first;
  {
    std::lock_guard lk(mu_);
    errors_.push_back(std::move(e));
    first = !std::exchange(cancelling_, true);
  }
  // The failing child is about to end by itself; cancelling it would only
  // make its remaining clean-up waits throw.
  if (first) cancel_children(detail::current_fiber());
}

void TaskGroup::cancel() noexcept {
  {
    std::lock_guard lk(mu_);
    cancelling_ = true;
  }
  cancel_children(nullptr);
}

void TaskGroup::cancel_children(Fiber* except) noexcept {
  std::vector<Fiber*> snap;
  {
    std::lock_guard lk(mu_);
    snap.reserve(children_.size());
    for (Fiber* c : children_) {
      if (c == except || c->done()) continue;
      c->add_ref();  // a concurrent wait() may drop the group's reference
      snap.push_back(c);
    }
  }
  for (Fiber* c : snap) {
    detail::cancel_fiber(c);
    c->release();
  }
}

// wait_children: pops children from the back, waiting on each that has not
// ended, until none is left. Each child is waited on alone (one join
// registration), so a group of n children costs O(n) however they end;
// promptness on failure comes from child_failed, not from this loop.
void TaskGroup::wait_children() {
  for (;;) {
    Fiber* f = nullptr;
    bool finished = false;
    {
      std::lock_guard lk(mu_);
      if (children_.empty()) return;
      f = children_.back();
      finished = f->done();
      if (finished) children_.pop_back();
      else f->add_ref();  // ours while we wait; adopt() may prune the group's
    }
    if (finished) {
      f->error_observed_.store(true, std::memory_order_relaxed);  // in errors_ or Cancelled
      f->release();
      continue;
    }
    struct Ref {
      Fiber* f;
      ~Ref() { f->release(); }
    } ref{f};
    while (!f->done()) detail::wait_any(&f, 1, nullptr);  // may raise Cancelled
  }
}

void TaskGroup::drain() noexcept {
  // wait_children cannot raise Cancelled when shielded; bad_alloc would be
  // the only way out, and a destructor-path drain cannot report it anyway.
  try {
    shield([&] { wait_children(); });
  } catch (...) {
    std::fputs("spindle: TaskGroup: could not wait for its children\n", stderr);
    std::terminate();
  }
}

void TaskGroup::wait() {
  bool interrupted = false;
  try {
    wait_children();
  } catch (const Cancelled&) {
    interrupted = true;  // no suspension inside the handler (see above)
  }
  if (interrupted) {
    // Rule 4: the owner was cancelled (or its deadline scope expired).
    cancel();
    drain();
    throw Cancelled{};
  }
  std::exception_ptr first;
  {
    std::lock_guard lk(mu_);
    delivered_ = errors_.size();
    if (!errors_.empty()) first = errors_.front();
  }
  if (first) std::rethrow_exception(first);
}

std::vector<std::exception_ptr> TaskGroup::errors() const {
  std::lock_guard lk(mu_);
  delivered_ = errors_.size();
  return errors_;
}

bool TaskGroup::failed() const {
  std::lock_guard lk(mu_);
  return !errors_.empty();
}

void TaskGroup::report_undelivered() noexcept {
  std::lock_guard lk(mu_);
  for (std::size_t i = delivered_; i < errors_.size(); ++i) {
    const std::string what = detail::exception_what(errors_[i]);
    std::fprintf(stderr,
                 "spindle: TaskGroup ended with a child failure that no wait() rethrew: %s\n",
                 what.c_str());
  }
  delivered_ = errors_.size();
}

}  // namespace spindle
