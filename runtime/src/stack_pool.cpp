#include "stack_pool.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>

#include "check.hpp"
#include "sanitizers.hpp"

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
  for (auto& [p, n] : slabs_) unmap(p, n);
}

void StackPool::grow_locked() {
  const bool guard = guard_budget_ >= kSlabStacks;
  if (guard_pages_ && !guard && !warned_) {
    warned_ = true;
    std::fprintf(stderr,
                 "spindle: many live fibers; new stacks get no guard page "
                 "(vm.max_map_count would run out)\n");
  }
  const std::size_t g = guard ? page_size() : 0;
  const std::size_t stride = default_size_ + g;
  const std::size_t bytes = stride * kSlabStacks;
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  SPINDLE_CHECK(p != MAP_FAILED, "mmap of a stack slab failed (out of memory?)");
  slabs_.emplace_back(p, bytes);
  if (guard) guard_budget_ -= kSlabStacks;
  // Push in reverse so the lowest stack is handed out first.
  for (std::size_t i = kSlabStacks; i-- > 0;) {
    char* base = static_cast<char*>(p) + i * stride;
    if (g) SPINDLE_CHECK(mprotect(base, g, PROT_NONE) == 0, "mprotect of a guard page failed");
    free_.push_back(StackSlot{base, default_size_, g});
  }
}

StackSlot StackPool::map_single(std::size_t size) {
  const std::size_t g = guard_pages_ ? page_size() : 0;
  size = round_up(size, page_size());
  void* p = mmap(nullptr, size + g, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  SPINDLE_CHECK(p != MAP_FAILED, "mmap of a fiber stack failed (out of memory?)");
  if (g) SPINDLE_CHECK(mprotect(p, g, PROT_NONE) == 0, "mprotect of a guard page failed");
  return StackSlot{p, size, g};
}

StackSlot StackPool::allocate(std::size_t size) {
  if (size != 0 && round_up(size, page_size()) != default_size_) return map_single(size);
  std::lock_guard lk(mu_);
  if (free_.empty()) grow_locked();
  StackSlot s = free_.back();
  free_.pop_back();
  return s;
}

void StackPool::free(StackSlot s) noexcept {
  if (s.size != default_size_) {
    unmap(s.base, s.size + s.guard);
    return;
  }
  std::lock_guard lk(mu_);
  free_.push_back(s);
}

std::size_t StackPool::take(std::vector<StackSlot>& out, std::size_t n) {
  std::lock_guard lk(mu_);
  if (free_.empty()) grow_locked();
  std::size_t k = 0;
  while (k < n && !free_.empty()) {
    out.push_back(free_.back());
    free_.pop_back();
    ++k;
  }
  return k;
}

void StackPool::give(std::vector<StackSlot>& in, std::size_t keep) {
  std::lock_guard lk(mu_);
  while (in.size() > keep) {
    free_.push_back(in.back());
    in.pop_back();
  }
}

StackCache::~StackCache() { pool_.give(cache_, 0); }

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
  cache_.push_back(s);
  if (cache_.size() > kMax) {
    // Give back the coldest half (the front of the vector).
    std::vector<StackSlot> cold(cache_.begin(), cache_.begin() + kMax / 2);
    cache_.erase(cache_.begin(), cache_.begin() + kMax / 2);
    pool_.give(cold, 0);
  }
}

}  // namespace spindle::detail
