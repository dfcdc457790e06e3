// combinators.cpp: the non-template engines of gather.hpp. Everything here
// waits through the join registrations of detail/fiber.hpp
// (detail::wait_any: one registration per pending fiber per wake-up) and
// cancels through detail::cancel_fiber; it needs no scheduler internals.
// TaskGroup's engine is task_group.cpp.
#include <exception>
#include <string>
#include <vector>

#include <spindle/runtime/cancel.hpp>
#include <spindle/runtime/gather.hpp>
#include <spindle/runtime/suspend.hpp>
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

// The catch handlers of the engines only record that the caller was
// cancelled; the cancelling and waiting (cancel_and_drain) come after them,
// and Cancelled is thrown anew. That is safe: Cancelled carries no state,
// and the deadline scope that may have caused it is tracked on the fiber (or
// the plain thread), so
// with_timeout still turns it into TimedOut. (Waiting inside a handler would
// be safe too: each fiber's caught-exception state travels with it,
// context.hpp.)
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
    caller_cancelled = true;  // the waiting comes after the handler: see below
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
  // Only a task our cancel ended timed out. One that ended otherwise (it
  // computed past the deadline without reaching a wait, or caught Cancelled
  // and returned or threw something else) has an outcome the caller must
  // see: for a temporary task, reporting TimedOut destroyed it unread.
  // asyncio's wait_for (3.12) returns such a task's value the same way.
  // error_ was written before done_ (release); cancel_and_drain saw done().
  return !(f->error_ && is_cancellation(f->error_));
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
