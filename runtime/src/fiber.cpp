// fiber.cpp: spawn, a fiber's life on its stack, join and cancel.
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <typeinfo>

#include <spindle/runtime/errors.hpp>
#include <spindle/runtime/suspend.hpp>

#include "check.hpp"
#include "scheduler.hpp"

namespace spindle::detail {

void check_failed(const char* file, int line, const char* msg) noexcept {
  std::fprintf(stderr, "spindle: %s:%d: %s\n", file, line, msg);
  std::fflush(stderr);
  std::abort();
}

const char* to_string(FiberState s) noexcept {
  switch (s) {
    case FiberState::created: return "created";
    case FiberState::ready: return "ready";
    case FiberState::running: return "running";
    case FiberState::suspended: return "suspended";
    case FiberState::done: return "done";
  }
  return "?";
}

namespace {
std::string describe_exception(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return std::string(typeid(x).name()) + ": " + x.what();
  } catch (const Cancelled&) {
    return "spindle::Cancelled";
  } catch (...) {
    return "unknown exception";
  }
}

bool is_cancelled(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const Cancelled&) {
    return true;
  } catch (...) {
    return false;
  }
}
}  // namespace

Fiber::Fiber() noexcept = default;

// The last reference is gone. An exception that nobody joined is reported
// here, with the fiber's name and spawn site: never silently lost.
Fiber::~Fiber() {
  if (error_ && !error_observed_.load(std::memory_order_relaxed) && !is_cancelled(error_)) {
    const std::string what = describe_exception(error_);
    std::fprintf(stderr,
                 "spindle: fiber %llu \"%s\" (spawned at %s:%u) ended with an exception "
                 "nobody joined: %s\n",
                 static_cast<unsigned long long>(id_), name_.c_str(), where_.file_name(),
                 static_cast<unsigned>(where_.line()), what.c_str());
  }
}

void schedule_new(Fiber* f, Scheduler* target, const char* name, std::size_t name_len,
                  std::size_t stack_size, const std::source_location& where) {
  if (target == nullptr) {
    Worker* w = current_worker();
    target = w != nullptr ? &w->scheduler() : default_scheduler();
  }
  SPINDLE_CHECK(target != nullptr, "spawn outside a running spindle Runtime");
  if (name != nullptr) f->name_.assign(name, name_len);
  f->stack_size_ = stack_size;
  f->where_ = where;
  f->born_ = std::chrono::steady_clock::now();
  f->sched_ = target;
  target->spawn(f);
}

// run_fiber: the whole life of a fiber on its own stack, after its first
// switch-in and before its last switch-out.
void run_fiber(Fiber* f) noexcept {
  if (f->cancel_requested_.load(std::memory_order_relaxed)) {
    // Cancelled before it ever ran: asyncio does not start such a task.
    f->error_ = std::make_exception_ptr(Cancelled{});
  } else {
    f->invoke();
  }
  destroy_fiber_locals(f);
  Waiter* joiner;
  {
    std::lock_guard lk(f->join_lock_);
    // release; pairs with the acquire in Fiber::done(): the result and
    // error_ written above are visible to whoever sees done.
    f->done_.store(true, std::memory_order_release);
    joiner = std::exchange(f->joiner_, nullptr);
    if (joiner != nullptr && !joiner->try_complete(Waiter::notified)) joiner = nullptr;
  }
  if (joiner != nullptr) wake(*joiner);
  f->state_.store(FiberState::done, std::memory_order_relaxed);
  if (auto* reg = static_cast<Registry*>(f->reg_list_)) reg->erase(f);
}

void join_fiber(Fiber* f) {
  while (!f->done()) {
    Waiter w;
    const Waiter::State s = wait(
        w, nullptr,
        [&] {
          std::lock_guard lk(f->join_lock_);
          if (f->done_.load(std::memory_order_relaxed)) return false;
          f->joiner_ = &w;
          return true;
        },
        "join");
    if (s != Waiter::notified) {
      // We were not woken by the completion: unhook before w dies. Under
      // join_lock_, so a completer cannot be holding &w at the same time.
      std::lock_guard lk(f->join_lock_);
      if (f->joiner_ == &w) f->joiner_ = nullptr;
    }
    throw_if_cancelled(s);
  }
  if (f->error_) {
    f->error_observed_.store(true, std::memory_order_relaxed);
    std::rethrow_exception(f->error_);
  }
}

void cancel_fiber(Fiber* f) noexcept {
  if (f->done()) return;
  // Set before taking wait_lock_: see Worker::after_wait_publish.
  f->cancel_requested_.store(true, std::memory_order_release);
  Waiter* w;
  {
    std::lock_guard lk(f->wait_lock_);
    w = f->current_wait_;
    if (w != nullptr && !w->try_complete(Waiter::cancelled)) w = nullptr;
  }
  if (w != nullptr) wake(*w);
}

}  // namespace spindle::detail
