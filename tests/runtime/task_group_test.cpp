// task_group_test.cpp: TaskGroup across 1, 2 and 4 workers: children and
// grandchildren, failure semantics (first failure cancels the siblings and
// is rethrown, all failures kept, Cancelled is no failure), cancel(), the
// owner's cancellation and deadline, and the destructor (waits, reports,
// aborts the children when the scope unwinds).
#include <atomic>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;

namespace {
// Children count themselves in before they sleep, and tests that count the
// cancelled ones wait for that first: a child cancelled before it ever ran
// never runs its body (by design), so it would not count. Under TSan, where
// creating a fiber takes about a millisecond, a fixed sleep was not enough.
std::atomic<int> g_started{0};

void await_started(int n) {
  while (g_started.load() < n) sp::sleep_for(1ms);
}

// A child that counts itself in, then waits until cancelled.
void start_and_sleep(std::atomic<int>& cancelled) {
  g_started.fetch_add(1);
  sleep_until_cancelled(cancelled);
}

// Spawns a binary tree of depth d into g; counts the nodes that ran.
void tree(sp::TaskGroup& g, std::atomic<int>& ran, int d) {
  ran.fetch_add(1);
  if (d == 0) return;
  sp::yield();
  g.spawn([&g, &ran, d] { tree(g, ran, d - 1); });
  g.spawn([&g, &ran, d] { tree(g, ran, d - 1); });
}
}  // namespace

TEST_CASE("a group waits for its children and their children", "[task_group]") {
  const unsigned workers = SPINDLE_TEST_FEW_WORKERS();
  run_checked(workers, [] {
    std::atomic<int> ran{0};
    sp::TaskGroup g;
    auto t = g.spawn([] {
      sp::sleep_for(5ms);
      return 42;
    });
    g.spawn([&] { tree(g, ran, 8); });
    g.wait();
    FIBER_CHECK(ran.load() == (1 << 9) - 1);
    FIBER_CHECK(t.done());
    FIBER_CHECK(t.join() == 42);
    FIBER_CHECK(!g.failed());
  });
}

// A child that waits on its own group would wait for itself: it raises
// logic_error when wait() reaches it, after its later siblings (the one
// spawned after it sleeps first). Before, it hung, and so did the owner.
TEST_CASE("a child that waits on its own group raises logic_error", "[task_group]") {
  const unsigned workers = SPINDLE_TEST_FEW_WORKERS();
  run_checked(workers, [] {
    std::atomic<bool> sibling_done{false};
    std::string what;
    sp::TaskGroup g;
    g.spawn([&] {
      try {
        g.wait();
      } catch (const std::logic_error& e) {
        what = e.what();
      }
      FIBER_CHECK(sibling_done.load());  // waited for the later sibling first
    });
    g.spawn([&] {
      sp::sleep_for(20ms);
      sibling_done = true;
    });
    g.wait();
    FIBER_CHECK(what.find("its own group") != std::string::npos);
    FIBER_CHECK(!g.failed());
  });
}

TEST_CASE("a long-lived group with many short children", "[task_group]") {
  const unsigned workers = SPINDLE_TEST_FEW_WORKERS();
  run_checked(workers, [] {
    std::atomic<int> ran{0};
    sp::TaskGroup g;
    const int n = kSanitized ? 2000 : 20000;
    for (int i = 0; i < n; ++i) {
      g.spawn([&] { ran.fetch_add(1); });  // Tasks dropped: the group tracks them
      if (i % 64 == 0) sp::yield();
    }
    g.wait();
    FIBER_CHECK(ran.load() == n);
  });
}

TEST_CASE("the first failure cancels the siblings and is rethrown from wait", "[task_group]") {
  const unsigned workers = SPINDLE_TEST_FEW_WORKERS();
  run_checked(workers, [] {
    std::atomic<int> cancelled{0};
    std::atomic<bool> late_ran{false};
    g_started = 0;
    sp::TaskGroup g;
    for (int i = 0; i < 3; ++i) g.spawn([&] { start_and_sleep(cancelled); });
    // A sibling that turns its cancellation into a second failure. It
    // counts itself in too: cancelled before it first ran, it would never
    // run its body (a 5 ms sleep was the only guard here before).
    g.spawn([] {
      g_started.fetch_add(1);
      try {
        sp::sleep_for(1h);
      } catch (const sp::Cancelled&) {
      }
      throw Boom("second");
    });
    g.spawn([] {
      await_started(4);
      throw Boom("first");
    });
    std::string what;
    try {
      g.wait();
    } catch (const Boom& e) {
      what = e.what();
    }
    FIBER_CHECK(what == "first");
    FIBER_CHECK(cancelled.load() == 3);
    const auto errs = g.errors();
    FIBER_CHECK(errs.size() == 2);
    if (errs.size() == 2) {
      FIBER_CHECK(sp::detail::exception_what(errs[0]) == "first");
      FIBER_CHECK(sp::detail::exception_what(errs[1]) == "second");
    }
    // After a failure, new children start cancelled: their bodies never run.
    auto late = g.spawn([&] { late_ran = true; });
    bool late_cancelled = false;
    try {
      late.join();
    } catch (const sp::Cancelled&) {
      late_cancelled = true;
    }
    FIBER_CHECK(late_cancelled);
    FIBER_CHECK(!late_ran.load());
    // The group stays failed.
    bool again = false;
    try {
      g.wait();
    } catch (const Boom&) {
      again = true;
    }
    FIBER_CHECK(again);
  });
}

TEST_CASE("cancel() cancels the children; cancelled children are no failures", "[task_group]") {
  const unsigned workers = SPINDLE_TEST_FEW_WORKERS();
  run_checked(workers, [] {
    std::atomic<int> cancelled{0};
    g_started = 0;
    sp::TaskGroup g;
    for (int i = 0; i < 4; ++i) g.spawn([&] { start_and_sleep(cancelled); });
    await_started(4);
    g.cancel();
    g.wait();  // no throw
    FIBER_CHECK(cancelled.load() == 4);
    FIBER_CHECK(g.errors().empty());
  });
}

TEST_CASE("cancelling the owner in wait cancels the group and rethrows Cancelled", "[task_group]") {
  const unsigned workers = SPINDLE_TEST_FEW_WORKERS();
  run_checked(workers, [] {
    std::atomic<int> cancelled{0};
    std::atomic<int> cleaned{0};
    g_started = 0;
    auto owner = sp::spawn([&] {
      sp::TaskGroup g;
      for (int i = 0; i < 4; ++i) {
        g.spawn([&] {
          // RAII clean-up that waits, shielded, completes while Cancelled
          // unwinds the child. (Not in a catch handler: a fiber must not
          // suspend inside one, see the runtime issue in issue #3's report.)
          struct Cleanup {
            std::atomic<int>& n;
            ~Cleanup() {
              sp::shield([] { sp::sleep_for(1ms); });
              n.fetch_add(1);
            }
          } cleanup{cleaned};
          start_and_sleep(cancelled);
        });
      }
      g.wait();
    });
    await_started(4);
    owner.cancel();
    const bool got = raises_cancelled([&] { owner.join(); });
    FIBER_CHECK(got);
    FIBER_CHECK(cancelled.load() == 4);
    FIBER_CHECK(cleaned.load() == 4);
  });
}

// With wait(), and with none: then the destructor waits, catches the
// deadline's Cancelled (it cannot throw) and cancels the children; before
// 61a1f7f with_timeout then returned normally, work cut short taken for
// finished.
TEST_CASE("with_timeout around a group raises TimedOut after the children ended, wait() or the destructor",
          "[task_group][timeout]") {
  const unsigned workers = SPINDLE_TEST_FEW_WORKERS();
  for (const bool explicit_wait : {true, false}) {
    INFO("explicit wait(): " << explicit_wait);
    run_checked(workers, [explicit_wait] {
      std::atomic<int> cancelled{0};
      bool timed_out = false;
      try {
        // 100 ms: room for the sleeper to start even under TSan (see above).
        sp::with_timeout(100ms, [&] {
          sp::TaskGroup g;
          g.spawn([&] { start_and_sleep(cancelled); });
          g.spawn([] { sp::sleep_for(1ms); });
          if (explicit_wait) g.wait();
        });
      } catch (const sp::TimedOut&) {
        timed_out = true;
      }
      FIBER_CHECK(timed_out);
      FIBER_CHECK(cancelled.load() == 1);
    });
  }
}

TEST_CASE("the destructor waits, and reports a failure nobody received", "[task_group]") {
  const unsigned workers = SPINDLE_TEST_FEW_WORKERS();
  std::string err;
  {
    StderrCapture cap;
    run_checked(workers, [] {
      std::atomic<int> done{0};
      {
        sp::TaskGroup g;
        for (int i = 0; i < 3; ++i) {
          g.spawn([&] {
            sp::sleep_for(2ms);
            done.fetch_add(1);
          });
        }
      }  // no wait(): the destructor waits
      FIBER_CHECK(done.load() == 3);
      {
        sp::TaskGroup g;
        g.spawn([]() -> int { throw Boom("unheard"); });
      }
    });
    err = cap.text();
  }
  CHECK(err.find("unheard") != std::string::npos);
  CHECK(err.find("TaskGroup") != std::string::npos);
}

TEST_CASE("the destructor cancels the children when the scope unwinds", "[task_group]") {
  const unsigned workers = SPINDLE_TEST_FEW_WORKERS();
  run_checked(workers, [] {
    std::atomic<int> cancelled{0};
    bool caught = false;
    try {
      g_started = 0;
      sp::TaskGroup g;
      g.spawn([&] { start_and_sleep(cancelled); });
      await_started(1);
      throw Boom("body");
    } catch (const Boom&) {
      caught = true;
    }
    FIBER_CHECK(caught);
    FIBER_CHECK(cancelled.load() == 1);
  });
}

TEST_CASE("an owner cancelled outside wait: the destructor cancels and waits", "[task_group]") {
  const unsigned workers = SPINDLE_TEST_FEW_WORKERS();
  run_checked(workers, [] {
    std::atomic<int> cancelled{0};
    std::atomic<bool> after_scope{false};
    g_started = 0;
    auto owner = sp::spawn([&] {
      {
        sp::TaskGroup g;
        g.spawn([&] { start_and_sleep(cancelled); });
        sp::sleep_for(1h);  // cancelled here: unwinds through ~TaskGroup
      }
      after_scope = true;
    });
    await_started(1);
    owner.cancel();
    const bool got = raises_cancelled([&] { owner.join(); });
    FIBER_CHECK(got);
    FIBER_CHECK(!after_scope.load());
    FIBER_CHECK(cancelled.load() == 1);
  });
}

namespace {
// The spawn site ("file:line") the fiber dump shows for fiber `id`, or "" if
// the dump has no such fiber.
std::string dumped_site(const std::string& dump, std::uint64_t id) {
  std::istringstream in(dump);
  const std::string head = "fiber " + std::to_string(id) + " \"";
  const std::string at = " ms ago at ";  // "spawned N ms ago at file:line (function)"
  std::string line;
  while (std::getline(in, line)) {
    const auto h = line.find(head);
    if (h == std::string::npos || line.find_first_not_of(' ') != h) continue;
    const auto a = line.find(at);
    if (a == std::string::npos) return "";
    const auto from = a + at.size();
    return line.substr(from, line.find(" (", from) - from);
  }
  return "";
}
}  // namespace

TEST_CASE("every TaskGroup::spawn overload records its caller's file and line", "[task_group]") {
  const unsigned workers = SPINDLE_TEST_FEW_WORKERS();
  std::vector<std::pair<std::uint64_t, int>> sites;  // task id, line of its spawn call
  std::uint64_t unknown = 0;
  std::string dump;
  run_checked(workers, [&] {
    sp::TaskGroup g;
    auto park = [](auto&&...) { sp::sleep_for(1h); };  // until g.cancel()
    // One call per line, so __LINE__ is the line of the call.
    sites.emplace_back(g.spawn([] { sp::sleep_for(1h); }).id(), __LINE__);
    sites.emplace_back(g.spawn(park, 1).id(), __LINE__);
    sites.emplace_back(g.spawn(park, 1, "two").id(), __LINE__);
    sites.emplace_back(g.spawn(park, 1, "two", 3.0).id(), __LINE__);
    sites.emplace_back(g.spawn(sp::SpawnOptions{}, park).id(), __LINE__);
    sites.emplace_back(g.spawn(sp::SpawnOptions{.name = "opt"}, park, 1, 2, 3, 4).id(), __LINE__);
    // Four or more arguments without options: no site rather than a wrong one.
    unknown = g.spawn(park, 1, 2, 3, 4).id();
    std::ostringstream os;
    sp::dump_fibers(os);
    dump = os.str();
    g.cancel();
    g.wait();
  });
  INFO(dump);
  for (const auto& [id, line] : sites) {
    CHECK(dumped_site(dump, id) == std::string(__FILE__) + ":" + std::to_string(line));
  }
  CHECK(dumped_site(dump, unknown) == ":0");
}

namespace {
// A result whose move constructor throws while `armed`.
struct MoveThrows {
  static inline std::atomic<bool> armed{false};
  int v;
  explicit MoveThrows(int x) : v(x) {}
  MoveThrows(MoveThrows&& o) : v(o.v) {
    if (armed) throw Boom("moved");
  }
};
}  // namespace

// A child's value is built where its Task keeps it: no move runs after the
// child's function returned, outside the wrapper that reports a child's
// failure to the group. Before, the Task moved the returned value into
// place there: a move that threw failed the Task, but the group never
// heard of it (its wait() returned normally, its siblings ran on).
TEST_CASE("a child's value is built in place: no move of it runs outside the child's function",
          "[task_group]") {
  const unsigned workers = SPINDLE_TEST_FEW_WORKERS();
  run_checked(workers, [] {
    MoveThrows::armed = true;
    sp::TaskGroup g;
    auto t = g.spawn([] { return MoveThrows(7); });
    auto u = sp::spawn([](int x) { return MoveThrows(x); }, 8);
    g.wait();
    FIBER_CHECK(wait_until([&] { return u.done(); }));
    MoveThrows::armed = false;  // join() moves the value out to its caller
    FIBER_CHECK(t.join().v == 7);
    FIBER_CHECK(u.join().v == 8);
  });
}
