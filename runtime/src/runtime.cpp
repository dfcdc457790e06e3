// runtime.cpp: Runtime, the public face of a Scheduler.
#include <spindle/runtime/runtime.hpp>

#include "check.hpp"
#include "scheduler.hpp"

namespace spindle {

Runtime::Runtime(RuntimeOptions options) {
  SPINDLE_CHECK(detail::current_worker() == nullptr, "a Runtime cannot be created on a fiber");
  sched_ = std::make_unique<detail::Scheduler>(options);
}

Runtime::~Runtime() = default;  // ~Scheduler shuts down

void Runtime::shutdown() {
  SPINDLE_CHECK(detail::current_worker() == nullptr, "Runtime::shutdown called from a fiber");
  sched_->shutdown();
}

Stats Runtime::stats() const { return sched_->stats(); }
unsigned Runtime::workers() const noexcept { return sched_->size(); }
const RuntimeOptions& Runtime::options() const noexcept { return sched_->options(); }

void Runtime::begin_main() {
  SPINDLE_CHECK(detail::current_worker() == nullptr, "block_on called from a fiber");
  sched_->begin_main();
}

void Runtime::wait_main() { sched_->wait_main(); }

}  // namespace spindle
