// client_test.cpp: http::Client against http::Server and against canned
// raw-socket peers: round trips and JSON, keep-alive reuse and pool limits
// counted at the server, each kind of timeout, redirects and loops,
// chunked and truncated bodies, typed errors, cancellation that must not
// leave a half-read connection in the pool, stale pooled connections, and
// 1,000 concurrent client fibers on 2 workers.
#include <algorithm>
#include <atomic>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <spindle/sync/all.hpp>

#include "http_test_support.hpp"
#include "keepalive_support.hpp"

using namespace spindle_test;
using namespace http_test;

namespace {

// CannedPeer: a RawPeer whose script answers each request head with fixed
// bytes; it closes after the first, or keeps answering until the peer goes
// away.
class CannedPeer : public RawPeer {
 public:
  CannedPeer(std::string reply, bool close_after)
      : RawPeer([reply = std::move(reply), close_after](io::TcpStream& s) {
          std::string buf;
          for (;;) {  // one reply per request head (bodies are not sent here)
            read_head(s, buf);
            s.write_all(reply);
            if (close_after) return;
          }
        }) {}
};

http::Response echo(http::Request& q) {
  http::Response r = http::Response::text_body(200, q.method + " " + q.target + " " + q.body);
  if (auto v = q.headers.get("X-Test")) r.headers.set("X-Echo", *v);
  return r;
}

}  // namespace

TEST_CASE("client: round trips, headers, text, bytes and json") {
  run_checked(2, [] {
    http::Router r;
    r.get("/hello", echo);
    r.post("/echo", echo);
    r.post("/sum", [](http::Request& q) {
      auto j = q.json();
      return http::Response::json_body(200, {{"sum", j["a"].get<int>() + j["b"].get<int>()}});
    });
    LiveServer srv(r);
    http::Client c;
    http::RequestOptions ro;
    ro.headers.set("X-Test", "yes");
    auto a = c.get(srv.url("/hello?x=1"), ro);
    FIBER_CHECK(a.status == 200);
    FIBER_CHECK(a.reason == "OK");
    FIBER_CHECK(a.text() == "GET /hello?x=1 ");
    FIBER_CHECK(a.headers.get("x-echo") == std::optional<std::string_view>("yes"));
    FIBER_CHECK(a.bytes().size() == a.body.size());
    FIBER_CHECK(a.url == srv.url("/hello?x=1"));
    auto b = c.post(srv.url("/echo"), std::string(100'000, 'z'));
    FIBER_CHECK(b.text() == "POST /echo " + std::string(100'000, 'z'));
    auto s = c.post_json(srv.url("/sum"), {{"a", 2}, {"b", 40}});
    FIBER_CHECK(s.json()["sum"] == 42);
    FIBER_CHECK(s.headers.get("Content-Type") == std::optional<std::string_view>("application/json"));
    FIBER_CHECK(c.get(srv.url("/missing")).status == 404);  // a status, not an error
    FIBER_CHECK(c.request("HEAD", srv.url("/hello")).body.empty());
  });
}

TEST_CASE("client: keep-alive reuses one connection, counted at the server") {
  run_checked(2, [] {
    LiveServer srv(echo);
    http::Client c;
    for (int i = 0; i < 20; ++i) FIBER_CHECK(c.get(srv.url("/k" + std::to_string(i))).text() == "GET /k" + std::to_string(i) + " ");
    FIBER_CHECK(srv.server().connections_accepted() == 1);
    FIBER_CHECK(srv.server().requests_served() == 20);
    const auto st = c.stats();
    FIBER_CHECK(st.connections_opened == 1);
    FIBER_CHECK(st.connections_reused == 19);
    FIBER_CHECK(st.idle == 1);
  });
}

// TCP keep-alive probes on the Client's connections (ClientOptions::
// tcp_keepalive): Go's net.Dialer's by default, none when asked. Read at
// the server's end: this process's other end of the accepted socket.
TEST_CASE("client: connections carry TCP keep-alive probes by default, none when turned off") {
  run_checked(2, [] {
    for (const bool on : {true, false}) {
      auto lst = io::TcpListener::bind("127.0.0.1", 0);
      Probes seen{-1, -1, -1, -1};
      auto server = sp::spawn([&] {
        auto a = lst.accept();
        std::string req;
        a.read_until(req, "\r\n\r\n", 1 << 16);
        seen = probes_of(peer_fd(a));
        a.write_all("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
      });
      http::ClientOptions o;
      if (!on) o.tcp_keepalive = std::nullopt;
      http::Client c(o);
      FIBER_CHECK(c.get("http://127.0.0.1:" + std::to_string(lst.local_endpoint().port()) + "/").text() == "ok");
      server.join();
      if (on) FIBER_CHECK((seen == Probes{1, 15, 15, 9}));
      else FIBER_CHECK(seen.on == 0);
    }
    // Out of Linux's ranges: refused when the Client is made, not at its
    // first connect.
    bool refused = false;
    try {
      http::ClientOptions bad;
      bad.tcp_keepalive = io::TcpKeepAlive{.count = 0};
      http::Client c(bad);
    } catch (const std::invalid_argument&) {
      refused = true;
    }
    FIBER_CHECK(refused);
  });
}

TEST_CASE("client: limit_per_host and limit bound the open connections, counted at the servers") {
  run_checked(2, [] {
    // Each handler records, while it runs: how many connections server a
    // holds open, how many requests both servers are inside handlers for
    // (each needs a connection of its own), and the client's open count.
    std::atomic<std::uint64_t> max_a{0}, max_in_handlers{0}, max_client_open{0};
    std::atomic<std::uint64_t> in_handlers{0};
    LiveServer* pa = nullptr;
    http::Client* client = nullptr;
    auto note = [&](std::atomic<std::uint64_t>& m, std::uint64_t v) {
      std::uint64_t cur = m.load();
      while (v > cur && !m.compare_exchange_weak(cur, v)) {
      }
    };
    auto h = [&](http::Request& q) {
      note(max_in_handlers, in_handlers.fetch_add(1) + 1);
      sp::sleep_for(1ms);  // overlap the requests
      note(max_a, pa->server().connections_open());
      note(max_client_open, client->stats().open);
      in_handlers.fetch_sub(1);
      return echo(q);
    };
    LiveServer a(h), b(h);
    pa = &a;
    {
      http::Client c({.limit = 0, .limit_per_host = 3});
      client = &c;
      sp::TaskGroup g;
      for (int i = 0; i < 60; ++i) g.spawn([&] { FIBER_CHECK(c.get(a.url()).status == 200); });
      g.wait();
      // One host, so no connection is closed to make room: the server's
      // open count is exact.
      FIBER_CHECK(max_a.load() <= 3);
      FIBER_CHECK(max_a.load() >= 1);
      FIBER_CHECK(a.server().connections_accepted() <= 3);
      FIBER_CHECK(c.stats().open <= 3);
    }
    max_in_handlers = 0;
    max_client_open = 0;
    {
      // Two hosts, two connections in total: the client closes an idle
      // connection of one host to open one to the other, and a server sees
      // that close a little later, so its open count can lag; requests
      // inside handlers at once cannot.
      http::Client c({.limit = 2, .limit_per_host = 0});
      client = &c;
      sp::TaskGroup g;
      for (int i = 0; i < 60; ++i) g.spawn([&, i] { FIBER_CHECK(c.get((i % 2 ? a : b).url()).status == 200); });
      g.wait();
      FIBER_CHECK(max_in_handlers.load() <= 2);
      FIBER_CHECK(max_in_handlers.load() >= 1);
      FIBER_CHECK(max_client_open.load() <= 2);
      FIBER_CHECK(c.stats().open <= 2);
    }
  });
}

TEST_CASE("client: read, total and connect timeouts are errc::timeout") {
  run_checked(2, [] {
    sp::Event never;
    http::Router r;
    r.get("/slow", [&](http::Request& q) {
      never.wait_for(slack(10s));
      return echo(q);
    });
    r.get("/hop/:n", [](http::Request& q) {
      sp::sleep_for(20ms);
      http::Response res;
      res.status = 302;
      res.headers.set("Location", "/hop/" + std::to_string(std::stoi(std::string(q.param("n"))) + 1));
      return res;
    });
    LiveServer srv(r);
    // Each text names the operation, the URL and the limit, and says
    // "timed out" once (http::Error's what() adds it).
    auto once = [](const std::string& what, std::string_view part) {
      const auto at = what.find(part);
      return at != std::string::npos && what.find(part, at + 1) == std::string::npos;
    };
    std::string what;
    {
      http::Client c({.read_timeout = 50ms});
      FIBER_CHECK(error_of([&] { c.get(srv.url("/slow")); }, &what) == http::errc::timeout);
      FIBER_CHECK(what.starts_with("read from " + srv.url("/slow") + ": "));
      FIBER_CHECK(what.find("50 ms (read_timeout)") != std::string::npos);
      FIBER_CHECK(once(what, "timed out"));
      FIBER_CHECK(c.stats().open == 0);  // the half-used connection was closed
    }
    {
      // Each hop answers in time; the whole chain does not.
      http::Client c({.read_timeout = 1s, .total_timeout = 100ms, .max_redirects = 1000});
      FIBER_CHECK(error_of([&] { c.get(srv.url("/hop/0")); }, &what) == http::errc::timeout);
      FIBER_CHECK(what.starts_with("GET " + srv.url("/hop/")));
      FIBER_CHECK(what.find("100 ms (total_timeout)") != std::string::npos);
      FIBER_CHECK(once(what, "timed out"));
    }
    {
      // A caller's own with_timeout stays TimedOut from the caller's scope.
      http::Client c;
      bool timed_out = false;
      try {
        sp::with_timeout(50ms, [&] { c.get(srv.url("/slow")); });
      } catch (const sp::TimedOut&) {
        timed_out = true;
      }
      FIBER_CHECK(timed_out);
      FIBER_CHECK(c.stats().open == 0);
    }
    {
      // connect: a listener whose accept queue is full never completes a
      // handshake (Linux drops the SYN), so connects hang.
      auto full = io::TcpListener::bind("127.0.0.1", 0, {.backlog = 1});
      const auto ep = full.local_endpoint();
      std::vector<io::TcpStream> fill;
      for (int i = 0; i < 16; ++i) {
        try {
          fill.push_back(sp::with_timeout(200ms, [&] { return io::TcpStream::connect(ep); }));
        } catch (const sp::TimedOut&) {
          break;  // the queue is full
        }
      }
      http::Client c({.connect_timeout = 100ms});
      const std::string u = "http://127.0.0.1:" + std::to_string(ep.port()) + "/";
      FIBER_CHECK(error_of([&] { c.get(u); }, &what) == http::errc::timeout);
      FIBER_CHECK(what == "connect to " + u + ": no connection within 100 ms (connect_timeout): timed out");
    }
    never.set();
  });
}

TEST_CASE("client: redirects are followed, bounded, and loops fail") {
  run_checked(2, [] {
    http::Router r;
    auto redirect = [](int status, std::string to) {
      return [status, to](http::Request&) {
        http::Response res;
        res.status = status;
        res.headers.set("Location", to);
        return res;
      };
    };
    r.get("/a", redirect(301, "/b"));
    r.get("/b", redirect(302, "c"));  // relative to /
    r.get("/c", echo);
    r.post("/see", redirect(303, "/c"));
    r.post("/keep", redirect(307, "/echo"));
    r.post("/echo", echo);
    r.get("/loop", redirect(302, "/loop"));
    LiveServer srv(r);
    http::Client c;
    auto res = c.get(srv.url("/a"));
    FIBER_CHECK(res.status == 200);
    FIBER_CHECK(res.text() == "GET /c ");
    FIBER_CHECK(res.url == srv.url("/c"));
    FIBER_CHECK(c.post(srv.url("/see"), "body").text() == "GET /c ");
    FIBER_CHECK(c.post(srv.url("/keep"), "body").text() == "POST /echo body");
    FIBER_CHECK(error_of([&] { c.get(srv.url("/loop")); }) == http::errc::too_many_redirects);
    http::RequestOptions no;
    no.follow_redirects = false;
    FIBER_CHECK(c.get(srv.url("/a"), no).status == 301);
    http::Client strict({.max_redirects = 1});
    FIBER_CHECK(error_of([&] { strict.get(srv.url("/a")); }) == http::errc::too_many_redirects);
  });
}

TEST_CASE("client: params go into the query; redirects resolve dot segments (RFC 3986)") {
  run_checked(2, [] {
    http::Router r;
    auto redirect = [](std::string to) {
      return [to](http::Request&) {
        http::Response res;
        res.status = 302;
        res.headers.set("Location", to);
        return res;
      };
    };
    r.get("/docs/a/b", redirect("../c/./d?x=1"));
    r.get("/docs/c/d", echo);
    r.get("/up", redirect("/docs/a/../../docs/c/d"));
    r.get("/q", [](http::Request& q) {
      std::string out(q.query());
      for (const auto& [k, v] : q.query_params()) out += "|" + k + "=" + v;
      return http::Response::text_body(200, out);
    });
    LiveServer srv(r);
    http::Client c;
    auto res = c.get(srv.url("/docs/a/b"));
    FIBER_CHECK(res.status == 200);
    FIBER_CHECK(res.url == srv.url("/docs/c/d?x=1"));
    FIBER_CHECK(c.get(srv.url("/up")).url == srv.url("/docs/c/d"));
    const http::QueryParams params{{"q", "a b"}, {"tag", "é"}, {"tag", "&="}};
    FIBER_CHECK(c.get(srv.url("/q"), {.params = params}).text() ==
                "q=a+b&tag=%C3%A9&tag=%26%3D|q=a b|tag=é|tag=&=");
    FIBER_CHECK(c.get(srv.url("/q?x=1"), {.params = params}).text() ==
                "x=1&q=a+b&tag=%C3%A9&tag=%26%3D|x=1|q=a b|tag=é|tag=&=");
    FIBER_CHECK(c.get(srv.url("/q?"), {.params = {{"k", ""}}}).text() == "k=|k=");
  });
}

TEST_CASE("client: chunked bodies, Content-Length checks and malformed responses") {
  run_checked(2, [] {
    {
      CannedPeer p("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n7\r\n, world\r\n0\r\n\r\n", false);
      http::Client c;
      auto r = c.get(p.url());
      FIBER_CHECK(r.text() == "hello, world");
      FIBER_CHECK(c.get(p.url()).text() == "hello, world");
      FIBER_CHECK(p.accepted() == 1);  // chunked framing allowed reuse
    }
    {
      CannedPeer p("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", true);
      http::Client c;
      FIBER_CHECK(error_of([&] { c.get(p.url()); }) == http::errc::truncated);
    }
    {
      CannedPeer p("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", true);
      http::Client c;
      FIBER_CHECK(error_of([&] { c.get(p.url()); }) == http::errc::truncated);
    }
    {
      CannedPeer p("HTTP/1.0 200 OK\r\n\r\nuntil the end", true);  // framed by the close
      http::Client c;
      FIBER_CHECK(c.get(p.url()).text() == "until the end");
      FIBER_CHECK(c.stats().idle == 0);
    }
    for (std::string bad : {"NOT HTTP AT ALL\r\n\r\n", "HTTP/1.1 abc OK\r\n\r\n",
                            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
                            "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"}) {
      CannedPeer p(bad, true);
      http::Client c;
      const auto e = error_of([&] { c.get(p.url()); });
      if (e != http::errc::malformed_response) fiber_failures().add("not malformed_response: " + bad);
    }
    {
      CannedPeer p("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + std::string(1000, 'x'), true);
      http::Client c({.max_body = 100});
      FIBER_CHECK(error_of([&] { c.get(p.url()); }) == http::errc::body_too_large);
    }
    {
      CannedPeer p("", true);  // closes without a word
      http::Client c;
      FIBER_CHECK(error_of([&] { c.get(p.url()); }) == http::errc::reset);
    }
  });
}

// A HEAD, 204 or 304 response's Content-Length names a body that is not
// sent (RFC 9110 8.6); max_body bounds bodies, so it must not refuse
// these heads. A GET's 200 with that length is still refused.
TEST_CASE("client: HEAD, 204 and 304 heads whose Content-Length is over max_body are answers, not oversized bodies") {
  run_checked(2, [] {
    {
      CannedPeer p("HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n", false);
      http::Client c({.max_body = 100});
      const auto r = c.request("HEAD", p.url());
      FIBER_CHECK(r.status == 200);
      FIBER_CHECK(r.body.empty());
      FIBER_CHECK(r.headers.get("Content-Length") == std::optional<std::string_view>("1000000"));
      FIBER_CHECK(c.stats().idle == 1);  // the connection is whole: pooled
      FIBER_CHECK(error_of([&] { c.get(p.url()); }) == http::errc::body_too_large);
    }
    for (std::string status : {"204 No Content", "304 Not Modified"}) {
      CannedPeer p("HTTP/1.1 " + status + "\r\nContent-Length: 1000000\r\n\r\n", false);
      http::Client c({.max_body = 100});
      const auto r = c.get(p.url());
      FIBER_CHECK(r.status == std::stoi(status));
      FIBER_CHECK(r.body.empty());
      FIBER_CHECK(c.stats().idle == 1);
    }
  });
}

TEST_CASE("client: refused and invalid URLs") {
  run_checked(1, [] {
    const std::uint16_t port = free_port();
    http::Client c;
    std::string what;
    const std::string u = "http://127.0.0.1:" + std::to_string(port) + "/";
    FIBER_CHECK(error_of([&] { c.get(u); }, &what) == http::errc::refused);
    // The cause once, after what was tried.
    FIBER_CHECK(what == "connect to " + u + ": connection refused");
    FIBER_CHECK(c.stats().open == 0);
    for (const char* u : {"ftp://x/", "http://", "http://h:99999/", "http://h:x/", "http://[::1/"})
      FIBER_CHECK(error_of([&] { c.get(u); }) == http::errc::invalid_url);
  });
}

TEST_CASE("client: a cancelled request never leaves its half-read connection in the pool") {
  run_checked(2, [] {
    // Head and part of the body, then silence.
    CannedPeer p("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial", false);
    http::Client c;
    auto t = sp::spawn([&] { return c.get(p.url()).status; });
    // The first request's connection is open once the peer accepted it.
    wait_until([&] { return p.accepted() != 0; });
    t.cancel();
    bool cancelled = false;
    try {
      t.join();
    } catch (const sp::Cancelled&) {
      cancelled = true;
    }
    FIBER_CHECK(cancelled);
    FIBER_CHECK(c.stats().open == 0);
    FIBER_CHECK(c.stats().idle == 0);
    // The next request opens a new connection (the peer answers it the
    // same way: a read timeout ends it), never reading the old one's tail.
    http::Client c2({.read_timeout = 50ms});
    FIBER_CHECK(error_of([&] { c2.get(p.url()); }) == http::errc::timeout);
    FIBER_CHECK(c2.stats().open == 0);
  });
}

TEST_CASE("client: pooled connections the server closed are replaced transparently") {
  run_checked(2, [] {
    http::ServerOptions o;
    // The server drops idle keep-alive connections; long enough that a
    // fresh connection is not dropped before its request arrives (a
    // sanitizer build on a loaded machine can take that long; 100 ms in
    // the others was a stall's margin).
    o.idle_timeout = kSanitized ? 1000ms : 300ms;
    sp::Barrier together(3);
    http::Router r;
    r.get("/together", [&](http::Request& q) {
      together.arrive_and_wait();  // three requests in handlers at once
      return echo(q);
    });
    r.get("/:x", echo);
    LiveServer srv(r, o);
    http::Client c;
    {
      sp::TaskGroup g;  // three connections, all idle in the pool afterwards
      for (int i = 0; i < 3; ++i) g.spawn([&] { FIBER_CHECK(c.get(srv.url("/together")).status == 200); });
    }
    FIBER_CHECK(c.stats().idle == 3);
    wait_until([&] { return srv.server().connections_open() == 0; });
    FIBER_CHECK(c.stats().idle == 3);  // the client does not know yet
    // The first stale one fails before any response byte; the retry does
    // not pick another stale one.
    FIBER_CHECK(c.get(srv.url("/2")).text() == "GET /2 ");
    FIBER_CHECK(srv.server().connections_accepted() == 4);
    FIBER_CHECK(c.stats().connections_opened == 4);
    FIBER_CHECK(c.stats().open == 1);
  });
}

TEST_CASE("client: 1,000 concurrent client fibers against the server on 2 workers") {
  const int n = kTsan ? 250 : 1000;
  run_checked(2, [n] {
    LiveServer srv([](http::Request& q) { return http::Response::text_body(200, std::string(q.path())); });
    http::Client c({.limit = 100, .limit_per_host = 50});
    std::atomic<int> ok{0};
    sp::TaskGroup g;
    for (int i = 0; i < n; ++i)
      g.spawn([&, i] {
        const std::string path = "/f" + std::to_string(i);
        for (int k = 0; k < 3; ++k)
          if (c.get(srv.url(path)).text() == path) ok.fetch_add(1);
      });
    g.wait();
    FIBER_CHECK(ok.load() == 3 * n);
    FIBER_CHECK(srv.server().connections_accepted() <= 50);
    FIBER_CHECK(srv.server().requests_served() == static_cast<std::uint64_t>(3 * n));
  });
}

// expect_continue, against the three servers a client meets: one that
// answers 100 Continue (http::Server, on the body's first read), one that
// refuses from the head (http::Server, a Content-Length over max_body),
// and one that ignores Expect and waits for the body (a raw peer).
TEST_CASE("client: expect_continue sends the body after 100 Continue, never after a refusal") {
  run_checked(2, [] {
    std::string expect_seen;
    http::ServerOptions o;
    o.max_body = 64 * 1024;
    LiveServer srv(
        [&](http::Request& q) {
          expect_seen = std::string(q.headers.get("Expect").value_or(""));
          return http::Response::text_body(200, std::to_string(q.body.size()));
        },
        o);
    {  // accepted: 100, then the body; the connection goes back to the pool
      http::Client c;
      http::RequestOptions ro;
      ro.expect_continue = true;
      ro.body = std::string(60 * 1024, 'x');
      auto r = c.request("POST", srv.url("/up"), ro);
      FIBER_CHECK(r.status == 200);
      FIBER_CHECK(r.text() == std::to_string(60 * 1024));
      FIBER_CHECK(expect_seen == "100-continue");
      FIBER_CHECK(c.stats().idle == 1);
    }
    {  // refused from the head: 413 returned, the generator never called,
       // the connection not pooled (the server expects a body it never got)
      http::Client c;
      int calls = 0;
      http::RequestOptions ro;
      ro.expect_continue = true;
      ro.body_length = std::uint64_t{10} << 20;
      ro.body_generator = [&] {
        ++calls;
        return std::string(64 * 1024, 'g');
      };
      auto r = c.request("POST", srv.url("/up"), ro);
      FIBER_CHECK(r.status == 413);
      FIBER_CHECK(calls == 0);
      FIBER_CHECK(c.stats().idle == 0);
      // The next request gets a fresh connection and goes through.
      FIBER_CHECK(c.post(srv.url("/up"), "abc").text() == "3");
      // The field set by hand means the same (as in Go's client).
      http::RequestOptions by_hand;
      by_hand.headers.set("expect", "100-Continue");
      by_hand.body_length = ro.body_length;
      by_hand.body_generator = ro.body_generator;
      FIBER_CHECK(c.request("POST", srv.url("/up"), by_hand).status == 413);
      FIBER_CHECK(calls == 0);
    }
    {  // a server that ignores Expect: the body goes after the timeout
      RawPeer peer([](io::TcpStream& s) {
        std::string buf;
        const std::string head = read_head(s, buf);
        FIBER_CHECK(head.find("\r\nExpect: 100-continue\r\n") != std::string::npos);
        while (buf.size() < 5) {
          char tmp[64];
          const std::size_t n = s.read_some(tmp, sizeof tmp);
          if (n == 0) return;
          buf.append(tmp, n);
        }
        s.write_all("HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(buf.size()) + "\r\n\r\n" + buf);
      });
      http::Client c({.expect_continue_timeout = 50ms});
      http::RequestOptions ro;
      ro.expect_continue = true;
      ro.body = "hello";
      auto r = c.request("POST", peer.url("/"), ro);
      FIBER_CHECK(r.status == 200);
      FIBER_CHECK(r.text() == "hello");
    }
  });
}

// A server that answers as it reads (Go's, when a handler writes its head
// before it reads the body) sends its final 2xx before any 100 and reads
// the body next: the body goes (as Go's client sends it) and the
// connection is pooled. A 2xx that closes the connection gets no body.
TEST_CASE("client: expect_continue: a final 2xx before the 100 still gets the body; one that closes does not") {
  run_checked(2, [] {
    std::atomic<std::size_t> got{0};
    std::atomic<bool> close_it{false};
    RawPeer peer([&](io::TcpStream& s) {
      std::string buf;
      for (;;) {
        const std::string head = read_head(s, buf);
        FIBER_CHECK(head.find("\r\nExpect: 100-continue\r\n") != std::string::npos);
        const auto at = head.find("Content-Length: ");
        FIBER_CHECK(at != std::string::npos);
        if (at == std::string::npos) return;
        const std::size_t len = std::stoul(head.substr(at + 16));
        char tmp[4096];
        if (close_it.load()) {
          s.write_all("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
          s.shutdown();
          for (std::size_t n; (n = s.read_some(tmp, sizeof tmp)) > 0;) buf.append(tmp, n);
          got.store(buf.size());  // what came of the body before the client closed
          return;
        }
        s.write_all("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        while (buf.size() < len) {
          const std::size_t n = s.read_some(tmp, sizeof tmp);
          if (n == 0) return;
          buf.append(tmp, n);
        }
        got.store(len);
        buf.erase(0, len);
      }
    });
    http::Client c({.expect_continue_timeout = 30s});  // only the 2xx can release the body in time
    auto post = [&] {
      http::RequestOptions ro;
      ro.expect_continue = true;
      ro.body = std::string(100 * 1024, 'b');
      return c.request("POST", peer.url("/"), ro);
    };
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 2; ++i) {
      got.store(0);
      auto r = post();
      FIBER_CHECK(r.status == 200);
      FIBER_CHECK(r.text() == "ok");
      // The server reads the body after it answered: it may still be at it.
      for (int k = 0; k < 500 && got.load() != 100 * 1024; ++k) sp::sleep_for(10ms);
      FIBER_CHECK(got.load() == 100 * 1024);
    }
    FIBER_CHECK(std::chrono::steady_clock::now() - t0 < 15s);  // not the expect timeout
    FIBER_CHECK(peer.accepted() == 1);  // pooled: both on one connection
    close_it.store(true);
    got.store(1);
    const int ended = peer.ended();
    auto r = post();
    FIBER_CHECK(r.status == 200);
    FIBER_CHECK(c.stats().idle == 0);  // a closing connection is not pooled
    for (int i = 0; i < 500 && peer.ended() == ended; ++i) sp::sleep_for(10ms);
    FIBER_CHECK(got.load() == 0);  // and gets no body
    // A server that answers 2xx, keep-alive, and then drops the connection
    // without taking the body: its answer is the request's, not a reset.
    RawPeer rude([](io::TcpStream& s) {
      std::string buf;
      read_head(s, buf);
      s.write_all("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    });  // closed with the body unread: a reset under the client's write
    http::RequestOptions big;
    big.expect_continue = true;
    big.body = std::string(std::size_t{16} << 20, 'b');
    auto answered = c.request("POST", rude.url("/"), big);
    FIBER_CHECK(answered.status == 200);
    FIBER_CHECK(answered.text() == "ok");
  });
}

// A chunked body's trailer fields over HTTP/1.1 are Response::trailers,
// not the head's (Beast's parser appends them to the head's list; the
// client splits them off). client_stream_test.cpp has the streamed case.
TEST_CASE("client: HTTP/1.1 trailer fields are trailers, not headers") {
  run_checked(2, [] {
    RawPeer peer([](io::TcpStream& s) {
      std::string buf;
      read_head(s, buf);
      s.write_all("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                  "5\r\nhello\r\n0\r\nX-Sum: abc\r\n\r\n");
    });
    http::Client c;
    auto r = c.get(peer.url("/"));
    FIBER_CHECK(r.text() == "hello");
    FIBER_CHECK(!r.headers.contains("X-Sum"));
    FIBER_CHECK(r.trailers.get("X-Sum").value_or("") == "abc");
  });
}

// 1xx responses the client did not ask for (103 Early Hints, a stray 100)
// come before the final one, in the same segment or apart: the client
// skips them and returns the final response (RFC 9110 15.2).
TEST_CASE("client: interim 1xx responses before the final one are skipped") {
  run_checked(2, [] {
    RawPeer peer([](io::TcpStream& s) {
      std::string buf;
      read_head(s, buf);
      s.write_all("HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 100 Con");
      // The second interim arrives in two pieces: the client read the
      // first before the rest is sent.
      const int client_fd = peer_fd(s);
      FIBER_CHECK(wait_until([&] { return consumed(client_fd); }));
      s.write_all("tinue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
      read_head(s, buf);
      s.write_all("HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nnew");
      char tmp[64];
      while (s.read_some(tmp, sizeof tmp) > 0) {  // until the client closes
      }
    });
    http::Client c;
    auto r1 = c.get(peer.url("/1"));
    FIBER_CHECK(r1.status == 200);
    FIBER_CHECK(r1.text() == "ok");
    auto r2 = c.get(peer.url("/2"));
    FIBER_CHECK(r2.status == 201);
    FIBER_CHECK(r2.text() == "new");
    FIBER_CHECK(peer.accepted() == 1);
  });
}
