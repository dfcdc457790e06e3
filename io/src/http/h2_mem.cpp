// h2_mem.cpp: h2_mem.hpp.
#include "h2_mem.hpp"

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

// Every heap block starts with a Head (16 bytes, so the caller's part
// keeps malloc's alignment): its size class, or kOther with the size
// asked for. Mapped blocks have none (they are found in big_ by address).
constexpr std::size_t kStep = 64;                          // class k holds (k + 1) * kStep bytes
constexpr std::size_t kClasses = H2Mem::kSmall / kStep;    // 16
constexpr std::uint32_t kOther = 0xffffffffu;
struct Head {
  std::uint32_t cls;
  std::uint32_t unused;
  std::size_t len;  // kOther: the bytes asked for
};
static_assert(sizeof(Head) == 16);

std::size_t class_of(std::size_t n) noexcept { return n == 0 ? 0 : (n - 1) / kStep; }
std::size_t class_bytes(std::size_t k) noexcept { return (k + 1) * kStep; }

Head* head_of(void* p) noexcept { return static_cast<Head*>(p) - 1; }

// Lists: one thread's free blocks, a singly linked list per class through
// the blocks' first word. Only its thread touches it.
struct Lists {
  void* first[kClasses] = {};
  std::size_t bytes = 0;
  ~Lists() {
    for (void*& f : first) {
      while (f != nullptr) {
        void* next = *static_cast<void**>(f);
        std::free(head_of(f));
        f = next;
      }
    }
    gone() = true;
  }
  // gone: this thread's Lists were destroyed (thread exit): free directly.
  static bool& gone() noexcept {
    thread_local bool g = false;
    return g;
  }
};

// lists: the calling thread's. Not inlined: a fiber must not keep a
// thread_local's address across a wait, and nothing here waits, but the
// callers are nghttp2's, called from fibers.
[[gnu::noinline]] Lists* lists() noexcept {
  if (Lists::gone()) return nullptr;
  thread_local Lists l;
  return &l;
}

void* heap_alloc(std::size_t n) noexcept {
  if (n <= H2Mem::kSmall) {
    const std::size_t k = class_of(n);
    if (kLists) {
      if (Lists* l = lists(); l != nullptr && l->first[k] != nullptr) {
        void* p = l->first[k];
        l->first[k] = *static_cast<void**>(p);
        l->bytes -= class_bytes(k);
        return p;  // its Head still names class k
      }
    }
    auto* h = static_cast<Head*>(std::malloc(sizeof(Head) + class_bytes(k)));
    if (h == nullptr) return nullptr;
    h->cls = static_cast<std::uint32_t>(k);
    return h + 1;
  }
  if (n > static_cast<std::size_t>(-1) - sizeof(Head)) return nullptr;
  auto* h = static_cast<Head*>(std::malloc(sizeof(Head) + n));
  if (h == nullptr) return nullptr;
  h->cls = kOther;
  h->len = n;
  return h + 1;
}

void heap_free(void* p) noexcept {
  Head* h = head_of(p);
  if (kLists && h->cls != kOther) {
    if (Lists* l = lists(); l != nullptr && l->bytes + class_bytes(h->cls) <= H2Mem::kCacheBytes) {
      *static_cast<void**>(p) = l->first[h->cls];
      l->first[h->cls] = p;
      l->bytes += class_bytes(h->cls);
      return;
    }
  }
  std::free(h);
}

// usable: what a heap block holds.
std::size_t usable(void* p) noexcept {
  const Head* h = head_of(p);
  return h->cls == kOther ? h->len : class_bytes(h->cls);
}

}  // namespace

H2Mem::~H2Mem() {
  for (const Block& b : big_) ::munmap(b.p, b.len);
}

nghttp2_mem H2Mem::mem() noexcept {
  return nghttp2_mem{this, on_malloc, on_free, on_calloc, on_realloc};
}

void* thread_alloc(std::size_t n) noexcept { return heap_alloc(n); }
void thread_free(void* p) noexcept {
  if (p != nullptr) heap_free(p);
}

bool H2Mem::lists_on() noexcept { return kLists; }

std::size_t H2Mem::cached_bytes() noexcept {
  const Lists* l = lists();
  return l == nullptr ? 0 : l->bytes;
}

const H2Mem::Block* H2Mem::find(const void* p) const noexcept {
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
  // Mapped blocks start on a page; most heap blocks do not, and skip the
  // search.
  // (Every page size is a multiple of 4096: the mask rules most out
  // without a division.)
  const auto at = reinterpret_cast<std::uintptr_t>(p);
  if (big_.empty() || at % 4096 != 0 || at % page_size() != 0) return false;
  const auto it = std::find_if(big_.begin(), big_.end(), [p](const Block& b) { return b.p == p; });
  if (it == big_.end()) return false;
  ::munmap(it->p, it->len);
  big_.erase(it);
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
  void* p = heap_alloc(n * size);
  if (p != nullptr) std::memset(p, 0, n * size);
  return p;
}

void* H2Mem::on_realloc(void* p, std::size_t n, void* self) {
  auto* m = static_cast<H2Mem*>(self);
  if (p == nullptr) return on_malloc(n, self);
  const Block* b = reinterpret_cast<std::uintptr_t>(p) % page_size() == 0 ? m->find(p) : nullptr;
  const std::size_t old = b != nullptr ? b->len : usable(p);
  if (n <= old && (b != nullptr || n < kBig || !m->mapping_)) return p;  // fits where it is
  if (b == nullptr && head_of(p)->cls == kOther && (n < kBig || !m->mapping_)) {
    // A large heap block grows in place where glibc can.
    if (n > static_cast<std::size_t>(-1) - sizeof(Head)) return nullptr;
    auto* h = static_cast<Head*>(std::realloc(head_of(p), sizeof(Head) + n));
    if (h == nullptr) return nullptr;
    h->len = n;
    return h + 1;
  }
  // A small block outgrows its class, a mapped block its pages, or (while
  // mapping) a heap block grows to kBig: a new block.
  void* q = on_malloc(n, self);
  if (q == nullptr) return nullptr;  // p stays valid, as realloc leaves it
  std::memcpy(q, p, std::min(old, n));
  on_free(p, self);
  return q;
}

}  // namespace spindle::http::detail
