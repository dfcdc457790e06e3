// fetch_many.cpp: the asyncio seeds' fetch of many URLs with aiohttp, in
// spindle: at most 10 requests in flight (Semaphore), a timeout per request
// (with_timeout), and every failure handled on its own (gather_settled).
// Its Python twin: examples/python/fetch_many.py.
//
// The example starts its own server on 127.0.0.1 (port 0): /page/N answers
// at once with N bytes, /slow/N takes longer than the per-request timeout
// (2 s), /broken answers 500; one URL points at a port nobody listens on.
// That server is the part between scaffold:begin and scaffold:end, which
// scripts/count_lines.py leaves out of the guide's line counts.
#include <atomic>
#include <charconv>
#include <chrono>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include <spindle/io/http/all.hpp>
#include <spindle/spindle.hpp>

using namespace std::chrono_literals;
namespace sp = spindle;
namespace http = spindle::http;

int main() {
  return sp::run([] {
    // scaffold:begin
    sp::Event release_slow;  // lets /slow handlers end before shutdown
    http::Router routes;
    routes.get("/page/:n", [](http::Request& q) {  // n bytes, n up to 1 MiB
      std::size_t n = 0;
      const std::string_view p = q.param("n");
      const auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), n);
      if (ec != std::errc{} || end != p.data() + p.size() || n > (1u << 20))
        return http::Response::text_body(400, "bad size");
      return http::Response::text_body(200, std::string(n, 'x'));
    });
    routes.get("/slow/:n", [&](http::Request&) {
      release_slow.wait_for(10s);
      return http::Response::text_body(200, "late");
    });
    routes.get("/broken", [](http::Request&) { return http::Response::text_body(500, "oops"); });
    http::Server server(routes);
    server.listen("127.0.0.1", 0);
    auto serving = sp::spawn([&] { server.serve(); });
    std::uint16_t closed_port;  // bound, then closed: connections are refused
    {
      auto l = spindle::io::TcpListener::bind("127.0.0.1", 0);
      closed_port = l.local_endpoint().port();
    }
    const std::string base = "http://127.0.0.1:" + std::to_string(server.local_endpoint().port());
    // scaffold:end
    std::vector<std::string> paths;
    for (int i = 1; i <= 20; ++i) paths.push_back("/page/" + std::to_string(i * 100));
    for (int i = 1; i <= 3; ++i) paths.push_back("/slow/" + std::to_string(i));
    paths.push_back("/broken");

    sp::Semaphore limit(10);
    std::atomic<int> in_flight{0}, peak{0};
    http::Client client({.limit = 100, .limit_per_host = 10});
    auto fetch = [&](std::string url) -> std::string {
      auto permit = limit.acquire_guard();  // at most 10 past this line
      const int now = ++in_flight;
      for (int p = peak; now > p && !peak.compare_exchange_weak(p, now);) {
      }
      auto leave = sp::defer([&] { --in_flight; });
      try {
        auto res = sp::with_timeout(2s, [&] { return client.get(url); });
        if (res.status != 200) throw std::runtime_error("HTTP " + std::to_string(res.status));
        return std::to_string(res.body.size()) + " bytes";
      } catch (const http::Error& e) {
        throw std::runtime_error(e.code().message());  // without the URL's port
      }
    };
    std::vector<sp::Task<std::string>> tasks;
    for (const auto& p : paths) tasks.push_back(sp::spawn(fetch, base + p));
    tasks.push_back(sp::spawn(fetch, "http://127.0.0.1:" + std::to_string(closed_port) + "/refused"));
    paths.push_back("(closed port)/refused");

    int ok = 0, failed = 0;
    for (std::size_t i = 0; auto& r : sp::gather_settled(tasks)) {
      std::cout << paths[i++] << ": " << (r.ok() ? r.value() : "failed: " + r.what()) << '\n';
      ++(r.ok() ? ok : failed);
    }
    std::cout << ok << " ok, " << failed << " failed, at most " << peak << " in flight\n";
    // scaffold:begin
    release_slow.set();
    server.shutdown();
    serving.join();
    // scaffold:end
    return ok == 20 && failed == 5 && peak <= 10 ? 0 : 1;
  });
}
