// connection_tokens.hpp: what a head's Connection field lines say, read
// as RFC 9110 7.6.1 and 5.3 say: every line is part of one list, and
// "close" on any line closes, whatever the version (RFC 9112 9.3: close is
// looked at before keep-alive). Shared by the server (a request's, a
// handler's response's) and the client (a response's).
//
// Beast's parser reads every line too, but its keep_alive() looks at
// "close" only in HTTP/1.1: an HTTP/1.0 head with "keep-alive" on one line
// and "close" on another (or "keep-alive, close" on one) kept the
// connection, served what came after it and pooled it on the client,
// where Go and nginx close (an attacker's review, 2026-12-02).
#pragma once

#include <string_view>

#include <boost/beast/http/field.hpp>

#include <spindle/io/http/message.hpp>

#include "ascii.hpp"

namespace spindle::http::detail {

// has_token: a comma-separated field value lists `token` (any case).
inline bool has_token(std::string_view list, std::string_view token) noexcept {
  while (!list.empty()) {
    const std::size_t comma = list.find(',');
    if (iequals(trim_ows(list.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

// lists_close: a Beast message's (or parser's) fields have "close" on a
// Connection line.
template <class Fields>
bool lists_close(const Fields& f) noexcept {
  const auto range = f.equal_range(boost::beast::http::field::connection);
  for (auto it = range.first; it != range.second; ++it) {
    const auto v = it->value();
    if (has_token(std::string_view(v.data(), v.size()), "close")) return true;
  }
  return false;
}

// lists_close: the same of a handler's Headers.
inline bool lists_close(const Headers& h) noexcept {
  for (const auto& [name, value] : h) {
    if (iequals(name, "Connection") && has_token(value, "close")) return true;
  }
  return false;
}

}  // namespace spindle::http::detail
