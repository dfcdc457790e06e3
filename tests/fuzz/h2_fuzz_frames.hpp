// h2_fuzz_frames.hpp: what the HTTP/2 fuzz targets (h2_server_fuzz.cpp,
// h2_client_fuzz.cpp) build their scripts and read replies with: the
// input as a stream of bytes, frames and HPACK written by hand (so that
// they can be wrong on purpose), nghttp2's HPACK decoder for the other
// side's header blocks, and a hex dump for failure reports. No Catch, no
// spindle: the fuzz targets link neither test support nor each other.
#pragma once

#include <nghttp2/nghttp2.h>

#include "fuzz_input.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace h2_fuzz {

using fuzz_support::hex;
using fuzz_support::Input;

// Frame types and flags (RFC 9113 6).
constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
constexpr std::uint8_t kData = 0, kHeaders = 1, kPriority = 2, kRst = 3, kSettings = 4, kPushPromise = 5,
                       kPing = 6, kGoaway = 7, kWindowUpdate = 8, kContinuation = 9;
constexpr std::uint8_t kEndStream = 0x1, kAck = 0x1, kEndHeaders = 0x4, kPadded = 0x8, kPrio = 0x20;

// be32, frame: a frame's 9-byte header (the length from the payload's
// size) and its payload.
inline std::string be32(std::uint32_t v) {
  std::string s;
  for (int shift : {24, 16, 8, 0}) s.push_back(static_cast<char>((v >> shift) & 0xff));
  return s;
}

inline std::string frame(std::uint8_t type, std::uint8_t flags, std::uint32_t stream, std::string_view payload) {
  std::string f;
  const std::size_t n = payload.size();
  for (int shift : {16, 8, 0}) f.push_back(static_cast<char>((n >> shift) & 0xff));
  f.push_back(static_cast<char>(type));
  f.push_back(static_cast<char>(flags));
  f += be32(stream & 0x7fffffffu);
  f.append(payload);
  return f;
}

// HPACK (RFC 7541): an integer with an n-bit prefix under `first`'s bits.
inline void hpack_int(std::string& out, std::uint8_t first, int prefix_bits, std::size_t v) {
  const std::size_t max = (std::size_t{1} << prefix_bits) - 1;
  if (v < max) {
    out.push_back(static_cast<char>(first | v));
    return;
  }
  out.push_back(static_cast<char>(first | max));
  for (v -= max; v >= 128; v /= 128) out.push_back(static_cast<char>((v % 128) | 0x80));
  out.push_back(static_cast<char>(v));
}
// A literal field, new name: without indexing (0x00), never indexed
// (0x10) or with incremental indexing (0x40, which adds it to the
// receiver's dynamic table).
inline void literal(std::string& out, std::uint8_t kind, std::string_view name, std::string_view value) {
  out.push_back(static_cast<char>(kind));
  hpack_int(out, 0x00, 7, name.size());
  out.append(name);
  hpack_int(out, 0x00, 7, value.size());
  out.append(value);
}

// get32: the big-endian 32-bit value at s[at..at+4).
inline std::uint32_t get32(std::string_view s, std::size_t at) {
  std::uint32_t v = 0;
  for (std::size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(s[at + i]);
  return v;
}

// Inflater: the receiving side of the peer's HPACK state, one per
// connection (blocks decode in the order they came).
class Inflater {
 public:
  Inflater() {
    if (nghttp2_hd_inflate_new(&in_) != 0) throw std::runtime_error("nghttp2_hd_inflate_new");
  }
  ~Inflater() { nghttp2_hd_inflate_del(in_); }
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;
  // decode: one whole block's fields; false when it does not decode.
  bool decode(std::string_view block, std::vector<std::pair<std::string, std::string>>& out) {
    auto* p = reinterpret_cast<const std::uint8_t*>(block.data());
    std::size_t left = block.size();
    for (;;) {
      nghttp2_nv nv;
      int flags = 0;
      const ssize_t n = nghttp2_hd_inflate_hd2(in_, &nv, &flags, p, left, 1);
      if (n < 0) return false;
      p += n;
      left -= static_cast<std::size_t>(n);
      if ((flags & NGHTTP2_HD_INFLATE_EMIT) != 0) {
        out.emplace_back(std::string(reinterpret_cast<char*>(nv.name), nv.namelen),
                         std::string(reinterpret_cast<char*>(nv.value), nv.valuelen));
      }
      if ((flags & NGHTTP2_HD_INFLATE_FINAL) != 0) break;
      if (n == 0 && left == 0) break;
    }
    nghttp2_hd_inflate_end_headers(in_);
    return true;
  }

 private:
  nghttp2_hd_inflater* in_ = nullptr;
};

}  // namespace h2_fuzz
