// client_keepalive_test.cpp: ClientOptions::keepalive_timeout. Idle pooled
// connections (HTTP/1.1, and HTTP/2 ones with no stream) are closed once
// older than it, and origins with nothing open are forgotten, so neither
// descriptors nor pool entries pile up with every host a Client has met
// (a crawler, a redirect chain through many hosts, refused connects).
#include <chrono>
#include <string>

#include "http_test_support.hpp"

using namespace spindle_test;
using namespace http_test;

namespace {

http::Response hello(http::Request&) { return http::Response::text_body(200, "hello"); }

// Two origins idle in the pool, then past the timeout a request to one of
// them: both idle connections go (the servers see them close), the request
// opens a fresh one, and the other origin is forgotten.
void check_expiry(http::ClientHttp2 mode) {
  LiveServer a(hello), b(hello);
  const auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(slack(500ms));
  http::ClientOptions o;
  o.keepalive_timeout = timeout;
  o.http2 = mode;
  http::Client c(o);
  FIBER_CHECK(c.get(a.url()).text() == "hello");
  FIBER_CHECK(c.get(b.url()).text() == "hello");
  FIBER_CHECK(c.stats().open == 2);
  FIBER_CHECK(c.stats().origins == 2);
  sp::sleep_for(timeout * 2);
  // Nothing happens while the Client is not used (no timer of its own).
  FIBER_CHECK(c.stats().open == 2);
  FIBER_CHECK(c.get(b.url("/again")).text() == "hello");
  FIBER_CHECK(c.stats().connections_opened == 3);
  FIBER_CHECK(c.stats().open == 1);
  FIBER_CHECK(c.stats().origins == 1);
  FIBER_CHECK(wait_until([&] { return a.server().connections_open() == 0; }));
  FIBER_CHECK(wait_until([&] { return b.server().connections_open() == 1; }));
  FIBER_CHECK(b.server().connections_accepted() == 2);
}

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
    FIBER_CHECK(c.stats().origins == 1);
  });
}
