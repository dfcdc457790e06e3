// h2_mem_test.cpp: the allocator of a server connection's nghttp2 session
// (io/src/http/h2_mem.hpp): large blocks on pages of their own, given back
// by forget_big, the bytes kept across realloc; and a real session's frame
// buffer going through it.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nghttp2/nghttp2.h>

#include "h2_mem.hpp"

using spindle::http::detail::H2Mem;

namespace {

std::size_t page() { return static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)); }

// resident_pages: how many of the pages of [p, p + n) are in memory.
std::size_t resident_pages(void* p, std::size_t n) {
  std::vector<unsigned char> v((n + page() - 1) / page());
  REQUIRE(::mincore(p, n, v.data()) == 0);
  std::size_t k = 0;
  for (unsigned char c : v) k += c & 1;
  return k;
}

std::string frame(std::uint8_t type, std::uint8_t flags, std::uint32_t stream, const std::string& payload) {
  std::string f;
  const auto n = static_cast<std::uint32_t>(payload.size());
  f += static_cast<char>(n >> 16);
  f += static_cast<char>(n >> 8);
  f += static_cast<char>(n);
  f += static_cast<char>(type);
  f += static_cast<char>(flags);
  for (int sh = 24; sh >= 0; sh -= 8) f += static_cast<char>((stream >> sh) & 0xff);
  return f + payload;
}

}  // namespace

TEST_CASE("h2 mem: blocks of kBig or more made while mapping are mapped; realloc across the line keeps the bytes") {
  H2Mem m;
  nghttp2_mem a = m.mem();
  m.map_big(true);
  void* small = a.malloc(100, a.mem_user_data);
  REQUIRE(small != nullptr);
  CHECK(m.mapped_bytes() == 0);
  std::memset(small, 'a', 100);

  void* big = a.malloc(H2Mem::kBig + 10, a.mem_user_data);
  REQUIRE(big != nullptr);
  const std::size_t one = (H2Mem::kBig + 10 + page() - 1) / page() * page();
  CHECK(m.mapped_bytes() == one);
  CHECK(reinterpret_cast<std::uintptr_t>(big) % page() == 0);
  std::memset(big, 'b', H2Mem::kBig + 10);

  // A heap block that grows past the line moves onto pages of its own.
  small = a.realloc(small, H2Mem::kBig, a.mem_user_data);
  REQUIRE(small != nullptr);
  CHECK(m.mapped_bytes() == one + H2Mem::kBig);
  CHECK(std::string(static_cast<char*>(small), 100) == std::string(100, 'a'));

  // A mapped block that fits its pages stays; one that outgrows them moves.
  CHECK(a.realloc(big, H2Mem::kBig + 20, a.mem_user_data) == big);
  big = a.realloc(big, 4 * H2Mem::kBig, a.mem_user_data);
  REQUIRE(big != nullptr);
  CHECK(std::string(static_cast<char*>(big), H2Mem::kBig + 10) == std::string(H2Mem::kBig + 10, 'b'));
  CHECK(m.mapped_bytes() == H2Mem::kBig + 4 * H2Mem::kBig);

  auto* zeros = static_cast<unsigned char*>(a.calloc(2, H2Mem::kBig, a.mem_user_data));
  REQUIRE(zeros != nullptr);
  CHECK(std::all_of(zeros, zeros + 2 * H2Mem::kBig, [](unsigned char c) { return c == 0; }));
  CHECK(a.calloc(SIZE_MAX / 2, 4, a.mem_user_data) == nullptr);  // n * size overflows

  // Once the session is made, large blocks come from malloc (the stream
  // map grown large, a large header field): never mapped, never forgotten.
  m.map_big(false);
  const std::size_t mapped = m.mapped_bytes();
  void* later = a.malloc(2 * H2Mem::kBig, a.mem_user_data);
  REQUIRE(later != nullptr);
  CHECK(m.mapped_bytes() == mapped);
  std::memset(later, 'c', 2 * H2Mem::kBig);
  m.forget_big();
  CHECK(static_cast<char*>(later)[2 * H2Mem::kBig - 1] == 'c');
  void* grown = a.realloc(later, 4 * H2Mem::kBig, a.mem_user_data);
  REQUIRE(grown != nullptr);
  CHECK(m.mapped_bytes() == mapped);
  a.free(grown, a.mem_user_data);

  a.free(zeros, a.mem_user_data);
  a.free(big, a.mem_user_data);
  a.free(small, a.mem_user_data);
  a.free(nullptr, a.mem_user_data);
  CHECK(m.mapped_bytes() == 0);
}

TEST_CASE("h2 mem: small blocks are kept per thread and size class, up to kCacheBytes; realloc keeps the bytes") {
  H2Mem m;
  nghttp2_mem a = m.mem();
  H2Mem::trim_thread();
  void* p = a.malloc(200, a.mem_user_data);
  REQUIRE(p != nullptr);
  std::memset(p, 'p', 200);
  a.free(p, a.mem_user_data);
  if (H2Mem::lists_on()) {
    CHECK(H2Mem::cached_bytes() == 208);  // glibc's chunk for 200 bytes
    // The next block of its class is the one just freed; another class's is not.
    void* q = a.malloc(195, a.mem_user_data);  // the same chunk size
    CHECK(q == p);
    CHECK(H2Mem::cached_bytes() == 0);
    a.free(q, a.mem_user_data);
    void* r = a.malloc(600, a.mem_user_data);
    CHECK(r != q);
    a.free(r, a.mem_user_data);
    CHECK(H2Mem::cached_bytes() == 208 + 608);
  } else {
    CHECK(H2Mem::cached_bytes() == 0);
  }

  // Growing and shrinking keep what was written, within a class and across.
  auto* g = static_cast<char*>(a.malloc(10, a.mem_user_data));
  REQUIRE(g != nullptr);
  std::memcpy(g, "0123456789", 10);
  g = static_cast<char*>(a.realloc(g, 60, a.mem_user_data));
  REQUIRE(g != nullptr);
  g = static_cast<char*>(a.realloc(g, 3000, a.mem_user_data));
  REQUIRE(g != nullptr);
  CHECK(std::string(g, 10) == "0123456789");
  g = static_cast<char*>(a.realloc(g, 100, a.mem_user_data));
  REQUIRE(g != nullptr);
  CHECK(std::string(g, 10) == "0123456789");
  a.free(g, a.mem_user_data);  // a block realloc made: listed by its chunk
  auto* z = static_cast<unsigned char*>(a.calloc(30, 10, a.mem_user_data));
  REQUIRE(z != nullptr);
  CHECK(std::all_of(z, z + 300, [](unsigned char c) { return c == 0; }));
  a.free(z, a.mem_user_data);

  // A burst of frees keeps at most kCacheBytes; the rest goes back to malloc.
  std::vector<void*> many;
  for (int i = 0; i < 400; ++i) many.push_back(a.malloc(1000, a.mem_user_data));
  for (void* b : many) a.free(b, a.mem_user_data);
  CHECK(H2Mem::cached_bytes() <= H2Mem::kCacheBytes);
  if (H2Mem::lists_on()) CHECK(H2Mem::cached_bytes() > H2Mem::kCacheBytes - 2 * H2Mem::kSmall);
  H2Mem::trim_thread();
  CHECK(H2Mem::cached_bytes() == 0);
  CHECK(m.mapped_bytes() == 0);
}

TEST_CASE("h2 mem: a block freed on another thread, and a thread's lists at its exit") {
  // A connection's blocks are made on one worker and may be freed on
  // another (TSan checks the lists stay each thread's own).
  std::vector<void*> made;
  std::thread maker([&] {
    for (int i = 0; i < 100; ++i) made.push_back(spindle::http::detail::thread_alloc(64 + 8 * i));
    // Some freed here: this thread's lists hold them when it exits.
    for (int i = 0; i < 10; ++i) spindle::http::detail::thread_free(made[static_cast<std::size_t>(i)]);
  });
  maker.join();
  std::thread other([&] {
    for (std::size_t i = 10; i < made.size(); ++i) spindle::http::detail::thread_free(made[i]);
    if (H2Mem::lists_on()) CHECK(H2Mem::cached_bytes() > 0);
    // Reused here, written whole.
    for (int i = 0; i < 90; ++i) {
      auto* b = static_cast<unsigned char*>(spindle::http::detail::thread_alloc(64 + 8 * i));
      REQUIRE(b != nullptr);
      std::memset(b, 0xab, 64 + 8 * static_cast<std::size_t>(i));
      spindle::http::detail::thread_free(b);
    }
  });
  other.join();
}

TEST_CASE("h2 mem: forget_big gives the mapped pages back; they read as zeros") {
  H2Mem m;
  nghttp2_mem a = m.mem();
  m.map_big(true);
  const std::size_t n = 4 * page();
  auto* p = static_cast<unsigned char*>(a.malloc(n, a.mem_user_data));
  REQUIRE(p != nullptr);
  std::memset(p, 0x5a, n);
  CHECK(resident_pages(p, n) == 4);
  m.forget_big();
  CHECK(resident_pages(p, n) == 0);
  CHECK(p[0] == 0);
  CHECK(p[n - 1] == 0);
  CHECK(m.mapped_bytes() == n);  // still the session's, only not resident
  a.free(p, a.mem_user_data);
}

TEST_CASE("h2 mem: a server session's frame buffer is mapped here and given back between frames") {
  H2Mem m;
  nghttp2_mem mem = m.mem();
  nghttp2_session_callbacks* cb = nullptr;
  REQUIRE(nghttp2_session_callbacks_new(&cb) == 0);
  nghttp2_session_callbacks_set_on_frame_recv_callback(
      cb, [](nghttp2_session* s, const nghttp2_frame* f, void*) {
        if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
          static const char st[] = ":status", v[] = "204";
          nghttp2_nv nv{const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(st)),
                        const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(v)), 7, 3, NGHTTP2_NV_FLAG_NONE};
          nghttp2_submit_response(s, f->hd.stream_id, &nv, 1, nullptr);
        }
        return 0;
      });
  nghttp2_session* s = nullptr;
  m.map_big(true);  // as H2Conn makes its session
  REQUIRE(nghttp2_session_server_new3(&s, cb, nullptr, nullptr, &mem) == 0);
  m.map_big(false);
  nghttp2_session_callbacks_del(cb);
  // The frame buffer (16,394 bytes) is allocated with the session.
  CHECK(m.mapped_bytes() >= H2Mem::kBig);

  const std::string block = std::string("\x82\x84\x86\x01\x09", 5) + "127.0.0.1";
  const std::string in = std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") + frame(4, 0, 0, "") + frame(1, 5, 1, block);
  REQUIRE(nghttp2_session_mem_recv(s, reinterpret_cast<const uint8_t*>(in.data()), in.size()) ==
          static_cast<ssize_t>(in.size()));
  auto send_all = [&] {
    std::string out;
    const uint8_t* d = nullptr;
    for (ssize_t k; (k = nghttp2_session_mem_send(s, &d)) > 0;) out.append(reinterpret_cast<const char*>(d), k);
    return out;
  };
  const std::string first = send_all();
  CHECK(first.find(std::string("\x00\x00\x01\x01\x05\x00\x00\x00\x01", 9)) != std::string::npos);  // :status 204, ended
  CHECK(nghttp2_session_want_write(s) == 0);

  // Nothing to send: its pages go, and the next request is answered the same.
  m.forget_big();
  const std::string next = frame(1, 5, 3, block);
  REQUIRE(nghttp2_session_mem_recv(s, reinterpret_cast<const uint8_t*>(next.data()), next.size()) ==
          static_cast<ssize_t>(next.size()));
  CHECK(send_all().find(std::string("\x00\x00\x01\x01\x05\x00\x00\x00\x03", 9)) != std::string::npos);

  nghttp2_session_del(s);
  CHECK(m.mapped_bytes() == 0);
}
