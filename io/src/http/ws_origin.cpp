// ws_origin.cpp: which pages may open a server's WebSocket
// (WsOptions::origins, ws_origin_allowed; docs/http.md "WebSocket").
//
// What is compared: the Origin's authority (host[:port], after
// "scheme://", up to any path a broken client appended) with the request's
// Host, or with each allowed pattern. The scheme is not compared: Host
// carries none, and gorilla/websocket compares hosts alone too.
#include <spindle/io/http/websocket.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ascii.hpp"

namespace spindle::http {

namespace {

// glob_iequals: `pattern` against `text`, ASCII case-insensitively, `*`
// matching any run of characters (none included). Iterative with one
// backtrack point: O(|pattern| * |text|) at worst, and both are bounded by
// the request's head (text) and the server's own configuration (pattern).
bool glob_iequals(std::string_view pattern, std::string_view text) noexcept {
  std::size_t p = 0, t = 0;
  std::size_t star = std::string_view::npos, resume = 0;
  while (t < text.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      resume = t;
    } else if (p < pattern.size() && detail::ascii_lower(pattern[p]) == detail::ascii_lower(text[t])) {
      ++p;
      ++t;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      t = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

// authority: "https://a.example:8443" -> "a.example:8443". An Origin
// without "scheme://" (RFC 6454's "null", or garbage) is compared whole.
std::string_view authority(std::string_view origin) noexcept {
  const auto sep = origin.find("://");
  if (sep == std::string_view::npos) return origin;
  std::string_view rest = origin.substr(sep + 3);
  const auto end = rest.find_first_of("/?#");
  return end == std::string_view::npos ? rest : rest.substr(0, end);
}

// without_default_port: "example.com:443" -> "example.com" when the
// Origin's scheme is https (":80" for http): a proxy that sends
// `Host: $host:$server_port` names the same origin as a browser's
// "https://example.com", which leaves the default port out.
std::string_view without_default_port(std::string_view authority, std::string_view origin) noexcept {
  const auto sep = origin.find("://");
  if (sep == std::string_view::npos) return authority;
  const std::string_view scheme = origin.substr(0, sep);
  const std::string_view port = iequals(scheme, "https") || iequals(scheme, "wss") ? ":443"
                                : iequals(scheme, "http") || iequals(scheme, "ws") ? ":80"
                                                                                    : "";
  if (!port.empty() && authority.ends_with(port)) authority.remove_suffix(port.size());
  return authority;
}

}  // namespace

bool ws_origin_allowed(const Request& upgrade, const std::vector<std::string>& origins) {
  std::optional<std::string_view> origin;
  for (const auto& [name, value] : upgrade.headers) {
    if (!iequals(name, "Origin")) continue;
    if (origin) return false;  // two Origins: which page is it? Neither.
    origin = value;
  }
  if (!origin) return true;  // not a browser: nothing to protect here
  const std::string_view from = authority(*origin);
  // Same origin: the page came from the host the browser is talking to.
  // (Only a browser's Origin matters, and a browser's is well formed: a
  // client that forges one could as well send none.)
  const auto host = upgrade.headers.get("Host");
  if (host && !from.empty() &&
      iequals(without_default_port(*host, *origin), without_default_port(from, *origin))) {
    return true;
  }
  for (const auto& pattern : origins) {
    if (pattern == "*" || glob_iequals(pattern, from)) return true;
  }
  return false;
}

}  // namespace spindle::http
