// h2_head_test.cpp: H2Head (io/src/http/h2_common.hpp), the builder of an
// HTTP/2 head as nghttp2's field array: names and values pointed to where
// they lie (nghttp2's submit copies them and lowers the names: the server
// test sees "X-Custom-Thing" arrive as x-custom-thing), literal names
// marked not to be copied, numbers written in decimal, and a head past
// its inline room spilled with every field still there and in order.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>
#include <nghttp2/nghttp2.h>

#include "h2_common.hpp"

using spindle::http::detail::H2Head;

namespace {

std::string_view name_of(const nghttp2_nv& nv) { return {reinterpret_cast<const char*>(nv.name), nv.namelen}; }
std::string_view value_of(const nghttp2_nv& nv) { return {reinterpret_cast<const char*>(nv.value), nv.valuelen}; }

}  // namespace

TEST_CASE("h2 head: fields point at the caller's strings; literal names are not copied; numbers in decimal") {
  const std::string name = "Content-Type";
  const std::string value = "Text/Plain";
  const std::string server = "spindle";
  H2Head h;
  h.add_number(":status", 200);
  h.add(name, value);
  h.add_static("server", server);
  h.add_number("content-length", 0);
  h.add_number("x-big", UINT64_MAX);
  std::string date = "Fri, 27 Nov 2026 02:30:00 GMT";
  h.add_static_copy("date", date);
  date[0] = 'X';  // the head kept its own copy
  REQUIRE(h.size() == 6);
  const nghttp2_nv* nv = h.data();
  CHECK(name_of(nv[0]) == ":status");
  CHECK(value_of(nv[0]) == "200");
  CHECK(nv[0].flags == NGHTTP2_NV_FLAG_NO_COPY_NAME);
  CHECK(reinterpret_cast<const char*>(nv[1].name) == name.data());  // nghttp2 lowers it as it copies
  CHECK(reinterpret_cast<const char*>(nv[1].value) == value.data());
  CHECK(nv[1].flags == NGHTTP2_NV_FLAG_NONE);
  CHECK(name_of(nv[2]) == "server");
  CHECK(reinterpret_cast<const char*>(nv[2].value) == server.data());
  CHECK(nv[2].flags == NGHTTP2_NV_FLAG_NO_COPY_NAME);
  CHECK(value_of(nv[3]) == "0");
  CHECK(value_of(nv[4]) == "18446744073709551615");
  CHECK(value_of(nv[5]) == "Fri, 27 Nov 2026 02:30:00 GMT");
  CHECK(nv[5].flags == NGHTTP2_NV_FLAG_NO_COPY_NAME);
}

TEST_CASE("h2 head: past the inline fields and arena, every field is kept in order") {
  std::vector<std::string> names;
  for (int i = 0; i < 60; ++i) names.push_back("x-field-" + std::to_string(i));
  H2Head h;
  for (int i = 0; i < 60; ++i) {
    h.add(names[static_cast<std::size_t>(i)], "v");
    // 60 numbers of 20 digits: past the inline arena.
    h.add_number("n", 10000000000000000000ull + static_cast<std::uint64_t>(i));
  }
  REQUIRE(h.size() == 120);
  const nghttp2_nv* nv = h.data();
  for (int i = 0; i < 60; ++i) {
    CHECK(name_of(nv[2 * i]) == names[static_cast<std::size_t>(i)]);
    CHECK(value_of(nv[2 * i]) == "v");
    CHECK(value_of(nv[2 * i + 1]) == std::to_string(10000000000000000000ull + static_cast<std::uint64_t>(i)));
  }
}
