// h2_raw_server.hpp: the server's end of an HTTP/2 connection written by
// hand, for the client's tests against servers http::Server would never
// be (h2_client_test.cpp, h2_client_hostile_test.cpp): frames built byte
// by byte (a 9-byte header and a payload), header blocks of HPACK literals
// without indexing (so the server keeps no HPACK state), and H2Wire, which
// reads the client's frames one at a time and acks its SETTINGS and PINGs.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <string_view>
#include <utility>

#include "http_test_support.hpp"

namespace h2_raw {

namespace io = spindle::io;

// Frame types, flags and error codes (RFC 9113 6 and 7).
constexpr std::uint8_t kData = 0, kHeaders = 1, kRstStream = 3, kSettings = 4, kPushPromise = 5, kPing = 6,
                       kGoaway = 7, kWindowUpdate = 8, kContinuation = 9;
constexpr std::uint8_t kEndStream = 0x1, kAck = 0x1, kEndHeaders = 0x4;
constexpr std::uint32_t kNoError = 0, kProtocolError = 1, kFlowControlError = 3, kFrameSizeError = 6,
                        kRefusedStream = 7, kCancel = 8, kCompressionError = 9, kEnhanceYourCalm = 11;
constexpr std::uint16_t kEnablePush = 2, kMaxConcurrentStreams = 3, kInitialWindowSize = 4;
constexpr std::uint32_t kNone = 0xffffffffu;  // no GOAWAY (yet)

inline std::string be32(std::uint32_t v) {
  std::string s;
  for (int shift : {24, 16, 8, 0}) s.push_back(static_cast<char>((v >> shift) & 0xff));
  return s;
}

inline std::string h2_frame(std::uint8_t type, std::uint8_t flags, std::uint32_t stream, std::string_view payload) {
  std::string f;
  const std::size_t n = payload.size();
  for (int shift : {16, 8, 0}) f.push_back(static_cast<char>((n >> shift) & 0xff));
  f.push_back(static_cast<char>(type));
  f.push_back(static_cast<char>(flags));
  f += be32(stream & 0x7fffffffu);
  f.append(payload);
  return f;
}

// HPACK (RFC 7541): an integer with an n-bit prefix under the first
// byte's high bits `first`, and a literal field without indexing, new name.
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
inline std::string field(std::string_view name, std::string_view value) {
  std::string b(1, '\0');
  hpack_int(b, 0, 7, name.size());
  b += name;
  hpack_int(b, 0, 7, value.size());
  b += value;
  return b;
}
inline std::string status_block(std::string_view code) { return field(":status", code); }

inline std::string settings(std::initializer_list<std::pair<std::uint16_t, std::uint32_t>> entries) {
  std::string p;
  for (auto [id, v] : entries) {
    p.push_back(static_cast<char>(id >> 8));
    p.push_back(static_cast<char>(id & 0xff));
    p += be32(v);
  }
  return p;  // a SETTINGS payload: H2Wire::start sends it
}
inline std::string goaway(std::uint32_t last, std::uint32_t code) {
  return h2_frame(kGoaway, 0, 0, be32(last) + be32(code));
}
inline std::string rst_stream(std::uint32_t stream, std::uint32_t code) {
  return h2_frame(kRstStream, 0, stream, be32(code));
}
inline std::string ping(std::uint32_t n) { return h2_frame(kPing, 0, 0, be32(n) + be32(n)); }
inline std::string window_update(std::uint32_t stream, std::uint32_t inc) {
  return h2_frame(kWindowUpdate, 0, stream, be32(inc));
}
// window_of_data: `frames` DATA frames of 16 KiB (the default
// SETTINGS_MAX_FRAME_SIZE), none ending the stream.
inline std::string window_of_data(std::uint32_t id, int frames) {
  std::string out;
  const std::string piece(16384, 'w');
  for (int i = 0; i < frames; ++i) out += h2_frame(kData, 0, id, piece);
  return out;
}

struct Frame {
  std::uint8_t type = 0, flags = 0;
  std::uint32_t stream = 0;
  std::string payload;
  // code: RST_STREAM's and GOAWAY's error code.
  std::uint32_t code() const {
    const std::size_t at = type == kGoaway ? 4 : 0;
    if (payload.size() < at + 4) return kNone;
    std::uint32_t v = 0;
    for (std::size_t i = at; i < at + 4; ++i) v = (v << 8) | static_cast<unsigned char>(payload[i]);
    return v;
  }
};

// H2Wire: the attacking server's end of one connection. It reads frames
// one at a time, acking each SETTINGS of the client as it comes (and
// keeping its entries) and each PING (unless told not to: ack_settings,
// ack_pings), and writes what the script gives it. A read past
// the connection's end throws std::system_error (io::error::eof), which
// ends the script (RawPeer).
class H2Wire {
 public:
  explicit H2Wire(io::TcpStream& s) : s_(s) {}
  // start: the client's preface, then our SETTINGS (a settings() payload).
  void start(std::string_view our_settings = {}) {
    char preface[24];
    s_.read_exact(preface, sizeof preface);
    send(h2_frame(kSettings, 0, 0, our_settings));
  }
  Frame next() {
    unsigned char h[9];
    s_.read_exact(h, sizeof h);
    Frame f;
    f.payload.resize(std::size_t{h[0]} << 16 | std::size_t{h[1]} << 8 | h[2]);
    f.type = h[3];
    f.flags = h[4];
    f.stream = (std::uint32_t{h[5]} << 24 | std::uint32_t{h[6]} << 16 | std::uint32_t{h[7]} << 8 | h[8]) & 0x7fffffffu;
    if (!f.payload.empty()) s_.read_exact(f.payload.data(), f.payload.size());
    if (f.type == kSettings && (f.flags & kAck) == 0) {
      for (std::size_t i = 0; i + 6 <= f.payload.size(); i += 6) {
        const auto b = [&](std::size_t k) { return static_cast<std::uint32_t>(static_cast<unsigned char>(f.payload[i + k])); };
        client_settings[static_cast<std::uint16_t>(b(0) << 8 | b(1))] = b(2) << 24 | b(3) << 16 | b(4) << 8 | b(5);
      }
      if (ack_settings) send(h2_frame(kSettings, kAck, 0, {}));
    }
    if (f.type == kPing && (f.flags & kAck) == 0 && ack_pings) send(h2_frame(kPing, kAck, 0, f.payload));
    return f;
  }
  // request: frames until the next request's HEADERS (the client's heads
  // are small: one frame).
  Frame request() { return until(kHeaders); }
  Frame until(std::uint8_t type) {
    for (;;) {
      Frame f = next();
      if (f.type == type) return f;
    }
  }
  void send(std::string_view bytes) { s_.write_all(bytes); }
  // answer: 200 with `body` (and its content-length), as a server would.
  void answer(std::uint32_t id, std::string_view body) {
    std::string out = h2_frame(kHeaders, kEndHeaders | (body.empty() ? kEndStream : 0), id,
                               status_block("200") + field("content-length", std::to_string(body.size())));
    if (!body.empty()) out += h2_frame(kData, kEndStream, id, body);
    send(out);
  }

  std::map<std::uint16_t, std::uint32_t> client_settings;
  bool ack_settings = true;
  bool ack_pings = true;

 private:
  io::TcpStream& s_;
};

}  // namespace h2_raw
