// offload_test.cpp: spindle::offload and spindle::blocking (offload.hpp):
// values, exceptions, void and move-only results, where jobs run,
// cancellation while waiting (and racing completion), many concurrent
// calls, growth of the blocking pool, plain-thread callers, nested calls and
// the deadlock detector's view of a pending job.
#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <sched.h>
#include <sys/resource.h>

#include <cerrno>

#include <spindle/runtime/offload.hpp>

#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;

namespace {

// Not derived from std::exception: offload must rethrow the very object.
struct CustomError {
  int code;
};

// Counts live instances, so a test can see that a dropped result is freed.
struct Tracked {
  static std::atomic<int>& live() {
    static std::atomic<int> n{0};
    return n;
  }
  explicit Tracked(int v) : value(v) { live().fetch_add(1, std::memory_order_relaxed); }
  Tracked(const Tracked& o) : value(o.value) { live().fetch_add(1, std::memory_order_relaxed); }
  ~Tracked() { live().fetch_sub(1, std::memory_order_relaxed); }
  int value;
};

}  // namespace

// First in this file on purpose: it needs a process whose blocking pool has
// no thread yet, so that blocking() from inside an offload job starts one.
// A thread inherits its creator's priority, and the offload thread runs at
// SCHED_IDLE and nice 19, which an unprivileged thread cannot undo: the
// pools' starter thread starts that blocking thread instead
// (runtime/src/thread_starter.hpp), so it runs at the process's priority.
TEST_CASE("a blocking thread started from an offload job does not inherit its low priority",
          "[offload]") {
  errno = 0;
  const int base = getpriority(PRIO_PROCESS, static_cast<id_t>(os_tid()));
  REQUIRE(errno == 0);
  REQUIRE(base < 19);
  const int base_policy = sched_getscheduler(0);
  REQUIRE(base_policy != SCHED_IDLE);
  run_checked(1, [&] {
    struct Seen {
      int outer_policy, inner_nice, inner_policy;
    };
    const Seen seen = sp::offload([] {
      const int outer = sched_getscheduler(0);
      return sp::blocking([outer] {
        return Seen{outer, getpriority(PRIO_PROCESS, static_cast<id_t>(os_tid())), sched_getscheduler(0)};
      });
    });
    CHECK(seen.outer_policy == SCHED_IDLE);  // offload_low_priority, the default
    CHECK(seen.inner_nice == base);
    CHECK(seen.inner_policy == base_policy);
  });
}

TEST_CASE("offload returns the job's value and rethrows its exception", "[offload]") {
  const unsigned workers = GENERATE(1u, 2u, 4u);
  run_checked(workers, [] {
    CHECK(sp::offload([] { return 6 * 7; }) == 42);
    CHECK(sp::offload([s = std::string("spindle")] { return s + "!"; }) == "spindle!");
    CHECK_THROWS_AS(sp::offload([]() -> int { throw std::runtime_error("boom"); }),
                    std::runtime_error);
    try {
      sp::offload([]() -> int { throw CustomError{7}; });
      FAIL("no exception");
    } catch (const CustomError& e) {
      CHECK(e.code == 7);
    }
    CHECK(sp::blocking([] { return 5; }) == 5);
    CHECK_THROWS_AS(sp::blocking([] { throw CustomError{1}; }), CustomError);
  });
}

TEST_CASE("offload runs void jobs, and their writes are visible after it returns",
          "[offload]") {
  const unsigned workers = GENERATE(1u, 2u, 4u);
  run_checked(workers, [] {
    // Plain (non-atomic) data: TSan checks the happens-before edge from the
    // job's writes to the caller's reads that offload.hpp promises.
    std::vector<int> data(1000, 0);
    sp::offload([&data] {
      for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<int>(i);
    });
    long sum = 0;
    for (int v : data) sum += v;
    CHECK(sum == 999L * 1000 / 2);
    sp::blocking([&data] { data[0] = -1; });
    CHECK(data[0] == -1);
  });
}

TEST_CASE("offload accepts move-only jobs and results, and lvalue references", "[offload]") {
  const unsigned workers = GENERATE(1u, 2u, 4u);
  run_checked(workers, [] {
    std::unique_ptr<int> p = sp::offload([] { return std::make_unique<int>(11); });
    REQUIRE(p != nullptr);
    CHECK(*p == 11);
    // A move-only callable.
    auto q = sp::offload([r = std::make_unique<int>(12)]() mutable { return std::move(r); });
    CHECK(*q == 12);
    int x = 0;
    int& ref = sp::offload([&x]() -> int& { return x; });
    CHECK(&ref == &x);
  });
}

// The closure and what it captured are gone when offload returns, on every
// way out: a value, void, an exception. Before, the pool thread woke the
// caller and then dropped its reference to the job, usually last, so a
// captured shared_ptr (or lock guard, or permit) was released after offload
// had returned, concurrently with the caller (99% of calls in a review's
// probe; 200 rounds make a pass of the old code all but impossible, while
// the new code passes every round).
TEST_CASE("offload destroys the closure's captures before it returns", "[offload]") {
  const unsigned workers = GENERATE(1u, 2u);
  run_checked(workers, [] {
    int still_held = 0;
    for (int i = 0; i < 200; ++i) {
      auto token = std::make_shared<int>(i);
      const std::weak_ptr<int> w = token;
      switch (i % 4) {
        case 0:
          FIBER_CHECK(sp::offload([t = std::move(token)] { return *t; }) == i);
          break;
        case 1:
          sp::blocking([t = std::move(token)] { (void)t; });
          break;
        case 2:
          try {
            sp::offload([t = std::move(token)]() -> int { throw CustomError{*t}; });
          } catch (const CustomError& e) {
            FIBER_CHECK(e.code == i);
            if (!w.expired()) ++still_held;  // checked inside the handler too
          }
          break;
        default:
          FIBER_CHECK(*sp::blocking([t = std::move(token)] { return std::make_unique<int>(*t); }) == i);
          break;
      }
      if (!w.expired()) ++still_held;
    }
    FIBER_CHECK(still_held == 0);
  });
}

TEST_CASE("worker threads never run the job", "[offload]") {
  const unsigned workers = GENERATE(1u, 2u, 4u);
  run_checked(workers, [] {
    std::vector<sp::Task<void>> tasks;
    for (int i = 0; i < 32; ++i) {
      tasks.push_back(sp::spawn([i] {
        const long caller = os_tid();
        struct Where {
          int worker;
          bool in_fiber;
          long tid;
        };
        auto job = [] { return Where{sp::this_fiber::worker_index(), sp::this_fiber::in_fiber(), os_tid()}; };
        const Where w = i % 2 == 0 ? sp::offload(job) : sp::blocking(job);
        FIBER_CHECK(w.worker == -1);
        FIBER_CHECK(!w.in_fiber);
        FIBER_CHECK(w.tid != caller);
        FIBER_CHECK(w.tid != os_tid());  // the caller may have migrated
      }));
    }
    for (auto& t : tasks) t.join();
  });
}

TEST_CASE("a fiber cancelled while waiting raises Cancelled at once; the job completes",
          "[offload][cancel]") {
  const unsigned workers = GENERATE(1u, 2u, 4u);
  const bool use_blocking = GENERATE(false, true);
  run_checked(workers, [use_blocking] {
    // Shared with the job by value: the job outlives the cancelled caller.
    struct State {
      std::atomic<bool> started{false};
      std::atomic<bool> release{false};
      std::atomic<int> completions{0};
    };
    auto st = std::make_shared<State>();
    const int live0 = Tracked::live().load();
    auto job = [st] {
      st->started.store(true);
      while (!st->release.load()) std::this_thread::sleep_for(1ms);
      st->completions.fetch_add(1);
      return Tracked(99);
    };
    auto task = sp::spawn([job, use_blocking] {
      return use_blocking ? sp::blocking(job).value : sp::offload(job).value;
    });
    REQUIRE(wait_until([&] { return st->started.load(); }, slack(10s)));
    const auto t0 = Clock::now();
    task.cancel();
    CHECK_THROWS_AS(task.join(), sp::Cancelled);
    CHECK(Clock::now() - t0 < slack(2s));  // did not wait for the job
    CHECK(st->completions.load() == 0);     // the job is still running
    st->release.store(true);
    CHECK(wait_until([&] { return st->completions.load() == 1; }, slack(10s)));
    // The dropped result is destroyed along with the job.
    CHECK(wait_until([&] { return Tracked::live().load() == live0; }, slack(10s)));
  });
}

TEST_CASE("a fiber already cancelled raises Cancelled from offload", "[offload][cancel]") {
  const unsigned workers = GENERATE(1u, 2u);
  run_checked(workers, [] {
    std::atomic<bool> entered{false}, ran{false};
    auto task = sp::spawn([&] {
      entered.store(true);
      // Spin without suspending (every suspension is a cancellation point),
      // so that offload is the first one the cancelled fiber reaches.
      while (!sp::cancellation_requested()) std::this_thread::yield();
      return sp::offload([&] {
        ran.store(true);
        return 1;
      });
    });
    // A plain thread cancels, so the main fiber can suspend in join() and
    // leave the worker to the spinning task even with one worker.
    std::thread canceller([&] {
      while (!entered.load()) std::this_thread::yield();
      task.cancel();
    });
    CHECK_THROWS_AS(task.join(), sp::Cancelled);
    canceller.join();
    CHECK(!ran.load());  // never queued (a queued job would run at once)
    // The pool's bookkeeping survived the withdrawn job.
    CHECK(sp::offload([] { return 2; }) == 2);
  });
}

// JobState: what a test job shares with its test, by shared_ptr: the job
// may outlive its caller.
struct JobState {
  std::atomic<bool> started{false};
  std::atomic<bool> release{false};
  std::atomic<bool> done{false};
};

// timed_out_while_running: offloads body(state) inside with_timeout(d) until
// the deadline ends the wait of a job that a pool thread had already taken;
// returns that job's state. A job still queued at the deadline is dropped,
// not run: its caller withdraws it (the pool counts it) and its closure is
// gone at once; so is one whose deadline passed before it was queued.
// That is checked for every such attempt, and the next one
// gets twice the time, up to `most`, so a slow thread start only costs a
// retry.
template <class Body>
std::shared_ptr<JobState> timed_out_while_running(Body body, Clock::duration most) {
  for (Clock::duration d = 10ms; d <= most; d *= 2) {
    auto st = std::make_shared<JobState>();
    const auto withdrawn0 = sp::detail::offload_pool_stats(sp::detail::PoolKind::cpu).withdrawn;
    CHECK_THROWS_AS(sp::with_timeout(d,
                                     [st, body] {
                                       return sp::offload([st, body] { return body(*st); });
                                     }),
                    sp::TimedOut);
    // Not withdrawn: a pool thread popped it (its job still holds the
    // closure, or the body has started), or it was never queued: the
    // deadline passed before the wait published (a loaded machine can take
    // 10 ms to get there; then nothing holds the closure). use_count is
    // read before started: a job that ends in between has set started.
    const bool withdrawn = sp::detail::offload_pool_stats(sp::detail::PoolKind::cpu).withdrawn != withdrawn0;
    const bool held = st.use_count() > 1;
    if (!withdrawn && (held || st->started.load())) return st;  // a pool thread had it
    CHECK(st.use_count() == 1);  // the closure is destroyed, it never runs
    CHECK(!st->started.load());
  }
  FAIL("no job started within the deadlines tried");
  return nullptr;
}

TEST_CASE("a deadline scope around offload raises TimedOut; a started job completes",
          "[offload][cancel]") {
  run_checked(2, [] {
    sp::offload([] {});  // an idle pool thread is ready for the job below
    auto st = timed_out_while_running(
        [](JobState& s) {
          s.started.store(true);
          while (!s.release.load()) std::this_thread::sleep_for(1ms);
          s.done.store(true);
          return 1;
        },
        slack(2s));
    REQUIRE(st != nullptr);
    REQUIRE(wait_until([&] { return st->started.load(); }, slack(10s)));
    CHECK(!st->done.load());  // held until released
    st->release.store(true);
    CHECK(wait_until([&] { return st->done.load(); }, slack(10s)));
  });
}

// The job still completes its Waiter after the caller gave up on it; by then
// the caller's fiber is in another wait, whose state lives in the same
// per-fiber cell (suspend.hpp). The generation in the cell must make that
// late completion a no-op: a sleep is never early.
TEST_CASE("a job finishing after its caller moved on does not end the caller's next wait",
          "[offload][cancel]") {
  run_checked(1, [] {
    sp::offload([] {});  // an idle pool thread is ready for the job below
    // Scaled under sanitizers: a pool thread slow to take the job then
    // gets deadlines up to 320 ms before the test gives up.
    const Clock::duration job = slack(100ms);
    auto st = timed_out_while_running(
        [job](JobState& s) {
          s.started.store(true);
          std::this_thread::sleep_for(job);
          s.done.store(true);
          return 1;
        },
        job * 4 / 5);  // the deadline ends the wait before the job's end
    REQUIRE(st != nullptr);
    const auto t0 = Clock::now();
    sp::sleep_for(3 * job);  // the job completes within about `job` of it
    CHECK(Clock::now() - t0 >= 3 * job);
    CHECK(wait_until([&] { return st->done.load(); }, slack(10s)));
  });
}

TEST_CASE("a shielded offload is not interrupted by a cancel", "[offload][cancel]") {
  run_checked(2, [] {
    std::atomic<bool> started{false};
    std::atomic<int> got{0};
    auto task = sp::spawn([&] {
      got.store(sp::shield([&] {
        return sp::offload([&] {
          started.store(true);
          std::this_thread::sleep_for(50ms);
          return 7;
        });
      }));
      sp::yield();  // the pending cancel surfaces here
      got.store(-1);
    });
    REQUIRE(wait_until([&] { return started.load(); }, slack(10s)));
    task.cancel();
    CHECK_THROWS_AS(task.join(), sp::Cancelled);
    CHECK(got.load() == 7);
  });
}

TEST_CASE("cancellation racing completion: every caller gets a value or Cancelled",
          "[offload][cancel][stress]") {
  const unsigned workers = GENERATE(1u, 2u, 4u);
  const std::size_t rounds = scaled(300);
  run_checked(workers, [rounds, workers] {
    const int live0 = Tracked::live().load();
    // outcome[i]: 1 delivered, 2 Cancelled (in the body or before it ran).
    std::vector<std::atomic<int>> outcome(rounds);
    std::vector<char> was_cancelled(rounds, 0);
    long delivered = 0, cancelled = 0;
    Xorshift rng(workers);
    std::vector<sp::Task<void>> tasks;
    for (std::size_t i = 0; i < rounds; ++i) {
      const std::uint64_t spin_for = rng() % 20000;
      tasks.push_back(sp::spawn([&, i, spin_for] {
        try {
          auto job = [i, spin_for] {
            spin(spin_for);
            return Tracked(static_cast<int>(i));
          };
          const Tracked r = i % 3 == 0 ? sp::blocking(job) : sp::offload(job);
          FIBER_CHECK(r.value == static_cast<int>(i));
          outcome[i].store(1);
        } catch (const sp::Cancelled&) {
          outcome[i].store(2);
        }
      }));
      if (rng() % 4 == 0) sp::yield();
      if (i % 2 == 1) {
        const std::size_t victim = i - (rng() % 2);
        was_cancelled[victim] = 1;
        tasks[victim].cancel();
      }
    }
    for (std::size_t i = 0; i < rounds; ++i) {
      try {
        tasks[i].join();
      } catch (const sp::Cancelled&) {
        outcome[i].store(2);  // cancelled before the body caught it
      }
      if (outcome[i].load() == 1) ++delivered;
      if (outcome[i].load() == 2) ++cancelled;
      // Only a task that was cancelled may end Cancelled; every task ends
      // one way or the other.
      if (!was_cancelled[i]) FIBER_CHECK(outcome[i].load() == 1);
      FIBER_CHECK(outcome[i].load() != 0);
    }
    INFO("delivered " << delivered << ", cancelled " << cancelled);
    // Every job, delivered or dropped, is freed once the pools are done.
    CHECK(wait_until([&] { return Tracked::live().load() == live0; }, slack(20s)));
  });
}

TEST_CASE("many concurrent offloads all complete", "[offload]") {
  const unsigned workers = GENERATE(1u, 2u, 4u);
  run_checked(workers, [] {
    constexpr long kCalls = 1000;
    std::vector<sp::Task<long>> tasks;
    tasks.reserve(kCalls);
    for (long i = 0; i < kCalls; ++i) {
      tasks.push_back(sp::spawn([i] { return sp::offload([i] { return i * i; }); }));
    }
    long sum = 0;
    for (auto& t : tasks) sum += t.join();
    CHECK(sum == (kCalls - 1) * kCalls * (2 * kCalls - 1) / 6);
  });
}

TEST_CASE("the blocking pool grows beyond the offload pool for blocking calls", "[offload]") {
  // kCalls blocking jobs, each held until all kCalls have started: they can
  // only all finish in time if the pool runs kCalls threads at once (more
  // than the offload pool's hardware-thread count, well under the default
  // cap of 64). A pool that stops growing early leaves the rest queued
  // behind jobs that wait for them, until the deadline lets everyone go.
  constexpr int kCalls = 16;
  std::atomic<int> started{0}, saw_all{0};
  run_checked(2, [&] {
    const auto deadline = Clock::now() + slack(5s);
    std::vector<sp::Task<void>> tasks;
    for (int i = 0; i < kCalls; ++i) {
      tasks.push_back(sp::spawn([&] {
        sp::blocking([&] {
          started.fetch_add(1);
          while (started.load() < kCalls && Clock::now() < deadline) {
            std::this_thread::sleep_for(100us);
          }
          if (started.load() >= kCalls) saw_all.fetch_add(1);
        });
      }));
    }
    for (auto& t : tasks) t.join();
  });
  CHECK(started.load() == kCalls);
  CHECK(saw_all.load() == kCalls);  // all kCalls were running at one time
}

TEST_CASE("the blocking pool stops at its default cap of 64 threads", "[offload]") {
  // 70 jobs held until released: exactly 64 start, the rest wait for a
  // free thread. (Whether a 65th could start is a negative: it is given
  // 50 ms, which can only hide a broken cap, never fail a good one.)
  constexpr int kCap = 64, kCalls = 70;
  std::atomic<int> started{0}, inside{0}, peak{0};
  std::atomic<bool> release{false};
  run_checked(2, [&] {
    std::vector<sp::Task<void>> tasks;
    for (int i = 0; i < kCalls; ++i) {
      tasks.push_back(sp::spawn([&] {
        sp::blocking([&] {
          started.fetch_add(1);
          const int n = inside.fetch_add(1) + 1;
          int p = peak.load();
          while (n > p && !peak.compare_exchange_weak(p, n)) {
          }
          while (!release.load()) std::this_thread::sleep_for(200us);
          inside.fetch_sub(1);
        });
      }));
    }
    CHECK(wait_until([&] { return started.load() >= kCap; }, slack(10s)));
    sp::sleep_for(50ms);
    CHECK(started.load() == kCap);
    release = true;
    for (auto& t : tasks) t.join();
  });
  CHECK(started.load() == kCalls);
  CHECK(peak.load() == kCap);
}

TEST_CASE("offload threads run at nice 19 by default", "[offload]") {
  // (Blocking threads should keep the process's priority; see the first
  // test case of this file for the case where they do not.)
  run_checked(1, [&] {
    auto nice_of_thread = [] { return getpriority(PRIO_PROCESS, static_cast<id_t>(os_tid())); };
    CHECK(sp::offload(nice_of_thread) == 19);
  });
}

TEST_CASE("offload from a plain thread runs the job on the pool and blocks the thread",
          "[offload]") {
  // No runtime at all.
  const long me = os_tid();
  CHECK(sp::offload([] { return os_tid(); }) != me);
  CHECK(sp::blocking([] { return os_tid(); }) != me);
  CHECK_THROWS_AS(sp::offload([] { throw CustomError{3}; }), CustomError);
  // Plain threads next to a running runtime.
  run_checked(2, [] {
    std::atomic<long> sum{0};
    std::vector<std::thread> threads;
    for (long t = 0; t < 4; ++t) {
      threads.emplace_back([&sum, t] { sum.fetch_add(sp::offload([t] { return t + 1; })); });
    }
    const long mine = sp::offload([] { return 100L; });
    for (auto& th : threads) th.join();  // brief: the jobs are tiny
    CHECK(sum.load() + mine == 110);
  });
}

TEST_CASE("an offload job that offloads runs the inner job inline", "[offload]") {
  run_checked(2, [] {
    const auto [outer, inner, blocking_tid] = sp::offload([] {
      const long o = os_tid();
      const long i = sp::offload([] { return os_tid(); });
      const long b = sp::blocking([] { return os_tid(); });
      return std::tuple{o, i, b};
    });
    CHECK(inner == outer);         // same pool: inline, cannot deadlock the pool
    CHECK(blocking_tid != outer);  // the other pool: handed over
  });
}

TEST_CASE("a fiber waiting on offload is not reported as deadlocked", "[offload]") {
  sp::RuntimeOptions o = options(1);
  o.deadlock_grace = 20ms;
  // Every worker parks, no timer or I/O is pending, and the main fiber waits:
  // only the pending job (ExternalWork) tells the detector to hold off.
  CHECK_NOTHROW(run_checked(o, [] {
    sp::blocking([] { std::this_thread::sleep_for(300ms); });
    sp::offload([] { std::this_thread::sleep_for(200ms); });
  }));
}
