// h2_client_test.cpp: http::Client over HTTP/2 (ClientOptions::http2)
// against http::Server: prior knowledge on http://, ALPN on https://; one
// connection shared by many fibers (counted at the server), bodies both
// ways, limits, timeouts, resets and connection ends.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <spindle/io/file.hpp>
#include <spindle/sync/event.hpp>
#include <spindle/io/process.hpp>
#include <spindle/io/tcp.hpp>

#include "h2_raw_server.hpp"
#include "http_test_support.hpp"
#if H2_TEST_TLS
#include "tls_test_certs.hpp"
#endif

using namespace spindle_test;
using namespace http_test;
using namespace h2_raw;
using namespace std::chrono_literals;

namespace {

http::ClientOptions h2c() {
  http::ClientOptions o;
  o.http2 = http::ClientHttp2::prior_knowledge;
  return o;
}

std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
  return s;
}

// Concurrency: how many handlers run at once, at most.
struct Gauge {
  std::atomic<int> now{0}, most{0};
  struct In {
    Gauge& g;
    explicit In(Gauge& gg) : g(gg) {
      const int n = g.now.fetch_add(1) + 1;
      int m = g.most.load();
      while (n > m && !g.most.compare_exchange_weak(m, n)) {
      }
    }
    ~In() { g.now.fetch_sub(1); }
  };
};

}  // namespace

TEST_CASE("h2 client: prior knowledge speaks HTTP/2 to the server; the default stays HTTP/1.1 on http://") {
  run_checked(2, [] {
    std::atomic<unsigned> version{0};
    LiveServer srv([&](http::Request& q) {
      version.store(q.version);
      return http::Response::text_body(200, "v" + std::to_string(q.version) + " " + std::string(q.headers.get("host").value_or("")));
    });
    http::Client c(h2c());
    auto r = c.get(srv.url("/x"));
    FIBER_CHECK(r.status == 200);
    FIBER_CHECK(r.text() == "v20 127.0.0.1:" + std::to_string(srv.port()));
    FIBER_CHECK(r.reason == "OK");
    FIBER_CHECK(r.headers.get("content-type").value_or("") == "text/plain; charset=utf-8");
    http::Client plain;
    FIBER_CHECK(plain.get(srv.url("/x")).text().rfind("v11 ", 0) == 0);
  });
}

TEST_CASE("h2 client: 100 fibers share one connection; their streams interleave at the server") {
  run_checked(2, [] {
    Gauge g;
    LiveServer srv([&](http::Request& q) {
      Gauge::In in(g);
      sp::sleep_for(2ms);  // long enough for many streams to overlap
      return http::Response::text_body(200, std::string(q.target));
    });
    http::Client c(h2c());
    std::vector<sp::Task<bool>> tasks;
    for (int i = 0; i < 100; ++i) {
      tasks.push_back(sp::spawn([&, i] {
        const std::string path = "/n/" + std::to_string(i);
        auto r = c.get(srv.url(path));
        return r.status == 200 && r.text() == path;
      }));
    }
    int ok = 0;
    for (auto& t : tasks) ok += t.join();
    FIBER_CHECK(ok == 100);
    FIBER_CHECK(srv.server().connections_accepted() == 1);
    FIBER_CHECK(g.most.load() > 1);
    FIBER_CHECK(c.stats().open == 1);
  });
}

TEST_CASE("h2 client: limit_per_host counts streams") {
  run_checked(2, [] {
    Gauge g;
    LiveServer srv([&](http::Request&) {
      Gauge::In in(g);
      sp::sleep_for(5ms);
      return http::Response::text_body(200, "ok");
    });
    auto o = h2c();
    o.limit_per_host = 3;
    http::Client c(o);
    std::vector<sp::Task<int>> tasks;
    for (int i = 0; i < 20; ++i) tasks.push_back(sp::spawn([&] { return c.get(srv.url("/")).status; }));
    for (auto& t : tasks) FIBER_CHECK(t.join() == 200);
    FIBER_CHECK(g.most.load() <= 3);
    FIBER_CHECK(g.most.load() >= 2);
    FIBER_CHECK(srv.server().connections_accepted() == 1);
  });
}

TEST_CASE("h2 client: request bodies (whole, generator, file) arrive whole, larger than the windows") {
  run_checked(2, [] {
    http::Router r;
    r.post("/len", [](http::Request& q) {
      std::string all;
      for (std::string piece; !(piece = q.read_body_chunk()).empty();) all += piece;
      return http::Response::text_body(200, std::to_string(all.size()) + ":" + std::to_string(std::hash<std::string>{}(all)));
    }, http::Body::stream);
    LiveServer srv(std::move(r));  // Body::stream: the route streams its body, past max_body
    http::Client c(h2c());
    const std::string big = pattern(3 << 20);
    const std::string want = std::to_string(big.size()) + ":" + std::to_string(std::hash<std::string>{}(big));
    FIBER_CHECK(c.post(srv.url("/len"), big).text() == want);

    std::size_t at = 0;
    http::RequestOptions gen;
    gen.body_generator = [&] {
      const std::size_t n = std::min<std::size_t>(100'000, big.size() - at);
      std::string piece = big.substr(at, n);
      at += n;
      return piece;
    };
    gen.body_length = big.size();
    FIBER_CHECK(c.request("POST", srv.url("/len"), std::move(gen)).text() == want);

    const auto path = std::filesystem::temp_directory_path() / ("spindle-h2-up-" + std::to_string(::getpid()));
    {
      auto f = io::File::open(path, io::OpenMode::write | io::OpenMode::create | io::OpenMode::truncate, 0644);
      f.write(big);
    }
    http::RequestOptions file;
    file.body_file = path;
    FIBER_CHECK(c.request("POST", srv.url("/len"), std::move(file)).text() == want);
    std::filesystem::remove(path);
    FIBER_CHECK(srv.server().connections_accepted() == 1);
  });
}

// expect_continue over HTTP/2, against the three servers a client meets
// (as client_test.cpp's HTTP/1.1 case): one that sends 100 Continue when
// its handler first reads the body, one that refuses from the head (a
// Content-Length over max_body: 413 before any read), and one that waits
// for the body without a 100 (a streamed handler that has not read yet).
TEST_CASE("h2 client: expect_continue sends the body after 100 Continue, never after a refusal") {
  run_checked(2, [] {
    std::atomic<int> calls{0};
    std::atomic<int> calls_at_read{-1};
    // read_late: the handler reads only once the generator was called
    // (a server that waits for the body without a 100), at most 20 s.
    std::atomic<bool> read_late{false};
    std::string expect_seen;
    http::Router r;
    r.post("/up", [&](http::Request& q) {
      expect_seen = std::string(q.headers.get("expect").value_or(""));
      if (read_late.load()) {
        const auto until = std::chrono::steady_clock::now() + 20s;
        while (calls.load() == 0 && std::chrono::steady_clock::now() < until) sp::sleep_for(5ms);
      }
      // What the client had generated before this first read asked for it.
      calls_at_read.store(calls.load());
      std::string all;
      for (std::string piece; !(piece = q.read_body_chunk()).empty();) all += piece;
      return http::Response::text_body(200, std::to_string(all.size()));
    }, http::Body::stream);
    r.post("/whole", [](http::Request& q) { return http::Response::text_body(200, std::to_string(q.body.size())); });
    http::ServerOptions so;
    so.max_body = 64 * 1024;
    LiveServer srv(std::move(r), so);
    auto gen_of = [&](std::size_t total) {
      auto at = std::make_shared<std::size_t>(0);
      return [&calls, at, total] {
        calls.fetch_add(1);
        const std::size_t n = std::min<std::size_t>(16 * 1024, total - *at);
        *at += n;
        return std::string(n, 'g');
      };
    };
    {  // accepted: nothing of the body before the handler's read, then all of it
      http::ClientOptions o = h2c();
      o.expect_continue_timeout = 30s;  // only the 100 can release the body in time
      http::Client c(o);
      http::RequestOptions ro;
      ro.expect_continue = true;
      ro.body_generator = gen_of(200 * 1024);
      ro.body_length = 200 * 1024;
      const auto t0 = std::chrono::steady_clock::now();
      auto res = c.request("POST", srv.url("/up"), std::move(ro));
      FIBER_CHECK(res.status == 200);
      FIBER_CHECK(res.text() == std::to_string(200 * 1024));
      FIBER_CHECK(expect_seen == "100-continue");
      FIBER_CHECK(calls_at_read.load() == 0);
      FIBER_CHECK(std::chrono::steady_clock::now() - t0 < 15s);  // the 100 released it, not the timeout
      // A whole body, with the field set by hand (the same, as in Go's client).
      http::RequestOptions by_hand;
      by_hand.headers.set("Expect", "100-Continue");
      by_hand.body = pattern(100 * 1024);
      calls_at_read.store(-1);
      expect_seen.clear();
      FIBER_CHECK(c.request("POST", srv.url("/up"), std::move(by_hand)).text() == std::to_string(100 * 1024));
      FIBER_CHECK(calls_at_read.load() >= 0);  // the handler read it
      FIBER_CHECK(expect_seen == "100-continue");
      FIBER_CHECK(std::chrono::steady_clock::now() - t0 < 15s);
    }
    {  // refused from the head: 413, the generator never called; the
       // connection goes on (only the stream ends)
      http::Client c(h2c());
      calls.store(0);
      http::RequestOptions ro;
      ro.expect_continue = true;
      ro.body_generator = gen_of(std::size_t{10} << 20);
      ro.body_length = std::uint64_t{10} << 20;
      auto res = c.request("POST", srv.url("/whole"), std::move(ro));
      FIBER_CHECK(res.status == 413);
      FIBER_CHECK(calls.load() == 0);
      FIBER_CHECK(c.post(srv.url("/whole"), "abc").text() == "3");
    }
    {  // a server that waits for the body without a 100: it goes after the timeout
      http::ClientOptions o = h2c();
      o.expect_continue_timeout = 50ms;
      http::Client c(o);
      calls.store(0);
      read_late.store(true);
      http::RequestOptions ro;
      ro.expect_continue = true;
      ro.body_generator = gen_of(40 * 1024);
      ro.body_length = 40 * 1024;
      auto res = c.request("POST", srv.url("/up"), std::move(ro));
      FIBER_CHECK(res.status == 200);
      FIBER_CHECK(res.text() == std::to_string(40 * 1024));
      FIBER_CHECK(calls_at_read.load() > 0);  // sent without a 100, before the handler read
    }
    // Every request above on one connection per client: 3 clients.
    FIBER_CHECK(srv.server().connections_accepted() == 3);
  });
}

TEST_CASE("h2 client: trailers after a whole, a streamed and an empty body; over max_head the call fails; none over HTTP/1.1") {
  run_checked(2, [] {
    http::Router r;
    r.get("/whole", [](http::Request&) {
      auto res = http::Response::text_body(200, "hello");
      res.trailers.add("grpc-status", "0");
      res.trailers.add("X-Sum", "abc");
      return res;
    });
    r.get("/stream", [](http::Request&) {
      auto n = std::make_shared<int>(0);
      auto res = http::Response::stream_body(200, [n] { return ++*n <= 3 ? std::string(20'000, 's') : std::string(); });
      res.trailers.add("x-count", "3");
      return res;
    });
    r.get("/empty", [](http::Request&) {
      http::Response res;
      res.trailers.add("grpc-status", "12");
      return res;
    });
    r.get("/big", [](http::Request&) {
      auto res = http::Response::text_body(200, "big");
      res.trailers.add("x-big", std::string(32 * 1024, 'b'));
      return res;
    });
    r.get("/big-empty", [](http::Request&) {
      http::Response res;
      res.trailers.add("x-big", std::string(32 * 1024, 'b'));
      return res;
    });
    LiveServer srv(std::move(r));
    http::ClientOptions o = h2c();
    o.max_head = 16 * 1024;
    http::Client c(o);
    auto whole = c.get(srv.url("/whole"));
    FIBER_CHECK(whole.text() == "hello");
    FIBER_CHECK(whole.trailers.size() == 2);
    FIBER_CHECK(whole.trailers.get("grpc-status").value_or("") == "0");
    FIBER_CHECK(whole.trailers.get("x-sum").value_or("") == "abc");
    FIBER_CHECK(!whole.headers.contains("grpc-status"));
    auto streamed = c.get(srv.url("/stream"));
    FIBER_CHECK(streamed.body.size() == 60'000);
    FIBER_CHECK(streamed.trailers.get("x-count").value_or("") == "3");
    auto opened = c.open("GET", srv.url("/stream"));
    FIBER_CHECK(opened.trailers().empty());  // not before the body's end
    FIBER_CHECK(opened.read_all().size() == 60'000);
    FIBER_CHECK(opened.done());
    FIBER_CHECK(opened.trailers().get("x-count").value_or("") == "3");
    auto empty = c.get(srv.url("/empty"));
    FIBER_CHECK(empty.status == 200);
    FIBER_CHECK(empty.body.empty());
    FIBER_CHECK(empty.trailers.get("grpc-status").value_or("") == "12");
    std::string what;
    FIBER_CHECK(error_of([&] { c.get(srv.url("/big")); }, &what) == http::errc::malformed_response);
    FIBER_CHECK(what.find("trailers") != std::string::npos);
    // open(): the body first, then the failure (also when there is no body).
    FIBER_CHECK(error_of([&] {
                  auto s = c.open("GET", srv.url("/big"));
                  FIBER_CHECK(s.read_chunk() == "big");
                  s.read_all();
                }) == http::errc::malformed_response);
    FIBER_CHECK(error_of([&] { c.open("GET", srv.url("/big-empty")).read_all(); }) == http::errc::malformed_response);
    // HEAD: no trailers (nor a body).
    auto head = c.request("HEAD", srv.url("/whole"));
    FIBER_CHECK(head.body.empty());
    FIBER_CHECK(head.trailers.empty());
    // Only that stream failed: the connection goes on.
    FIBER_CHECK(c.get(srv.url("/whole")).trailers.size() == 2);
    FIBER_CHECK(srv.server().connections_accepted() == 1);
    // HTTP/1.1: not sent.
    http::Client plain;
    auto h1 = plain.get(srv.url("/whole"));
    FIBER_CHECK(h1.text() == "hello");
    FIBER_CHECK(h1.trailers.empty());
    FIBER_CHECK(!h1.headers.contains("grpc-status"));
  });
}

// At most 5 interim heads per request, as over HTTP/1.1 (Go's client
// too): each wakes the requesting fiber. A raw server answers the first
// request with 6 heads of 103 Early Hints, the second with 5, each then 200.
TEST_CASE("h2 client: more than 5 interim heads fail the request, not the connection") {
  run_checked(2, [] {
    RawPeer peer([](io::TcpStream& s) {
      H2Wire w(s);
      w.start();
      for (int requests = 1;; ++requests) {
        const std::uint32_t id = w.request().stream;
        std::string out;
        for (int i = 0; i < (requests == 1 ? 6 : 5); ++i) out += h2_frame(kHeaders, kEndHeaders, id, status_block("103"));
        out += h2_frame(kHeaders, kEndHeaders | kEndStream, id, status_block("200"));
        w.send(out);
      }
    });
    http::Client c(h2c());
    std::string what;
    FIBER_CHECK(error_of([&] { c.get(peer.url("/six")); }, &what) == http::errc::malformed_response);
    FIBER_CHECK(what.find("more than 5 1xx") != std::string::npos);
    auto five = c.get(peer.url("/five"));
    FIBER_CHECK(five.status == 200);
    FIBER_CHECK(peer.accepted() == 1);  // the same connection
  });
}

// An HPACK bomb from the server: a 4 KB table entry, then a response head
// of nine frames of one-byte references to it (~600 MB of header list from
// ~147 KB). The call fails as any head over max_head does, at the cost of
// decoding: past max_head nghttp2 neither checks nor hands over the rest of
// the block (on_header), where checking each reference's 4 KB had cost
// ~350 ms of a core per block. The connection serves the next request.
TEST_CASE("h2 client: an HPACK bomb in a response head fails the call, not the connection") {
  run_checked(2, [] {
    RawPeer peer([](io::TcpStream& s) {
      H2Wire w(s);
      w.start();
      const std::uint32_t id = w.request().stream;
      std::string block = status_block("200");
      block += '\x40';  // literal with incremental indexing, new name
      block += '\x06';
      block += "x-bomb";
      hpack_int(block, 0, 7, 4000);
      block += std::string(4000, 'b');
      block += std::string(9 * 16384 - block.size(), '\xbe');  // index 62: the entry
      for (std::size_t at = 0; at < block.size(); at += 16384) {
        const bool first = at == 0, last = at + 16384 >= block.size();
        w.send(h2_frame(first ? kHeaders : kContinuation, (last ? kEndHeaders : 0) | (first ? kEndStream : 0), id,
                        std::string_view(block).substr(at, 16384)));
      }
      for (;;) w.send(h2_frame(kHeaders, kEndHeaders | kEndStream, w.request().stream, status_block("200")));
    });
    http::Client c(h2c());
    std::string what;
    FIBER_CHECK(error_of([&] { c.get(peer.url("/bomb")); }, &what) == http::errc::malformed_response);
    FIBER_CHECK(what.find("over max_head") != std::string::npos);
    FIBER_CHECK(c.get(peer.url("/next")).status == 200);
    FIBER_CHECK(peer.accepted() == 1);  // the same connection
  });
}

// A server that answers as it reads sends its final 2xx before any 100
// (or before the body is all sent) and reads the body next: the body goes
// on, as Go's client sends it (a status over 299 stops it). A 2xx that
// ends the stream, or a refusal, gets none. A raw server: http::Server
// answers only once its handler returned.
TEST_CASE("h2 client: a final 2xx before the 100 still gets the body; one that ends the stream does not") {
  run_checked(2, [] {
    std::atomic<std::size_t> got{0};
    RawPeer peer([&](io::TcpStream& s) {
      H2Wire w(s);
      w.start();
      // The first stream: answered at once, then its body read (the
      // connection's window given back) and its size sent.
      const std::uint32_t id = w.request().stream;
      w.send(h2_frame(kHeaders, kEndHeaders, id, status_block("200")));
      std::size_t count = 0;
      for (bool end = false; !end;) {
        const Frame f = w.next();
        if (f.type != kData || f.stream != id) continue;
        count += f.payload.size();
        if (!f.payload.empty()) w.send(window_update(0, static_cast<std::uint32_t>(f.payload.size())));
        end = (f.flags & kEndStream) != 0;
      }
      got.store(count);
      w.send(h2_frame(kData, kEndStream, id, std::to_string(count)));
      // Later streams: answered at once and in full; what they send counted.
      for (;;) {
        const Frame f = w.next();
        if (f.type == kHeaders) w.send(h2_frame(kHeaders, kEndHeaders | kEndStream, f.stream, status_block("200")));
        if (f.type == kData) got.fetch_add(f.payload.size());
      }
    });
    http::ClientOptions o = h2c();
    o.expect_continue_timeout = 30s;  // only the 2xx can release the body in time
    o.read_timeout = 10s;             // a body held back fails, not hangs
    http::Client c(o);
    std::atomic<int> calls{0};
    auto post = [&] {
      http::RequestOptions ro;
      ro.expect_continue = true;
      ro.body_length = 40 * 1024;
      ro.body_generator = [&calls, left = std::size_t{40 * 1024}]() mutable {
        calls.fetch_add(1);
        const std::size_t n = std::min<std::size_t>(left, 8 * 1024);
        left -= n;
        return std::string(n, 'g');
      };
      return c.request("POST", peer.url("/up"), std::move(ro));
    };
    const auto t0 = std::chrono::steady_clock::now();
    auto r = post();
    FIBER_CHECK(r.status == 200);
    FIBER_CHECK(r.text() == std::to_string(40 * 1024));
    FIBER_CHECK(got.load() == 40 * 1024);
    FIBER_CHECK(std::chrono::steady_clock::now() - t0 < 15s);  // not the expect timeout
    // Stream 3: the 2xx ends the stream: nothing of the body is asked for.
    calls.store(0);
    got.store(0);
    FIBER_CHECK(post().status == 200);
    FIBER_CHECK(calls.load() == 0);
    FIBER_CHECK(got.load() == 0);
    FIBER_CHECK(peer.accepted() == 1);
  });
}

TEST_CASE("h2 client: open() streams a large body in pieces; max_body bounds request(); the connection goes on") {
  run_checked(2, [] {
    const std::string big = pattern(4 << 20);
    LiveServer srv([&](http::Request& q) {
      if (q.path() == "/gen") {
        auto at = std::make_shared<std::size_t>(0);
        return http::Response::stream_body(200, [&big, at] {
          const std::size_t n = std::min<std::size_t>(50'000, big.size() - *at);
          std::string piece = big.substr(*at, n);
          *at += n;
          return piece;
        });
      }
      return http::Response::text_body(200, big);
    });
    auto o = h2c();
    o.max_body = 1 << 20;
    http::Client c(o);
    auto s = c.open("GET", srv.url("/whole"));
    FIBER_CHECK(s.status == 200);
    FIBER_CHECK(s.content_length().value_or(0) == big.size());
    std::string got;
    std::size_t biggest = 0;
    for (std::string piece; !(piece = s.read_chunk(32 * 1024)).empty();) {
      biggest = std::max(biggest, piece.size());
      got += piece;
    }
    FIBER_CHECK(got == big);
    FIBER_CHECK(biggest <= 32 * 1024);
    FIBER_CHECK(s.done());
    // Still known once the body ended, and for a HEAD, whose stream ends
    // with its head (both read the HTTP/1.1 parser, which never saw a
    // head over HTTP/2: none, and Beast's assert in a build with them).
    FIBER_CHECK(s.content_length().value_or(0) == big.size());
    auto h = c.open("HEAD", srv.url("/whole"));
    FIBER_CHECK(h.done());
    FIBER_CHECK(h.content_length().value_or(0) == big.size());
    auto g = c.open("GET", srv.url("/gen"));
    FIBER_CHECK(!g.content_length().has_value());
    FIBER_CHECK(g.read_all(8 << 20) == big);
    // Over max_body: Content-Length known up front, or counted.
    FIBER_CHECK(error_kind<http::Error>([&] { c.get(srv.url("/whole")); }) == http::errc::body_too_large);
    FIBER_CHECK(error_kind<http::Error>([&] { c.get(srv.url("/gen")); }) == http::errc::body_too_large);
    // Each of those reset its stream only: the connection still serves.
    FIBER_CHECK(c.open("GET", srv.url("/whole")).status == 200);
    FIBER_CHECK(srv.server().connections_accepted() == 1);
  });
}

TEST_CASE("h2 client: read_timeout ends a stream whose answer does not come; the server's handler is cancelled; the next request dials") {
  run_checked(2, [] {
    std::atomic<bool> cancelled{false};
    sp::Event never;
    LiveServer srv([&](http::Request& q) {
      if (q.path() == "/slow") {
        try {
          never.wait();
        } catch (const sp::Cancelled&) {
          cancelled.store(true);
          throw;
        }
      }
      return http::Response::text_body(200, "ok");
    });
    auto o = h2c();
    o.read_timeout = 200ms;
    http::Client c(o);
    FIBER_CHECK(error_of([&] { c.get(srv.url("/slow")); }) == http::errc::timeout);
    // The client's RST_STREAM reaches the server: the handler is cancelled.
    const auto until = Clock::now() + slack(5s);
    while (!cancelled.load() && Clock::now() < until) sp::sleep_for(5ms);
    FIBER_CHECK(cancelled.load());
    // The timed out stream retired its connection (the server might have
    // gone silent): the next request is on a new one, and the old one,
    // its PING answered and no stream left, is closed.
    FIBER_CHECK(c.get(srv.url("/ok")).text() == "ok");
    FIBER_CHECK(srv.server().connections_accepted() == 2);
    FIBER_CHECK(wait_until([&] { return srv.server().connections_open() == 1; }));
  });
}

TEST_CASE("h2 client: a connection the server ends (GOAWAY, close) is replaced for the next request") {
  run_checked(2, [] {
    http::ServerOptions so;
    // GOAWAY and close after 300 ms with no stream (1 s under sanitizers:
    // each new connection's first stream must come inside it).
    so.idle_timeout = kSanitized ? 1000ms : 300ms;
    LiveServer srv([](http::Request&) { return http::Response::text_body(200, "ok"); }, so);
    http::Client c(h2c());
    FIBER_CHECK(c.get(srv.url("/")).text() == "ok");
    // The server ended it (not a fixed sleep: under TSan 400 ms was not
    // always enough). Whether or not the client has read the GOAWAY yet, a
    // GET sent on a connection found gone goes again on a new one.
    FIBER_CHECK(wait_until([&] { return srv.server().connections_open() == 0; }));
    FIBER_CHECK(c.get(srv.url("/")).text() == "ok");
    FIBER_CHECK(srv.server().connections_accepted() == 2);
    FIBER_CHECK(c.stats().open == 1);
  });
}

TEST_CASE("h2 client: more requests than the server's SETTINGS_MAX_CONCURRENT_STREAMS wait their turn") {
  run_checked(2, [] {
    Gauge g;
    http::ServerOptions so;
    so.http2.max_concurrent_streams = 2;
    LiveServer srv([&](http::Request&) {
      Gauge::In in(g);
      sp::sleep_for(3ms);
      return http::Response::text_body(200, "ok");
    }, so);
    http::Client c(h2c());
    FIBER_CHECK(c.get(srv.url("/")).status == 200);  // the server's SETTINGS are known from here
    std::vector<sp::Task<int>> tasks;
    for (int i = 0; i < 12; ++i) tasks.push_back(sp::spawn([&] { return c.get(srv.url("/")).status; }));
    for (auto& t : tasks) FIBER_CHECK(t.join() == 200);
    FIBER_CHECK(g.most.load() <= 2);
  });
}

TEST_CASE("h2 client: 1xx heads are skipped; HEAD gets no body; the server's status and fields come through") {
  run_checked(1, [] {
    LiveServer srv([](http::Request& q) {
      auto r = http::Response::text_body(q.path() == "/missing" ? 404 : 200, "hello");
      r.headers.add("X-Multi", "a");
      r.headers.add("X-Multi", "b");
      return r;
    });
    http::Client c(h2c());
    auto h = c.request("HEAD", srv.url("/"));
    FIBER_CHECK(h.status == 200);
    FIBER_CHECK(h.body.empty());
    FIBER_CHECK(h.headers.get("content-length").value_or("") == "5");
    auto m = c.get(srv.url("/missing"));
    FIBER_CHECK(m.status == 404);
    FIBER_CHECK(m.text() == "hello");
    int multi = 0;
    for (const auto& [n, v] : m.headers) multi += n == "x-multi";
    FIBER_CHECK(multi == 2);
  });
}

#if H2_TEST_TLS
namespace {
const tls_test::TestCerts& certs() {
  static const auto c = tls_test::TestCerts::make();
  return *c;
}
}  // namespace

TEST_CASE("h2 client: https picks HTTP/2 by ALPN; ClientHttp2::never stays HTTP/1.1") {
  run_checked(2, [] {
    http::ServerOptions so;
    so.tls = {certs().cert_file, certs().key_file};
    LiveServer srv([](http::Request& q) { return http::Response::text_body(200, "v" + std::to_string(q.version)); }, so);
    const std::string url = "https://127.0.0.1:" + std::to_string(srv.port()) + "/";
    http::ClientOptions o;
    o.tls.ca_file = certs().ca_file;
    http::Client c(o);
    std::vector<sp::Task<std::string>> tasks;
    for (int i = 0; i < 20; ++i) tasks.push_back(sp::spawn([&] { return std::string(c.get(url).text()); }));
    for (auto& t : tasks) FIBER_CHECK(t.join() == "v20");
    FIBER_CHECK(srv.server().connections_accepted() <= 2);  // fibers racing the first connect may each make one
    o.http2 = http::ClientHttp2::never;
    http::Client h1(o);
    FIBER_CHECK(h1.get(url).text() == "v11");
    // The server without HTTP/2: ALPN picks nothing, the client speaks HTTP/1.1.
    so.http2.enabled = false;
    LiveServer old([](http::Request& q) { return http::Response::text_body(200, "v" + std::to_string(q.version)); }, so);
    o.http2 = http::ClientHttp2::alpn;
    http::Client c2(o);
    FIBER_CHECK(c2.get("https://127.0.0.1:" + std::to_string(old.port()) + "/").text() == "v11");
  });
}
#endif

// As tests/http/lifetime_test.cpp for HTTP/1.1: the Client outlives the run
// that opened its HTTP/2 connection (whose reader and writer fibers were
// parked in that runtime), and a second run uses the same Client.
TEST_CASE("h2 client: a Client whose HTTP/2 connection outlives its run is destroyed or used again safely") {
  std::optional<http::Client> c;
  c.emplace(h2c());
  sp::Runtime srv_rt(options(1));  // the server's runtime, alive throughout: its workers serve between calls
  std::uint16_t port = 0;
  std::optional<LiveServer> srv;
  srv_rt.block_on([&] {
    srv.emplace([](http::Request&) { return http::Response::text_body(200, "ok"); });
    port = srv->port();
  });
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/";
  run_checked(2, [&] { FIBER_CHECK(c->get(url).text() == "ok"); });
  run_checked(2, [&] {
    // The first run's connection died with it: a new one.
    FIBER_CHECK(sp::with_timeout(slack(10s), [&] { return std::string(c->get(url).text()); }) == "ok");
  });
  c.reset();  // after both runs ended
  srv_rt.block_on([&] { srv.reset(); });
}

// RudeH2: a hand-written HTTP/2 server for what http::Server never does:
// on its first connection it answers the first request (200, no body),
// then closes the socket without GOAWAY when the next request's HEADERS
// come (a server that restarted or timed out under a working
// connection). Later connections answer every request. Counts
// connections and requests (HEADERS frames seen).
namespace {

struct RudeH2 {
  io::TcpListener l = io::TcpListener::bind("127.0.0.1", 0);
  std::atomic<int> conns{0}, requests{0};
  sp::TaskGroup g;

  static std::string frame(std::uint8_t type, std::uint8_t flags, std::uint32_t stream, const std::string& p) {
    std::string f;
    const auto n = static_cast<std::uint32_t>(p.size());
    for (int sh = 16; sh >= 0; sh -= 8) f += static_cast<char>((n >> sh) & 0xff);
    f += static_cast<char>(type);
    f += static_cast<char>(flags);
    for (int sh = 24; sh >= 0; sh -= 8) f += static_cast<char>((stream >> sh) & 0xff);
    return f + p;
  }

  void serve(io::TcpStream s, bool rude) {
    char preface[24];
    s.read_exact(preface, sizeof preface);
    s.write_all(frame(4, 0, 0, ""));  // our SETTINGS
    int answered = 0;
    for (;;) {
      unsigned char h[9];
      s.read_exact(h, 9);
      const std::size_t len = std::size_t{h[0]} << 16 | std::size_t{h[1]} << 8 | h[2];
      std::string payload(len, '\0');
      if (len > 0) s.read_exact(payload.data(), len);
      const std::uint32_t id = (std::uint32_t{h[5]} << 24 | std::uint32_t{h[6]} << 16 | std::uint32_t{h[7]} << 8 | h[8]) &
                               0x7fffffffu;
      if (h[3] == 4 && (h[4] & 1) == 0) s.write_all(frame(4, 1, 0, ""));  // SETTINGS ACK
      if (h[3] != 1) continue;  // the request's HEADERS (its body, if any, is not read)
      requests.fetch_add(1);
      if (rude && answered == 1) return;  // closed with the request unanswered, no GOAWAY
      s.write_all(frame(1, 0x5, id, "\x88"));  // :status 200, END_STREAM|END_HEADERS
      ++answered;
    }
  }

  explicit RudeH2() {
    g.spawn([this] {
      for (;;) {
        io::TcpStream s = l.accept();
        const bool rude = conns.fetch_add(1) == 0;
        g.spawn([this, rude, s = std::move(s)]() mutable {
          try {
            serve(std::move(s), rude);
          } catch (const std::system_error&) {
          }
        });
      }
    });
  }
  ~RudeH2() { g.cancel(); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(l.local_endpoint().port()) + "/"; }
};

}  // namespace

TEST_CASE("h2 client: an idempotent request on a connection that closes before its answer goes again; a POST does not") {
  run_checked(2, [] {
    {
      RudeH2 srv;
      http::Client c(h2c());
      FIBER_CHECK(c.get(srv.url()).status == 200);
      // The connection dies under the second GET: sent again, on a new one.
      FIBER_CHECK(c.get(srv.url()).status == 200);
      FIBER_CHECK(srv.conns.load() == 2);
      FIBER_CHECK(srv.requests.load() == 3);
    }
    {
      RudeH2 srv;
      http::Client c(h2c());
      FIBER_CHECK(c.get(srv.url()).status == 200);
      std::string what;
      FIBER_CHECK(error_kind<http::Error>([&] { c.post(srv.url(), std::string("x")); }, &what) == http::errc::reset);
      FIBER_CHECK(what.find("connection closed") != std::string::npos);
      FIBER_CHECK(srv.conns.load() == 1);  // not sent again: the server may have run it
      FIBER_CHECK(srv.requests.load() == 2);
      // RequestOptions::replayable says it may run twice: it goes again.
      RudeH2 srv2;
      http::Client c2(h2c());
      FIBER_CHECK(c2.get(srv2.url()).status == 200);
      http::RequestOptions ro;
      ro.body = "x";
      ro.replayable = true;
      FIBER_CHECK(c2.request("POST", srv2.url(), ro).status == 200);
      FIBER_CHECK(srv2.conns.load() == 2);
    }
  });
}

// Interop with nghttp2's reference server (nghttpd, Debian nghttp2-server:
// a binary, no service): static files over h2c and over TLS with ALPN.
namespace {

// Nghttpd: nghttpd serving `dir` on a free port until destroyed.
struct Nghttpd {
  io::Process p;
  std::uint16_t port = 0;
  Nghttpd(const std::filesystem::path& dir, const std::vector<std::string>& extra) {
    port = free_port();
    std::vector<std::string> argv{"nghttpd", "-a", "127.0.0.1", "-d", dir.string()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    // --no-tls goes before the port; key and cert after it.
    auto tls_at = std::find(argv.begin(), argv.end(), std::string("KEYCERT"));
    std::vector<std::string> tail;
    if (tls_at != argv.end()) {
      tail.assign(tls_at + 1, argv.end());
      argv.erase(tls_at, argv.end());
    }
    argv.push_back(std::to_string(port));
    argv.insert(argv.end(), tail.begin(), tail.end());
    io::ProcessOptions po;
    po.out = io::Stdio::devnull();
    po.err = io::Stdio::devnull();
    p = io::Process::spawn(argv, po);  // a missing nghttpd throws: scripts/install-deps.sh installs it
    const auto until = Clock::now() + slack(10s);
    for (;;) {
      try {
        io::TcpStream::connect(io::Endpoint("127.0.0.1", port)).close();
        return;
      } catch (const std::system_error&) {
        if (Clock::now() > until) throw;
        sp::sleep_for(20ms);
      }
    }
  }
  ~Nghttpd() {
    p.kill(SIGTERM);
    p.wait();
  }
};

}  // namespace

TEST_CASE("h2 client: against nghttpd (h2c, and https with ALPN), many fibers on one connection") {
  const auto dir = std::filesystem::temp_directory_path() / ("spindle-nghttpd-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string big = pattern(2 << 20);
  {
    std::FILE* f = std::fopen((dir / "big").c_str(), "wb");
    REQUIRE(f != nullptr);
    std::fwrite(big.data(), 1, big.size(), f);
    std::fclose(f);
    f = std::fopen((dir / "hello").c_str(), "wb");
    REQUIRE(f != nullptr);
    std::fputs("hello from nghttpd", f);
    std::fclose(f);
  }
  run_checked(2, [&] {
    Nghttpd d(dir, {"--no-tls"});
    http::Client c(h2c());
    const std::string base = "http://127.0.0.1:" + std::to_string(d.port);
    std::vector<sp::Task<bool>> tasks;
    for (int i = 0; i < 20; ++i)
      tasks.push_back(sp::spawn([&] { return c.get(base + "/hello").text() == "hello from nghttpd"; }));
    int ok = 0;
    for (auto& t : tasks) ok += t.join();
    FIBER_CHECK(ok == 20);
    FIBER_CHECK(c.stats().connections_opened == 1);
    auto s = c.open("GET", base + "/big");
    FIBER_CHECK(s.status == 200);
    FIBER_CHECK(s.read_all(4 << 20) == big);
    FIBER_CHECK(c.get(base + "/missing").status == 404);
  });
#if H2_TEST_TLS
  run_checked(2, [&] {
    Nghttpd d(dir, {"KEYCERT", certs().key_file, certs().cert_file});
    http::ClientOptions o;
    o.tls.ca_file = certs().ca_file;
    http::Client c(o);
    const std::string base = "https://127.0.0.1:" + std::to_string(d.port);
    FIBER_CHECK(c.get(base + "/hello").text() == "hello from nghttpd");
    FIBER_CHECK(c.get(base + "/big").body == big);
    FIBER_CHECK(c.stats().connections_opened == 1);
  });
#endif
  std::filesystem::remove_all(dir);
}

TEST_CASE("h2 client: streams in flight on a connection the server GOAWAYs finish on it, while new requests go elsewhere") {
  run_checked(2, [] {
    std::atomic<int> inside{0};
    sp::Event release;
    http::ServerOptions so;
    so.drain_timeout = std::chrono::seconds(30);
    LiveServer srv([&](http::Request& q) {
      if (q.path() == "/slow") {
        inside.fetch_add(1);
        release.wait();
      }
      return http::Response::text_body(200, std::string(q.path()));
    }, so);
    http::Client c(h2c());
    // Both URLs made now: a stopped server's listener has no port to tell.
    const std::string url = srv.url("/slow");
    const std::string fast = srv.url("/fast");
    std::vector<sp::Task<std::string>> slow;
    // Each failure is caught in its fiber: an exception out of one join
    // would leave the others running past the Client.
    for (int i = 0; i < 5; ++i) {
      slow.push_back(sp::spawn([&] {
        try {
          return std::string(c.get(url).text());
        } catch (const std::exception& e) {
          return std::string("failed: ") + e.what();
        }
      }));
    }
    const auto until = Clock::now() + slack(10s);
    while (inside.load() < 5 && Clock::now() < until) sp::sleep_for(2ms);
    FIBER_CHECK(inside.load() == 5);
    // Graceful shutdown: GOAWAY (the 5 streams are below its last id), and
    // the listener closes. A new request finds the connection GOAWAY'd and
    // dials (refused: the listener is gone); that must not end the 5.
    auto stopper = sp::spawn([&] { srv.stop(); });
    const auto until2 = Clock::now() + slack(10s);
    bool refused = false;
    while (!refused && Clock::now() < until2) {
      try {
        c.get(fast);
        sp::sleep_for(5ms);  // still the old connection: GOAWAY not read yet
      } catch (const http::Error&) {
        refused = true;
      }
    }
    FIBER_CHECK(refused);
    release.set();
    for (auto& t : slow) {
      const std::string got = t.join();
      if (got != "/slow") std::fprintf(stderr, "slow request: %s\n", got.c_str());
      FIBER_CHECK(got == "/slow");
    }
    stopper.join();
  });
}

// A StreamedResponse may outlive its Client: its connection went back into
// the freed pool (heap-use-after-free, ASan; a crash at best). Over
// HTTP/1.1 the rest of the body is still read, and the connection is then
// closed; over HTTP/2 the Client's end closed the connection (the body is
// cut: errc::truncated, or reset).
TEST_CASE("h2 client: a StreamedResponse that outlives its Client reads on or fails cleanly") {
  run_checked(2, [] {
    const std::string big = pattern(300 * 1000);
    LiveServer srv([&](http::Request&) { return http::Response::text_body(200, big); });
    for (const bool h2 : {false, true}) {
      auto c = std::make_unique<http::Client>(h2 ? h2c() : http::ClientOptions{});
      auto r = c->open("GET", srv.url("/big"));
      FIBER_CHECK(r.status == 200);
      std::string got(1000, '\0');
      got.resize(r.read_some(std::as_writable_bytes(std::span(got))));
      FIBER_CHECK(!got.empty());
      c.reset();
      http::errc e{};
      try {
        got += r.read_all();
      } catch (const http::Error& x) {
        e = x.kind();
      }
      if (!h2) {
        FIBER_CHECK(e == http::errc{});
        FIBER_CHECK(got == big);
      } else {
        const bool cut = e == http::errc::truncated || e == http::errc::reset;
        FIBER_CHECK((e == http::errc{} ? got == big : (cut && big.starts_with(got))));
      }
    }
    // The server served both, and serves on.
    http::Client again;
    FIBER_CHECK(again.get(srv.url("/big")).text() == big);
  });
}

// A connection the server closed leaves the pool when the client sees its
// end, not when its origin is next asked for (or its keepalive_timeout
// sweep): before, a crawler's pool held every such connection (its
// session, its buffers) of every origin it had met.
TEST_CASE("h2 client: a connection the server closed leaves the pool without another request") {
  run_checked(2, [] {
    http::ServerOptions so;
    so.idle_timeout = 200ms;  // the server's GOAWAY and close, once the stream is done
    LiveServer srv([](http::Request&) { return http::Response::text_body(200, "ok"); }, so);
    auto o = h2c();
    o.keepalive_timeout = 10min;  // no sweep lets it go
    http::Client c(o);
    FIBER_CHECK(c.get(srv.url("/a")).text() == "ok");
    FIBER_CHECK(c.stats().open == 1);
    FIBER_CHECK(wait_until([&] { return c.stats().open == 0; }, slack(10s)));
    // The next request dials anew.
    FIBER_CHECK(c.get(srv.url("/b")).text() == "ok");
    FIBER_CHECK(c.stats().connections_opened == 2);
    FIBER_CHECK(c.stats().open == 1);
  });
}
