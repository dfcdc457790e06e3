// body_allowed.hpp: which statuses end with their head, and dropping what
// a handler put in the body of one. Both servers use it (server.cpp for
// HTTP/1.1, h2_server.cpp for HTTP/2), and response_head.hpp for the head's
// framing; it brings in no Beast, which h2_server.cpp does not otherwise
// need.
#pragma once

#include <spindle/io/http/message.hpp>

namespace spindle::http::detail {

// body_allowed: false for 1xx, 204 and 304, whose responses end with
// their head (RFC 9110 6.4.1). Such a response is sent without a body
// whatever the handler put in it, and without Content-Length (8.6: never
// on 1xx or 204; on 304 only the length a 200 would have had, which only
// the handler knows: a Content-Length it set is kept).
inline bool body_allowed(int status) noexcept {
  return !((status >= 100 && status < 200) || status == 204 || status == 304);
}

// drop_body: empties every body res may carry (bytes, a generator, a path,
// an opened file), for a status that ends with its head. Done before the
// sender looks at the body, so no file is opened or taken for it: a missing
// one, or an opened one a copy of the Response already sent, would
// otherwise turn a 204 or 304 into a 500.
inline void drop_body(Response& res) noexcept {
  res.body_stream = nullptr;
  res.body_file.clear();
  res.body_opened.reset();
  res.body_file_range.reset();
  res.body.clear();
}

}  // namespace spindle::http::detail
