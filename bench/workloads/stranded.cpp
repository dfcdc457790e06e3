// stranded.cpp: see stranded.hpp. One trial: X starts B, B spins, X waits
// (yield loop or a 1 ms sleep) on B's worker; the figure is how long X was
// kept from running after it could have.
#include "stranded.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include <spindle/runtime/suspend.hpp>
#include <spindle/spindle.hpp>

#include "../peers/boost_env.hpp"
#include "timing.hpp"

namespace bench {

namespace {

constexpr int kTrials = 5;
constexpr auto kSpin = std::chrono::milliseconds(200);
constexpr auto kSleep = std::chrono::milliseconds(1);

// What X and B share in one trial. Co-location is judged by OS thread, so
// the same code serves both peers (a spindle worker is one thread).
struct Trial {
  std::atomic<std::thread::id> x_thread{};  // where X last ran before it suspended
  std::atomic<bool> started{false};         // B is spinning; t0 and colocated are set
  std::atomic<bool> stop{false};            // X ran again: B may end early
  Clock::time_point t0;                     // when B started
  Clock::time_point due;                    // sleep case: when X's sleep was due
  bool colocated = false;                   // X was waiting on B's thread when B started
};

// B: spins until kSpin has passed or X has run again. Never suspends: the
// loop only reads an atomic and the clock.
void spin(Trial& t) {
  t.colocated = t.x_thread.load() == std::this_thread::get_id();
  t.t0 = Clock::now();
  t.started.store(true, std::memory_order_release);
  const auto end = t.t0 + kSpin;
  while (!t.stop.load(std::memory_order_relaxed) && Clock::now() < end) {
  }
}

// X, yield case. x_thread is stored before every yield, so when B starts
// it names the thread X is queued on (unless X is running elsewhere).
template <class Yield>
double x_yields(Trial& t, Yield yield) {
  for (;;) {
    t.x_thread.store(std::this_thread::get_id());
    if (t.started.load(std::memory_order_acquire)) break;
    yield();
  }
  const auto t1 = Clock::now();
  t.stop.store(true, std::memory_order_relaxed);
  return ms_between(t.t0, t1);
}

// X, sleep case (B is already spawned). The trial only counts as co-located
// if B started before the sleep was due (checked by the caller after the
// join), otherwise nothing stood in X's way.
template <class Sleep>
double x_sleeps(Trial& t, Sleep sleep) {
  t.x_thread.store(std::this_thread::get_id());
  t.due = Clock::now() + kSleep;
  sleep();
  const auto back = Clock::now();
  t.stop.store(true, std::memory_order_relaxed);
  return ms_between(t.due, back);
}

double median_of(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Runs trials until kTrials of them were co-located (X waited on B's
// thread), at most 6 x kTrials in all, and returns the median of the
// co-located ones (NaN if none): a trial where B ran elsewhere measured
// nothing (X was never behind B). On stderr (the table's progress output)
// it prints each figure, marking the trials that were not co-located.
template <class One>
double trials(const char* row, const Config& c, bool sleep_case, One one) {
  std::vector<double> all, co;
  std::string line;
  for (int i = 0; i < 6 * kTrials && static_cast<int>(co.size()) < kTrials; ++i) {
    Trial t;
    all.push_back(one(t));
    const bool here = t.colocated && (!sleep_case || t.t0 < t.due);
    if (here) co.push_back(all.back());
    char buf[32];
    std::snprintf(buf, sizeof buf, " %.3f%s", all.back(), here ? "" : "*");
    line += buf;
  }
  std::fprintf(stderr,
               "  %-20s %-42s ms:%s; X on B's thread in %zu/%zu (*: not), their median %.3f\n", row,
               to_string(c).c_str(), line.c_str(), co.size(), all.size(), median_of(co));
  return median_of(co);
}

template <class XBody>
double on_spindle(unsigned workers, const char* row, bool sleep_case, XBody x_body) {
  if (workers < 2) return NAN;
  return spindle::run(
      [&] {
        return trials(row, Config{Peer::spindle, workers}, sleep_case, [&](Trial& t) {
          auto x = spindle::spawn([&] {
            // Both on worker 0, so X waits there when B starts; X unpins so
            // that an idle worker may take it.
            spindle::detail::hop_to_worker(0);
            spindle::detail::unpin();
            t.x_thread.store(std::this_thread::get_id());  // before B can start
            auto b = spindle::spawn([&] {
              spindle::detail::hop_to_worker(0);
              spin(t);
            });
            const double v = x_body(t);
            b.join();
            return v;
          });
          return x.join();
        });
      },
      spindle::RuntimeOptions{.workers = workers});
}

// work_stealing in its default idle mode (suspend = false): idle threads
// keep trying to steal, its best chance to take X. Boost has no pinning, so
// B is posted from X to the ready queue of X's thread (the default launch
// policy); the other thread may still steal B before it starts, and then
// nothing strands X: such trials are counted as not co-located. Not
// launch::dispatch: X would then wait behind the thread's dispatcher
// context, which work_stealing never steals past (measured: always 200 ms).
// suspend: work_stealing's idle mode. false (its default): idle threads
// keep trying to steal. true: they sleep on a condition variable until
// another thread makes a fiber ready for them.
template <class XBody>
double on_boost(unsigned threads, const char* row, bool sleep_case, XBody x_body, bool suspend = false) {
  if (threads < 2) return NAN;
  const Config c{Peer::boost_fiber, threads, BoostAlgo::work_stealing, suspend};
  BoostEnv env(c);
  return trials(row, c, sleep_case, [&](Trial& t) {
    double v = 0;
    boost_fiber(boost::fibers::launch::post, [&] {
      t.x_thread.store(std::this_thread::get_id());  // before B can start
      auto b = boost_fiber(boost::fibers::launch::post, [&] { spin(t); });
      v = x_body(t);
      b.join();
    }).join();
    return v;
  });
}

}  // namespace

double stranded_yield_spindle(unsigned threads) {
  return on_spindle(threads, "stranded_yield", false,
                    [](Trial& t) { return x_yields(t, [] { spindle::yield(); }); });
}

double stranded_yield_boost(const Config& c) {
  return on_boost(
      c.threads, "stranded_yield", false, [](Trial& t) { return x_yields(t, [] { boost::this_fiber::yield(); }); },
      c.suspend);
}

double stranded_sleep_spindle(unsigned threads) {
  return on_spindle(threads, "stranded_sleep", true,
                    [](Trial& t) { return x_sleeps(t, [] { spindle::sleep_for(kSleep); }); });
}

double stranded_sleep_boost(const Config& c) {
  return on_boost(
      c.threads, "stranded_sleep", true,
      [](Trial& t) { return x_sleeps(t, [] { boost::this_fiber::sleep_for(kSleep); }); }, c.suspend);
}

namespace {

double cpu_ms() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto ms = [](const timeval& v) { return v.tv_sec * 1e3 + v.tv_usec / 1e3; };
  return ms(u.ru_utime) + ms(u.ru_stime);
}

constexpr auto kIdle = std::chrono::milliseconds(200);

}  // namespace

double idle_cpu_spindle(unsigned threads) {
  return spindle::run(
      [] {
        const double c0 = cpu_ms();
        spindle::sleep_for(kIdle);
        return cpu_ms() - c0;
      },
      spindle::RuntimeOptions{.workers = threads});
}

double idle_cpu_boost(unsigned threads, bool suspend) {
  const Config c{Peer::boost_fiber, threads, BoostAlgo::work_stealing, suspend};
  BoostEnv env(c);
  double v = 0;
  boost_fiber(boost::fibers::launch::post, [&] {
    const double c0 = cpu_ms();
    boost::this_fiber::sleep_for(kIdle);
    v = cpu_ms() - c0;
  }).join();
  return v;
}

}  // namespace bench
