// sync_workloads.cpp: see sync_workloads.hpp.
//
// Boost.Fiber set-up: one thread uses the default round_robin scheduler on a
// fresh std::thread. Two threads use shared_work on two fresh std::threads:
// Boost's work_stealing keeps its scheduler table in statics that can be
// initialised only once per process, so it cannot be set up again for each
// measurement in one binary; shared_work (one shared ready queue) can. The
// main table (bench/table) measures work_stealing in a fresh child process.
#include "sync_workloads.hpp"

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <ostream>
#include <thread>
#include <vector>

#include <boost/fiber/all.hpp>
#include <spindle/spindle.hpp>

namespace sync_bench {

namespace {

using Clock = std::chrono::steady_clock;
namespace bf = boost::fibers;

constexpr long kRoundTrips = 1'000'000;
constexpr int kMutexFibers = 1000;
constexpr int kMutexIncrements = 1000;
constexpr long kMessages = 1'000'000;
constexpr int kProducers = 4, kConsumers = 4;
constexpr std::size_t kThroughputCapacity = 64;

void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "sync_bench: %s: wrong result\n", what);
    std::abort();
  }
}

double ns_per(Clock::duration d, long ops) {
  return static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count()) /
         static_cast<double>(ops);
}

template <class F>
auto on_spindle(unsigned threads, F f) {
  spindle::RuntimeOptions o;
  o.workers = threads;
  return spindle::run(std::move(f), o);
}

// on_boost: runs f (which launches and joins fibers) on a fresh thread with
// the scheduler for `threads`, plus threads-1 helpers sharing the work.
template <class F>
double on_boost(unsigned threads, F f) {
  double result = 0;
  if (threads <= 1) {
    std::thread([&] { result = f(); }).join();
    return result;
  }
  std::atomic<bool> done{false};
  std::vector<std::thread> helpers;
  for (unsigned i = 1; i < threads; ++i) {
    helpers.emplace_back([&] {
      bf::use_scheduling_algorithm<bf::algo::shared_work>(true);
      while (!done.load(std::memory_order_acquire)) boost::this_fiber::sleep_for(std::chrono::milliseconds(1));
    });
  }
  std::thread([&] {
    bf::use_scheduling_algorithm<bf::algo::shared_work>(true);
    result = f();
    done.store(true, std::memory_order_release);
  }).join();
  for (auto& h : helpers) h.join();
  return result;
}

template <class Chan>
double spindle_pingpong(unsigned threads, std::size_t cap, const char* what) {
  return on_spindle(threads, [cap, what] {
    Chan ping(cap), pong(cap);
    auto echo = spindle::spawn([&] {
      for (long i = 0; i < kRoundTrips; ++i) pong.send(*ping.recv());
    });
    const auto t0 = Clock::now();
    long sum = 0;
    for (long i = 0; i < kRoundTrips; ++i) {
      ping.send(i);
      sum += *pong.recv();
    }
    const auto t1 = Clock::now();
    echo.join();
    check(sum == kRoundTrips * (kRoundTrips - 1) / 2, what);
    return ns_per(t1 - t0, kRoundTrips);
  });
}

template <class Chan, class... A>
double boost_pingpong(unsigned threads, const char* what, A... cap) {
  return on_boost(threads, [=] {
    Chan ping(cap...), pong(cap...);
    bf::fiber echo([&] {
      long v;
      for (long i = 0; i < kRoundTrips; ++i) {
        ping.pop(v);
        pong.push(v);
      }
    });
    const auto t0 = Clock::now();
    long sum = 0, v = 0;
    for (long i = 0; i < kRoundTrips; ++i) {
      ping.push(i);
      pong.pop(v);
      sum += v;
    }
    const auto t1 = Clock::now();
    echo.join();
    check(sum == kRoundTrips * (kRoundTrips - 1) / 2, what);
    return ns_per(t1 - t0, kRoundTrips);
  });
}

}  // namespace

double pingpong_spindle(unsigned threads) {
  return spindle_pingpong<spindle::Channel<long>>(threads, 1, "pingpong spindle");
}
// buffered_channel's capacity must be a power of two and it holds
// capacity-1 values: 2 means one buffered value, like Channel(1).
double pingpong_boost(unsigned threads) {
  return boost_pingpong<bf::buffered_channel<long>>(threads, "pingpong boost", std::size_t{2});
}
double pingpong_unbuf_spindle(unsigned threads) {
  return spindle_pingpong<spindle::Channel<long>>(threads, 0, "pingpong_unbuf spindle");
}
double pingpong_unbuf_boost(unsigned threads) {
  return boost_pingpong<bf::unbuffered_channel<long>>(threads, "pingpong_unbuf boost");
}

// private_work: `rounds` steps of an LCG, the work outside the lock in
// the mutex_work rows; kept (its result is not otherwise used).
inline void private_work(std::uint64_t& x, long rounds) {
  for (long k = 0; k < rounds; ++k) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    asm volatile("" : "+r"(x));
  }
}

// locked_increments: one fiber's (or thread's) part of the mutex rows: n
// increments of `counter` under `m`, each after `work` rounds of
// private_work when WithWork (mutex_work), none otherwise
// (mutex_contention: the same loop as before mutex_work existed).
template <bool WithWork, class M>
void locked_increments(M& m, long& counter, long n, long work, std::uint64_t seed) {
  std::uint64_t x = seed;
  for (long i = 0; i < n; ++i) {
    if constexpr (WithWork) private_work(x, work);
    std::lock_guard g(m);
    ++counter;
  }
}

// The fiber runtimes' mutex rows: kMutexFibers fibers of locked_increments,
// spawn to last join, from inside a fiber of the runtime under test.
template <bool WithWork>
double spindle_mutex_row(long work, const char* what) {
  spindle::Mutex m;
  long counter = 0;
  std::vector<spindle::Task<void>> ts;
  ts.reserve(kMutexFibers);
  const auto t0 = Clock::now();
  for (int f = 0; f < kMutexFibers; ++f) {
    ts.push_back(spindle::spawn([&m, &counter, work, f] {
      locked_increments<WithWork>(m, counter, kMutexIncrements, work, static_cast<std::uint64_t>(f) + 1);
    }));
  }
  for (auto& t : ts) t.join();
  const auto t1 = Clock::now();
  check(counter == long{kMutexFibers} * kMutexIncrements, what);
  return ns_per(t1 - t0, long{kMutexFibers} * kMutexIncrements);
}

template <bool WithWork>
double boost_mutex_row(long work, const char* what) {
  bf::mutex m;
  long counter = 0;
  std::vector<bf::fiber> fs;
  fs.reserve(kMutexFibers);
  const auto t0 = Clock::now();
  for (int f = 0; f < kMutexFibers; ++f) {
    fs.emplace_back([&m, &counter, work, f] {
      locked_increments<WithWork>(m, counter, kMutexIncrements, work, static_cast<std::uint64_t>(f) + 1);
    });
  }
  for (auto& f : fs) f.join();
  const auto t1 = Clock::now();
  check(counter == long{kMutexFibers} * kMutexIncrements, what);
  return ns_per(t1 - t0, long{kMutexFibers} * kMutexIncrements);
}

// The same total on plain threads with std::mutex, split evenly.
template <bool WithWork>
double std_mutex_row(unsigned threads, long work, const char* what) {
  std::mutex m;
  long counter = 0;
  const long per = long{kMutexFibers} * kMutexIncrements / threads;
  std::vector<std::thread> ts;
  const auto t0 = Clock::now();
  for (unsigned t = 0; t < threads; ++t) {
    ts.emplace_back([&m, &counter, per, work, t] { locked_increments<WithWork>(m, counter, per, work, t + 1); });
  }
  for (auto& t : ts) t.join();
  const auto t1 = Clock::now();
  check(counter == per * threads, what);
  return ns_per(t1 - t0, per * threads);
}

double mutex_contention_spindle(unsigned threads) {
  return on_spindle(threads, [] { return spindle_mutex_row<false>(0, "mutex_contention spindle"); });
}

// mutex_work: mutex_contention with `work` rounds of private arithmetic
// before each locked increment, so the lock is not the whole loop. With
// std::mutex on plain threads, 2 threads take about half one thread's time
// once the work is long enough (mutex_work_std); the row shows whether the
// fiber mutex lets the workers run the work side by side (today it does
// not: docs/sync.md "Choices", Mutex). ns per iteration.
double mutex_work_spindle(unsigned threads, long work, std::ostream* stats) {
  spindle::RuntimeOptions o;
  o.workers = threads;
  spindle::Runtime rt(o);
  const double ns = rt.block_on([work] { return spindle_mutex_row<true>(work, "mutex_work spindle"); });
  rt.shutdown();
  if (stats != nullptr) *stats << rt.stats();
  return ns;
}

double mutex_contention_boost(unsigned threads) {
  return on_boost(threads, [] { return boost_mutex_row<false>(0, "mutex_contention boost"); });
}

double mutex_work_boost(unsigned threads, long work) {
  return on_boost(threads, [work] { return boost_mutex_row<true>(work, "mutex_work boost"); });
}

double mutex_contention_std(unsigned threads) { return std_mutex_row<false>(threads, 0, "mutex_contention std"); }

double mutex_work_std(unsigned threads, long work) { return std_mutex_row<true>(threads, work, "mutex_work std"); }

double channel_throughput_spindle(unsigned threads) {
  return on_spindle(threads, [] {
    spindle::Channel<long> ch(kThroughputCapacity);
    std::atomic<long> sum{0};
    const long per = kMessages / kProducers;
    std::vector<spindle::Task<void>> ps, cs;
    const auto t0 = Clock::now();
    for (int c = 0; c < kConsumers; ++c) {
      cs.push_back(spindle::spawn([&] {
        long s = 0;
        for (long v : ch) s += v;
        sum += s;
      }));
    }
    for (int p = 0; p < kProducers; ++p) {
      ps.push_back(spindle::spawn([&] {
        for (long i = 1; i <= per; ++i) ch.send(i);
      }));
    }
    for (auto& p : ps) p.join();
    ch.close();
    for (auto& c : cs) c.join();
    const auto t1 = Clock::now();
    check(sum.load() == kProducers * (per * (per + 1) / 2), "channel_throughput spindle");
    return ns_per(t1 - t0, per * kProducers);
  });
}

double channel_throughput_boost(unsigned threads) {
  return on_boost(threads, [] {
    bf::buffered_channel<long> ch(kThroughputCapacity);
    std::atomic<long> sum{0};
    const long per = kMessages / kProducers;
    std::vector<bf::fiber> ps, cs;
    const auto t0 = Clock::now();
    for (int c = 0; c < kConsumers; ++c) {
      cs.emplace_back([&] {
        long s = 0;
        for (long v : ch) s += v;
        sum += s;
      });
    }
    for (int p = 0; p < kProducers; ++p) {
      ps.emplace_back([&] {
        for (long i = 1; i <= per; ++i) ch.push(i);
      });
    }
    for (auto& p : ps) p.join();
    ch.close();
    for (auto& c : cs) c.join();
    const auto t1 = Clock::now();
    check(sum.load() == kProducers * (per * (per + 1) / 2), "channel_throughput boost");
    return ns_per(t1 - t0, per * kProducers);
  });
}

}  // namespace sync_bench
