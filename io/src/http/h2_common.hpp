// h2_common.hpp: what the HTTP/2 server (h2_server.cpp) and client
// (h2_client.cpp) both need: a stream's outgoing body as nghttp2's data
// source reads it, and the head's lower-cased names.
#pragma once

#include <nghttp2/nghttp2.h>
#include <sys/types.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>
#include <utility>

namespace spindle::http::detail {

// Guarded<F>::call: nghttp2 callback F, with nothing let out of it. F may
// throw (no memory for a stream, a field's copy, a body's bytes), and an
// exception must not unwind through nghttp2's C frames: built without
// unwind tables, they end the process there (std::terminate), one
// connection's allocation failure taking every connection with it. The
// session gets NGHTTP2_ERR_CALLBACK_FAILURE instead, fatal to that
// session only: its connection ends, the others go on. (No callback is a
// cancellation point: they never suspend, so no Cancelled comes here.)
template <auto F>
struct Guarded;
template <class R, class... A, R (*F)(A...)>
struct Guarded<F> {
  static R call(A... a) noexcept {
    try {
      return F(a...);
    } catch (...) {
      return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
  }
};

// H2Out: a stream's body bytes not yet taken by the session (a response on
// the server, an upload on the client). Under the connection's lock, as
// every stream field.
struct H2Out {
  std::string data;
  std::size_t off = 0;     // taken up to here
  bool ended = false;      // no more after `data`
  bool deferred = false;   // take() returned DEFERRED: resume_data on more
  std::uint64_t sent = 0;  // bytes taken in all

  std::size_t waiting() const noexcept { return data.size() - off; }

  // take: nghttp2's read callback (nghttp2_data_source_read_callback):
  // up to len bytes into buf, EOF once all of an ended body was taken,
  // DEFERRED while nothing waits and more will come.
  ssize_t take(uint8_t* buf, std::size_t len, uint32_t* flags) noexcept {
    if (waiting() == 0 && !ended) {
      deferred = true;
      return NGHTTP2_ERR_DEFERRED;
    }
    const std::size_t n = std::min(waiting(), len);
    std::memcpy(buf, data.data() + off, n);
    off += n;
    sent += n;
    if (off == data.size()) {
      data.clear();
      off = 0;
      if (ended) *flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return static_cast<ssize_t>(n);
  }

  // append: one more piece (what was taken is dropped first). True when
  // the session deferred the stream: the caller resumes it
  // (nghttp2_session_resume_data).
  bool append(std::string_view piece) {
    if (off > 0) {
      data.erase(0, off);
      off = 0;
    }
    data += piece;
    return std::exchange(deferred, false);
  }
  // end: no more pieces; true as append.
  bool end() noexcept {
    ended = true;
    return std::exchange(deferred, false);
  }
};

// H2Head: a head being built as nghttp2's field array, without a heap
// allocation for a usual one. nghttp2's submit calls copy every field
// and lower-case the names they copy (nghttp2.h, nghttp2_submit_response),
// so names and values are pointed to where they lie, and those strings
// must stay as they are until the submit call. Two exceptions save that
// copy: a name that is a string literal (add_static, add_number: lower
// case, and static, so it outlives the frame) is passed with
// NGHTTP2_NV_FLAG_NO_COPY_NAME; a number, or a value that may change
// before the submit (add_static_copy), is copied into an inline arena. A head past the inline room (kFields fields) spills to the heap.
// Against the vector of lowered, copied strings it replaced, the server's
// response head costs 2-5 allocations less per response
// (docs/decisions/0019-http2.md "Cost per request").
class H2Head {
 public:
  H2Head() = default;
  H2Head(const H2Head&) = delete;
  H2Head& operator=(const H2Head&) = delete;

  // add: one field, in any case (nghttp2 lowers the name as it copies).
  void add(std::string_view name, std::string_view value) { push(name, value, NGHTTP2_NV_FLAG_NONE); }
  // add_static: a field whose name is a lower-case string literal.
  template <std::size_t N>
  void add_static(const char (&name)[N], std::string_view value) {
    push(std::string_view(name, N - 1), value, NGHTTP2_NV_FLAG_NO_COPY_NAME);
  }
  // add_static_copy: the same, its value copied here (a value that may
  // change before the submit).
  template <std::size_t N>
  void add_static_copy(const char (&name)[N], std::string_view value) {
    add_static(name, keep(value));
  }
  // add_number: the same, its value n in decimal (:status, content-length).
  template <std::size_t N>
  void add_number(const char (&name)[N], std::uint64_t n) {
    char digits[20];
    const std::size_t len = write_decimal(digits, n);
    add_static(name, keep(std::string_view(digits, len)));
  }
  nghttp2_nv* data() noexcept { return spilled_ ? more_.data() : fields_; }
  std::size_t size() const noexcept { return spilled_ ? more_.size() : count_; }

 private:
  static constexpr std::size_t kFields = 16;
  static constexpr std::size_t kArena = 64;

  static std::size_t write_decimal(char* out, std::uint64_t n) noexcept {
    char rev[20];
    std::size_t k = 0;
    do {
      rev[k++] = static_cast<char>('0' + n % 10);
      n /= 10;
    } while (n != 0);
    for (std::size_t i = 0; i < k; ++i) out[i] = rev[k - 1 - i];
    return k;
  }
  // keep: s copied into storage that lives as long as this head.
  std::string_view keep(std::string_view s) {
    char* at = nullptr;
    if (s.size() <= kArena - used_) {
      at = arena_ + used_;
      used_ += s.size();
    } else {
      heap_.push_back(std::make_unique<char[]>(s.size() + 1));
      at = heap_.back().get();
    }
    if (!s.empty()) std::memcpy(at, s.data(), s.size());
    return {at, s.size()};
  }
  void push(std::string_view name, std::string_view value, uint8_t flags) {
    const nghttp2_nv nv{const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(name.data())),
                        const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(value.data())), name.size(),
                        value.size(), flags};
    if (!spilled_ && count_ < kFields) {
      fields_[count_++] = nv;
      return;
    }
    if (!spilled_) {
      more_.assign(fields_, fields_ + count_);
      spilled_ = true;
    }
    more_.push_back(nv);
  }

  nghttp2_nv fields_[kFields];
  std::size_t count_ = 0;
  bool spilled_ = false;
  std::vector<nghttp2_nv> more_;
  char arena_[kArena];
  std::size_t used_ = 0;
  std::vector<std::unique_ptr<char[]>> heap_;
};

// lower: ASCII lower case (HTTP/2 field names, RFC 9113 8.2).
inline std::string lower(std::string_view s) {
  std::string r(s);
  for (char& ch : r) {
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
  }
  return r;
}

// to_nv: name/value pairs kept as alternating strings (names lower case),
// as nghttp2's field array. The strings must stay as they are until the
// submit call (nghttp2 copies them there).
inline std::vector<nghttp2_nv> to_nv(std::vector<std::string>& kept) {
  std::vector<nghttp2_nv> nva;
  nva.reserve(kept.size() / 2);
  for (std::size_t i = 0; i + 1 < kept.size(); i += 2) {
    nva.push_back({reinterpret_cast<uint8_t*>(kept[i].data()), reinterpret_cast<uint8_t*>(kept[i + 1].data()),
                   kept[i].size(), kept[i + 1].size(), NGHTTP2_NV_FLAG_NONE});
  }
  return nva;
}

}  // namespace spindle::http::detail
