#include "stack_pool.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <fstream>
#include <new>

#include "check.hpp"
#include <spindle/runtime/detail/sanitizers.hpp>

#ifdef SPINDLE_ASAN
extern "C" void __asan_unpoison_memory_region(void const volatile* addr, size_t size);
#endif

namespace spindle::detail {

namespace {
constexpr std::size_t kSlabStacks = 64;

// unmap: munmap, after clearing ASan's shadow of the range. A finished fiber
// never unwinds its frames, so their redzones stay in the shadow; this
// libasan does not clear it on munmap, and glibc may later map a thread's
// stack and TLS at the same addresses (seen: a thread_local read reported
// as stack-buffer-overflow in runtime_migration, one run in four).
void unmap(void* p, std::size_t n) noexcept {
#ifdef SPINDLE_ASAN
  // The guard page is PROT_NONE but its shadow is ordinary memory.
  __asan_unpoison_memory_region(p, n);
#endif
  munmap(p, n);
}

std::size_t page_size() {
  static const std::size_t p = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return p;
}

std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102  // Linux 6.13; older headers lack it
#endif

// Whether this kernel has guard regions: unknown (-1), no (0), yes (1).
// Probed by the first guard install; relaxed, since every thread that
// probes reaches the same answer.
std::atomic<int> g_guard_regions{-1};

std::size_t max_map_count() {
  std::ifstream in("/proc/sys/vm/max_map_count");
  std::size_t n = 0;
  if (in >> n && n > 0) return n;
  return 65530;
}
}  // namespace

StackPool::StackPool(std::size_t default_size, bool guard_pages)
    : default_size_(round_up(default_size < 16384 ? 16384 : default_size, page_size())),
      guard_pages_(guard_pages),
      // Two map entries per guard; leave the other half to the program.
      guard_budget_(guard_pages ? max_map_count() / 4 : 0) {}

StackPool::~StackPool() {
  if (leaked_) return;
  for (auto& [p, n] : slabs_) unmap(p, n);
}

void StackPool::leak() noexcept {
  std::lock_guard lk(mu_);
  leaked_ = true;
}

// put_guard: makes the page at `page` a guard: a guard region if the kernel
// has them (region = true), else nothing (region = false; the caller then
// decides about PROT_NONE, which costs map entries).
void StackPool::put_guard(char* page, bool& region) noexcept {
  region = false;
  if (g_guard_regions.load(std::memory_order_relaxed) == 0) return;
  if (madvise(page, page_size(), MADV_GUARD_INSTALL) == 0) {
    g_guard_regions.store(1, std::memory_order_relaxed);
    region = true;
    return;
  }
  g_guard_regions.store(0, std::memory_order_relaxed);
}

void StackPool::grow_locked() {
  const std::size_t pg = page_size();
  // A slab always leaves room for guards; whether they are installed is
  // decided per page below.
  const std::size_t stride = default_size_ + (guard_pages_ ? pg : 0);
  const std::size_t bytes = stride * kSlabStacks;
  // The lists' room first: a bad_alloc after the mmap below lost the slab
  // (mapped, in no list) or some of its stacks. Thrown from here, it
  // leaves the pool as it was, and the fiber that needed a stack waits for
  // memory (Worker::prepare). free_ gets room for every default stack
  // there will be, so that free() and give() (a finishing fiber's stack,
  // in noexcept code) never allocate: free_ never holds more than all.
  // Both grow by doubling, as push_back would.
  const auto room = [](auto& v, std::size_t need) {
    if (v.capacity() < need) v.reserve(std::max(2 * v.capacity(), need));
  };
  room(slabs_, slabs_.size() + 1);
  room(free_, (slabs_.size() + 1) * kSlabStacks);
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  SPINDLE_CHECK(p != MAP_FAILED, "mmap of a stack slab failed (out of memory?)");
  slabs_.emplace_back(p, bytes);  // within capacity
  bool regions = false;
  if (guard_pages_) put_guard(static_cast<char*>(p), regions);
  const bool protect = guard_pages_ && !regions && guard_budget_ >= kSlabStacks;
  // Once per process, however many runtimes: a program that makes runtimes
  // in a loop (a benchmark, a test) is told once.
  static std::atomic<bool> warned{false};
  if (guard_pages_ && !regions && !protect && !warned.exchange(true, std::memory_order_relaxed)) {
    std::fprintf(stderr,
                 "spindle: many live fibers; new stacks get no guard page "
                 "(vm.max_map_count would run out), only a canary\n");
  }
  if (protect) guard_budget_ -= kSlabStacks;
  // Push in reverse so the lowest stack is handed out first. Without a
  // guard, the page reserved for it stays below the stack, untouched: base
  // moves past it and guard is 0, so an overflow first breaks the canary
  // (stack_canary.hpp) and then writes into that spare page before it
  // reaches the next slot's stack.
  for (std::size_t i = kSlabStacks; i-- > 0;) {
    char* base = static_cast<char*>(p) + i * stride;
    std::size_t g = 0;
    if (regions) {
      bool ok = i == 0;  // slot 0's was installed by the probe above
      if (!ok) put_guard(base, ok);
      SPINDLE_CHECK(ok, "madvise(MADV_GUARD_INSTALL) of a guard page failed");
      g = pg;
    } else if (protect) {
      SPINDLE_CHECK(mprotect(base, pg, PROT_NONE) == 0, "mprotect of a guard page failed");
      g = pg;
    } else if (guard_pages_) {
      base += pg;
    }
    free_.push_back(StackSlot{base, default_size_, g});  // within capacity
  }
  dirty_.store(free_.size(), std::memory_order_relaxed);
}

StackSlot StackPool::map_single(std::size_t size) {
  const std::size_t pg = page_size();
  const std::size_t g = guard_pages_ ? pg : 0;
  size = round_up(size, pg);
  void* p = mmap(nullptr, size + g, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  SPINDLE_CHECK(p != MAP_FAILED, "mmap of a fiber stack failed (out of memory?)");
  if (g) {
    bool region = false;
    put_guard(static_cast<char*>(p), region);
    if (!region) SPINDLE_CHECK(mprotect(p, g, PROT_NONE) == 0, "mprotect of a guard page failed");
  }
  return StackSlot{p, size, g};
}

StackSlot StackPool::pop_locked() {
  if (!free_.empty()) {
    StackSlot s = free_.back();
    free_.pop_back();
    dirty_.store(free_.size(), std::memory_order_relaxed);
    return s;
  }
  if (released_.empty()) grow_locked();
  if (!free_.empty()) return pop_locked();
  StackSlot s = released_.back();
  released_.pop_back();
  return s;
}

StackSlot StackPool::allocate(std::size_t size) {
  if (size != 0 && round_up(size, page_size()) != default_size_) return map_single(size);
  std::lock_guard lk(mu_);
  return pop_locked();
}

void StackPool::free(StackSlot s) noexcept {
  if (s.size != default_size_) {
    unmap(s.base, s.size + s.guard);
    return;
  }
  std::lock_guard lk(mu_);
  free_.push_back(s);  // within capacity (grow_locked)
  dirty_.store(free_.size(), std::memory_order_relaxed);
}

std::size_t StackPool::take(std::vector<StackSlot>& out, std::size_t n) {
  std::lock_guard lk(mu_);
  std::size_t k = 0;
  for (; k < n; ++k) out.push_back(pop_locked());
  return k;
}

void StackPool::give(const StackSlot* first, const StackSlot* last) noexcept {
  std::lock_guard lk(mu_);
  free_.insert(free_.end(), first, last);  // within capacity (grow_locked)
  dirty_.store(free_.size(), std::memory_order_relaxed);
}

// noexcept: an idle worker's park calls it, in the scheduler's context, and
// an idle park is no reason to end the process out of memory: the pass is
// skipped instead (or, past the madvise, its slots are dropped: their pages
// are given back, only their addresses stay reserved).
bool StackPool::scavenge_some() noexcept {
  if (dirty_.load(std::memory_order_relaxed) <= kKeepDirty) return false;
  std::vector<StackSlot> cold;
  {
    std::lock_guard lk(mu_);
    if (free_.size() <= kKeepDirty) return false;
    const std::size_t n = std::min(free_.size() - kKeepDirty, kScavengeChunk);
    try {
      cold.reserve(n);
    } catch (const std::bad_alloc&) {
      return false;
    }
    // The oldest are at the front; erasing them moves the rest down, which
    // is at most kKeepDirty + kScavengeChunk slots whenever there is work.
    cold.assign(free_.begin(), free_.begin() + static_cast<std::ptrdiff_t>(n));  // within capacity
    free_.erase(free_.begin(), free_.begin() + static_cast<std::ptrdiff_t>(n));
    dirty_.store(free_.size(), std::memory_order_relaxed);
  }
  // Outside the lock: the stacks in `cold` are in no list, so nobody can
  // hand them out meanwhile. Adjacent stacks (one slab's, in address
  // order) go in one call; a guard between them is covered too, which
  // keeps both kinds of guard (DONTNEED drops no guard region and a
  // PROT_NONE page has nothing to drop).
  std::sort(cold.begin(), cold.end(),
            [](const StackSlot& a, const StackSlot& b) { return a.base < b.base; });
  std::size_t i = 0;
  while (i < cold.size()) {
    char* lo = cold[i].bottom();
    char* hi = cold[i].top();
    std::size_t j = i + 1;
    while (j < cold.size() && static_cast<char*>(cold[j].base) <= hi + page_size() &&
           cold[j].base >= hi) {
      hi = cold[j].top();
      ++j;
    }
    (void)madvise(lo, static_cast<std::size_t>(hi - lo), MADV_DONTNEED);
    i = j;
  }
  std::lock_guard lk(mu_);
  try {
    released_.insert(released_.end(), cold.begin(), cold.end());
  } catch (const std::bad_alloc&) {
    return false;  // cold's slots are dropped (above)
  }
  return true;
}

std::size_t StackPool::released_count() const {
  std::lock_guard lk(mu_);
  return released_.size();
}

StackCache::~StackCache() { pool_.give(cache_.data(), cache_.data() + cache_.size()); }

StackSlot StackCache::get_slow(std::size_t size) {
  if (size != 0 && size != pool_.default_size()) return pool_.allocate(size);
  if (cache_.empty()) pool_.take(cache_, kBatch);
  StackSlot s = cache_.back();
  cache_.pop_back();
  return s;
}

void StackCache::put_slow(StackSlot s) noexcept {
  if (s.size != pool_.default_size()) {
    pool_.free(s);
    return;
  }
  cache_.push_back(s);  // within capacity: reserve(kMax + 1), and never above kMax + 1
  if (cache_.size() > kMax) {
    // Give back the coldest half (the front of the vector), straight from
    // the cache: a list for it allocated, in this noexcept function.
    pool_.give(cache_.data(), cache_.data() + kMax / 2);
    cache_.erase(cache_.begin(), cache_.begin() + kMax / 2);
  }
}

}  // namespace spindle::detail
