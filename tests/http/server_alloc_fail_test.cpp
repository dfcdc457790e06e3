// server_alloc_fail_test.cpp: http::Server when one allocation fails.
// This binary replaces operator new with one that can be told to fail the
// n-th allocation from now (on any thread): the test walks n over the
// allocations a released connection's revival makes (the waker's registry
// entry and fiber, the connection's buffers, the sweeper's lists) and
// checks after each that the server still accepts and serves, and that
// every connection is closed and counted out at the end; and the same
// walk over a shutdown with idle connections, which must not wait out
// drain_timeout for any of them. Out of memory
// may end one connection; it must not end the server. Before, a bad_alloc
// in the waker (or the sweeper, or the disconnect watcher) failed the
// server's TaskGroup: every connection and the acceptor were cancelled
// while serve() waited on, with the listener open and nothing served.
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "faulty_new.hpp"
#include "http_test_support.hpp"

using namespace spindle_test;
using namespace http_test;
using namespace std::chrono_literals;

namespace {

http::Response echo_target(http::Request& q) { return http::Response::text_body(200, q.method + " " + q.target); }

// served: a fresh connection's GET gets its answer (bounded).
bool served(std::uint16_t port) {
  try {
    return sp::with_timeout(slack(5s), [&] {
      auto s = raw_connect(port);
      s.write_all("GET /probe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
      std::string buf;
      return body_of(read_response(s, buf)) == "GET /probe";
    });
  } catch (const std::exception&) {
    return false;
  }
}

}  // namespace

TEST_CASE("server: one failed allocation while a released connection revives ends that connection at most") {
  if (!faulty_new::kActive) {
    WARN("ASan keeps its own operator new: no allocation failures to inject here");
    return;
  }
  run_checked(2, [] {
    http::ServerOptions o;
    o.idle_release_after = 10ms;
    o.idle_timeout = 60s;
    LiveServer srv(echo_target, o);
    constexpr long kTries = 80;
    long failed_in_server = 0;
    for (long n = 1; n <= kTries; ++n) {
      INFO("the allocation that failed: the " << n << "th after the request");
      auto s = raw_connect(srv.port());
      // Released before the request comes (it wakes the connection).
      FIBER_CHECK(wait_until([&] { return srv.server().connections_released() >= 1; }));
      const std::string req = "GET /r HTTP/1.1\r\nHost: x\r\n\r\n";
      std::string buf;
      buf.reserve(4096);
      const long failed_before = faulty_new::failed.load();
      bool answered = false;
      faulty_new::fail_in.store(n);
      try {
        sp::with_timeout(slack(5s), [&] {
          s.write_all(req);
          answered = body_of(read_response(s, buf)) == "GET /r";
        });
      } catch (...) {
        // Ours failed (the test's own allocation), or the server ended
        // the connection: both allowed.
      }
      faulty_new::fail_in.store(0);
      if (faulty_new::failed.load() != failed_before && !answered) ++failed_in_server;
      s.close();
      FIBER_CHECK(served(srv.port()));
      FIBER_CHECK(wait_until([&] { return srv.server().connections_open() == 0; }));
    }
    INFO("tries whose failure cost the request: " << failed_in_server);
    FIBER_CHECK(served(srv.port()));
  });
}

// A connection idle past idle_release_after is released: its fiber hands
// it to the registry (an entry in `parked`) and ends. That entry's
// allocation failing escaped the fiber (release runs after run_conn's
// catch) and failed the server's TaskGroup: the acceptor and every
// connection were cancelled. Each try fails one allocation from the
// moment the connection's answer has arrived, past its release.
TEST_CASE("server: one failed allocation while a connection is released ends that connection at most") {
  if (!faulty_new::kActive) {
    WARN("ASan keeps its own operator new: no allocation failures to inject here");
    return;
  }
  run_checked(2, [] {
    http::ServerOptions o;
    o.idle_release_after = 20ms;
    o.idle_timeout = 60s;
    LiveServer srv(echo_target, o);
    for (long n = 1; n <= 40; ++n) {
      INFO("the allocation that failed: the " << n << "th after the answer");
      auto s = raw_connect(srv.port());
      const std::uint64_t released_before = srv.server().connections_released();
      std::string buf;
      buf.reserve(4096);
      s.write_all("GET /r HTTP/1.1\r\nHost: x\r\n\r\n");
      FIBER_CHECK(body_of(read_response(s, buf)) == "GET /r");
      faulty_new::fail_in.store(n);
      // Released, or ended by the failure (the test's own wait may fail
      // too: it is only a wait).
      try {
        (void)wait_until([&] {
          return srv.server().connections_released() > released_before || srv.server().connections_open() == 0;
        });
      } catch (const std::bad_alloc&) {
      }
      sp::sleep_for(50ms);
      faulty_new::fail_in.store(0);
      s.close();
      const bool serves = served(srv.port()) && wait_until([&] { return srv.server().connections_open() == 0; });
      FIBER_CHECK(serves);
      if (!serves) break;  // the server is gone: every later try would only wait out its timeouts
    }
    FIBER_CHECK(served(srv.port()));
  });
}

// Shutdown cancels every idle connection's fiber (its idle wait reads
// `stopping` only before it waits) and closes every released one, in one
// scan. Out of memory for the scan's lists, it did nothing, and the drain
// waited drain_timeout (here 30 s) for the idle fibers; now it goes in
// batches with no list. Each try fails one allocation of the shutdown.
TEST_CASE("server: one failed allocation during shutdown does not hold the drain for idle connections") {
  if (!faulty_new::kActive) {
    WARN("ASan keeps its own operator new: no allocation failures to inject here");
    return;
  }
  run_checked(2, [] {
    for (const auto release : {0ms, 10ms}) {
      for (long n = 1; n <= 40; ++n) {
        INFO("idle_release_after " << release.count() << " ms; the allocation that failed: the " << n << "th");
        http::ServerOptions o;
        o.idle_release_after = release;
        o.drain_timeout = 30s;
        std::optional<LiveServer> srv(std::in_place, echo_target, o);
        std::vector<io::TcpStream> idle;
        for (int i = 0; i < 3; ++i) {
          idle.push_back(raw_connect(srv->port()));
          idle.back().write_all("GET /i HTTP/1.1\r\nHost: x\r\n\r\n");
          std::string buf;
          FIBER_CHECK(body_of(read_response(idle.back(), buf)) == "GET /i");
        }
        if (release.count() > 0) {
          FIBER_CHECK(wait_until([&] { return srv->server().connections_released() == 3; }));
        }
        const auto t0 = Clock::now();
        faulty_new::fail_in.store(n);
        try {
          srv->stop();
        } catch (...) {
          // serve() may raise the bad_alloc itself: allowed.
        }
        faulty_new::fail_in.store(0);
        FIBER_CHECK(Clock::now() - t0 < slack(5s));
        srv.reset();
      }
    }
  });
}
