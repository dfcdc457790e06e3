// h2_server_fuzz.cpp: bytes from the fuzzer, read as a script of HTTP/2
// frames a client sends to spindle's http::Server over loopback (cleartext,
// prior knowledge) on one connection (issue #45: the server against any
// client). Random bytes rarely get past HTTP/2's preface and HPACK, so the
// input is not sent as it is: its first byte picks the preface (the real
// one, or a cut or bent one), and each following byte an operation whose
// arguments come from the bytes after it:
//  - HEADERS with a header block built from a dictionary of fields (valid
//    requests to every route, forbidden and malformed fields, oversized
//    values, every HPACK representation: static-table indexes, literals
//    with and without indexing, table-size updates), whole or split over
//    CONTINUATIONs (sometimes with another frame between them);
//  - DATA, RST_STREAM, WINDOW_UPDATE, SETTINGS, PING, PRIORITY, GOAWAY
//    with values at and past their limits, padding right and wrong;
//  - a frame of any type with input bytes as its payload, raw bytes that
//    break the framing, and pauses in which the client only reads (so
//    handlers run, streams finish and the connection may be released
//    between frames).
// Then the client half-closes and reads until the server closes, and
// checks what came back:
//  - the server answered within 10 s (no hang), and all it wrote is whole
//    frames, the first its SETTINGS;
//  - no frame a server may not send (PUSH_PROMISE, PRIORITY, unknown
//    types), each on a stream of the right kind; a CONTINUATION only
//    where one belongs; every header block decodes (the server's HPACK
//    state stays right whatever the client did) and starts with a :status
//    the server may send here;
//  - no response on a stream the client did not open, none after the
//    stream's END_STREAM or RST_STREAM, no new response on a stream past
//    a GOAWAY's last stream id; a body no longer than its content-length,
//    and exactly as long once the stream ended (not for HEAD).
// Every 64 inputs and at the end a well-formed request on a fresh
// connection must get its 200: the server keeps serving.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <spindle/io/http/server.hpp>
#include <spindle/spindle.hpp>

#include "h2_fuzz_frames.hpp"
#include "loopback_client.hpp"
#include "server_fixture.hpp"

namespace {

using namespace h2_fuzz;
namespace sp = spindle;
namespace http = spindle::http;
using Clock = std::chrono::steady_clock;

fuzz_support::CurrentInput g_input;

[[noreturn]] void fail(const std::string& what, const std::string& sent, const std::string& got) {
  std::fprintf(stderr, "h2_server_fuzz: %s\n--- sent (%zu bytes) ---\n%s\n--- got (%zu bytes) ---\n%s\n",
               what.c_str(), sent.size(), hex(sent).c_str(), got.size(), hex(got).c_str());
  g_input.save("h2_server_fuzz_failure.bin");
  std::abort();
}

// The server under test (server_fixture.hpp). Small limits, so that short
// inputs reach them: a 400-byte head (431), a 512-byte body (413), 8
// streams at once, a 1 KiB stream window, 16 resets in a burst, 64 queued
// ACKs, 4 CONTINUATIONs; and a release after 1 ms quiet, so that pauses
// release the connection and later frames meet it served again.
fuzz_support::ServerFixture& fixture() {
  static fuzz_support::ServerFixture f = [] {
    http::Router r;
    r.get("/", [](http::Request&) { return http::Response::text_body(200, "ok"); });
    r.post("/echo", [](http::Request& q) { return http::Response::text_body(200, q.body); });
    r.post("/chunk", [](http::Request& q) {
      std::size_t n = 0;
      for (std::string piece; !(piece = q.read_body_chunk(100)).empty();) n += piece.size();
      return http::Response::text_body(200, std::to_string(n));
    }, http::Body::stream);
    r.get("/gen", [](http::Request&) {
      auto left = std::make_shared<int>(3);
      return http::Response::stream_body(200, [left] { return (*left)-- > 0 ? std::string(700, 'g') : std::string(); });
    });
    r.get("/throw", [](http::Request&) -> http::Response { throw std::runtime_error("fuzz"); });
    r.get("/sleep", [](http::Request&) {
      sp::sleep_for(std::chrono::milliseconds(2));
      return http::Response::text_body(200, "slept");
    });
    http::ServerOptions o;
    o.max_head = 400;
    o.max_body = 512;
    o.read_timeout = std::chrono::milliseconds(1000);
    o.body_timeout = std::chrono::milliseconds(1000);
    o.write_timeout = std::chrono::milliseconds(3000);
    o.idle_release_after = std::chrono::milliseconds(1);
    o.on_error = [](const http::Request&, std::exception_ptr) {};  // /throw: expected, not printed
    o.http2.max_concurrent_streams = 8;
    o.http2.stream_window = 1024;
    o.http2.reset_burst = 16;
    o.http2.max_outbound_ack = 64;
    o.http2.max_continuations = 4;
    return fuzz_support::ServerFixture(std::move(r), std::move(o));
  }();
  return f;
}

// ---- the script's input -----------------------------------------------------

// What a block built here asks for (the method, when the block is one a
// server may take as a request): checks use it for HEAD's empty body.
struct Asked {
  std::string method;  // "" when the block is not known to be a request
  bool expect_100 = false;
};

// The first 4 methods and 8 paths are requests a server takes (PUT and
// the unknown path: 405, 404); the rest are for flawed blocks.
constexpr const char* kMethods[] = {"GET", "POST", "HEAD", "PUT", "CONNECT", "OPTIONS", "get", ""};
constexpr const char* kPaths[] = {"/",     "/echo",     "/chunk", "/gen",  "/throw", "/sleep",
                                  "/none", "/?a=b",     "*",      "",      "/%zz",   "/echo#f",
                                  "//",    "/../../etc", "x",     "/sleep"};

// block: a header block from the dictionary: a request's pseudo-headers
// (some as static-table indexes), then up to 4 more fields. Flawed, the
// pseudo-headers may be left out, doubled, misplaced or invalid, and the
// fields may be forbidden, malformed, oversized, or bad HPACK (an index
// past the tables, raw bytes).
std::string block(Input& in, Asked& asked, bool flaw) {
  std::string b;
  const std::uint8_t shape = in.byte();
  const std::uint8_t kind = (shape & 0x40) != 0 ? 0x40 : ((shape & 0x80) != 0 ? 0x10 : 0x00);
  if ((shape & 0x03) == 3) hpack_int(b, 0x20, 5, in.byte() * 16);  // a table-size update first
  const char* method = kMethods[in.byte() % (flaw ? 8 : 4)];
  const char* path = kPaths[in.byte() % (flaw ? 16 : 8)];
  const bool left_out = flaw && (shape & 0x04) != 0;
  if (!left_out || (shape & 0x10) != 0) {
    if (std::string_view(method) == "GET" && (shape & 0x08) != 0) {
      b.push_back(static_cast<char>(0x82));  // static :method GET
    } else {
      literal(b, kind, ":method", method);
    }
  }
  if (!left_out || (shape & 0x10) == 0) {
    if (std::string_view(path) == "/" && (shape & 0x08) != 0) {
      b.push_back(static_cast<char>(0x84));  // static :path /
    } else {
      literal(b, kind, ":path", path);
    }
  }
  b.push_back(static_cast<char>((shape & 0x02) != 0 ? 0x87 : 0x86));  // :scheme https or http
  // nghttp2 takes a request only with :authority or host (flawed: neither).
  if (!flaw || (shape & 0x01) != 0) literal(b, 0x00, ":authority", "fuzz.test");
  const bool doubled = flaw && (shape & 0x30) == 0x30;
  if (doubled) literal(b, 0x00, ":method", "GET");
  asked.method = flaw ? "" : method;  // a flawed block's method is not known to be the request's
  const int extra = in.byte() % 5;
  for (int i = 0; i < extra && !in.empty(); ++i) {
    const std::uint8_t f = in.byte();
    switch (flaw ? f % 32 : 19 + f % 13) {
      case 0: literal(b, kind, "content-length", "abc"); break;
      case 1: literal(b, kind, "te", "gzip"); break;
      case 2: literal(b, kind, "connection", "close"); break;
      case 3: literal(b, kind, "Upper", "case"); break;
      case 4: literal(b, kind, ":bogus", "x"); break;
      case 5: literal(b, kind, "", "empty name"); break;
      case 6: literal(b, kind, "x-crlf", "a\r\nb: c"); break;
      case 7: literal(b, kind, "transfer-encoding", "chunked"); break;
      case 8: literal(b, kind, ":path", "/late"); break;          // a pseudo-header after a field
      case 9: hpack_int(b, 0x80, 7, in.byte() % 70); break;      // any index: 0, the dynamic table's, past it
      case 10: b.append(in.bytes(in.byte() % 8)); break;         // raw HPACK bytes
      case 11: hpack_int(b, 0x20, 5, 1u << 20); break;           // a table size past the setting
      case 12: literal(b, kind, "keep-alive", "5"); break;
      case 19: literal(b, kind, "content-length", std::to_string(in.byte() * 3)); break;  // may disagree with DATA
      case 20: literal(b, kind, "content-length", "600"); break;  // over max_body: 413
      case 21: literal(b, kind, "te", "trailers"); break;
      case 22: literal(b, kind, "expect", "100-continue"), asked.expect_100 = true; break;
      case 23: {  // one in four over max_head: 431
        const std::uint8_t n = in.byte();
        literal(b, kind, "x-long", std::string((n & 0xc0) == 0xc0 ? 200u + n : n % 64u, 'v'));
        break;
      }
      case 24: literal(b, kind, "cookie", "a=1"); break;
      case 25: literal(b, kind, "host", "other.test"); break;
      case 26:  // a field added to the dynamic table, then referenced by index
        literal(b, 0x40, "x-dyn", std::to_string(in.byte()));
        hpack_int(b, 0x80, 7, 62);
        break;
      default: literal(b, kind, "x-fuzz", std::to_string(f)); break;
    }
  }
  return b;
}

// pad: a PADDED payload (pad length, data, padding); flawed, a pad
// length past the frame's end.
std::string pad(Input& in, std::string_view data, bool flaw) {
  const std::uint8_t n = in.byte() % 32;
  std::string p(1, static_cast<char>(flaw ? 0xff : n));
  p.append(data);
  if (!flaw) p.append(n, '\0');
  return p;
}

// settings_entries: up to 3 settings (ids 0-7: unknown ones included) of
// values inside their ranges; flawed, any 32-bit values (an ENABLE_PUSH
// of 2, a window past 2^31-1, a frame size out of range).
std::string settings_entries(Input& in, bool flaw) {
  static constexpr std::uint32_t kValues[] = {0, 1, 100, 4096, 16384, 65535, 1u << 20, 16777215};
  std::string entries;
  for (int k = 1 + in.byte() % 3; k > 0; --k) {
    const std::uint16_t id = in.byte() % 8;
    std::uint32_t v = flaw ? in.u32() : kValues[in.byte() % 8];
    if (!flaw && id == 2) v %= 2;                   // ENABLE_PUSH: 0 or 1
    if (!flaw && id == 5 && v < 16384) v = 16384;  // MAX_FRAME_SIZE: at least 16384
    entries.push_back(static_cast<char>(id >> 8));
    entries.push_back(static_cast<char>(id));
    entries += be32(v);
  }
  return entries;
}

// ---- the connection -----------------------------------------------------------

// Conn: the connection, and how many streams the server has ended.
struct Conn : fuzz_support::LoopbackClient {
  std::size_t scanned = 0;  // how far finished() has looked
  long done = 0;            // streams the server ended (END_STREAM or RST_STREAM) so far

  explicit Conn(std::uint16_t port) : LoopbackClient(port, &fail) {}

  // finished: the streams the server has ended so far (a scan of the
  // frame headers read; on a stream of bytes out of frame, a guess).
  long finished() {
    drain();
    while (got.size() - scanned >= 9) {
      const auto* h = reinterpret_cast<const unsigned char*>(got.data() + scanned);
      const std::size_t len = (std::size_t{h[0]} << 16) | (std::size_t{h[1]} << 8) | h[2];
      if (got.size() - scanned - 9 < len) break;
      if (((h[3] == kData || h[3] == kHeaders) && (h[4] & kEndStream) != 0) || h[3] == kRst) ++done;
      scanned += 9 + len;
    }
    return done;
  }
};

// ---- what the client sent, for the checks --------------------------------------

struct Script {
  bool preface = false;  // the real preface and a SETTINGS went first
  bool desync = false;   // raw bytes went out: the server's framing may differ from ours
  std::map<std::uint32_t, Asked> opened;  // streams a HEADERS frame named
  std::uint32_t next = 1;                 // the next new stream id, in order
  std::vector<std::uint32_t> sending;     // streams the client has not ended or reset
  bool acked = false;                     // the client acknowledged the server's SETTINGS
  long started = 0;                       // streams opened, flawless
};

// A stream id: half the time the stream opened last (its DATA, its
// reset) or the next new one, else one of the first dozen odd ones (out
// of order), an even one or 0, or anything.
std::uint32_t stream_id(Input& in, const Script& s) {
  const std::uint8_t b = in.byte();
  if (b < 64) return s.next > 1 ? s.next - 2 : 1;
  if (b < 128) return s.next;
  if (b < 200) return 1 + 2 * (b % 12);
  if (b < 235) return 2 * (b % 8);
  return in.u32() & 0x7fffffffu;
}

// new_id: the next stream in order; flawed, any (an old one, an even one).
std::uint32_t new_id(Input& in, const Script& s, bool flaw) { return flaw ? stream_id(in, s) : s.next; }
// open_id: a stream the client may still send on (its body, its reset);
// flawed, any (an idle or closed one). 0: none, when not flawed.
std::uint32_t open_id(Input& in, const Script& s, bool flaw) {
  if (flaw) return stream_id(in, s);
  if (s.sending.empty()) return 0;
  return s.sending[s.sending.size() - 1 - in.byte() % s.sending.size()];
}
// ended: the client sent END_STREAM or RST_STREAM on id.
void ended(Script& s, std::uint32_t id) { std::erase(s.sending, id); }

// open: notes a HEADERS frame's stream for the checks.
void open(Script& s, std::uint32_t id, const Asked& asked, bool end_stream) {
  if (!asked.method.empty()) ++s.started;
  if (s.opened.emplace(id, asked).second && !end_stream) s.sending.push_back(id);
  if (id % 2 == 1 && id >= s.next) s.next = id + 2;
}

// room: what a client that keeps to max_concurrent_streams (8) does
// before it opens a stream: it ends the oldest of its bodies once 3 are
// open, and while 6 of its streams are unanswered it waits (up to 50 ms;
// nghttp2 ends the connection of a client past the limit it
// acknowledged). Not for flawed operations.
void room(Conn& c, Script& s) {
  if (s.sending.size() >= 3) {
    c.send(frame(kData, kEndStream, s.sending.front(), ""));
    ended(s, s.sending.front());
  }
  for (int k = 0; k < 50 && s.started - c.finished() >= 6 && !c.closed; ++k) c.wait(1);
}

// run: sends the script the input spells.
void run(Input& in, Conn& c, Script& s) {
  const std::uint8_t start = in.byte();
  if (start % 8 == 0) {
    // A cut or bent preface: the server must take it for HTTP/1.1 or
    // close, never hang.
    std::string p(kPreface.substr(0, in.byte() % (kPreface.size() + 1)));
    c.send(p + in.bytes(in.byte() % 32));
    return;
  }
  std::string first(kPreface);
  first += frame(kSettings, 0, 0, start % 8 == 1 ? settings_entries(in, (start & 0x38) == 0) : "");
  c.send(first);
  s.preface = true;
  if ((start & 0x40) == 0) {
    // A client's usual start: the server's SETTINGS read, then its ACK.
    for (int k = 0; k < 50 && c.got.size() < 9 && !c.closed; ++k) c.wait(1);
    c.send(frame(kSettings, kAck, 0, ""));
    s.acked = true;
  }
  // Each operation is a byte that picks it (weighted: mostly requests,
  // their bodies and pauses, so that random bytes get deep) and a byte of
  // flags; a flaw (a malformed field, a wrong length, an invalid value,
  // bytes that break the framing) comes in about one operation in 32, when
  // the flags' low bits are 0: most flaws end the connection, and an input
  // holds tens of operations.
  for (int ops = 0; ops < 200 && !in.empty() && !c.closed; ++ops) {
    std::uint8_t op = in.byte() % 32;
    const std::uint8_t fl = in.byte();
    const bool flaw = (fl & 0x1f) == 0;
    if (!flaw && op >= 11 && op < 19 && s.sending.empty()) op = 0;  // a body needs a stream first
    if (op < 11 && !flaw) room(c, s);
    if (op < 9) {  // HEADERS, whole
      const std::uint32_t id = new_id(in, s, flaw);
      Asked asked;
      std::string b = block(in, asked, flaw);
      // Three in four end the stream (a request without a body): open
      // streams count against max_concurrent_streams.
      std::uint8_t flags = kEndHeaders | ((fl & 0x60) != 0 ? kEndStream : 0);
      if ((fl & 0xc0) == 0x40) {  // a priority prefix, on itself if flawed
        const std::uint8_t weight = in.byte();
        b = be32((flaw ? id : id > 2 ? id - 2 : 0) | ((weight & 1) != 0 ? 0x80000000u : 0)) +
            std::string(1, static_cast<char>(weight)) + b;
        flags |= kPrio;
      } else if ((fl & 0xc0) == 0x80) {
        b = pad(in, b, flaw);
        flags |= kPadded;
      }
      open(s, id, asked, (flags & kEndStream) != 0);
      c.send(frame(kHeaders, flags, id, b));
    } else if (op < 11) {  // HEADERS and CONTINUATIONs
      const std::uint32_t id = new_id(in, s, flaw);
      Asked asked;
      const std::string b = block(in, asked, flaw);
      const int parts = 2 + in.byte() % 3;
      const std::size_t step = b.size() / static_cast<std::size_t>(parts) + 1;
      open(s, id, asked, (fl & 0x20) != 0);
      std::string out;
      for (int k = 0; k < parts; ++k) {
        const std::size_t from = std::min(b.size(), step * static_cast<std::size_t>(k));
        const std::string_view piece = std::string_view(b).substr(from, step);
        std::uint8_t flags = k == parts - 1 ? kEndHeaders : 0;
        if (k == 0 && (fl & 0x20) != 0) flags |= kEndStream;
        // Flawed: a CONTINUATION on another stream, or a PING inside the block.
        const bool other = flaw && (fl & 0x40) != 0 && k > 0;
        out += frame(k == 0 ? kHeaders : kContinuation, flags, other ? id + 2 : id, piece);
        if (flaw && (fl & 0x40) == 0 && k == 0) out += frame(kPing, 0, 0, std::string(8, 'p'));
      }
      c.send(out);
    } else if (op < 16) {  // DATA
      const std::uint32_t id = open_id(in, s, flaw);
      std::string d(in.byte() * 3u, 'd');
      std::uint8_t flags = (fl & 0x20) != 0 ? kEndStream : 0;
      if ((fl & 0x40) != 0) {
        d = pad(in, d, flaw);
        flags |= kPadded;
      }
      if ((flags & kEndStream) != 0) ended(s, id);
      c.send(frame(kData, flags, id, d));
    } else if (op < 17) {  // RST_STREAM, flawed: of the wrong length or on any stream
      const std::uint32_t id = open_id(in, s, flaw);
      std::string p = be32(in.byte() % 16);
      if (flaw) p.pop_back();
      ended(s, id);
      c.send(frame(kRst, 0, id, p));
    } else if (op < 19) {  // WINDOW_UPDATE, flawed: 0 or past 2^31-1 in all
      const std::uint32_t id = (fl & 0x20) != 0 ? 0 : open_id(in, s, flaw);
      static constexpr std::uint32_t kIncs[] = {1, 1024, 65535, 1u << 20};
      c.send(frame(kWindowUpdate, 0, id, be32(!flaw ? kIncs[fl >> 6] : (fl & 0x40) != 0 ? 0 : 0x7fffffffu)));
    } else if (op < 20) {  // SETTINGS, or its ACK
      if ((fl & 0x20) != 0 && (flaw || !s.acked)) {  // the ACK; flawed, a second or with a payload
        s.acked = true;
        c.send(frame(kSettings, kAck, 0, flaw && (fl & 0x40) != 0 ? "x" : ""));
      } else {
        std::string entries = settings_entries(in, flaw);
        if (flaw && (fl & 0x40) != 0) entries.push_back('x');  // not a multiple of 6
        c.send(frame(kSettings, 0, flaw && (fl & 0x40) == 0 ? 1 : 0, entries));
      }
    } else if (op < 21) {  // PING, its ACK, flawed: of the wrong length
      c.send(frame(kPing, (fl & 0x20) != 0 ? kAck : 0, 0, std::string(flaw ? 7 : 8, 'i')));
    } else if (op < 22) {  // PRIORITY, flawed: on itself
      const std::uint32_t id = stream_id(in, s);
      const std::uint32_t dep = flaw ? id : id > 2 ? id - 2 : 0;
      c.send(frame(kPriority, 0, id, be32(dep | ((fl & 0x20) != 0 ? 0x80000000u : 0)) +
                                         std::string(1, static_cast<char>(in.byte()))));
    } else if (op < 23) {  // GOAWAY
      c.send(frame(kGoaway, 0, 0, be32(flaw ? stream_id(in, s) : 0) + be32(in.byte() % 16)));
    } else if (op < 24 && flaw) {  // any frame, its payload from the input
      const std::uint8_t type = in.byte();
      const std::uint32_t id = stream_id(in, s);
      if (type == kHeaders || type == kContinuation || type == kPushPromise) s.desync = true;
      c.send(frame(type, fl, id, in.bytes(in.byte() % 64)));
    } else if (op < 25 && flaw) {  // raw bytes: the framing breaks
      s.desync = true;
      c.send(in.bytes(1 + in.byte() % 32));
    } else {  // a pause: only read (handlers run, the connection may be released)
      c.wait(fl % 4);
    }
  }
}

// ---- the checks --------------------------------------------------------------

long g_status[600] = {};  // final and interim statuses seen: how deep inputs reach
long g_frames[10] = {};   // the server's frames by type
long g_inputs = 0, g_goaways = 0;

// A response stream as the client sees it.
struct Seen {
  bool final = false, ended = false, reset = false;
  int status = 0;    // the final head's
  long length = -1;  // content-length, if the final head had one
  long body = 0;
};

std::map<std::uint32_t, Seen> check(const Script& s, const Conn& c) {
  const std::string& sent = c.sent;
  const std::string& got = c.got;
  auto bad = [&](const std::string& what) { fail(what, sent, got); };
  std::map<std::uint32_t, Seen> streams;
  if (!s.preface) return streams;  // HTTP/1.1 or nothing: only the hang and the probe check it
  Inflater inflater;
  std::uint32_t goaway_last = 0x7fffffffu;
  std::string block;           // a header block being gathered
  std::uint32_t block_on = 0;  // its stream; 0: none open
  bool block_ends = false;     // its HEADERS had END_STREAM
  std::size_t off = 0;
  for (std::size_t k = 0; off < got.size(); ++k) {
    if (got.size() - off < 9) bad("bytes after the last whole frame");
    const std::size_t len = (static_cast<std::size_t>(static_cast<unsigned char>(got[off])) << 16) |
                            (static_cast<std::size_t>(static_cast<unsigned char>(got[off + 1])) << 8) |
                            static_cast<unsigned char>(got[off + 2]);
    const std::uint8_t type = static_cast<std::uint8_t>(got[off + 3]);
    const std::uint8_t flags = static_cast<std::uint8_t>(got[off + 4]);
    const std::uint32_t id = get32(got, off + 5) & 0x7fffffffu;
    if (got.size() - off - 9 < len) bad("a frame cut short");
    if (len > 16384) bad("a frame over the default SETTINGS_MAX_FRAME_SIZE");
    const std::string_view payload(got.data() + off + 9, len);
    off += 9 + len;
    if (type < 10) ++g_frames[type];
    if (k == 0 && (type != kSettings || (flags & kAck) != 0)) bad("the server's first frame is not its SETTINGS");
    if (block_on != 0 && type != kContinuation) bad("a frame inside the server's header block");
    switch (type) {
      case kSettings:
      case kPing:
        if (id != 0) bad("SETTINGS or PING on a stream");
        break;
      case kGoaway:
        if (id != 0 || len < 8) bad("a malformed GOAWAY");
        goaway_last = std::min(goaway_last, get32(payload, 0) & 0x7fffffffu);
        ++g_goaways;
        break;
      case kWindowUpdate:
        if (len != 4) bad("a malformed WINDOW_UPDATE");
        break;
      case kRst: {
        if (id == 0 || len != 4) bad("a malformed RST_STREAM");
        Seen& st = streams[id];
        if (st.reset) bad("RST_STREAM twice on one stream");
        st.reset = true;
        break;
      }
      case kHeaders:
      case kContinuation: {
        if (type == kHeaders) {
          if (id == 0 || id % 2 == 0) bad("HEADERS on stream 0 or an even stream");
          if (!s.desync && s.opened.count(id) == 0) bad("a response on a stream the client did not open");
          Seen& st = streams[id];
          if (st.ended || st.reset) bad("HEADERS after the stream's end");
          if (!st.final && id > goaway_last) bad("a response to a stream past the GOAWAY's last stream id");
          std::string_view p = payload;
          std::size_t padding = 0;
          if ((flags & kPadded) != 0) {
            if (p.empty()) bad("PADDED HEADERS without its pad length");
            padding = static_cast<unsigned char>(p[0]);
            p.remove_prefix(1);
          }
          if ((flags & kPrio) != 0) {
            if (p.size() < 5) bad("a cut priority prefix");
            p.remove_prefix(5);
          }
          if (padding > p.size()) bad("padding past the frame");
          block.assign(p.substr(0, p.size() - padding));
          block_on = id;
          block_ends = (flags & kEndStream) != 0;
        } else {
          if (block_on == 0 || id != block_on) bad("a CONTINUATION that continues nothing");
          block.append(payload);
        }
        if ((flags & kEndHeaders) == 0) break;
        std::vector<std::pair<std::string, std::string>> fields;
        if (!inflater.decode(block, fields)) bad("the server's header block does not decode");
        Seen& st = streams[block_on];
        if (fields.empty() || fields[0].first != ":status") bad("a response head without :status first");
        const int status = std::atoi(fields[0].second.c_str());
        if (status >= 0 && status < 600) ++g_status[status];
        // 400: the Router's answer to a bad percent-escape in the path.
        if (status != 100 && status != 200 && status != 400 && status != 404 && status != 405 &&
            status != 413 && status != 431 && status != 500) {
          bad("unexpected status " + fields[0].second + " on stream " + std::to_string(block_on));
        }
        if (st.final) bad("a second final head (the fuzz server sends no trailers)");
        if (status == 100) {
          if (block_ends) bad("a 100 that ends its stream");
          if (!s.desync && !s.opened.at(block_on).expect_100) bad("a 100 nobody asked for");
        } else {
          st.final = true;
          st.status = status;
          for (const auto& [n, v] : fields) {
            if (n == "content-length") st.length = std::atol(v.c_str());
          }
        }
        if (block_ends) st.ended = true;
        block_on = 0;
        break;
      }
      case kData: {
        if (id == 0 || id % 2 == 0) bad("DATA on stream 0 or an even stream");
        Seen& st = streams[id];
        if (!st.final) bad("DATA before the response head");
        if (st.ended || st.reset) bad("DATA after the stream's end");
        std::string_view p = payload;
        if ((flags & kPadded) != 0) {
          if (p.empty() || static_cast<unsigned char>(p[0]) >= p.size()) bad("bad DATA padding");
          p = p.substr(1, p.size() - 1 - static_cast<unsigned char>(p[0]));
        }
        st.body += static_cast<long>(p.size());
        if (st.length >= 0 && st.body > st.length) bad("a body longer than its content-length");
        if ((flags & kEndStream) != 0) st.ended = true;
        break;
      }
      default:
        bad("a frame type the server may not send: " + std::to_string(type));
    }
  }
  if (block_on != 0) bad("the server's last header block never ended");
  if (s.desync) return streams;
  for (const auto& [id, st] : streams) {
    if (!st.ended || st.reset || st.length < 0) continue;
    const auto it = s.opened.find(id);
    if (it == s.opened.end() || it->second.method.empty()) continue;
    const long want = it->second.method == "HEAD" ? 0 : st.length;
    if (st.body != want) bad("stream " + std::to_string(id) + ": a body of " + std::to_string(st.body) +
                             " bytes, content-length " + std::to_string(st.length));
  }
  return streams;
}

// check_alive: a fresh connection's GET / gets 200 "ok".
void check_alive(std::uint16_t port) {
  Conn c(port);
  std::string req(kPreface);
  req += frame(kSettings, 0, 0, "");
  std::string b;
  b.push_back(static_cast<char>(0x82));  // :method GET
  b.push_back(static_cast<char>(0x84));  // :path /
  b.push_back(static_cast<char>(0x86));  // :scheme http
  literal(b, 0x00, ":authority", "fuzz.test");
  req += frame(kHeaders, kEndHeaders | kEndStream, 1, b);
  c.send(req);
  const auto end = Clock::now() + std::chrono::seconds(10);
  while (!c.closed && c.got.find("ok") == std::string::npos && Clock::now() < end) c.wait(10);
  Script s;
  s.preface = true;
  s.opened.emplace(1, Asked{"GET"});
  c.finish();
  const std::map<std::uint32_t, Seen> seen = check(s, c);
  const auto it = seen.find(1);
  if (it == seen.end() || it->second.status != 200 || !it->second.ended || it->second.body != 2) {
    fail("the server stopped serving", c.sent, c.got);
  }
}

struct AtEnd {
  ~AtEnd() {
    if (g_inputs == 0) return;
    check_alive(fixture().port());
    std::printf("h2_server_fuzz: %ld inputs; %ld GOAWAYs; statuses:", g_inputs, g_goaways);
    for (int s = 0; s < 600; ++s) {
      if (g_status[s] != 0) std::printf(" %d x %ld", s, g_status[s]);
    }
    std::printf("; frames by type:");
    for (int t = 0; t < 10; ++t) std::printf(" %ld", g_frames[t]);
    std::printf("\n");
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz_support::ServerFixture& f = fixture();
  static AtEnd at_end;  // constructed after the fixture: destroyed before it
  (void)at_end;
  if (size == 0) return 0;
  g_input = {data, size};
  Input in{data, size};
  Script s;
  {
    Conn c(f.port());
    run(in, c, s);
    c.finish();
    check(s, c);
  }
  if (++g_inputs % 64 == 0) check_alive(f.port());
  return 0;
}
