// fiber_alloc.cpp: Fiber::operator new/delete. A per-thread cache of freed
// blocks, one free list per 64-byte size class up to 1 KiB.
//
// Why: glibc's tcache keeps 7 blocks per size, so a batch of 1,000 spawns
// followed by 1,000 joins sends most blocks through _int_free and the
// unsorted bin (about 150 instructions a fiber, a fifth of spawn_join).
// Measured in docs/runtime.md "Switch and spawn cost".
//
// Who touches what: each thread only its own cache (thread_local). A block
// freed on another thread than the one that allocated it simply joins the
// freeing thread's cache; memory is process-wide, and the last release()
// of a fiber has already synchronised with every earlier user (acq_rel).
// Bounded: at most kMaxPerClass blocks per class per thread, the rest go
// back to malloc; a thread's cache is freed when the thread exits.
//
// Sanitizer builds bypass the cache, so ASan still catches a use after free
// of a fiber and TSan sees malloc's happens-before.
#include <cstdint>
#include <cstdlib>
#include <new>
#include <utility>

#include <spindle/runtime/detail/fiber.hpp>

#include <spindle/runtime/detail/sanitizers.hpp>

namespace spindle::detail {

namespace {
constexpr std::size_t kGranule = 64;
constexpr std::size_t kClasses = 16;  // up to 1 KiB
constexpr std::uint32_t kMaxPerClass = 1024;

struct FreeBlock {
  FreeBlock* next;
};

// Plain data, so the thread_local needs no guard or wrapper: one
// %fs-relative access (initial-exec: spindle is linked into executables).
struct ThreadCache {
  FreeBlock* head[kClasses];
  std::uint32_t count[kClasses];
  bool reaper_armed;
  // Set once the thread's destructors ran: a Fiber released later on this
  // thread (a Task in a static object, say) goes straight to free().
  bool closed;
};

[[gnu::tls_model("initial-exec")]] thread_local ThreadCache t_cache;

// Frees the thread's cached blocks when it exits; constructed (and so
// registered for destruction) the first time the thread caches a block.
struct Reaper {
  ~Reaper() {
    t_cache.closed = true;
    for (auto*& h : t_cache.head) {
      while (h != nullptr) std::free(std::exchange(h, h->next));
    }
  }
};

void arm_reaper() {
  thread_local Reaper reaper;
  (void)reaper;
  t_cache.reaper_armed = true;
}

// Class index for a size, or kClasses when it is too big to cache.
std::size_t size_class(std::size_t size) noexcept { return (size - 1) / kGranule; }

void* allocate_raw(std::size_t size) {
  void* p = std::malloc(size);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
}  // namespace

// Never inlined (nor operator delete), so no caller holds t_cache's address
// across a switch: with LTO, a function that allocates a fiber, waits, and
// frees one could otherwise reuse the first thread's cache after it
// resumed on another thread (docs/decisions/0012-lto.md).
[[gnu::noinline]] void* Fiber::operator new(std::size_t size) {
  const std::size_t c = size_class(size);
  if (SPINDLE_SANITIZED || c >= kClasses) return allocate_raw(size);
  ThreadCache& tc = t_cache;
  if (FreeBlock* b = tc.head[c]) {
    tc.head[c] = b->next;
    --tc.count[c];
    return b;
  }
  // Round up to the class size, so any block of the class fits any size in it.
  return allocate_raw((c + 1) * kGranule);
}

[[gnu::noinline]] void Fiber::operator delete(void* p, std::size_t size) noexcept {
  if (p == nullptr) return;
  const std::size_t c = size_class(size);
  if (SPINDLE_SANITIZED || c >= kClasses) {
    std::free(p);
    return;
  }
  ThreadCache& tc = t_cache;
  if (tc.closed || tc.count[c] >= kMaxPerClass) {
    std::free(p);
    return;
  }
  if (!tc.reaper_armed) [[unlikely]] arm_reaper();
  auto* b = static_cast<FreeBlock*>(p);
  b->next = tc.head[c];
  tc.head[c] = b;
  ++tc.count[c];
}

}  // namespace spindle::detail
