// head_scan.hpp: what Beast's request parser cannot be asked about a head,
// found in its bytes before Beast parses them. Not public.
//
// obs-fold (RFC 9112 5.2): a field line that starts with a space or a tab
// continues the line before it. Beast unfolds it into the previous field's
// value, so `X: a\r\n Transfer-Encoding: chunked` reaches the server as a
// field X and no Transfer-Encoding, while a front end that reads the line
// on its own (or drops the whitespace) frames the body by it: the two
// disagree on where the request ends, the start of smuggling. The RFC lets
// a server reject it with 400; nginx does (since 1.21.1), and so does
// spindle. Beast gives no hook between reading the bytes and unfolding
// them, so the server's read_head feeds every byte of a head through
// HeadScan first (server.cpp).
#pragma once

#include <cstddef>
#include <cstring>

#include <boost/asio/buffer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>

namespace spindle::http::detail {

// HeadScan: a byte-at-a-time reader of a request head up to its empty
// line, remembering whether a line after the request line began with SP
// or HTAB. Bytes past the head (a body, the next request) are not looked
// at. One per head; feed() may be given the head in any pieces.
class HeadScan {
 public:
  void feed(const char* p, std::size_t n) noexcept {
    std::size_t i = 0;
    while (i < n && !done_) {
      if (!bol_) {
        // Only a line's first byte matters: skip to the next LF.
        const void* lf = std::memchr(p + i, '\n', n - i);
        if (lf == nullptr) return;
        i = static_cast<std::size_t>(static_cast<const char*>(lf) - p) + 1;
        bol_ = true;
        continue;
      }
      const char c = p[i++];
      if (c == ' ' || c == '\t') {
        // Before the request line it is Beast's to refuse (a bad method).
        if (started_) fold_ = done_ = true;
      } else if (c == '\r' || c == '\n') {
        // An empty line: the head's end, or one of the blank lines a
        // client may send before its request line (RFC 9112 2.2).
        if (started_) done_ = true;
      } else {
        started_ = true;
      }
      bol_ = c == '\n';
    }
  }
  bool fold() const noexcept { return fold_; }

 private:
  bool bol_ = true;       // the next byte begins a line
  bool started_ = false;  // the request line has begun
  bool done_ = false;     // the head's empty line (or a fold) was seen
  bool fold_ = false;
};

// HeadScanning: a SyncReadStream over `s` for Beast's read_header that
// feeds what each read brings to `scan` and fails the read with bad_field
// (a framing error: the server answers 400 and closes) once it saw a fold.
template <class Stream>
class HeadScanning {
 public:
  HeadScanning(Stream& s, HeadScan& scan) noexcept : s_(s), scan_(scan) {}
  template <class B>
  std::size_t read_some(const B& b, boost::beast::error_code& ec) {
    const std::size_t n = s_.read_some(b, ec);
    std::size_t left = n;
    for (auto it = boost::asio::buffer_sequence_begin(b); left > 0 && it != boost::asio::buffer_sequence_end(b);
         ++it) {
      const boost::asio::mutable_buffer x(*it);
      const std::size_t k = x.size() < left ? x.size() : left;
      scan_.feed(static_cast<const char*>(x.data()), k);
      left -= k;
    }
    if (scan_.fold()) ec = boost::beast::http::error::bad_field;
    return n;
  }
  template <class B>
  std::size_t read_some(const B& b) {
    boost::beast::error_code ec;
    const std::size_t n = read_some(b, ec);
    if (ec) throw boost::beast::system_error(ec);
    return n;
  }

 private:
  Stream& s_;
  HeadScan& scan_;
};

}  // namespace spindle::http::detail
