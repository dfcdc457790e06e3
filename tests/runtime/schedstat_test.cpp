// schedstat.hpp: a thread's state letter, which the no-core rule
// (placement.hpp; load.cpp's KernelCpu reads it) uses to tell a worker waiting in the kernel's run queue (R) from one blocked
// in a call (S), and its schedstat sample. Plain threads, no runtime.
#include <catch2/catch.hpp>

#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#include "schedstat.hpp"

using namespace spindle::detail;

TEST_CASE("a thread that reads its own state is runnable") {
  const int fd = open_thread_stat();
  REQUIRE(fd >= 0);
  CHECK(read_thread_state(fd) == 'R');
  ::close(fd);
}

TEST_CASE("a thread blocked on a condition variable reads as sleeping, and runnable once it spins") {
  std::mutex m;
  std::condition_variable cv;
  bool go = false;
  std::atomic<bool> opened{false};
  std::atomic<int> fd{-1};
  std::atomic<bool> stop{false};
  std::thread t([&] {
    fd.store(open_thread_stat());
    opened.store(true);
    std::unique_lock<std::mutex> lock(m);
    cv.wait(lock, [&] { return go; });
    lock.unlock();
    while (!stop.load()) {
    }
  });
  // Releases and joins the thread on every way out, a failed REQUIRE too.
  struct Release {
    std::mutex& m;
    std::condition_variable& cv;
    bool& go;
    std::atomic<bool>& stop;
    std::thread& t;
    ~Release() {
      {
        std::lock_guard<std::mutex> lock(m);
        go = true;
      }
      cv.notify_one();
      stop.store(true);
      t.join();
    }
  } release{m, cv, go, stop, t};
  while (!opened.load()) std::this_thread::yield();
  REQUIRE(fd.load() >= 0);
  // The thread blocks in a futex wait soon after it opened its file.
  char state = 0;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while ((state = read_thread_state(fd.load())) != 'S' && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  CHECK(state == 'S');
  {
    std::lock_guard<std::mutex> lock(m);
    go = true;
  }
  cv.notify_one();
  // Spinning: on a core or waiting for one, R either way.
  const auto until2 = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while ((state = read_thread_state(fd.load())) != 'R' && std::chrono::steady_clock::now() < until2) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  CHECK(state == 'R');
  ::close(fd.load());
}

namespace {
std::int64_t thread_cpu_ns() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}
}  // namespace

TEST_CASE("no file, no state; a schedstat sample counts the thread's time on a core") {
  CHECK(read_thread_state(-1) == 0);
  CHECK_FALSE(read_schedstat(-1).valid());
  const int fd = open_schedstat();
  if (fd < 0) {
    // A kernel without CONFIG_SCHED_INFO: the runtime does without (no
    // consolidation), and so does this test.
    WARN("no /proc/thread-self/schedstat here");
    return;
  }
  const SchedSample a = read_schedstat(fd);
  REQUIRE(a.valid());
  REQUIRE(a.wait_ns >= 0);
  // 20 ms on a core by the thread's own CPU clock, then a sleep: the
  // switch makes the kernel account the run in schedstat too.
  const std::int64_t c0 = thread_cpu_ns();
  while (thread_cpu_ns() - c0 < 20'000'000) {
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const SchedSample b = read_schedstat(fd);
  REQUIRE(b.valid());
  CHECK(b.run_ns - a.run_ns >= 19'000'000);
  CHECK(b.wait_ns >= a.wait_ns);
  ::close(fd);
}
