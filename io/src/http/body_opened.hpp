// body_opened.hpp: taking a Response's opened file (Response::body_opened,
// message.hpp) to send it, once, and the part of it to send
// (Response::body_file_range). Copies of a Response share the File; a
// handler may hand copies of one cached Response to connections on
// several workers, so the take is under a lock (message.cpp): one sender
// gets the descriptor, the others a closed File (their response is a 500:
// File::size refuses it), and no two read or close one descriptor.
#pragma once

#include <spindle/io/file.hpp>
#include <spindle/io/http/message.hpp>

namespace spindle::http::detail {

// take_body_opened: res.body_opened's File, moved out (a closed File when
// it was taken before).
io::File take_body_opened(Response& res) noexcept;

// clip_to_range: given `size`, the file's size when the response is
// written, sets `offset` and `size` to the part to send: the whole file,
// or res.body_file_range. False when that range does not lie within the
// file (it shrank since the handler looked): its Content-Range would name
// bytes that are not there, so both servers answer 500 before any head.
// Checked without a sum that could wrap (offset and length are the
// handler's).
inline bool clip_to_range(const Response& res, std::uint64_t& offset, std::uint64_t& size) noexcept {
  offset = 0;
  if (!res.body_file_range) return true;
  const Response::FileRange r = *res.body_file_range;
  if (r.offset > size || r.length > size - r.offset) return false;
  offset = r.offset;
  size = r.length;
  return true;
}

}  // namespace spindle::http::detail
