// h2_idle_test.cpp: ServerOptions::idle_release_after for HTTP/2
// (docs/http.md "Idle connections", docs/decisions/0018-idle-release.md;
// the HTTP/1.1 side is server_idle_release_test.cpp). A plain (prior
// knowledge) HTTP/2 connection with no open stream and nothing to send for
// idle_release_after gives back its fibers and its read buffer, and
// Server::connections_released() counts it; its nghttp2 session (HPACK
// tables both ways, stream ids, settings) is kept, so the client's next
// frames, which lean on that state, are served as if nothing happened.
// Checked here: requests after a release whose header blocks use HPACK
// dynamic-table entries of earlier ones (each way), stream ids that go on,
// repeated cycles, the client's close or reset of a released connection,
// idle_timeout and shutdown (GOAWAY NO_ERROR, then the end), 50 connections
// released and woken at once, a connection upgraded from HTTP/1.1
// (Upgrade: h2c), an open stream (a slow handler, a slow request body)
// that keeps its connection, zero turning it off, and TLS connections
// that keep their fibers. Every wait is bounded: a server that
// never releases, never wakes or never closes fails a check, never hangs.
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <spindle/sync/event.hpp>

#include "h2_test_client.hpp"
#include "http_test_support.hpp"
#if defined(H2_TEST_TLS)
#include <spindle/io/tls.hpp>

#include "tls_test_certs.hpp"
#endif

using namespace spindle_test;
using namespace h2_test;
namespace http = spindle::http;

namespace {

// A 64-character field value: an HPACK literal of it costs some 70 bytes,
// a reference to its dynamic-table entry one or two.
const std::string kToken = "tok-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWX";

// Tap: every byte a Client wrote and read, for frame-level checks of what
// went over the wire (which HPACK state the blocks used). One fiber each.
struct Tap {
  std::string sent, received;
};
// TapWire: a TcpStream that copies what passes into a Tap; fd() for
// SO_LINGER before a close.
class TapWire final : public Wire {
 public:
  TapWire(io::TcpStream s, Tap& t) : s_(std::move(s)), t_(t) {}
  std::size_t read_some(char* p, std::size_t n) override {
    const std::size_t k = s_.read_some(p, n);
    t_.received.append(p, k);
    return k;
  }
  void write_all(std::string_view b) override {
    t_.sent.append(b);
    s_.write_all(b);
  }
  void close() override { s_.close(); }

 private:
  io::TcpStream s_;
  Tap& t_;
};
// tapped: a Client on a fresh connection to `port` whose bytes go to `t`;
// *fd (if given) its socket.
std::unique_ptr<Client> tapped(std::uint16_t port, Tap& t, int* fd = nullptr) {
  io::TcpStream s = io::TcpStream::connect(io::Endpoint("127.0.0.1", port));
  if (fd != nullptr) *fd = s.native_handle();
  return std::make_unique<Client>(std::make_unique<TapWire>(std::move(s), t));
}

// WireFrame: one frame of a tapped byte stream (payload a view into it).
struct WireFrame {
  std::uint8_t type = 0, flags = 0;
  std::uint32_t stream = 0;
  std::string_view payload;
};
// frames_of: the whole frames in `bytes` (a client's: after its preface).
std::vector<WireFrame> frames_of(std::string_view bytes) {
  if (bytes.starts_with(kPreface)) bytes.remove_prefix(kPreface.size());
  std::vector<WireFrame> out;
  while (bytes.size() >= 9) {
    const std::size_t len = (std::size_t{static_cast<unsigned char>(bytes[0])} << 16) |
                            (std::size_t{static_cast<unsigned char>(bytes[1])} << 8) |
                            static_cast<unsigned char>(bytes[2]);
    if (bytes.size() < 9 + len) break;
    WireFrame f;
    f.type = static_cast<std::uint8_t>(bytes[3]);
    f.flags = static_cast<std::uint8_t>(bytes[4]);
    f.stream = get32(bytes, 5) & 0x7fffffffu;
    f.payload = bytes.substr(9, len);
    out.push_back(f);
    bytes.remove_prefix(9 + len);
  }
  return out;
}
// block_sizes: per stream, the bytes of its header blocks (HEADERS without
// padding and priority fields, and their CONTINUATIONs).
std::map<std::uint32_t, std::size_t> block_sizes(std::string_view bytes) {
  std::map<std::uint32_t, std::size_t> out;
  for (const WireFrame& f : frames_of(bytes)) {
    if (f.type == CONTINUATION) {
      out[f.stream] += f.payload.size();
    } else if (f.type == HEADERS) {
      std::size_t n = f.payload.size();
      if ((f.flags & PADDED) && n > 0) n -= std::min(n, 1 + std::size_t{static_cast<unsigned char>(f.payload[0])});
      if (f.flags & PRIO) n -= std::min<std::size_t>(n, 5);
      out[f.stream] += n;
    }
  }
  return out;
}
std::size_t size_of(const std::map<std::uint32_t, std::size_t>& m, std::uint32_t stream) {
  const auto it = m.find(stream);
  return it == m.end() ? 0 : it->second;
}
// shrank: stream `later`'s blocks are at least `by` bytes shorter than
// stream `first`'s (a literal of that length became an index).
bool shrank(const std::map<std::uint32_t, std::size_t>& m, std::uint32_t first, std::uint32_t later, std::size_t by) {
  return size_of(m, first) > by && size_of(m, later) > 0 && size_of(m, later) + by <= size_of(m, first);
}
// count_frames: frames of `type` in `bytes` (ACKs of SETTINGS and PING
// left out unless `acks`).
int count_frames(std::string_view bytes, std::uint8_t type, bool acks = false) {
  int n = 0;
  for (const WireFrame& f : frames_of(bytes))
    if (f.type == type && (acks || !((type == SETTINGS || type == PING) && (f.flags & ACK)))) ++n;
  return n;
}

http::ServerOptions releasing(std::chrono::milliseconds after) {
  http::ServerOptions o;
  o.idle_release_after = after;
  return o;
}

// ServerRef: the server, for handlers that report its counters (set once
// the H2Server is built, before any connection).
struct ServerRef {
  std::atomic<http::Server*> p{nullptr};
  std::uint64_t released() const {
    http::Server* s = p.load();
    return s != nullptr ? s->connections_released() : 999;
  }
};

// echo_routes: GET /echo/:n answers "<target> token=<x-token>", with the
// token back as x-token-echo (so the server's HPACK encoder indexes it too)
// and connections_released() as the handler saw it as x-released. GET
// /sleep/:ms answers after that long. POST /drip reads a streamed body.
http::Router echo_routes(ServerRef& ref) {
  http::Router r;
  r.get("/echo/:n", [&ref](http::Request& q) {
    const std::string token(q.headers.get("x-token").value_or("-"));
    http::Response a = http::Response::text_body(200, q.target + " token=" + token);
    a.headers.set("x-token-echo", token);
    a.headers.set("x-released", std::to_string(ref.released()));
    return a;
  });
  r.get("/sleep/:ms", [&ref](http::Request& q) {
    sp::sleep_for(std::chrono::milliseconds(std::stoi(std::string(q.param("ms")))));
    http::Response a = http::Response::text_body(200, "slept " + std::string(q.param("ms")));
    a.headers.set("x-released", std::to_string(ref.released()));
    return a;
  });
  r.post("/drip", [](http::Request& q) {
    std::string all;
    for (std::string piece; !(piece = q.read_body_chunk()).empty();) all += piece;
    return http::Response::text_body(200, std::to_string(all.size()) + " bytes: " + all);
  }, http::Body::stream);
  ok_route(r);
  return r;
}

// expect: a FIBER_CHECK that says what was seen (Catch's INFO is not for
// fibers).
void expect(bool ok, const std::string& what) {
  if (!ok) fiber_failures().add(what);
}
std::string ms_of(Clock::duration d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + " ms";
}

// echo: GET /echo/<n> with the token, pumped to its end.
StreamResult echo(Client& c, int n, std::int32_t* id = nullptr, const std::string& token = kToken) {
  const std::int32_t s = c.submit("GET", "/echo/" + std::to_string(n), {{"x-token", token}});
  c.finish(s, slack(10s));
  if (id != nullptr) *id = s;
  return c.stream(s);
}
bool echoed(const StreamResult& r, int n, const std::string& token = kToken) {
  return r.complete() && r.status == 200 && r.body == "/echo/" + std::to_string(n) + " token=" + token &&
         r.field("x-token-echo") == token;
}

// released_soon: connections_released() reaches n. A release is due one to
// one and a half idle_release_after after the last stream; the bound is
// only there so that a server that never releases fails instead of hanging.
bool released_soon(http::Server& s, std::uint64_t n, Clock::duration limit = slack(5s)) {
  return wait_until([&] { return s.connections_released() == n; }, limit);
}

// most_released: connections_released()'s largest value over `d`, read
// every 2 ms.
std::uint64_t most_released(http::Server& s, Clock::duration d) {
  std::uint64_t most = 0;
  const auto end = Clock::now() + d;
  while (Clock::now() < end) {
    most = std::max(most, s.connections_released());
    sp::sleep_for(2ms);
  }
  return std::max(most, s.connections_released());
}

}  // namespace

TEST_CASE("h2 idle: a released connection serves its next request on the same session (HPACK state both ways)") {
  run_checked(2, [] {
    ServerRef ref;
    H2Server srv(echo_routes(ref), releasing(100ms));
    ref.p.store(&srv.server());
    Tap tap;
    auto c = tapped(srv.port(), tap);
    std::int32_t id1 = 0, id2 = 0;
    const StreamResult a = echo(*c, 1, &id1);
    FIBER_CHECK(echoed(a, 1));
    FIBER_CHECK(a.field("x-released") == "0");
    FIBER_CHECK(id1 == 1);
    // The connection idles: its fibers and buffer go, it stays open.
    FIBER_CHECK(released_soon(srv.server(), 1));
    FIBER_CHECK(srv.server().connections_open() == 1);
    // The same field again: nghttp2's client encodes it as a reference to
    // the dynamic-table entry the first request added, which only the
    // server's kept inflater can resolve.
    const StreamResult b = echo(*c, 2, &id2);
    FIBER_CHECK(echoed(b, 2));
    FIBER_CHECK(id2 == 3);  // stream ids go on
    // While a stream of it is served it is not counted as released.
    FIBER_CHECK(b.field("x-released") == "0");
    FIBER_CHECK(!c->goaway());
    FIBER_CHECK(!c->failed());  // the server's blocks decoded with the client's kept state
    // The wire: the second request's block is the indexed one (so the
    // check above was about HPACK state), and so is the server's second
    // response block (its encoder's table was kept too). One SETTINGS from
    // the server: no new session was started.
    const auto sent = block_sizes(tap.sent), received = block_sizes(tap.received);
    const std::string sizes = "client blocks " + std::to_string(size_of(sent, 1)) + " then " +
                              std::to_string(size_of(sent, 3)) + " bytes; server blocks " +
                              std::to_string(size_of(received, 1)) + " then " + std::to_string(size_of(received, 3));
    expect(shrank(sent, 1, 3, kToken.size()), "the second request's block did not use the dynamic table: " + sizes);
    expect(shrank(received, 1, 3, kToken.size()),
           "the second response's block did not use the dynamic table: " + sizes);
    FIBER_CHECK(count_frames(tap.received, SETTINGS) == 1);
    FIBER_CHECK(count_frames(tap.received, GOAWAY) == 0);
    // And it is released again.
    FIBER_CHECK(released_soon(srv.server(), 1));
    FIBER_CHECK(srv.server().connections_accepted() == 1);
  });
}

TEST_CASE("h2 idle: five cycles of request, release, request on one connection") {
  run_checked(2, [] {
    ServerRef ref;
    H2Server srv(echo_routes(ref), releasing(100ms));
    ref.p.store(&srv.server());
    Tap tap;
    auto c = tapped(srv.port(), tap);
    constexpr int kCycles = 5;
    int asked = 0;
    for (int i = 0; i < kCycles; ++i) {
      const std::string cycle = "cycle " + std::to_string(i) + ": ";
      std::int32_t id = 0;
      const StreamResult r = echo(*c, i, &id);
      ++asked;
      expect(echoed(r, i), cycle + "answered " + std::to_string(r.status) + " " + r.body);
      expect(id == 2 * i + 1, cycle + "stream " + std::to_string(id));
      expect(r.field("x-released") == "0", cycle + "counted as released while served");
      if (!released_soon(srv.server(), 1)) {
        fiber_failures().add("cycle " + std::to_string(i) + ": the connection was not released");
        break;  // one failure says it; five would only take five times as long
      }
      expect(srv.server().connections_open() == 1, cycle + "closed");
    }
    FIBER_CHECK(!c->goaway());
    FIBER_CHECK(!c->failed());
    FIBER_CHECK(count_frames(tap.received, SETTINGS) == 1);
    // Every block after the first leans on the dynamic table.
    const auto sent = block_sizes(tap.sent);
    FIBER_CHECK(sent.size() == static_cast<std::size_t>(asked));
    for (const auto& [stream, size] : sent)
      if (stream > 1)
        expect(size + kToken.size() <= size_of(sent, 1), "stream " + std::to_string(stream) + "'s block " +
                                                       std::to_string(size) + " bytes, the first's " +
                                                       std::to_string(size_of(sent, 1)));
    FIBER_CHECK(srv.server().connections_accepted() == 1);
  });
}

TEST_CASE("h2 idle: a connection released before its preface speaks HTTP/2 when woken, then is released as one") {
  run_checked(2, [] {
    ServerRef ref;
    H2Server srv(echo_routes(ref), releasing(100ms));
    ref.p.store(&srv.server());
    Tap tap;
    auto c = tapped(srv.port(), tap);  // connected; nothing sent yet
    // Released as any connection that sent nothing (the HTTP/1.1 path).
    FIBER_CHECK(released_soon(srv.server(), 1));
    const StreamResult a = echo(*c, 1);
    FIBER_CHECK(echoed(a, 1));
    FIBER_CHECK(a.field("x-released") == "0");
    // Now an HTTP/2 connection, released as one.
    FIBER_CHECK(released_soon(srv.server(), 1));
    const StreamResult b = echo(*c, 2);
    FIBER_CHECK(echoed(b, 2));
    FIBER_CHECK(b.field("x-released") == "0");
    FIBER_CHECK(!c->failed());
  });
}

TEST_CASE("h2 idle: a connection upgraded from HTTP/1.1 (Upgrade: h2c) is released and served again") {
  run_checked(2, [] {
    http::Router r;
    ok_route(r);
    H2Server srv(std::move(r), releasing(100ms));
    RawConn c(srv.port());
    // curl --http2 on http://: the request asks for h2c; its settings are
    // SETTINGS_MAX_CONCURRENT_STREAMS 100 (base64url of 00 03 00 00 00 64).
    FIBER_CHECK(c.send("GET /ok HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings\r\n"
                       "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABk\r\n\r\n"));
    // The 101's head, a byte at a time: the server's frames follow it.
    std::string head;
    while (head.size() < 1024 && head.find("\r\n\r\n") == std::string::npos) {
      char ch = 0;
      if (c.stream().read_some(&ch, 1) != 1) break;
      head += ch;
    }
    FIBER_CHECK(head.rfind("HTTP/1.1 101", 0) == 0);
    FIBER_CHECK(c.send(std::string(kPreface) + settings({})));
    // The upgraded request is stream 1.
    FIBER_CHECK(c.end_of(1, slack(5s)).has_value());
    FIBER_CHECK(c.status_of(1) == 200);
    FIBER_CHECK(c.send(settings_ack()));
    FIBER_CHECK(released_soon(srv.server(), 1));
    FIBER_CHECK(c.send(headers(3, plain_block("GET", "/ok"), true)));
    FIBER_CHECK(c.end_of(3, slack(5s)).has_value());
    FIBER_CHECK(c.status_of(3) == 200);
    FIBER_CHECK(released_soon(srv.server(), 1));
    FIBER_CHECK(srv.server().connections_accepted() == 1);
  });
}

TEST_CASE("h2 idle: a released connection's close or reset ends it") {
  run_checked(2, [] {
    ServerRef ref;
    H2Server srv(echo_routes(ref), releasing(100ms));
    ref.p.store(&srv.server());
    for (const bool reset : {false, true}) {
      const std::string way = reset ? "reset: " : "close: ";
      Tap tap;
      int fd = -1;
      auto c = tapped(srv.port(), tap, &fd);
      FIBER_CHECK(echoed(echo(*c, 1), 1));
      expect(released_soon(srv.server(), 1), way + "not released");
      if (reset) {
        const linger l{1, 0};  // close sends RST
        ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
      }
      c->close();
      expect(wait_until([&] { return srv.server().connections_open() == 0; }), way + "still open");
      expect(srv.server().connections_released() == 0, way + "still counted as released");
    }
    // The server goes on.
    FIBER_CHECK(serves(srv.port(), slack(10s)));
  });
}

TEST_CASE("h2 idle: idle_timeout ends a released connection with GOAWAY NO_ERROR, then its end") {
  run_checked(2, [] {
    ServerRef ref;
    http::ServerOptions o = releasing(100ms);
    o.idle_timeout = 1000ms;
    H2Server srv(echo_routes(ref), o);
    ref.p.store(&srv.server());
    Tap tap;
    auto c = tapped(srv.port(), tap);
    std::int32_t id = 0;
    FIBER_CHECK(echoed(echo(*c, 1, &id), 1));
    const auto answered = Clock::now();
    FIBER_CHECK(released_soon(srv.server(), 1));
    // The release itself sends nothing: read for a moment, while
    // idle_timeout is still well ahead (on a slow machine, skipped).
    if (Clock::now() - answered < 500ms) {
      c->pump([&] { return c->goaway() || c->eof(); }, 100ms);
      FIBER_CHECK(!c->goaway());
      FIBER_CHECK(!c->eof());
    }
    // Bounded, so a released connection that idle_timeout forgot fails
    // here instead of hanging.
    FIBER_CHECK(c->pump([&] { return c->eof(); }, slack(15s)));
    const auto took = Clock::now() - answered;
    FIBER_CHECK(c->eof());
    FIBER_CHECK(c->goaway());  // read before the end
    FIBER_CHECK(c->goaway_code() == NGHTTP2_NO_ERROR);
    FIBER_CHECK(c->goaway_last_stream() == id);
    FIBER_CHECK(count_frames(tap.received, GOAWAY) == 1);
    // Roughly idle_timeout after the last stream: not at the release, and
    // not never (the upper bound is loose: a loaded machine).
    expect(took >= 500ms && took < slack(8s), "ended " + ms_of(took) + " after the answer (idle_timeout 1000 ms)");
    FIBER_CHECK(wait_until([&] { return srv.server().connections_open() == 0; }));
    FIBER_CHECK(srv.server().connections_released() == 0);
  });
}

TEST_CASE("h2 idle: shutdown ends a released connection at once with GOAWAY NO_ERROR, then its end") {
  run_checked(2, [] {
    ServerRef ref;
    // idle_timeout and drain_timeout far beyond the test's bounds: only
    // the shutdown can end this connection in time.
    http::ServerOptions o = releasing(100ms);
    o.idle_timeout = 600s;
    o.drain_timeout = 600s;
    H2Server srv(echo_routes(ref), o);
    ref.p.store(&srv.server());
    Tap tap;
    auto c = tapped(srv.port(), tap);
    std::int32_t id = 0;
    FIBER_CHECK(echoed(echo(*c, 1, &id), 1));
    FIBER_CHECK(released_soon(srv.server(), 1));
    const auto t0 = Clock::now();
    srv.stop();  // shutdown() and join serve()
    const auto took = Clock::now() - t0;
    expect(took < slack(5s), "stop() took " + ms_of(took));
    FIBER_CHECK(srv.serve_returned());
    FIBER_CHECK(srv.server().connections_open() == 0);
    FIBER_CHECK(srv.server().connections_released() == 0);
    FIBER_CHECK(c->pump([&] { return c->eof(); }, slack(10s)));
    FIBER_CHECK(c->goaway());
    FIBER_CHECK(c->goaway_code() == NGHTTP2_NO_ERROR);
    FIBER_CHECK(c->goaway_last_stream() == id);
  });
}

// 50 connections, each from a fiber of its own: a request, all released,
// a second request on each, all of them inside their handlers at once
// (then none is counted as released), all answered.
TEST_CASE("h2 idle: 50 connections released and woken together") {
  run_checked(2, [] {
    constexpr int kConns = 50;
    ServerRef ref;
    http::Router r = echo_routes(ref);
    std::atomic<int> inside{0};
    sp::Event all_in, go;
    r.get("/meet/:i", [&](http::Request& q) {
      if (inside.fetch_add(1) + 1 == kConns) all_in.set();
      const bool went = go.wait_for(slack(30s));
      return http::Response::text_body(went ? 200 : 504, "met " + std::string(q.param("i")) + " token=" +
                                                             std::string(q.headers.get("x-token").value_or("-")));
    });
    H2Server srv(std::move(r), releasing(100ms));
    ref.p.store(&srv.server());
    std::atomic<int> first_done{0}, second_ok{0};
    sp::Event all_released;
    sp::TaskGroup clients;
    for (int i = 0; i < kConns; ++i) {
      clients.spawn([&, i] {
        // A token of its own per connection: each HPACK state is its own.
        const std::string token = kToken.substr(0, 40) + "-conn-" + std::to_string(i);
        Tap tap;
        auto c = tapped(srv.port(), tap);
        const StreamResult a = echo(*c, i, nullptr, token);
        const std::string who = "connection " + std::to_string(i) + ": ";
        expect(echoed(a, i, token), who + "first answer " + std::to_string(a.status) + " " + a.body);
        first_done.fetch_add(1);
        expect(all_released.wait_for(slack(30s)), who + "never told to go on");
        const std::int32_t id = c->submit("GET", "/meet/" + std::to_string(i), {{"x-token", token}});
        c->finish(id, slack(60s));
        const StreamResult& b = c->stream(id);
        if (id == 3 && b.complete() && b.status == 200 && b.body == "met " + std::to_string(i) + " token=" + token &&
            !c->failed()) {
          second_ok.fetch_add(1);
        } else {
          fiber_failures().add(who + "second answer: stream " + std::to_string(id) + " status " +
                               std::to_string(b.status) + " body " + b.body);
        }
        // The second request's block leaned on the first's table entry.
        expect(shrank(block_sizes(tap.sent), 1, 3, 40), who + "second block not indexed");
      });
    }
    FIBER_CHECK(wait_until([&] { return first_done.load() == kConns; }, slack(30s)));
    // All of them released (none has a stream open or anything to send).
    FIBER_CHECK(released_soon(srv.server(), kConns, slack(10s)));
    FIBER_CHECK(srv.server().connections_open() == kConns);
    all_released.set();  // also after a failure: the clients go on
    // Woken, all at once inside their handlers: none counted as released.
    const bool met = all_in.wait_for(slack(30s));
    FIBER_CHECK(met);
    if (met) FIBER_CHECK(srv.server().connections_released() == 0);
    go.set();
    clients.wait();
    FIBER_CHECK(second_ok.load() == kConns);
    FIBER_CHECK(srv.server().connections_accepted() == kConns);
    FIBER_CHECK(wait_until([&] { return srv.server().connections_open() == 0; }));
    FIBER_CHECK(srv.server().connections_released() == 0);
  });
}

TEST_CASE("h2 idle: an open stream holds its connection: a slow handler, a slowly sent body") {
  run_checked(2, [] {
    ServerRef ref;
    // 400 ms under sanitizers: a connection idle a period before its first
    // stream (a slow machine between connect and the first flush) is
    // released, and `most` would count that.
    const std::chrono::milliseconds period = kSanitized ? 400ms : 100ms;
    H2Server srv(echo_routes(ref), releasing(period));
    ref.p.store(&srv.server());
    {
      // A handler that takes four release periods: never released under it.
      Client c(srv.port());
      const std::string slept = std::to_string(4 * period.count());
      const std::int32_t id = c.submit("GET", "/sleep/" + slept);
      std::uint64_t most = 0;
      c.pump([&] {
        // Closed first: once the stream is done the connection may be
        // released a period later, which a stalled client would count.
        if (c.stream(id).closed) return true;
        most = std::max(most, srv.server().connections_released());
        return false;
      }, slack(10s));
      const StreamResult& s = c.stream(id);
      FIBER_CHECK(s.complete());
      FIBER_CHECK(s.body == "slept " + slept);
      FIBER_CHECK(s.field("x-released") == "0");
      FIBER_CHECK(most == 0);
    }
    FIBER_CHECK(wait_until([&] { return srv.server().connections_open() == 0; }));
    {
      // A request body in five DATA frames 1.5 periods apart (hand-built: the
      // nghttp2 Client sends a body at once), its stream open throughout.
      RawConn c(srv.port());
      FIBER_CHECK(c.send(std::string(kPreface) + settings({}) + headers(1, plain_block("POST", "/drip"), false)));
      FIBER_CHECK(c.until([](const Frame& f) { return f.type == SETTINGS && !(f.flags & ACK); }, slack(10s)));
      FIBER_CHECK(c.send(settings_ack()));
      std::uint64_t most = 0;
      std::string body;
      constexpr int kPieces = 5;
      for (int i = 0; i < kPieces; ++i) {
        most = std::max(most, most_released(srv.server(), period * 3 / 2));
        const std::string piece = "piece" + std::to_string(i) + ";";
        body += piece;
        FIBER_CHECK(c.send(frame(DATA, i + 1 == kPieces ? END_STREAM : 0, 1, piece)));
      }
      const auto end = c.end_of(1, slack(10s));
      FIBER_CHECK(end.has_value());
      FIBER_CHECK(c.status_of(1) == 200);
      std::string got;
      for (const Frame& f : c.seen())
        if (f.type == DATA && f.stream == 1) got += f.payload;
      FIBER_CHECK(got == std::to_string(body.size()) + " bytes: " + body);
      FIBER_CHECK(most == 0);
      FIBER_CHECK(!std::any_of(c.seen().begin(), c.seen().end(), [](const Frame& f) { return f.type == GOAWAY; }));
    }
  });
}

TEST_CASE("h2 idle: released only once its long stream has ended") {
  run_checked(2, [] {
    ServerRef ref;
    H2Server srv(echo_routes(ref), releasing(100ms));
    ref.p.store(&srv.server());
    Client c(srv.port());
    const StreamResult s = c.request("GET", "/sleep/400", slack(10s));
    FIBER_CHECK(s.complete());
    FIBER_CHECK(s.field("x-released") == "0");
    FIBER_CHECK(released_soon(srv.server(), 1));
    // And served after it (stream 3).
    std::int32_t id = 0;
    FIBER_CHECK(echoed(echo(c, 2, &id), 2));
    FIBER_CHECK(id == 3);
  });
}

TEST_CASE("h2 idle: idle_release_after zero never releases an HTTP/2 connection") {
  run_checked(2, [] {
    ServerRef ref;
    H2Server srv(echo_routes(ref), releasing(0ms));
    ref.p.store(&srv.server());
    Client c(srv.port());
    FIBER_CHECK(echoed(echo(c, 1), 1));
    FIBER_CHECK(most_released(srv.server(), 400ms) == 0);
    std::int32_t id = 0;
    FIBER_CHECK(echoed(echo(c, 2, &id), 2));
    FIBER_CHECK(id == 3);
    FIBER_CHECK(srv.server().connections_released() == 0);
  });
}

#if defined(H2_TEST_TLS)
TEST_CASE("h2 idle: an HTTP/2 connection over TLS keeps its fibers") {
  const auto certs = tls_test::TestCerts::make();
  run_checked(2, [&] {
    ServerRef ref;
    http::ServerOptions o = releasing(50ms);
    o.tls = {certs->cert_file, certs->key_file};
    H2Server srv(echo_routes(ref), o);
    ref.p.store(&srv.server());
    io::TlsClientOptions t;
    t.ca_file = certs->ca_file;
    t.alpn = {"h2"};
    io::TlsStream tls = io::TlsStream::connect("127.0.0.1", srv.port(), io::TlsContext::client(t));
    FIBER_CHECK(tls.alpn() == "h2");
    ClientOptions co;
    co.scheme = "https";
    Client c(std::make_unique<WireOf<io::TlsStream>>(std::move(tls)), co);
    FIBER_CHECK(echoed(echo(c, 1), 1));
    // Eight release periods: a plain connection would have gone.
    FIBER_CHECK(most_released(srv.server(), 400ms) == 0);
    std::int32_t id = 0;
    FIBER_CHECK(echoed(echo(c, 2, &id), 2));
    FIBER_CHECK(id == 3);
    FIBER_CHECK(srv.server().connections_released() == 0);
  });
}
#endif

// A released connection woken by bytes that open no stream (a PING here)
// waits release_after from its revival before it is released again. The
// release was measured from the last stream's end only, long past, so
// every such segment cost a revival and a release (fibers started and
// ended, the server's registry lock, an epoll_ctl, a madvise): one PING
// every 20 ms made one each (40 fibers started for 20 PINGs), where a
// revival now lasts release_after.
TEST_CASE("h2 idle: bytes that open no stream do not release a revived connection at once") {
  run_checked(2, [] {
    ServerRef ref;
    // Longer than the PINGs' spacing (with their round trips) on a slow
    // machine too: a revival then lasts for several of them.
    H2Server srv(echo_routes(ref), releasing(kSanitized ? 1000ms : 300ms));
    ref.p.store(&srv.server());
    RawConn c(srv.port());
    FIBER_CHECK(c.send(std::string(kPreface) + settings({}) + settings_ack() + headers(1, plain_block("GET", "/ok"), true)));
    FIBER_CHECK(c.end_of(1, slack(10s)).has_value());
    FIBER_CHECK(released_soon(srv.server(), 1));
    const std::uint64_t spawns0 = sp::current_stats().total().spawns;
    int acks = 0;
    for (int i = 0; i < 20; ++i) {
      FIBER_CHECK(c.send(ping(static_cast<std::uint64_t>(i))));
      if (c.until([](const Frame& f) { return f.type == PING && (f.flags & ACK); }, slack(5s))) ++acks;
      sp::sleep_for(20ms);
    }
    const std::uint64_t spawned = sp::current_stats().total().spawns - spawns0;
    expect(acks == 20, "PINGs answered: " + std::to_string(acks));
    // A revival starts a few fibers (the connection's, its reader and
    // writer); a release per PING was 20 revivals.
    expect(spawned < 24, "fibers started over 20 PINGs 20 ms apart: " + std::to_string(spawned));
  });
}
