// fiber.cpp: spawn, a fiber's life on its stack, join and cancel.
#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>
#include <typeinfo>
#include <vector>

#include <spindle/runtime/errors.hpp>
#include <spindle/runtime/suspend.hpp>

#include "check.hpp"
#include "run_fiber.hpp"
#include "scheduler.hpp"

namespace spindle::detail {

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

}  // namespace

bool is_cancellation(const std::exception_ptr& e) noexcept {
  if (!e) return false;
  try {
    std::rethrow_exception(e);
  } catch (const Cancelled&) {
    return true;
  } catch (...) {
    return false;
  }
}

Fiber::Fiber() noexcept = default;

// The last reference is gone. An exception that nobody joined is reported
// here, with the fiber's name and spawn site: never silently lost.
Fiber::~Fiber() {
  if (error_ && !error_observed_.load(std::memory_order_relaxed) && !is_cancellation(error_)) {
    const std::string what = describe_exception(error_);
    std::fprintf(stderr,
                 "spindle: fiber %llu \"%s\" (spawned at %s:%u) ended with an exception "
                 "nobody joined: %s\n",
                 static_cast<unsigned long long>(id_), name_.c_str(), where_.file_name(),
                 static_cast<unsigned>(where_.line()), what.c_str());
  }
}

void check_stack_size(std::size_t size, const char* what) {
  if (size > kMaxStackSize) {
    throw std::length_error(std::string(what) + " of " + std::to_string(size) +
                            " bytes is over the limit of 1 GiB");
  }
}

void schedule_new(Fiber* f, Scheduler* target, const char* name, std::size_t name_len,
                  std::size_t stack_size, const spindle::source_location& where) {
  if (target == nullptr) {
    Worker* w = current_worker();
    target = w != nullptr ? &w->scheduler() : default_scheduler();
  }
  SPINDLE_CHECK(target != nullptr,
                "spawn outside a running spindle Runtime (no Runtime exists in this process): "
                "call spawn inside spindle::run(...) or Runtime::block_on(...), or create a "
                "spindle::Runtime first");
  if (name != nullptr) f->name_.assign(name, name_len);
  f->stack_size_ = stack_size;
  f->where_ = where;
  f->sched_ = target;
  target->spawn(f);
}

// run_fiber: the whole life of a fiber on its own stack, after its first
// switch-in and before its last switch-out.
void run_fiber(Fiber* f) noexcept {
  if (f->cancel_requested_.load(std::memory_order_relaxed)) {
    // Cancelled before it ever ran: asyncio does not start such a task.
    f->error_ = std::make_exception_ptr(Cancelled{});
    f->drop_body();
  } else {
    f->invoke();
  }
  destroy_fiber_locals(f);
  // Complete every joiner under join_lock_ (so none can unlink concurrently),
  // wake the winners after releasing it. Most fibers have 0 or 1 joiner.
  Waiter* small[8];
  std::vector<Waiter*> more;
  std::size_t n = 0;
  {
    std::lock_guard lk(f->join_lock_);
    // Before done_: a joiner that returned (and so synchronised with the
    // store below) no longer sees the fiber in a dump, although it is still
    // on its registry until its worker, or its spawner's, unlinks it
    // (registry.hpp).
    f->state_.store(FiberState::done, std::memory_order_relaxed);
    // release; pairs with the acquire in Fiber::done(): the result and
    // error_ written above are visible to whoever sees done.
    f->done_.store(true, std::memory_order_release);
    for (JoinNode* j = std::exchange(f->joiners_, nullptr); j != nullptr; j = j->next) {
      j->linked = false;
      if (!j->waiter->try_complete(Waiter::notified)) continue;
      if (n < 8) small[n++] = j->waiter; else more.push_back(j->waiter);
    }
  }
  for (std::size_t i = 0; i < n; ++i) wake(*small[i]);
  for (Waiter* w : more) wake(*w);
  // Off the registry after the switch out: Worker::finish.
}

namespace {
void link(Fiber* f, JoinNode& n) {
  n.next = f->joiners_;
  n.prev = nullptr;
  if (f->joiners_ != nullptr) f->joiners_->prev = &n;
  f->joiners_ = &n;
  n.linked = true;
}
void unlink(Fiber* f, JoinNode& n) {
  std::lock_guard lk(f->join_lock_);
  if (!n.linked) return;
  if (n.prev != nullptr) n.prev->next = n.next; else f->joiners_ = n.next;
  if (n.next != nullptr) n.next->prev = n.prev;
  n.linked = false;
}
}  // namespace

int wait_any(Fiber* const* fs, std::size_t n,
             const std::chrono::steady_clock::time_point* deadline) {
  for (;;) {
    for (std::size_t i = 0; i < n; ++i) {
      if (fs[i]->done()) return static_cast<int>(i);
    }
    JoinNode inline_nodes[4];
    std::vector<JoinNode> heap_nodes(n > 4 ? n : 0);
    JoinNode* nodes = n > 4 ? heap_nodes.data() : inline_nodes;
    Waiter w;
    const Waiter::State s = suspend(
        w, deadline,
        [&] {
          // Runs on the landing side of our switch; each join_lock_ is rank 1.
          for (std::size_t i = 0; i < n; ++i) {
            std::lock_guard lk(fs[i]->join_lock_);
            if (fs[i]->done_.load(std::memory_order_relaxed)) {
              // Not waiting after all -- but an earlier node may already
              // have been completed by its fiber, which then woke us. Only
              // if we win the CAS may we ask to be re-queued; else that
              // wake stands (suspend.hpp, publish's contract).
              return !w.try_complete(Waiter::notified);
            }
            // Left at its runtime's shutdown: it will never be done (the
            // same contract, completed as cancelled).
            if (fs[i]->abandoned_.load(std::memory_order_relaxed)) return !w.try_complete(Waiter::cancelled);
            nodes[i].waiter = &w;
            link(fs[i], nodes[i]);
          }
          return true;
        },
        "join");
    // Unhook before the nodes die. Under each join_lock_, so a completer is
    // never holding one of our nodes at the same time.
    for (std::size_t i = 0; i < n; ++i) unlink(fs[i], nodes[i]);
    throw_if_cancelled(s);
    if (s == Waiter::timed_out) {
      for (std::size_t i = 0; i < n; ++i) {
        if (fs[i]->done()) return static_cast<int>(i);
      }
      return -1;
    }
  }
}

void join_fiber(Fiber* f) {
  // A fiber that joins itself would wait for ever, unseen by the deadlock
  // report while any other fiber, timer or socket is live (asyncio raises
  // RuntimeError for a task that awaits itself).
  if (f == current_fiber() && !f->done()) {
    throw std::logic_error("spindle: a fiber joined its own Task (it would wait for ever)");
  }
  if (!f->done()) wait_any(&f, 1, nullptr);
  if (f->error_) {
    f->error_observed_.store(true, std::memory_order_relaxed);
    std::rethrow_exception(f->error_);
  }
}

void cancel_fiber(Fiber* f) noexcept {
  if (f->done()) return;
  // Left at its runtime's shutdown: nothing to cancel, and no scheduler to
  // wake it (abandon_all).
  if (f->abandoned_.load(std::memory_order_acquire)) return;
  // seq_cst store, then seq_cst read of the cell: pairs with the CAS and
  // flag read in Worker::after_wait_publish (see there).
  f->cancel_requested_.store(true, std::memory_order_seq_cst);
  // Complete the current wait if it is cancellable and still waiting. Only
  // the Fiber is touched (we hold a reference), never its Waiter, which may
  // be gone; the generation in the cell makes the CAS apply to this wait.
  std::uint64_t c = f->wait_cell_.load(std::memory_order_seq_cst);
  while ((c & (Waiter::kStateMask | Waiter::kCancellable)) == (Waiter::waiting | Waiter::kCancellable)) {
    if (f->wait_cell_.compare_exchange_weak(c, (c & ~(Waiter::kGenUnit - 1)) | Waiter::cancelled,
                                            std::memory_order_acq_rel, std::memory_order_relaxed)) {
      Scheduler::wake_fiber_checked(f);
      return;
    }
  }
}

}  // namespace spindle::detail
