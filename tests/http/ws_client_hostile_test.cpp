// ws_client_hostile_test.cpp: the holes issue 41 closed in http::Client,
// checked where they were left open (the review of issue 41):
// WebSocket::connect's URL (url.hpp's parser now: control bytes, bad
// hosts, encoding, user:password@ as Basic auth) and its handshake fields
// (CR/LF/NUL, the handshake's own fields); no userinfo in any error text,
// of the WebSocket or of the Client, whatever the URL's shape; and fields
// added more than once (Headers::add) sent as often as added, by both.
// The peers are RawPeer (what exactly the client sent; it answers a
// WebSocket handshake 400, so connect ends at once) and, for the one
// handshake that must succeed, a Server with a websocket_handler.
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "websocket_test_support.hpp"

using namespace spindle_test;
using namespace ws_test;
using namespace http_test;

namespace {

// Refuser: a RawPeer that records each request head and answers it 400
// (recorded before the answer: once connect() has failed, the head is
// there). A WebSocket handshake against it ends in handshake_failed.
struct Refuser {
  Heads heads;
  RawPeer peer{[this](io::TcpStream& s) {
    std::string buf;
    for (;;) {
      heads.add(read_head(s, buf));
      s.write_all("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    }
  }};
  std::string hostport() const { return peer.url("").substr(7); }  // "127.0.0.1:port"
  std::string ws(std::string_view path = "/") const { return "ws://" + hostport() + std::string(path); }
};

http::WsOptions with(std::string name, std::string value) {
  http::WsOptions o;
  o.headers.add(name, value);
  return o;
}

}  // namespace

TEST_CASE("ws client hostile: CR, LF and NUL in the URL and the handshake fields are refused before a connect") {
  run_checked(2, [] {
    Refuser p;
    const std::string base = "ws://" + p.hostport();
    for (const std::string& u :
         {base + "/a\r\nX-Injected: yes", base + "/a?q=1\r\nX-Injected: yes", base + "/a\nb",
          base + std::string("/a\0b", 4), base + "/\r\n\r\nGET /smuggled HTTP/1.1", base + "/tab\there",
          std::string("ws://127.0.0.1\r\nX-Injected: yes/")}) {
      std::string what;
      FIBER_CHECK(ws_error_of([&] { http::WebSocket::connect(u); }, &what) == http::ws_errc::invalid_url);
      FIBER_CHECK(what.find('\n') == std::string::npos);  // the text cannot inject log lines either
    }
    auto connect = [&](http::WsOptions o) { http::WebSocket::connect(p.ws(), std::move(o)); };
    FIBER_CHECK(invalid_argument([&] { connect(with("X-A", "v\r\nX-Injected: yes")); }));
    FIBER_CHECK(invalid_argument([&] { connect(with("X-A", "v\nX-Injected: yes")); }));
    FIBER_CHECK(invalid_argument([&] { connect(with("X-A", std::string("v\0w", 3))); }));
    FIBER_CHECK(invalid_argument([&] { connect(with("Origin", "http://a.example\r\nX-Injected: yes")); }));
    FIBER_CHECK(invalid_argument([&] { connect(with("Sec-WebSocket-Protocol", "chat\r\n\r\nGET /x HTTP/1.1")); }));
    FIBER_CHECK(invalid_argument([&] { connect(with("X-A\r\nX-Injected", "yes")); }));
    FIBER_CHECK(invalid_argument([&] { connect(with("X A", "v")); }));
    FIBER_CHECK(invalid_argument([&] { connect(with("X-A:", "v")); }));
    FIBER_CHECK(invalid_argument([&] { connect(with("", "v")); }));
    // The handshake's own fields, and a body framing on the upgrade GET
    // (the server would read our first frames as its body).
    for (const char* owned : {"Upgrade", "connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version",
                              "Content-Length", "transfer-encoding"}) {
      FIBER_CHECK(invalid_argument([&] { connect(with(owned, "1")); }));
    }
    FIBER_CHECK(p.peer.accepted() == 0);  // nothing went out, not even a connect
  });
}

TEST_CASE("ws client hostile: URLs: scheme case, encoded targets, userinfo as Basic auth, bad hosts") {
  run_checked(2, [] {
    Refuser p;
    const std::string hp = p.hostport();
    // The scheme in any case; spaces and non-ASCII bytes in path and query
    // percent-encoded, the fragment not sent.
    FIBER_CHECK(ws_error_of([&] { http::WebSocket::connect("WS://" + hp + "/a b/\xc3\xbc?q=x y#frag"); }) ==
                http::ws_errc::handshake_failed);
    // user:password@ is Basic authentication (percent-decoded first), never
    // part of the host; and not in the error text of a failed handshake.
    std::string what;
    FIBER_CHECK(ws_error_of([&] { http::WebSocket::connect("ws://us%40er:p%3Asekrit@" + hp + "/auth"); },
                            &what) == http::ws_errc::handshake_failed);
    FIBER_CHECK(what.find("sekrit") == std::string::npos);
    // The caller's own Authorization wins.
    http::WsOptions mine;
    mine.headers.set("Authorization", "Bearer mine");
    FIBER_CHECK(ws_error_of([&] { http::WebSocket::connect("ws://user:pw@" + hp + "/mine", mine); }) ==
                http::ws_errc::handshake_failed);
    const auto h = p.heads.all();
    FIBER_CHECK(h.size() == 3);
    if (h.size() == 3) {
      FIBER_CHECK(h[0].starts_with("GET /a%20b/%C3%BC?q=x%20y HTTP/1.1\r\n"));
      FIBER_CHECK(h[1].starts_with("GET /auth HTTP/1.1\r\n"));
      FIBER_CHECK(h[1].find("\r\nAuthorization: Basic dXNAZXI6cDpzZWtyaXQ=\r\n") != std::string::npos);
      FIBER_CHECK(h[1].find("\r\nHost: " + hp + "\r\n") != std::string::npos);
      FIBER_CHECK(h[2].find("Authorization: Bearer mine") != std::string::npos);
      FIBER_CHECK(h[2].find("Basic") == std::string::npos);
    }
    // Bad hosts, userinfo and schemes are invalid URLs, never handed to the
    // resolver (which would make them connect_failed), and the text never
    // shows a password, whatever the URL's shape.
    for (const std::string& bad :
         {std::string("ws://exa mple.com/"), std::string("ws://ex\\ample.com/"), std::string("ws://h\xc3\xbc.example/"),
          std::string("ws://user:sekrit@/"), "ws://a b:sekrit@" + hp + "/", "ws://user:sekrit%zz@" + hp + "/",
          "http://" + hp + "/", "ws:/" + hp + "/", "ws:/user:sekrit@" + hp + "/", "ws:user:sekrit@" + hp + "/",
          "user:sekrit@" + hp, "ws://user:sek/rit@" + hp + "/", "ws://user:sek#rit@" + hp + "/"}) {
      std::string why;
      FIBER_CHECK(ws_error_of([&] { http::WebSocket::connect(bad); }, &why) == http::ws_errc::invalid_url);
      FIBER_CHECK(why.find("sek") == std::string::npos);
    }
    // wss:// to a peer that does not speak TLS: tls_failed (or invalid_url
    // where spindle has no TLS), the password not in the text either.
    RawPeer plain([](io::TcpStream& s) { s.write_all("HTTP/1.1 400 Bad Request\r\n\r\n"); });
    const auto k = ws_error_of(
        [&] { http::WebSocket::connect("wss://user:sekrit@" + plain.url("/").substr(7)); }, &what);
    FIBER_CHECK((k == http::ws_errc::tls_failed || k == http::ws_errc::invalid_url));
    FIBER_CHECK(what.find("sekrit") == std::string::npos);
    FIBER_CHECK(p.heads.all().size() == 3);  // none of the bad URLs reached the peer
  });
}

TEST_CASE("ws client hostile: a handshake with userinfo, repeated fields and a tab succeeds") {
  run_checked(2, [] {
    std::mutex mu;
    std::string auth, tab;
    std::size_t protocols = 0;
    WsServer srv([&](http::WebSocket ws, const http::Request& req) {
      {
        std::lock_guard lk(mu);
        auth = std::string(req.headers.get("Authorization").value_or(""));
        tab = std::string(req.headers.get("X-Tab").value_or(""));
        for (const auto& [n, v] : req.headers) protocols += http::iequals(n, "Sec-WebSocket-Protocol") ? 1 : 0;
      }
      echo(std::move(ws), req);
    });
    http::WsOptions o;
    o.headers.add("X-Tab", "a\tb");  // HTAB is allowed in a value (RFC 9110 5.5)
    o.headers.add("Sec-WebSocket-Protocol", "chat");
    o.headers.add("Sec-WebSocket-Protocol", "superchat");
    auto ws = http::WebSocket::connect("ws://user:pw@" + srv.url().substr(5), o);
    ws.send_text("hi");
    FIBER_CHECK(ws.receive().data == "hi");
    ws.close();
    std::lock_guard lk(mu);
    FIBER_CHECK(auth == "Basic dXNlcjpwdw==");
    FIBER_CHECK(tab == "a\tb");
    FIBER_CHECK(protocols == 2);
  });
}

TEST_CASE("ws client hostile: fields added twice go out twice, Host once (WebSocket and Client)") {
  run_checked(2, [] {
    Refuser p;
    auto fill = [](http::Headers& h) {
      h.add("Cookie", "a=1");
      h.add("Cookie", "b=2");
      h.add("Accept", "text/html");
      h.add("Accept", "application/json");
      h.add("Host", "v1.example");
      h.add("Host", "v2.example");
    };
    http::WsOptions wo;
    fill(wo.headers);
    FIBER_CHECK(ws_error_of([&] { http::WebSocket::connect(p.ws("/ws"), wo); }) == http::ws_errc::handshake_failed);
    http::RequestOptions ro;
    fill(ro.headers);
    ro.headers.add("User-Agent", "agent-one");
    ro.headers.add("User-Agent", "agent-two");
    http::Client c;
    FIBER_CHECK(c.get(p.peer.url("/get"), ro).status == 400);
    const auto h = p.heads.all();
    FIBER_CHECK(h.size() == 2);
    for (const std::string& head : h) {
      FIBER_CHECK(head.find("\r\nCookie: a=1\r\n") != std::string::npos);
      FIBER_CHECK(head.find("\r\nCookie: b=2\r\n") != std::string::npos);
      FIBER_CHECK(head.find("\r\nAccept: text/html\r\n") != std::string::npos);
      FIBER_CHECK(head.find("\r\nAccept: application/json\r\n") != std::string::npos);
      // Host is the client's field: one, the caller's last.
      FIBER_CHECK(count_substr(lower(head), "\r\nhost:") == 1);
      FIBER_CHECK(head.find("\r\nHost: v2.example\r\n") != std::string::npos);
    }
    if (h.size() == 2) {
      FIBER_CHECK(count_substr(lower(h[1]), "\r\nuser-agent:") == 1);
      FIBER_CHECK(h[1].find("\r\nUser-Agent: agent-two\r\n") != std::string::npos);
    }
  });
}

TEST_CASE("ws client hostile: the Client's errors never show a malformed URL's userinfo") {
  run_checked(2, [] {
    // A server's Location may be malformed the same ways.
    RawPeer p([](io::TcpStream& s) {
      std::string buf;
      read_head(s, buf);
      s.write_all("HTTP/1.1 302 Found\r\nLocation: http:/user:sekrit@127.0.0.1/\r\nContent-Length: 0\r\n\r\n");
    });
    http::Client c;
    const std::string hp = p.url("").substr(7);
    for (const std::string& bad :
         {"http:/user:sekrit@" + hp + "/", "http:user:sekrit@" + hp + "/", "HTTP:/user:sekrit@" + hp + "/",
          "user:sekrit@" + hp + "/", "http://user:sek/rit@" + hp + "/", "http://user:sek?rit@" + hp + "/",
          "http://user:sek#rit@" + hp + "/", "ftp://user:sekrit@" + hp + "/", "http:\\\\user:sekrit@" + hp + "/"}) {
      std::string what;
      FIBER_CHECK(error_of([&] { c.get(bad); }, &what) == http::errc::invalid_url);
      FIBER_CHECK(what.find("sek") == std::string::npos);
      FIBER_CHECK(what.find(hp) != std::string::npos);  // the rest is still shown
    }
    std::string what;
    FIBER_CHECK(error_of([&] { c.get(p.url("/redirect")); }, &what) == http::errc::invalid_url);
    FIBER_CHECK(what.find("sek") == std::string::npos);
  });
}

TEST_CASE("ws client hostile: a server that accepts and never answers the handshake is ended by handshake_timeout") {
  run_checked(2, [] {
    std::atomic<int> heads{0};
    http_test::RawPeer peer([&](io::TcpStream& s) {
      std::string buf;
      http_test::read_head(s, buf);
      heads.fetch_add(1);
      char b[64];
      while (s.read_some(b, sizeof b) > 0) {  // silent until the client goes
      }
    });
    std::string url = peer.url("/chat");
    url.replace(0, 4, "ws");  // http://... -> ws://...
    http::WsOptions o;
    o.handshake_timeout = 200ms;
    const auto t0 = Clock::now();
    std::string what;
    FIBER_CHECK(ws_error_of([&] { http::WebSocket::connect(url, o); }, &what) == http::ws_errc::timeout);
    FIBER_CHECK(Clock::now() - t0 < slack(2s));
    FIBER_CHECK(heads.load() == 1);  // the handshake was sent, and never answered
    FIBER_CHECK(what.find("handshake_timeout") != std::string::npos);
    FIBER_CHECK(http::WsOptions{}.handshake_timeout == 30s);
  });
}

// Beast reads a refused handshake's body whole, up to its parser's 8 MB:
// a server that answered with a body that size made every connect() hold
// it, and one that sent part of it and stopped held connect() until
// handshake_timeout. The client takes 64 KiB of it at most and fails at
// once with the refusal's status (before, this case ended in timeout).
TEST_CASE("ws client hostile: a refusal's body is read up to 64 KiB, not Beast's 8 MB") {
  run_checked(2, [] {
    http_test::RawPeer peer([&](io::TcpStream& s) {
      ws_accept_head(s);
      s.write_all("HTTP/1.1 403 Forbidden\r\nContent-Length: 8000000\r\n\r\n" + std::string(100 * 1024, 'x'));
      char b[64];
      while (s.read_some(b, sizeof b) > 0) {  // the rest never comes
      }
    });
    std::string url = peer.url("/chat");
    url.replace(0, 4, "ws");
    http::WsOptions o;
    o.handshake_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(slack(5s));
    std::string what;
    FIBER_CHECK(ws_error_of([&] { http::WebSocket::connect(url, o); }, &what) == http::ws_errc::handshake_failed);
    FIBER_CHECK(what.find("(HTTP 403)") != std::string::npos);
  });
}

// RFC 6455 4.1: a 101 naming an extension the client did not offer (it
// offers none) or a subprotocol not among those it offered fails the
// connection. Beast 1.74 checks neither: such a 101 was taken (a helper's
// probe). One offered subprotocol chosen, from a list or a second field,
// is a handshake; two chosen (in two fields) is not.
TEST_CASE("ws client hostile: a 101 with an extension or subprotocol the client did not offer fails the handshake") {
  run_checked(2, [] {
    struct Case {
      const char* what;
      std::vector<std::string> offered;  // Sec-WebSocket-Protocol fields sent
      std::string extra;                 // fields the 101 adds
      bool ok;
    };
    const Case cases[] = {
        {"a subprotocol never offered", {}, "Sec-WebSocket-Protocol: evil\r\n", false},
        {"another subprotocol than offered", {"chat, superchat"}, "Sec-WebSocket-Protocol: other\r\n", false},
        {"an extension never offered", {}, "Sec-WebSocket-Extensions: permessage-deflate\r\n", false},
        // Only the first field was checked: an offered one, then another.
        {"an offered subprotocol and another, in two fields", {"chat"},
         "Sec-WebSocket-Protocol: chat\r\nSec-WebSocket-Protocol: evil\r\n", false},
        {"one offered, from a list", {"chat, superchat"}, "Sec-WebSocket-Protocol: superchat\r\n", true},
        {"one offered, from a second field", {"chat", "v2"}, "Sec-WebSocket-Protocol: v2\r\n", true},
        {"none chosen", {"chat"}, "", true},
    };
    for (const Case& k : cases) {
      http_test::RawPeer peer([&](io::TcpStream& s) {
        std::string head = ws_accept_head(s);
        head.insert(head.size() - 2, k.extra);
        s.write_all(head);
        char b[64];
        while (s.read_some(b, sizeof b) > 0) {
        }
      });
      std::string url = peer.url("/chat");
      url.replace(0, 4, "ws");
      http::WsOptions o;
      for (const std::string& p : k.offered) o.headers.add("Sec-WebSocket-Protocol", p);
      std::string what;
      const auto kind = ws_error_of([&] { http::WebSocket::connect(url, o); }, &what);
      INFO(k.what << ": " << what);
      if (k.ok) {
        FIBER_CHECK(kind == http::ws_errc{});
      } else {
        FIBER_CHECK(kind == http::ws_errc::handshake_failed);
        FIBER_CHECK((what.find("did not offer") != std::string::npos ||
                     what.find("more than one subprotocol") != std::string::npos));
      }
    }
  });
}

// A failed handshake's text names what was wrong and the status the
// server really sent. Beast (1.74) leaves the response it was given
// unfilled on every failure, so the text said "(HTTP 200)", the default
// of an empty response, for a 101 with a wrong Sec-WebSocket-Accept and
// for a refusal alike.
TEST_CASE("ws client hostile: a failed handshake's text names the fault and the real status") {
  run_checked(2, [] {
    struct Case {
      const char* what;
      std::string head;         // the answer; "ACCEPT" is replaced by the right Sec-WebSocket-Accept
      const char* fault;        // in the text
      const char* status;       // in the text
    };
    const Case cases[] = {
        {"a 101 with a wrong Sec-WebSocket-Accept",
         "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Accept: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
         "Sec-WebSocket-Accept", "(HTTP 101)"},
        {"a 101 without Upgrade",
         "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ACCEPT\r\n\r\n", "Upgrade",
         "(HTTP 101)"},
        {"a refusal", "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", "declined", "(HTTP 403)"},
    };
    for (const Case& k : cases) {
      http_test::RawPeer peer([&](io::TcpStream& s) {
        std::string head = k.head;
        const std::string right = ws_accept_head(s);
        if (const auto at = head.find("ACCEPT"); at != std::string::npos) {
          const std::string name = "Sec-WebSocket-Accept: ";
          const std::size_t from = right.find(name) + name.size();
          head.replace(at, 6, right.substr(from, right.find("\r\n", from) - from));
        }
        s.write_all(head);
        char b[64];
        while (s.read_some(b, sizeof b) > 0) {
        }
      });
      std::string url = peer.url("/chat");
      url.replace(0, 4, "ws");
      std::string what;
      const auto kind = ws_error_of([&] { http::WebSocket::connect(url); }, &what);
      const bool ok = kind == http::ws_errc::handshake_failed && what.find(k.fault) != std::string::npos &&
                      what.find(k.status) != std::string::npos && what.find("HTTP 200") == std::string::npos;
      if (!ok) fiber_failures().add(std::string(k.what) + ": " + what);
    }
  });
}
