// error.hpp: the client's typed failures.
//
// Every failure of http::Client is an http::Error, a std::system_error whose
// code() compares equal to one http::errc value (catch it once, switch on
// the kind). what() carries the detail (the OS or parser error). The
// runtime's own Cancelled passes through untouched, and a with_timeout
// scope of the caller's still raises TimedOut from that scope; only the
// client's own timeouts (ClientOptions) become errc::timeout.
#pragma once

#include <stdexcept>
#include <string>
#include <system_error>

namespace spindle::http {

enum class errc {
  refused = 1,         // connection refused (nobody listens)
  reset,               // connection reset or closed before a response began
  timeout,             // a connect, read or total timeout of the client
  tls,                 // TLS handshake or verification failed (https://)
  malformed_response,  // not HTTP, or a head over ClientOptions::max_head
  truncated,           // closed before the body's Content-Length / last chunk
  body_too_large,      // a body over ClientOptions::max_body
  too_many_redirects,  // more than ClientOptions::max_redirects
  invalid_url,         // not http://host[:port][/path]
  connect_failed,      // any other connect failure (unreachable, DNS)
  malformed_request,   // server side: a streamed request body's chunked framing is bad
  too_many_params,     // QueryParams::parse: more items than its max_items (a server answers 400
                       // when it came from the request's own query_params() or form_params())
  too_many_json_values,  // Request::json / Response::json: more values than the cap (ServerOptions /
                         // ClientOptions::max_json_values; a server answers 413 for the request's own)
};

const std::error_category& http_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), http_category()}; }

class Error : public std::system_error {
 public:
  Error(errc e, const std::string& what) : std::system_error(make_error_code(e), what) {}
  errc kind() const noexcept { return static_cast<errc>(code().value()); }
};

}  // namespace spindle::http

template <>
struct std::is_error_code_enum<spindle::http::errc> : std::true_type {};
