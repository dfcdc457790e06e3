// ascii.hpp: ASCII protocol text (field names, schemes, hosts): case
// folding, never locale-dependent, and the characters a Host may hold.
#pragma once

#include <string_view>

namespace spindle::http::detail {

inline char ascii_lower(char c) noexcept { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

// trim_ows: v without the optional whitespace (spaces and tabs) around it
// (RFC 9110 5.6.3): what Beast's basic_fields stores of a value.
inline std::string_view trim_ows(std::string_view v) noexcept {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

// host_field_ok: v holds only the characters of reg-name, IPv4,
// IP-literal ("[...]") and ":" port: unreserved, pct-encoded, sub-delims,
// ":", "[", "]" (Go's httpguts.ValidHostHeader allows the same). Not "@"
// (a userinfo), "/", "?", "#", space or controls. Empty is allowed (the
// caller decides). For an HTTP/1.1 Host field and an HTTP/2 :authority.
// One table lookup a character: the search of the allowed punctuation per
// character it replaced cost ~15 instructions a character, 234 of an
// HTTP/2 hello's 14,500 per request (bench/http2/instructions.sh).
struct HostChars {
  bool ok[256] = {};
  constexpr HostChars() {
    for (int c = 'a'; c <= 'z'; ++c) ok[c] = true;
    for (int c = 'A'; c <= 'Z'; ++c) ok[c] = true;
    for (int c = '0'; c <= '9'; ++c) ok[c] = true;
    for (const char c : std::string_view("-._~%!$&'()*+,;=:[]")) ok[static_cast<unsigned char>(c)] = true;
  }
};
inline constexpr HostChars kHostChars{};

inline bool host_field_ok(std::string_view v) noexcept {
  for (const char ch : v) {
    if (!kHostChars.ok[static_cast<unsigned char>(ch)]) return false;
  }
  return true;
}

}  // namespace spindle::http::detail
