// client_keepalive_test.cpp: ClientOptions::keepalive_timeout. Idle pooled
// connections (HTTP/1.1, and HTTP/2 ones with no stream) are closed once
// older than it, and origins with nothing open are forgotten, so neither
// descriptors nor pool entries pile up with every host a Client has met
// (a crawler, a redirect chain through many hosts, refused connects);
// the pool's reaper fiber does it while nobody calls the Client.
#include <atomic>
#include <chrono>
#include <sstream>
#include <string>

#include "http_test_support.hpp"

using namespace spindle_test;
using namespace http_test;

namespace {

http::Response hello(http::Request&) { return http::Response::text_body(200, "hello"); }

// Two origins idle in the pool, then nobody calls the Client: past the
// timeout its reaper closes both idle connections (the servers see them
// close) and forgets both origins; the next request opens a fresh one.
void check_expiry(http::ClientHttp2 mode) {
  LiveServer a(hello), b(hello);
  const auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(slack(500ms));
  http::ClientOptions o;
  o.keepalive_timeout = timeout;
  o.http2 = mode;
  http::Client c(o);
  const auto t0 = Clock::now();
  FIBER_CHECK(c.get(a.url()).text() == "hello");
  FIBER_CHECK(c.get(b.url()).text() == "hello");
  FIBER_CHECK(c.stats().open == 2);
  FIBER_CHECK(c.stats().origins == 2);
  FIBER_CHECK(wait_until([&] { return c.stats().open == 0; }));
  FIBER_CHECK(Clock::now() - t0 >= timeout);  // not before the timeout
  FIBER_CHECK(c.stats().origins == 0);
  FIBER_CHECK(wait_until([&] { return a.server().connections_open() == 0; }));
  FIBER_CHECK(wait_until([&] { return b.server().connections_open() == 0; }));
  FIBER_CHECK(c.get(b.url("/again")).text() == "hello");
  FIBER_CHECK(c.stats().connections_opened == 3);
  FIBER_CHECK(c.stats().open == 1);
  FIBER_CHECK(c.stats().origins == 1);
  FIBER_CHECK(b.server().connections_accepted() == 2);
}

// reaper_alive: whether a Client's reaper fiber is live (by its name in
// the fiber dump); reaper_waiting: and has run to its wait.
bool in_fiber_dump(const std::string& what) {
  std::ostringstream out;
  sp::dump_fibers(out);
  return out.str().find(what) != std::string::npos;
}
// slack_ms: slack(d) in the unit keepalive_timeout takes.
std::chrono::milliseconds slack_ms(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(slack(d));
}

bool reaper_alive() { return in_fiber_dump("\"http-client-reaper\""); }
bool reaper_waiting() { return in_fiber_dump("\"http-client-reaper\" suspended"); }

}  // namespace

TEST_CASE("client keepalive: idle HTTP/1.1 connections past keepalive_timeout are closed, their origins forgotten") {
  run_checked(2, [] { check_expiry(http::ClientHttp2::never); });
}

#if CLIENT_KEEPALIVE_HTTP2
TEST_CASE("client keepalive: an HTTP/2 connection with no stream past keepalive_timeout is closed") {
  run_checked(2, [] { check_expiry(http::ClientHttp2::prior_knowledge); });
}
#endif

TEST_CASE("client keepalive: a connection used within the timeout is reused; 0 keeps idle connections") {
  run_checked(2, [] {
    LiveServer a(hello);
    {
      http::ClientOptions o;
      o.keepalive_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(slack(10s));
      http::Client c(o);
      for (int i = 0; i < 5; ++i) FIBER_CHECK(c.get(a.url()).text() == "hello");
      FIBER_CHECK(c.stats().connections_opened == 1);
    }
    {
      http::ClientOptions o;
      o.keepalive_timeout = 0ms;
      http::Client c(o);
      FIBER_CHECK(c.get(a.url()).text() == "hello");
      sp::sleep_for(50ms);
      FIBER_CHECK(c.get(a.url()).text() == "hello");
      FIBER_CHECK(c.stats().connections_opened == 1);
      FIBER_CHECK(c.stats().connections_reused == 1);
    }
  });
}

// Every origin a Client is sent to used to keep a pool entry for the
// Client's life, open or not. 300 refused origins (a redirect chain or a
// link list an attacker picks could name as many) leave none once past
// the timeout.
TEST_CASE("client keepalive: origins with nothing open do not pile up (300 refused origins)") {
  run_checked(2, [] {
    LiveServer a(hello);
    http::ClientOptions o;
    o.keepalive_timeout = 50ms;
    http::Client c(o);
    int refused = 0;
    for (int i = 0; i < 300; ++i) {
      const auto kind = error_of([&] { c.get("http://127.0.0.1:" + std::to_string(free_port()) + "/"); });
      refused += kind == http::errc::refused ? 1 : 0;
    }
    FIBER_CHECK(refused == 300);
    FIBER_CHECK(c.stats().open == 0);
    sp::sleep_for(100ms);
    FIBER_CHECK(c.get(a.url()).text() == "hello");
    // a's own entry, unless a stall over the 50 ms timeout let the reaper
    // close its connection first; none of the 300.
    FIBER_CHECK(c.stats().origins <= 1);
  });
}

// The reaper is one fiber while something is idle: it ends once nothing
// is (and a later idle connection starts it again), and at once when its
// Client goes, closing what was pooled without waiting for the timeout.
TEST_CASE("client keepalive: the reaper ends when nothing is idle and when its Client goes") {
  run_checked(2, [] {
    LiveServer a(hello);
    {
      // Long enough that the reaper is still there when the checks right
      // after a request look (a loaded machine may pause this fiber).
      http::Client c({.keepalive_timeout = slack_ms(500ms)});
      FIBER_CHECK(c.get(a.url()).text() == "hello");
      FIBER_CHECK(reaper_alive());
      FIBER_CHECK(wait_until([&] { return c.stats().open == 0 && !reaper_alive(); }));
      FIBER_CHECK(c.get(a.url()).text() == "hello");  // idle again: a new reaper
      FIBER_CHECK(reaper_alive());
      FIBER_CHECK(wait_until([&] { return c.stats().open == 0; }));
    }
    {
      http::Client c({.keepalive_timeout = slack_ms(60s)});
      FIBER_CHECK(c.get(a.url()).text() == "hello");
      FIBER_CHECK(wait_until(reaper_waiting));  // asleep until the timeout: only ~Client can end it
    }  // ~Client: the idle connection closes now, the reaper ends
    FIBER_CHECK(wait_until([&] { return a.server().connections_open() == 0 && !reaper_alive(); }, slack(5s)));
    {
      http::Client c({.keepalive_timeout = 0ms});  // no timeout: no reaper
      FIBER_CHECK(c.get(a.url()).text() == "hello");
      FIBER_CHECK(!reaper_alive());
    }
  });
}

// Requests racing the reaper: a 1 ms timeout on 4 workers, so the reaper
// sweeps while fibers take idle connections, give them back and open new
// ones on two origins (run under TSan in CI). Every request must get its
// answer; at the end nothing is left open and the reaper has ended.
TEST_CASE("client keepalive: requests racing the reaper (1 ms timeout, 4 workers)") {
  run_checked(4, [] {
    LiveServer a(hello), b(hello);
    http::Client c({.keepalive_timeout = 1ms});
    const int rounds = static_cast<int>(scaled(40));
    std::atomic<int> answered{0};
    sp::TaskGroup g;
    for (int f = 0; f < 16; ++f) {
      g.spawn([&, f] {
        Xorshift rng(static_cast<std::uint64_t>(f) + 1);
        for (int i = 0; i < rounds; ++i) {
          auto& srv = rng() % 2 == 0 ? a : b;
          if (c.get(srv.url()).text() == "hello") answered.fetch_add(1, std::memory_order_relaxed);
          sp::sleep_for(std::chrono::microseconds(rng() % 2000));
        }
      });
    }
    g.wait();
    FIBER_CHECK(answered.load() == 16 * rounds);
    FIBER_CHECK(wait_until([&] { return c.stats().open == 0 && c.stats().origins == 0 && !reaper_alive(); }));
    FIBER_CHECK(wait_until([&] { return a.server().connections_open() == 0 && b.server().connections_open() == 0; }));
  });
}
