// migration_test.cpp: a fiber may resume on another thread after any
// suspension point. These tests prove that a migrated fiber sees the
// thread-locals of the worker it now runs on (why it must:
// docs/hacking.md "Thread-locals and migration"), and that hop_to_worker
// really moves a fiber and pins it.
#include <map>
#include <mutex>
#include <vector>

#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;

namespace {

// Set on each worker thread by the first fiber that runs there, checked by
// every later one.
thread_local int tl_worker = -1;

// Read through a non-inlined accessor with a compiler barrier: the test's own
// thread_local must be looked up afresh after a switch. A cached address from
// before the switch would point at the previous thread's variable, the very
// hazard the runtime's accessors are built to avoid.
[[gnu::noinline]] int& tl_worker_ref() {
  asm volatile("" ::: "memory");
  return tl_worker;
}

// The worker index <-> OS thread mapping, learnt from observations. It must
// stay a bijection: one thread per index and one index per thread.
class ThreadMap {
 public:
  explicit ThreadMap(unsigned workers) : tid_of_(workers, 0) {}
  bool observe(int index, long tid) {
    std::lock_guard lk(mu_);
    long& t = tid_of_[static_cast<std::size_t>(index)];
    if (t == 0) t = tid;
    auto [it, fresh] = index_of_.emplace(tid, index);
    return t == tid && it->second == index;
  }
  std::size_t known() {
    std::lock_guard lk(mu_);
    return index_of_.size();
  }

 private:
  std::mutex mu_;
  std::vector<long> tid_of_;
  std::map<long, int> index_of_;
};

// check_here: everything the calling fiber can learn about its thread agrees:
// the runtime's worker_index(), the thread's own thread_local, and the OS
// thread id.
bool check_here(ThreadMap& map, unsigned workers) {
  const int w = sp::this_fiber::worker_index();
  if (w < 0 || w >= static_cast<int>(workers)) return false;
  int& tl = tl_worker_ref();
  if (tl == -1) tl = w;
  if (tl != w) return false;
  return map.observe(w, os_tid());
}

}  // namespace

TEST_CASE("a migrated fiber sees the thread-locals of its current worker", "[migration]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  const std::size_t iterations = scaled(2000);
  ThreadMap map(workers);
  std::atomic<std::uint64_t> mismatches{0}, migrations{0}, checks{0};
  run_checked(workers, [&] {
    std::vector<sp::Task<void>> tasks;
    const unsigned fibers = std::max(8u, 4 * workers);
    for (unsigned k = 0; k < fibers; ++k) {
      tasks.push_back(sp::spawn([&, k] {
        Xorshift rng(k + 1);
        int last = sp::this_fiber::worker_index();
        for (std::size_t i = 0; i < iterations; ++i) {
          switch (rng() % 8) {
            case 0:
              // A hop to the next worker: a migration for sure (N >= 2).
              sp::detail::hop_to_worker(static_cast<int>(
                  (static_cast<unsigned>(sp::this_fiber::worker_index()) + 1) % workers));
              sp::detail::unpin();
              break;
            case 1:
              sp::sleep_for(0ms);  // through the timer heap and back
              break;
            case 2:
              if (rng() % 16 == 0) sp::sleep_for(1ms);  // long enough to park
              break;
            default:
              sp::yield();  // via the FIFO, where thieves may take it
          }
          checks.fetch_add(1, std::memory_order_relaxed);
          if (!check_here(map, workers)) mismatches.fetch_add(1, std::memory_order_relaxed);
          const int now = sp::this_fiber::worker_index();
          if (now != last) migrations.fetch_add(1, std::memory_order_relaxed);
          last = now;
        }
      }));
    }
    for (auto& t : tasks) t.join();
  });
  CHECK(mismatches.load() == 0);
  CHECK(checks.load() >= iterations * 8);
  if (workers >= 2) {
    // Every worker was visited (hops go round), each by one thread only.
    CHECK(migrations.load() > 0);
    CHECK(map.known() == workers);
  }
}

TEST_CASE("hop_to_worker lands on that worker and pins the fiber there", "[migration][hop]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  const int rounds = static_cast<int>(std::max<std::size_t>(5, scaled(30)));
  ThreadMap map(workers);
  std::atomic<std::uint64_t> off_pin{0}, checks{0};
  run_checked(workers, [&] {
    // Busy unpinned fibers keep every worker looking for work, so an idle
    // worker would happily steal the pinned fiber if pinning did not hold.
    std::atomic<bool> stop{false};
    std::vector<sp::Task<void>> busy;
    for (unsigned k = 0; k < 2 * workers; ++k) {
      busy.push_back(sp::spawn([&] {
        while (!stop.load(std::memory_order_relaxed)) {
          spin(200);
          sp::yield();
        }
      }));
    }

    auto pinned = sp::spawn(sp::SpawnOptions{.name = "pinned"}, [&] {
      int expected_prev = -1;
      for (int i = 0; i < static_cast<int>(workers); ++i) {
        const int prev = sp::detail::hop_to_worker(i);
        FIBER_CHECK(prev == expected_prev);
        expected_prev = i;
        FIBER_CHECK(sp::this_fiber::worker_index() == i);
        FIBER_CHECK(check_here(map, workers));
        const long tid = os_tid();
        Xorshift rng(static_cast<std::uint64_t>(i) + 7);
        for (int r = 0; r < rounds; ++r) {
          switch (r % 4) {
            case 0: sp::yield(); break;
            case 1: sp::sleep_for(std::chrono::milliseconds(rng() % 2)); break;
            case 2: sp::spawn([] { sp::yield(); return 1; }).join(); break;
            default:
              // A wait completed from another worker (the child runs
              // elsewhere whenever it is stolen).
              sp::spawn([] { sp::sleep_for(1ms); }).join();
          }
          checks.fetch_add(1, std::memory_order_relaxed);
          if (sp::this_fiber::worker_index() != i || os_tid() != tid || !check_here(map, workers)) {
            off_pin.fetch_add(1, std::memory_order_relaxed);
          }
        }
      }
      sp::detail::unpin();
      // Unpinned: a new hop reports no previous pin.
      FIBER_CHECK(sp::detail::hop_to_worker(0) == -1);
      FIBER_CHECK(sp::this_fiber::worker_index() == 0);
      FIBER_CHECK(sp::detail::hop_to_worker(static_cast<int>(workers) - 1) == 0);
      FIBER_CHECK(sp::this_fiber::worker_index() == static_cast<int>(workers) - 1);
      sp::detail::unpin();
    });
    pinned.join();
    stop.store(true, std::memory_order_relaxed);
    for (auto& t : busy) t.join();
  });
  CHECK(off_pin.load() == 0);
  CHECK(checks.load() == static_cast<std::uint64_t>(rounds) * workers);
}
