// server_disconnect_test.cpp: a client that goes away cancels its handler
// (ServerOptions::disconnect_check), and the access log
// (ServerOptions::access_log). Wire-level, from raw sockets: the client's
// close, reset or half-close is exactly what the case says.
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <spindle/sync/event.hpp>

#include "http_test_support.hpp"

using namespace spindle_test;
using namespace http_test;
using namespace std::chrono_literals;

// FIBER_REQUIRE: FIBER_CHECK, and the case's fiber returns when it fails
// (what follows depends on it). The condition is evaluated once.
#define FIBER_REQUIRE(...)                                                          \
  do {                                                                              \
    if (!(__VA_ARGS__)) {                                                           \
      ::spindle_test::fiber_failures().add(__FILE__ ":" SPINDLE_TEST_STR(__LINE__) \
                                           ": FIBER_REQUIRE(" #__VA_ARGS__ ") failed"); \
      return;                                                                       \
    }                                                                               \
  } while (0)

namespace {

// Slow: a handler that waits on `release` (never set unless the case says
// so), recording how it ended.
struct Slow {
  sp::Event started, release, cancelled, finished;
  std::atomic<int> calls{0};
  http::Handler handler() {
    return [this](http::Request&) {
      calls.fetch_add(1);
      started.set();
      try {
        release.wait();
      } catch (const sp::Cancelled&) {
        cancelled.set();
        throw;
      }
      finished.set();
      return http::Response::text_body(200, "done\n");
    };
  }
};

http::ServerOptions checking(std::chrono::milliseconds period = 20ms) {
  http::ServerOptions o;
  o.disconnect_check = period;
  return o;
}

// wait_set: e is set within the test's slack (false: it never was).
bool wait_set(sp::Event& e) { return e.wait_for(slack(10s)); }

void set_linger_zero(io::TcpStream& s) {
  const linger l{1, 0};
  ::setsockopt(s.native_handle(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

constexpr std::string_view kGet = "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n";

// Clf: a Common Log Format line taken apart, `host - - [date] "request"
// status bytes`; nothing when it does not have that shape. By hand, not
// std::regex: libstdc++'s matcher recurses per character and overflows a
// fiber's stack under ASan.
struct Clf {
  std::string host, date, request, status, bytes;
};
std::optional<Clf> parse_clf(std::string_view l) {
  Clf c;
  const auto dash = l.find(" - - [");
  const auto close = l.find("] \"");
  const auto end = l.rfind("\" ");
  if (dash == std::string_view::npos || close == std::string_view::npos || end == std::string_view::npos ||
      !(dash < close && close + 2 <= end))
    return std::nullopt;
  c.host = l.substr(0, dash);
  c.date = l.substr(dash + 6, close - dash - 6);
  c.request = l.substr(close + 3, end - close - 3);
  const std::string_view tail = l.substr(end + 2);
  const auto sp = tail.find(' ');
  if (sp == std::string_view::npos) return std::nullopt;
  c.status = tail.substr(0, sp);
  c.bytes = tail.substr(sp + 1);
  // 26/Nov/2026:03:30:00 +0000
  const bool date_ok = c.date.size() == 26 && c.date[2] == '/' && c.date[6] == '/' && c.date[11] == ':' &&
                       c.date.ends_with(" +0000");
  const bool status_ok = c.status.size() == 3 && c.status.find_first_not_of("0123456789") == std::string::npos;
  const bool bytes_ok = c.bytes == "-" || (!c.bytes.empty() && c.bytes.find_first_not_of("0123456789") == std::string::npos);
  if (!date_ok || !status_ok || !bytes_ok || c.host != "127.0.0.1") return std::nullopt;
  return c;
}

// AccessLines: an access_log sink that keeps every line, under its lock
// (the server calls it from its connections' fibers).
struct AccessLines {
  std::mutex mu;
  std::vector<std::string> lines;
  std::function<void(std::string_view)> sink() {
    return [this](std::string_view l) {
      std::lock_guard lk(mu);
      lines.emplace_back(l);
    };
  }
};

}  // namespace

TEST_CASE("server disconnect: a client that closes cancels its handler, and the server goes on") {
  run_checked(2, [] {
    Slow slow;
    http::Router r;
    r.get("/slow", slow.handler());
    r.get("/ok", [](http::Request&) { return http::Response::text_body(200, "ok\n"); });
    LiveServer srv(std::move(r), checking());
    {
      auto c = raw_connect(srv.port());
      c.write_all(kGet);
      FIBER_REQUIRE(wait_set(slow.started));
    }  // closed
    FIBER_CHECK(wait_set(slow.cancelled));
    FIBER_CHECK(!slow.finished.is_set());
    FIBER_CHECK(wait_until([&] { return srv.server().connections_open() == 0; }));
    auto c = raw_connect(srv.port());
    c.write_all("GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    FIBER_CHECK(read_all(c).starts_with("HTTP/1.1 200 "));
  });
}

TEST_CASE("server disconnect: a reset cancels the handler too") {
  run_checked(2, [] {
    Slow slow;
    LiveServer srv(slow.handler(), checking());
    {
      auto c = raw_connect(srv.port());
      c.write_all(kGet);
      FIBER_REQUIRE(wait_set(slow.started));
      set_linger_zero(c);
    }  // RST
    FIBER_CHECK(wait_set(slow.cancelled));
    FIBER_CHECK(wait_until([&] { return srv.server().connections_open() == 0; }));
  });
}

TEST_CASE("server disconnect: a client still connected is never cancelled, and gets its answer") {
  run_checked(2, [] {
    Slow slow;
    LiveServer srv(slow.handler(), checking(5ms));
    auto c = raw_connect(srv.port());
    c.write_all("GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    FIBER_REQUIRE(wait_set(slow.started));
    // Many check periods pass while the client waits with nothing to say.
    sp::sleep_for(100ms);
    FIBER_CHECK(!slow.cancelled.is_set());
    slow.release.set();
    FIBER_CHECK(read_all(c).starts_with("HTTP/1.1 200 "));
    FIBER_CHECK(!slow.cancelled.is_set());
  });
}

TEST_CASE("server disconnect: a client that pipelined its next request and closed its side gets both answers") {
  run_checked(2, [] {
    Slow slow;
    http::Router r;
    r.get("/slow", slow.handler());
    r.get("/ok", [](http::Request&) { return http::Response::text_body(200, "ok\n"); });
    LiveServer srv(std::move(r), checking(5ms));
    auto c = raw_connect(srv.port());
    c.write_all(std::string(kGet) + "GET /ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    c.shutdown();  // FIN after both requests
    FIBER_REQUIRE(wait_set(slow.started));
    sp::sleep_for(100ms);  // many periods: the check must leave this one alone
    slow.release.set();
    const std::string out = read_all(c);
    FIBER_CHECK(count_substr(out, "HTTP/1.1 200 ") == 2);
    FIBER_CHECK(!slow.cancelled.is_set());
  });
}

// A response that closes the connection (res.close, the request's
// Connection: close, a shutdown) with requests pipelined behind it unread:
// the close was an RST, which destroyed the response's bytes not yet read
// by the client (113 KB of 1 MiB arrived in a helper's probe). The server
// now lingers (shuts its side, drains the peer's for a moment) as it did
// when a body was left unread.
TEST_CASE("server disconnect: a closing response arrives whole though requests were pipelined behind it") {
  run_checked(2, [] {
    const std::string big(1 << 20, 'z');
    http::Router r;
    r.get("/bigclose", [&](http::Request&) {
      auto res = http::Response::text_body(200, big);
      res.close = true;
      return res;
    });
    r.get("/big", [&](http::Request&) { return http::Response::text_body(200, big); });
    LiveServer srv(std::move(r));
    for (const char* first : {"GET /bigclose HTTP/1.1\r\nHost: x\r\n\r\n",
                              "GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"}) {
      auto c = raw_connect(srv.port());
      std::string reqs = first;
      for (int i = 0; i < 300; ++i) reqs += "GET /big HTTP/1.1\r\nHost: x\r\n\r\n";
      c.write_all(reqs);
      sp::sleep_for(200ms);  // the server writes and closes before we read a byte
      const std::string out = read_all(c);
      FIBER_CHECK(count_substr(out, "HTTP/1.1 200 ") == 1);
      FIBER_CHECK(out.size() > big.size());
      FIBER_CHECK(out.ends_with(big.substr(0, 64)));
    }
  });
}

TEST_CASE("server disconnect: a Router route's body read whole, then the client leaves: cancelled") {
  run_checked(2, [] {
    Slow slow;
    http::Router r;
    r.post("/slow", [&slow](http::Request& q) {
      FIBER_CHECK(q.body == "hello");
      return slow.handler()(q);
    });
    LiveServer srv(std::move(r), checking());
    {
      auto c = raw_connect(srv.port());
      c.write_all("POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
      FIBER_REQUIRE(wait_set(slow.started));
    }
    FIBER_CHECK(wait_set(slow.cancelled));
  });
}

TEST_CASE("server disconnect: clean-up in shield finishes after the cancel") {
  run_checked(2, [] {
    sp::Event started, cleaned;
    std::atomic<bool> cancelled_seen{false};
    LiveServer srv(
        [&](http::Request&) -> http::Response {
          started.set();
          try {
            sp::sleep_for(1h);
          } catch (const sp::Cancelled&) {
            cancelled_seen = true;
            // A wait inside shield is not interrupted by the pending cancel.
            sp::shield([&] {
              sp::sleep_for(20ms);
              cleaned.set();
            });
            throw;
          }
          return http::Response::text_body(200, "never\n");
        },
        checking());
    {
      auto c = raw_connect(srv.port());
      c.write_all(kGet);
      FIBER_REQUIRE(wait_set(started));
    }
    FIBER_CHECK(wait_set(cleaned));
    FIBER_CHECK(cancelled_seen.load());
  });
}

TEST_CASE("server disconnect: disconnect_check zero lets the handler run to its end") {
  run_checked(2, [] {
    sp::Event started, finished;
    std::atomic<bool> cancelled{false};
    sp::Event peer_closed;
    http::ServerOptions o;
    o.disconnect_check = 0ms;
    LiveServer srv(
        [&](http::Request&) {
          started.set();
          try {
            peer_closed.wait();   // the client is gone once this returns
            sp::sleep_for(50ms);  // and the handler still has work to do
          } catch (const sp::Cancelled&) {
            cancelled = true;
            throw;
          }
          finished.set();
          return http::Response::text_body(200, "late\n");
        },
        o);
    {
      auto c = raw_connect(srv.port());
      c.write_all(kGet);
      FIBER_REQUIRE(wait_set(started));
    }
    peer_closed.set();
    FIBER_CHECK(wait_set(finished));
    FIBER_CHECK(!cancelled.load());
  });
}

// A streamed response (server-sent events) whose generator waits long for
// its next piece: a client that leaves between pieces cancels the
// generator's wait, as it cancels a handler's. Before, the connection, its
// fiber and its place under max_connections stayed until the next piece's
// write failed (an hour, for a generator that waits an hour).
TEST_CASE("server disconnect: a client that leaves a streamed response cancels its generator's wait") {
  run_checked(2, [] {
    sp::Event second_called, cancelled, release;
    std::atomic<int> calls{0};
    LiveServer srv(
        [&](http::Request&) {
          return http::Response::stream_body(200, [&]() -> std::string {
            const int n = calls.fetch_add(1);
            if (n == 0) return "event: first\n\n";
            if (n > 1) return "";
            second_called.set();
            try {
              release.wait();  // never set: only the cancel ends it
            } catch (const sp::Cancelled&) {
              cancelled.set();
              throw;
            }
            return "event: late\n\n";
          });
        },
        checking());
    {
      auto c = raw_connect(srv.port());
      c.write_all(kGet);
      std::string got;
      c.read_until(got, "event: first", 1 << 16);
      FIBER_REQUIRE(wait_set(second_called));
    }  // closed between pieces
    FIBER_CHECK(wait_set(cancelled));
    FIBER_CHECK(wait_until([&] { return srv.server().connections_open() == 0; }));
    FIBER_CHECK(calls.load() == 2);  // not called again after the cancel
  });
}

TEST_CASE("server disconnect: a streamed response's client still reading is never cancelled") {
  run_checked(2, [] {
    sp::Event second_called, release;
    std::atomic<bool> cancelled{false};
    std::atomic<int> calls{0};
    LiveServer srv(
        [&](http::Request&) {
          return http::Response::stream_body(200, [&]() -> std::string {
            const int n = calls.fetch_add(1);
            if (n == 0) return "first\n";
            if (n > 1) return "";
            second_called.set();
            try {
              release.wait();
            } catch (const sp::Cancelled&) {
              cancelled = true;
              throw;
            }
            return "second\n";
          });
        },
        checking(5ms));
    auto c = raw_connect(srv.port());
    c.write_all("GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    FIBER_REQUIRE(wait_set(second_called));
    sp::sleep_for(100ms);  // many check periods while the generator waits
    FIBER_CHECK(!cancelled.load());
    release.set();
    const std::string out = read_all(c);
    FIBER_CHECK(out.starts_with("HTTP/1.1 200 "));
    FIBER_CHECK(out.find("second\n") != std::string::npos);
    FIBER_CHECK(out.ends_with("0\r\n\r\n"));
    FIBER_CHECK(!cancelled.load());
  });
}

TEST_CASE("server access log: one Common Log Format line per response, the peer's bytes escaped") {
  run_checked(2, [] {
    AccessLines log;
    http::ServerOptions o;
    o.access_log = log.sink();
    http::Router r;
    r.get("/a", [](http::Request&) { return http::Response::text_body(200, "hello"); });
    r.get("/empty", [](http::Request&) { return http::Response::text_body(204, ""); });
    LiveServer srv(std::move(r), o);
    auto send = [&](std::string bytes) {
      auto c = raw_connect(srv.port());
      c.write_all(bytes);
      return read_all(c);
    };
    FIBER_CHECK(send("GET /a?q=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").starts_with("HTTP/1.1 200"));
    FIBER_CHECK(send("GET /nope HTTP/1.0\r\n\r\n").starts_with("HTTP/1.0 404"));
    FIBER_CHECK(send("GET /empty HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").starts_with("HTTP/1.1 204"));
    // A quote and a high byte in the target (Beast takes obs-text there).
    FIBER_CHECK(send("GET /a\"b\xC3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").starts_with("HTTP/1.1 "));
    FIBER_CHECK(send("NOT HTTP\r\n\r\n").starts_with("HTTP/1.1 400"));
    FIBER_CHECK(send("GET / HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 400"));  // no Host
    std::lock_guard lk(log.mu);
    const std::vector<std::string>& lines = log.lines;
    FIBER_REQUIRE(lines.size() == 6);
    std::optional<Clf> m[6];
    for (int i = 0; i < 6; ++i) {
      m[i] = parse_clf(lines[i]);
      FIBER_REQUIRE(m[i].has_value());
    }
    FIBER_CHECK(m[0]->request == "GET /a?q=1 HTTP/1.1");
    FIBER_CHECK(m[0]->status == "200");
    FIBER_CHECK(m[0]->bytes == "5");
    FIBER_CHECK(m[1]->request == "GET /nope HTTP/1.0");
    FIBER_CHECK(m[1]->status == "404");
    FIBER_CHECK(m[2]->status == "204");
    FIBER_CHECK(m[2]->bytes == "-");
    FIBER_CHECK(m[3]->request == "GET /a\\x22b\\xC3 HTTP/1.1");
    FIBER_CHECK(m[4]->request == "-");
    FIBER_CHECK(m[4]->status == "400");
    FIBER_CHECK(m[5]->request == "GET / HTTP/1.1");
    FIBER_CHECK(m[5]->status == "400");
  });
}

// A request line escaped to four bytes a byte (16 KiB of non-ASCII: 64 KiB)
// is cut at whole escapes, so that a line stays under PIPE_BUF and one
// write of it is not spliced with another's (log_to_stderr).
TEST_CASE("server access log: a long request line is cut, the line under PIPE_BUF") {
  run_checked(2, [] {
    AccessLines log;
    http::ServerOptions o;
    o.access_log = log.sink();
    LiveServer srv([](http::Request&) { return http::Response::text_body(200, "ok"); }, o);
    auto c = raw_connect(srv.port());
    c.write_all("GET /" + std::string(12000, '\xC3') + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    FIBER_CHECK(read_all(c).starts_with("HTTP/1.1 200"));
    std::lock_guard lk(log.mu);
    const std::vector<std::string>& lines = log.lines;
    FIBER_REQUIRE(lines.size() == 1);
    const auto m = parse_clf(lines[0]);
    FIBER_REQUIRE(m.has_value());
    FIBER_CHECK(m->request.starts_with("GET /\\xC3\\xC3"));
    FIBER_CHECK(m->request.ends_with("\\xC3... HTTP/1.1"));
    FIBER_CHECK(lines[0].size() < 4096);
  });
}
