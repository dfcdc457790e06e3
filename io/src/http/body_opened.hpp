// body_opened.hpp: taking a Response's opened file (Response::body_opened,
// message.hpp) to send it, once. Copies of a Response share the File; a
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

}  // namespace spindle::http::detail
