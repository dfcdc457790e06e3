// registry_test.cpp: the fiber registries (runtime/src/registry.hpp) under
// work stealing. A child stolen by another worker ends there and is unlinked
// later by the worker that spawned it; meanwhile dumps and shutdown's
// cancel_all walk the registries. Every live fiber is seen once, an ended
// one never, and no walker touches a freed fiber (ASan, TSan builds).
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;

namespace {
// The fiber ids of one dump, and its "N live fiber(s)" count.
struct DumpView {
  std::size_t count = 0;
  std::vector<std::uint64_t> ids;
};

DumpView parse_dump(const std::string& d) {
  DumpView v;
  std::istringstream in(d);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("spindle: ", 0) == 0) {
      v.count = std::stoull(line.substr(9));
    } else if (line.rfind("  fiber ", 0) == 0) {
      v.ids.push_back(std::stoull(line.substr(8)));
    }
  }
  return v;
}
}  // namespace

TEST_CASE("stolen children that ended leave the dump; no fiber is listed twice", "[registry]") {
  constexpr long kBatch = 200;
  const std::size_t rounds = scaled(300);
  std::atomic<bool> stop{false};
  std::atomic<long> dumps{0}, twice{0}, miscounted{0};
  std::vector<std::string> main_dumps_wrong;
  long total = 0, expected = 0;
  const unsigned workers = GENERATE(2u, 4u);  // stealing needs two
  run_checked(workers, [&] {
    // A plain thread walks the registries while children end on both
    // workers (and are unlinked by their spawner's worker later).
    std::thread walker([&] {
      while (!stop.load()) {
        std::ostringstream os;
        sp::dump_fibers(os);
        const DumpView v = parse_dump(os.str());
        const std::set<std::uint64_t> unique(v.ids.begin(), v.ids.end());
        if (unique.size() != v.ids.size()) twice.fetch_add(1);
        if (v.count != v.ids.size()) miscounted.fetch_add(1);
        dumps.fetch_add(1);
      }
    });
    std::vector<sp::Task<long>> batch(kBatch);
    for (std::size_t r = 0; r < rounds; ++r) {
      for (long i = 0; i < kBatch; ++i) {
        batch[i] = sp::spawn([i] {
          // A yield sends half of them through the FIFO, so some are
          // resumed on the other worker after they started.
          if (i % 2 == 0) sp::yield();
          return i;
        });
        expected += i;
      }
      for (auto& t : batch) total += t.join();
      // Every child has been joined: only main is live, whatever is still
      // waiting to be unlinked.
      std::ostringstream os;
      sp::dump_fibers(os);
      const DumpView v = parse_dump(os.str());
      if (v.count != 1 && main_dumps_wrong.size() < 3) main_dumps_wrong.push_back(os.str());
    }
    // Let the walker overlap at least a few rounds, however it was scheduled.
    while (dumps.load() < 3) sp::yield();
    stop.store(true);
    walker.join();
    return 0;
  });
  CHECK(total == expected);
  for (const auto& d : main_dumps_wrong) FAIL_CHECK("main's dump after the joins:\n" << d);
  CHECK(twice.load() == 0);
  CHECK(miscounted.load() == 0);
}

TEST_CASE("shutdown cancels fibers whose children end on other workers", "[registry][shutdown]") {
  constexpr int kChurners = 8;
  std::atomic<int> started{0}, cleaned{0};
  sp::RuntimeOptions o = options(GENERATE(2u, 4u));
  o.shutdown_timeout = 10s;
  // From main's return, when shutdown begins: the batches before it take
  // seconds under TSan on a machine whose mmap is slow (TSan maps state
  // for every fiber it sees; measured 30 s for the whole run, so a bound
  // from the start of the run failed there while shutdown itself did not).
  Clock::time_point t0;
  run_checked(o, [&] {
    for (int c = 0; c < kChurners; ++c) {
      sp::spawn([&] {
        CountOnExit g{cleaned};
        started.fetch_add(1);
        // Spawn and join batches until cancelled: shutdown's cancel_all
        // walks the registries while children end, stolen or not, and
        // while the unjoined ones of the last batch are cancelled too.
        std::vector<sp::Task<int>> kids(32);
        for (;;) {
          for (int i = 0; i < 32; ++i) {
            kids[i] = sp::spawn([i] {
              sp::yield();
              return i;
            });
          }
          for (auto& k : kids) k.join();
        }
      }).detach();
    }
    while (started.load() != kChurners) sp::yield();
    // Some batches go by before main returns and shutdown begins (each
    // yield lets every churner run about a batch; 100 took 30 s under TSan).
    for (int i = 0; i < 10; ++i) sp::yield();
    t0 = Clock::now();
    return 0;
  });
  CHECK(cleaned.load() == kChurners);
  const auto shutdown_took = Clock::now() - t0;
  INFO("shutdown took " << std::chrono::duration<double>(shutdown_took).count() << " s");
  CHECK(shutdown_took < slack(10s));
}

namespace {
// A result that counts its own destruction: it dies with its fiber's
// control block, after the fiber's last reference went.
struct CountedResult {
  std::atomic<int>* freed;
  explicit CountedResult(std::atomic<int>* c) : freed(c) {}
  CountedResult(CountedResult&& o) noexcept : freed(std::exchange(o.freed, nullptr)) {}
  CountedResult& operator=(CountedResult&&) = delete;
  ~CountedResult() {
    if (freed != nullptr) freed->fetch_add(1);
  }
};
}  // namespace

TEST_CASE("children that end elsewhere are freed while their spawner's worker runs one long fiber",
          "[registry]") {
  // Worker 0 spawns them and then spins without suspending, so it runs no
  // maintenance (where it unlinks the children that ended on worker 1).
  // The finisher whose push makes Registry::kDrainBy (1,024) wait unlinks
  // them itself: all but the last 1,024 at most must be freed meanwhile.
  constexpr int kChildren = 4096;
  constexpr int kDrainBy = 1024;
  std::atomic<int> freed{0}, ran{0};
  int seen = 0;
  run_checked(2, [&] {
    sp::detail::hop_to_worker(0);
    for (int i = 0; i < kChildren; ++i) {
      sp::spawn([&freed, &ran] {
        ran.fetch_add(1);
        return CountedResult{&freed};
      }).detach();
    }
    const auto until = Clock::now() + slack(10s);
    while (freed.load() < kChildren - kDrainBy && Clock::now() < until) {
    }
    seen = freed.load();
    sp::detail::unpin();
    return 0;
  });
  CHECK(seen >= kChildren - kDrainBy);
  // The rest leave at shutdown (a child still queued then never runs).
  CHECK(freed.load() == ran.load());
}

TEST_CASE("a fiber's captures die when its body ends, also when it ends on another worker", "[registry]") {
  // The child is stolen by worker 1 and ends there, while worker 0 (its
  // spawner's) spins in one fiber and so never unlinks it from its
  // registry. What the child captured must die anyway: a captured
  // semaphore guard or socket that outlived its fiber until the spawner's
  // worker next ran maintenance could hang a program whose spawner waits
  // for exactly that release (the spawner's worker then parks).
  std::atomic<bool> released{false};
  bool seen = false;
  run_checked(2, [&] {
    sp::detail::hop_to_worker(0);
    std::shared_ptr<int> token(new int(0), [&released](int* p) {
      delete p;
      released.store(true);
    });
    sp::spawn([token = std::move(token)] { return *token; }).detach();
    const auto until = Clock::now() + slack(10s);
    while (!released.load() && Clock::now() < until) {
    }
    seen = released.load();
    sp::detail::unpin();
    return 0;
  });
  CHECK(seen);
}
