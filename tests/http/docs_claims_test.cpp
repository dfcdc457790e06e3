// docs_claims_test.cpp: behaviour that docs/http.md states and no other
// test held (issue 42's audit of the page): what the client does not do
// ("Limits and what is not done": no decompression, no cookie jar, no proxy
// taken from the environment), and which idle connection the pool hands
// out first ("Client", Pool: the most recently used).
#include <cstdlib>
#include <string>

#include <spindle/sync/all.hpp>

#include "http_test_support.hpp"

using namespace spindle_test;
using namespace http_test;

namespace {

// ReplyPeer: a RawPeer that records each request head and answers it with
// `reply`, keeping the connection for the next request.
class ReplyPeer : public RawPeer {
 public:
  ReplyPeer(Heads& heads, std::string reply)
      : RawPeer([&heads, reply = std::move(reply)](io::TcpStream& s) {
          std::string buf;
          for (;;) {
            heads.add(lower(read_head(s, buf)));
            s.write_all(reply);
          }
        }) {}
};

}  // namespace

TEST_CASE("docs: the client asks for no encoding and returns the body as sent", "[docs_claims]") {
  run_checked(2, [] {
    Heads heads;
    // Bytes that start like gzip: a client that decompressed would change
    // them or fail on them.
    const std::string body("\x1f\x8b\x08\x00not-really-gzip", 19);
    ReplyPeer peer(heads, "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: " +
                              std::to_string(body.size()) + "\r\n\r\n" + body);
    http::Client c;
    auto r = c.get(peer.url("/z"));
    FIBER_CHECK(r.status == 200);
    FIBER_CHECK(r.body == body);
    FIBER_CHECK(r.headers.get("Content-Encoding").value_or("") == "gzip");
    FIBER_CHECK(heads.all().size() == 1);
    FIBER_CHECK(heads.all()[0].find("accept-encoding") == std::string::npos);
  });
}

TEST_CASE("docs: the client keeps no cookies", "[docs_claims]") {
  run_checked(2, [] {
    Heads heads;
    ReplyPeer peer(heads,
                   "HTTP/1.1 200 OK\r\nSet-Cookie: session=abc; Path=/\r\nContent-Length: 2\r\n\r\nok");
    http::Client c;
    FIBER_CHECK(c.get(peer.url("/login")).status == 200);
    FIBER_CHECK(c.get(peer.url("/next")).status == 200);
    const auto all = heads.all();
    FIBER_CHECK(all.size() == 2);
    for (const auto& h : all) FIBER_CHECK(h.find("cookie") == std::string::npos);
  });
}

TEST_CASE("docs: the client takes no proxy from the environment", "[docs_claims]") {
  // A proxy that would be used refuses (port 1), so the request only
  // succeeds when it goes to the peer directly. Set before the runtime's
  // threads start, unset after they are gone.
  ::setenv("http_proxy", "http://127.0.0.1:1", 1);
  ::setenv("HTTP_PROXY", "http://127.0.0.1:1", 1);
  ::setenv("ALL_PROXY", "http://127.0.0.1:1", 1);
  run_checked(2, [] {
    Heads heads;
    ReplyPeer peer(heads, "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\ndirect");
    http::Client c;
    auto r = c.get(peer.url("/p"));
    FIBER_CHECK(r.status == 200);
    FIBER_CHECK(r.body == "direct");
    FIBER_CHECK(heads.all().size() == 1);
    // Origin form, as to a server; a proxy would get the absolute URL.
    FIBER_CHECK(heads.all()[0].starts_with("get /p http/1.1\r\n"));
  });
  ::unsetenv("http_proxy");
  ::unsetenv("HTTP_PROXY");
  ::unsetenv("ALL_PROXY");
}

TEST_CASE("docs: the pool hands out the most recently used idle connection", "[docs_claims]") {
  run_checked(2, [] {
    // Each connection answers with its number (accept order). The second
    // request on connection 1 is held until the test lets it go, so
    // connection 2 goes back to the pool first and connection 1 last.
    std::atomic<int> next_id{0};
    sp::Event release_first;
    RawPeer peer([&](io::TcpStream& s) {
      const int id = ++next_id;
      std::string buf;
      for (int n = 1;; ++n) {
        read_head(s, buf);
        if (id == 1 && n == 2) release_first.wait();
        s.write_all("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n" + std::to_string(id));
      }
    });
    http::Client c;
    FIBER_CHECK(c.get(peer.url()).body == "1");  // connection 1, now idle
    // Two at once: one takes connection 1 (held), the other opens 2.
    auto a = sp::spawn([&] { return c.get(peer.url()).body; });
    auto b = sp::spawn([&] { return c.get(peer.url()).body; });
    const std::size_t first = sp::when_any(a, b);
    sp::Task<std::string>& done = first == 0 ? a : b;
    sp::Task<std::string>& held = first == 0 ? b : a;
    FIBER_CHECK(done.join() == "2");  // back in the pool
    release_first.set();
    FIBER_CHECK(held.join() == "1");  // back in the pool after 2
    // Most recently used first: connection 1.
    FIBER_CHECK(c.get(peer.url()).body == "1");
    FIBER_CHECK(peer.accepted() == 2);
  });
}
