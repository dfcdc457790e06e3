// client_alloc_fail_test.cpp: http::Client when one allocation fails.
// This binary replaces operator new with one that can be told to fail the
// n-th allocation from now (faulty_new.hpp). Out of memory may fail the
// call under way (bad_alloc, or an http::Error if the server's side of it
// was the one that failed); it must not end the process.
#include <chrono>
#include <new>
#include <string>
#include <thread>

#include "faulty_new.hpp"
#include "http_test_support.hpp"

using namespace spindle_test;
using namespace http_test;
using namespace std::chrono_literals;

namespace {
http::Response echo_target(http::Request& q) { return http::Response::text_body(200, q.method + " " + q.target); }
}  // namespace

// The pool's sweep (keepalive_timeout) moves expired idle connections to a
// list, under the pool's lock, in a noexcept function: a push_back that
// ran out of memory there ended the process (std::terminate). Now the list
// is reserved first, and out of memory skips that sweep until the next.
// The walk over n starts just before the pooled connection expires, so
// one of its failures lands on the reaper fiber's sweep; the others land
// elsewhere (the reaper's wait, a socket's close), which may fail a call
// or end the reaper (a later call starts another), never the process.
// Then the Client is destroyed under the same walk (shut(), whose list
// had the same push_back).
TEST_CASE("client: one failed allocation while the pool sweeps or shuts fails one call at most") {
  if (!faulty_new::kActive) {
    WARN("ASan keeps its own operator new: no allocation failures to inject here");
    return;
  }
  run_checked(2, [] {
    LiveServer srv(echo_target);
    const std::string url = srv.url("/a");
    const long failed_before = faulty_new::failed.load();
    // nap: lets 40 ms pass by yielding, which allocates nothing (a
    // sleep's timer could take the failure meant for the sweep).
    auto nap = [](std::chrono::milliseconds d) {
      const auto until = std::chrono::steady_clock::now() + d;
      while (std::chrono::steady_clock::now() < until) sp::yield();
    };
    http::ClientOptions o;
    o.keepalive_timeout = 20ms;
    // Which allocation in the window is the sweep's depends on the other
    // worker's timing: the walk goes over the first twelve, four times.
    for (long i = 0; i < 48; ++i) {
      const long n = 1 + i % 12;
      INFO("the allocation that failed: the " << n << "th");
      {
        http::Client c(o);
        FIBER_CHECK(c.get(url).body == "GET /a");  // pooled, and the reaper started
        faulty_new::fail_in.store(n);
        nap(40ms);  // the connection expires and the reaper sweeps
        faulty_new::fail_in.store(0);
        try {
          FIBER_CHECK(c.get(url).body == "GET /a");
        } catch (const http::Error&) {  // the server's side of it out of memory
        }
        FIBER_CHECK(c.stats().open <= 1);
        faulty_new::fail_in.store(n);
      }  // shut()
      faulty_new::fail_in.store(0);
    }
    // The walk did fail allocations (few are made in these windows: the
    // first ones fail, the rest of the walk makes sure none is missed).
    FIBER_CHECK(faulty_new::failed.load() - failed_before >= 4);
  });
}
