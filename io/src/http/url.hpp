// url.hpp: the client's URLs and the header field rules, checked before
// anything is sent (client.cpp, websocket.cpp, and server.cpp for a
// handler's response; docs/http.md "Client": "What the client refuses to
// send"). No Beast here: url.cpp is plain string work. url.cpp also holds
// the public http::URL, QueryParams and url_encode/url_decode
// (<spindle/io/http/url.hpp>): parse_url is http::URL's parse followed by
// the checks below (to_client_url), so the Client, WebSocket::connect and
// user code share one parser.
//
// A URL is http:// or https:// (scheme in any case), an authority and a
// target; for WebSocket::connect (websocket.cpp), ws:// or wss:// under the
// same rules, with https's TLS and default ports (80, 443). The rules, each
// because a URL is often built from input the caller does not control:
//  - control bytes (0x00-0x1f, 0x7f: CR, LF and NUL among them) anywhere
//    are errc::invalid_url: they would split the request line or a header
//    (Go's net/url refuses them the same way);
//  - the host is a DNS name or IP literal (letters, digits, '-', '.', '_';
//    an IPv6 literal in brackets); anything else (a space, '\', non-ASCII)
//    is errc::invalid_url, never handed to the resolver;
//  - userinfo (`user:password@`) is split off at the last '@' and
//    percent-decoded: it becomes Basic authentication (client.cpp), is never
//    part of the host, and never appears in str() (error texts, Response::url)
//    nor in an error text about a URL that failed to parse (whatever its
//    shape: "http:/user:pw@h" too);
//  - in the target, spaces, non-ASCII bytes and the characters RFC 3986
//    never allows raw (" < > \ ^ ` { | }) are percent-encoded; '%' and the
//    rest are kept as given (already encoded).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <spindle/io/http/url.hpp>

namespace spindle::http {
class Headers;
}

namespace spindle::http::detail {

struct Url {
  bool https = false;      // https:// or wss://: TLS, port 443 by default
  bool websocket = false;  // ws:// or wss:// (parse_url with UrlKind::websocket)
  std::string host;  // lowercase, without brackets
  std::uint16_t port = 80;
  std::string target = "/";  // path and query, encoded as above
  bool has_userinfo = false;
  std::string user, password;  // percent-decoded

  std::uint16_t default_port() const { return https ? 443 : 80; }
  std::string authority() const;  // host[:port], as the Host header
  std::string scheme() const { return websocket ? (https ? "wss" : "ws") : (https ? "https" : "http"); }
  std::string str() const { return scheme() + "://" + authority() + target; }  // no userinfo
  std::string key() const { return scheme() + " " + host + " " + std::to_string(port); }
  // connect_host: host as the resolver takes it: an IPv6 zone's "%25"
  // (RFC 6874, kept so in host, the Host field and key) becomes the "%"
  // getaddrinfo reads ("fe80::1%25lo" failed: "Name or service not known").
  std::string connect_host() const {
    const auto z = host.find("%25");
    return z == std::string::npos || host.find(':') == std::string::npos ? host : host.substr(0, z) + "%" + host.substr(z + 3);
  }
  // same_origin: scheme, host and port equal (RFC 6454). Credentials the
  // caller gave for one origin are not sent to another (redirects).
  bool same_origin(const Url& o) const { return https == o.https && host == o.host && port == o.port; }
  // basic_auth: "Basic base64(user:password)", for has_userinfo.
  std::string basic_auth() const;
};

// UrlKind: which schemes parse_url takes: http/https (the Client) or ws/wss
// (WebSocket::connect).
enum class UrlKind { http, websocket };

// parse_url: u checked and normalised as the file comment says; failures
// are http::Error(errc::invalid_url) naming the reason (and the URL without
// its userinfo, never the password).
Url parse_url(std::string_view u, UrlKind kind = UrlKind::http);

// to_client_url: a parsed URL checked as parse_url checks (scheme, an
// authority with a host); `shown` is the text an error names (its userinfo
// hidden).
Url to_client_url(const URL& url, std::string_view shown, UrlKind kind);

// resolve_location: a redirect's Location against the URL that sent it,
// by RFC 3986 5.2 (URL::join: dot segments removed), checked as parse_url
// checks. A Location without scheme or authority keeps the base's
// userinfo; one with an authority brings its own (or none).
Url resolve_location(const Url& base, std::string_view loc);

// decode_strict: s percent-decoded into out ('+' stays '+'); false when a
// '%' is not followed by two hex digits (out is then unspecified). The
// Router's path segments and the userinfo.
bool decode_strict(std::string_view s, std::string& out);

// field_value_ok: v may be a field value (RFC 9110 5.5) or a reason
// phrase: no control byte but HTAB (obs-text allowed).
bool field_value_ok(std::string_view v) noexcept;

// check_header_fields: every header name an RFC 9110 token and every
// value free of control bytes other than HTAB (so CR, LF and NUL, which
// would end the field or the head early: Go's httpguts rule). Throws
// std::invalid_argument naming the field (not its value, which may be a
// secret). `who` starts the message ("spindle::http", ...). Shared by the
// Client, WebSocket::connect and the server (a handler's response fields).
void check_header_fields(const Headers& headers, std::string_view who);

// check_request_fields: check_header_fields, the method an RFC 9110 token,
// the user agent free of control bytes, and neither Content-Length nor
// Transfer-Encoding given (the client frames the body itself). Throws
// std::invalid_argument before anything is sent.
void check_request_fields(std::string_view method, const Headers& headers, std::string_view user_agent);

}  // namespace spindle::http::detail
