// docs_claims_test.cpp: behaviour that docs/http.md states and no other
// test held (issue 42's audit of the page): what the client does not do
// ("Limits and what is not done": no decompression, no cookie jar, no proxy
// taken from the environment), and which idle connection the pool hands
// out first ("Client", Pool: the most recently used), and that the https
// server resumes a TLS session a client offers ("Limits").
#include <cstdlib>
#include <string>
#include <system_error>

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

#if __has_include(<openssl/ssl.h>)
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <unistd.h>

#include "tls_test_certs.hpp"

namespace {
// resumed: connects twice with OpenSSL (blocking, on a plain thread) at
// `version`, offering the first connection's session on the second; each
// sends one request and reads the answer to its end (so TLS 1.3's tickets,
// sent after the handshake, are read). True when the second handshake
// resumed the session.
bool resumed(std::uint16_t port, int version) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);  // the session is the subject here
  SSL_CTX_set_min_proto_version(ctx, version);
  SSL_CTX_set_max_proto_version(ctx, version);
  SSL_SESSION* session = nullptr;
  bool reused = false;
  for (int i = 0; i < 2; ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) break;
    SSL* ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (session != nullptr) SSL_set_session(ssl, session);
    if (SSL_connect(ssl) == 1) {
      const std::string req = "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
      SSL_write(ssl, req.data(), static_cast<int>(req.size()));
      char buf[4096];
      while (SSL_read(ssl, buf, sizeof buf) > 0) {
      }
      if (i == 1) reused = SSL_session_reused(ssl) == 1;
      if (session == nullptr) session = SSL_get1_session(ssl);
      // A connection freed without a shutdown marks its session not
      // resumable (OpenSSL's ssl_clear_bad_session).
      SSL_shutdown(ssl);
    }
    SSL_free(ssl);
    ::close(fd);
  }
  if (session != nullptr) SSL_SESSION_free(session);
  SSL_CTX_free(ctx);
  return reused;
}
}  // namespace

TEST_CASE("docs: the https server resumes a session its client offers", "[docs_claims]") {
  auto certs = tls_test::TestCerts::make();
  run_checked(2, [&] {
    http::ServerOptions o;
    o.tls = {certs->cert_file, certs->key_file};
    http::Server srv([](http::Request&) { return http::Response::text_body(200, "hi"); }, o);
    try {
      srv.listen("127.0.0.1", 0);
    } catch (const std::system_error& e) {
      // Built without OpenSSL: ServerOptions::tls makes listen() throw, and
      // there is no TLS to resume.
      FIBER_CHECK(e.code() == std::errc::function_not_supported);
      return;
    }
    auto serving = sp::spawn([&] { srv.serve(); });
    const std::uint16_t port = srv.local_endpoint().port();
    FIBER_CHECK(sp::blocking([port] { return resumed(port, TLS1_2_VERSION); }));
    FIBER_CHECK(sp::blocking([port] { return resumed(port, TLS1_3_VERSION); }));
    srv.shutdown();
    serving.join();
  });
}
#endif
