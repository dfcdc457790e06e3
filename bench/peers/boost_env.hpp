// boost_env.hpp: Boost.Fiber, the peer runtime, configured at its best.
//
// What "best" means here (each choice measured; see the report in the
// commit that added bench/):
//  - 16 KiB stacks. Boost's default (128 KiB mmap'd per fiber) runs out of
//    memory mappings on skynet and timers.
//  - Single thread: pooled_fixedsize_stack, a free list of 16 KiB blocks, so
//    a finished fiber's warm stack is reused at once. boost::pool is not
//    thread-safe, so with two threads (a fiber may end on the thread that
//    stole it) stacks come from malloc (fixedsize_stack) instead, and
//    mallopt keeps freed memory in the process so reused stacks are warm
//    pages rather than fresh ones (a fresh page costs microseconds).
//  - Two threads: work_stealing or shared_work, each with and without
//    `suspend`; the table tries all four and reports the best.
#pragma once

#include <cstddef>
#include <memory>
#include <utility>

#include <boost/fiber/all.hpp>

#include "../harness/sample.hpp"

namespace bench {

inline constexpr std::size_t kBoostStackSize = 16 * 1024;

// Whether stacks come from the pool (single-threaded configs only).
bool boost_pooled_stacks() noexcept;
boost::fibers::pooled_fixedsize_stack& boost_pool();

// boost_fiber: starts f as a Boost.Fiber fiber with the configured stack
// allocator and launch policy (dispatch: run the child now, the parent
// goes to the ready queue; post: queue the child).
template <class F>
boost::fibers::fiber boost_fiber(boost::fibers::launch policy, F&& f) {
  if (boost_pooled_stacks()) {
    return boost::fibers::fiber(policy, std::allocator_arg, boost_pool(), std::forward<F>(f));
  }
  return boost::fibers::fiber(policy, std::allocator_arg,
                              boost::fibers::fixedsize_stack(kBoostStackSize),
                              std::forward<F>(f));
}

// BoostEnv: installs c.algo on the calling (main) thread and on c.threads-1
// helper threads, which stay alive blocked on a fiber condition variable
// (their scheduler keeps running and stealing fibers meanwhile) until the
// BoostEnv dies. Construct once per process (work_stealing cannot be set up
// twice); the main thread's fibers then spread over all threads.
class BoostEnv {
 public:
  explicit BoostEnv(const Config& c);
  ~BoostEnv();
  BoostEnv(const BoostEnv&) = delete;
  BoostEnv& operator=(const BoostEnv&) = delete;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace bench
