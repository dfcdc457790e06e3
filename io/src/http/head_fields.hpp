// head_fields.hpp: what a head's fields cost (field_charge), and which
// fields of a Beast message's list came with its head (HeadFields), so
// that those its parser adds at a chunked body's end (the trailer section)
// are told apart, by the server (Request::trailers) and the client
// (Response::trailers).
//
// Counting the head's fields does not do it: Beast's basic_fields::insert
// keeps fields of one name together, so a trailer that repeats a head
// field's name lands right after that field, not at the end (head Host,
// Transfer-Encoding, X-User and trailer Host list as Host, Host,
// Transfer-Encoding, X-User). A count would then take X-User, a head
// field, for the trailer and the trailer Host for the head's (in the
// client, a trailer Location or Set-Cookie would pass for the head's).
// So the head's elements are remembered by address (Beast allocates each
// element on its own, and they stay put until the message is cleared).
//
// Only a chunked body has a trailer section, so only then are addresses
// kept: a request or response with a Content-Length (http_hello's) pays
// nothing.
#pragma once

#include <algorithm>
#include <cstddef>
#include <functional>
#include <vector>

namespace spindle::http::detail {

// field_charge: what one field of a head costs max_head: its name and
// value plus 32, as HTTP/2's SETTINGS_MAX_HEADER_LIST_SIZE counts (and the
// HTTP/2 paths do). Bytes alone bound a head's text, not what it becomes:
// a 16 KiB head of 4,089 empty fields ("a:\r\n") made ~330 KB of Beast's
// field list and ~270 KB of Headers (measured, Beast 1.74). Charged, at
// most ~450 fields fit in the default 16 KiB. Both the server (request
// heads and trailers) and the client (response heads and trailers) charge
// it.
template <class Field>
std::size_t field_charge(const Field& f) noexcept {
  return f.name_string().size() + f.value().size() + 32;
}

class HeadFields {
 public:
  // mark: the fields `f` holds now are the head's. `chunked`: whether the
  // body that follows may add a trailer section.
  template <class Fields>
  void mark(const Fields& f, bool chunked) {
    chunked_ = chunked;
    head_.clear();
    if (!chunked) return;
    for (const auto& e : f) head_.push_back(&e);
    std::sort(head_.begin(), head_.end(), std::less<const void*>());  // a total order, for any pointers
  }

  // chunked: whether the head marked says a chunked body (so a trailer
  // section) follows.
  bool chunked() const noexcept { return chunked_; }

  // each_head / each_trailer: fn(field) for the head's fields, or for the
  // trailer's, in the list's order.
  template <class Fields, class Fn>
  void each_head(const Fields& f, Fn&& fn) const {
    for (const auto& e : f)
      if (!chunked_ || in_head(&e)) fn(e);
  }
  template <class Fields, class Fn>
  void each_trailer(const Fields& f, Fn&& fn) const {
    if (!chunked_) return;
    for (const auto& e : f)
      if (!in_head(&e)) fn(e);
  }

 private:
  bool in_head(const void* e) const {
    return std::binary_search(head_.begin(), head_.end(), e, std::less<const void*>());
  }

  bool chunked_ = false;
  std::vector<const void*> head_;  // sorted; empty unless chunked_
};

}  // namespace spindle::http::detail
