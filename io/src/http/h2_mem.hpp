// h2_mem.hpp: the allocator one server connection's nghttp2 session uses
// (nghttp2_session_server_new3), so that an idle connection keeps no more
// of its session resident than it needs (docs/decisions/0018-idle-release.md,
// addendum "HTTP/2 connections").
//
// nghttp2 allocates its outbound frame buffer (16,394 bytes: one frame of
// the largest default size and its header) when the session starts and
// keeps it for the session's life; from the heap, its pages stay resident
// once any frame has touched them, and their neighbours' frees cannot give
// them back. The blocks of kBig bytes or more that the session allocates
// while it is made (map_big: the frame buffer, nothing else in nghttp2
// 1.52) are mapped on their own pages here instead: only the pages a
// frame touched are resident, and forget_big() gives them back while the
// session has nothing to send. Every other block comes from malloc: a
// large block made later (the stream map grown past 16 KiB by hundreds of
// streams, a large header field) may hold state the session still needs,
// and a client could make it cost an mmap each.
//
// Small blocks (up to kSmall bytes) go through a free list per thread and
// size class: nghttp2 makes and frees four per request (the stream, the
// response's HEADERS item and its copied fields, the DATA item), and
// under h2load's ten streams per read glibc's tcache (seven blocks per
// size) overflowed into its slow paths: malloc and free were ~16% of a
// server's user-space instructions (docs/decisions/0019-http2.md "Cost
// per request"). The server's stream objects come from the same lists
// (ThreadListAlloc). The classes are glibc's chunk sizes, so a block costs
// what malloc would give it and names its class without a header
// (malloc_usable_size); every block, listed or not, is malloc's. Each
// thread keeps at most kCacheBytes of chunks; the rest is freed.
// Blocks freed on another thread than the one that made them go to that
// thread's lists (no lock: each list is its thread's). Under
// AddressSanitizer the lists are off and every block has its exact size,
// so it sees every overrun and every use after free.
//
// Who may touch it: the session's calls, all made under the connection's
// lock (or before or after any other fiber can see the session), so it
// needs no lock of its own.
#pragma once

#include <nghttp2/nghttp2.h>

#include <cstddef>
#include <new>
#include <vector>

namespace spindle::http::detail {

class H2Mem {
 public:
  // A block this large or larger, made while map_big is on, gets pages of
  // its own.
  static constexpr std::size_t kBig = 16 * 1024;
  // Blocks up to this size come from the thread's free lists.
  static constexpr std::size_t kSmall = 1024;
  // What one thread's free lists may hold, in glibc chunk bytes.
  static constexpr std::size_t kCacheBytes = 64 * 1024;

  H2Mem() = default;
  ~H2Mem();  // after the session is deleted: unmaps what it left
  H2Mem(const H2Mem&) = delete;
  H2Mem& operator=(const H2Mem&) = delete;

  // mem: the nghttp2_mem for nghttp2_session_server_new3; `this` must
  // outlive the session.
  nghttp2_mem mem() noexcept;

  // map_big: on around the session's making (nghttp2_session_server_new3),
  // off after it.
  void map_big(bool on) noexcept { mapping_ = on; }

  // forget_big: the mapped blocks' pages are given back (MADV_DONTNEED:
  // they read as zeros the next time they are touched). Only while the
  // session has nothing to send (nghttp2_session_want_write() == 0): its
  // frame buffer then holds no byte it will read again (no outbound item
  // is active, and the buffer was reset after the last frame went; each
  // frame is packed from its start). The connection calls it when it is
  // released.
  void forget_big() noexcept;

  // mapped_bytes: the pages mapped here now, in bytes (for the tests).
  std::size_t mapped_bytes() const noexcept;
  // cached_bytes: what the calling thread's free lists hold (the tests).
  static std::size_t cached_bytes() noexcept;
  // lists_on: false under AddressSanitizer (file comment).
  static bool lists_on() noexcept;
  // trim_thread: the calling thread's lists are emptied (the tests).
  static void trim_thread() noexcept;

 private:
  struct Block {
    void* p;
    std::size_t len;  // mapped length, whole pages
  };
  void* alloc_big(std::size_t n) noexcept;
  bool free_big(void* p) noexcept;  // false: not a mapped block
  const Block* find(const void* p) const noexcept;  // null: a heap block

  static void* on_malloc(std::size_t n, void* self);
  static void on_free(void* p, void* self);
  static void* on_calloc(std::size_t n, std::size_t size, void* self);
  static void* on_realloc(void* p, std::size_t n, void* self);

  std::vector<Block> big_;  // the frame buffer (one block)
  bool mapping_ = false;
};

// thread_alloc / thread_free: a block of n bytes from / back to the
// calling thread's free lists (H2Mem's small blocks; past kSmall, malloc).
// thread_free takes a block of thread_alloc's from any thread. Null: no
// memory.
void* thread_alloc(std::size_t n) noexcept;
void thread_free(void* p) noexcept;

// ThreadListAlloc: thread_alloc as an allocator, for the connection's
// per-stream objects (std::allocate_shared): one malloc and free less per
// request.
template <class T>
struct ThreadListAlloc {
  using value_type = T;
  ThreadListAlloc() = default;
  template <class U>
  ThreadListAlloc(const ThreadListAlloc<U>&) noexcept {}
  static_assert(alignof(T) <= alignof(std::max_align_t), "malloc's alignment only");
  T* allocate(std::size_t n) {
    if (n > static_cast<std::size_t>(-1) / sizeof(T)) throw std::bad_alloc();
    void* p = thread_alloc(n * sizeof(T));
    if (p == nullptr) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t) noexcept { thread_free(p); }
  template <class U>
  bool operator==(const ThreadListAlloc<U>&) const noexcept {
    return true;
  }
};

}  // namespace spindle::http::detail
