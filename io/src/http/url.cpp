// url.cpp: the client's URL parsing and request-field checks (url.hpp).
#include "url.hpp"

#include <algorithm>
#include <cstdint>
#include <stdexcept>

#include <spindle/io/http/error.hpp>
#include <spindle/io/http/message.hpp>

namespace spindle::http::detail {

namespace {

bool is_ctl(unsigned char c) { return c < 0x20 || c == 0x7f; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alnum(char c) { return is_alpha(c) || is_digit(c); }
char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

int hex_value(char c) {
  if (is_digit(c)) return c - '0';
  const char l = lower(c);
  return l >= 'a' && l <= 'f' ? l - 'a' + 10 : -1;
}

// tchar (RFC 9110 5.6.2).
bool is_tchar(char c) {
  if (is_alnum(c)) return true;
  for (char t : std::string_view("!#$%&'*+-.^_`|~"))
    if (c == t) return true;
  return false;
}

bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!is_tchar(c)) return false;
  return true;
}

// scheme_length: the length of a leading RFC 3986 scheme and its ':'
// ("HTTP:" is 5), or 0 when loc has none.
std::size_t scheme_length(std::string_view s) {
  if (s.empty() || !is_alpha(s[0])) return 0;
  for (std::size_t i = 1; i < s.size(); ++i) {
    if (s[i] == ':') return i + 1;
    if (!is_alnum(s[i]) && s[i] != '+' && s[i] != '-' && s[i] != '.') return 0;
  }
  return 0;
}

// hide_userinfo: u as an error text may show it. A URL that failed to
// parse may have any shape ("http:/user:pw@h", "http:user:pw@h",
// "user:pw@h", a password holding '/', '?' or '#'), so everything from the
// end of a known scheme (and the slashes after it) to the last '@' is cut,
// whatever lies between: an '@' that was in a path or query costs the
// message some context, never a password.
std::string hide_userinfo(std::string_view u) {
  const auto at = u.rfind('@');
  if (at == std::string_view::npos) return std::string(u);
  const std::size_t sl = scheme_length(u);  // scheme characters exclude '@': sl <= at
  std::string scheme;
  for (char c : u.substr(0, sl)) scheme += lower(c);
  std::size_t start = 0;
  if (scheme == "http:" || scheme == "https:" || scheme == "ws:" || scheme == "wss:") {
    start = sl;
    while (start < at && (u[start] == '/' || u[start] == '\\')) ++start;
  }
  return std::string(u.substr(0, start)) + "***@" + std::string(u.substr(at + 1));
}

// The message never carries the userinfo: it may hold a password.
[[noreturn]] void bad_url(std::string_view u, const std::string& why) {
  const std::string shown = hide_userinfo(u);
  // Control bytes are shown escaped, so the message itself cannot inject lines into a log.
  std::string safe;
  for (unsigned char c : shown) {
    if (is_ctl(c)) {
      static constexpr char kHex[] = "0123456789ABCDEF";
      safe += "\\x";
      safe += kHex[c >> 4];
      safe += kHex[c & 15];
    } else {
      safe += static_cast<char>(c);
    }
  }
  throw Error(errc::invalid_url, why + ": " + safe);
}

// encode_target: path and query with the bytes that may not appear raw in
// a request target percent-encoded (the file comment of url.hpp).
std::string encode_target(std::string_view t) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(t.size());
  for (unsigned char c : t) {
    const bool raw = c > 0x20 && c < 0x7f && std::string_view("\"<>\\^`{|}").find(static_cast<char>(c)) ==
                                                 std::string_view::npos;
    if (raw) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// percent_decode: userinfo; a '%' not followed by two hex digits is an error.
std::string percent_decode(std::string_view s, std::string_view u) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) bad_url(u, "bad %-escape in userinfo");
    const int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
    if (hi < 0 || lo < 0) bad_url(u, "bad %-escape in userinfo");
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

// userinfo: RFC 3986's characters (unreserved, sub-delims, ':', '%'), plus
// '@' as Go allows (the split is at the last '@').
bool valid_userinfo(std::string_view s) {
  for (char c : s)
    if (!is_alnum(c) && std::string_view("-._~!$&'()*+,;=:%@").find(c) == std::string_view::npos) return false;
  return true;
}

bool valid_host(std::string_view h, bool bracketed) {
  for (char c : h) {
    if (is_alnum(c) || c == '-' || c == '.' || c == '_') continue;
    if (bracketed && (c == ':' || c == '%')) continue;
    return false;
  }
  return true;
}

void parse_port(std::string_view port, std::string_view u, Url& out) {
  if (port.empty()) return;  // "host:" is the default port (RFC 3986 3.2.3)
  unsigned long p = 0;
  for (char c : port) {
    if (!is_digit(c) || p > 65535) bad_url(u, "bad port");
    p = p * 10 + static_cast<unsigned long>(c - '0');
  }
  if (p == 0 || p > 65535) bad_url(u, "bad port");
  out.port = static_cast<std::uint16_t>(p);
}

void parse_authority(std::string_view auth, std::string_view u, Url& out) {
  if (const auto at = auth.rfind('@'); at != std::string_view::npos) {
    const std::string_view info = auth.substr(0, at);
    if (!valid_userinfo(info)) bad_url(u, "invalid character in userinfo");
    const auto colon = info.find(':');
    out.has_userinfo = true;
    out.user = percent_decode(info.substr(0, colon), u);
    if (colon != std::string_view::npos) out.password = percent_decode(info.substr(colon + 1), u);
    auth = auth.substr(at + 1);
  }
  std::string_view port;
  bool bracketed = false;
  if (auth.starts_with("[")) {
    const auto close = auth.find(']');
    if (close == std::string_view::npos) bad_url(u, "unclosed [");
    bracketed = true;
    out.host = std::string(auth.substr(1, close - 1));
    if (close + 1 < auth.size()) {
      if (auth[close + 1] != ':') bad_url(u, "junk after ]");
      port = auth.substr(close + 2);
    }
  } else {
    const auto colon = auth.rfind(':');
    out.host = std::string(auth.substr(0, colon));
    if (colon != std::string_view::npos) port = auth.substr(colon + 1);
  }
  if (out.host.empty()) bad_url(u, "no host");
  if (!valid_host(out.host, bracketed)) bad_url(u, "invalid character in host");
  for (char& c : out.host) c = lower(c);  // DNS names compare without case: one pool key, one origin
  parse_port(port, u, out);
}

std::string strip_fragment(std::string_view s) { return std::string(s.substr(0, s.find('#'))); }

}  // namespace

bool field_value_ok(std::string_view v) noexcept {
  for (unsigned char c : v)
    if (is_ctl(c) && c != '\t') return false;
  return true;
}

std::string Url::authority() const {
  const bool v6 = host.find(':') != std::string::npos;
  std::string h = v6 ? "[" + host + "]" : host;
  return port == default_port() ? h : h + ":" + std::to_string(port);
}

std::string Url::basic_auth() const {
  static constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const std::string in = user + ":" + password;
  std::string out = "Basic ";
  for (std::size_t i = 0; i < in.size(); i += 3) {
    const std::size_t n = std::min<std::size_t>(3, in.size() - i);
    std::uint32_t v = 0;
    for (std::size_t k = 0; k < 3; ++k)
      v = (v << 8) | (k < n ? static_cast<unsigned char>(in[i + k]) : 0u);
    for (std::size_t k = 0; k < 4; ++k) out += k <= n ? kB64[(v >> (18 - 6 * k)) & 63] : '=';
  }
  return out;
}

Url parse_url(std::string_view u, UrlKind kind) {
  for (unsigned char c : u)
    if (is_ctl(c)) bad_url(u, "control character (CR, LF, NUL, ...) in URL");
  Url out;
  out.websocket = kind == UrlKind::websocket;
  const char* const wrong = out.websocket ? "not a ws:// or wss:// URL" : "not an http:// or https:// URL";
  const std::size_t sl = scheme_length(u);
  std::string scheme;
  for (char c : u.substr(0, sl)) scheme += lower(c);
  if (scheme == (out.websocket ? "wss:" : "https:")) {
#if !SPINDLE_HAVE_TLS
    bad_url(u, scheme + "// needs TLS, and spindle was built without OpenSSL");
#endif
    out.https = true;
    out.port = 443;
  } else if (scheme != (out.websocket ? "ws:" : "http:")) {
    bad_url(u, wrong);
  }
  if (u.substr(sl).substr(0, 2) != "//") bad_url(u, wrong);
  const std::string_view rest = u.substr(sl + 2);
  const std::size_t end = rest.find_first_of("/?#");
  parse_authority(rest.substr(0, end), u, out);
  const std::string tail = end == std::string_view::npos ? std::string() : strip_fragment(rest.substr(end));
  if (tail.empty()) {
    out.target = "/";
  } else {
    out.target = encode_target(tail[0] == '?' ? "/" + tail : tail);
  }
  return out;
}

Url resolve_location(const Url& base, std::string_view loc) {
  for (unsigned char c : loc)
    if (is_ctl(c)) bad_url(loc, "control character in a redirect's Location");
  if (scheme_length(loc) != 0) return parse_url(loc);
  if (loc.starts_with("//")) return parse_url(base.scheme() + ":" + std::string(loc));
  Url out = base;
  const std::string rel = strip_fragment(loc);
  const std::string_view path = std::string_view(base.target).substr(0, base.target.find('?'));
  if (rel.empty()) {
    // "" or "#frag": the same resource
  } else if (rel[0] == '/') {
    out.target = encode_target(rel);
  } else if (rel[0] == '?') {
    out.target = std::string(path) + encode_target(rel);
  } else {
    out.target = std::string(path.substr(0, path.rfind('/') + 1)) + encode_target(rel);
  }
  return out;
}

void check_header_fields(const Headers& headers, std::string_view who) {
  for (const auto& [name, value] : headers) {
    if (!is_token(name)) {
      // Named only when printable: a name with CR or LF in it is not
      // copied into a message that may end up in a log.
      const bool printable = std::none_of(name.begin(), name.end(), [](char c) { return is_ctl(static_cast<unsigned char>(c)); });
      throw std::invalid_argument(std::string(who) + ": a header name is not an RFC 9110 token" +
                                  (printable ? ": \"" + name + "\"" : std::string()));
    }
    if (!field_value_ok(value))
      throw std::invalid_argument(std::string(who) + ": the value of header " + name +
                                  " holds a control character (CR, LF, NUL)");
  }
}

void check_request_fields(std::string_view method, const Headers& headers, std::string_view user_agent) {
  if (!is_token(method)) throw std::invalid_argument("spindle::http: the method is not an RFC 9110 token");
  check_header_fields(headers, "spindle::http");
  if (!field_value_ok(user_agent))
    throw std::invalid_argument("spindle::http: ClientOptions::user_agent holds a control character (CR, LF, NUL)");
  auto iequals = [](std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
      if (lower(a[i]) != lower(b[i])) return false;
    return true;
  };
  for (const auto& field : headers) {
    const std::string& name = field.first;
    // The body's framing is the client's to write (from body, body_length
    // or body_file): a second Content-Length, or one beside chunked, lets
    // the server read the body, or the next request, differently from the
    // client (request smuggling). Go ignores these fields; refused here, so
    // the mistake is seen.
    if (iequals(name, "Content-Length") || iequals(name, "Transfer-Encoding"))
      throw std::invalid_argument("spindle::http: " + name +
                                  " is set by the client from the body (RequestOptions::body, body_length, body_file)");
  }
}

}  // namespace spindle::http::detail
