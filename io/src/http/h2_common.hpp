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
#include <string>
#include <string_view>
#include <vector>
#include <utility>

namespace spindle::http::detail {

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
