// start_alloc_fail_test.cpp: starts out of memory, a fiber's and a
// Runtime's. First, a fiber whose first run finds no memory for its
// stack's bookkeeping. A fiber takes its stack when it first runs
// (Worker::prepare), in no fiber's frame; when the stack pool had to grow
// there and its lists could not, the bad_alloc had nowhere to go and the
// process ended ("no memory for the list of fiber stacks", CI:
// http_client_alloc_fail). Now the fiber waits for memory (back of the
// FIFO, still created) and starts on a later pick; nothing is lost.
#include <atomic>
#include <chrono>
#include <filesystem>
#include <optional>
#include <thread>
#include <vector>

#include <spindle/sync/event.hpp>

#include "faulty_new.hpp"
#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;

namespace {
// Allocates (directory_iterator): only with no failure armed.
std::size_t open_fds() {
  std::size_t n = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}
}  // namespace

// One worker, so the spawned fibers first run only when the test's fiber
// yields, after the failure is armed. 1,000 fibers held on an event need
// 16 slabs of stacks from a fresh pool (the runtime's own). Its lists grow
// eight times on the way, each by doubling: the slab list at the 2nd,
// 3rd, 5th and 9th slab, and the free list (room for every stack) at the
// same slabs. Nothing else in the window allocates (the event's waiters
// are linked through their own frames, a yield allocates nothing), so the
// walk over n lands each failure on one of those growths in turn, and n
// of 9 and 10 on none.
TEST_CASE("a fiber whose stack cannot be had yet starts later, and every fiber runs") {
  if (!faulty_new::kActive) {
    WARN("ASan keeps its own operator new: no allocation failures to inject here");
    return;
  }
  constexpr int kFibers = 1000;
  long injected = 0;
  for (long n = 1; n <= 10; ++n) {
    INFO("the allocation that failed: the " << n << "th after the spawns");
    std::atomic<int> started{0};
    long sum = 0;
    bool ends_untouched = false;
    const long before = faulty_new::failed.load();
    run_checked(1, [&] {
      sp::Event go;
      std::vector<sp::Task<int>> fibers;
      fibers.reserve(kFibers);
      for (int i = 0; i < kFibers; ++i) {
        fibers.push_back(sp::spawn([&, i] {
          started.fetch_add(1, std::memory_order_relaxed);
          go.wait();
          return i;
        }));
      }
      faulty_new::fail_in.store(n);
      while (started.load(std::memory_order_relaxed) < kFibers) sp::yield();
      faulty_new::fail_in.store(0);
      // Then they all end, and their stacks overflow the worker's cache
      // into the pool, several times: that path (noexcept) allocates
      // nothing now (it handed the overflow back through a new list, and
      // the free list grew as it filled), so a failure armed over it finds
      // no allocation at all.
      faulty_new::fail_in.store(1);
      go.set();
      for (auto& t : fibers) sum += t.join();
      ends_untouched = faulty_new::fail_in.exchange(0) == 1;
    });
    CHECK(ends_untouched);
    CHECK(started.load() == kFibers);
    CHECK(sum == static_cast<long>(kFibers) * (kFibers - 1) / 2);
    injected += faulty_new::failed.load() - before;
  }
  // Each of the eight growths took a failure (this case would pass with
  // none injected otherwise).
  CHECK(injected == 8);
}

// A worker thread sized its placement lists (one entry per worker) after
// it had told the Runtime it was started, with user code already running,
// in thread_main, where a bad_alloc ends the process: CI's
// http_client_alloc_fail died so, when a worker thread that started late
// took the one failure the test injected. Now the Worker's constructor
// allocates them, before the thread and before the loop's descriptors, so
// a failure reaches the Runtime's maker. The walk over n fails each
// allocation of a Runtime's making in turn, then (n past them) leaves the
// failure armed while the new workers start and idle: no worker thread may
// take it. A worker whose thread never started closes its loop in its
// destructor (before, its descriptors leaked, and worker 0's SIGQUIT
// watch stayed in libuv's process-wide signal tree, pointing into the
// freed worker): the walk ends with the descriptors it began with.
TEST_CASE("a Runtime made out of memory raises bad_alloc to its maker, or starts, and its workers allocate nothing") {
  if (!faulty_new::kActive) {
    WARN("ASan keeps its own operator new: no allocation failures to inject here");
    return;
  }
  // A first Runtime makes what the process keeps (libuv's signal pipe).
  { sp::Runtime warm(sp::RuntimeOptions{.workers = 2}); }
  const std::size_t fds_before = open_fds();
  int refused = 0, made_armed = 0;
  for (long n = 1; n <= 120; ++n) {
    INFO("the allocation that failed: the " << n << "th of the Runtime's making");
    const long before = faulty_new::failed.load();
    std::optional<sp::Runtime> rt;
    faulty_new::fail_in.store(n);
    try {
      rt.emplace(sp::RuntimeOptions{.workers = 2});
    } catch (const std::bad_alloc&) {
      faulty_new::fail_in.store(0);
      ++refused;
      continue;
    }
    // Still armed when the making allocated fewer than n: the workers'
    // threads start and park meanwhile.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (faulty_new::fail_in.exchange(0) > 0) ++made_armed;
    CHECK(faulty_new::failed.load() == before);
    CHECK(rt->block_on([] { return sp::spawn([] { return 7; }).join(); }) == 7);
  }
  CHECK(refused >= 1);
  CHECK(made_armed >= 1);
  CHECK(open_fds() == fds_before);
}
