// h2_mem.cpp: h2_mem.hpp.
#include "h2_mem.hpp"

#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

namespace spindle::http::detail {

namespace {

std::size_t page_size() noexcept {
  static const std::size_t p = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return p;
}

// Under AddressSanitizer every block is its exact size from malloc, so
// its checks see each overrun and each use after free.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kLists = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kLists = false;
#else
constexpr bool kLists = true;
#endif
#else
constexpr bool kLists = true;
#endif

// Size classes are glibc's own chunk sizes (64-bit: 32, 48, ..., 1040
// bytes, a block holding the chunk less 8), so a block asked for at its
// class's size costs no byte more than malloc would give for the same
// request, and a block names its class without a header:
// malloc_usable_size() reads it from glibc's chunk (in use: chunk - 8).
constexpr std::size_t kChunkStep = 16;
constexpr std::size_t kMinChunk = 32;
constexpr std::size_t kClasses = (H2Mem::kSmall + 8 + kChunkStep - 1 - kMinChunk) / kChunkStep + 1;  // 64

constexpr std::size_t chunk_for(std::size_t n) noexcept {
  const std::size_t c = (n + 8 + kChunkStep - 1) / kChunkStep * kChunkStep;
  return std::max(c, kMinChunk);
}
constexpr std::size_t class_of_chunk(std::size_t c) noexcept { return (c - kMinChunk) / kChunkStep; }
static_assert(class_of_chunk(chunk_for(H2Mem::kSmall)) == kClasses - 1);
static_assert(chunk_for(0) == 32 && chunk_for(24) == 32 && chunk_for(25) == 48);

// Lists: one thread's free blocks, a singly linked list per class through
// the blocks' first word. Only its thread touches it. Trivially
// destructible (constant-initialized, no guard on each access); Reaper
// empties it at the thread's exit and marks it gone.
struct Lists {
  void* first[kClasses];
  std::size_t bytes;  // chunk bytes held
  bool armed;         // Reaper registered
  bool gone;          // the thread is exiting: free directly
};
constinit thread_local Lists t_lists{};

struct Reaper {
  ~Reaper() {
    Lists& l = t_lists;
    for (void*& f : l.first) {
      while (f != nullptr) {
        void* next = *static_cast<void**>(f);
        std::free(f);
        f = next;
      }
    }
    l.bytes = 0;
    l.gone = true;
  }
};

// lists: the calling thread's, or null once it is exiting. Not inlined: a
// fiber must not keep a thread_local's address across a wait (nothing
// here waits, but the callers, nghttp2's, run on fibers).
[[gnu::noinline]] Lists* lists() noexcept {
  Lists& l = t_lists;
  if (l.gone) return nullptr;
  if (!l.armed) [[unlikely]] {
    thread_local Reaper reaper;
    (void)reaper;
    l.armed = true;
  }
  return &l;
}

void* heap_alloc(std::size_t n) noexcept {
  if (!kLists || n > H2Mem::kSmall) return std::malloc(n == 0 ? 1 : n);
  const std::size_t c = chunk_for(n);
  const std::size_t k = class_of_chunk(c);
  if (Lists* l = lists(); l != nullptr && l->first[k] != nullptr) {
    void* p = l->first[k];
    l->first[k] = *static_cast<void**>(p);
    l->bytes -= c;
    return p;
  }
  return std::malloc(c - 8);  // exactly chunk c
}

void heap_free(void* p) noexcept {
  if (kLists) {
    const std::size_t c = ::malloc_usable_size(p) + 8;
    if (c <= chunk_for(H2Mem::kSmall) && c % kChunkStep == 0) {
      if (Lists* l = lists(); l != nullptr && l->bytes + c <= H2Mem::kCacheBytes) {
        const std::size_t k = class_of_chunk(c);
        *static_cast<void**>(p) = l->first[k];
        l->first[k] = p;
        l->bytes += c;
        return;
      }
    }
  }
  std::free(p);
}

}  // namespace

void* thread_alloc(std::size_t n) noexcept { return heap_alloc(n); }
void thread_free(void* p) noexcept {
  if (p != nullptr) heap_free(p);
}

bool H2Mem::lists_on() noexcept { return kLists; }

std::size_t H2Mem::cached_bytes() noexcept {
  const Lists* l = lists();
  return l == nullptr ? 0 : l->bytes;
}

void H2Mem::trim_thread() noexcept {
  Lists* l = lists();
  if (l == nullptr) return;
  for (void*& f : l->first) {
    while (f != nullptr) {
      void* next = *static_cast<void**>(f);
      std::free(f);
      f = next;
    }
  }
  l->bytes = 0;
}

H2Mem::~H2Mem() {
  for (const Block& b : big_) ::munmap(b.p, b.len);
}

nghttp2_mem H2Mem::mem() noexcept {
  return nghttp2_mem{this, on_malloc, on_free, on_calloc, on_realloc};
}

const H2Mem::Block* H2Mem::find(const void* p) const noexcept {
  // Mapped blocks start on a page; most heap blocks do not. (Every page
  // size is a multiple of 4096: the mask rules most out without a
  // division.)
  const auto at = reinterpret_cast<std::uintptr_t>(p);
  if (big_.empty() || at % 4096 != 0 || at % page_size() != 0) return nullptr;
  for (const Block& b : big_) {
    if (b.p == p) return &b;
  }
  return nullptr;
}

void* H2Mem::alloc_big(std::size_t n) noexcept {
  const std::size_t len = (n + page_size() - 1) / page_size() * page_size();
  void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  try {
    big_.push_back({p, len});
  } catch (const std::bad_alloc&) {
    ::munmap(p, len);
    return nullptr;
  }
  return p;
}

bool H2Mem::free_big(void* p) noexcept {
  const Block* b = find(p);
  if (b == nullptr) return false;
  ::munmap(b->p, b->len);
  big_.erase(big_.begin() + (b - big_.data()));
  return true;
}

void H2Mem::forget_big() noexcept {
  for (const Block& b : big_) ::madvise(b.p, b.len, MADV_DONTNEED);
}

std::size_t H2Mem::mapped_bytes() const noexcept {
  std::size_t n = 0;
  for (const Block& b : big_) n += b.len;
  return n;
}

void* H2Mem::on_malloc(std::size_t n, void* self) {
  auto* m = static_cast<H2Mem*>(self);
  return n >= kBig && m->mapping_ ? m->alloc_big(n) : heap_alloc(n);
}

void H2Mem::on_free(void* p, void* self) {
  if (p != nullptr && !static_cast<H2Mem*>(self)->free_big(p)) heap_free(p);
}

void* H2Mem::on_calloc(std::size_t n, std::size_t size, void* self) {
  if (size != 0 && n > static_cast<std::size_t>(-1) / size) return nullptr;
  auto* m = static_cast<H2Mem*>(self);
  // Fresh anonymous pages read as zeros.
  if (n * size >= kBig && m->mapping_) return m->alloc_big(n * size);
  if (n * size > kSmall) return std::calloc(n, size);  // calloc knows fresh pages need no zeroing
  void* p = heap_alloc(n * size);
  if (p != nullptr) std::memset(p, 0, n * size);
  return p;
}

void* H2Mem::on_realloc(void* p, std::size_t n, void* self) {
  auto* m = static_cast<H2Mem*>(self);
  if (p == nullptr) return on_malloc(n, self);
  const Block* b = m->find(p);
  if (b == nullptr && (n < kBig || !m->mapping_)) return std::realloc(p, n);  // any heap block is malloc's
  if (b != nullptr && n <= b->len) return p;  // fits its pages
  // A mapped block grows past its pages, or (while mapping) a heap block
  // grows to kBig: a new mapping.
  const std::size_t old = b != nullptr ? b->len : ::malloc_usable_size(p);
  void* q = m->alloc_big(n);
  if (q == nullptr) return nullptr;  // p stays valid, as realloc leaves it
  std::memcpy(q, p, std::min(old, n));
  on_free(p, self);
  return q;
}

}  // namespace spindle::http::detail
