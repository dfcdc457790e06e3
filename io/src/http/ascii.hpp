// ascii.hpp: ASCII protocol text (field names, schemes, hosts): case
// folding, never locale-dependent, and the characters a Host may hold.
#pragma once

#include <string_view>

namespace spindle::http::detail {

inline char ascii_lower(char c) noexcept { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

// host_field_ok: v holds only the characters of reg-name, IPv4,
// IP-literal ("[...]") and ":" port: unreserved, pct-encoded, sub-delims,
// ":", "[", "]" (Go's httpguts.ValidHostHeader allows the same). Not "@"
// (a userinfo), "/", "?", "#", space or controls. Empty is allowed (the
// caller decides). For an HTTP/1.1 Host field and an HTTP/2 :authority.
inline bool host_field_ok(std::string_view v) noexcept {
  for (const char ch : v) {
    const auto c = static_cast<unsigned char>(ch);
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    std::string_view("-._~%!$&'()*+,;=:[]").find(static_cast<char>(c)) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

}  // namespace spindle::http::detail
