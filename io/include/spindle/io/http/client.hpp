// client.hpp: http::Client, an HTTP/1.1 client with a keep-alive
// connection pool, built on Beast's serializer and parser over spindle's
// TcpStream.
//
//   sp::http::Client client({.limit = 100, .limit_per_host = 10});
//   auto r = client.get("http://127.0.0.1:8080/users/7");
//   if (r.status == 200) use(r.text());
//
// Every call may suspend the calling fiber (connect, write, read, waiting
// for a pool slot) and is a cancellation point: it obeys Task::cancel and
// the caller's with_timeout / with_deadline. Call from fibers only.
//
// Pool (docs/http.md "Client"): connections are kept per scheme, host and port after a
// response that allows keep-alive was read whole. At most `limit` open
// connections in total and `limit_per_host` per host (0: no limit); a
// request beyond them waits for one (an idle connection of another host is
// closed to make room, as aiohttp does). A request that fails, is
// cancelled or times out at any point closes its connection: a half-read
// connection is never reused. A request whose reused connection turns out
// to be closed by the server (end of stream or reset before any response
// byte) is sent once more on a new connection.
//
// Thread-safety: one Client may be used by any number of fibers on any
// workers at once. The destructor closes the idle connections; no request
// may be in flight then.
//
// https:// (when spindle is built with OpenSSL; otherwise
// errc::invalid_url): TLS over the same pool, keyed by scheme, host and
// port; the server's certificate is verified against the system trust
// store (or ClientOptions::tls.ca_file) and the URL's host, which is also
// sent as SNI. Handshake and verification failures are errc::tls, with
// OpenSSL's reason in what(); the connect timeout covers the handshake.
//
// Errors: http::Error (error.hpp) with an http::errc kind. Not done:
// streamed bodies (bodies are strings,
// bounded by max_body).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include <spindle/io/http/error.hpp>
#include <spindle/io/http/message.hpp>
#include <spindle/io/tls.hpp>
#include <spindle/runtime/detail/macros.hpp>

namespace spindle::http {

namespace detail {
struct ClientPool;  // client.cpp
}

struct ClientOptions {
  std::size_t limit = 100;         // open connections in total; 0: no limit
  std::size_t limit_per_host = 0;  // open connections per host:port; 0: no limit
  // Timeouts (zero: none), raised as Error(errc::timeout). connect: each
  // connection's connect. read: each wait for response bytes (time
  // without progress). total: the whole call, redirects included.
  std::chrono::milliseconds connect_timeout{0};
  std::chrono::milliseconds read_timeout{0};
  std::chrono::milliseconds total_timeout{0};
  int max_redirects = 10;               // followed; one more is an error
  std::size_t max_head = 64 * 1024;     // response head; more: malformed_response
  std::size_t max_body = 64u << 20;     // response body; more: body_too_large
  std::string user_agent = "spindle-http";
  // https:// connections: verification on and the system trust store by
  // default (io::TlsClientOptions, tls.hpp).
  io::TlsClientOptions tls = {};
};

struct RequestOptions {
  Headers headers;  // sent as given (after Host and User-Agent)
  std::string body;
  bool follow_redirects = true;
};

struct ClientStats {
  std::uint64_t connections_opened = 0;  // connects that succeeded
  std::uint64_t connections_reused = 0;  // requests sent on a pooled connection
  std::size_t open = 0;                  // open now (idle or in use)
  std::size_t idle = 0;                  // idle in the pool now
};

class Client {
 public:
  explicit Client(ClientOptions options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // request: sends `method` to `url` (http://host[:port][/path][?query])
  // and returns the response, following redirects (301, 302, 303 turn into
  // GET without body; 307, 308 repeat the method and body) unless told not
  // to. Any status is a Response; only transport and protocol failures
  // throw (Error).
  SPINDLE_MAY_SUSPEND Response request(std::string_view method, std::string_view url,
                                       RequestOptions options = {});
  SPINDLE_MAY_SUSPEND Response get(std::string_view url, RequestOptions options = {}) {
    return request("GET", url, std::move(options));
  }
  SPINDLE_MAY_SUSPEND Response post(std::string_view url, std::string body, RequestOptions options = {}) {
    options.body = std::move(body);
    return request("POST", url, std::move(options));
  }
  // post_json: body = value.dump(), Content-Type: application/json.
  SPINDLE_MAY_SUSPEND Response post_json(std::string_view url, const nlohmann::json& value,
                                         RequestOptions options = {});

  ClientStats stats() const;
  // close_idle: closes every idle pooled connection. Never suspends.
  void close_idle() noexcept;

 private:
  std::unique_ptr<detail::ClientPool> pool_;
};

}  // namespace spindle::http
