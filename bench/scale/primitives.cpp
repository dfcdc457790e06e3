// primitives.cpp: spindle_primitives, what the operations under a runtime
// cost on this machine, so that figures from two machines (the 2-core VM,
// a lent 16-core one) can be told apart by their hardware and kernel before
// anyone blames the code: a clock read (vDSO or not), a system call, a
// spin-wait hint, a fresh anonymous page, a 16 KiB copy. No spindle code.
//
// Usage: spindle_primitives   (two passes; each line: ns per operation)
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <x86intrin.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>

namespace {

using Clock = std::chrono::steady_clock;
volatile long g_sink;

template <class F>
double ns_per(F f, long n) {
  const auto t0 = Clock::now();
  for (long i = 0; i < n; ++i) f();
  return std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / static_cast<double>(n);
}

void pass() {
  timespec ts{};
  std::printf("clock_gettime(MONOTONIC)           %8.1f ns\n",
              ns_per([&] { clock_gettime(CLOCK_MONOTONIC, &ts); g_sink = g_sink + ts.tv_nsec; }, 2'000'000));
  std::printf("clock_gettime(MONOTONIC_COARSE)    %8.1f ns\n",
              ns_per([&] { clock_gettime(CLOCK_MONOTONIC_COARSE, &ts); g_sink = g_sink + ts.tv_nsec; }, 2'000'000));
  std::printf("clock_gettime(THREAD_CPUTIME_ID)   %8.1f ns\n",
              ns_per([&] { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts); g_sink = g_sink + ts.tv_nsec; }, 500'000));
  std::printf("system call (getppid)              %8.1f ns\n",
              ns_per([] { g_sink = g_sink + syscall(SYS_getppid); }, 1'000'000));
  std::printf("pause instruction                  %8.1f ns\n", ns_per([] { _mm_pause(); }, 2'000'000));
  std::printf("rdtsc                              %8.1f ns\n",
              ns_per([] { g_sink = g_sink + static_cast<long>(__rdtsc()); }, 2'000'000));
  // The first write to each page of a fresh mapping: the kernel allocates,
  // zeroes and charges a page (what a fiber's first run on a new stack pays).
  constexpr long kPages = 20'000;
  auto* p = static_cast<char*>(mmap(nullptr, 4096 * kPages, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (p != MAP_FAILED) {
    long i = 0;
    std::printf("first write to a fresh page        %8.1f ns\n", ns_per([&] { p[4096 * i++] = 1; }, kPages));
    munmap(p, 4096 * kPages);
  }
  static char a[16384], b[16384];
  std::printf("memcpy of 16 KiB (cached)          %8.1f ns\n",
              ns_per([&] { std::memcpy(a, b, sizeof a); g_sink = g_sink + a[100]; }, 200'000));
}

}  // namespace

int main() {
  for (int i = 0; i < 2; ++i) {
    std::printf("pass %d\n", i + 1);
    pass();
  }
}
