// offload_pools_test.cpp: who owns the offload and blocking pools, and what
// becomes of a queued job nobody waits for any more (offload.hpp,
// runtime/src/offload.cpp):
//  - each Runtime's pools are sized by its own options, whether two
//    runtimes run one after the other or side by side;
//  - a job still queued when its runtime shuts down is not run, and its
//    caller raises Cancelled (nothing waits forever, nothing is lost
//    silently);
//  - a caller cancelled while its job is queued takes the job off the queue:
//    the job never runs and its closure is destroyed before the caller's
//    fiber ends, so callers cancelled in a loop do not pile up jobs.
// Every pool thread here is held by a JobGate, so "queued" and "running"
// are states the test waits for (through offload_pool_stats), not guesses.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <latch>
#include <memory>
#include <mutex>
#include <string>
#include <algorithm>
#include <thread>
#include <utility>
#include <vector>

#include <spindle/runtime/offload.hpp>

#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;
using sp::detail::PoolKind;

namespace {

// JobGate: holds the pool jobs that enter it (on pool threads, so with a
// plain mutex) until open(); counts how many entered and the most that were
// inside at once. A job gives up after a generous bound and says so
// (expired()): a test whose gate nobody opens (the shutdown tests, if the
// fix they check were gone) then fails instead of hanging in shutdown.
class JobGate {
 public:
  void enter() {
    const int now = inside_.fetch_add(1) + 1;
    int p = peak_.load();
    while (now > p && !peak_.compare_exchange_weak(p, now)) {
    }
    started_.fetch_add(1);
    {
      std::unique_lock lk(mu_);
      if (!cv_.wait_for(lk, slack(30s), [&] { return open_; })) expired_.store(true);
    }
    inside_.fetch_sub(1);
  }
  bool expired() const { return expired_.load(); }
  void open() {
    {
      std::lock_guard lk(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }
  int started() const { return started_.load(); }
  int peak() const { return peak_.load(); }

 private:
  std::atomic<int> inside_{0}, peak_{0}, started_{0};
  std::atomic<bool> expired_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;  // guarded by mu_
};

// OpenOnExit: opens a gate however the scope ends, so a failed assertion
// does not leave shutdown joining a pool thread that waits forever.
struct OpenOnExit {
  std::shared_ptr<JobGate> gate;
  ~OpenOnExit() { gate->open(); }
};

template <class F>
decltype(auto) call_on(PoolKind kind, F&& f, sp::source_location where = sp::source_location::current()) {
  return sp::detail::offload_on(kind, std::forward<F>(f), where);
}

sp::detail::OffloadPoolStats pool(PoolKind kind) { return sp::detail::offload_pool_stats(kind); }

const char* name(PoolKind kind) { return kind == PoolKind::cpu ? "offload" : "blocking"; }

// What measure_peak saw of one pool.
struct Peak {
  bool saturated = false;  // `bound` jobs started, the rest queued
  int started = 0;         // jobs started at that point
  sp::detail::OffloadPoolStats stats{};  // the pool at that point
  int peak = 0;            // most jobs inside the gate at once, all told
  int completed = 0;
};

// measure_peak: from a fiber, offloads bound + 3 gated jobs to the calling
// runtime's pool `kind`, waits until `bound` of them have started and the
// others are queued, and records the pool there. `both` (if any) is a latch
// that two runtimes count down at that point, so each holds its pool full
// while the other fills its own. Then opens the gate and joins them all.
// No Catch assertions here: it also runs on two runtimes at once.
Peak measure_peak(PoolKind kind, int bound, std::latch* both = nullptr) {
  Peak r;
  auto gate = std::make_shared<JobGate>();
  OpenOnExit opener{gate};
  const int calls = bound + 3;
  std::atomic<int> completed{0};
  std::vector<sp::Task<void>> tasks;
  for (int i = 0; i < calls; ++i) {
    tasks.push_back(sp::spawn([kind, gate, &completed] {
      call_on(kind, [gate] { gate->enter(); });
      completed.fetch_add(1);
    }));
  }
  r.saturated = wait_until([&] {
    return gate->started() == bound &&
           pool(kind).queued == static_cast<std::size_t>(calls - bound);
  }, slack(20s));
  r.started = gate->started();
  r.stats = pool(kind);
  if (both != nullptr) {
    both->count_down();
    wait_until([&] { return both->try_wait(); }, slack(20s));
  }
  gate->open();
  for (auto& t : tasks) t.join();
  r.peak = gate->peak();
  r.completed = completed.load();
  return r;
}

// check_peak: what the two-runtime tests assert of one measure_peak.
void check_peak(const Peak& p, PoolKind kind, int bound) {
  INFO(name(kind) << " pool, bound " << bound);
  CHECK(p.saturated);
  CHECK(p.started == bound);
  CHECK(p.stats.bound == static_cast<unsigned>(bound));
  CHECK(p.stats.threads == static_cast<unsigned>(bound));
  // Every thread holds a gated job: none is free to start one more.
  CHECK(p.stats.running == static_cast<unsigned>(bound));
  CHECK(p.peak == bound);
  CHECK(p.completed == bound + 3);
}

sp::RuntimeOptions pool_options(unsigned workers, unsigned cpu, unsigned blocking) {
  sp::RuntimeOptions o = options(workers);
  o.offload_threads = cpu;
  o.blocking_threads = blocking;
  o.offload_low_priority = false;
  return o;
}

// Probe: counts its destruction once, in whichever move of it is last: the
// closure of a job that is destroyed, not merely moved.
struct Probe {
  std::atomic<long>* destroyed;
  bool owner = true;
  explicit Probe(std::atomic<long>* d) : destroyed(d) {}
  Probe(Probe&& o) noexcept : destroyed(o.destroyed), owner(std::exchange(o.owner, false)) {}
  Probe(const Probe&) = delete;
  ~Probe() {
    if (owner) destroyed->fetch_add(1);
  }
};

// shutdown_reporting: shuts rt down while its running jobs hold their
// gates, which open once every phrase is on stderr (or after a bound, so
// a missing report fails the caller's check instead of hanging). True
// when all were reported.
bool shutdown_reporting(sp::Runtime& rt, StderrCapture& capture, const std::vector<std::string>& phrases,
                        const std::vector<std::shared_ptr<JobGate>>& gates) {
  bool reported = false;
  std::thread opener_thread([&] {
    reported = wait_until([&] {
      const std::string t = capture.peek();
      return std::all_of(phrases.begin(), phrases.end(),
                         [&](const std::string& p) { return t.find(p) != std::string::npos; });
    }, slack(20s));
    for (const auto& g : gates) g->open();
  });
  JoinOnExit join_opener{opener_thread};
  rt.shutdown();
  opener_thread.join();
  return reported;
}

}  // namespace

TEST_CASE("two runtimes one after the other each get pools of their own size",
          "[offload][pools]") {
  // The first runtime has the smaller offload pool and the larger blocking
  // pool, so neither runtime's sizes can pass for the other's.
  Peak a_cpu, a_blk, b_cpu, b_blk;
  run_checked(pool_options(2, 2, 4), [&] {
    a_cpu = measure_peak(PoolKind::cpu, 2);
    a_blk = measure_peak(PoolKind::blocking, 4);
  });
  run_checked(pool_options(2, 3, 2), [&] {
    b_cpu = measure_peak(PoolKind::cpu, 3);
    b_blk = measure_peak(PoolKind::blocking, 2);
  });
  check_peak(a_cpu, PoolKind::cpu, 2);
  check_peak(a_blk, PoolKind::blocking, 4);
  check_peak(b_cpu, PoolKind::cpu, 3);
  check_peak(b_blk, PoolKind::blocking, 2);
}

TEST_CASE("two runtimes side by side each get pools of their own size", "[offload][pools]") {
  const PoolKind kind = GENERATE(PoolKind::cpu, PoolKind::blocking);
  // Each runtime holds its pool full until the other's is full too.
  std::latch both(2);
  Peak a, b;
  std::thread ta([&] {
    sp::Runtime rt(pool_options(2, 2, 2));
    a = rt.block_on([&] { return measure_peak(kind, 2, &both); });
  });
  std::thread tb([&] {
    sp::Runtime rt(pool_options(2, 3, 3));
    b = rt.block_on([&] { return measure_peak(kind, 3, &both); });
  });
  ta.join();
  tb.join();
  check_peak(a, kind, 2);
  check_peak(b, kind, 3);
}

TEST_CASE("a plain thread outside any runtime uses pools of the default size",
          "[offload][pools]") {
  const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  CHECK(sp::offload([] { return 1; }) == 1);
  CHECK(pool(PoolKind::cpu).bound == hw);
  CHECK(pool(PoolKind::blocking).bound == 64);
  // A runtime with other sizes changes nothing for plain threads.
  run_checked(pool_options(1, 1, 1), [] {
    CHECK(pool(PoolKind::cpu).bound == 1);
    std::thread t([] { sp::offload([] {}); });
    t.join();
  });
  CHECK(pool(PoolKind::cpu).bound == hw);
}

TEST_CASE("a cancelled caller's queued job is dropped without running; a running one completes",
          "[offload][pools][cancel]") {
  const unsigned workers = GENERATE(1u, 2u);
  const PoolKind kind = GENERATE(PoolKind::cpu, PoolKind::blocking);
  constexpr int kQueued = 8;
  std::atomic<int> ran{0};
  run_checked(pool_options(workers, 1, 1), [&] {
    auto gate = std::make_shared<JobGate>();
    OpenOnExit opener{gate};
    std::atomic<int> busy_done{0};
    // Holds the pool's only thread.
    auto busy = sp::spawn([kind, gate, &busy_done] {
      call_on(kind, [gate, &busy_done] {
        gate->enter();
        busy_done.fetch_add(1);
      });
    });
    REQUIRE(wait_until([&] { return gate->started() == 1; }, slack(20s)));

    // Shared with the queued jobs only: each caller copies it into its
    // job's closure, so use_count() - 1 is the number of closures alive.
    auto token = std::make_shared<int>(0);
    std::vector<sp::Task<void>> callers;
    for (int i = 0; i < kQueued; ++i) {
      callers.push_back(sp::spawn([kind, &token, &ran] {
        call_on(kind, [t = token, &ran] { ran.fetch_add(1); });
      }));
    }
    REQUIRE(wait_until([&] { return pool(kind).queued == static_cast<std::size_t>(kQueued); }, slack(20s)));
    CHECK(token.use_count() == 1 + kQueued);
    for (auto& c : callers) c.cancel();
    for (auto& c : callers) CHECK(raises_cancelled([&] { c.join(); }));
    // Each caller destroyed its job before its fiber ended, while the pool
    // thread is still held: nothing had to run for that.
    CHECK(token.use_count() == 1);
    CHECK(pool(kind).queued == 0);
    CHECK(pool(kind).withdrawn == static_cast<std::uint64_t>(kQueued));

    // The running job's caller is cancelled too: it raises at once, and the
    // job runs to completion anyway.
    busy.cancel();
    CHECK(raises_cancelled([&] { busy.join(); }));
    CHECK(busy_done.load() == 0);
    gate->open();
    CHECK(wait_until([&] { return busy_done.load() == 1; }, slack(20s)));
    CHECK(wait_until([&] { return pool(kind).running == 0; }, slack(20s)));
  });
  // The runtime's shutdown joined the pool thread: nothing runs any more.
  CHECK(ran.load() == 0);
}

TEST_CASE("callers cancelled in a loop do not grow the queue", "[offload][pools][cancel][stress]") {
  const unsigned workers = GENERATE(1u, 2u);
  const PoolKind kind = GENERATE(PoolKind::cpu, PoolKind::blocking);
  const std::size_t rounds = scaled(1000);
  constexpr int kBatch = 32;
  std::atomic<long> ran{0}, entered{0}, destroyed{0};
  run_checked(pool_options(workers, 1, 1), [&] {
    auto gate = std::make_shared<JobGate>();
    OpenOnExit opener{gate};
    auto busy = sp::spawn([kind, gate] { call_on(kind, [gate] { gate->enter(); }); });
    REQUIRE(wait_until([&] { return gate->started() == 1; }, slack(20s)));

    long cancelled = 0;
    std::size_t most_queued = 0;
    bool counts_ok = true;
    for (std::size_t r = 0; r < rounds && counts_ok; ++r) {
      std::vector<sp::Task<void>> callers;
      for (int i = 0; i < kBatch; ++i) {
        callers.push_back(sp::spawn([kind, &ran, &entered, &destroyed] {
          entered.fetch_add(1);
          call_on(kind, [p = Probe(&destroyed), &ran] { ran.fetch_add(1); });
        }));
      }
      // Let some of them queue their job and catch others before they do
      // (or before they even start, which makes no job at all): every way
      // out of a cancelled call is exercised.
      if (r % 2 == 0) sp::yield();
      most_queued = std::max(most_queued, pool(kind).queued);
      for (auto& c : callers) c.cancel();
      for (auto& c : callers) {
        if (raises_cancelled([&] { c.join(); })) ++cancelled;
      }
      // Every closure made so far is gone, and none is left queued.
      counts_ok = destroyed.load() == entered.load() && pool(kind).queued == 0;
    }
    CHECK(counts_ok);
    CHECK(cancelled == static_cast<long>(rounds) * kBatch);
    CHECK(destroyed.load() == entered.load());
    CHECK(pool(kind).queued == 0);
    CHECK(most_queued <= static_cast<std::size_t>(kBatch));
    // Some jobs really were queued and withdrawn, not only caught early.
    CHECK(pool(kind).withdrawn > 0);
    gate->open();
    busy.join();
  });
  CHECK(ran.load() == 0);
}

TEST_CASE("a job still queued at shutdown is not run; its shielded caller raises Cancelled, and "
          "later calls too",
          "[offload][pools][shutdown]") {
  sp::RuntimeOptions o = pool_options(2, 1, 1);
  // The shielded caller below ignores shutdown's cancel; this is how long
  // shutdown waits for it before it stops the pools.
  o.shutdown_timeout = 100ms;
  auto gate = std::make_shared<JobGate>();
  std::atomic<int> queued_ran{0}, caller_cancelled{0}, refused{0}, capture_alive{0};
  std::string err;
  std::uint64_t live_after = 1;
  {
    StderrCapture capture;
    {
      sp::Runtime rt(o);
      OpenOnExit opener{gate};  // before rt is destroyed, whatever happens
      const bool queued = rt.block_on([&] {
        // Holds the pool's only thread until the shielded caller is told.
        sp::spawn([gate] { sp::offload([gate] { gate->enter(); }); }).detach();
        if (!wait_until([&] { return gate->started() == 1; }, slack(20s))) return false;
        sp::spawn([gate, &queued_ran, &caller_cancelled, &refused, &capture_alive] {
          auto token = std::make_shared<int>(1);
          const std::weak_ptr<int> w = token;
          sp::shield([&] {
            try {
              sp::offload([&queued_ran, t = std::move(token)] { queued_ran.fetch_add(*t); });
            } catch (const sp::Cancelled&) {
              caller_cancelled.fetch_add(1);
              // The job that never ran took its captures with it first.
              if (!w.expired()) capture_alive.fetch_add(1);
              // The pools are stopped now: a new call is refused at once.
              if (raises_cancelled([] { sp::offload([] {}); })) refused.fetch_add(1);
              gate->open();  // only now may the running job finish
            }
          });
        }).detach();
        return wait_until([&] { return gate->started() == 1 && pool(PoolKind::cpu).queued == 1; }, slack(20s));
      });
      REQUIRE(queued);
      rt.shutdown();
      live_after = rt.stats().live_fibers;
    }
    err = capture.text();
  }
  CHECK(!gate->expired());  // the caller opened it, not the time bound
  CHECK(caller_cancelled.load() == 1);
  CHECK(refused.load() == 1);
  CHECK(queued_ran.load() == 0);
  CHECK(capture_alive.load() == 0);
  CHECK(err.find("1 offload/blocking job(s) still queued were not run") != std::string::npos);
  CHECK(live_after == 0);  // the woken caller finished before the workers stopped
}

TEST_CASE("a job of the other pool waiting on a queued job at shutdown raises Cancelled",
          "[offload][pools][shutdown]") {
  auto gate = std::make_shared<JobGate>();
  std::atomic<int> inner_ran{0}, inner_cancelled{0};
  std::string err;
  // A blocking job waiting for a job that never runs nor fails would hang
  // shutdown (a plain thread's wait has no bound): abort with a dump then.
  const std::atomic<std::uint64_t> never{0};
  Watchdog watchdog(never, "shutdown with a pool thread waiting on a queued job");
  {
    StderrCapture capture;
    {
      sp::Runtime rt(pool_options(2, 1, 2));
      OpenOnExit opener{gate};
      const bool queued = rt.block_on([&] {
        sp::spawn([gate] { sp::offload([gate] { gate->enter(); }); }).detach();
        if (!wait_until([&] { return gate->started() == 1; }, slack(20s))) return false;
        // A blocking job (a plain thread of this runtime's blocking pool)
        // offloads to this runtime's CPU pool, whose thread the gate holds.
        sp::spawn([gate, &inner_ran, &inner_cancelled] {
          sp::blocking([gate, &inner_ran, &inner_cancelled] {
            try {
              sp::offload([&inner_ran] { inner_ran.fetch_add(1); });
            } catch (const sp::Cancelled&) {
              inner_cancelled.fetch_add(1);
              gate->open();
            }
          });
        }).detach();
        return wait_until([&] { return gate->started() == 1 && pool(PoolKind::cpu).queued == 1; }, slack(20s));
      });
      REQUIRE(queued);
      // Both fibers are cancelled at once (their jobs run on); then the
      // pools stop, fail the queued inner job, and join both threads.
      rt.shutdown();
    }
    err = capture.text();
  }
  CHECK(!gate->expired());
  CHECK(inner_cancelled.load() == 1);
  CHECK(inner_ran.load() == 0);
  CHECK(err.find("1 offload/blocking job(s) still queued were not run") != std::string::npos);
}

// A job still running at shutdown is never interrupted, so shutdown waits
// for it; past shutdown_timeout it says so on stderr, naming the call's
// site (blocking(getline(cin)) hung a program's exit with no word).
TEST_CASE("a job still running at shutdown is named on stderr with its call site; shutdown waits for it",
          "[offload][pools][shutdown]") {
  sp::RuntimeOptions o = pool_options(2, 1, 1);
  o.shutdown_timeout = 100ms;
  auto gate = std::make_shared<JobGate>();
  std::string err;
  std::uint32_t line = 0;
  bool reported = false;
  {
    StderrCapture capture;
    {
      sp::Runtime rt(o);
      OpenOnExit opener{gate};
      const bool running = rt.block_on([&] {
        sp::spawn([gate, &line] {
          line = sp::source_location::current().line() + 1;
          sp::blocking([gate] { gate->enter(); });
        }).detach();
        return wait_until([&] { return gate->started() == 1; }, slack(20s));
      });
      REQUIRE(running);
      reported = shutdown_reporting(rt, capture, {"waiting for a running blocking job"}, {gate});
    }
    err = capture.text();
  }
  INFO(err);
  CHECK(reported);
  CHECK(!gate->expired());
  CHECK(err.find("offload_pools_test.cpp:" + std::to_string(line)) != std::string::npos);
}

// Both pools' running jobs are named before either pool is joined: a CPU
// job waiting on a stuck blocking job was named, then joined for ever,
// and the blocking job (the cause) was never named.
TEST_CASE("running jobs of both pools are named at shutdown before either is waited for",
          "[offload][pools][shutdown]") {
  sp::RuntimeOptions o = pool_options(2, 1, 1);
  o.shutdown_timeout = 100ms;
  auto cpu_gate = std::make_shared<JobGate>();
  auto block_gate = std::make_shared<JobGate>();
  std::string err;
  bool reported = false;
  {
    StderrCapture capture;
    {
      sp::Runtime rt(o);
      OpenOnExit open_cpu{cpu_gate};
      OpenOnExit open_block{block_gate};
      const bool running = rt.block_on([&] {
        sp::spawn([cpu_gate] { sp::offload([cpu_gate] { cpu_gate->enter(); }); }).detach();
        sp::spawn([block_gate] { sp::blocking([block_gate] { block_gate->enter(); }); }).detach();
        return wait_until([&] { return cpu_gate->started() == 1 && block_gate->started() == 1; }, slack(20s));
      });
      REQUIRE(running);
      reported = shutdown_reporting(rt, capture,
                                    {"waiting for a running offload job", "waiting for a running blocking job"},
                                    {cpu_gate, block_gate});
    }
    err = capture.text();
  }
  INFO(err);
  CHECK(reported);
  CHECK(!cpu_gate->expired());
  CHECK(!block_gate->expired());
}
