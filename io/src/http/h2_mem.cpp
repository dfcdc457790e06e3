// h2_mem.cpp: h2_mem.hpp.
#include "h2_mem.hpp"

#include <malloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

namespace spindle::http::detail {

namespace {
std::size_t page_size() noexcept {
  static const std::size_t p = static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return p;
}
}  // namespace

H2Mem::~H2Mem() {
  for (const Block& b : big_) ::munmap(b.p, b.len);
}

nghttp2_mem H2Mem::mem() noexcept {
  return nghttp2_mem{this, on_malloc, on_free, on_calloc, on_realloc};
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
  return n >= kBig && m->mapping_ ? m->alloc_big(n) : std::malloc(n);
}

void H2Mem::on_free(void* p, void* self) {
  if (p != nullptr && !static_cast<H2Mem*>(self)->free_big(p)) std::free(p);
}

void* H2Mem::on_calloc(std::size_t n, std::size_t size, void* self) {
  if (size != 0 && n > static_cast<std::size_t>(-1) / size) return nullptr;
  auto* m = static_cast<H2Mem*>(self);
  // Fresh anonymous pages read as zeros.
  return n * size >= kBig && m->mapping_ ? m->alloc_big(n * size) : std::calloc(n, size);
}

void* H2Mem::on_realloc(void* p, std::size_t n, void* self) {
  auto* m = static_cast<H2Mem*>(self);
  if (p == nullptr) return on_malloc(n, self);
  const Block* b = m->find(p);
  if (b == nullptr && (n < kBig || !m->mapping_)) return std::realloc(p, n);
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
