// connection_tokens.hpp: what a head's list fields say (Connection and
// Transfer-Encoding), read once for the server and the client.
//
// Connection lines are read
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

// TransferCodings: a head's Transfer-Encoding lines as RFC 9112 6.1 and
// 6.3 read them (every line one list, empty members skipped, codings in
// any case). The server refuses a request whose codings are not exactly
// one final chunked (framing_status, server.cpp: 400 or 501), the client
// such a response (bad_transfer_coding, client.cpp): one reading of the
// field on both sides, the one that decides a body's extent.
struct TransferCodings {
  bool present = false;       // a Transfer-Encoding line at all
  bool last_chunked = false;  // the last coding is chunked
  bool other = false;         // a coding other than chunked
  int chunked = 0;            // how many times chunked appears
  int codings = 0;            // non-empty members

  void add(std::string_view v) noexcept {
    present = true;
    while (!v.empty()) {
      const std::size_t comma = v.find(',');
      const std::string_view tok = trim_ows(v.substr(0, comma));
      v = comma == std::string_view::npos ? std::string_view{} : v.substr(comma + 1);
      if (tok.empty()) continue;  // "a, , b": empty list elements are allowed
      ++codings;
      last_chunked = iequals(tok, "chunked");
      if (last_chunked) {
        ++chunked;
      } else {
        other = true;
      }
    }
  }
  // chunked_once_last: the codings end in chunked, which appears once
  // (other codings may come before it).
  bool chunked_once_last() const noexcept { return codings > 0 && last_chunked && chunked == 1; }
};

// lists_close: the same of a handler's Headers.
inline bool lists_close(const Headers& h) noexcept {
  for (const auto& [name, value] : h) {
    if (iequals(name, "Connection") && has_token(value, "close")) return true;
  }
  return false;
}

}  // namespace spindle::http::detail
