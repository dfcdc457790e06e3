// http_tour.cpp: the http snippets of docs/guide.md (between the markers,
// verbatim): where a Server and a Client live, and how a client that goes
// away cancels its handler, with clean-up in shield. Loopback, port 0.
// Prints "ok" when the handler was cancelled and its clean-up ran.
#include <atomic>
#include <chrono>
#include <iostream>
#include <string>

#include <spindle/io/http/all.hpp>
#include <spindle/spindle.hpp>

namespace sp = spindle;
namespace http = spindle::http;
using namespace std::chrono_literals;

namespace {
std::atomic<bool> cleaned{false};
sp::Event started;
void save_partial_report() { cleaned = true; }
}  // namespace

int main() {
  // snippet: server_in_run
  return sp::run([] {  // Server, Client and streams are made inside run
    http::Router routes;
    routes.get("/report", [](http::Request&) {
      started.set();
      try {
        sp::sleep_for(1h);  // slow work; the client gives up meanwhile
      } catch (const sp::Cancelled&) {
        // The client went away: this fiber is cancelled. Clean-up that
        // waits runs in shield (any wait outside it raises Cancelled again).
        sp::shield([] {
          sp::sleep_for(10ms);
          save_partial_report();
        });
        throw;  // let the server end the connection
      }
      return http::Response::text_body(200, "done\n");
    });
    http::Server server(std::move(routes), {.disconnect_check = 50ms});
    server.listen("127.0.0.1", 0);
    auto serving = sp::spawn([&] { server.serve(); });

    http::Client client;
    const std::string url = "http://127.0.0.1:" + std::to_string(server.local_endpoint().port()) + "/report";
    try {
      sp::with_timeout(100ms, [&] { return client.get(url); });  // the client gives up
    } catch (const sp::TimedOut&) {
    }
    // end snippet
    const bool ok = sp::with_timeout(10s, [] {
      started.wait();
      while (!cleaned) sp::sleep_for(5ms);
      return true;
    });
    server.shutdown();
    serving.join();
    if (!ok) return 1;
    std::cout << "ok\n";
    return 0;
  });
}
