// fetch_titles.cpp: the asyncio seeds' scraper, a class that fetches pages
// with bounded concurrency and extracts each page's <title>. Its Python
// twin: examples/python/fetch_titles.py.
//
// Scraper::scrape(urls) runs one fiber per URL (gathered), at most
// `concurrency` of them inside a request at once (a Semaphore), and
// returns one line per URL in input order: the title (its first 60
// characters), "(no title)", or the failure. The example starts its own
// server on 127.0.0.1 with a few HTML pages, one without a title, one with
// a title of 100,000 characters, one slower than the 5 s timeout and one
// missing (404): the part between
// scaffold:begin and scaffold:end, left out of the guide's line counts
// (scripts/count_lines.py).
#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include <spindle/io/http/all.hpp>
#include <spindle/spindle.hpp>

using namespace std::chrono_literals;
namespace sp = spindle;
namespace http = spindle::http;

namespace {

// title_of: the text between the first <title> and the next </title>, any
// case, at most 60 characters of it. Not std::regex: libstdc++'s recurses
// once per character a `.*?` takes, so a page with a 1,000-character title
// overflowed the fiber's 64 KiB stack and aborted the program.
std::string title_of(std::string_view html) {
  std::string low(html.size(), ' ');
  std::ranges::transform(html, low.begin(), [](unsigned char c) { return std::tolower(c); });
  const auto open = low.find("<title>"), close = low.find("</title>", open);
  if (close == std::string::npos) return "(no title)";
  return std::string(html.substr(open + 7, std::min<std::size_t>(close - open - 7, 60)));
}

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
      return title_of(res.text());
    } catch (const http::Error& e) {
      return "failed: " + e.code().message();
    } catch (const sp::TimedOut& e) {  // one slow site fails alone, not the whole gather
      return "failed: " + std::string(e.what());
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
    sp::Event release_slow;  // lets /page/14's handler end before shutdown
    http::Router routes;
    routes.get("/page/:n", [&](http::Request& q) {
      sp::sleep_for(5ms);  // so that requests overlap
      const std::string n(q.param("n"));
      if (n == "14") release_slow.wait_for(10s);  // over the 5 s timeout
      if (n == "7") return http::Response::text_body(200, "<html><body>untitled</body></html>", "text/html");
      if (n == "13")  // a title of 100,000 characters: the reason title_of is not a std::regex
        return http::Response::text_body(200, "<title>Page 13 " + std::string(100000, '~') + "</title>", "text/html");
      return http::Response::text_body(200, "<html><head><TITLE>Page " + n + "</TITLE></head></html>", "text/html");
    });
    http::Server server(routes);
    server.listen("127.0.0.1", 0);
    auto serving = sp::spawn([&] { server.serve(); });
    const std::string base = "http://127.0.0.1:" + std::to_string(server.local_endpoint().port());
    // scaffold:end
    std::vector<std::string> paths, urls;
    for (int i = 1; i <= 14; ++i) paths.push_back("/page/" + std::to_string(i));
    paths.push_back("/missing");
    for (const auto& p : paths) urls.push_back(base + p);

    http::Client client;
    Scraper scraper(client, 4);
    const auto titles = scraper.scrape(urls);
    for (std::size_t i = 0; i < paths.size(); ++i) std::cout << paths[i] << ": " << titles[i] << '\n';
    std::cout << "at most " << scraper.peak() << " requests at once\n";
    // scaffold:begin
    release_slow.set();
    server.shutdown();
    serving.join();
    // scaffold:end
    return scraper.peak() <= 4 ? 0 : 1;
  });
}
