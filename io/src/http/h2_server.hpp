// h2_server.hpp: one HTTP/2 server connection (h2_server.cpp), as
// server.cpp hands it over: a connection that chose h2 by ALPN or sent
// the prior-knowledge preface. The only header that names the HTTP/2
// side; nghttp2 stays inside h2_server.cpp (docs/decisions/0019-http2.md).
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <string_view>

#include <spindle/io/endpoint.hpp>
#include <spindle/io/http/server.hpp>

#include "transport.hpp"

namespace spindle::http::detail {

class H2Conn;

// H2Env: what a connection needs of its Server (server.cpp's State owns
// every part; it outlives the connection).
struct H2Env {
  const Handler& handler;
  const ServerOptions& opt;
  // The server's shutdown flag (seq_cst; server.cpp's protocol).
  const std::atomic<bool>& stopping;
  // requests_served: one per handler return.
  std::atomic<std::uint64_t>& served;
  // report: ServerOptions::on_error, or the stderr line.
  std::function<void(const Request&, std::exception_ptr)> report;
  // log: the access log line for a response (status, body bytes); called
  // only when ServerOptions::access_log is set.
  std::function<void(const Request&, int status, std::uint64_t bytes)> log;
  // date: the Date field's value (server.cpp's http_date).
  std::string_view (*date)() = nullptr;
};

// serve_h2: serves the connection `t` as HTTP/2 until it ends (the client
// closed it, an error, a GOAWAY exchanged and its streams done, idle_timeout,
// or shutdown and the streams done). `preread`: bytes already read from
// it (the start of the preface, on a plain connection). `published` is
// called with the connection once it can take wake_h2 (and with nullptr
// before it goes): server.cpp keeps it for shutdown's scan.
// Never throws but Cancelled (the server's drain cancelling it): then
// every stream's fiber was cancelled and has ended.
// H2Upgrade: an HTTP/1.1 request that asked to continue in HTTP/2
// (Upgrade: h2c, RFC 7540 3.2), answered 101: it becomes stream 1.
struct H2Upgrade {
  Request req;           // the request, its connection fields removed
  std::string settings;  // its HTTP2-Settings, decoded (a SETTINGS payload)
};
// h2c_settings: HTTP2-Settings' value (base64url, no padding) decoded into
// `out`. False: not base64url, or not a whole number of settings.
bool h2c_settings(std::string_view value, std::string& out);

void serve_h2(Transport& t, const io::Endpoint& peer, std::string_view preread, const H2Env& env,
              const std::function<void(H2Conn*)>& published, H2Upgrade* upgrade = nullptr);

// wake_h2: shutdown began: the connection sends GOAWAY, lets its streams
// finish and ends. Never suspends; any fiber or thread, while published.
void wake_h2(H2Conn& c) noexcept;

}  // namespace spindle::http::detail
