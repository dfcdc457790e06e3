// h2_hostile_hooks_test.cpp: http::Server's HTTP/2 side where only a test
// hook provokes the case (io/src/test_hooks.hpp). This program alone
// compiles its own copy of h2_server.cpp with SPINDLE_IO_TEST_HOOKS
// (tests/http/CMakeLists.txt).
//  - The session's nghttp2_session_mem_send fails (out of memory) with no
//    GOAWAY of ours: the writer ends. A HEADERS the client sends after
//    that starts no handler (nobody would write its answer), and the
//    connection ends.
//  - The same failure cancels the streams' handlers at once: the
//    connection is cut, not kept in a lingering close while a client
//    takes our last bytes slowly.
#include <atomic>
#include <chrono>
#include <string>

#include <spindle/sync/event.hpp>

#include "h2_test_client.hpp"
#include "http_test_support.hpp"
#include "io_test.hpp"
#include "test_hooks.hpp"

using namespace spindle_test;
using namespace h2_test;
using namespace std::chrono_literals;
namespace http = spindle::http;
namespace hooks = spindle::io::detail::io_test_hooks;

namespace {

void expect(bool ok, const std::string& what) {
  if (!ok) fiber_failures().add(what);
}

// What the hook does, set by each test before it arms it.
std::atomic<bool> fail_next{false};      // h2_send: the next call fails
std::atomic<bool> hold_end{false};       // h2_writer_end: wait for *resume
std::atomic<bool> holding{false};        // ... and it is waiting now
std::atomic<bool> slow_linger{false};    // h2_linger: a client taking bytes slowly
std::atomic<int> linger_left{0};         // its falling count
std::atomic<sp::Event*> resume{nullptr};

int hook(hooks::Point p, int) {
  switch (p) {
    case hooks::Point::h2_send:
      return fail_next.exchange(false) ? NGHTTP2_ERR_NOMEM : 0;
    case hooks::Point::h2_writer_end:
      if (hold_end.exchange(false)) {
        holding.store(true);
        try {
          resume.load()->wait_for(slack(20s));
        } catch (...) {  // the server's drain: the writer goes on
        }
      }
      return 0;
    case hooks::Point::h2_linger:
      // Falling by one a poll: progress every time, so only write_timeout
      // ends the linger.
      return slow_linger.load() ? linger_left.fetch_sub(1) : 0;
    default:
      return 0;
  }
}

struct HookGuard {
  HookGuard() {
    fail_next = hold_end = holding = slow_linger = false;
    linger_left = 1'000'000;
    hooks::hook.store(&hook);
  }
  ~HookGuard() { hooks::hook.store(nullptr); }
};

}  // namespace

TEST_CASE("h2 hooks: a HEADERS after the session failed starts no handler, and the connection ends") {
  run_checked(2, [] {
    HookGuard g;
    std::atomic<int> late{0};
    http::Router r;
    r.get("/late", [&](http::Request&) {
      late.fetch_add(1);
      return http::Response::text_body(200, "nobody reads this");
    });
    ok_route(r);
    H2Server srv(std::move(r));
    sp::Event go;
    resume = &go;
    RawConn c(srv.port());
    c.send(preface() + headers(1, plain_block("GET", "/ok"), true));
    c.end_of(1, slack(10s));
    expect(c.status_of(1) == 200, "stream 1 not served:" + describe(c));
    // The writer's next mem_send fails (the PING's ack wakes it), and its
    // end is held where its last write would wait on a client that reads
    // nothing.
    fail_next = true;
    hold_end = true;
    c.send(ping(7));
    FIBER_CHECK(wait_until([] { return holding.load(); }));
    // The reader still reads (it ends with the connection): before, it fed
    // this to the session, whose callbacks started the handler.
    c.send(headers(3, plain_block("GET", "/late"), true));
    expect(!wait_until([&] { return late.load() > 0; }, 2s), "a handler started after the writer ended");
    go.set();
    FIBER_CHECK(c.drain_to_eof(slack(10s)));
    FIBER_CHECK(late.load() == 0);
    FIBER_CHECK(c.status_of(3) == 0);
    FIBER_CHECK(serves(srv.port(), slack(10s)));
  });
}

TEST_CASE("h2 hooks: a failed session cancels its handlers at once, without a lingering close") {
  run_checked(2, [] {
    HookGuard g;
    http::ServerOptions o;
    // A lingering close lasts while the client takes bytes, up to this.
    o.write_timeout = 60s;
    std::atomic<int> in{0};
    std::atomic<bool> cancelled{false};
    sp::Event never;
    http::Router r;
    r.get("/hold", [&](http::Request&) {
      in.fetch_add(1);
      try {
        never.wait_for(slack(60s));
      } catch (const sp::Cancelled&) {
        cancelled = true;
        throw;
      }
      return http::Response::text_body(200, "held");
    });
    ok_route(r);
    H2Server srv(std::move(r), o);
    RawConn c(srv.port());
    c.send(preface() + headers(1, plain_block("GET", "/hold"), true));
    FIBER_CHECK(wait_until([&] { return in.load() == 1; }));
    slow_linger = true;
    fail_next = true;
    c.send(ping(7));
    // Its answer can never be sent: before, it ran on until the linger
    // ended, here write_timeout (60 s) away.
    expect(wait_until([&] { return cancelled.load(); }, slack(10s)), "the handler outlived its connection's session");
    FIBER_CHECK(c.drain_to_eof(slack(10s)));
    slow_linger = false;
    FIBER_CHECK(serves(srv.port(), slack(10s)));
  });
}
