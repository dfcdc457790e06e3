// websocket_test_support.hpp: fixtures of the WebSocket tests
// (websocket_test.cpp, websocket_heartbeat_test.cpp): a server whose /ws
// route runs a session, an echo session, and the raw client side (the
// upgrade request with the RFC's sample key, masked frames out, frames in).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include <boost/beast/websocket/detail/hybi13.hpp>

#include <spindle/sync/channel.hpp>

#include "http_test_support.hpp"

namespace ws_test {

using namespace http_test;

using Session = http::WsSession;

// WsServer: a LiveServer whose /ws route runs `session`.
struct WsServer {
  explicit WsServer(Session session, http::WsOptions o = {}, http::ServerOptions so = {})
      : srv(make_router(std::move(session), std::move(o)), std::move(so)) {}
  static http::Handler make_router(Session s, http::WsOptions o) {
    auto r = std::make_shared<http::Router>();
    r->get("/ws", http::websocket_handler(std::move(s), std::move(o)));
    r->get("/plain", [](http::Request&) { return http::Response::text_body(200, "plain\n"); });
    return [r](http::Request& q) { return (*r)(q); };
  }
  std::string url() const { return "ws://127.0.0.1:" + std::to_string(srv.port()) + "/ws"; }
  LiveServer srv;
};

// report_receive: a session's one receive() told on `seen`: "returned",
// `name` for a WsError of kind `kind`, "other" for any other kind.
inline void report_receive(http::WebSocket& ws, sp::Channel<std::string>& seen, http::ws_errc kind,
                           const char* name) {
  try {
    ws.receive();
    seen.send("returned");
  } catch (const http::WsError& e) {
    seen.send(e.kind() == kind ? name : "other");
  }
}

// echo: sends every message back as it came, until the peer closes.
inline void echo(http::WebSocket ws, const http::Request&) {
  try {
    for (;;) {
      auto m = ws.receive();
      if (m.is_close()) return;
      if (m.is_text()) ws.send_text(m.data);
      else ws.send_binary(m.data);
    }
  } catch (const http::WsError&) {
  }
}

// Raw client side: the RFC's sample key, so the expected accept is known.
constexpr std::string_view kKey = "dGhlIHNhbXBsZSBub25jZQ==";
constexpr std::string_view kAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

inline std::string upgrade_request(std::uint16_t port, std::string_view path = "/ws") {
  return "GET " + std::string(path) + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
         "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + std::string(kKey) +
         "\r\nSec-WebSocket-Version: 13\r\n\r\n";
}

// client_frame: one masked frame (clients must mask).
inline std::string client_frame(unsigned opcode, std::string_view payload, bool fin = true) {
  std::string f;
  f += static_cast<char>((fin ? 0x80 : 0) | opcode);
  const std::size_t n = payload.size();
  if (n < 126) {
    f += static_cast<char>(0x80 | n);
  } else if (n < 65536) {
    f += static_cast<char>(0x80 | 126);
    f += static_cast<char>(n >> 8);
    f += static_cast<char>(n & 0xff);
  } else {
    f += static_cast<char>(0x80 | 127);
    for (int i = 7; i >= 0; --i) f += static_cast<char>((static_cast<std::uint64_t>(n) >> (8 * i)) & 0xff);
  }
  const char mask[4] = {0x12, 0x34, 0x56, 0x78};
  f.append(mask, 4);
  for (std::size_t i = 0; i < n; ++i) f += static_cast<char>(payload[i] ^ mask[i % 4]);
  return f;
}

// read_frame: one frame from s, its payload unmasked if it came masked (a
// client's); buf keeps bytes past it.
struct Frame {
  unsigned opcode = 0;
  bool fin = false;
  bool masked = false;
  std::string payload;
};
inline Frame read_frame(io::TcpStream& s, std::string& buf) {
  char tmp[4096];
  auto need = [&](std::size_t k) {
    while (buf.size() < k) {
      const std::size_t n = s.read_some(tmp, sizeof tmp);
      if (n == 0) throw std::runtime_error("eof inside a frame");
      buf.append(tmp, n);
    }
  };
  need(2);
  Frame f;
  f.fin = (buf[0] & 0x80) != 0;
  f.opcode = buf[0] & 0x0f;
  std::size_t len = buf[1] & 0x7f, head = 2;
  if (len == 126) {
    need(4);
    len = (static_cast<unsigned char>(buf[2]) << 8) | static_cast<unsigned char>(buf[3]);
    head = 4;
  } else if (len == 127) {
    need(10);
    len = 0;
    for (int i = 0; i < 8; ++i) len = (len << 8) | static_cast<unsigned char>(buf[2 + i]);
    head = 10;
  }
  f.masked = (buf[1] & 0x80) != 0;
  const std::size_t key = head;
  if (f.masked) head += 4;
  need(head + len);
  f.payload = buf.substr(head, len);
  if (f.masked)
    for (std::size_t i = 0; i < len; ++i) f.payload[i] = static_cast<char>(f.payload[i] ^ buf[key + i % 4]);
  buf.erase(0, head + len);
  return f;
}

// raw_upgrade: a raw connection past the 101 (checked); buf: bytes after it.
inline io::TcpStream raw_upgrade(std::uint16_t port, std::string& buf) {
  auto s = raw_connect(port);
  s.write_all(upgrade_request(port));
  const std::size_t end = s.read_until(buf, "\r\n\r\n", 1 << 16);
  const std::string head = buf.substr(0, end);
  FIBER_CHECK(head.rfind("HTTP/1.1 101", 0) == 0);
  FIBER_CHECK(head.find(kAccept) != std::string::npos);
  buf.erase(0, end);
  return s;
}


// ws_accept_head: reads a client's opening handshake from c and returns
// the 101 that answers it (the client's random key answered with Beast's
// helper: the tests have no other SHA-1 to hand), for the caller to send,
// alone or with frames behind it in the same write.
inline std::string ws_accept_head(io::TcpStream& c) {
  std::string req;
  c.read_until(req, "\r\n\r\n", 1 << 16);
  const std::string name = "Sec-WebSocket-Key: ";
  const std::size_t at = req.find(name);
  FIBER_CHECK(at != std::string::npos);
  const std::size_t from = at + name.size();
  const std::string key = req.substr(from, req.find("\r\n", from) - from);
  boost::beast::websocket::detail::sec_ws_accept_type accept;
  boost::beast::websocket::detail::make_sec_ws_accept(accept, boost::beast::string_view(key.data(), key.size()));
  return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Accept: " +
         std::string(accept.data(), accept.size()) + "\r\n\r\n";
}

// raw_ws_server_accept: the server side of the opening handshake on a raw
// connection.
inline void raw_ws_server_accept(io::TcpStream& c) { c.write_all(ws_accept_head(c)); }

// echo_round_trips: `conns` clients of `url`, each sending 32-byte text
// messages to an echo server and waiting for each answer, for 2 s; returns
// the round trips per second of all of them (the hidden "[.bench]" cases).
inline double echo_round_trips(const std::string& url, int conns, const http::WsOptions& o = {}) {
  using namespace std::chrono_literals;
  std::atomic<std::uint64_t> trips{0};
  const auto t0 = std::chrono::steady_clock::now();
  sp::TaskGroup g;
  for (int c = 0; c < conns; ++c) {
    g.spawn([&] {
      auto ws = http::WebSocket::connect(url, o);
      const std::string msg(32, 'm');
      while (std::chrono::steady_clock::now() - t0 < 2s) {
        ws.send_text(msg);
        ws.receive();
        trips.fetch_add(1, std::memory_order_relaxed);
      }
      ws.close();
    });
  }
  g.wait();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return static_cast<double>(trips.load()) / secs;
}

}  // namespace ws_test
