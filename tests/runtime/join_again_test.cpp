// join_again_test.cpp: joining a Task a second time (issue #15). A copyable
// result comes back the same every time, through join() and through the
// combinators; a move-only result is moved out once and then raises
// AlreadyJoined, never a moved-from value; an exception is rethrown again.
#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <spindle/sync/event.hpp>

#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;

namespace {
// Long enough that a moved-from std::string is visibly empty (no SSO).
const std::string kLong = "a result long enough to live on the heap, not in the SSO buffer";
}  // namespace

TEST_CASE("a copyable result: every join returns the same value", "[join]") {
  run_checked(SPINDLE_TEST_WORKERS(), [] {
    auto t = sp::spawn([] { return kLong; });
    FIBER_CHECK(t.join() == kLong);
    FIBER_CHECK(t.join() == kLong);
    FIBER_CHECK(t.join() == kLong);
  });
}

TEST_CASE("a copyable result: gather and gather_settled after join see it again", "[join]") {
  run_checked(SPINDLE_TEST_WORKERS(), [] {
    auto a = sp::spawn([] { return kLong; });
    auto b = sp::spawn([] { return 2; });
    FIBER_CHECK(a.join() == kLong);
    auto [x, y] = sp::gather(a, b);
    FIBER_CHECK(x == kLong);
    FIBER_CHECK(y == 2);
    auto [sa, sb] = sp::gather_settled(a, b);
    FIBER_CHECK(sa.ok());
    FIBER_CHECK(sa.value() == kLong);
    FIBER_CHECK(sb.value() == 2);
    std::vector<sp::Task<std::string>> v;
    v.push_back(std::move(a));
    FIBER_CHECK(sp::gather(v).at(0) == kLong);
    FIBER_CHECK(sp::gather(v).at(0) == kLong);
    FIBER_CHECK(sp::gather_settled(v).at(0).value() == kLong);
    FIBER_CHECK(v[0].join() == kLong);
  });
}

TEST_CASE("std::move(task).join() moves the value out; a later join raises", "[join]") {
  run_checked(SPINDLE_TEST_WORKERS(), [] {
    auto t = sp::spawn([] { return kLong; });
    FIBER_CHECK(std::move(t).join() == kLong);
    bool raised = false;
    try {
      (void)t.join();
    } catch (const sp::AlreadyJoined& e) {
      raised = std::string(e.what()).find("already taken") != std::string::npos;
    }
    FIBER_CHECK(raised);
  });
}

TEST_CASE("a move-only result: the second join raises AlreadyJoined", "[join]") {
  run_checked(SPINDLE_TEST_WORKERS(), [] {
    auto t = sp::spawn([] { return std::make_unique<int>(7); });
    auto p = t.join();
    FIBER_CHECK(p != nullptr);
    FIBER_CHECK(*p == 7);
    bool raised = false;
    try {
      (void)t.join();
    } catch (const sp::AlreadyJoined&) {
      raised = true;
    }
    FIBER_CHECK(raised);
  });
}

TEST_CASE("combinators over a joined move-only task raise or settle as AlreadyJoined",
          "[join][gather]") {
  run_checked(SPINDLE_TEST_WORKERS(), [] {
    auto joined = sp::spawn([] { return std::make_unique<int>(1); });
    auto fresh = sp::spawn([] { return std::make_unique<int>(2); });
    FIBER_CHECK(*joined.join() == 1);

    bool raised = false;
    try {
      (void)sp::gather(fresh, joined);
    } catch (const sp::AlreadyJoined&) {
      raised = true;
    }
    FIBER_CHECK(raised);
    // gather checked before it took anything: `fresh` still has its value.
    auto [s_fresh, s_joined] = sp::gather_settled(fresh, joined);
    FIBER_CHECK(!s_joined.ok());
    bool settled_as_already_joined = false;
    try {
      std::rethrow_exception(s_joined.error());
    } catch (const sp::AlreadyJoined&) {
      settled_as_already_joined = true;
    } catch (...) {
    }
    FIBER_CHECK(settled_as_already_joined);
    FIBER_CHECK(s_fresh.ok());
    FIBER_CHECK(*s_fresh.value() == 2);

    std::vector<sp::Task<std::unique_ptr<int>>> v;
    v.push_back(std::move(fresh));  // its value was taken by gather_settled
    raised = false;
    try {
      (void)sp::gather(v);
    } catch (const sp::AlreadyJoined&) {
      raised = true;
    }
    FIBER_CHECK(raised);
  });
}

TEST_CASE("temporaries given to gather are moved out, move-only or not", "[join][gather]") {
  run_checked(SPINDLE_TEST_WORKERS(), [] {
    auto [p, s] = sp::gather(sp::spawn([] { return std::make_unique<int>(3); }),
                             sp::spawn([] { return kLong; }));
    FIBER_CHECK(*p == 3);
    FIBER_CHECK(s == kLong);
  });
}

TEST_CASE("a failed task rethrows the same exception on every join", "[join]") {
  run_checked(SPINDLE_TEST_WORKERS(), [] {
    auto t = sp::spawn([]() -> std::string { throw std::runtime_error("boom"); });
    for (int i = 0; i < 3; ++i) {
      bool raised = false;
      try {
        (void)t.join();
      } catch (const std::runtime_error& e) {
        raised = std::string(e.what()) == "boom";
      }
      FIBER_CHECK(raised);
    }
  });
}

// A fiber that joins its own Task would wait for ever, and a live timer or
// socket elsewhere keeps the deadlock report quiet: it raises instead
// (asyncio: "Task cannot await on itself"). Before, the join below hung
// while the ticker ran; the with_timeout bounds that.
TEST_CASE("a fiber joining its own Task raises logic_error", "[join]") {
  run_checked(SPINDLE_TEST_WORKERS(), [] {
    sp::Task<int>* self = nullptr;
    sp::Event ready;
    std::atomic<bool> stop{false};
    auto ticker = sp::spawn([&] {
      while (!stop.load()) sp::sleep_for(std::chrono::milliseconds(5));
    });
    auto t = sp::spawn([&]() -> int {
      ready.wait();
      try {
        (void)sp::with_timeout(std::chrono::seconds(10), [&] { return self->join(); });
      } catch (const std::logic_error&) {
        return 1;
      } catch (const sp::TimedOut&) {
        return 2;
      }
      return 3;
    });
    self = &t;
    ready.set();
    FIBER_CHECK(t.join() == 1);
    stop = true;
    ticker.join();
  });
}
