// h2_server.hpp: one HTTP/2 server connection (h2_server.cpp), as
// server.cpp hands it over: a connection that chose h2 by ALPN or sent
// the prior-knowledge preface. The only header that names the HTTP/2
// side; nghttp2 stays inside h2_server.cpp (docs/decisions/0019-http2.md).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <spindle/io/endpoint.hpp>
#include <spindle/io/http/server.hpp>

#include "spread_count.hpp"
#include "transport.hpp"

namespace spindle::http::detail {

class H2Conn;

// H2Env: what a connection needs of its Server (server.cpp's State owns
// every part it refers to; it outlives the connection). Kept by value in
// the connection, which may outlive the call that made it (a released
// connection: serve_h2).
struct H2Env {
  const Handler& handler;
  const ServerOptions& opt;
  // The server's shutdown flag (seq_cst; server.cpp's protocol).
  const std::atomic<bool>& stopping;
  // requests_served: one per handler return.
  SpreadCount& served;
  // report: ServerOptions::on_error, or the stderr line.
  std::function<void(const Request&, std::exception_ptr)> report;
  // log: the access log line for a response (status, body bytes); called
  // only when ServerOptions::access_log is set.
  std::function<void(const Request&, int status, std::uint64_t bytes)> log;
  // date: the Date field's value (server.cpp's http_date).
  std::string_view (*date)() = nullptr;
  // release_after: a plain connection with no stream and nothing to send
  // for this long is released (serve_h2); zero: never (TLS, or
  // ServerOptions::idle_release_after off).
  std::chrono::milliseconds release_after{0};
};

// H2Owned: a connection's HTTP/2 side (its nghttp2 session and streams),
// owned by server.cpp's Conn from the preface to the connection's end,
// across releases.
struct H2Deleter {
  void operator()(H2Conn* c) const noexcept;
};
using H2Owned = std::unique_ptr<H2Conn, H2Deleter>;

// make_h2: the HTTP/2 side of the connection `t` (whose object must
// outlive it), with its SETTINGS queued. Null: no memory (the connection
// just ends).
H2Owned make_h2(Transport& t, const io::Endpoint& peer, H2Env env);

// H2Upgrade: an HTTP/1.1 request that asked to continue in HTTP/2
// (Upgrade: h2c, RFC 7540 3.2), answered 101: it becomes stream 1.
struct H2Upgrade {
  Request req;           // the request, its connection fields removed
  std::string settings;  // its HTTP2-Settings, decoded (a SETTINGS payload)
};
// h2c_settings: HTTP2-Settings' value (base64url, no padding) decoded into
// `out`. False: not base64url, or not a whole number of settings.
bool h2c_settings(std::string_view value, std::string& out);

// H2Rest: how serve_h2 returned. `released`: the connection had no stream
// and nothing to send for release_after (only with release_after set);
// its fibers and read buffer are gone, its session waits in the H2Conn,
// and it has been quiet (no stream) for `quiet`. The caller arms the
// socket (server.cpp, State::release) and calls serve_h2 again, with the
// same H2Conn, when bytes come. Otherwise the connection is over.
struct H2Rest {
  bool released = false;
  std::chrono::milliseconds quiet{0};
};

// serve_h2: serves c's connection as HTTP/2 until it ends (the client
// closed it, an error, a GOAWAY exchanged and its streams done,
// idle_timeout, or shutdown and the streams done) or is released.
// `preread`: bytes already read from it (the start of the preface, on a
// plain connection). `published` is called with the connection once it
// can take wake_h2 (and with nullptr before it returns): server.cpp keeps
// it for shutdown's scan. Never throws but Cancelled (the server's drain
// cancelling it): then every stream's fiber was cancelled and has ended.
H2Rest serve_h2(H2Conn& c, std::string_view preread, const std::function<void(H2Conn*)>& published,
                H2Upgrade* upgrade = nullptr);

// wake_h2: shutdown began: the connection sends GOAWAY, lets its streams
// finish and ends. Never suspends; any fiber or thread, while published.
void wake_h2(H2Conn& c) noexcept;

// h2_quiet_ms: since when (steady-clock ms, CLOCK_MONOTONIC's) c has had
// no stream under way; ~0 while one is. reclaim_h2: the connection limit
// (ServerOptions::max_connections) closes it: GOAWAY and close if it is
// still quiet when its writer looks (a stream that came first keeps it).
// Both never suspend; any fiber or thread, while published.
std::uint64_t h2_quiet_ms(const H2Conn& c) noexcept;
void reclaim_h2(H2Conn& c) noexcept;

// goodbye_h2: a released connection about to be closed (idle_timeout,
// shutdown) tells its client why first: GOAWAY NO_ERROR, written to `fd`
// without waiting (an idle socket's send buffer is empty; if the GOAWAY
// does not fit, the client sees the close alone). Whoever closes it; no
// fiber of the connection runs.
void goodbye_h2(H2Conn& c, int fd) noexcept;

}  // namespace spindle::http::detail
