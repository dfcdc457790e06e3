// task_group.cpp: TaskGroup's non-template half (task_group.hpp states the
// rules; the numbers below refer to them). Children are waited on through
// the join registrations of detail/fiber.hpp and cancelled through
// detail::cancel_fiber, as in combinators.cpp.
#include <spindle/runtime/task_group.hpp>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <spindle/runtime/cancel.hpp>
#include <spindle/runtime/gather.hpp>  // detail::exception_what
#include <spindle/runtime/suspend.hpp>

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
    // Cancelled (the owner was cancelled in our wait), or the logic_error
    // of a child destroying its own group, which drain() reports.
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

bool TaskGroup::reserve() {
  std::vector<Fiber*> pruned;
  bool cancelled;
  {
    std::lock_guard lk(mu_);
    if (children_.size() >= prune_at_) {
      // Drop the children that already ended; their failures are in errors_.
      // Room for all first: a bad_alloc then leaves children_ untouched.
      pruned.reserve(children_.size());
      std::size_t keep = 0;
      for (Fiber* c : children_) {
        if (c->done()) pruned.push_back(c);
        else children_[keep++] = c;
      }
      children_.resize(keep);
      prune_at_ = std::max<std::size_t>(64, 2 * keep);
    }
    const std::size_t need = children_.size() + reserved_ + 1;
    if (children_.capacity() < need) children_.reserve(std::max(need, 2 * children_.capacity()));
    ++reserved_;
    cancelled = cancelling_;
  }
  // Outside the lock: release may run a fiber's destructor (user captures).
  for (Fiber* c : pruned) {
    c->error_observed_.store(true, std::memory_order_relaxed);  // in errors_ or Cancelled
    c->release();
  }
  return cancelled;
}

void TaskGroup::unreserve() noexcept {
  std::lock_guard lk(mu_);
  --reserved_;
}

void TaskGroup::adopt(Fiber* f) noexcept {
  bool cancel_it;
  {
    std::lock_guard lk(mu_);
    --reserved_;
    children_.push_back(f);  // within the capacity reserve() made: no allocation
    f->add_ref();
    cancel_it = cancelling_;
  }
  // Outside the lock: cancel_fiber may wake a fiber.
  if (cancel_it) detail::cancel_fiber(f);
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
// A child waiting on its own group would come to itself and wait for ever
// (unseen by the deadlock report while any sibling, timer or socket
// lives): it raises std::logic_error when it gets there, as a Task joining
// itself does (fiber.cpp), after the children spawned after it.
void TaskGroup::wait_children() {
  Fiber* const self = detail::current_fiber();
  for (;;) {
    Fiber* f = nullptr;
    bool finished = false;
    {
      std::lock_guard lk(mu_);
      if (children_.empty()) return;
      f = children_.back();
      finished = f->done();
      if (finished) children_.pop_back();
      else f->add_ref();  // ours while we wait; reserve() may prune the group's
    }
    if (finished) {
      f->error_observed_.store(true, std::memory_order_relaxed);  // in errors_ or Cancelled
      f->release();
      continue;
    }
    if (f == self) {
      f->release();
      throw std::logic_error("spindle: a TaskGroup's child waited on its own group (it would wait for itself for ever)");
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
    // bad_alloc, or a child destroying its own group (the logic_error of
    // wait_children): a destructor cannot report either.
    std::fprintf(stderr, "spindle: TaskGroup: could not wait for its children: %s\n",
                 detail::exception_what(std::current_exception()).c_str());
    std::terminate();
  }
}

void TaskGroup::wait() {
  bool interrupted = false;
  try {
    wait_children();
  } catch (const Cancelled&) {
    interrupted = true;  // the waiting comes after the handler, as in combinators.cpp
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
