// fault_cost.cpp: spindle_fault_cost, the price of a fresh stack page on
// this machine, without spindle. Maps stack-like slots (64 KiB and a guard
// page apart, as stack_pool.cpp lays them out) and times the first write
// to each slot's top page three ways: a plain write (a page fault, what a
// fiber's first run on a fresh stack pays), madvise(MADV_POPULATE_WRITE)
// of that page, and one process_madvise(MADV_POPULATE_WRITE) for 64 pages
// at once; then a second write to the same pages for comparison. The
// floor that docs/decisions/0011-timers.md "Addendum (2026-11-24)" reads
// timers_fire against.
//
//   spindle_fault_cost [SLOTS]      (default 12,800; 3 runs of each way)
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14
#endif

namespace {
using Clock = std::chrono::steady_clock;
constexpr std::size_t kPage = 4096;
constexpr std::size_t kStride = 64 * 1024 + kPage;
constexpr std::size_t kBatch = 64;

enum class Way { write, populate, populate_batch };
const char* name(Way w) {
  switch (w) {
    case Way::write: return "first write (page fault)";
    case Way::populate: return "madvise(MADV_POPULATE_WRITE) per page";
    case Way::populate_batch: return "process_madvise, 64 pages per call";
  }
  return "";
}

double ns_per(Clock::time_point a, Clock::time_point b, std::size_t n) {
  return std::chrono::duration<double, std::nano>(b - a).count() / static_cast<double>(n);
}

// One run: returns false when the kernel refuses the way (too old).
bool run(Way way, std::size_t slots) {
  const std::size_t bytes = kStride * slots;
  auto* p = static_cast<char*>(
      mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
  if (p == MAP_FAILED) {
    std::perror("mmap");
    std::exit(1);
  }
  auto top = [&](std::size_t i) { return p + i * kStride + kStride - kPage; };
  bool ok = true;
  const auto t0 = Clock::now();
  if (way == Way::write) {
    for (std::size_t i = 0; i < slots; ++i) top(i)[kPage - 64] = 1;
  } else if (way == Way::populate) {
    for (std::size_t i = 0; i < slots && ok; ++i) ok = madvise(top(i), kPage, MADV_POPULATE_WRITE) == 0;
  } else {
    const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, getpid(), 0));
    std::vector<iovec> v(kBatch);
    for (std::size_t s = 0; s < slots && ok; s += kBatch) {
      const std::size_t n = slots - s < kBatch ? slots - s : kBatch;
      for (std::size_t k = 0; k < n; ++k) v[k] = iovec{top(s + k), kPage};
      ok = pidfd >= 0 && syscall(SYS_process_madvise, pidfd, v.data(), n, MADV_POPULATE_WRITE, 0) >= 0;
    }
    if (pidfd >= 0) close(pidfd);
  }
  const auto t1 = Clock::now();
  for (std::size_t i = 0; i < slots; ++i) top(i)[kPage - 64] = 2;
  const auto t2 = Clock::now();
  if (ok) {
    std::printf("%-40s %7.0f ns/page, then a write to the present page %4.0f ns\n", name(way),
                ns_per(t0, t1, slots), ns_per(t1, t2, slots));
  } else {
    std::printf("%-40s not supported by this kernel\n", name(way));
  }
  munmap(p, bytes);
  return ok;
}
}  // namespace

int main(int argc, char** argv) {
  const std::size_t slots = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 12800;
  for (Way w : {Way::write, Way::populate, Way::populate_batch}) {
    for (int r = 0; r < 3; ++r) {
      if (!run(w, slots)) break;
    }
  }
  return 0;
}
