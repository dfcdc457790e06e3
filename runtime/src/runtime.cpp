// runtime.cpp: Runtime, the public face of a Scheduler.
#include <spindle/runtime/runtime.hpp>

#include <spindle/runtime/detail/fd_limit.hpp>

#include "check.hpp"
#include "scheduler.hpp"

namespace spindle {

Runtime::Runtime(RuntimeOptions options) {
  SPINDLE_CHECK(detail::current_worker() == nullptr,
                "a Runtime cannot be created on a fiber (spindle::run or a spindle::Runtime "
                "inside a fiber): this fiber already has a runtime; call the function directly, "
                "or spindle::spawn(f) and join it");
  if (options.raise_fd_limit) detail::raise_fd_limit_once();
  sched_ = std::make_unique<detail::Scheduler>(options);
}

// ~Scheduler shuts down, joining the worker threads; on one of them (or on
// any fiber, which may be one of them after a migration) that join would
// wait for itself. Stop with the same message shutdown() gives.
Runtime::~Runtime() {
  SPINDLE_CHECK(detail::current_worker() == nullptr,
                "a Runtime destroyed on a fiber (destroy it on a plain thread, after block_on returns)");
}

void Runtime::shutdown() {
  SPINDLE_CHECK(detail::current_worker() == nullptr,
                "Runtime::shutdown called from a fiber (it waits for every fiber, this one "
                "too): call it on the plain thread that owns the Runtime once block_on returned; "
                "to stop work from a fiber, cancel its Tasks (Task::cancel, TaskGroup::cancel)");
  sched_->shutdown();
}

Stats Runtime::stats() const { return sched_->stats(); }
unsigned Runtime::workers() const noexcept { return sched_->size(); }
const RuntimeOptions& Runtime::options() const noexcept { return sched_->options(); }

void Runtime::begin_main() {
  SPINDLE_CHECK(detail::current_worker() == nullptr,
                "block_on called from a fiber (it would block this fiber's worker thread): call "
                "the function directly, or spindle::spawn(f) and join it");
  sched_->begin_main();
}

void Runtime::wait_main() { sched_->wait_main(); }

}  // namespace spindle
