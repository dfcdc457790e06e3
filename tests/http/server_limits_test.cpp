// server_limits_test.cpp: ServerOptions::max_connections, and what the
// server does when accept runs out of descriptors. At the limit the
// connections idle longest (for a second at least) are closed to make
// room, a sixteenth of the limit a pass; with none idle that long new
// connections wait; and the next accepts use a pass's connections before
// another pass closes more. Wire-level, from raw sockets.
#include <sys/resource.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <spindle/sync/event.hpp>

#include "http_test_support.hpp"
#include "websocket_test_support.hpp"

using namespace spindle_test;
using namespace http_test;
using namespace std::chrono_literals;

namespace {

http::Response echo_target(http::Request& q) { return http::Response::text_body(200, q.target); }

// get: one GET on s, its body (bounded: a connection the server left
// waiting raises TimedOut).
std::string get(io::TcpStream& s, std::string& buf, const std::string& path) {
  return sp::with_timeout(slack(10s), [&] {
    s.write_all("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n");
    return body_of(read_response(s, buf));
  });
}

// closed_by_server: the server closed s (end of stream or a reset).
bool closed_by_server(io::TcpStream& s) {
  try {
    char b[64];
    return sp::with_timeout(slack(10s), [&] { return s.read_some(b, sizeof b); }) == 0;
  } catch (const std::system_error&) {
    return true;
  }
}

// next_tick: waits until the coarse clock (the server's idle stamps) has
// moved on, so connections made on either side of it have distinct
// stamps and "idle longest" is one of them.
void next_tick() {
  const auto now = [] {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1000 + static_cast<std::uint64_t>(ts.tv_nsec) / 1'000'000;
  };
  const auto t0 = now();
  while (now() == t0) sp::sleep_for(1ms);
}

// idle_conns: n connections that each made one request, idle in turn
// (the first idle longest). The server stamps a connection idle just after
// writing its answer, which a loaded machine may delay past the client's
// read of it: 10 ms and a clock tick apart keep the stamps in order.
std::vector<io::TcpStream> idle_conns(LiveServer& srv, int n) {
  std::vector<io::TcpStream> out;
  for (int i = 0; i < n; ++i) {
    out.push_back(raw_connect(srv.port()));
    std::string buf;
    FIBER_CHECK(get(out.back(), buf, "/" + std::to_string(i)) == "/" + std::to_string(i));
    sp::sleep_for(10ms);
    next_tick();
  }
  return out;
}

http::ServerOptions limited(std::size_t max, std::chrono::milliseconds release_after) {
  http::ServerOptions o;
  o.max_connections = max;
  o.idle_release_after = release_after;
  return o;
}

}  // namespace

// Both ways an idle connection waits: with its fiber, and released (no
// fiber: closed by the pass itself).
TEST_CASE("max_connections: at the limit the connection idle longest is closed for a new one") {
  for (const auto release_after : {0ms, 5ms}) {
    INFO("idle_release_after " << release_after.count() << " ms");
    run_checked(2, [release_after] {
      LiveServer srv(echo_target, limited(4, release_after));
      auto conns = idle_conns(srv, 4);
      if (release_after.count() > 0) FIBER_CHECK(wait_until([&] { return srv.server().connections_released() == 4; }));
      const auto t0 = Clock::now();
      auto fresh = raw_connect(srv.port());
      std::string buf;
      FIBER_CHECK(get(fresh, buf, "/new") == "/new");  // once the first has been idle a second
      FIBER_CHECK(Clock::now() - t0 >= 200ms);  // not at once: the first had idled well under a second
      FIBER_CHECK(srv.server().connections_reclaimed() == 1);  // 4 / 16, at least 1
      FIBER_CHECK(closed_by_server(conns[0]));
      for (int i = 1; i < 4; ++i) {
        std::string b;
        FIBER_CHECK(get(conns[static_cast<std::size_t>(i)], b, "/again") == "/again");
      }
      FIBER_CHECK(srv.server().connections_open() == 4);
    });
  }
}

// No connection idle: nothing is closed, and the new connection's request
// waits (in the backlog) until one of the busy ones is done and has been
// idle a second.
TEST_CASE("max_connections: with every connection busy, a new one waits until one is done") {
  run_checked(2, [] {
    sp::Event go;
    std::atomic<int> in_handler{0};
    LiveServer srv(
        [&](http::Request& q) {
          if (q.target == "/block") {
            in_handler.fetch_add(1);
            go.wait();
          }
          return http::Response::text_body(200, q.target);
        },
        limited(2, 0ms));
    std::vector<io::TcpStream> busy;
    for (int i = 0; i < 2; ++i) {
      busy.push_back(raw_connect(srv.port()));
      busy.back().write_all("GET /block HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    FIBER_CHECK(wait_until([&] { return in_handler.load() == 2; }));
    auto fresh = raw_connect(srv.port());  // the kernel completes it: the backlog
    fresh.write_all("GET /new HTTP/1.1\r\nHost: x\r\n\r\n");
    std::string buf;
    bool answered = true;
    try {
      sp::with_timeout(200ms, [&] { read_response(fresh, buf); });
    } catch (const sp::TimedOut&) {
      answered = false;
    }
    FIBER_CHECK(!answered);
    FIBER_CHECK(srv.server().connections_open() == 2);
    FIBER_CHECK(srv.server().connections_reclaimed() == 0);
    go.set();
    for (auto& b : busy) {
      std::string bb;
      FIBER_CHECK(sp::with_timeout(slack(10s), [&] { return body_of(read_response(b, bb)); }) == "/block");
    }
    FIBER_CHECK(sp::with_timeout(slack(10s), [&] { return body_of(read_response(fresh, buf)); }) == "/new");
    // One of the two, idle since its answer (a pass closes at most one
    // here: a sixteenth of the limit, at least one; 2 allows for a second
    // pass should the first one's credit run out on a loaded machine).
    const auto reclaimed = srv.server().connections_reclaimed();
    FIBER_CHECK((reclaimed == 1 || reclaimed == 2));
  });
}

// A burst of new connections at the limit: each pass closes a sixteenth of
// the limit (4 of 64), the oldest first, and 8 new connections cost 8 idle
// ones. (The first 8 have been idle over a second when the burst comes, so
// each pass finds 4 to close.) HTTP/1.1 connections end quickly once
// cancelled, so this would hold without the credits too (the next test's
// HTTP/2 connections, which end after a GOAWAY, show them).
TEST_CASE("max_connections: a burst at the limit closes one idle connection per new one") {
  const unsigned workers = GENERATE(1u, 2u);
  run_checked(workers, [] {
    LiveServer srv(echo_target, limited(64, 0ms));
    auto conns = idle_conns(srv, 8);
    sp::sleep_for(1100ms);
    for (auto& c : idle_conns(srv, 56)) conns.push_back(std::move(c));
    sp::TaskGroup g;
    std::atomic<int> answered{0};
    // Kept open to the end: a burst connection that closed would make room
    // for a later one without a pass.
    std::vector<io::TcpStream> burst(8);
    for (int i = 0; i < 8; ++i) {
      g.spawn([&, i] {
        auto& s = burst[static_cast<std::size_t>(i)];
        s = raw_connect(srv.port());
        std::string buf;
        if (get(s, buf, "/burst" + std::to_string(i)) == "/burst" + std::to_string(i)) answered.fetch_add(1);
      });
    }
    g.wait();
    FIBER_CHECK(answered.load() == 8);
    FIBER_CHECK(srv.server().connections_reclaimed() == 8);
    for (int i = 0; i < 8; ++i) FIBER_CHECK(closed_by_server(conns[static_cast<std::size_t>(i)]));
    std::string buf;
    FIBER_CHECK(get(conns[8], buf, "/kept") == "/kept");
  });
}

#if SERVER_LIMITS_HTTP2
// An HTTP/2 connection keeps its fiber while idle over TLS (and until
// idle_release_after on a plain one: off here), so the idle stamp that
// counts for it is its session's: no stream since. At the limit it is
// closed (GOAWAY) like an idle HTTP/1.1 one, oldest first.
TEST_CASE("max_connections: an idle HTTP/2 connection with its fiber is closed for a new one") {
  run_checked(2, [] {
    LiveServer srv(echo_target, limited(2, 0ms));
    http::ClientOptions o;
    o.http2 = http::ClientHttp2::prior_knowledge;
    http::Client h2(o);
    FIBER_CHECK(h2.get(srv.url("/h2")).text() == "/h2");  // the oldest: its stream ended first
    // Its stamp is when its stream's fiber ended, which may come a little
    // after the client has the answer: well apart from the next one's.
    sp::sleep_for(100ms);
    auto conns = idle_conns(srv, 1);
    auto fresh = raw_connect(srv.port());
    std::string buf;
    FIBER_CHECK(get(fresh, buf, "/new") == "/new");
    FIBER_CHECK(srv.server().connections_reclaimed() == 1);
    std::string b;
    FIBER_CHECK(get(conns[0], b, "/kept") == "/kept");  // the HTTP/1.1 one was not the one closed
    // The client saw the GOAWAY: its next request opens a new connection
    // (which waits for room in turn, until one of the others has idled a
    // second).
    FIBER_CHECK(h2.get(srv.url("/h2again")).text() == "/h2again");
    FIBER_CHECK(h2.stats().connections_opened == 2);
  });
}

// The credits (State::credits): a pass's connections are used by the next
// accepts before another pass closes more. Idle HTTP/2 connections end
// only after their writer has sent GOAWAY, so without them each new
// connection at the limit would start a pass of its own while the last
// pass's were still ending (2 each here: 12 for 6, or every idle one).
TEST_CASE("max_connections: a burst at the limit closes about one idle HTTP/2 connection per new one") {
  run_checked(2, [] {
    constexpr int kLimit = 32;  // 2 a pass
    LiveServer srv(echo_target, limited(kLimit, 0ms));
    std::vector<std::unique_ptr<http::Client>> clients;
    for (int i = 0; i < kLimit; ++i) {
      http::ClientOptions o;
      o.http2 = http::ClientHttp2::prior_knowledge;
      clients.push_back(std::make_unique<http::Client>(o));
      FIBER_CHECK(clients.back()->get(srv.url("/h2")).text() == "/h2");
      sp::sleep_for(3ms);  // distinct idle stamps, so the oldest are closed first
    }
    FIBER_CHECK(srv.server().connections_open() == kLimit);
    sp::sleep_for(1100ms);  // all idle over a second
    sp::TaskGroup g;
    std::atomic<int> answered{0};
    std::vector<io::TcpStream> burst(6);  // kept open, as above
    for (int i = 0; i < 6; ++i) {
      g.spawn([&, i] {
        auto& s = burst[static_cast<std::size_t>(i)];
        s = raw_connect(srv.port());
        std::string buf;
        if (get(s, buf, "/burst") == "/burst") answered.fetch_add(1);
      });
    }
    g.wait();
    FIBER_CHECK(answered.load() == 6);
    // 3 passes of 2; one more pass (2) if a credit ran out while its
    // connection was still ending on a loaded machine.
    const auto reclaimed = srv.server().connections_reclaimed();
    FIBER_CHECK(reclaimed >= 6);
    FIBER_CHECK(reclaimed <= 8);
  });
}
#endif

namespace {

// SoftFdLimit: lowers RLIMIT_NOFILE's soft limit so that exactly `spare`
// descriptors can still be opened (holes below the highest open one
// count), and restores it when destroyed.
class SoftFdLimit {
 public:
  explicit SoftFdLimit(int spare) {
    ::getrlimit(RLIMIT_NOFILE, &saved_);
    rlimit r = saved_;
    r.rlim_cur = static_cast<rlim_t>(highest_fd() + 1 + spare);
    for (int tries = 0; tries < 8; ++tries) {
      ::setrlimit(RLIMIT_NOFILE, &r);
      const int got = available();
      if (got == spare) {
        ok_ = true;
        return;
      }
      r.rlim_cur = static_cast<rlim_t>(static_cast<long>(r.rlim_cur) - (got - spare));
    }
  }
  ~SoftFdLimit() { ::setrlimit(RLIMIT_NOFILE, &saved_); }
  bool ok() const { return ok_; }

  // available: how many descriptors can be opened now.
  static int available() {
    std::vector<int> fds;
    for (;;) {
      const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (fd < 0) break;
      fds.push_back(fd);
    }
    for (int fd : fds) ::close(fd);
    return static_cast<int>(fds.size());
  }

 private:
  static int highest_fd() {
    const int probe = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    int high = probe;
    for (int fd = probe + 1; fd < probe + 4096; ++fd) {
      if (::fcntl(fd, F_GETFD) != -1) high = fd;
    }
    ::close(probe);
    return high;
  }
  rlimit saved_{};
  bool ok_ = false;
};

}  // namespace

// A WebSocket session never waits for a request, so making room cannot
// close it: without a cap of their own, max_connections silent sessions
// kept every plain request out (before max_upgraded, the GET below waited
// for as long as the sessions lived). By default an eighth of the limit
// stays for requests: 7 of 8 here.
TEST_CASE("max_upgraded: silent WebSocket sessions leave room for plain requests") {
  run_checked(2, [] {
    http::ServerOptions so;
    so.max_connections = 8;
    ws_test::WsServer ws(ws_test::echo, {}, so);
    std::vector<http::WebSocket> sessions;
    for (int i = 0; i < 7; ++i) sessions.push_back(http::WebSocket::connect(ws.url()));
    FIBER_CHECK(ws.srv.server().connections_upgraded() == 7);
    std::string what;
    FIBER_CHECK(ws_error_of([&] { http::WebSocket::connect(ws.url()); }, &what) == http::ws_errc::handshake_failed);
    FIBER_CHECK(what.find("503") != std::string::npos);
    auto s = raw_connect(ws.srv.port());
    std::string buf;
    FIBER_CHECK(get(s, buf, "/plain") == "plain\n");  // the eighth place
    FIBER_CHECK(ws.srv.server().connections_upgraded() == 7);
    for (auto& w : sessions) w.close();
  });
}

// An explicit cap; a place comes back when its session ends.
TEST_CASE("max_upgraded: a session that ends gives its place back") {
  run_checked(2, [] {
    http::ServerOptions so;
    so.max_upgraded = 2;
    ws_test::WsServer ws(ws_test::echo, {}, so);
    auto a = http::WebSocket::connect(ws.url());
    auto b = http::WebSocket::connect(ws.url());
    FIBER_CHECK(ws_error_of([&] { http::WebSocket::connect(ws.url()); }) == http::ws_errc::handshake_failed);
    a.close();
    FIBER_CHECK(wait_until([&] { return ws.srv.server().connections_upgraded() == 1; }));
    auto c = http::WebSocket::connect(ws.url());
    c.send_text("still here");
    FIBER_CHECK(c.receive().data == "still here");
    FIBER_CHECK(ws.srv.server().connections_upgraded() == 2);
    b.close();
    c.close();
    FIBER_CHECK(wait_until([&] { return ws.srv.server().connections_upgraded() == 0; }));
  });
}

// Out of descriptors below max_connections (its default, 7/8 of the limit
// serve() started under): 6 idle connections hold 12 descriptors (both
// ends are in this process) and one is left. The 7th connection's socket
// takes it, so the server's accept fails with EMFILE; once the first has
// been idle a second it is closed, and the 7th accepted. The other five,
// half a second younger, are kept: the process stays out of descriptors,
// so every accept after fails too, but with no connection waiting the
// listener waits for one (Linux's accept4 fails with EMFILE before it
// looks at the backlog) rather than closing idle connections for nobody.
TEST_CASE("out of descriptors: idle connections are closed so a new one is served, and only then") {
  run_checked(2, [] {
    LiveServer srv(echo_target);
    {
      auto warm = raw_connect(srv.port());
      std::string buf;
      FIBER_CHECK(get(warm, buf, "/warm") == "/warm");
    }
    FIBER_CHECK(wait_until([&] { return srv.server().connections_open() == 0; }));
    SoftFdLimit limit(13);
    FIBER_CHECK(limit.ok());
    if (!limit.ok()) return;
    auto conns = idle_conns(srv, 1);
    sp::sleep_for(500ms);
    for (auto& c : idle_conns(srv, 5)) conns.push_back(std::move(c));
    FIBER_CHECK(SoftFdLimit::available() == 1);
    auto fresh = raw_connect(srv.port());
    std::string buf;
    FIBER_CHECK(get(fresh, buf, "/new") == "/new");
    FIBER_CHECK(srv.server().connections_reclaimed() == 1);
    FIBER_CHECK(closed_by_server(conns[0]));
    sp::sleep_for(1500ms);  // the other five idle over a second now
    for (std::size_t i = 1; i < conns.size(); ++i) {
      std::string b;
      FIBER_CHECK(get(conns[i], b, "/kept") == "/kept");
    }
    FIBER_CHECK(srv.server().connections_reclaimed() == 1);
  });
}
