// suspend.cpp: the suspension API (suspend.hpp) and the waits built directly on
// it: yield, sleep, hop.
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include <spindle/runtime/cancel.hpp>
#include <spindle/runtime/detail/io_hook.hpp>
#include <spindle/runtime/errors.hpp>
#include <spindle/runtime/suspend.hpp>
#include <spindle/runtime/this_fiber.hpp>

#include "check.hpp"
#include "scheduler.hpp"

namespace spindle::detail {

// A plain thread waiting on a Waiter. wake() signals it under its mutex, and
// the thread returns only after seeing the signal under the same mutex, so
// the parker (on the thread's stack) outlives the waker's use of it.
struct ThreadParker {
  std::mutex mu;
  std::condition_variable cv;
  bool signaled = false;
};

Fiber* current_fiber() noexcept {
  Worker* w = current_worker();
  return w != nullptr ? w->running() : nullptr;
}

// Deadline scopes and shields. A shield clears the fiber's scope on entry
// (enter_shield) and restores it on exit, so scope_deadline_ holds only the
// scopes opened since the innermost shield: the waits test it whether
// shielded or not. The cancel mark is what shield_depth_ holds off.
//
// A plain thread keeps the same fields in ThreadScopes: its with_timeout
// bounds its blocking waits as a fiber's does (no outside cancel reaches a
// thread, so only the scopes and the shields that hold them off). Only the
// thread itself touches its copy.
namespace {
struct ThreadScopes {
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();
  std::uint64_t id = 0;       // the scope whose deadline `deadline` is
  std::uint64_t counter = 0;  // scope ids, per thread
  std::uint64_t expired = 0;  // the scope whose deadline ended a wait
};
thread_local ThreadScopes t_scopes;
// Only a plain thread reads it (fibers keep theirs on the Fiber), and a
// plain thread never migrates; read through a non-inlined accessor anyway,
// as every scheduler thread-local is (docs/hacking.md "Thread-locals and
// migration").
[[gnu::noinline]] ThreadScopes& thread_scopes() noexcept { return t_scopes; }
}  // namespace

std::chrono::steady_clock::time_point scope_deadline() noexcept {
  Fiber* f = current_fiber();
  if (f == nullptr) return thread_scopes().deadline;
  return f->scope_deadline_;
}

int note_read_wait(const void* owner, std::uint64_t tag) noexcept {
  Worker* w = current_worker();
  Fiber* f = w != nullptr ? w->running() : nullptr;
  if (f == nullptr || w->scheduler().extension_if_made() != owner) [[unlikely]] return -1;
  f->io_wait_tag_ = tag;
  // Ours to read: a fiber's affinity is written by the fiber itself. A
  // pinned fiber is on its pin here; its socket belongs there too (it may
  // have hopped since its last wait: an HTTP/2 connection following its
  // worker's consolidation). io compares with the socket's home first, so
  // this costs a pinned fiber that stays put one load.
  if (f->affinity_ != nullptr) return f->affinity_ == w ? static_cast<int>(w->index()) : -1;
  return w->consolidation_target();
}

int consolidation_target_of(unsigned worker) noexcept {
  Worker* w = current_worker();
  if (w == nullptr || worker >= w->scheduler().size()) return -1;
  return w->scheduler().worker(worker).consolidation_target();
}

bool may_spin() noexcept {
  Worker* w = current_worker();
  if (w == nullptr) {
    static const bool multicore = std::thread::hardware_concurrency() > 1;
    return multicore;
  }
  return w->scheduler().size() > 1 && !w->has_local_work();
}

namespace {
Waiter::State wait_thread(Waiter& w, const std::chrono::steady_clock::time_point* deadline,
                          FunctionRef<bool()> publish) {
  ThreadParker p;
  w.parker = &p;
  if (!publish()) return w.result();
  std::unique_lock lk(p.mu);
  if (deadline != nullptr) {
    if (!p.cv.wait_until(lk, *deadline, [&] { return p.signaled; })) {
      lk.unlock();
      if (w.try_complete(Waiter::timed_out)) return Waiter::timed_out;
      lk.lock();  // someone else won: wait for its signal before p dies
    }
  }
  p.cv.wait(lk, [&] { return p.signaled; });
  return w.result();
}
}  // namespace

// wait_publish_done: the slow side of Fiber::publishing_. Only a fiber woken
// on another worker within the few instructions between its publish and the
// end of after_wait_publish gets here.
[[gnu::noinline]] static void wait_publish_done(Fiber* f) noexcept {
  for (int i = 0; f->publishing_.load(std::memory_order_acquire); ++i) {
    if (i < 64) {
      spin_hint();
    } else {
      std::this_thread::yield();  // that worker's thread was preempted
    }
  }
}

// wait_thread_scoped: a plain thread's wait under its deadline scope, as
// the fiber path below handles a fiber's: a scope earlier than the wait's
// own deadline bounds it, and a wait it ends reports `cancelled` and marks
// the scope, which turns it into TimedOut (cancel.hpp).
static Waiter::State wait_thread_scoped(Waiter& w, const std::chrono::steady_clock::time_point* deadline,
                                        FunctionRef<bool()> publish) {
  ThreadScopes& ts = thread_scopes();
  std::chrono::steady_clock::time_point scoped;
  const bool by_scope = ts.deadline != std::chrono::steady_clock::time_point::max() &&
                        (deadline == nullptr || ts.deadline <= *deadline);
  if (by_scope) {
    scoped = ts.deadline;
    deadline = &scoped;
    if (std::chrono::steady_clock::now() >= scoped) {
      ts.expired = ts.id;
      w.try_complete(Waiter::cancelled);
      return Waiter::cancelled;
    }
  }
  const Waiter::State s = wait_thread(w, deadline, publish);
  if (by_scope && s == Waiter::timed_out) {
    ts.expired = ts.id;
    return Waiter::cancelled;
  }
  return s;
}

Waiter::State suspend(Waiter& w, const std::chrono::steady_clock::time_point* deadline,
                   FunctionRef<bool()> publish, const char* what) {
  Worker* wk = current_worker();
  Fiber* f = wk != nullptr ? wk->running() : nullptr;
  if (f == nullptr) return wait_thread_scoped(w, deadline, publish);
  // A new generation of the fiber's cell, `waiting` and not cancellable.
  // Between waits only the fiber writes its cell (every other writer CASes
  // out of `waiting` of the current generation, and after_wait_publish has
  // finished with it: publishing_ is clear), so a plain store suffices;
  // completers see it through publish's hand-off.
  const std::uint64_t gen = (f->wait_cell_.load(std::memory_order_relaxed) | (Waiter::kGenUnit - 1)) + 1;
  f->wait_cell_.store(gen, std::memory_order_relaxed);
  w.cell = &f->wait_cell_;
  w.gen = gen;
  w.fiber = f;
  const bool shielded = f->shield_depth_ != 0;
  if (!shielded && f->cancel_requested_.load(std::memory_order_relaxed)) {
    w.try_complete(Waiter::cancelled);
    return Waiter::cancelled;
  }
  // A deadline scope earlier than the wait's own deadline bounds the wait;
  // if that is what ends it, the wait reports `cancelled` and names the
  // scope, which turns it into TimedOut (cancel.hpp).
  std::chrono::steady_clock::time_point scoped;
  const bool by_scope = f->scope_deadline_ != std::chrono::steady_clock::time_point::max() &&
                        (deadline == nullptr || f->scope_deadline_ <= *deadline);
  if (by_scope) {
    scoped = f->scope_deadline_;
    deadline = &scoped;
    if (std::chrono::steady_clock::now() >= scoped) {
      f->expired_scope_ = f->scope_id_;
      w.try_complete(Waiter::cancelled);
      return Waiter::cancelled;
    }
  }
  w.timer_owner = nullptr;  // set by add_timer, if the wait gets that far
  f->wait_what_.store(what, std::memory_order_relaxed);
  // relaxed: sequenced before publish, so a fiber resumed through publish's
  // hand-off sees it or the worker's later release clear.
  f->publishing_.store(true, std::memory_order_relaxed);
  wk->switch_out_wait(f, &w, deadline, &publish);
  // Resumed. If that was on another worker, the one that ran publish may
  // not be done with w yet.
  if (f->publishing_.load(std::memory_order_acquire)) [[unlikely]] wait_publish_done(f);
  // The timer may still be armed (the wait ended another way), on whichever
  // worker ran publish; this may be another worker (docs/runtime.md
  // "Timers"). timer_owner was set before publishing_ was cleared.
  if (Worker* owner = w.timer_owner) owner->remove_timer(&w);
  f->wait_what_.store(nullptr, std::memory_order_relaxed);
  const Waiter::State s = w.result();
  if (by_scope && s == Waiter::timed_out) {
    f->expired_scope_ = f->scope_id_;
    return Waiter::cancelled;
  }
  return s;
}

void wake(Waiter& w) noexcept {
  if (Fiber* f = w.fiber) {
    Scheduler::wake_fiber_checked(f);
  } else if (ThreadParker* p = w.parker) {
    std::lock_guard lk(p->mu);
    p->signaled = true;
    p->cv.notify_one();
  }
}

void throw_if_cancelled(Waiter::State s) {
  if (s == Waiter::cancelled) throw Cancelled{};
}

int hop_to_worker(int index) {
  Worker* wk = current_worker();
  Fiber* f = wk != nullptr ? wk->running() : nullptr;
  SPINDLE_CHECK(f != nullptr, "hop_to_worker outside a fiber");
  Scheduler& s = wk->scheduler();
  SPINDLE_CHECK(index >= 0 && static_cast<unsigned>(index) < s.size(), "hop_to_worker: no such worker");
  const int prev = f->affinity_ ? static_cast<int>(f->affinity_->index()) : -1;
  Worker* target = &s.worker(static_cast<unsigned>(index));
  f->affinity_ = target;
  if (target != wk) wk->switch_out(Pending{Pending::hop, f, nullptr, nullptr, nullptr, target});
  return prev;
}

void unpin() noexcept {
  if (Fiber* f = current_fiber()) f->affinity_ = nullptr;
}

void enter_deadline(DeadlineScope& s, std::chrono::steady_clock::time_point t) noexcept {
  Fiber* f = current_fiber();
  s.fiber = f;
  if (f == nullptr) {
    ThreadScopes& ts = thread_scopes();
    s.on_thread = true;
    s.saved_deadline = ts.deadline;
    s.saved_id = ts.id;
    s.id = ++ts.counter;
    if (t < ts.deadline) {
      ts.deadline = t;
      ts.id = s.id;
    }
    return;
  }
  s.saved_deadline = f->scope_deadline_;
  s.saved_id = f->scope_id_;
  s.id = ++f->scope_counter_;
  if (t < f->scope_deadline_) {
    f->scope_deadline_ = t;
    f->scope_id_ = s.id;
  }
}

bool leave_deadline(DeadlineScope& s) noexcept {
  Fiber* f = s.fiber;
  if (s.on_thread) {
    ThreadScopes& ts = thread_scopes();
    ts.deadline = s.saved_deadline;
    ts.id = s.saved_id;
    if (ts.expired != s.id) return false;
    ts.expired = 0;
    return true;  // no cancel from outside reaches a plain thread
  }
  if (f == nullptr) return false;
  f->scope_deadline_ = s.saved_deadline;
  f->scope_id_ = s.saved_id;
  if (f->expired_scope_ != s.id) return false;
  f->expired_scope_ = 0;
  // An outside cancel wins: it surfaces as Cancelled, never TimedOut. Not
  // inside a shield, where the cancel is held off: a scope whose deadline
  // ended a wait there was opened there (the shield cleared the ones
  // outside), and its TimedOut is what the shielded code handles.
  return f->shield_depth_ != 0 || !f->cancel_requested_.load(std::memory_order_relaxed);
}

std::uint64_t expired_scope() noexcept {
  Fiber* f = current_fiber();
  return f != nullptr ? f->expired_scope_ : thread_scopes().expired;
}

void restore_expired_scope(std::uint64_t saved) noexcept {
  if (Fiber* f = current_fiber()) {
    f->expired_scope_ = saved;
  } else {
    thread_scopes().expired = saved;
  }
}

void enter_shield(ShieldScope& s) noexcept {
  Fiber* f = current_fiber();
  s.fiber = f;
  if (f == nullptr) {
    ThreadScopes& ts = thread_scopes();
    s.on_thread = true;
    s.saved_deadline = ts.deadline;
    s.saved_id = ts.id;
    s.saved_expired = ts.expired;
    ts.deadline = std::chrono::steady_clock::time_point::max();
    ts.id = 0;
    ts.expired = 0;
    return;
  }
  ++f->shield_depth_;
  s.saved_deadline = f->scope_deadline_;
  s.saved_id = f->scope_id_;
  s.saved_expired = f->expired_scope_;
  f->scope_deadline_ = std::chrono::steady_clock::time_point::max();
  f->scope_id_ = 0;
  f->expired_scope_ = 0;
}

// An outer scope that expired meanwhile is seen by the next wait (its
// deadline is back, and past), which cancels it and names that scope.
void leave_shield(ShieldScope& s) noexcept {
  Fiber* f = s.fiber;
  if (s.on_thread) {
    ThreadScopes& ts = thread_scopes();
    ts.deadline = s.saved_deadline;
    ts.id = s.saved_id;
    ts.expired = s.saved_expired;
    return;
  }
  if (f == nullptr) return;
  --f->shield_depth_;
  f->scope_deadline_ = s.saved_deadline;
  f->scope_id_ = s.saved_id;
  f->expired_scope_ = s.saved_expired;
}

}  // namespace spindle::detail

namespace spindle {

using detail::current_worker;

void yield() {
  detail::Worker* w = current_worker();
  detail::Fiber* f = w != nullptr ? w->running() : nullptr;
  if (f == nullptr) {
    detail::ThreadScopes& ts = detail::thread_scopes();
    if (ts.deadline != std::chrono::steady_clock::time_point::max() &&
        std::chrono::steady_clock::now() >= ts.deadline) {
      ts.expired = ts.id;
      throw Cancelled{};
    }
    std::this_thread::yield();
    return;
  }
  if (f->shield_depth_ == 0 && f->cancel_requested_.load(std::memory_order_relaxed)) throw Cancelled{};
  if (f->scope_deadline_ != std::chrono::steady_clock::time_point::max() &&
      std::chrono::steady_clock::now() >= f->scope_deadline_) {
    f->expired_scope_ = f->scope_id_;
    throw Cancelled{};
  }
  w->switch_out(detail::Pending::yield, f);
}

void sleep_until(std::chrono::steady_clock::time_point t) {
  detail::Waiter w;
  const auto s = detail::suspend(w, &t, [] { return true; }, "sleep");
  detail::throw_if_cancelled(s);
}

bool cancellation_requested() noexcept {
  detail::Fiber* f = detail::current_fiber();
  if (f == nullptr) {
    // A plain thread's deadline scope (no cancel reaches a thread).
    const auto d = detail::scope_deadline();
    return d != std::chrono::steady_clock::time_point::max() && std::chrono::steady_clock::now() >= d;
  }
  return (f->shield_depth_ == 0 && f->cancel_requested_.load(std::memory_order_relaxed)) ||
         (f->scope_deadline_ != std::chrono::steady_clock::time_point::max() &&
          std::chrono::steady_clock::now() >= f->scope_deadline_);
}

namespace this_fiber {
std::uint64_t id() noexcept {
  detail::Fiber* f = detail::current_fiber();
  return f != nullptr ? f->id() : 0;
}
std::string_view name() noexcept {
  detail::Fiber* f = detail::current_fiber();
  return f != nullptr ? std::string_view(f->name()) : std::string_view();
}
bool in_fiber() noexcept { return detail::current_fiber() != nullptr; }
int worker_index() noexcept {
  detail::Worker* w = current_worker();
  return w != nullptr ? static_cast<int>(w->index()) : -1;
}
}  // namespace this_fiber

}  // namespace spindle

// ---- TimedOut's text ------------------------------------------------------
// Built here, out of line, so that the inline scopes (with_timeout,
// wait_for) only pass a pointer and a duration when they throw, and the path
// that finishes in time does not change.

namespace spindle {
namespace {

// limit_text: a duration as a person reads it ("2.5 s", "100 ms", "250 us",
// "40 ns"): the largest unit it reaches, three decimals at most (truncated),
// trailing zeros dropped. A limit at or below zero had passed already: "0 s".
std::string limit_text(std::chrono::nanoseconds limit) {
  const long long ns = limit.count();
  if (ns <= 0) return "0 s";
  struct Unit {
    long long per;
    const char* name;
  };
  static constexpr Unit kUnits[] = {{1'000'000'000, "s"}, {1'000'000, "ms"}, {1'000, "us"}, {1, "ns"}};
  const Unit* u = &kUnits[3];
  for (const Unit& c : kUnits) {
    if (ns >= c.per) {
      u = &c;
      break;
    }
  }
  std::string out = std::to_string(ns / u->per);
  long long milli = (ns % u->per) * 1000 / u->per;  // below 1e12: no overflow
  if (milli != 0) {
    char digits[4] = {static_cast<char>('0' + milli / 100), static_cast<char>('0' + milli / 10 % 10),
                      static_cast<char>('0' + milli % 10), '\0'};
    std::size_t n = 3;
    while (digits[n - 1] == '0') --n;
    out += '.';
    out.append(digits, n);
  }
  out += ' ';
  out += u->name;
  return out;
}

}  // namespace

TimedOut::TimedOut(const char* operation, std::chrono::nanoseconds limit)
    : std::runtime_error("spindle: timed out after " + limit_text(limit) + " (" + operation + ")") {}

TimedOut::TimedOut(const char* operation)
    : std::runtime_error(std::string("spindle: timed out (") + operation + ": the deadline passed)") {}

}  // namespace spindle
