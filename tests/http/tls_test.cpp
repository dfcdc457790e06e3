// tls_test.cpp: https with http::Client against http::Server serving TLS
// (ServerOptions::tls), with a CA and certificate made at run time
// (tests/support/tls_test_certs.hpp): GET and POST round trips with
// keep-alive counted at the server, large bodies both ways, verification
// failures as errc::tls, stale pooled TLS connections replaced, a server
// that survives bad handshakes and shuts down past a silent one, and many
// concurrent fibers on 2 workers; and wss:// (WebSocket over TLS both
// ways). No descriptor may leak.
#include <filesystem>
#include <string>

#include <spindle/io/tls.hpp>
#include <spindle/io/http/websocket.hpp>
#include <spindle/sync/all.hpp>

#include "http_test_support.hpp"
#include "tls_test_certs.hpp"

using namespace spindle_test;
using namespace http_test;

namespace {

const tls_test::TestCerts& certs() {
  static const auto c = [] {
    auto t = tls_test::TestCerts::make();
    // Warm up what the process keeps open once used (the resolver's pool),
    // so descriptor counts compare only what a case opened.
    sp::Runtime rt(options(1));
    rt.block_on([] {
      auto l = io::TcpListener::bind("localhost", 0);
      io::TcpStream::connect("localhost", l.local_endpoint().port()).close();
    });
    return t;
  }();
  return *c;
}

http::ServerOptions tls_options() {
  http::ServerOptions o;
  o.tls = {certs().cert_file, certs().key_file};
  return o;
}

// These cases are about HTTP/1.1 over TLS (its pool, stale connections,
// keep-alive counts): HTTP/2, which ALPN would pick, is h2_client_test's.
http::ClientOptions trusting() {
  http::ClientOptions o;
  o.tls.ca_file = certs().ca_file;
  o.http2 = http::ClientHttp2::never;
  return o;
}

std::string https(const LiveServer& s, std::string_view path, std::string_view host = "127.0.0.1") {
  return "https://" + std::string(host) + ":" + std::to_string(s.port()) + std::string(path);
}

template <class F>
std::optional<http::errc> maybe_error_of(F&& f, std::string* what = nullptr) {
  try {
    f();
  } catch (const http::Error& e) {
    if (what) *what = e.what();
    return e.kind();
  }
  return std::nullopt;
}

http::Response echo(http::Request& q) {
  return http::Response::text_body(200, q.method + " " + q.target + " " + q.body);
}

}  // namespace

TEST_CASE("https: GET and POST over keep-alive against a TLS http::Server") {
  certs();
  const int fds = open_fds();
  run_checked(2, [] {
    LiveServer srv(echo, tls_options());
    http::Client c(trusting());
    for (int i = 0; i < 10; ++i) {
      auto r = c.get(https(srv, "/x/" + std::to_string(i)));
      FIBER_CHECK(r.status == 200);
      FIBER_CHECK(r.text() == "GET /x/" + std::to_string(i) + " ");
    }
    auto p = c.post(https(srv, "/p", "localhost"), "body!");
    FIBER_CHECK(p.text() == "POST /p body!");
    FIBER_CHECK(p.url == https(srv, "/p", "localhost"));
    // 127.0.0.1 and localhost are two pool keys: two connections.
    FIBER_CHECK(srv.server().connections_accepted() == 2);
    FIBER_CHECK(c.stats().connections_opened == 2);
    FIBER_CHECK(c.stats().connections_reused == 9);
    // Plain http:// to the same port is another pool key, and fails (the
    // server expects a handshake) without touching the https connections.
    FIBER_CHECK(maybe_error_of([&] { c.get(srv.url("/plain")); }).has_value());
    FIBER_CHECK(c.get(https(srv, "/again")).status == 200);
    FIBER_CHECK(c.stats().connections_reused == 10);
  });
  CHECK(open_fds() == fds);
}

TEST_CASE("https: large bodies both ways") {
  certs();
  const int fds = open_fds();
  const std::size_t size = kSanitized ? (2u << 20) : (8u << 20);
  run_checked(2, [size] {
    auto o = tls_options();
    o.max_body = 2 * size;
    http::Router r;
    r.get("/big", [size](http::Request&) {
      std::string b(size, '\0');
      for (std::size_t i = 0; i < size; ++i) b[i] = static_cast<char>('a' + (i * 7 + i / 4093) % 26);
      return http::Response::text_body(200, std::move(b));
    });
    r.post("/len", [](http::Request& q) {
      std::size_t sum = 0;
      for (unsigned char ch : q.body) sum += ch;
      return http::Response::text_body(200, std::to_string(q.body.size()) + " " + std::to_string(sum));
    });
    LiveServer srv(r, o);
    http::Client c(trusting());
    auto got = c.get(https(srv, "/big"));
    FIBER_CHECK(got.body.size() == size);
    bool same = true;
    for (std::size_t i = 0; i < size && same; ++i) same = got.body[i] == static_cast<char>('a' + (i * 7 + i / 4093) % 26);
    FIBER_CHECK(same);
    std::string up(size, '\0');
    std::size_t sum = 0;
    for (std::size_t i = 0; i < size; ++i) {
      up[i] = static_cast<char>((i * 13) & 0xff);
      sum += static_cast<unsigned char>(up[i]);
    }
    FIBER_CHECK(c.post(https(srv, "/len"), up).text() == std::to_string(size) + " " + std::to_string(sum));
  });
  CHECK(open_fds() == fds);
}

TEST_CASE("https: verification failures are errc::tls and the server keeps serving") {
  certs();
  const int fds = open_fds();
  run_checked(2, [] {
    LiveServer srv(echo, tls_options());
    std::string what;
    // The system store does not know the test CA.
    http::Client system;
    FIBER_CHECK(maybe_error_of([&] { system.get(https(srv, "/")); }, &what) == http::errc::tls);
    FIBER_CHECK(what.find("unable to get local issuer certificate") != std::string::npos);
    FIBER_CHECK(system.stats().open == 0);
    // An unrelated CA.
    http::ClientOptions other;
    other.tls.ca_file = certs().other_ca_file;
    http::Client wrong_ca(other);
    FIBER_CHECK(maybe_error_of([&] { wrong_ca.get(https(srv, "/")); }) == http::errc::tls);
    // The right CA, the wrong name: a server on 127.0.0.2, a certificate
    // for localhost and 127.0.0.1.
    http::Server other_addr(echo, tls_options());
    other_addr.listen("127.0.0.2", 0);
    auto serving = sp::spawn([&] { other_addr.serve(); });
    http::Client c(trusting());
    const std::string url = "https://127.0.0.2:" + std::to_string(other_addr.local_endpoint().port()) + "/";
    FIBER_CHECK(maybe_error_of([&] { c.get(url); }, &what) == http::errc::tls);
    FIBER_CHECK(what.find("mismatch") != std::string::npos);
    other_addr.shutdown();
    serving.join();
    // Verification off, explicitly.
    http::ClientOptions insecure;
    insecure.tls.verify = false;
    http::Client lax(insecure);
    FIBER_CHECK(lax.get(url.substr(0, 8) + "127.0.0.1:" + std::to_string(srv.port()) + "/ok").status == 200);
    // A plain-text client: the server drops it and keeps serving.
    io::TcpStream raw = raw_connect(srv.port());
    raw.write_all("GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    FIBER_CHECK(read_all(raw).find("HTTP/1.1 200") == std::string::npos);
    FIBER_CHECK(c.get(https(srv, "/still")).text() == "GET /still ");
  });
  CHECK(open_fds() == fds);
}

TEST_CASE("https: stale pooled connections are replaced; shutdown does not wait for a silent handshake") {
  certs();
  const int fds = open_fds();
  run_checked(2, [] {
    auto o = tls_options();
    o.idle_timeout = kSanitized ? 1000ms : 300ms;  // the handshake and first request come inside it
    o.drain_timeout = std::chrono::hours(1);  // a hang fails by the test's timeout
    LiveServer srv(echo, o);
    http::Client c(trusting());
    FIBER_CHECK(c.get(https(srv, "/1")).status == 200);
    FIBER_CHECK(c.stats().idle == 1);
    const auto end = Clock::now() + slack(10s);
    while (srv.server().connections_open() != 0 && Clock::now() < end) sp::sleep_for(1ms);
    // The server closed it (no close_notify on an idle timeout): the
    // client's first try ends without a response byte and is retried.
    FIBER_CHECK(c.get(https(srv, "/2")).text() == "GET /2 ");
    FIBER_CHECK(srv.server().connections_accepted() == 2);
    // A connection that never starts its handshake: shutdown cancels it
    // (it is idle: nothing was handed to a handler).
    io::TcpStream silent = raw_connect(srv.port());
    while (srv.server().connections_accepted() != 3) sp::sleep_for(1ms);
    srv.stop();
    FIBER_CHECK(read_all(silent).empty());
  });
  CHECK(open_fds() == fds);
}

TEST_CASE("https: many concurrent client fibers on 2 workers") {
  certs();
  const int fds = open_fds();
  const int fibers = kTsan ? 50 : kAsan ? 150 : 300;
  std::atomic<int> ok{0};
  run_checked(2, [&] {
    LiveServer srv(echo, tls_options());
    http::ClientOptions co = trusting();
    co.limit = 20;
    http::Client c(co);
    {
      sp::TaskGroup g;
      for (int i = 0; i < fibers; ++i) {
        g.spawn([&, i] {
          for (int k = 0; k < 3; ++k) {
            const std::string path = "/f" + std::to_string(i) + "/" + std::to_string(k);
            if (c.get(https(srv, path)).text() == "GET " + path + " ") ok.fetch_add(1);
          }
        });
      }
    }
    FIBER_CHECK(c.stats().open <= 20);
    FIBER_CHECK(srv.server().connections_accepted() <= 20);
  });
  CHECK(ok.load() == fibers * 3);
  CHECK(open_fds() == fds);
}

// wss://: http::WebSocket over TLS both ways (the server upgrades a TLS
// connection like a plain one).
namespace {

http::Handler ws_echo_router() {
  auto r = std::make_shared<http::Router>();
  r->get("/ws", http::websocket_handler([](http::WebSocket ws, const http::Request&) {
    try {
      for (;;) {
        auto m = ws.receive();
        if (m.is_close()) return;
        if (m.is_text()) ws.send_text(m.data);
        else ws.send_binary(m.data);
      }
    } catch (const http::WsError&) {
    }
  }));
  return [r](http::Request& q) { return (*r)(q); };
}

std::string wss(const LiveServer& s, std::string_view host = "127.0.0.1") {
  return "wss://" + std::string(host) + ":" + std::to_string(s.port()) + "/ws";
}

http::WsOptions ws_trusting() {
  http::WsOptions o;
  o.tls.ca_file = certs().ca_file;
  return o;
}

}  // namespace

TEST_CASE("wss: echo of text, binary, a 1 MiB message and a ping over TLS, then the close handshake") {
  certs();
  // The first WebSocket of a process opens the inert io_context's three
  // descriptors for good (docs/http.md "The executor"): not a leak.
  run_checked(1, [] {
    LiveServer srv(ws_echo_router(), tls_options());
    http::WebSocket::connect(wss(srv), ws_trusting()).close();
    srv.stop();
  });
  const int fds = open_fds();
  run_checked(2, [] {
    LiveServer srv(ws_echo_router(), tls_options());
    auto ws = http::WebSocket::connect(wss(srv), ws_trusting());
    ws.send_text("hello over tls");
    CHECK(ws.receive().data == "hello over tls");
    std::string big(1 << 20, '\0');
    Xorshift rng(7);
    for (auto& c : big) c = static_cast<char>(rng());
    ws.send_binary(big);
    auto m = ws.receive();
    CHECK(m.is_binary());
    CHECK(m.data == big);
    ws.ping("tls?");
    ws.send_text("after the ping");
    CHECK(ws.receive().data == "after the ping");
    CHECK(ws.pongs_received() == 1);
    ws.close(http::ws_close::normal, "done");
    CHECK(!ws.is_open());
    CHECK(ws.close_code() == http::ws_close::normal);
    srv.stop();
  });
  CHECK(open_fds() == fds);
}

TEST_CASE("wss: an untrusted certificate is ws_errc::tls_failed and the server keeps serving") {
  certs();
  run_checked(2, [] {
    LiveServer srv(ws_echo_router(), tls_options());
    try {
      http::WebSocket::connect(wss(srv));  // the system store does not know the test CA
      FIBER_CHECK(!"connected to an untrusted server");
    } catch (const http::WsError& e) {
      FIBER_CHECK(e.kind() == http::ws_errc::tls_failed);
      FIBER_CHECK(std::string(e.what()).find("wss://") != std::string::npos);
    }
    // The right CA, the wrong name: a server on 127.0.0.2, a certificate
    // for localhost and 127.0.0.1.
    http::Server other_addr(ws_echo_router(), tls_options());
    other_addr.listen("127.0.0.2", 0);
    auto serving = sp::spawn([&] { other_addr.serve(); });
    try {
      http::WebSocket::connect("wss://127.0.0.2:" + std::to_string(other_addr.local_endpoint().port()) + "/ws",
                               ws_trusting());
      FIBER_CHECK(!"connected to a host the certificate does not name");
    } catch (const http::WsError& e) {
      FIBER_CHECK(e.kind() == http::ws_errc::tls_failed);
      FIBER_CHECK(std::string(e.what()).find("mismatch") != std::string::npos);
    }
    other_addr.shutdown();
    serving.join();
    auto ws = http::WebSocket::connect(wss(srv), ws_trusting());
    ws.send_text("still here");
    CHECK(ws.receive().data == "still here");
    ws.close();
    srv.stop();
  });
}

TEST_CASE("wss: a sender and a receiver fiber on one TLS WebSocket, both directions at once") {
  certs();
  run_checked(2, [] {
    LiveServer srv(ws_echo_router(), tls_options());
    auto ws = http::WebSocket::connect(wss(srv), ws_trusting());
    constexpr int kMessages = 300;
    const std::string pad(4096, 'p');
    auto receiver = sp::spawn([&] {
      for (int i = 0; i < kMessages; ++i) {
        auto m = ws.receive();
        FIBER_CHECK(m.data == std::to_string(i) + pad);
      }
    });
    for (int i = 0; i < kMessages; ++i) ws.send_text(std::to_string(i) + pad);
    receiver.join();
    ws.close();
    srv.stop();
  });
}
