// spindle_test.hpp: shared fixtures of the runtime tests.
//
//  - worker-count parameterisation (docs/hacking.md "Tests": oversubscribing a small
//    machine is the point, so 8 workers run on 2 cores too);
//  - scaling of heavy loops in sanitizer builds (TSan makes every switch and
//    atomic 5-20x dearer; the stress tests must stay in CI's time budget);
//  - run_checked: the clean-teardown check (no fiber alive after shutdown);
//  - StderrCapture: read what the runtime reported on stderr, and has_line
//    to look for one line of it (a fiber dump's entry);
//  - Gate: a counting, cancellation-aware signal built only on the
//    suspension API (tests of the runtime must not depend on sync/);
//  - Watchdog: turns a hang (the usual symptom of a lost wake-up) into a
//    fiber dump and an abort well before CTest's TIMEOUT kills us silently;
//  - wait_suspended: waits until fibers are really queued on a primitive
//    (the runtime's own view, detail::count_suspended), never a sleep that
//    hopes they got there; wait_until for conditions the runtime cannot
//    see (a counter another fiber or a pool thread bumps);
//  - Boom, and fiber bodies that run until cancelled (sleep_until_cancelled,
//    yield_until_cancelled);
//  - Xorshift, the one random generator (rng.hpp).
// io fixtures (fd counts, loopback pairs) are in io_test.hpp.
#pragma once

#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include <spindle/runtime/all.hpp>
#include <spindle/runtime/detail/introspect.hpp>
#include <spindle/runtime/suspend.hpp>

#include "rng.hpp"

// The worker counts every scheduler test runs at.
#define SPINDLE_TEST_WORKERS() GENERATE(1u, 2u, 4u, 8u)
// The same without 8, for suites whose cases each start many runtimes
// (combinators, task groups, cancellation).
#define SPINDLE_TEST_FEW_WORKERS() GENERATE(1u, 2u, 4u)

namespace spindle_test {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// tests/runtime/CMakeLists.txt defines SPINDLE_TEST_TSAN / SPINDLE_TEST_ASAN
// for sanitizer builds; GCC's own macros are the fallback.
#if defined(SPINDLE_TEST_TSAN) || defined(__SANITIZE_THREAD__)
inline constexpr bool kTsan = true;
#else
inline constexpr bool kTsan = false;
#endif
#if defined(SPINDLE_TEST_ASAN) || defined(__SANITIZE_ADDRESS__)
inline constexpr bool kAsan = true;
#else
inline constexpr bool kAsan = false;
#endif
inline constexpr bool kSanitized = kTsan || kAsan;

// scaled: iteration count for a heavy test. Sanitizer builds divide it (TSan
// by 10, ASan by 2); the environment variable SPINDLE_TEST_SCALE multiplies
// it (e.g. 10 for a long local soak). Never below 1.
inline std::size_t scaled(std::size_t plain) {
  double f = kTsan ? 0.1 : kAsan ? 0.5 : 1.0;
  if (const char* e = std::getenv("SPINDLE_TEST_SCALE")) {
    const double m = std::atof(e);
    if (m > 0) f *= m;
  }
  const auto n = static_cast<std::size_t>(static_cast<double>(plain) * f);
  return n == 0 ? 1 : n;
}

// slack: a loose upper bound for "it happened promptly" checks. Never a speed
// claim: only there so that a wait that never ends fails instead of hanging,
// and generous because the CI machine is shared and sanitizers are slow.
inline Clock::duration slack(Clock::duration plain) { return kSanitized ? plain * 4 : plain; }

// Catch2 v2 assertions are not thread-safe, and fibers run on several worker
// threads at once. So fibers other than "main" check with FIBER_CHECK, which
// records failures here; the test thread reports them (run_checked does it
// at teardown, other tests call report_fiber_failures()).
class FiberFailures {
 public:
  void add(std::string m) {
    std::lock_guard lk(mu_);
    msgs_.push_back(std::move(m));
  }
  std::vector<std::string> take() {
    std::lock_guard lk(mu_);
    return std::exchange(msgs_, {});
  }

 private:
  std::mutex mu_;
  std::vector<std::string> msgs_;
};
inline FiberFailures& fiber_failures() {
  static FiberFailures f;
  return f;
}
inline void report_fiber_failures() {
  for (const auto& m : fiber_failures().take()) FAIL_CHECK(m);
}

#define SPINDLE_TEST_STR2(x) #x
#define SPINDLE_TEST_STR(x) SPINDLE_TEST_STR2(x)
#define FIBER_CHECK(...)                                                           \
  do {                                                                             \
    if (!(__VA_ARGS__))                                                            \
      ::spindle_test::fiber_failures().add(__FILE__ ":" SPINDLE_TEST_STR(__LINE__) \
                                           ": FIBER_CHECK(" #__VA_ARGS__ ") failed"); \
  } while (0)

inline spindle::RuntimeOptions options(unsigned workers) {
  spindle::RuntimeOptions o;
  o.workers = workers;
  // Shutdown still runs each queued fiber once (it ends as cancelled), and
  // under TSan a fiber's first switch maps state of its own: on one CI
  // machine that came to ~2 ms a fiber, so the 1,024 children the registry
  // test leaves queued outlived the default 2 s. Tests of the timeout
  // itself set their own.
  if (kSanitized) o.shutdown_timeout = std::chrono::seconds(20);
  return o;
}

// run_checked: spindle::run with the teardown check every test wants: after
// shutdown no fiber is left alive (the runtime's stats are exact then).
template <class F>
auto run_checked(spindle::RuntimeOptions o, F&& f) {
  spindle::Runtime rt(o);
  struct Teardown {
    spindle::Runtime& rt;
    ~Teardown() {
      rt.shutdown();
      const spindle::Stats s = rt.stats();
      CHECK(s.live_fibers == 0);
      report_fiber_failures();
    }
  } teardown{rt};
  return rt.block_on(std::forward<F>(f));
}

template <class F>
auto run_checked(unsigned workers, F&& f) {
  return run_checked(options(workers), std::forward<F>(f));
}

// os_tid: the kernel's id of the calling thread. A system call, so unlike a
// thread_local it cannot be cached by the compiler across a fiber switch:
// the ground truth for "which thread am I on".
// raises<E>: runs f; true when it raised E, false when it returned. Any
// other exception propagates.
template <class E, class F>
bool raises(F&& f) {
  try {
    f();
  } catch (const E&) {
    return true;
  }
  return false;
}
template <class F>
bool raises_cancelled(F&& f) {
  return raises<spindle::Cancelled>(std::forward<F>(f));
}
template <class F>
bool raises_timeout(F&& f) {
  return raises<spindle::TimedOut>(std::forward<F>(f));
}

inline long os_tid() noexcept { return ::syscall(SYS_gettid); }

// rss_kb: this process's resident set, in KiB (/proc/self/status VmRSS;
// a test's server and its clients together). 0 if unreadable.
inline long rss_kb() {
  long kb = 0;
  if (std::FILE* f = std::fopen("/proc/self/status", "r")) {
    char line[256];
    while (std::fgets(line, sizeof line, f))
      if (std::sscanf(line, "VmRSS: %ld kB", &kb) == 1) break;
    std::fclose(f);
  }
  return kb;
}

// StderrCapture: redirects file descriptor 2 into a temporary file while it
// lives; text() stops the capture and returns what was written. A sanitizer
// report among it is echoed to the real stderr, so it is never hidden.
// JoinOnExit: joins a std::thread (if it was started) when the scope ends,
// also when the test body throws: a test that starts a thread inside
// run_checked declares the thread and this guard before the run.
struct JoinOnExit {
  std::thread& t;
  ~JoinOnExit() {
    if (t.joinable()) t.join();
  }
};

class StderrCapture {
 public:
  StderrCapture() {
    std::fflush(stderr);
    std::cerr.flush();
    file_ = std::tmpfile();
    REQUIRE(file_ != nullptr);
    saved_ = ::dup(2);
    REQUIRE(saved_ >= 0);
    REQUIRE(::dup2(::fileno(file_), 2) == 2);
  }
  ~StderrCapture() { stop(); if (file_) std::fclose(file_); }
  StderrCapture(const StderrCapture&) = delete;
  StderrCapture& operator=(const StderrCapture&) = delete;

  const std::string& text() {
    stop();
    return text_;
  }
  // peek: what was written so far, without stopping the capture.
  std::string peek() {
    std::fflush(stderr);
    std::cerr.flush();
    std::string out;
    char buf[4096];
    off_t at = 0;
    ssize_t n;
    while ((n = ::pread(::fileno(file_), buf, sizeof buf, at)) > 0) {
      out.append(buf, static_cast<std::size_t>(n));
      at += n;
    }
    return out;
  }

 private:
  void stop() {
    if (saved_ < 0) return;
    std::fflush(stderr);
    std::cerr.flush();
    ::dup2(saved_, 2);
    ::close(saved_);
    saved_ = -1;
    std::rewind(file_);
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, file_)) > 0) text_.append(buf, n);
    // Echo only what a sanitizer wrote, so its report is not hidden.
    if (text_.find("Sanitizer") != std::string::npos ||
        text_.find("runtime error") != std::string::npos) {
      std::fprintf(stderr, "[captured stderr]\n%s[end of captured stderr]\n", text_.c_str());
    }
  }
  std::FILE* file_ = nullptr;
  int saved_ = -1;
  std::string text_;
};

// has_line: whether one line of `text` (a fiber dump, what StderrCapture
// read) holds both `a` and `b`: a dump's entry names the fiber and what it
// waits on in the same line, so finding them apart would prove nothing.
inline bool has_line(const std::string& text, const std::string& a, const std::string& b) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find(a) != std::string::npos && line.find(b) != std::string::npos) return true;
  }
  return false;
}

// Gate: a counting signal with at most one waiter at a time, usable by a
// fiber or a plain thread on either side. It follows suspend.hpp's protocol:
// publish hands over the waiter under mu_; signal wins the waiter's CAS under
// mu_ and wakes it after unlocking; a waiter that ends any other way unhooks
// itself under mu_ before its Waiter dies. A signal that loses the CAS to a
// cancellation is kept (pending_), so no signal is ever dropped.
// CountOnExit: increments its counter when destroyed, so a test can see
// that a fiber's RAII clean-up ran (after cancellation, say).
struct CountOnExit {
  std::atomic<int>& n;
  ~CountOnExit() { n.fetch_add(1); }
};

class Gate {
 public:
  // wait: consumes one signal, suspending until there is one. A
  // cancellation point (throws spindle::Cancelled).
  void wait() {
    using spindle::detail::Waiter;
    Waiter w;
    const Waiter::State s = spindle::detail::suspend(
        w, nullptr,
        [&] {
          std::lock_guard lk(mu_);
          if (pending_ > 0) {
            --pending_;
            return false;  // consumed without waiting
          }
          waiter_ = &w;
          return true;
        },
        "gate");
    if (s == Waiter::notified) return;
    {
      std::lock_guard lk(mu_);
      if (waiter_ == &w) waiter_ = nullptr;
    }
    if (s == Waiter::waiting) return;  // publish found a pending signal
    spindle::detail::throw_if_cancelled(s);
  }

  // try_consume: consumes a pending signal if there is one; never waits.
  bool try_consume() {
    std::lock_guard lk(mu_);
    if (pending_ == 0) return false;
    --pending_;
    return true;
  }

  // signal: wakes the waiter, or leaves a signal for the next wait. Any
  // thread or fiber; never suspends.
  void signal() {
    spindle::detail::Waiter* w = nullptr;
    {
      std::lock_guard lk(mu_);
      w = std::exchange(waiter_, nullptr);
      if (w == nullptr || !w->try_complete(spindle::detail::Waiter::notified)) {
        w = nullptr;
        ++pending_;
      }
    }
    if (w != nullptr) spindle::detail::wake(*w);
  }

 private:
  std::mutex mu_;
  spindle::detail::Waiter* waiter_ = nullptr;  // guarded by mu_
  unsigned pending_ = 0;                       // guarded by mu_
};

// Watchdog: if `progress` stops changing for `stall`, prints what was going
// on (a fiber dump of the newest runtime) and aborts: a lost wake-up shows up
// as a hang, and the dump says who was left waiting.
class Watchdog {
 public:
  Watchdog(const std::atomic<std::uint64_t>& progress, const char* what,
           Clock::duration stall = std::chrono::seconds(kSanitized ? 60 : 20))
      : thread_([this, &progress, what, stall] {
          std::uint64_t last = progress.load(std::memory_order_relaxed);
          auto since = Clock::now();
          std::unique_lock lk(mu_);
          while (!stop_) {
            cv_.wait_for(lk, 100ms);
            const std::uint64_t now_v = progress.load(std::memory_order_relaxed);
            if (now_v != last) {
              last = now_v;
              since = Clock::now();
            } else if (Clock::now() - since > stall) {
              std::fprintf(stderr, "watchdog: %s made no progress (stuck at %llu); lost wake-up?\n",
                           what, static_cast<unsigned long long>(now_v));
              spindle::dump_fibers(std::cerr);
              std::cerr.flush();
              std::abort();
            }
          }
        }) {}
  ~Watchdog() {
    {
      std::lock_guard lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

// NotSuspended: thrown by wait_suspended when the fibers never got there.
struct NotSuspended : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace detail_ {
// ended: true once the awaited state can no longer come (the task
// finished), so the wait fails at once instead of after `limit`.
template <class Cond, class Ended = bool (*)()>
void wait_suspended_impl(Cond cond, const std::string& what_for, Clock::duration limit,
                         Ended ended = [] { return false; }) {
  const auto end = Clock::now() + limit;
  while (!cond()) {
    const bool gone = ended();
    if (gone || Clock::now() > end) {
      std::ostringstream os;
      os << "wait_suspended: " << what_for;
      if (gone) {
        os << " never reached: the task finished first\n";
      } else {
        os << " not reached within " << std::chrono::duration_cast<std::chrono::milliseconds>(limit).count()
           << " ms\n";
      }
      spindle::dump_fibers(os);
      fiber_failures().add(os.str());
      throw NotSuspended(os.str());
    }
    // A fiber sleep (on a plain thread: a thread sleep), so the fibers we
    // wait for can run even on a single worker.
    spindle::sleep_for(std::chrono::microseconds(200));
  }
}
}  // namespace detail_

// wait_suspended(what, n): waits until at least n fibers are suspended in a
// wait described as `what` ("mutex", "semaphore", "channel recv", "queue
// put", "select", "sleep", "join", "gate", ...: the names the fiber dump
// shows), with their Waiter already handed to the primitive (publish done),
// and not yet woken. That is the runtime's own knowledge
// (detail::count_suspended), not a guess from elapsed time. If it does not
// happen within `limit`, the test fails: the reason and a fiber dump are
// recorded (reported by run_checked / report_fiber_failures) and
// NotSuspended is thrown, so the caller does not go on as if it had.
// From a fiber or a plain thread while the runtime runs. Plain threads
// that wait on a primitive are not fibers and are not counted.
inline void wait_suspended(std::string_view what, std::size_t n = 1,
                           Clock::duration limit = slack(std::chrono::seconds(10))) {
  detail_::wait_suspended_impl(
      [&] { return spindle::detail::count_suspended(what) >= n; },
      std::to_string(n) + " fiber(s) suspended on \"" + std::string(what) + "\"", limit);
}

// wait_fiber_suspended(id, what): the same for the one fiber with this id
// (Task::id(), this_fiber::id()); any wait if `what` is empty. `ended`, if
// given, says the fiber can no longer get there (it finished).
template <class Ended = bool (*)()>
void wait_fiber_suspended(std::uint64_t id, std::string_view what,
                          Clock::duration limit = slack(std::chrono::seconds(10)),
                          Ended ended = [] { return false; }) {
  detail_::wait_suspended_impl(
      [&] { return spindle::detail::count_suspended(what, id) == 1; },
      "fiber " + std::to_string(id) + " suspended on \"" + std::string(what) + "\"", limit, ended);
}

// wait_suspended(task, what): the same for a task's fiber; fails at once
// if the task finishes without getting there.
template <class Task>
  requires requires(const Task& t) {
    t.id();
    t.done();
  }
void wait_suspended(const Task& t, std::string_view what,
                    Clock::duration limit = slack(std::chrono::seconds(10))) {
  wait_fiber_suspended(t.id(), what, limit, [&] { return t.done(); });
}

// wait_until: polls cond (sleeping 1 ms between tries) until it holds or
// `limit` passes; returns whether it held, so the caller decides between
// REQUIRE, CHECK and FIBER_CHECK. For conditions outside the runtime's view
// (a counter another fiber, a server or a pool thread updates); a fiber
// queued on a primitive is awaited with wait_suspended instead. From a
// fiber (a cancellation point: the sleep is) or a plain thread (blocked).
template <class C>
bool wait_until(C cond, Clock::duration limit = slack(std::chrono::seconds(10))) {
  const auto end = Clock::now() + limit;
  while (!cond()) {
    if (Clock::now() > end) return false;
    spindle::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// Boom: an exception of the test's own, told apart from the runtime's.
struct Boom : std::runtime_error {
  explicit Boom(const std::string& m) : std::runtime_error(m) {}
};

// sleep_until_cancelled: a fiber body that waits until it is cancelled (an
// hour stands for forever; the Cancelled propagates). The counting form adds
// one to `cancelled` when the Cancelled passes through, then rethrows.
inline void sleep_until_cancelled() { spindle::sleep_for(std::chrono::hours(1)); }
inline void sleep_until_cancelled(std::atomic<int>& cancelled) {
  try {
    sleep_until_cancelled();
  } catch (const spindle::Cancelled&) {
    cancelled.fetch_add(1);
    throw;
  }
}
// yield_until_cancelled: a fiber that stays runnable (never waits) until
// cancelled: yield is a cancellation point.
[[noreturn]] inline void yield_until_cancelled() {
  for (;;) spindle::yield();
}

// spin: burns roughly n iterations without suspending (timing jitter).
inline void spin(std::uint64_t n) {
  for (std::uint64_t i = 0; i < n; ++i) asm volatile("" ::: "memory");
}

// run_until_both_workers: from a fiber, spawns `fibers` fibers that compute
// and yield until workers 0 and 1 have each run one of them (bounded, so
// that a scheduler that never shares work fails instead of hanging), joins
// them, and returns the mask of the workers seen (bit i: worker i).
inline unsigned run_until_both_workers(int fibers) {
  std::atomic<unsigned> mask{0};
  std::vector<spindle::Task<void>> tasks;
  for (int k = 0; k < fibers; ++k) {
    tasks.push_back(spindle::spawn([&] {
      const auto until = Clock::now() + slack(std::chrono::seconds(10));
      while ((mask.load() & 3u) != 3u && Clock::now() < until) {
        mask.fetch_or(1u << spindle::this_fiber::worker_index());
        spin(1000);
        spindle::yield();
      }
    }));
  }
  for (auto& t : tasks) t.join();
  return mask.load();
}

}  // namespace spindle_test
