// fetch_titles.cpp: the asyncio seeds' scraper, a class that fetches pages
// with bounded concurrency and extracts each page's <title>. Its Python
// twin: examples/python/fetch_titles.py.
//
// Scraper::scrape(urls) runs one fiber per URL (gathered), at most
// `concurrency` of them inside a request at once (a Semaphore), and
// returns one line per URL in input order: the title, "(no title)", or the
// failure. The example starts its own server on 127.0.0.1 with a few HTML
// pages, one without a title and one missing (404): the part between
// scaffold:begin and scaffold:end, left out of the guide's line counts
// (scripts/count_lines.py).
#include <atomic>
#include <chrono>
#include <iostream>
#include <regex>
#include <string>
#include <vector>

#include <spindle/io/http/all.hpp>
#include <spindle/spindle.hpp>

using namespace std::chrono_literals;
namespace sp = spindle;
namespace http = spindle::http;

namespace {

const std::regex kTitle("<title>([\\s\\S]*?)</title>", std::regex::icase);

class Scraper {
 public:
  Scraper(http::Client& client, int concurrency) : client_(client), limit_(concurrency) {}

  // scrape: one result line per URL, in the order given. May suspend.
  std::vector<std::string> scrape(const std::vector<std::string>& urls) {
    std::vector<sp::Task<std::string>> tasks;
    for (const auto& url : urls) tasks.push_back(sp::spawn([this, url] { return one(url); }));
    return sp::gather(tasks);
  }

  int peak() const { return peak_; }

 private:
  std::string one(const std::string& url) {
    auto permit = limit_.acquire_guard();
    const int now = ++busy_;
    for (int p = peak_; now > p && !peak_.compare_exchange_weak(p, now);) {
    }
    auto leave = sp::defer([&] { --busy_; });
    try {
      auto res = sp::with_timeout(5s, [&] { return client_.get(url); });
      if (res.status != 200) return "HTTP " + std::to_string(res.status);
      std::smatch m;
      const std::string html(res.text());
      return std::regex_search(html, m, kTitle) ? m[1].str() : "(no title)";
    } catch (const http::Error& e) {
      return "failed: " + e.code().message();
    }
  }

  http::Client& client_;
  sp::Semaphore limit_;
  std::atomic<int> busy_{0}, peak_{0};
};

}  // namespace

int main() {
  return sp::run([] {
    // scaffold:begin
    http::Router routes;
    routes.get("/page/:n", [](http::Request& q) {
      sp::sleep_for(5ms);  // so that requests overlap
      const std::string n(q.param("n"));
      if (n == "7") return http::Response::text_body(200, "<html><body>untitled</body></html>", "text/html");
      return http::Response::text_body(200, "<html><head><TITLE>Page " + n + "</TITLE></head></html>", "text/html");
    });
    http::Server server(routes);
    server.listen("127.0.0.1", 0);
    auto serving = sp::spawn([&] { server.serve(); });
    const std::string base = "http://127.0.0.1:" + std::to_string(server.local_endpoint().port());
    // scaffold:end
    std::vector<std::string> paths, urls;
    for (int i = 1; i <= 12; ++i) paths.push_back("/page/" + std::to_string(i));
    paths.push_back("/missing");
    for (const auto& p : paths) urls.push_back(base + p);

    http::Client client;
    Scraper scraper(client, 4);
    const auto titles = scraper.scrape(urls);
    for (std::size_t i = 0; i < paths.size(); ++i) std::cout << paths[i] << ": " << titles[i] << '\n';
    std::cout << "at most " << scraper.peak() << " requests at once\n";
    // scaffold:begin
    server.shutdown();
    serving.join();
    // scaffold:end
    return scraper.peak() <= 4 ? 0 : 1;
  });
}
