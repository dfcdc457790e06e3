// response_head.hpp: the head of a whole-body response (status line,
// fields, blank line), as http::Server sends it (server.cpp).
//
// Two ways to the same bytes. append_head_beast builds a Beast header and
// runs Beast's serializer: the reference, and the only path for the cases
// where Beast edits or refuses something (1xx, 204 and 304, statuses over
// 999, a handler-set Connection, Content-Length or Transfer-Encoding, a
// field Beast cannot store). append_head_direct writes the common case
// straight into the string. In a hello-world profile the serializer's walk
// over its buffer sequence of variant iterators, and the allocation of a
// field element per header, were a quarter of http::Server's user time
// (docs/http.md "Response heads"). tests/http/response_head_test.cpp checks
// that the two agree byte for byte wherever the direct path answers.
#pragma once

#include <string>
#include <string_view>

#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message.hpp>

#include <spindle/io/http/message.hpp>

#include "body_allowed.hpp"

namespace spindle::http::detail {

struct HeadParams {
  unsigned version = 11;      // the request's: 10 for HTTP/1.0
  bool keep_alive = true;     // after this response
  bool head_request = false;  // HEAD: Content-Length of the body GET gets
  bool minimal = false;       // ServerOptions::minimal: no Date, no Server
  // Called only when a Date field is added (not minimal, none set).
  std::string_view (*date)() = nullptr;
  std::string_view server_name;
};

// beast_head: res's status line and fields (and Date and Server unless
// minimal) as a Beast header, without Connection and body framing, which
// the caller adds (streamed bodies: server.cpp write_streamed).
boost::beast::http::response<boost::beast::http::empty_body> beast_head(const Response& res, const HeadParams& p);
// serialize_head: Beast's serializer writes m's head into `out`, one
// contiguous string, rather than onto the socket (where it is a dozen
// buffers that the write path walks several times through variant
// iterators and that sendmsg copies piece by piece).
void serialize_head(const boost::beast::http::response<boost::beast::http::empty_body>& m, std::string& out);

// Appends res's head to `out` through Beast's serializer. Throws what
// Beast throws (std::invalid_argument for a status over 999).
void append_head_beast(const Response& res, const HeadParams& p, std::string& out);

// The same bytes, written directly; false (out untouched) where only
// append_head_beast may answer (the file comment).
bool append_head_direct(const Response& res, const HeadParams& p, std::string& out);

// append_head_direct where it answers, else append_head_beast.
inline void append_head(const Response& res, const HeadParams& p, std::string& out) {
  if (!append_head_direct(res, p, out)) append_head_beast(res, p, out);
}

}  // namespace spindle::http::detail
