// no_limit_test.cpp: every timeout of ServerOptions, ClientOptions and
// WsOptions set to milliseconds::max(), the value users write for "no
// limit". In the clock's nanoseconds it wrapped to -1 ms, so a comparison
// `now - since >= timeout` always held: an HTTP/2 connection was closed as
// soon as it went quiet, the client dropped every idle connection, and
// UBSan (asan-ubsan preset) reported the overflows. The options are capped
// at ten years when their owner copies them (detail::capped).
#include <chrono>
#include <string>

#include "websocket_test_support.hpp"

using namespace spindle_test;
using namespace http_test;
using namespace std::chrono_literals;

namespace {

constexpr auto kMax = std::chrono::milliseconds::max();

http::ServerOptions server_options() {
  http::ServerOptions o;
  o.idle_timeout = kMax;
  o.idle_release_after = kMax;
  o.read_timeout = kMax;
  o.body_timeout = kMax;
  o.write_timeout = kMax;
  o.drain_timeout = kMax;
  o.disconnect_check = kMax;
  return o;
}

http::ClientOptions client_options(http::ClientHttp2 mode) {
  http::ClientOptions o;
  o.connect_timeout = kMax;
  o.read_timeout = kMax;
  o.total_timeout = kMax;
  o.keepalive_timeout = kMax;
  o.expect_continue_timeout = kMax;
  o.http2 = mode;
  return o;
}

http::Response echo_body(http::Request& q) { return http::Response::text_body(200, "got " + q.body); }

// Three requests (a GET, a POST with a body, a GET) with quiet gaps
// between them: one connection serves them all, on both sides.
void three_requests_one_connection(http::ClientHttp2 mode) {
  LiveServer s(echo_body, server_options());
  http::Client c(client_options(mode));
  FIBER_CHECK(c.get(s.url()).text() == "got ");
  sp::sleep_for(150ms);
  FIBER_CHECK(c.post(s.url("/post"), std::string(3000, 'b')).text() == "got " + std::string(3000, 'b'));
  sp::sleep_for(150ms);
  FIBER_CHECK(c.get(s.url()).text() == "got ");
  FIBER_CHECK(c.stats().connections_opened == 1);
  FIBER_CHECK(s.server().connections_accepted() == 1);
}

}  // namespace

TEST_CASE("no limit: timeouts of milliseconds::max() keep an HTTP/1.1 connection, both ends") {
  run_checked(2, [] { three_requests_one_connection(http::ClientHttp2::never); });
}

#if NO_LIMIT_HTTP2
TEST_CASE("no limit: timeouts of milliseconds::max() keep an HTTP/2 connection, both ends") {
  run_checked(2, [] { three_requests_one_connection(http::ClientHttp2::prior_knowledge); });
}
#endif

TEST_CASE("no limit: a WebSocket whose timeouts and heartbeat are milliseconds::max() echoes") {
  run_checked(2, [] {
    http::WsOptions wo;
    wo.close_timeout = kMax;
    wo.handshake_timeout = kMax;
    wo.heartbeat = kMax;
    wo.receive_timeout = kMax;
    wo.send_timeout = kMax;
    ws_test::WsServer s(ws_test::echo, wo, server_options());
    auto ws = http::WebSocket::connect(s.url(), wo);
    ws.send_text("one");
    FIBER_CHECK(ws.receive().data == "one");
    sp::sleep_for(100ms);
    ws.send_text("two");
    FIBER_CHECK(ws.receive().data == "two");
    ws.close();
  });
}
