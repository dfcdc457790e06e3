// h2_test_client.hpp: the HTTP/2 side of the h2 tests, on a spindle
// io stream from the test's fiber (as the other http tests use raw
// TcpStreams), no http::Client involved:
//  - Client: libnghttp2's client session (submit, then pump frames until a
//    condition holds or a deadline passes) for ordinary, well-formed
//    requests; it records per stream the status, fields, body, DATA frames
//    and resets, and the connection's GOAWAY and end.
//  - RawConn and the frame builders: hand-built frames (9-byte header and
//    payload) for what no conforming client sends: rapid resets,
//    CONTINUATION floods, oversized or bombed header blocks, PING floods,
//    windows kept at zero. Header blocks it sends are stateless HPACK
//    literals (plain_block) unless a test writes the bytes itself; the
//    server's blocks are decoded with nghttp2's inflater, all of them and
//    in order (HPACK state is per connection).
// Every read is bounded (the caller's limit): a server that goes quiet
// makes a check fail, never the test hang.
#pragma once

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <spindle/io/all.hpp>
#include <spindle/io/http/all.hpp>
#include <spindle/runtime/all.hpp>

namespace h2_test {

namespace sp = spindle;
namespace io = spindle::io;
namespace http = spindle::http;
using Clock = std::chrono::steady_clock;
using Fields = std::vector<std::pair<std::string, std::string>>;

inline constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

enum FrameType : std::uint8_t {
  DATA = 0, HEADERS = 1, PRIORITY = 2, RST_STREAM = 3, SETTINGS = 4,
  PUSH_PROMISE = 5, PING = 6, GOAWAY = 7, WINDOW_UPDATE = 8, CONTINUATION = 9,
};
enum Flag : std::uint8_t { END_STREAM = 0x1, ACK = 0x1, END_HEADERS = 0x4, PADDED = 0x8, PRIO = 0x20 };

// ---- frame building ------------------------------------------------------

inline void put32(std::string& s, std::uint32_t v) {
  for (int sh = 24; sh >= 0; sh -= 8) s.push_back(static_cast<char>((v >> sh) & 0xff));
}
inline std::uint32_t get32(std::string_view s, std::size_t at) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(s[at + i]);
  return v;
}

inline std::string frame(std::uint8_t type, std::uint8_t flags, std::uint32_t stream, std::string_view payload) {
  std::string f;
  const auto n = static_cast<std::uint32_t>(payload.size());
  f.push_back(static_cast<char>((n >> 16) & 0xff));
  f.push_back(static_cast<char>((n >> 8) & 0xff));
  f.push_back(static_cast<char>(n & 0xff));
  f.push_back(static_cast<char>(type));
  f.push_back(static_cast<char>(flags));
  put32(f, stream & 0x7fffffffu);
  f.append(payload);
  return f;
}
inline std::string settings(std::initializer_list<std::pair<std::uint16_t, std::uint32_t>> entries) {
  std::string p;
  for (auto [id, v] : entries) {
    p.push_back(static_cast<char>(id >> 8));
    p.push_back(static_cast<char>(id & 0xff));
    put32(p, v);
  }
  return frame(SETTINGS, 0, 0, p);
}
inline std::string settings_ack() { return frame(SETTINGS, ACK, 0, {}); }
// preface: the client's preface and an empty SETTINGS.
inline std::string preface() { return std::string(kPreface) + settings({}); }
inline std::string ping(std::uint64_t opaque = 0) {
  std::string p;
  put32(p, static_cast<std::uint32_t>(opaque >> 32));
  put32(p, static_cast<std::uint32_t>(opaque));
  return frame(PING, 0, 0, p);
}
inline std::string rst_stream(std::uint32_t stream, std::uint32_t code) {
  std::string p;
  put32(p, code);
  return frame(RST_STREAM, 0, stream, p);
}
inline std::string window_update(std::uint32_t stream, std::uint32_t inc) {
  std::string p;
  put32(p, inc);
  return frame(WINDOW_UPDATE, 0, stream, p);
}

// HPACK (RFC 7541) by hand: an integer with an n-bit prefix (the first
// byte's high bits `first`), and a literal field that is never indexed, so
// a block built of these leaves the server's dynamic table as it was.
inline void hpack_int(std::string& out, std::uint8_t first, int prefix_bits, std::size_t v) {
  const std::size_t max = (1u << prefix_bits) - 1;
  if (v < max) {
    out.push_back(static_cast<char>(first | v));
    return;
  }
  out.push_back(static_cast<char>(first | max));
  v -= max;
  while (v >= 128) {
    out.push_back(static_cast<char>((v % 128) | 0x80));
    v /= 128;
  }
  out.push_back(static_cast<char>(v));
}
inline void hpack_literal(std::string& out, std::string_view name, std::string_view value, std::uint8_t kind = 0x00) {
  out.push_back(static_cast<char>(kind));  // 0x00: without indexing, 0x40: incremental indexing; new name
  hpack_int(out, 0, 7, name.size());
  out.append(name);
  hpack_int(out, 0, 7, value.size());
  out.append(value);
}
// plain_block: a request's header block (pseudo-header fields first).
inline std::string plain_block(std::string_view method, std::string_view path, const Fields& extra = {},
                               std::string_view authority = "127.0.0.1") {
  std::string b;
  hpack_literal(b, ":method", method);
  hpack_literal(b, ":scheme", "http");
  hpack_literal(b, ":authority", authority);
  hpack_literal(b, ":path", path);
  for (const auto& [n, v] : extra) hpack_literal(b, n, v);
  return b;
}
// headers: a header block as HEADERS and as many CONTINUATION frames as
// the 16 KiB default frame size needs.
inline std::string headers(std::uint32_t stream, std::string_view block, bool end_stream) {
  constexpr std::size_t kMax = 16384;
  std::string out;
  std::size_t at = 0;
  bool first = true;
  do {
    const std::size_t n = std::min(kMax, block.size() - at);
    const bool last = at + n == block.size();
    std::uint8_t flags = last ? END_HEADERS : 0;
    if (first && end_stream) flags |= END_STREAM;
    out += frame(first ? HEADERS : CONTINUATION, flags, stream, block.substr(at, n));
    at += n;
    first = false;
  } while (at < block.size());
  return out;
}

// ---- reading frames --------------------------------------------------------

struct Frame {
  std::uint8_t type = 0, flags = 0;
  std::uint32_t stream = 0;
  std::string payload;  // HEADERS: the whole block, CONTINUATIONs merged
  Fields fields;        // HEADERS: decoded
  // RST_STREAM and GOAWAY: the error code; GOAWAY: the last stream id.
  std::uint32_t code() const {
    if (type == RST_STREAM && payload.size() >= 4) return get32(payload, 0);
    if (type == GOAWAY && payload.size() >= 8) return get32(payload, 4);
    return 0xffffffffu;
  }
  std::uint32_t last_stream() const { return payload.size() >= 4 ? get32(payload, 0) & 0x7fffffffu : 0; }
  std::string field(std::string_view name) const {
    for (const auto& [n, v] : fields)
      if (n == name) return v;
    return {};
  }
};

// Inflater: the decoding side of the server's HPACK state.
class Inflater {
 public:
  Inflater() {
    if (nghttp2_hd_inflate_new(&in_) != 0) throw std::runtime_error("nghttp2_hd_inflate_new");
  }
  ~Inflater() { nghttp2_hd_inflate_del(in_); }
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;
  // decode: the fields of one whole block; throws on a malformed block.
  Fields decode(std::string_view block) {
    Fields out;
    auto* p = reinterpret_cast<const std::uint8_t*>(block.data());
    std::size_t left = block.size();
    for (;;) {
      nghttp2_nv nv;
      int flags = 0;
      const ssize_t n = nghttp2_hd_inflate_hd2(in_, &nv, &flags, p, left, 1);
      if (n < 0) throw std::runtime_error("HPACK decoding failed");
      p += n;
      left -= static_cast<std::size_t>(n);
      if (flags & NGHTTP2_HD_INFLATE_EMIT)
        out.emplace_back(std::string(reinterpret_cast<char*>(nv.name), nv.namelen),
                         std::string(reinterpret_cast<char*>(nv.value), nv.valuelen));
      if (flags & NGHTTP2_HD_INFLATE_FINAL) break;
      if (n == 0 && left == 0) break;
    }
    nghttp2_hd_inflate_end_headers(in_);
    return out;
  }

 private:
  nghttp2_hd_inflater* in_ = nullptr;
};

// RawConn: a TCP connection that sends bytes as given and reads frames.
// It sends nothing by itself (no preface, no SETTINGS ACK): each test
// writes what its attack needs.
class RawConn {
 public:
  explicit RawConn(std::uint16_t port) : s_(io::TcpStream::connect(io::Endpoint("127.0.0.1", port))) {}
  io::TcpStream& stream() { return s_; }
  // send: write_all; false once the server closed or reset the connection.
  bool send(std::string_view bytes) {
    try {
      s_.write_all(bytes);
      return true;
    } catch (const std::system_error&) {
      return false;
    }
  }
  // next: the next frame within `limit`; nothing at the connection's end
  // (eof() then holds) or when the time ran out. A HEADERS frame comes
  // with its CONTINUATIONs merged and its block decoded.
  std::optional<Frame> next(Clock::duration limit) {
    const auto end = Clock::now() + limit;
    std::optional<Frame> f = read_frame(end);
    if (!f || f->type != HEADERS) return f;
    std::string_view p = f->payload;
    std::size_t pad = 0;
    if ((f->flags & PADDED) && !p.empty()) {
      pad = static_cast<unsigned char>(p[0]);
      p.remove_prefix(1);
    }
    if (f->flags & PRIO) p.remove_prefix(std::min<std::size_t>(5, p.size()));
    std::string block(p.substr(0, p.size() >= pad ? p.size() - pad : 0));
    std::uint8_t flags = f->flags;
    while (!(flags & END_HEADERS)) {
      std::optional<Frame> c = read_frame(end);
      if (!c) return std::nullopt;
      if (c->type != CONTINUATION) throw std::runtime_error("server interleaved a frame inside a header block");
      block += c->payload;
      flags = c->flags;
    }
    f->payload = std::move(block);
    f->fields = inflater_.decode(f->payload);
    return f;
  }
  // until: frames until one satisfies pred (returned); seen() keeps them all.
  std::optional<Frame> until(const std::function<bool(const Frame&)>& pred, Clock::duration limit) {
    const auto end = Clock::now() + limit;
    for (;;) {
      const auto left = end - Clock::now();
      if (left <= Clock::duration::zero()) return std::nullopt;
      std::optional<Frame> f = next(left);
      if (!f) return std::nullopt;
      seen_.push_back(*f);
      if (pred(*f)) return f;
    }
  }
  // end_of: the first frame that ends `stream` (its HEADERS or DATA with
  // END_STREAM, or its RST_STREAM) or the connection (GOAWAY).
  // Frames read before (by an earlier call) count too.
  std::optional<Frame> end_of(std::uint32_t stream, Clock::duration limit) {
    const auto ends = [stream](const Frame& f) {
      return f.type == GOAWAY || (f.stream == stream && (f.type == RST_STREAM ||
                                                          ((f.type == HEADERS || f.type == DATA) && (f.flags & END_STREAM))));
    };
    for (const Frame& f : seen_)
      if (ends(f)) return f;
    return until(ends, limit);
  }
  // drain: reads (frames kept in seen()) until the connection ends or `limit`.
  bool drain_to_eof(Clock::duration limit) {
    until([](const Frame&) { return false; }, limit);
    return eof_;
  }
  const std::vector<Frame>& seen() const { return seen_; }
  // status_of: the :status the server sent on `stream` among seen() (0: none).
  int status_of(std::uint32_t stream) const {
    for (const Frame& f : seen_)
      if (f.type == HEADERS && f.stream == stream && !f.field(":status").empty()) return std::stoi(f.field(":status"));
    return 0;
  }
  // body_of: the DATA payloads the server sent on `stream` among seen().
  std::string body_of(std::uint32_t stream) const {
    std::string b;
    for (const Frame& f : seen_)
      if (f.type == DATA && f.stream == stream) b += f.payload;
    return b;
  }
  bool eof() const { return eof_; }
  void close() { s_.close(); }

 private:
  std::optional<Frame> read_frame(Clock::time_point end) {
    while (buf_.size() < 9 || buf_.size() < 9 + frame_len()) {
      if (eof_) return std::nullopt;
      const auto left = end - Clock::now();
      if (left <= Clock::duration::zero()) return std::nullopt;
      char tmp[16384];
      std::size_t n = 0;
      try {
        n = sp::with_timeout(left, [&] { return s_.read_some(tmp, sizeof tmp); });
      } catch (const sp::TimedOut&) {
        return std::nullopt;
      } catch (const std::system_error&) {
        n = 0;  // reset by the server: its end too
      }
      if (n == 0) {
        eof_ = true;
        return std::nullopt;
      }
      buf_.append(tmp, n);
    }
    Frame f;
    f.type = static_cast<std::uint8_t>(buf_[3]);
    f.flags = static_cast<std::uint8_t>(buf_[4]);
    f.stream = get32(buf_, 5) & 0x7fffffffu;
    const std::size_t len = frame_len();
    f.payload = buf_.substr(9, len);
    buf_.erase(0, 9 + len);
    return f;
  }
  std::size_t frame_len() const {
    return (std::size_t{static_cast<unsigned char>(buf_[0])} << 16) |
           (std::size_t{static_cast<unsigned char>(buf_[1])} << 8) | static_cast<unsigned char>(buf_[2]);
  }

  io::TcpStream s_;
  std::string buf_;
  bool eof_ = false;
  Inflater inflater_;
  std::vector<Frame> seen_;
};

// ---- the nghttp2 client session ----------------------------------------------

// Wire: the byte stream under a Client (a TcpStream, or a TlsStream whose
// handshake chose h2).
class Wire {
 public:
  virtual ~Wire() = default;
  virtual std::size_t read_some(char* p, std::size_t n) = 0;  // 0: the end
  virtual void write_all(std::string_view b) = 0;
  virtual void close() = 0;
};
template <class S>
class WireOf final : public Wire {
 public:
  explicit WireOf(S s) : s_(std::move(s)) {}
  std::size_t read_some(char* p, std::size_t n) override { return s_.read_some(p, n); }
  void write_all(std::string_view b) override { s_.write_all(b); }
  void close() override { s_.close(); }

 private:
  S s_;
};

struct StreamResult {
  int status = 0;
  Fields fields;  // the response's, pseudo-header fields left out
  std::string body;
  int data_frames = 0;         // DATA frames received (empty ones too)
  bool end_on_headers = false;  // the response's HEADERS carried END_STREAM
  bool closed = false;          // nghttp2 closed the stream (any way)
  std::uint32_t close_code = 0; // its error code (NO_ERROR when it ended well)
  bool rst = false;             // the server sent RST_STREAM
  std::uint32_t rst_code = 0;
  // field: the first value of `name` (the wire's lower case), or nothing.
  std::optional<std::string> field(std::string_view name) const {
    for (const auto& [n, v] : fields)
      if (n == name) return v;
    return std::nullopt;
  }
  // complete: the whole response arrived (no reset, no error).
  bool complete() const { return closed && close_code == NGHTTP2_NO_ERROR && !rst && status != 0; }
};

struct ClientOptions {
  // initial_window: SETTINGS_INITIAL_WINDOW_SIZE the client sends.
  std::uint32_t initial_window = 1 << 20;
  std::string scheme = "http";  // :scheme ("https" over TLS)
};

class Client {
 public:
  using Options = ClientOptions;

  explicit Client(std::uint16_t port, Options o = {})
      : Client(std::make_unique<WireOf<io::TcpStream>>(io::TcpStream::connect(io::Endpoint("127.0.0.1", port))), o) {}
  explicit Client(std::unique_ptr<Wire> w, Options o = {}) : wire_(std::move(w)), scheme_(o.scheme) {
    nghttp2_session_callbacks* cb = nullptr;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, &Client::on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, &Client::on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, &Client::on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, &Client::on_close);
    const int rv = nghttp2_session_client_new(&s_, cb, this);
    nghttp2_session_callbacks_del(cb);
    if (rv != 0) throw std::runtime_error("nghttp2_session_client_new");
    const nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                         {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, o.initial_window}};
    nghttp2_submit_settings(s_, NGHTTP2_FLAG_NONE, iv, 2);
    // The connection's window too, so large responses need few updates.
    nghttp2_session_set_local_window_size(s_, NGHTTP2_FLAG_NONE, 0, 16 << 20);
  }
  ~Client() { nghttp2_session_del(s_); }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // submit: a request (sent at the next pump); its stream id. A body is
  // sent as DATA frames as the server's windows allow.
  std::int32_t submit(std::string_view method, std::string_view path, const Fields& extra = {},
                      std::optional<std::string> body = std::nullopt, std::string_view authority = "127.0.0.1") {
    Fields f{{":method", std::string(method)}, {":scheme", scheme_}, {":authority", std::string(authority)},
             {":path", std::string(path)}};
    f.insert(f.end(), extra.begin(), extra.end());
    std::vector<nghttp2_nv> nv;
    for (auto& [n, v] : f)
      nv.push_back({reinterpret_cast<std::uint8_t*>(n.data()), reinterpret_cast<std::uint8_t*>(v.data()), n.size(),
                    v.size(), NGHTTP2_NV_FLAG_NONE});
    nghttp2_data_provider prd{};
    Upload* up = nullptr;
    if (body) {
      uploads_.push_back(std::make_unique<Upload>(Upload{std::move(*body), 0}));
      up = uploads_.back().get();
      prd.source.ptr = up;
      prd.read_callback = &Client::read_body;
    }
    const std::int32_t id = nghttp2_submit_request(s_, nullptr, nv.data(), nv.size(), up ? &prd : nullptr, nullptr);
    if (id < 0) throw std::runtime_error(std::string("nghttp2_submit_request: ") + nghttp2_strerror(id));
    streams_[id];
    if (up) upload_of_[id] = up;
    return id;
  }
  // reset: RST_STREAM (sent at the next pump).
  void reset(std::int32_t id, std::uint32_t code = NGHTTP2_CANCEL) {
    nghttp2_submit_rst_stream(s_, NGHTTP2_FLAG_NONE, id, code);
  }
  // pump: sends what the session has and reads what the server sends
  // until done() holds (true), or `limit` passes or the connection ends
  // (done() then). done() is checked every few milliseconds also while
  // the server is silent, so it may watch a handler's counters.
  bool pump(const std::function<bool()>& done, Clock::duration limit) {
    const auto end = Clock::now() + limit;
    for (;;) {
      flush();
      if (done()) return true;
      // A session that wants no more (GOAWAY received, its streams done)
      // still reads on: done() may be the connection's end.
      if (eof_ || failed_) return done();
      const auto left = end - Clock::now();
      if (left <= Clock::duration::zero()) return done();
      char buf[16384];
      std::size_t n = 0;
      try {
        n = sp::with_timeout(std::min<Clock::duration>(left, std::chrono::milliseconds(5)),
                             [&] { return wire_->read_some(buf, sizeof buf); });
      } catch (const sp::TimedOut&) {
        continue;
      } catch (const std::system_error&) {
        n = 0;  // reset: the end too
      }
      if (n == 0) {
        eof_ = true;
        continue;
      }
      if (!nghttp2_session_want_read(s_)) continue;  // after the session: dropped
      const ssize_t rv = nghttp2_session_mem_recv(s_, reinterpret_cast<std::uint8_t*>(buf), n);
      if (rv < 0) failed_ = true;
    }
  }
  // finish: pump until stream `id` closed.
  bool finish(std::int32_t id, Clock::duration limit) {
    return pump([this, id] { return streams_[id].closed; }, limit);
  }
  bool finish_all(Clock::duration limit) {
    return pump([this] {
      for (auto& [id, st] : streams_)
        if (!st.closed) return false;
      return true;
    }, limit);
  }
  // get: one request, pumped to its end.
  StreamResult request(std::string_view method, std::string_view path, Clock::duration limit,
                       std::optional<std::string> body = std::nullopt, const Fields& extra = {}) {
    const std::int32_t id = submit(method, path, extra, std::move(body));
    finish(id, limit);
    return streams_[id];
  }
  StreamResult get(std::string_view path, Clock::duration limit) { return request("GET", path, limit); }

  StreamResult& stream(std::int32_t id) { return streams_[id]; }
  // uploaded: bytes of stream id's request body sent so far (the server's
  // windows allowed them).
  std::size_t uploaded(std::int32_t id) const {
    const auto it = upload_of_.find(id);
    return it == upload_of_.end() ? 0 : it->second->at;
  }
  // The connection: a GOAWAY received (its code and last stream id), its
  // end (the server closed it), a protocol error nghttp2 found.
  bool goaway() const { return goaways_ > 0; }
  int goaways() const { return goaways_; }
  std::uint32_t goaway_code() const { return goaway_code_; }
  std::int32_t goaway_last_stream() const { return goaway_last_; }
  bool eof() const { return eof_; }
  bool failed() const { return failed_; }
  void close() { wire_->close(); }

 private:
  struct Upload {
    std::string data;
    std::size_t at;
  };
  void flush() {
    std::string out;
    for (;;) {
      const std::uint8_t* data = nullptr;
      const ssize_t n = nghttp2_session_mem_send(s_, &data);
      if (n < 0) {
        failed_ = true;
        break;
      }
      if (n == 0) break;
      out.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
      if (out.size() >= (256u << 10)) break;  // write in pieces; the loop comes back
    }
    if (out.empty() || eof_) return;
    try {
      wire_->write_all(out);
    } catch (const std::system_error&) {
      eof_ = true;
    }
  }
  static ssize_t read_body(nghttp2_session*, std::int32_t, std::uint8_t* buf, std::size_t len,
                           std::uint32_t* flags, nghttp2_data_source* src, void*) {
    auto* u = static_cast<Upload*>(src->ptr);
    const std::size_t n = std::min(len, u->data.size() - u->at);
    std::memcpy(buf, u->data.data() + u->at, n);
    u->at += n;
    if (u->at == u->data.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  }
  static int on_header(nghttp2_session*, const nghttp2_frame* f, const std::uint8_t* name, std::size_t namelen,
                       const std::uint8_t* value, std::size_t valuelen, std::uint8_t, void* self) {
    auto& st = static_cast<Client*>(self)->streams_[f->hd.stream_id];
    std::string n(reinterpret_cast<const char*>(name), namelen), v(reinterpret_cast<const char*>(value), valuelen);
    if (n == ":status")
      st.status = std::stoi(v);
    else
      st.fields.emplace_back(std::move(n), std::move(v));
    return 0;
  }
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* f, void* self) {
    auto* c = static_cast<Client*>(self);
    switch (f->hd.type) {
      case NGHTTP2_HEADERS:
        if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) c->streams_[f->hd.stream_id].end_on_headers = true;
        break;
      case NGHTTP2_DATA:
        ++c->streams_[f->hd.stream_id].data_frames;
        break;
      case NGHTTP2_RST_STREAM:
        c->streams_[f->hd.stream_id].rst = true;
        c->streams_[f->hd.stream_id].rst_code = f->rst_stream.error_code;
        break;
      case NGHTTP2_GOAWAY:
        ++c->goaways_;
        c->goaway_code_ = f->goaway.error_code;
        c->goaway_last_ = f->goaway.last_stream_id;
        break;
      default:
        break;
    }
    return 0;
  }
  static int on_data(nghttp2_session*, std::uint8_t, std::int32_t id, const std::uint8_t* data, std::size_t len,
                     void* self) {
    static_cast<Client*>(self)->streams_[id].body.append(reinterpret_cast<const char*>(data), len);
    return 0;
  }
  static int on_close(nghttp2_session*, std::int32_t id, std::uint32_t code, void* self) {
    auto& st = static_cast<Client*>(self)->streams_[id];
    st.closed = true;
    st.close_code = code;
    return 0;
  }

  std::unique_ptr<Wire> wire_;
  std::string scheme_;
  nghttp2_session* s_ = nullptr;
  std::map<std::int32_t, StreamResult> streams_;
  std::vector<std::unique_ptr<Upload>> uploads_;
  std::map<std::int32_t, Upload*> upload_of_;
  bool eof_ = false, failed_ = false;
  int goaways_ = 0;
  std::uint32_t goaway_code_ = 0;
  std::int32_t goaway_last_ = -1;
};

// pattern: `n` bytes of a sequence no shift of itself reproduces (a
// dropped, doubled or reordered piece changes the bytes).
inline std::string pattern(std::size_t n, unsigned seed = 1) {
  std::string s(n, '\0');
  std::uint32_t x = 2463534242u ^ seed;
  for (std::size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    s[i] = static_cast<char>(x & 0xff);
  }
  return s;
}

// Fnv: FNV-1a, to compare a body at both ends without keeping it twice.
inline std::uint64_t fnv(std::string_view s, std::uint64_t h = 1469598103934665603ull) {
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// describe: the frames a RawConn read, for a failure's message.
inline std::string describe(const RawConn& c) {
  std::string s;
  for (const Frame& f : c.seen()) {
    s += " [type=" + std::to_string(f.type) + " flags=" + std::to_string(f.flags) + " stream=" +
         std::to_string(f.stream) + " len=" + std::to_string(f.payload.size());
    if (f.type == RST_STREAM || f.type == GOAWAY) s += " code=" + std::to_string(f.code());
    if (f.type == HEADERS) s += " status=" + f.field(":status");
    s += "]";
  }
  return s + (c.eof() ? " EOF" : " (open)");
}

// has / find: a frame of `type` (on `stream`; 0: any) among seen().
inline bool has(const RawConn& c, std::uint8_t type, std::uint32_t stream = 0) {
  return std::any_of(c.seen().begin(), c.seen().end(),
                     [&](const Frame& f) { return f.type == type && (stream == 0 || f.stream == stream); });
}
inline const Frame* find(const RawConn& c, std::uint8_t type, std::uint32_t stream = 0) {
  for (const Frame& f : c.seen())
    if (f.type == type && (stream == 0 || f.stream == stream)) return &f;
  return nullptr;
}

// H2Server: an http::Server built from a Router (so routes pick
// Body::whole or Body::stream), listening on 127.0.0.1:0 and served by a
// fiber; serve_returned() says serve() came back. stop(): shutdown() and
// join (the destructor too).
class H2Server {
 public:
  explicit H2Server(http::Router r, http::ServerOptions o = {}) : srv_(std::move(r), std::move(o)) {
    srv_.listen("127.0.0.1", 0);
    task_ = sp::spawn([this] {
      srv_.serve();
      returned_.store(true);
    });
  }
  ~H2Server() { stop(); }
  std::uint16_t port() const { return srv_.local_endpoint().port(); }
  http::Server& server() { return srv_; }
  bool serve_returned() const { return returned_.load(); }
  void stop() {
    if (stopped_) return;
    stopped_ = true;
    srv_.shutdown();
    task_.join();
  }

 private:
  http::Server srv_;
  sp::Task<void> task_;
  std::atomic<bool> returned_{false};
  bool stopped_ = false;
};

// ok_route: GET /ok answers "ok" (the still-serving probe's target).
inline void ok_route(http::Router& r) {
  r.get("/ok", [](http::Request&) { return http::Response::text_body(200, "ok"); });
}
// serves: a fresh HTTP/2 connection gets GET /ok answered whole.
inline bool serves(std::uint16_t port, Clock::duration limit) {
  try {
    Client c(port);
    const StreamResult r = c.get("/ok", limit);
    return r.complete() && r.status == 200 && r.body == "ok";
  } catch (const std::system_error&) {
    return false;  // refused
  }
}

}  // namespace h2_test
