// chunk_lines.hpp: ChunkLines, the bound on what chunk lines may cost
// beside the data they frame, for a Beast parser's on_chunk_header: the
// server's request bodies (server.cpp) and the client's response bodies
// (client.cpp). max_body and the drain limits count data only, so
// "1;<16 KiB of extension>\r\nX\r\n" over and over made the reader parse
// ~16 KiB per body byte. Go's rule (CVE-2023-39326, its chunked reader for
// both sides): each chunk may carry 16 bytes of overhead plus twice its
// data; past 16 KiB of overhead beyond that, the body is refused
// (bad_chunk_extension). A single extension over `max_ext` is refused too.
// It also sums the sizes the chunk lines announce (announced()), so that a
// reader can refuse a body whose announced chunks take it past its limit
// as soon as the line arrives, as it refuses a Content-Length over it,
// rather than wait for data that may never come (server.cpp's BodyReader).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>

namespace spindle::http::detail {

// kUncapped, kOverCap: the body readers' caps (server.cpp's BodyReader::read,
// client.cpp's BodyReader::read_some): kUncapped is the cap for none, and
// kOverCap their answer when the body announced (a Content-Length, or the
// sizes of the chunk lines parsed so far) is over the cap, nothing read.
// Never a byte count: no span a read fills is that large.
inline constexpr std::uint64_t kUncapped = std::numeric_limits<std::uint64_t>::max();
inline constexpr std::size_t kOverCap = std::numeric_limits<std::size_t>::max();

// chunk_size_digits: how many hex digits the chunk line's size took as
// sent, leading zeros included. Beast's on_chunk_header gives the size's
// value and the extensions; the extensions start right after the digits,
// in the buffer Beast parses: the connection's flat buffer (a single
// buffer, which Beast parses in place). So the digits are the hex bytes
// just before `ext_at`, counted back no further than the buffer's start.
// A pointer outside the buffer (a Beast that copied it first) falls back
// to the value's digits. Counted from its value, "000...01" with 16 KiB of
// zeros passed as one digit: ~16 KiB parsed per body byte again.
inline std::uint64_t chunk_size_digits(const boost::beast::flat_buffer& buf, const char* ext_at,
                                       std::uint64_t size) noexcept {
  const auto* lo = static_cast<const char*>(buf.data().data());
  if (lo != nullptr && ext_at > lo && ext_at <= lo + buf.size()) {
    std::uint64_t n = 0;
    const auto hex = [](char c) {
      const char l = static_cast<char>(c | 0x20);
      return (c >= '0' && c <= '9') || (l >= 'a' && l <= 'f');
    };
    for (const char* q = ext_at; q > lo && hex(q[-1]); --q) ++n;
    if (n > 0) return n;
  }
  std::uint64_t n = 1;
  for (std::uint64_t v = size; v > 15; v >>= 4) ++n;
  return n;
}

// trailer_folded: whether the trailer section after the last chunk's line
// holds a line that begins with SP or HTAB (obs-fold, RFC 9112 5.2). Beast
// calls on_chunk_header for the last chunk (size 0) only once the whole
// trailer section, through its empty line, is in the buffer, and before it
// parses (and unfolds) those fields; the section starts right after the
// line's extensions and CRLF (`ext_end` + 2). A pointer outside the buffer
// (a Beast that copied it first) finds nothing.
inline bool trailer_folded(const boost::beast::flat_buffer& buf, const char* ext_end) noexcept {
  const auto* lo = static_cast<const char*>(buf.data().data());
  if (lo == nullptr || ext_end < lo || ext_end > lo + buf.size()) return false;
  const char* const end = lo + buf.size();
  for (const char* q = ext_end + 2; q < end;) {  // q: a line's first byte
    if (*q == ' ' || *q == '\t') return true;
    if (*q == '\r' || *q == '\n') return false;  // the section's empty line
    const void* lf = std::memchr(q, '\n', static_cast<std::size_t>(end - q));
    if (lf == nullptr) return false;
    q = static_cast<const char*>(lf) + 1;
  }
  return false;
}

// ChunkLines: the callback. It keeps the running excess, so one object per
// message; the parser keeps a reference to it (Beast's on_chunk_header),
// so it must outlive the parse. `buf` is the buffer the parser reads from.
// With `refuse_folds` (the server), a folded trailer line is refused as a
// folded head line is (head_scan.hpp): Beast would unfold it into the
// field before, `X: y\r\n Content-Length: 9` reaching the handler as one
// field X where a front reads two. A client unfolds, as RFC 9112 lets it.
class ChunkLines {
 public:
  ChunkLines(std::uint64_t max_ext, const boost::beast::flat_buffer& buf, bool refuse_folds = false) noexcept
      : max_ext_(max_ext), buf_(&buf), refuse_folds_(refuse_folds) {}

  void operator()(std::uint64_t size, boost::beast::string_view ext, boost::beast::error_code& e) noexcept {
    if (ext.size() > max_ext_) {
      e = boost::beast::http::error::bad_chunk_extension;
      return;
    }
    if (size == 0 && refuse_folds_ && trailer_folded(*buf_, ext.data() + ext.size())) {
      e = boost::beast::http::error::bad_field;
      return;
    }
    announced_ = size > UINT64_MAX - announced_ ? UINT64_MAX : announced_ + size;
    const std::uint64_t digits = chunk_size_digits(*buf_, ext.data(), size);
    excess_ += digits + ext.size() + 4;  // the size, extensions, the line's CRLF and the data's
    const std::uint64_t allowance = size > (UINT64_MAX - kFree) / 2 ? UINT64_MAX : kFree + 2 * size;
    excess_ = excess_ > allowance ? excess_ - allowance : 0;
    if (excess_ > kMaxExcess) e = boost::beast::http::error::bad_chunk_extension;
  }

  // announced: the data sizes of every chunk line parsed so far, summed
  // (UINT64_MAX past it): the body's length up to the end of the chunk
  // under way. Less what was read of the body, what that chunk still owes.
  std::uint64_t announced() const noexcept { return announced_; }

 private:
  static constexpr std::uint64_t kFree = 16;               // bytes of overhead every chunk may carry
  static constexpr std::uint64_t kMaxExcess = 16 * 1024;  // overhead beyond the allowance, in all
  std::uint64_t max_ext_;
  const boost::beast::flat_buffer* buf_;
  bool refuse_folds_;
  std::uint64_t excess_ = 0;
  std::uint64_t announced_ = 0;
};

}  // namespace spindle::http::detail
