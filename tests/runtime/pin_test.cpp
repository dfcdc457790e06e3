// pin_test.cpp: RuntimeOptions::pin_workers (cpu_pin.hpp). Worker i runs on
// the i-th CPU of the affinity the creating thread had; the offload and
// blocking pools' threads, started from pinned workers, run on that whole
// set again; without the option nothing is pinned. Each case reads the
// kernel's own answer (sched_getaffinity, sched_getcpu) on the thread in
// question. Cases that narrow the creating thread's affinity do it on a
// thread of their own, so the test runner's thread keeps its mask.
#include <sched.h>

#include <thread>
#include <vector>

#include <spindle/runtime/offload.hpp>

#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;

namespace {

cpu_set_t my_mask() {
  cpu_set_t m;
  CPU_ZERO(&m);
  REQUIRE(sched_getaffinity(0, sizeof m, &m) == 0);
  return m;
}

std::vector<int> cpus_of(const cpu_set_t& m) {
  std::vector<int> v;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &m)) v.push_back(c);
  }
  return v;
}

// The mask of the calling thread, read from a fiber: a list of CPUs.
std::vector<int> mask_here() {
  cpu_set_t m;
  CPU_ZERO(&m);
  if (sched_getaffinity(0, sizeof m, &m) != 0) return {};
  return cpus_of(m);
}

struct Seen {
  std::vector<std::vector<int>> worker_mask;  // per worker
  std::vector<int> worker_cpu;                // sched_getcpu() there
  std::vector<int> blocking_mask, offload_mask;
};

// Visits each worker (hop_to_worker), then runs one blocking() and one
// offload() job from worker 0, each reading its own thread's mask.
Seen look(sp::RuntimeOptions o) {
  Seen s;
  run_checked(o, [&] {
    for (unsigned i = 0; i < o.workers; ++i) {
      sp::detail::hop_to_worker(static_cast<int>(i));
      s.worker_mask.push_back(mask_here());
      s.worker_cpu.push_back(sched_getcpu());
    }
    sp::detail::hop_to_worker(0);
    s.blocking_mask = sp::blocking([] { return mask_here(); });
    s.offload_mask = sp::offload([] { return mask_here(); });
    sp::detail::unpin();
  });
  return s;
}

}  // namespace

TEST_CASE("pin_workers puts worker i on the i-th CPU of the creator's affinity", "[pin]") {
  const std::vector<int> all = cpus_of(my_mask());
  REQUIRE(!all.empty());
  // One more worker than CPUs: the last one wraps around to the first CPU.
  sp::RuntimeOptions o = options(static_cast<unsigned>(all.size()) + 1);
  o.pin_workers = true;
  const Seen s = look(o);
  REQUIRE(s.worker_mask.size() == o.workers);
  for (unsigned i = 0; i < o.workers; ++i) {
    INFO("worker " << i);
    const int want = all[i % all.size()];
    CHECK(s.worker_mask[i] == std::vector<int>{want});
    CHECK(s.worker_cpu[i] == want);
  }
  // Pool threads were started from pinned worker 0 and took the set back.
  CHECK(s.blocking_mask == all);
  CHECK(s.offload_mask == all);
}

TEST_CASE("without pin_workers every worker keeps the creator's affinity", "[pin]") {
  const std::vector<int> all = cpus_of(my_mask());
  const Seen s = look(options(2));
  for (const auto& m : s.worker_mask) CHECK(m == all);
  CHECK(s.blocking_mask == all);
  CHECK(s.offload_mask == all);
}

TEST_CASE("pin_workers takes the affinity of the thread that creates the runtime", "[pin]") {
  const std::vector<int> all = cpus_of(my_mask());
  // A creator narrowed to its last CPU: every worker lands there, and the
  // pools keep that narrowed set, not the process's.
  const int last = all.back();
  Seen s;
  std::thread t([&] {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(last, &one);
    if (sched_setaffinity(0, sizeof one, &one) != 0) return;
    sp::RuntimeOptions o = options(2);
    o.pin_workers = true;
    s = look(o);
  });
  t.join();
  REQUIRE(s.worker_mask.size() == 2);
  for (const auto& m : s.worker_mask) CHECK(m == std::vector<int>{last});
  CHECK(s.blocking_mask == std::vector<int>{last});
  CHECK(s.offload_mask == std::vector<int>{last});
}
