// boost_env.cpp: Boost.Fiber scheduler and stack set-up (see boost_env.hpp).
#include "boost_env.hpp"

#include <malloc.h>

#include <mutex>
#include <thread>
#include <vector>

namespace bench {

namespace {
bool g_pooled = false;

void install(const Config& c) {
  namespace algo = boost::fibers::algo;
  switch (c.algo) {
    case BoostAlgo::round_robin:
      boost::fibers::use_scheduling_algorithm<algo::round_robin>();
      break;
    case BoostAlgo::work_stealing:
      // Blocks in a barrier inside the constructor until all c.threads
      // threads have constructed theirs.
      boost::fibers::use_scheduling_algorithm<algo::work_stealing>(c.threads, c.suspend);
      break;
    case BoostAlgo::shared_work:
      boost::fibers::use_scheduling_algorithm<algo::shared_work>(c.suspend);
      break;
  }
}

// Keep every freed stack in the heap: no trimming back to the OS and no
// per-allocation mmap (which would hand out fresh, unfaulted pages).
void keep_freed_memory() {
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TOP_PAD, 64 << 20);
}
}  // namespace

bool boost_pooled_stacks() noexcept { return g_pooled; }

boost::fibers::pooled_fixedsize_stack& boost_pool() {
  // 256 stacks per pool growth step: fewer, larger mallocs.
  static boost::fibers::pooled_fixedsize_stack pool(kBoostStackSize, 256);
  return pool;
}

struct BoostEnv::Impl {
  boost::fibers::mutex mu;
  boost::fibers::condition_variable cv;
  bool stop = false;
  std::vector<std::thread> helpers;
};

BoostEnv::BoostEnv(const Config& c) : impl_(std::make_unique<Impl>()) {
  keep_freed_memory();
  g_pooled = c.threads == 1;
  // Helpers first: work_stealing's constructor waits for every thread.
  for (unsigned i = 1; i < c.threads; ++i) {
    impl_->helpers.emplace_back([this, c] {
      install(c);
      std::unique_lock lk(impl_->mu);
      impl_->cv.wait(lk, [this] { return impl_->stop; });
    });
  }
  install(c);
}

BoostEnv::~BoostEnv() {
  {
    std::unique_lock lk(impl_->mu);
    impl_->stop = true;
  }
  impl_->cv.notify_all();
  for (auto& t : impl_->helpers) t.join();
}

}  // namespace bench
