// h2_client_fuzz.cpp: bytes from the fuzzer, read as the script of an
// HTTP/2 server (cleartext, prior knowledge) that answers one to three
// concurrent http::Client requests on one connection (issue #45: the client
// against any server). The server here is a raw loopback thread: it reads
// the client's preface and requests (decoding their header blocks to learn
// which stream asks for which path), then sends what the input spells,
// operation by operation, and closes:
//  - whole responses (a head from a dictionary of statuses and fields,
//    content-length right, wrong or absent, split over CONTINUATIONs or
//    not; a body in DATA frames, padded or not), heads alone, DATA,
//    trailers, 1xx heads, RST_STREAM, WINDOW_UPDATE, SETTINGS, PING,
//    GOAWAY; flaws in about one operation in 32 (forbidden or malformed
//    fields, bad HPACK, bad padding, frames on the wrong stream, a
//    PUSH_PROMISE, frames of any type, raw bytes); pauses.
// What must hold for each call:
//  - it returns or raises http::Error (any errc), never another type, a
//    crash, a sanitizer report or a hang (total_timeout 2 s; the harness
//    allows 10);
//  - a response it returns has a final status (200-999), a body within
//    max_body, none for HEAD;
//  - a stream answered by a flawless whole response before anything that
//    may end the connection (a flaw, a reset, a GOAWAY, the close) is
//    returned exactly: its status and its body.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <spindle/io/http/client.hpp>
#include <spindle/spindle.hpp>

#include "h2_fuzz_frames.hpp"
#include "loopback_listener.hpp"

namespace {

using namespace h2_fuzz;
namespace sp = spindle;
namespace http = spindle::http;
using Clock = std::chrono::steady_clock;

constexpr std::size_t kMaxBody = 4096;

// What one call must return: filled in by the server thread for a stream
// it answered exactly (see the file comment), read after the calls ended.
struct Exact {
  int status = 0;
  std::string body;
};

struct Shared {
  std::mutex mu;
  std::string script;                    // the input, for this connection
  std::map<std::string, Exact> exact;    // by path: the calls that must come back as sent
  std::string served;                    // what the server wrote, for reports
};

Shared& shared() {
  static Shared s;
  return s;
}

fuzz_support::CurrentInput g_input;

[[noreturn]] void fail(const std::string& what) {
  std::string served;
  {
    std::lock_guard lk(shared().mu);
    served = shared().served;
  }
  std::fprintf(stderr, "h2_client_fuzz: %s\n--- served (%zu bytes) ---\n%s\n", what.c_str(), served.size(),
               hex(served).c_str());
  g_input.save("h2_client_fuzz_failure.bin");
  std::abort();
}

// ---- the raw server -------------------------------------------------------------

// A client request as the server read it.
struct Asked {
  std::uint32_t id = 0;
  std::string path;
  bool head = false;
};

// Conn: the server's end of one connection (blocking socket with short
// timeouts; every call retries EINTR: libFuzzer's -timeout watchdog is a
// SIGALRM without SA_RESTART).
struct Conn {
  int fd;
  std::string in;          // bytes read from the client, not yet parsed
  bool preface = false;    // the client's preface was read
  bool closed = false;     // the client closed or reset
  Inflater inflater;       // the client's HPACK state
  std::vector<Asked> asked;
  std::string block;        // a header block being gathered
  std::uint32_t block_on = 0;

  explicit Conn(int f) : fd(f) {
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // no Nagle (docs/hacking.md "Fuzzing")
  }

  // pump: reads what is there, waiting up to ms for it, and parses the
  // client's frames (its requests' heads; the rest is counted out).
  void pump(int ms) {
    pollfd pfd{fd, POLLIN, 0};
    int r = ::poll(&pfd, 1, ms);
    while (r > 0 && !closed) {
      char buf[16384];
      const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        in.append(buf, static_cast<std::size_t>(n));
      } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        closed = true;
      } else if (errno != EINTR) {
        break;
      }
    }
    parse();
  }
  void parse() {
    if (!preface) {
      if (in.size() < kPreface.size()) return;
      if (in.compare(0, kPreface.size(), kPreface) != 0) {
        closed = true;  // not our client
        return;
      }
      in.erase(0, kPreface.size());
      preface = true;
    }
    std::size_t off = 0;
    while (in.size() - off >= 9) {
      const std::size_t len = (std::size_t{static_cast<unsigned char>(in[off])} << 16) |
                              (std::size_t{static_cast<unsigned char>(in[off + 1])} << 8) |
                              static_cast<unsigned char>(in[off + 2]);
      if (in.size() - off - 9 < len) break;
      const auto type = static_cast<std::uint8_t>(in[off + 3]);
      const auto flags = static_cast<std::uint8_t>(in[off + 4]);
      const std::uint32_t id = get32(in, off + 5) & 0x7fffffffu;
      std::string_view p(in.data() + off + 9, len);
      off += 9 + len;
      if (type == kHeaders) {
        if ((flags & kPadded) != 0 && !p.empty()) {
          const std::size_t pad = static_cast<unsigned char>(p[0]);
          p.remove_prefix(1);
          p.remove_suffix(std::min(pad, p.size()));
        }
        if ((flags & kPrio) != 0 && p.size() >= 5) p.remove_prefix(5);
        block.assign(p);
        block_on = id;
      } else if (type == kContinuation && block_on == id) {
        block.append(p);
      } else {
        continue;
      }
      if ((flags & kEndHeaders) == 0) continue;
      std::vector<std::pair<std::string, std::string>> fields;
      if (!inflater.decode(block, fields)) fail("the client's header block does not decode");
      Asked a{block_on, "", false};
      for (const auto& [n, v] : fields) {
        if (n == ":path") a.path = v;
        if (n == ":method") a.head = v == "HEAD";
      }
      asked.push_back(a);
      block_on = 0;
    }
    in.erase(0, off);
  }
  // send: all of bytes (false once the client is gone).
  bool send(std::string_view bytes) {
    {
      std::lock_guard lk(shared().mu);
      shared().served.append(bytes);
    }
    std::size_t off = 0;
    const auto end = Clock::now() + std::chrono::seconds(5);
    while (off < bytes.size() && !closed) {
      const ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        off += static_cast<std::size_t>(n);
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        if (Clock::now() > end) return false;  // the client reads nothing: it may (a limit)
        pump(1);  // read meanwhile: the client may be writing too
      } else {
        closed = true;
      }
    }
    return !closed;
  }
};

// Statuses a head may carry: the final ones a client takes, 1xx ones
// (interim: more must follow), and out-of-range ones (malformed).
constexpr const char* kStatuses[] = {"200", "204", "404", "500", "999", "304", "201", "302",
                                     "100", "103", "1000", "abc", "", "099", "+20", "200 "};

// head: a response head for `a`'s stream from the dictionary. Flawless:
// a final status (the first 8), a content-length that tells the truth or
// none, and fields a response may carry. Flawed: any status, a lying or
// doubled content-length, forbidden, uppercase or pseudo fields, bad HPACK.
std::string head(Input& in, bool flaw, int& status, std::size_t body, bool& with_length) {
  std::string b;
  const std::uint8_t shape = in.byte();
  const std::uint8_t kind = (shape & 0x40) != 0 ? 0x40 : 0x00;
  const char* st = kStatuses[in.byte() % (flaw ? 16 : 8)];
  status = std::atoi(st);
  if ((shape & 0x08) != 0 && std::string_view(st) == "200") {
    b.push_back(static_cast<char>(0x88));  // static :status 200
  } else {
    literal(b, kind, ":status", st);
  }
  with_length = (shape & 0x01) != 0 && status != 204 && status != 304;
  if (with_length) literal(b, kind, "content-length", std::to_string(body));
  if ((shape & 0x02) != 0) literal(b, kind, "content-type", "text/plain");
  if ((shape & 0x04) != 0) literal(b, 0x40, "x-dyn", "v"), hpack_int(b, 0x80, 7, 62);  // indexed back
  if (flaw) {
    switch (in.byte() % 10) {
      case 0: literal(b, kind, "content-length", std::to_string(body + 1 + in.byte())); break;
      case 1: literal(b, kind, "content-length", "x"); break;
      case 2: literal(b, kind, "connection", "close"); break;
      case 3: literal(b, kind, "Upper", "case"); break;
      case 4: literal(b, kind, ":path", "/"); break;
      case 5: hpack_int(b, 0x80, 7, in.byte() % 70); break;
      case 6: b.append(in.bytes(in.byte() % 8)); break;
      case 7: literal(b, kind, "x-long", std::string(in.byte() * 8u, 'v')); break;  // over max_head (1 KiB)
      case 8: literal(b, kind, "transfer-encoding", "chunked"); break;
      default: literal(b, kind, ":status", "200"); break;  // doubled
    }
  }
  return b;
}

// serve: runs the script on one connection.
void serve(int fd, const std::string& script, std::size_t calls) {
  Conn c(fd);
  // The client's preface and its requests first (2 s at most): the
  // script answers them.
  const auto until = Clock::now() + std::chrono::seconds(2);
  while (!c.closed && c.asked.size() < calls && Clock::now() < until) c.pump(10);
  if (c.closed || c.asked.empty()) return;
  Input in{reinterpret_cast<const std::uint8_t*>(script.data()), script.size()};
  const std::uint8_t start = in.byte();
  // Our SETTINGS, and the ACK of the client's (a server's usual start).
  std::string entries;
  if ((start & 0x01) != 0) {
    static constexpr std::uint32_t kValues[] = {0, 1, 100, 16384, 65535, 1u << 20, 16777215, 0x80000000u};
    for (int k = 1 + in.byte() % 3; k > 0; --k) {
      const std::uint16_t id = in.byte() % 8;
      std::uint32_t v = kValues[in.byte() % 8];
      if ((start & 0x02) == 0) {  // flawless values
        if (id == 2) v = 0;  // a server may only turn push off
        if (id == 4) v = std::min(v, 0x7fffffffu);
        if (id == 5) v = std::clamp(v, 16384u, 16777215u);
      }
      entries.push_back(static_cast<char>(id >> 8));
      entries.push_back(static_cast<char>(id));
      entries += be32(v);
    }
  }
  bool disrupted = (start & 0x02) != 0;  // a flaw was sent: the connection may end
  c.send(frame(kSettings, 0, 0, entries) + frame(kSettings, kAck, 0, ""));
  // Each stream's state as the script left it. Only a whole response on a
  // stream in kOpen or kInterim is surely valid; anything else that may
  // break a stream's rules (DATA and trailers, whose lengths the script
  // does not keep; a head after the final one; any frame after the end)
  // counts as disrupting: nghttp2 may answer it by ending the connection.
  enum class State { kOpen, kInterim, kHead, kEnded };
  std::map<std::uint32_t, State> state;
  std::map<std::uint32_t, int> interims;  // 1xx heads sent on each stream
  auto fresh = [&](std::uint32_t s) { return state[s] == State::kOpen || state[s] == State::kInterim; };
  // The requests in path order: which one a byte picks must not depend on
  // the order in which the client's fibers sent them.
  std::sort(c.asked.begin(), c.asked.end(), [](const Asked& x, const Asked& y) { return x.path < y.path; });
  auto pick = [&](Input& i) -> const Asked& { return c.asked[i.byte() % c.asked.size()]; };
  for (int ops = 0; ops < 100 && !in.empty() && !c.closed; ++ops) {
    const std::uint8_t op = in.byte() % 32;
    const std::uint8_t fl = in.byte();
    const bool flaw = (fl & 0x1f) == 0;
    if (flaw) disrupted = true;
    const Asked& a = pick(in);
    const std::uint32_t id = flaw && (fl & 0x40) != 0 ? a.id + 2 : a.id;  // flawed: maybe a stream not opened
    if (op < 9) {  // a whole response
      std::size_t body_len = a.head ? 0 : in.byte() * 7u % 3000;
      int status = 0;
      bool with_length = false;
      const std::string h = head(in, flaw, status, body_len, with_length);
      if ((status == 204 || status == 304) && !flaw) body_len = 0;  // no body (and no content-length: head())
      const bool split = (fl & 0x20) != 0;
      const bool no_body = body_len == 0;
      std::string out;
      if (split) {
        const std::size_t half = h.size() / 2;
        out += frame(kHeaders, no_body ? kEndStream : 0, id, h.substr(0, half));
        out += frame(kContinuation, kEndHeaders, flaw && (fl & 0x80) != 0 ? id + 2 : id, h.substr(half));
      } else {
        out += frame(kHeaders, kEndHeaders | (no_body ? kEndStream : 0), id, h);
      }
      std::string body;
      for (std::size_t i = 0; i < body_len; ++i) body.push_back(static_cast<char>('a' + (i * 7 + id) % 26));
      for (std::size_t off = 0; off < body_len;) {
        const std::size_t piece = std::min<std::size_t>(body_len - off, 1 + in.byte() * 8u);
        const bool last = off + piece == body_len;
        std::string p = body.substr(off, piece);
        std::uint8_t flags = last ? kEndStream : 0;
        if ((fl & 0x40) != 0 && !flaw) {
          p = std::string(1, '\3') + p + std::string(3, '\0');  // padded
          flags |= kPadded;
        }
        out += frame(kData, flags, id, p);
        off += piece;
      }
      // Exact: a flawless response on a stream nothing was sent on before,
      // with nothing before it that may end the connection. Its body must
      // fit the client's window (64 KiB) and max_body, and a 1xx or
      // out-of-range status is not one.
      if (!fresh(a.id)) disrupted = true;
      if (!disrupted && status >= 200 && status <= 999 && body_len <= kMaxBody) {
        std::lock_guard lk(shared().mu);
        shared().exact[a.path] = Exact{status, a.head ? std::string() : body};
      }
      state[a.id] = State::kEnded;
      c.send(out);
    } else if (op < 11) {  // a head alone; a body may follow in DATA
      int status = 0;
      bool with_length = false;
      const std::string h = head(in, flaw, status, in.byte(), with_length);
      if (!fresh(a.id)) disrupted = true;
      state[a.id] = (fl & 0x20) != 0 ? State::kEnded : State::kHead;
      c.send(frame(kHeaders, kEndHeaders | ((fl & 0x20) != 0 ? kEndStream : 0), id, h));
    } else if (op < 15) {  // DATA
      std::string d(in.byte() * 5u, 'd');
      std::uint8_t flags = (fl & 0x20) != 0 ? kEndStream : 0;
      if (flaw && (fl & 0x80) != 0) {
        d = std::string(1, '\xff') + d;  // a pad length past the frame
        flags |= kPadded;
      }
      disrupted = true;  // before a head, past a content-length, after the end: a stream error at least
      if ((flags & kEndStream) != 0) state[a.id] = State::kEnded;
      c.send(frame(kData, flags, id, d));
    } else if (op < 16) {  // trailers
      std::string t;
      literal(t, 0x00, (flaw && (fl & 0x80) != 0) ? ":status" : "grpc-status", "0");
      disrupted = true;  // valid only after a head whose length was met
      state[a.id] = State::kEnded;
      c.send(frame(kHeaders, kEndHeaders | kEndStream, id, t));
    } else if (op < 17) {  // a 1xx head (100, 103)
      std::string b;
      literal(b, 0x00, ":status", (fl & 0x20) != 0 ? "103" : "100");
      if ((fl & 0x40) != 0) literal(b, 0x00, "link", "</a>; rel=preload");
      if (!fresh(a.id)) disrupted = true;
      if (++interims[a.id] > 5) disrupted = true;  // past the client's limit (kMaxInterim): that call fails
      if (state[a.id] == State::kOpen) state[a.id] = State::kInterim;
      c.send(frame(kHeaders, kEndHeaders | (flaw ? kEndStream : 0), id, b));  // flawed: a 1xx that ends the stream
    } else if (op < 18) {  // RST_STREAM
      disrupted = true;  // only its stream, but a retry moves others around
      state[a.id] = State::kEnded;
      c.send(frame(kRst, 0, id, be32(in.byte() % 14)));
    } else if (op < 19) {  // WINDOW_UPDATE
      const std::uint32_t inc = flaw ? ((fl & 0x80) != 0 ? 0 : 0x7fffffffu) : 1 + in.byte() * 256u;
      c.send(frame(kWindowUpdate, 0, (fl & 0x20) != 0 ? 0 : id, be32(inc)));
    } else if (op < 20) {  // SETTINGS; flawed, an ACK of nothing the client sent (it had its ACK)
      std::string e;
      if (!flaw || (fl & 0x20) == 0) {
        // Flawless: HEADER_TABLE_SIZE, MAX_CONCURRENT_STREAMS,
        // INITIAL_WINDOW_SIZE, MAX_FRAME_SIZE or MAX_HEADER_LIST_SIZE, in
        // range. Flawed: any id (ENABLE_PUSH from a server included), any value.
        static constexpr std::uint8_t kIds[] = {1, 3, 4, 5, 6};
        const std::uint8_t sid = flaw ? in.byte() % 8 : kIds[in.byte() % 5];
        e.push_back('\0');
        e.push_back(static_cast<char>(sid));
        e += be32(flaw ? in.u32() : 16384u * (1 + in.byte() % 4));
      }
      c.send(frame(kSettings, flaw && (fl & 0x20) != 0 ? kAck : 0, 0, e));
    } else if (op < 21) {  // PING (an ACK of one never sent: ignored)
      c.send(frame(kPing, (fl & 0x20) != 0 ? kAck : 0, 0, std::string(flaw ? 7 : 8, 'p')));
    } else if (op < 22) {  // GOAWAY
      disrupted = true;
      const std::uint32_t last = (fl & 0x20) != 0 ? 0 : c.asked.back().id;
      c.send(frame(kGoaway, 0, 0, be32(last) + be32(in.byte() % 14)));
    } else if (op < 23 && flaw) {  // PUSH_PROMISE (the client disabled push), or any frame
      const std::uint8_t type = (fl & 0x80) != 0 ? kPushPromise : in.byte();
      c.send(frame(type, in.byte(), id, be32(2) + in.bytes(in.byte() % 32)));
    } else if (op < 24 && flaw) {  // raw bytes: the framing breaks
      c.send(in.bytes(1 + in.byte() % 32));
    } else {  // a pause: read only
      c.pump(fl % 4);
    }
  }
  // The end: the write side closes, and the client's last frames are
  // read until it closes (so that nothing it sent is answered by a reset).
  ::shutdown(fd, SHUT_WR);
  const auto end = Clock::now() + std::chrono::seconds(3);
  while (!c.closed && Clock::now() < end) c.pump(50);
}

// The raw server (loopback_listener.hpp). The first connection of each
// input runs the script; any later one (the client retrying a request the
// script left unanswered) is closed at once. generation and calls are
// stored (release) by the input's thread before its client connects, and
// loaded (acquire) by the listener's after the accept.
std::atomic<int> g_generation{0};  // bumped per input; the script runs once per generation
std::atomic<std::size_t> g_calls{1};
int g_served_generation = -1;       // the listener thread's only

fuzz_support::LoopbackListener& server() {
  static fuzz_support::LoopbackListener s([](int fd) {
    const int g = g_generation.load(std::memory_order_acquire);
    if (g == g_served_generation) return;
    g_served_generation = g;
    std::string script;
    {
      std::lock_guard lk(shared().mu);
      script = shared().script;
    }
    serve(fd, script, g_calls.load(std::memory_order_acquire));
  });
  return s;
}

sp::Runtime& runtime() {
  static sp::Runtime rt{sp::RuntimeOptions{.workers = 2}};
  return rt;
}

// How deep the inputs reach (printed at exit): calls returned, returned
// exactly as checked, failed by errc.
long g_returned = 0, g_exact = 0, g_inputs = 0;
long g_errc[16] = {};
struct Stats {
  ~Stats() {
    if (g_inputs == 0) return;
    std::printf("h2_client_fuzz: %ld inputs; %ld calls returned (%ld checked exactly); failed by errc:", g_inputs,
                g_returned, g_exact);
    for (int i = 0; i < 16; ++i) {
      if (g_errc[i] != 0) std::printf(" %d:%ld", i, g_errc[i]);
    }
    std::printf("\n");
  }
} g_stats;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  g_input = {data, size};
  fuzz_support::LoopbackListener& srv = server();
  const std::size_t calls = 1 + data[0] % 3;
  const std::uint8_t heads = data[1];  // bit k: call k is HEAD
  {
    std::lock_guard lk(shared().mu);
    shared().script.assign(reinterpret_cast<const char*>(data + 2), size - 2);
    shared().exact.clear();
    shared().served.clear();
  }
  g_calls.store(calls, std::memory_order_release);
  g_generation.fetch_add(1, std::memory_order_release);
  ++g_inputs;
  struct Outcome {
    std::optional<http::Response> res;
    bool failed = false;
    int kind = 0;     // the error's errc
    std::string why;  // its text
  };
  std::vector<Outcome> out(calls);
  const auto t0 = Clock::now();
  runtime().block_on([&] {
    http::ClientOptions o;
    o.http2 = http::ClientHttp2::prior_knowledge;
    o.total_timeout = std::chrono::milliseconds(2000);
    o.read_timeout = std::chrono::milliseconds(1000);
    o.max_head = 1024;
    o.max_body = kMaxBody;
    o.max_redirects = 0;
    http::Client client(o);
    std::vector<sp::Task<void>> tasks;
    for (std::size_t k = 0; k < calls; ++k) {
      tasks.push_back(sp::spawn([&, k] {
        const std::string url = "http://127.0.0.1:" + std::to_string(srv.port()) + "/" + std::to_string(k);
        try {
          http::RequestOptions ro;
          ro.follow_redirects = false;
          out[k].res = client.request((heads >> k & 1) != 0 ? "HEAD" : "GET", url, ro);
        } catch (const http::Error& e) {
          out[k].failed = true;
          out[k].why = e.what();
          out[k].kind = static_cast<int>(e.kind()) & 15;  // counted after the join: fibers run on 2 workers
        } catch (const std::exception& e) {
          fail(std::string("raised something other than http::Error: ") + e.what());
        }
      }));
    }
    for (auto& t : tasks) t.join();
  });
  if (Clock::now() - t0 > std::chrono::seconds(10)) fail("the calls took over 10 s");
  std::map<std::string, Exact> exact;
  {
    std::lock_guard lk(shared().mu);
    exact = shared().exact;
  }
  for (std::size_t k = 0; k < calls; ++k) {
    const std::string path = "/" + std::to_string(k);
    const bool head = (heads >> k & 1) != 0;
    const auto want = exact.find(path);
    if (out[k].failed) ++g_errc[out[k].kind];
    if (out[k].res) {
      const http::Response& r = *out[k].res;
      ++g_returned;
      if (r.status < 200 || r.status > 999) fail(path + ": a final status out of range: " + std::to_string(r.status));
      if (r.body.size() > kMaxBody) fail(path + ": a body over max_body");
      if (head && !r.body.empty()) fail(path + ": a HEAD response with a body");
      if (want != exact.end()) {
        ++g_exact;
        if (r.status != want->second.status || r.body != want->second.body) {
          fail(path + ": returned " + std::to_string(r.status) + " with " + std::to_string(r.body.size()) +
               " bytes, sent " + std::to_string(want->second.status) + " with " +
               std::to_string(want->second.body.size()));
        }
      }
    } else if (want != exact.end()) {
      fail(path + ": a flawless response, answered before anything could end the connection, failed: " + out[k].why);
    }
  }
  return 0;
}
