// h2_server_test.cpp: http::Server speaking HTTP/2 (ServerOptions::http2,
// docs/decisions/0019-http2.md) to libnghttp2's client session
// (h2_test_client.hpp) and to real peers (curl, nghttp, h2load): prior
// knowledge on a plain listener next to HTTP/1.1, ALPN on an https one;
// what a handler sees of a stream (version 20, :method/:path, host from
// :authority), response heads as HTTP/2 wants them; streams that run
// concurrently and are cancelled one by one; request bodies past the
// stream window, read slowly on one stream while another flows; 413;
// streamed and file responses; a throwing handler; graceful shutdown
// (GOAWAY NO_ERROR, the in-flight stream finishes); idle_timeout.
// The attacks and limits are in h2_hostile_test.cpp.
#include <atomic>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
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

// Seen: what handlers saw of their requests, one line each:
// "version method target host=<first host> hosts=<count>".
struct Seen {
  std::mutex mu;
  std::vector<std::string> lines;
  void add(const http::Request& q) {
    std::size_t hosts = 0;
    for (const auto& [n, v] : q.headers) hosts += http::iequals(n, "host") ? 1 : 0;
    std::lock_guard lk(mu);
    lines.push_back(std::to_string(q.version) + " " + q.method + " " + q.target +
                    " host=" + std::string(q.headers.get("host").value_or("-")) + " hosts=" + std::to_string(hosts));
  }
  std::vector<std::string> all() {
    std::lock_guard lk(mu);
    return lines;
  }
};

// info: the handler the interop and protocol cases share.
http::Handler info(Seen& seen) {
  return [&seen](http::Request& q) {
    seen.add(q);
    http::Response r = http::Response::text_body(200, "h" + std::to_string(q.version) + " " + q.method + " " + q.target);
    r.headers.set("X-Custom-Thing", "Value");
    return r;
  };
}

bool lower_case(const Fields& f) {
  for (const auto& [n, v] : f)
    for (char ch : n)
      if (std::isupper(static_cast<unsigned char>(ch))) return false;
  return true;
}

std::string sum_of(std::string_view body) { return std::to_string(body.size()) + ":" + std::to_string(fnv(body)); }

// A spindle::Cancelled (or any unwind) counted on the way out.
struct Counted {
  std::atomic<int> entered{0}, cancelled{0}, finished{0};
};

}  // namespace

TEST_CASE("h2: a handler's connection-specific fields are dropped in any case; its Content-Length is the server's but on a 304; 204 and 304 send no file") {
  run_checked(2, [] {
    http::Router r;
    r.get("/forbidden", [](http::Request&) {
      http::Response res = http::Response::text_body(200, "four");
      res.headers.add("CONNECTION", "close");
      res.headers.add("Transfer-Encoding", "chunked");
      res.headers.add("Keep-Alive", "timeout=5");
      res.headers.add("Content-Length", "999");
      res.headers.add("Up-Grade-Not", "kept");  // only the exact names are dropped
      res.headers.add(std::string("x-nul\0name", 10), "dropped");
      res.headers.add("X-Value-Nul", std::string("a\0b", 3));
      return res;
    });
    r.get("/not-modified", [](http::Request&) {
      http::Response res;
      res.status = 304;
      res.headers.add("Content-Length", "42");
      return res;
    });
    // A file body on a status without one: the head alone, as over
    // HTTP/1.1, with no open of the file (a missing one was a 500).
    r.get("/not-modified-file", [](http::Request&) {
      return http::Response::file_body(304, "/nonexistent/spindle-h2-test-file");
    });
    r.get("/no-content-file", [](http::Request&) {
      return http::Response::file_body(204, "/nonexistent/spindle-h2-test-file");
    });
    H2Server srv(std::move(r));
    Client c(srv.port());
    for (const auto& [path, status] : {std::pair{"/not-modified-file", 304}, std::pair{"/no-content-file", 204}}) {
      const StreamResult f = c.request("GET", path, slack(10s));
      FIBER_CHECK(f.complete());
      FIBER_CHECK(f.status == status);
      FIBER_CHECK(f.body.empty());
    }
    const StreamResult a = c.request("GET", "/forbidden", slack(10s));
    FIBER_CHECK(a.complete());
    FIBER_CHECK(a.status == 200);
    FIBER_CHECK(a.body == "four");
    FIBER_CHECK(!a.field("connection") && !a.field("keep-alive") && !a.field("transfer-encoding"));
    FIBER_CHECK(a.field("content-length") == "4");
    FIBER_CHECK(a.field("up-grade-not") == "kept");
    FIBER_CHECK(!a.field(std::string("x-nul\0name", 10)));
    FIBER_CHECK(!a.field("x-value-nul"));
    FIBER_CHECK(lower_case(a.fields));
    const StreamResult b = c.request("GET", "/not-modified", slack(10s));
    FIBER_CHECK(b.complete());
    FIBER_CHECK(b.status == 304);
    FIBER_CHECK(b.field("content-length") == "42");
    FIBER_CHECK(b.body.empty());
  });
}

TEST_CASE("h2: prior knowledge on a plain listener, HTTP/1.1 on the same port") {
  run_checked(2, [] {
    Seen seen;
    http::Router r;
    r.get("/info", info(seen));
    r.post("/echo", [](http::Request& q) { return http::Response::text_body(200, q.method + " " + q.target + " " + q.body); });
    H2Server srv(std::move(r));
    Client c(srv.port());
    // An :authority other than the socket's: the handler's host is it.
    const std::int32_t id = c.submit("GET", "/info?x=1", {{"accept", "*/*"}}, std::nullopt, "example.test:8443");
    c.finish(id, slack(10s));
    const StreamResult& a = c.stream(id);
    FIBER_CHECK(a.complete());
    FIBER_CHECK(a.status == 200);
    FIBER_CHECK(a.body == "h20 GET /info?x=1");
    FIBER_CHECK(a.field("content-length") == std::to_string(a.body.size()));
    FIBER_CHECK(a.field("x-custom-thing") == "Value");
    FIBER_CHECK(a.field("content-type").has_value());
    FIBER_CHECK(lower_case(a.fields));
    // No connection-specific field may appear in HTTP/2 (RFC 9113 8.2.2).
    FIBER_CHECK(!a.field("connection") && !a.field("keep-alive") && !a.field("transfer-encoding"));
    const auto lines = seen.all();
    FIBER_CHECK(lines.size() == 1);
    FIBER_CHECK(!lines.empty() && lines[0] == "20 GET /info?x=1 host=example.test:8443 hosts=1");
    // A body, on the same connection.
    const StreamResult p = c.request("POST", "/echo", slack(10s), std::string("abc"));
    FIBER_CHECK(p.complete());
    FIBER_CHECK(p.body == "POST /echo abc");
    // HEAD: the head only, HEADERS with END_STREAM and no DATA frame.
    const StreamResult h = c.request("HEAD", "/info", slack(10s));
    FIBER_CHECK(h.complete());
    FIBER_CHECK(h.status == 200);
    FIBER_CHECK(h.end_on_headers);
    FIBER_CHECK(h.data_frames == 0);
    FIBER_CHECK(h.body.empty());
    // HTTP/1.1 on the same port still works.
    auto raw = http_test::raw_connect(srv.port());
    raw.write_all("GET /info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    const std::string one = http_test::read_all(raw);
    FIBER_CHECK(one.starts_with("HTTP/1.1 200 "));
    FIBER_CHECK(one.ends_with("h11 GET /info"));
    FIBER_CHECK(seen.all().size() == 3);
    FIBER_CHECK(seen.all().back() == "11 GET /info host=x hosts=1");
  });
}

TEST_CASE("h2: a stream the client resets cancels its handler; a closed connection cancels all") {
  run_checked(2, [] {
    Counted n;
    sp::Event never;
    http::Router r;
    r.get("/event", [&](http::Request&) {
      n.entered.fetch_add(1);
      try {
        never.wait();
      } catch (const sp::Cancelled&) {
        n.cancelled.fetch_add(1);
        throw;
      }
      n.finished.fetch_add(1);
      return http::Response::text_body(200, "late");
    });
    r.get("/sleep", [&](http::Request&) {
      n.entered.fetch_add(1);
      try {
        sp::sleep_for(std::chrono::hours(1));
      } catch (const sp::Cancelled&) {
        n.cancelled.fetch_add(1);
        throw;
      }
      n.finished.fetch_add(1);
      return http::Response::text_body(200, "late");
    });
    ok_route(r);
    H2Server srv(std::move(r));
    Client c(srv.port());
    int expect = 0;
    for (const char* path : {"/event", "/sleep"}) {
      INFO(path);
      ++expect;
      const std::int32_t id = c.submit("GET", path);
      FIBER_CHECK(c.pump([&] { return n.entered.load() == expect; }, slack(10s)));
      c.reset(id, NGHTTP2_CANCEL);
      FIBER_CHECK(c.pump([&] { return n.cancelled.load() == expect; }, slack(10s)));
    }
    // The connection outlives its reset streams.
    const StreamResult ok = c.get("/ok", slack(10s));
    FIBER_CHECK(ok.complete());
    FIBER_CHECK(ok.body == "ok");
    // A client that closes its connection cancels both of its streams.
    Client gone(srv.port());
    gone.submit("GET", "/event");
    gone.submit("GET", "/sleep");
    FIBER_CHECK(gone.pump([&] { return n.entered.load() == 4; }, slack(10s)));
    gone.close();
    FIBER_CHECK(wait_until([&] { return n.cancelled.load() == 4; }));
    FIBER_CHECK(n.finished.load() == 0);
  });
}

// A streamed response whose generator waits for its next event (server-
// sent events): the client's reset cancels that wait, as it cancels a
// handler's. Before, the generator's fiber (with its request and response)
// stayed until its next piece, which for an event stream can be never: a
// client that opens and resets such streams piled them up.
TEST_CASE("h2: a stream the client resets cancels its response generator's wait") {
  run_checked(2, [] {
    sp::Event never;
    std::atomic<int> waiting{0}, cancelled{0}, late{0};
    http::Router r;
    r.get("/events", [&](http::Request&) {
      auto calls = std::make_shared<int>(0);
      return http::Response::stream_body(200, [&, calls]() -> std::string {
        if ((*calls)++ == 0) return "event: first\n\n";
        waiting.fetch_add(1);
        try {
          never.wait();
        } catch (const sp::Cancelled&) {
          cancelled.fetch_add(1);
          throw;
        }
        late.fetch_add(1);
        return "";
      });
    });
    ok_route(r);
    H2Server srv(std::move(r));
    Client c(srv.port());
    for (int i = 1; i <= 3; ++i) {
      INFO(i);
      const std::int32_t id = c.submit("GET", "/events");
      // The first piece arrived, and the generator waits for the second.
      FIBER_CHECK(c.pump([&] { return c.stream(id).body.size() != 0 && waiting.load() == i; }, slack(10s)));
      c.reset(id, NGHTTP2_CANCEL);
      FIBER_CHECK(c.pump([&] { return cancelled.load() == i; }, slack(10s)));
    }
    // The connection outlives them, and their fibers are gone.
    const StreamResult ok = c.get("/ok", slack(10s));
    FIBER_CHECK(ok.complete());
    FIBER_CHECK(late.load() == 0);
  });
}

TEST_CASE("h2: ten streams of one connection run their handlers at once") {
  run_checked(2, [] {
    constexpr int kStreams = 10;
    std::atomic<int> inside{0};
    sp::Event all_in;
    http::Router r;
    // Each handler waits until all ten are inside: served one at a time
    // they would wait in vain (and answer 504).
    r.get("/meet/:i", [&](http::Request& q) {
      if (inside.fetch_add(1) + 1 == kStreams) all_in.set();
      const bool met = all_in.wait_for(slack(std::chrono::seconds(20)));
      return http::Response::text_body(met ? 200 : 504, std::string(q.param("i")));
    });
    H2Server srv(std::move(r));
    Client c(srv.port());
    std::vector<std::int32_t> ids;
    for (int i = 0; i < kStreams; ++i) ids.push_back(c.submit("GET", "/meet/" + std::to_string(i)));
    FIBER_CHECK(c.finish_all(slack(30s)));
    for (int i = 0; i < kStreams; ++i) {
      const StreamResult& s = c.stream(ids[static_cast<std::size_t>(i)]);
      FIBER_CHECK(s.complete());
      FIBER_CHECK(s.status == 200);
      FIBER_CHECK(s.body == std::to_string(i));
    }
    FIBER_CHECK(srv.server().connections_accepted() == 1);
  });
}

TEST_CASE("h2: request bodies past the stream window arrive whole, read whole or in pieces") {
  run_checked(2, [] {
    http::ServerOptions o;
    o.max_body = 2 << 20;
    o.http2.stream_window = 64 * 1024;
    http::Router r;
    r.post("/chunk", [](http::Request& q) {
      std::string all;
      for (std::string piece; !(piece = q.read_body_chunk(10'000)).empty();) all += piece;
      return http::Response::text_body(200, sum_of(all));
    }, http::Body::stream);
    r.post("/some", [](http::Request& q) {
      std::string all;
      char buf[777];
      for (std::size_t k; (k = q.read_body_some(std::as_writable_bytes(std::span(buf)))) != 0;) all.append(buf, k);
      return http::Response::text_body(200, sum_of(all));
    }, http::Body::stream);
    r.post("/whole", [](http::Request& q) { return http::Response::text_body(200, sum_of(q.body)); });
    H2Server srv(std::move(r), o);
    Client c(srv.port());
    // The three uploads share the connection (and its window) at once.
    std::vector<std::pair<std::int32_t, std::string>> sent;
    unsigned seed = 1;
    for (const char* path : {"/chunk", "/some", "/whole"}) {
      std::string body = pattern(1 << 20, seed++);
      const std::string want = sum_of(body);
      sent.emplace_back(c.submit("POST", path, {}, std::move(body)), want);
    }
    FIBER_CHECK(c.finish_all(slack(60s)));
    for (const auto& [id, want] : sent) {
      FIBER_CHECK(c.stream(id).complete());
      FIBER_CHECK(c.stream(id).status == 200);
      FIBER_CHECK(c.stream(id).body == want);
    }
  });
}

TEST_CASE("h2: a handler reading slowly stalls only its own stream") {
  run_checked(2, [] {
    http::ServerOptions o;
    o.http2.stream_window = 64 * 1024;
    std::atomic<int> slow_in{0};
    sp::Event go_slow;
    http::Router r;
    // /slow reads one piece, then nothing until the test has seen /fast
    // answered whole (a 512 KiB body over its own 64 KiB window, so /fast
    // needs window updates while /slow's window stays shut).
    r.post("/slow", [&](http::Request& q) {
      std::string all = q.read_body_chunk(1000);
      slow_in.fetch_add(1);
      const bool ok = go_slow.wait_for(slack(std::chrono::seconds(20)));
      for (std::string piece; !(piece = q.read_body_chunk()).empty();) all += piece;
      return http::Response::text_body(ok ? 200 : 504, sum_of(all));
    }, http::Body::stream);
    r.post("/fast", [&](http::Request& q) {
      std::string all;
      for (std::string piece; !(piece = q.read_body_chunk()).empty();) all += piece;
      return http::Response::text_body(200, sum_of(all));
    }, http::Body::stream);
    H2Server srv(std::move(r), o);
    Client c(srv.port());
    std::string slow_body = pattern(1 << 20, 7), fast_body = pattern(512 << 10, 8);
    const std::string slow_want = sum_of(slow_body), fast_want = sum_of(fast_body);
    const std::int32_t slow = c.submit("POST", "/slow", {}, std::move(slow_body));
    FIBER_CHECK(c.pump([&] { return slow_in.load() == 1; }, slack(10s)));
    const std::int32_t fast = c.submit("POST", "/fast", {}, std::move(fast_body));
    FIBER_CHECK(c.finish(fast, slack(30s)));
    FIBER_CHECK(c.stream(fast).complete());
    FIBER_CHECK(c.stream(fast).body == fast_want);
    // Window updates follow the handler's reads: of /slow's megabyte the
    // server let in its window and what the handler read, no more (a
    // server that opened the window on receipt would have taken it all).
    const std::size_t early = c.uploaded(slow);
    if (early > 128 * 1024) fiber_failures().add("/slow sent " + std::to_string(early) + " bytes before its reader went on");
    FIBER_CHECK(!c.stream(slow).closed);
    go_slow.set();
    FIBER_CHECK(c.finish(slow, slack(30s)));
    FIBER_CHECK(c.stream(slow).complete());
    FIBER_CHECK(c.stream(slow).status == 200);
    FIBER_CHECK(c.stream(slow).body == slow_want);
  });
}

TEST_CASE("h2: a body over max_body on a Body::whole route gets 413; the connection goes on") {
  run_checked(2, [] {
    http::ServerOptions o;
    o.max_body = 64 * 1024;
    std::atomic<int> whole_calls{0};
    http::Router r;
    r.post("/whole", [&](http::Request& q) {
      whole_calls.fetch_add(1);
      return http::Response::text_body(200, sum_of(q.body));
    });
    r.post("/stream", [](http::Request& q) {
      std::string all;
      for (std::string piece; !(piece = q.read_body_chunk()).empty();) all += piece;
      return http::Response::text_body(200, sum_of(all));
    }, http::Body::stream);
    ok_route(r);
    H2Server srv(std::move(r), o);
    Client c(srv.port());
    const StreamResult big = c.request("POST", "/whole", slack(20s), pattern(200 << 10));
    FIBER_CHECK(big.closed);
    FIBER_CHECK(big.status == 413);
    FIBER_CHECK(whole_calls.load() == 0);
    // Under the limit: served. Streamed: max_body does not apply.
    const std::string small = pattern(60 << 10, 3);
    FIBER_CHECK(c.request("POST", "/whole", slack(20s), small).body == sum_of(small));
    const std::string streamed = pattern(200 << 10, 4);
    FIBER_CHECK(c.request("POST", "/stream", slack(20s), streamed).body == sum_of(streamed));
    FIBER_CHECK(c.get("/ok", slack(10s)).body == "ok");
    FIBER_CHECK(srv.server().connections_accepted() == 1);
  });
}

TEST_CASE("h2: response bodies whole, generated and from a file") {
  run_checked(2, [] {
    const std::string mb = pattern(1 << 20, 11);
    const std::string file_data = pattern(300'001, 12);
    const std::filesystem::path file =
        std::filesystem::temp_directory_path() / ("spindle-h2-" + std::to_string(::getpid()) + ".bin");
    std::ofstream(file, std::ios::binary) << file_data;
    std::atomic<int> generated{0};
    http::Router r;
    r.get("/whole", [&](http::Request&) { return http::Response::text_body(200, mb); });
    r.get("/gen", [&](http::Request&) {
      auto at = std::make_shared<std::size_t>(0);
      return http::Response::stream_body(200, [&, at] {
        generated.fetch_add(1);
        const std::string piece = mb.substr(*at, 10'000);  // "" at the end
        *at += piece.size();
        return piece;
      });
    });
    r.get("/file", [&](http::Request&) { return http::Response::file_body(200, file); });
    H2Server srv(std::move(r));
    Client c(srv.port());
    const std::int32_t whole = c.submit("GET", "/whole"), gen = c.submit("GET", "/gen"),
                       f = c.submit("GET", "/file");
    FIBER_CHECK(c.finish_all(slack(60s)));
    FIBER_CHECK(c.stream(whole).complete());
    FIBER_CHECK(c.stream(whole).body == mb);
    FIBER_CHECK(c.stream(whole).field("content-length") == std::to_string(mb.size()));
    FIBER_CHECK(c.stream(gen).complete());
    FIBER_CHECK(c.stream(gen).body == mb);
    FIBER_CHECK(generated.load() >= 100);  // it came in pieces
    FIBER_CHECK(c.stream(f).complete());
    FIBER_CHECK(c.stream(f).body == file_data);
    FIBER_CHECK(c.stream(f).field("content-length") == std::to_string(file_data.size()));
    // HEAD of a generated body: no DATA, the generator is never called.
    const int before = generated.load();
    const StreamResult h = c.request("HEAD", "/gen", slack(10s));
    FIBER_CHECK(h.complete());
    FIBER_CHECK(h.status == 200);
    FIBER_CHECK(h.data_frames == 0);
    FIBER_CHECK(generated.load() == before);
    std::filesystem::remove(file);
  });
}

TEST_CASE("h2: a handler that throws gets 500 and on_error; the connection serves its other streams") {
  run_checked(2, [] {
    std::mutex mu;
    std::vector<std::string> errors;
    http::ServerOptions o;
    o.on_error = [&](const http::Request& q, std::exception_ptr e) {
      std::string what = "?";
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& x) {
        what = x.what();
      } catch (...) {
      }
      std::lock_guard lk(mu);
      errors.push_back(q.target + " " + what);
    };
    std::atomic<int> waiting{0};
    sp::Event go;
    http::Router r;
    r.get("/boom", [](http::Request&) -> http::Response { throw std::runtime_error("boom"); });
    r.get("/wait", [&](http::Request&) {
      waiting.fetch_add(1);
      return http::Response::text_body(go.wait_for(slack(std::chrono::seconds(20))) ? 200 : 504, "waited");
    });
    ok_route(r);
    H2Server srv(std::move(r), o);
    Client c(srv.port());
    const std::int32_t wait = c.submit("GET", "/wait");
    FIBER_CHECK(c.pump([&] { return waiting.load() == 1; }, slack(10s)));
    const std::int32_t boom = c.submit("GET", "/boom");
    FIBER_CHECK(c.finish(boom, slack(10s)));
    FIBER_CHECK(c.stream(boom).status == 500);
    FIBER_CHECK(wait_until([&] {
      std::lock_guard lk(mu);
      return errors.size() == 1;
    }));
    {
      std::lock_guard lk(mu);
      FIBER_CHECK(errors == std::vector<std::string>{"/boom boom"});
    }
    FIBER_CHECK(!c.stream(wait).closed);
    go.set();
    FIBER_CHECK(c.finish(wait, slack(10s)));
    FIBER_CHECK(c.stream(wait).complete());
    FIBER_CHECK(c.stream(wait).body == "waited");
    FIBER_CHECK(c.get("/ok", slack(10s)).complete());
    FIBER_CHECK(!c.goaway());
  });
}

// As over HTTP/1.1, the body read whole is there for on_error and for a
// generator that reads it (it was freed as the handler returned: both saw
// it empty), and it is given back once neither can look.
TEST_CASE("h2: on_error and a response generator see the request body read whole") {
  run_checked(2, [] {
    std::mutex mu;
    std::vector<std::string> errors;
    http::ServerOptions o;
    o.on_error = [&](const http::Request& q, std::exception_ptr) {
      std::lock_guard lk(mu);
      errors.push_back(q.target + " " + q.body);
    };
    http::Router r;
    r.post("/boom", [](http::Request&) -> http::Response { throw std::runtime_error("boom"); });
    r.post("/bad-status", [](http::Request&) { return http::Response::text_body(99, "no"); });
    r.post("/echo", [](http::Request& q) {
      http::Response res;
      res.status = 200;
      auto sent = std::make_shared<bool>(false);
      res.body_stream = [&q, sent]() -> std::string {
        if (std::exchange(*sent, true)) return "";
        return "echo:" + q.body;
      };
      return res;
    });
    ok_route(r);
    H2Server srv(std::move(r), o);
    Client c(srv.port());
    FIBER_CHECK(c.request("POST", "/boom", slack(10s), std::string("payload-1")).status == 500);
    FIBER_CHECK(c.request("POST", "/bad-status", slack(10s), std::string("payload-2")).status == 500);
    const auto echo = c.request("POST", "/echo", slack(10s), std::string("payload-3"));
    FIBER_CHECK(echo.complete());
    FIBER_CHECK(echo.body == "echo:payload-3");
    FIBER_CHECK(wait_until([&] {
      std::lock_guard lk(mu);
      return errors.size() == 2;
    }));
    std::lock_guard lk(mu);
    FIBER_CHECK(errors == std::vector<std::string>{"/boom payload-1", "/bad-status payload-2"});
  });
}

TEST_CASE("h2: shutdown sends GOAWAY NO_ERROR and lets the stream in flight finish") {
  run_checked(2, [] {
    http::ServerOptions o;
    o.drain_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(slack(std::chrono::seconds(30)));
    std::atomic<int> inside{0};
    sp::Event go;
    const std::string body = pattern(100'000, 5);
    http::Router r;
    r.get("/wait", [&](http::Request&) {
      inside.fetch_add(1);
      return http::Response::text_body(go.wait_for(slack(std::chrono::seconds(20))) ? 200 : 504, body);
    });
    H2Server srv(std::move(r), o);
    Client c(srv.port());
    const std::int32_t id = c.submit("GET", "/wait");
    FIBER_CHECK(c.pump([&] { return inside.load() == 1; }, slack(10s)));
    srv.server().shutdown();
    FIBER_CHECK(c.pump([&] { return c.goaway(); }, slack(10s)));
    FIBER_CHECK(c.goaway_code() == NGHTTP2_NO_ERROR);
    FIBER_CHECK(!c.stream(id).closed);
    FIBER_CHECK(!srv.serve_returned());  // the stream holds it
    go.set();
    const bool finished = c.finish(id, slack(10s));
    FIBER_CHECK(finished);
    if (!finished) {
      // Twice in TSan runs (2026-12-01) the connection ended with the
      // status in and the body cut short: a reset at the close (eof 1,
      // failed 0), now held off by the linger (h2_server.cpp). Should it
      // come back, say how it ended.
      fiber_failures().add("h2 shutdown: stream open at the end: eof " + std::to_string(c.eof()) + ", failed " +
                           std::to_string(c.failed()) + ", goaways " + std::to_string(c.goaways()) + " (last code " +
                           std::to_string(c.goaway_code()) + ", last stream " + std::to_string(c.goaway_last_stream()) +
                           "), body bytes " + std::to_string(c.stream(id).body.size()) + ", server returned " +
                           std::to_string(srv.serve_returned()));
    }
    FIBER_CHECK(c.stream(id).complete());
    FIBER_CHECK(c.stream(id).status == 200);
    FIBER_CHECK(c.stream(id).body == body);
    // The last GOAWAY keeps the stream it let finish.
    FIBER_CHECK(c.goaway_last_stream() >= id);
    FIBER_CHECK(c.goaway_code() == NGHTTP2_NO_ERROR);
    // Then the server ends the connection and serve() returns.
    FIBER_CHECK(c.pump([&] { return c.eof(); }, slack(10s)));
    FIBER_CHECK(wait_until([&] { return srv.serve_returned(); }));
  });
}

// A graceful end lingers while the response is still on its way. Closed
// at once after its last write, the socket got the client's later frames
// (a PING per 256 KiB read, as a SETTINGS ACK or a WINDOW_UPDATE could
// come) after its close, and the kernel's reset dropped what it still
// held of the body: the client read it cut short and then a reset. 8 MiB
// is more than loopback's buffers hold, so the end comes with much unsent.
TEST_CASE("h2: a graceful end waits for the last response to reach the client; its frames meanwhile cost nothing") {
  run_checked(2, [] {
    constexpr std::size_t kBody = 8u << 20;
    const std::string body = pattern(kBody, 11);
    std::atomic<http::Server*> me{nullptr};
    http::Router r;
    r.get("/big", [&](http::Request&) {
      me.load()->shutdown();  // GOAWAY now: this stream is the connection's last
      return http::Response::text_body(200, body);
    });
    H2Server srv(std::move(r));
    me.store(&srv.server());
    RawConn c(srv.port());
    // Windows that admit the whole body at once: the server writes as fast
    // as the socket takes it.
    FIBER_CHECK(c.send(std::string(kPreface) + settings({{0x4, 0x7fffffff}}) + window_update(0, 0x7fffffff - 65535) +
                       headers(1, plain_block("GET", "/big"), true)));
    int status = 0;
    bool ended = false;
    std::string got;
    got.reserve(kBody);
    std::size_t next_ping = 256 * 1024;
    while (!ended) {
      std::optional<Frame> f = c.next(slack(10s));
      if (!f) break;
      if (f->type == HEADERS && f->stream == 1 && !f->field(":status").empty()) status = std::stoi(f->field(":status"));
      if (f->type == DATA && f->stream == 1) {
        got += f->payload;
        ended = (f->flags & END_STREAM) != 0;
        if (got.size() >= next_ping) {
          (void)c.send(ping(got.size()));  // false once reset: the check below says so
          next_ping += 256 * 1024;
        }
      }
    }
    FIBER_CHECK(status == 200);
    FIBER_CHECK(ended);
    FIBER_CHECK(got.size() == kBody);
    FIBER_CHECK(got == body);
    FIBER_CHECK(c.drain_to_eof(slack(10s)));
    FIBER_CHECK(wait_until([&] { return srv.serve_returned(); }));
  });
}

TEST_CASE("h2: idle_timeout ends a connection with no open stream (GOAWAY, then close)") {
  run_checked(2, [] {
    http::ServerOptions o;
    // Sanitized builds are slower: the response must reach the client
    // well within one idle_timeout for the no-GOAWAY-yet check.
    o.idle_timeout = std::chrono::milliseconds(kSanitized ? 1000 : 300);
    http::Router r;
    // A stream open longer than idle_timeout keeps its connection.
    r.get("/slow", [&](http::Request&) {
      sp::sleep_for(3 * o.idle_timeout);
      return http::Response::text_body(200, "slow");
    });
    H2Server srv(std::move(r), o);
    Client c(srv.port());
    const StreamResult s = c.get("/slow", slack(10s));
    FIBER_CHECK(s.complete());
    FIBER_CHECK(s.body == "slow");
    FIBER_CHECK(!c.goaway());
    FIBER_CHECK(c.pump([&] { return c.eof(); }, slack(10s)));
    FIBER_CHECK(c.goaway());
    FIBER_CHECK(wait_until([&] { return srv.server().connections_open() == 0; }));
  });
}

namespace {

// tool: runs a peer program, its output or the reason it could not run
// (a missing binary fails the test: scripts/install-deps.sh installs it).
io::Process::Output tool(const std::vector<std::string>& argv) {
  io::RunOptions ro;
  ro.timeout = slack(std::chrono::seconds(60));
  try {
    return io::run_command(argv, ro);
  } catch (const std::system_error& e) {
    io::Process::Output o;
    o.status.code = 127;
    o.err = argv[0] + " did not run: " + e.what() + " (apt-get install curl nghttp2-client)";
    return o;
  }
}

}  // namespace

TEST_CASE("h2: curl, nghttp and h2load against the server") {
  run_checked(2, [] {
    Seen seen;
    std::atomic<int> calls{0};
    http::Router r;
    r.get("/x", [&](http::Request& q) {
      calls.fetch_add(1);
      return http::Response::text_body(200, "h" + std::to_string(q.version) + " " + q.target);
    });
    r.get("/info", info(seen));
    H2Server srv(std::move(r));
    const std::string base = "http://127.0.0.1:" + std::to_string(srv.port());
    auto curl = tool({"curl", "-s", "--http2-prior-knowledge", "-w", "|%{http_version}", base + "/x"});
    INFO(curl.err);
    FIBER_CHECK(curl.status.success());
    FIBER_CHECK(curl.out == "h20 /x|2");
    // nghttp also sends RFC 7540 PRIORITY frames for idle streams first.
    auto ng = tool({"nghttp", "-nv", base + "/info"});
    FIBER_CHECK(ng.status.success());
    FIBER_CHECK(ng.out.find(":status: 200") != std::string::npos);
    FIBER_CHECK(ng.out.find("x-custom-thing: Value") != std::string::npos);
    FIBER_CHECK(ng.out.find("recv DATA frame") != std::string::npos);
    FIBER_CHECK(ng.out.find("GOAWAY") != std::string::npos);  // nghttp's own, as it leaves
    FIBER_CHECK(seen.all().size() == 1);
    auto load = tool({"h2load", "-n", "1000", "-c", "4", "-m", "10", base + "/x"});
    INFO(load.out);
    FIBER_CHECK(load.status.success());
    FIBER_CHECK(load.out.find("requests: 1000 total, 1000 started, 1000 done, 1000 succeeded") != std::string::npos);
    FIBER_CHECK(load.out.find("status codes: 1000 2xx") != std::string::npos);
    FIBER_CHECK(calls.load() == 1001);
  });
}

TEST_CASE("h2: trailers go after the body in their own HEADERS frame (nghttp), without the fields HTTP/2 forbids") {
  run_checked(2, [] {
    http::Router r;
    r.get("/t", [](http::Request&) {
      auto res = http::Response::text_body(200, "body");
      res.trailers.add("grpc-status", "0");
      res.trailers.add("X-Checksum", "abc");
      res.trailers.add("Connection", "close");     // forbidden in HTTP/2: left out
      res.trailers.add("x-split", "a\r\nb: c");  // would split a line: left out
      return res;
    });
    r.get("/none", [](http::Request&) {
      http::Response res;
      res.status = 200;
      res.trailers.add("grpc-status", "5");
      return res;
    });
    H2Server srv(std::move(r));
    const std::string base = "http://127.0.0.1:" + std::to_string(srv.port());
    auto ng = tool({"nghttp", "-nv", base + "/t"});
    INFO(ng.out);
    FIBER_CHECK(ng.status.success());
    const auto data = ng.out.find("recv DATA frame");
    const auto trailer = ng.out.find("grpc-status: 0");
    FIBER_CHECK(data != std::string::npos);
    FIBER_CHECK(trailer != std::string::npos);
    FIBER_CHECK(trailer > data);
    const auto checksum = ng.out.find("x-checksum: abc");
    FIBER_CHECK(checksum != std::string::npos);
    FIBER_CHECK(checksum > data);
    FIBER_CHECK(ng.out.find("connection: close") == std::string::npos);
    FIBER_CHECK(ng.out.find("x-split") == std::string::npos);
    // The DATA frame does not end the stream; the trailers' frame does.
    const auto data_line_end = ng.out.find('\n', ng.out.find('\n', data) + 1);
    FIBER_CHECK(ng.out.substr(data, data_line_end - data).find("END_STREAM") == std::string::npos);
    // No body: the trailers still come after the head, in a frame of their own.
    auto none = tool({"nghttp", "-nv", base + "/none"});
    INFO(none.out);
    FIBER_CHECK(none.status.success());
    const auto status = none.out.find(":status: 200");
    FIBER_CHECK(status != std::string::npos);
    const auto five = none.out.find("grpc-status: 5");
    FIBER_CHECK(five != std::string::npos);
    FIBER_CHECK(five > status);
  });
}

TEST_CASE("h2: Upgrade: h2c (curl --http2 on http://) is answered 101 and goes on in HTTP/2; a request with a body stays HTTP/1.1") {
  run_checked(2, [] {
    std::atomic<int> calls{0};
    http::Router r;
    r.get("/x", [&](http::Request& q) {
      calls.fetch_add(1);
      return http::Response::text_body(200, "h" + std::to_string(q.version) + " " + q.target + " " +
                                                std::string(q.headers.get("upgrade").value_or("-")));
    });
    r.post("/p", [&](http::Request& q) { return http::Response::text_body(200, "h" + std::to_string(q.version) + " " + q.body); });
    H2Server srv(std::move(r));
    const std::string base = "http://127.0.0.1:" + std::to_string(srv.port());
    // Two URLs: the first is the upgraded request (stream 1), the second a
    // stream of the same HTTP/2 connection.
    auto curl = tool({"curl", "-s", "--http2", "-w", "|%{http_version}\n", base + "/x", base + "/x?2"});
    INFO(curl.err);
    FIBER_CHECK(curl.status.success());
    FIBER_CHECK(curl.out == "h20 /x -|2\nh20 /x?2 -|2\n");
    FIBER_CHECK(srv.server().connections_accepted() == 1);
    FIBER_CHECK(calls.load() == 2);
    // With a body: served as HTTP/1.1 (no 101), as RFC 7540 3.2 allows.
    auto post = tool({"curl", "-s", "--http2", "-d", "abc", "-w", "|%{http_version}", base + "/p"});
    FIBER_CHECK(post.out == "h11 abc|1.1");
    // A malformed HTTP2-Settings: no upgrade either.
    io::TcpStream raw = http_test::raw_connect(srv.port());
    raw.write_all("GET /x HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                  "HTTP2-Settings: not*base64\r\n\r\n");
    std::string buf;
    const std::string resp = http_test::read_response(raw, buf);
    FIBER_CHECK(resp.rfind("HTTP/1.1 200", 0) == 0);
    FIBER_CHECK(http_test::body_of(resp) == "h11 /x h2c");
    // HTTP/1.0: Upgrade is ignored (RFC 9110 7.8).
    io::TcpStream old = http_test::raw_connect(srv.port());
    old.write_all("GET /x HTTP/1.0\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                  "HTTP2-Settings: AAMAAABk\r\n\r\n");
    std::string buf10;
    const std::string resp10 = http_test::read_response(old, buf10);
    FIBER_CHECK(resp10.find(" 200 ") != std::string::npos);
    FIBER_CHECK(http_test::body_of(resp10) == "h10 /x h2c");
  });
}

// Http2Options::h2c_upgrade off (behind a proxy that passes Upgrade on,
// "h2c smuggling"): curl's Upgrade: h2c is served as HTTP/1.1; prior
// knowledge still speaks HTTP/2.
TEST_CASE("h2: with h2c_upgrade off, Upgrade: h2c is served as HTTP/1.1; prior knowledge still works") {
  run_checked(2, [] {
    http::Router r;
    r.get("/x", [&](http::Request& q) {
      return http::Response::text_body(200, "h" + std::to_string(q.version) + " " +
                                                std::string(q.headers.get("upgrade").value_or("-")));
    });
    http::ServerOptions o;
    o.http2.h2c_upgrade = false;
    H2Server srv(std::move(r), o);
    const std::string url = "http://127.0.0.1:" + std::to_string(srv.port()) + "/x";
    auto up = tool({"curl", "-s", "--http2", "-w", "|%{http_version}", url});
    INFO(up.err);
    FIBER_CHECK(up.out == "h11 h2c|1.1");
    auto prior = tool({"curl", "-s", "--http2-prior-knowledge", "-w", "|%{http_version}", url});
    FIBER_CHECK(prior.out == "h20 -|2");
  });
}

#if defined(H2_TEST_TLS)
TEST_CASE("h2 over https: ALPN picks h2 when offered, http/1.1 otherwise") {
  const auto certs = tls_test::TestCerts::make();
  run_checked(2, [&] {
    Seen seen;
    http::Router r;
    r.get("/info", info(seen));
    http::ServerOptions o;
    o.tls = {certs->cert_file, certs->key_file};
    H2Server srv(std::move(r), o);
    auto ctx = [&](std::vector<std::string> alpn) {
      io::TlsClientOptions t;
      t.ca_file = certs->ca_file;
      t.alpn = std::move(alpn);
      return io::TlsContext::client(t);
    };
    // Offering h2 first: HTTP/2 over the TLS stream.
    io::TlsStream tls = io::TlsStream::connect("127.0.0.1", srv.port(), ctx({"h2", "http/1.1"}));
    FIBER_CHECK(tls.alpn() == "h2");
    ClientOptions co;
    co.scheme = "https";
    Client c(std::make_unique<WireOf<io::TlsStream>>(std::move(tls)), co);
    const StreamResult a = c.get("/info", slack(10s));
    FIBER_CHECK(a.complete());
    FIBER_CHECK(a.body == "h20 GET /info");
    // Offering http/1.1 only, or no ALPN at all: HTTP/1.1.
    for (const auto& alpn : {std::vector<std::string>{"http/1.1"}, std::vector<std::string>{}}) {
      io::TlsStream one = io::TlsStream::connect("127.0.0.1", srv.port(), ctx(alpn));
      FIBER_CHECK(one.alpn() == (alpn.empty() ? "" : "http/1.1"));
      one.write_all("GET /info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
      std::string got;
      try {
        one.read_to_end(got);
      } catch (const std::system_error&) {
      }
      FIBER_CHECK(got.starts_with("HTTP/1.1 200 "));
      FIBER_CHECK(got.ends_with("h11 GET /info"));
    }
    auto curl = tool({"curl", "-sk", "--http2", "-w", "|%{http_version}",
                      "https://127.0.0.1:" + std::to_string(srv.port()) + "/info"});
    INFO(curl.err);
    FIBER_CHECK(curl.status.success());
    FIBER_CHECK(curl.out == "h20 GET /info|2");
    FIBER_CHECK(seen.all().size() == 4);
  });
}
#endif
