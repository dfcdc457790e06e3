// offload_workload.cpp: see offload_workload.hpp.
//
// Both peers run the same shape:
//  1. start the ticker fiber (sleep 1 ms, record lateness, until told to
//     stop);
//  2. clock starts; spawn 64 fibers, each handing one job to its pool and
//     waiting for the result; join them all, checking every result; clock
//     stops;
//  3. stop and join the ticker.
// The job seeds differ per fiber, so a result delivered to the wrong fiber
// fails the check too.
#include "offload_workload.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <sched.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>

#include <boost/fiber/all.hpp>
#include <spindle/runtime/offload.hpp>
#include <spindle/spindle.hpp>

namespace offload_bench {

namespace {

using Clock = std::chrono::steady_clock;
namespace bf = boost::fibers;

constexpr int kFibers = 64;
constexpr std::uint64_t kIterations = 560'000;  // ~2 ms on the reference VM
constexpr auto kTick = std::chrono::milliseconds(1);

// One splitmix64 step: add the golden-ratio increment, then the finaliser.
// Serial: each round needs the previous result, so the job is ~kIterations
// multiply latencies and cannot be vectorised or shortened by the compiler.
[[gnu::noinline]] std::uint64_t job(std::uint64_t x) {
  for (std::uint64_t i = 0; i < kIterations; ++i) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    x ^= x >> 31;
  }
  return x;
}

std::uint64_t seed(int i) { return 0x5eed0000ull + static_cast<std::uint64_t>(i); }

// The expected results, computed once per process before any clock starts.
const std::array<std::uint64_t, kFibers>& expected() {
  static const auto table = [] {
    std::array<std::uint64_t, kFibers> t{};
    for (int i = 0; i < kFibers; ++i) t[i] = job(seed(i));
    return t;
  }();
  return table;
}

void check(int i, std::uint64_t got, const char* who) {
  if (got != expected()[static_cast<std::size_t>(i)]) {
    std::fprintf(stderr, "offload_bench: %s: job %d returned a wrong result\n", who, i);
    std::abort();
  }
}

double ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

// Ticker: sleeps kTick until stop, returns the worst lateness in ms. Sleep
// is the runtime's, passed in, so both peers share the loop.
template <class Sleep>
double tick(const std::atomic<bool>& stop, Sleep sleep) {
  double worst = 0;
  while (!stop.load(std::memory_order_acquire)) {
    const auto due = Clock::now() + kTick;
    sleep();
    worst = std::max(worst, ms_between(due, Clock::now()));
  }
  return worst;
}

// ---- spindle --------------------------------------------------------------

double spindle_body(double* worst_tick_ms) {
  std::atomic<bool> stop{false};
  auto ticker = spindle::spawn([&stop] { return tick(stop, [] { spindle::sleep_for(kTick); }); });
  const auto t0 = Clock::now();
  std::vector<spindle::Task<std::uint64_t>> fibers;
  fibers.reserve(kFibers);
  for (int i = 0; i < kFibers; ++i) {
    fibers.push_back(spindle::spawn([i] { return spindle::offload([i] { return job(seed(i)); }); }));
  }
  for (int i = 0; i < kFibers; ++i) check(i, fibers[static_cast<std::size_t>(i)].join(), "spindle");
  const auto t1 = Clock::now();
  stop.store(true, std::memory_order_release);
  *worst_tick_ms = ticker.join();
  return ms_between(t0, t1);
}

// ---- Boost.Fiber + std::thread pool ----------------------------------------

// ThreadPool: the simplest pool a Boost.Fiber user would write: one mutex,
// one condition variable, a deque of std::function, hardware-thread size
// (as spindle's offload pool). Jobs are ~2 ms, so the queue is never hot.
class ThreadPool {
 public:
  explicit ThreadPool(unsigned n) {
    for (unsigned i = 0; i < n; ++i) threads_.emplace_back([this] { loop(); });
  }
  ~ThreadPool() {
    {
      std::lock_guard lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }
  void post(std::function<void()> f) {
    {
      std::lock_guard lk(mu_);
      q_.push_back(std::move(f));
    }
    cv_.notify_one();
  }

 private:
  void loop() {
    std::unique_lock lk(mu_);
    for (;;) {
      cv_.wait(lk, [this] { return stop_ || !q_.empty(); });
      if (q_.empty()) return;  // stop_ and drained
      auto f = std::move(q_.front());
      q_.pop_front();
      lk.unlock();
      f();
      lk.lock();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> q_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

unsigned hardware_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : n;
}

double boost_body(double* worst_tick_ms) {
  ThreadPool pool(hardware_threads());
  std::atomic<bool> stop{false};
  double worst = 0;
  bf::fiber ticker(bf::launch::post, [&] {
    worst = tick(stop, [] { boost::this_fiber::sleep_for(kTick); });
  });
  const auto t0 = Clock::now();
  std::vector<bf::fiber> fibers;
  fibers.reserve(kFibers);
  for (int i = 0; i < kFibers; ++i) {
    fibers.emplace_back(bf::launch::post, [&pool, i] {
      // The promise is shared with the job: the pool thread may still be
      // inside set_value when the woken fiber moves on.
      auto p = std::make_shared<bf::promise<std::uint64_t>>();
      auto fut = p->get_future();
      pool.post([p, i] { p->set_value(job(seed(i))); });
      check(i, fut.get(), "boost_fiber");
    });
  }
  for (auto& f : fibers) f.join();
  const auto t1 = Clock::now();
  stop.store(true, std::memory_order_release);
  ticker.join();
  *worst_tick_ms = worst;
  return ms_between(t0, t1);
}

}  // namespace

double offload_total_ms(unsigned workers, double* worst_tick_ms) {
  expected();  // before any clock
  spindle::RuntimeOptions o;
  o.workers = workers;
  return spindle::run([worst_tick_ms] { return spindle_body(worst_tick_ms); }, o);
}

double offload_job_ms() {
  std::array<double, 5> ms{};
  for (double& m : ms) {
    const auto t0 = Clock::now();
    check(0, job(seed(0)), "offload_job_ms");
    m = ms_between(t0, Clock::now());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

double offload_threads_ms(unsigned threads) {
  expected();
  threads = std::max(1u, threads);
  std::vector<std::thread> ts;
  std::atomic<int> next{0};  // each thread takes the next job, as a pool does
  const auto t0 = Clock::now();
  for (unsigned t = 0; t < threads; ++t) {
    ts.emplace_back([&next] {
      for (int i = next.fetch_add(1); i < kFibers; i = next.fetch_add(1)) check(i, job(seed(i)), "offload_threads_ms");
    });
  }
  for (auto& t : ts) t.join();
  return ms_between(t0, Clock::now());
}

double offload_threads_tick_ms(unsigned threads) {
  expected();
  threads = std::max(1u, threads);
  std::atomic<bool> stop{false};
  double worst = 0;
  std::thread ticker([&] {
    const int fd = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
    if (fd < 0) return;
    worst = tick(stop, [fd] {
      itimerspec its{};
      its.it_value.tv_nsec = std::chrono::duration_cast<std::chrono::nanoseconds>(kTick).count();
      std::uint64_t expirations = 0;
      if (::timerfd_settime(fd, 0, &its, nullptr) == 0) {
        while (::read(fd, &expirations, sizeof expirations) < 0 && errno == EINTR) {
        }
      }
    });
    ::close(fd);
  });
  std::vector<std::thread> ts;
  std::atomic<int> next{0};
  for (unsigned t = 0; t < threads; ++t) {
    ts.emplace_back([&next] {
      sched_param param{};
      (void)::sched_setscheduler(0, SCHED_IDLE, &param);  // as spindle's offload pool; without it, normal priority
      for (int i = next.fetch_add(1); i < kFibers; i = next.fetch_add(1)) check(i, job(seed(i)), "offload_threads_tick_ms");
    });
  }
  for (auto& t : ts) t.join();
  stop.store(true, std::memory_order_release);
  ticker.join();
  return worst;
}

double offload_boost_here_ms(double* worst_tick_ms) {
  expected();
  return boost_body(worst_tick_ms);
}

double offload_boost_total_ms(unsigned threads, double* worst_tick_ms, bool suspend) {
  expected();
  double ms = 0;
  if (threads <= 1) {
    // A fresh thread gets Boost.Fiber's default scheduler, round_robin.
    std::thread([&] { ms = boost_body(worst_tick_ms); }).join();
    return ms;
  }
  // work_stealing over `threads` threads: helpers install it and idle on a
  // fiber condition variable (their schedulers keep stealing meanwhile);
  // the measuring thread installs it and launches the fibers.
  bf::mutex mu;
  bf::condition_variable cv;
  bool done = false;
  std::vector<std::thread> helpers;
  for (unsigned i = 1; i < threads; ++i) {
    helpers.emplace_back([&] {
      bf::use_scheduling_algorithm<bf::algo::work_stealing>(threads, suspend);
      std::unique_lock lk(mu);
      cv.wait(lk, [&] { return done; });
    });
  }
  std::thread([&] {
    bf::use_scheduling_algorithm<bf::algo::work_stealing>(threads, suspend);
    ms = boost_body(worst_tick_ms);
    {
      std::unique_lock lk(mu);
      done = true;
    }
    cv.notify_all();
  }).join();
  for (auto& h : helpers) h.join();
  return ms;
}

}  // namespace offload_bench
