// request_limits_test.cpp: what a request announces or holds past the
// server's limits is refused when it is announced, not after the server
// waited for it or built it. A chunk line whose size takes a body past
// max_body (or, for a body left unread, past max_drain) is answered at
// once, as a Content-Length over it is, not after read_timeout; a query or
// form with more items than QueryParams' cap is 400, not a list ~35 times
// its size, and a JSON body of more values than max_json_values 413, not a
// tree ~20 times its size (over HTTP/1.1 and HTTP/2: call_handler.hpp).
// Wire-level, from raw sockets, and through the Client for both protocols.
#include <atomic>
#include <chrono>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "http_test_support.hpp"

using namespace spindle_test;
using namespace http_test;
using namespace std::chrono_literals;

namespace {

// exchange: sends `bytes` on a new connection, keeping it open (a peer
// that announces a body and sends none of it), and returns all the server
// sent until it closed, or "TIMEOUT" past `limit`: well below the
// read_timeout of every server here, so an answer that waited for the
// body's data never comes in time.
std::string exchange(std::uint16_t port, const std::string& bytes, Clock::duration limit = slack(5s)) {
  auto s = raw_connect(port);
  s.write_all(bytes);
  try {
    return sp::with_timeout(limit, [&] { return read_all(s); });
  } catch (const sp::TimedOut&) {
    return "TIMEOUT";
  }
}

// Long enough that no case above could be answered by them.
http::ServerOptions patient() {
  http::ServerOptions o;
  o.read_timeout = 10min;
  o.body_timeout = 10min;
  return o;
}

// kChunked: a chunked POST's head. kChunkedClose: the same asking for a
// close (a request the server serves: exchange reads until the close).
const std::string kChunked = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
const std::string kChunkedClose =
    "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n";

// chunk: one chunk of n bytes, its line and data.
std::string chunk(std::size_t n) {
  char line[32];
  std::snprintf(line, sizeof line, "%zx\r\n", n);
  return line + std::string(n, 'b') + "\r\n";
}

// with_target: kChunked (or kChunkedClose) for another target.
std::string with_target(std::string_view target, bool close = false) {
  std::string h = close ? kChunkedClose : kChunked;
  h.replace(5, 1, target);
  return h;
}

http::Response echo_size(http::Request& q) { return http::Response::text_body(200, std::to_string(q.body.size())); }

}  // namespace

TEST_CASE("request limits: a chunk line past max_body is 413 at once, on every way a body is read whole") {
  run_checked(2, [] {
    // A plain Handler: the server reads the body before calling it.
    {
      std::atomic<int> called{0};
      http::ServerOptions o = patient();
      o.max_body = 1000;
      LiveServer srv([&](http::Request& q) { called.fetch_add(1); return echo_size(q); }, o);
      FIBER_CHECK(exchange(srv.port(), kChunked + "FFFFFFFFFFFF\r\n").starts_with("HTTP/1.1 413 "));
      // The sum of the lines passes it: refused at the second, before its data.
      FIBER_CHECK(exchange(srv.port(), kChunked + chunk(500) + "1F5\r\n").starts_with("HTTP/1.1 413 "));
      // At the limit: served.
      const std::string at = exchange(srv.port(), kChunkedClose + chunk(500) + chunk(500) + "0\r\n\r\n");
      FIBER_CHECK(at.starts_with("HTTP/1.1 200 "));
      FIBER_CHECK(body_of(at) == "1000");
      FIBER_CHECK(called.load() == 1);
    }
    // A Router's Body::whole route, and a streamed handler's load_body()
    // after a first read (the limit is on what load_body stores).
    {
      http::Router r;
      r.post("/whole", echo_size);
      r.post("/load", [](http::Request& q) {
        std::byte first[10];
        std::size_t got = 0;
        while (got < sizeof first) {
          const std::size_t n = q.read_body_some(std::span(first).subspan(got));
          if (n == 0) break;
          got += n;
        }
        q.load_body();
        return echo_size(q);
      }, http::Body::stream);
      http::ServerOptions o = patient();
      o.max_body = 1000;
      LiveServer srv(std::move(r), o);
      FIBER_CHECK(exchange(srv.port(), with_target("/whole") + "FFFFFFFFFFFF\r\n").starts_with("HTTP/1.1 413 "));
      FIBER_CHECK(exchange(srv.port(), with_target("/load") + chunk(10) + "3E9\r\n").starts_with("HTTP/1.1 413 "));
      const std::string at = exchange(srv.port(), with_target("/load", true) + chunk(10) + chunk(1000) + "0\r\n\r\n");
      FIBER_CHECK(at.starts_with("HTTP/1.1 200 "));
      FIBER_CHECK(body_of(at) == "1000");
    }
  });
}

// A body its handler left unread is drained only if at most max_drain of
// it is left: a chunk line that says more ends the wait, as a
// Content-Length that says more does (the answer goes out with a close);
// an upgrade of such a request is 413.
TEST_CASE("request limits: a chunk line past max_drain ends the drain at once") {
  run_checked(2, [] {
    std::atomic<int> upgrades{0};
    http::ServerOptions o = patient();
    o.stream_bodies = true;  // the handler runs at the head and leaves the body
    o.max_drain = 64 * 1024;
    LiveServer srv([&](http::Request& q) {
      if (q.target != "/up") return http::Response::text_body(200, "ok");
      http::Response r;
      r.upgrade = [&](http::Upgraded, std::string_view) { upgrades.fetch_add(1); };
      return r;
    }, o);
    const std::string left = exchange(srv.port(), kChunked + "FFFFFFFFFFFF\r\n");
    FIBER_CHECK(left.starts_with("HTTP/1.1 200 "));
    FIBER_CHECK(lower(left).find("connection: close\r\n") != std::string::npos);
    const std::string up = exchange(srv.port(), "POST /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: x\r\n"
                                                "Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFF\r\n");
    FIBER_CHECK(up.starts_with("HTTP/1.1 413 "));
    FIBER_CHECK(upgrades.load() == 0);
    // Within max_drain: drained, and the connection kept for a next request.
    auto s = raw_connect(srv.port());
    s.write_all(kChunked + chunk(60 * 1024) + "0\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    const std::string both = sp::with_timeout(slack(5s), [&] { return read_all(s); });
    FIBER_CHECK(count_substr(both, "HTTP/1.1 200 ") == 2);
  });
}

// The handler's own reads of a streamed body have no max_body: a chunk far
// larger than it reaches the handler whole.
TEST_CASE("request limits: a streamed handler's reads are not held to max_body") {
  run_checked(2, [] {
    http::Router r;
    r.post("/", [](http::Request& q) {
      std::size_t total = 0;
      for (std::string piece; !(piece = q.read_body_chunk()).empty();) total += piece.size();
      return http::Response::text_body(200, std::to_string(total));
    }, http::Body::stream);
    http::ServerOptions o = patient();
    o.max_body = 1000;
    LiveServer srv(std::move(r), o);
    const std::string got = exchange(srv.port(), kChunkedClose + chunk(100'000) + "0\r\n\r\n");
    FIBER_CHECK(got.starts_with("HTTP/1.1 200 "));
    FIBER_CHECK(body_of(got) == "100000");
  });
}

// QueryParams' cap (QueryParams::kDefaultMaxItems) on a query and on a
// form body: past it the handler's parse raises errc::too_many_params,
// which the server answers 400 without reporting it; the connection goes
// on. A handler may raise the cap.
TEST_CASE("request limits: a query or form past QueryParams' item cap is 400") {
  run_checked(2, [] {
    std::atomic<int> reported{0};
    http::ServerOptions o = patient();
    o.on_error = [&](const http::Request&, std::exception_ptr) { reported.fetch_add(1); };
    LiveServer srv([](http::Request& q) {
      std::size_t n = 0;
      if (q.path() == "/query") n = q.query_params().size();
      if (q.path() == "/form") n = q.form_params().size();
      if (q.path() == "/more") n = q.query_params(5000).size();
      return http::Response::text_body(200, std::to_string(n));
    }, o);
    const auto items = [](std::size_t n) {
      std::string s;
      for (std::size_t i = 0; i < n; ++i) s += "a&";
      return s;
    };
    const std::size_t cap = http::QueryParams::kDefaultMaxItems;
    FIBER_CHECK(cap == 1000);
    const auto get = [&](std::string_view path, std::size_t n) {
      return exchange(srv.port(), "GET " + std::string(path) + "?" + items(n) +
                                      " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    };
    const std::string at = get("/query", cap);
    FIBER_CHECK(at.starts_with("HTTP/1.1 200 "));
    FIBER_CHECK(body_of(at) == "1000");
    FIBER_CHECK(get("/query", cap + 1).starts_with("HTTP/1.1 400 "));
    const std::string raised = get("/more", cap + 1);
    FIBER_CHECK(raised.starts_with("HTTP/1.1 200 "));
    FIBER_CHECK(body_of(raised) == "1001");
    const std::string form = items(cap + 1);
    FIBER_CHECK(exchange(srv.port(), "POST /form HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: " +
                                         std::to_string(form.size()) + "\r\n\r\n" + form)
                    .starts_with("HTTP/1.1 400 "));
    // Kept alive after the 400: a second request on the same connection.
    auto s = raw_connect(srv.port());
    s.write_all("GET /query?" + items(cap + 1) + " HTTP/1.1\r\nHost: x\r\n\r\nGET /query?a HTTP/1.1\r\nHost: x\r\n"
                "Connection: close\r\n\r\n");
    const std::string both = sp::with_timeout(slack(5s), [&] { return read_all(s); });
    FIBER_CHECK(both.starts_with("HTTP/1.1 400 "));
    FIBER_CHECK(count_substr(both, "HTTP/1.1 200 ") == 1);
    FIBER_CHECK(reported.load() == 0);
  });
}

namespace {

// items: n tiny query or form items ("a&a&...").
std::string items(std::size_t n) {
  std::string s;
  for (std::size_t i = 0; i < n; ++i) s += "a&";
  return s;
}

// json_values: a JSON array that is n values in all (itself and n - 1
// zeros).
std::string json_values(std::size_t n) {
  std::string s = "[";
  for (std::size_t i = 1; i < n; ++i) s += i == 1 ? "0" : ",0";
  return s + "]";
}

// protocols: the Client's ways to the servers here: HTTP/1.1 and, where
// built, HTTP/2 (h2c with prior knowledge): both servers answer through
// call_handler.hpp.
std::vector<http::ClientHttp2> protocols() {
#if REQUEST_LIMITS_HTTP2
  return {http::ClientHttp2::never, http::ClientHttp2::prior_knowledge};
#else
  return {http::ClientHttp2::never};
#endif
}

http::Client client_for(http::ClientHttp2 proto) {
  http::ClientOptions co;
  co.http2 = proto;
  return http::Client(co);
}

}  // namespace

// The 400 is for the request's own parse only (Request::query_params and
// form_params, the very exception they raised, rethrown or not): the same
// errc from a URL the handler parsed (a backend's, a config value), or a
// QueryParams::parse it called itself, is the server's fault: 500,
// reported to on_error. Before, every too_many_params a handler let pass
// was a silent 400. Over HTTP/1.1 and HTTP/2.
TEST_CASE("request limits: only the request's own query or form past the item cap is a silent 400") {
  run_checked(2, [] {
    std::atomic<int> reported{0};
    http::ServerOptions o = patient();
    o.on_error = [&](const http::Request&, std::exception_ptr) { reported.fetch_add(1); };
    const std::size_t cap = http::QueryParams::kDefaultMaxItems;
    const std::string over = items(cap + 1);
    LiveServer srv([&](http::Request& q) {
      std::size_t n = 0;
      const auto p = q.path();
      if (p == "/query") n = q.query_params().size();
      if (p == "/form") n = q.form_params().size();
      if (p == "/rethrown") {
        try {
          n = q.query_params().size();
        } catch (const http::Error&) {
          throw;
        }
      }
      if (p == "/url") n = http::URL("http://backend.example/?" + over).query_params().size();
      if (p == "/parse") n = http::QueryParams::parse(q.body).size();
      if (p == "/swallowed") {  // its own refusal caught, then another parse's let pass
        try {
          (void)q.query_params();
        } catch (const http::Error&) {
        }
        n = http::URL("http://backend.example/?" + over).query_params().size();
      }
      return http::Response::text_body(200, std::to_string(n));
    }, o);
    for (const auto proto : protocols()) {
      auto c = client_for(proto);
      const int before = reported.load();
      auto r = c.get(srv.url("/query?" + items(cap)));
      FIBER_CHECK(r.status == 200);
      FIBER_CHECK(r.text() == "1000");
      for (const std::string& target : {"/query?" + over, "/rethrown?" + over}) {
        r = c.get(srv.url(target));
        FIBER_CHECK(r.status == 400);
        FIBER_CHECK(r.text() == "too many query or form parameters\n");
      }
      r = c.post(srv.url("/form"), over);
      FIBER_CHECK(r.status == 400);
      FIBER_CHECK(reported.load() == before);
      r = c.get(srv.url("/url"));
      FIBER_CHECK(r.status == 500);
      FIBER_CHECK(reported.load() == before + 1);
      r = c.post(srv.url("/parse"), over);
      FIBER_CHECK(r.status == 500);
      FIBER_CHECK(reported.load() == before + 2);
      r = c.get(srv.url("/swallowed?" + over));
      FIBER_CHECK(r.status == 500);
      FIBER_CHECK(reported.load() == before + 3);
      // Every answer on the one connection: none of them closed it.
      FIBER_CHECK(c.stats().connections_opened == 1);
    }
  });
}

// ServerOptions::max_json_values: a body of more JSON values is refused by
// Request::json() before the value is stored (errc::too_many_json_values),
// and the server answers 413 without reporting it; the connection goes on.
// A JSON the handler got elsewhere (a backend's answer, refused by that
// Client's ClientOptions::max_json_values) is a 500, reported. Before, a
// body's tree was bounded only by max_body: 1 MiB of `[[],[],...]`, 20 MB.
TEST_CASE("request limits: a JSON body past max_json_values is 413; a backend's JSON past the Client's cap is 500") {
  run_checked(2, [] {
    FIBER_CHECK(http::ServerOptions{}.max_json_values == 100'000);
    FIBER_CHECK(http::ClientOptions{}.max_json_values == 1'000'000);
    std::atomic<int> reported{0};
    std::atomic<std::uint16_t> port{0};
    http::ServerOptions o = patient();
    o.max_json_values = 10;
    o.on_error = [&](const http::Request&, std::exception_ptr) { reported.fetch_add(1); };
    LiveServer srv([&](http::Request& q) {
      if (q.path() == "/echo") return http::Response::text_body(200, q.body, "application/json");
      std::size_t n = 0;
      if (q.path() == "/json") n = q.json().size();
      if (q.path() == "/backend") {
        http::ClientOptions bo;
        bo.max_json_values = 10;
        http::Client backend(bo);
        n = backend.post("http://127.0.0.1:" + std::to_string(port.load()) + "/echo", q.body).json().size();
      }
      return http::Response::text_body(200, std::to_string(n));
    }, o);
    port = srv.port();
    for (const auto proto : protocols()) {
      auto c = client_for(proto);
      const int before = reported.load();
      auto r = c.post(srv.url("/json"), json_values(10));
      FIBER_CHECK(r.status == 200);
      FIBER_CHECK(r.text() == "9");
      r = c.post(srv.url("/json"), json_values(11));
      FIBER_CHECK(r.status == 413);
      FIBER_CHECK(r.text() == "too many JSON values\n");
      r = c.post(srv.url("/json"), "[[],[],[],[],[],[],[],[],[],[],[]]");  // arrays count as values too
      FIBER_CHECK(r.status == 413);
      // Every kind of value counts, keys do not: 10 values, then 11.
      const std::string mixed = R"({"a":1,"b":[true,null,"x"],"c":{"d":2.5,"e":-1},"f":"y")";
      FIBER_CHECK(c.post(srv.url("/json"), mixed + "}").status == 200);
      FIBER_CHECK(c.post(srv.url("/json"), mixed + R"(,"g":false})").status == 413);
      FIBER_CHECK(reported.load() == before);
      r = c.post(srv.url("/backend"), json_values(10));
      FIBER_CHECK(r.status == 200);
      FIBER_CHECK(r.text() == "9");
      r = c.post(srv.url("/backend"), json_values(11));
      FIBER_CHECK(r.status == 500);
      FIBER_CHECK(reported.load() == before + 1);
      FIBER_CHECK(c.stats().connections_opened == 1);
    }
    // The Client's cap on its own: the error names the option.
    http::ClientOptions co;
    co.max_json_values = 10;
    http::Client c(co);
    FIBER_CHECK(c.post(srv.url("/echo"), json_values(10)).json().size() == 9);
    const auto res = c.post(srv.url("/echo"), json_values(11));
    bool refused = false;
    try {
      (void)res.json();
    } catch (const http::Error& e) {
      refused = e.kind() == http::errc::too_many_json_values &&
                std::string(e.what()).find("ClientOptions::max_json_values") != std::string::npos;
    }
    FIBER_CHECK(refused);
  });
}

// The default cap reaches the handler's Request: 100,000 values pass,
// one more is 413.
TEST_CASE("request limits: ServerOptions' default max_json_values applies to req.json()") {
  run_checked(2, [] {
    LiveServer srv([](http::Request& q) { return http::Response::text_body(200, std::to_string(q.json().size())); },
                   patient());
    for (const auto proto : protocols()) {
      auto c = client_for(proto);
      auto r = c.post(srv.url("/"), json_values(100'000));
      FIBER_CHECK(r.status == 200);
      FIBER_CHECK(r.text() == "99999");
      FIBER_CHECK(c.post(srv.url("/"), json_values(100'001)).status == 413);
    }
  });
}

// Depth on the handler's fiber (64 KiB of stack): a 1 MiB body of
// balanced brackets, 512 Ki levels, is refused at level 129 by
// Request::json(), and the server goes on. nlohmann 3.11.2's parser and
// its destructor keep their own stacks (parser.hpp's `states`, json.hpp's
// destroy()), so the parse alone would not overflow; the cap is for what
// a handler does next (a copy, a conversion, dump(): recursive; 128
// levels of those fit 64 KiB in an optimised build, not under ASan).
TEST_CASE("request limits: a JSON body nested 512 Ki deep is refused at depth 129 on the handler's fiber") {
  run_checked(2, [] {
    http::ServerOptions o = patient();
    o.max_body = 1u << 20;
    o.max_json_values = SIZE_MAX;  // depth alone (512 Ki values)
    LiveServer srv([](http::Request& q) {
      try {
        // The depth, walked without recursion: a conversion or dump()
        // (recursive) of 128 levels fits the 64 KiB stack in an optimised
        // build but not under AddressSanitizer's larger frames.
        const nlohmann::ordered_json j = q.json();
        std::size_t depth = 0;
        for (const nlohmann::ordered_json* p = &j; p->is_array(); p = &p->front()) {
          ++depth;
          if (p->empty()) break;
        }
        return http::Response::text_body(200, std::to_string(depth));
      } catch (const nlohmann::json::parse_error& e) {
        return http::Response::text_body(400, e.what());
      }
    }, o);
    auto c = client_for(http::ClientHttp2::never);
    const std::size_t half = 1u << 19;
    auto r = c.post(srv.url("/"), std::string(half, '[') + std::string(half, ']'));
    FIBER_CHECK(r.status == 400);
    FIBER_CHECK(r.text().find("deeper than 128") != std::string_view::npos);
    const std::string at_cap = std::string(128, '[') + std::string(128, ']');
    r = c.post(srv.url("/"), at_cap);
    FIBER_CHECK(r.status == 200);
    FIBER_CHECK(r.text() == "128");
  });
}
