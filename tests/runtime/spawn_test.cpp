// spawn_test.cpp: spawn, Task<T> and join: values, void, move-only results,
// argument passing, exceptions (joined and detached), identity, and a
// million fibers.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <numeric>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;

namespace {
// Not derived from std::exception: join must rethrow the very object, not a
// translation of it.
struct CustomError {
  int code;
};

struct DerivedError : std::runtime_error {
  explicit DerivedError(int v) : std::runtime_error("derived " + std::to_string(v)), value(v) {}
  int value;
};
}  // namespace

TEST_CASE("join returns the fiber's value", "[spawn]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  const long sum = run_checked(workers, [] {
    std::vector<sp::Task<long>> tasks;
    for (long i = 0; i < 1000; ++i) {
      tasks.push_back(sp::spawn([i] {
        // Suspend once so that results cross workers before being joined.
        if (i % 3 == 0) sp::yield();
        return i * i;
      }));
    }
    long s = 0;
    for (auto& t : tasks) s += t.join();
    return s;
  });
  // sum of i^2 for i < 1000
  CHECK(sum == 999L * 1000 * 1999 / 6);
}

TEST_CASE("void tasks run to completion before join returns", "[spawn]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [] {
    std::atomic<int> ran{0};
    std::vector<sp::Task<void>> tasks;
    for (int i = 0; i < 200; ++i) {
      tasks.push_back(sp::spawn([&ran] {
        sp::yield();
        ran.fetch_add(1, std::memory_order_relaxed);
      }));
    }
    for (auto& t : tasks) {
      t.join();
      CHECK(t.done());
    }
    CHECK(ran.load() == 200);
  });
}

TEST_CASE("done() is false until the body has finished", "[spawn]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [] {
    std::atomic<bool> release{false};
    auto t = sp::spawn([&release] {
      while (!release.load(std::memory_order_acquire)) sp::yield();
      return 7;
    });
    // The body cannot finish before `release` is set.
    CHECK_FALSE(t.done());
    release.store(true, std::memory_order_release);
    while (!t.done()) sp::yield();
    CHECK(t.join() == 7);
  });
}

TEST_CASE("move-only results and arguments", "[spawn]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [] {
    auto t = sp::spawn([] {
      sp::yield();
      return std::make_unique<std::string>("moved out");
    });
    std::unique_ptr<std::string> p = t.join();
    REQUIRE(p != nullptr);
    CHECK(*p == "moved out");

    // A move-only argument is moved into the fiber.
    auto arg = std::make_unique<int>(41);
    auto t2 = sp::spawn([](std::unique_ptr<int> q) { return *q + 1; }, std::move(arg));
    CHECK(arg == nullptr);
    CHECK(t2.join() == 42);

    // Task itself is move-only; a moved-from Task is empty.
    auto t3 = sp::spawn([] { return 3; });
    const auto id = t3.id();
    sp::Task<int> t4 = std::move(t3);
    CHECK_FALSE(t3);
    CHECK(t3.id() == 0);
    CHECK(t4.id() == id);
    CHECK(t4.join() == 3);
  });
}

TEST_CASE("arguments are copied at spawn; std::ref shares", "[spawn]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [] {
    std::string s = "before";
    auto t = sp::spawn(
        [](std::string copy) {
          // Sleep so that the caller has surely changed its string by now.
          sp::sleep_for(5ms);
          copy += "!";
          return copy;
        },
        s);
    s = "after";
    CHECK(t.join() == "before!");
    CHECK(s == "after");

    int shared = 0;
    std::string text = "abc";
    sp::spawn(
        [](int& r, std::string& str) {
          sp::yield();
          r = 42;
          str += "def";
        },
        std::ref(shared), std::ref(text))
        .join();
    CHECK(shared == 42);
    CHECK(text == "abcdef");

    // Several arguments of different kinds, in order.
    auto t2 = sp::spawn([](int a, double b, const std::string& c) { return c + std::to_string(a + static_cast<int>(b)); },
                        1, 2.0, std::string("n="));
    CHECK(t2.join() == "n=3");
  });
}

TEST_CASE("join rethrows the fiber's exception with type and message", "[spawn][exception]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  run_checked(workers, [] {
    auto t1 = sp::spawn([]() -> int { throw std::runtime_error("boom 42"); });
    CHECK_THROWS_MATCHES(t1.join(), std::runtime_error, Catch::Matchers::Message("boom 42"));

    // Thrown after a suspension (so possibly on another worker than the
    // one that started it) and caught as the derived type.
    auto t2 = sp::spawn([] {
      sp::sleep_for(1ms);
      sp::yield();
      throw DerivedError(7);
    });
    try {
      t2.join();
      FAIL("join did not throw");
    } catch (const DerivedError& e) {
      CHECK(e.value == 7);
      CHECK(std::string(e.what()) == "derived 7");
    }

    // Non-std exception types survive too.
    auto t3 = sp::spawn([]() -> std::string { throw CustomError{99}; });
    try {
      (void)t3.join();
      FAIL("join did not throw");
    } catch (const CustomError& e) {
      CHECK(e.code == 99);
    }

    // The fiber that threw is done, and other fibers are unaffected.
    CHECK(t3.done());
    CHECK(sp::spawn([] { return 5; }).join() == 5);
  });
}

TEST_CASE("an exception escaping a detached fiber is reported with its name", "[spawn][exception]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  StderrCapture cap;
  run_checked(workers, [] {
    std::atomic<int> thrown{0};
    sp::spawn(sp::SpawnOptions{.name = "doomed-detached"}, [&thrown] {
      sp::yield();
      thrown.fetch_add(1);
      throw std::runtime_error("detached boom");
    }).detach();
    {
      // Dropping the handle detaches as well.
      auto dropped = sp::spawn(sp::SpawnOptions{.name = "doomed-dropped"}, [&thrown] {
        sp::sleep_for(1ms);
        thrown.fetch_add(1);
        throw CustomError{1};
      });
    }
    // A joined exception is the joiner's business: not reported.
    auto joined = sp::spawn(sp::SpawnOptions{.name = "joined-fine"},
                            []() -> int { throw std::runtime_error("seen by join"); });
    CHECK_THROWS_AS(joined.join(), std::runtime_error);
    while (thrown.load() != 2) sp::sleep_for(1ms);
  });
  // run() has joined the workers, so every report has been written.
  const std::string err = cap.text();
  CHECK_THAT(err, Catch::Matchers::Contains("\"doomed-detached\""));
  CHECK_THAT(err, Catch::Matchers::Contains("detached boom"));
  CHECK_THAT(err, Catch::Matchers::Contains("\"doomed-dropped\""));
  CHECK_THAT(err, Catch::Matchers::Contains("nobody joined"));
  CHECK_THAT(err, !Catch::Matchers::Contains("joined-fine"));
  CHECK_THAT(err, !Catch::Matchers::Contains("seen by join"));
}

TEST_CASE("identity: ids, names, in_fiber, worker_index", "[spawn]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  CHECK_FALSE(sp::this_fiber::in_fiber());
  CHECK(sp::this_fiber::id() == 0);
  CHECK(sp::this_fiber::name().empty());
  CHECK(sp::this_fiber::worker_index() == -1);
  run_checked(workers, [workers] {
    CHECK(sp::this_fiber::in_fiber());
    CHECK(sp::this_fiber::name() == "main");
    std::vector<sp::Task<std::uint64_t>> tasks;
    for (int i = 0; i < 100; ++i) {
      tasks.push_back(sp::spawn(sp::SpawnOptions{.name = "fiber-" + std::to_string(i)}, [i, workers] {
        FIBER_CHECK(sp::this_fiber::in_fiber());
        FIBER_CHECK(sp::this_fiber::name() == "fiber-" + std::to_string(i));
        const int w = sp::this_fiber::worker_index();
        FIBER_CHECK(w >= 0);
        FIBER_CHECK(w < static_cast<int>(workers));
        const auto before = sp::this_fiber::id();
        sp::yield();
        FIBER_CHECK(sp::this_fiber::id() == before);  // stable across suspensions
        return before;
      }));
    }
    std::set<std::uint64_t> ids;
    for (auto& t : tasks) {
      const auto expected = t.id();
      CHECK(expected != 0);
      CHECK(t.join() == expected);
      ids.insert(expected);
    }
    CHECK(ids.size() == tasks.size());
    CHECK(ids.count(sp::this_fiber::id()) == 0);
    // An unnamed fiber has an empty name.
    CHECK(sp::spawn([] { return std::string(sp::this_fiber::name()); }).join().empty());
  });

  sp::Task<int> empty;
  CHECK_FALSE(empty);
  CHECK(empty.id() == 0);
  CHECK_FALSE(empty.done());
  empty.cancel();  // harmless on an empty task
  empty.detach();
}

TEST_CASE("a plain thread can spawn into a running runtime and join", "[spawn]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  sp::Runtime rt(options(workers));
  std::vector<sp::Task<int>> tasks;
  for (int i = 0; i < 50; ++i) {
    tasks.push_back(sp::spawn([i] {
      sp::sleep_for(std::chrono::milliseconds(i % 3));
      return i + 1;
    }));
  }
  int sum = 0;
  for (auto& t : tasks) sum += t.join();  // blocks this plain thread
  CHECK(sum == 50 * 51 / 2);
  auto bad = sp::spawn([]() -> int { throw std::invalid_argument("from a thread's task"); });
  CHECK_THROWS_MATCHES(bad.join(), std::invalid_argument,
                       Catch::Matchers::Message("from a thread's task"));
  rt.shutdown();
  CHECK(rt.stats().live_fibers == 0);
}

TEST_CASE("fibers spawn fibers recursively", "[spawn]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  // A binary tree of depth 12 (8191 fibers; 511 under TSan), each joining
  // its children.
  struct Tree {
    static long node(int depth) {
      if (depth == 0) return 1;
      auto l = sp::spawn(&Tree::node, depth - 1);
      auto r = sp::spawn(&Tree::node, depth - 1);
      return 1 + l.join() + r.join();
    }
  };
  const int depth = kTsan ? 8 : 12;
  CHECK(run_checked(workers, [depth] { return Tree::node(depth); }) == (1L << (depth + 1)) - 1);
}

TEST_CASE("a million fibers spawned and joined in batches", "[spawn][heavy]") {
  const unsigned workers = SPINDLE_TEST_WORKERS();
  // TSan creates and destroys a shadow fiber per fiber (about a millisecond
  // each on the CI machine), so its build checks the protocol on far fewer.
  const std::size_t total = kTsan ? 5'000 : scaled(1'000'000);
  const std::size_t batch = kTsan ? 1'000 : 10'000;
  const auto result = run_checked(workers, [total, batch] {
    std::uint64_t sum = 0;
    std::vector<sp::Task<std::uint64_t>> tasks;
    tasks.reserve(batch);
    for (std::size_t base = 0; base < total; base += batch) {
      const std::size_t end = std::min(total, base + batch);
      for (std::size_t i = base; i < end; ++i) {
        tasks.push_back(sp::spawn([i] { return static_cast<std::uint64_t>(i); }));
      }
      for (auto& t : tasks) sum += t.join();
      tasks.clear();
    }
    return sum;
  });
  CHECK(result == static_cast<std::uint64_t>(total) * (total - 1) / 2);
}

namespace {
// Uses about `bytes` of stack (kept alive across the recursion).
[[gnu::noinline]] int use_stack(std::size_t bytes) {
  volatile char frame[1024];
  frame[0] = static_cast<char>(bytes);
  if (bytes <= sizeof frame) return frame[0];
  const int below = use_stack(bytes - sizeof frame);
  return below + frame[0] + frame[1023];
}

// Mappings with no access at all in /proc/self/maps (guard pages among them).
// guard_pages_in_process: PROT_NONE mappings (a guard page made with
// mprotect is one; so are glibc's thread stack guards and arena reserves)
// plus the pages of guard regions (MADV_GUARD_INSTALL, Linux 6.13: no mapping of
// their own; /proc/self/pagemap reports them with bit 58). Mappings over
// 64 MiB are skipped (a sanitizer's shadow: reading its pagemap would take
// long, and stacks are never there).
int guard_pages_in_process() {
  std::FILE* f = std::fopen("/proc/self/maps", "r");
  if (f == nullptr) return -1;
  const int pm = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  const std::uintptr_t page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
  int n = 0;
  char line[512];
  std::vector<std::uint64_t> entries;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    unsigned long lo = 0, hi = 0;
    char perms[8] = {};
    if (std::sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3) continue;
    const std::uintptr_t pages = (hi - lo) / page;
    if (std::string(perms).rfind("---", 0) == 0) {
      ++n;  // one per mapping: a thread's malloc arena reserves megabytes
      continue;
    }
    if (pm < 0 || pages > (64u << 20) / page) continue;
    entries.resize(pages);
    const auto bytes = static_cast<ssize_t>(pages * sizeof(std::uint64_t));
    if (::pread(pm, entries.data(), static_cast<std::size_t>(bytes),
                static_cast<off_t>(lo / page * sizeof(std::uint64_t))) != bytes) {
      continue;
    }
    for (std::uint64_t e : entries) n += static_cast<int>((e >> 58) & 1);
  }
  if (pm >= 0) ::close(pm);
  std::fclose(f);
  return n;
}
}  // namespace

TEST_CASE("stack_size: the runtime's default and a spawn's own", "[spawn][stack]") {
  // 256 KiB of recursion: four times the 64 KiB default, so a size that is
  // not honoured ends in a stack overflow (the process dies, the test fails).
  constexpr std::size_t kDeep = 256 * 1024;
  const unsigned workers = GENERATE(1u, 2u);
  sp::RuntimeOptions o = options(workers);
  o.stack_size = 1024 * 1024;
  run_checked(o, [&] {
    auto t = sp::spawn([&] {
      (void)use_stack(kDeep);
      return true;  // reached only if the stack was big enough
    });
    CHECK(t.join());
  });
  run_checked(workers, [&] {
    REQUIRE(sp::RuntimeOptions{}.stack_size < kDeep);
    auto t = sp::spawn(sp::SpawnOptions{.name = "deep", .stack_size = 1024 * 1024},
                       [&] {
                         (void)use_stack(kDeep);
                         return true;
                       });
    CHECK(t.join());
  });
}

TEST_CASE("guard_pages = false hands out stacks without guard pages", "[spawn][stack]") {
  // The same 200 fibers alive at once, with and without guards: with them,
  // each stack adds a guard page (a PROT_NONE mapping, or a guard region
  // where the kernel has them); without, none.
  constexpr int kFibers = 200;
  auto live_guards = [&](bool guards) {
    sp::RuntimeOptions o = options(2);
    o.guard_pages = guards;
    int n = -1;
    run_checked(o, [&] {
      std::vector<Gate> release(kFibers);  // a Gate has one waiter at a time
      std::atomic<int> started{0};
      std::vector<sp::Task<void>> ts;
      for (int i = 0; i < kFibers; ++i) {
        ts.push_back(sp::spawn([&, i] {
          started.fetch_add(1);
          release[i].wait();
        }));
      }
      while (started.load() < kFibers) sp::sleep_for(1ms);
      n = guard_pages_in_process();
      for (auto& g : release) g.signal();
      for (auto& t : ts) t.join();
    });
    return n;
  };
  const int with = live_guards(true);
  const int without = live_guards(false);
  INFO("guard pages with guards: " << with << ", without: " << without);
  REQUIRE(with >= 0);
  CHECK(with - without >= kFibers * 9 / 10);
}
