// h2_head_test.cpp: H2Head (io/src/http/h2_common.hpp), the builder of an
// HTTP/2 head as nghttp2's field array: names lowered only where they must
// be, values pointed to where they lie, numbers written in decimal, and a
// head past its inline room spilled, every field still there and in order.
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

TEST_CASE("h2 head: names are lowered, lower-case names and values are not copied, numbers in decimal") {
  const std::string lower_name = "x-lower";
  const std::string mixed = "Content-Type";
  const std::string value = "Text/Plain";
  H2Head h;
  h.add_number(":status", 200);
  h.add(mixed, value);
  h.add(lower_name, value);
  h.add_number("content-length", 0);
  h.add_number("x-big", UINT64_MAX);
  REQUIRE(h.size() == 5);
  const nghttp2_nv* nv = h.data();
  CHECK(name_of(nv[0]) == ":status");
  CHECK(value_of(nv[0]) == "200");
  CHECK(name_of(nv[1]) == "content-type");
  CHECK(value_of(nv[1]) == "Text/Plain");  // values keep their case
  CHECK(reinterpret_cast<const char*>(nv[1].value) == value.data());
  CHECK(reinterpret_cast<const char*>(nv[2].name) == lower_name.data());
  CHECK(value_of(nv[3]) == "0");
  CHECK(value_of(nv[4]) == "18446744073709551615");
  CHECK(mixed == "Content-Type");  // the caller's name is not changed
  for (std::size_t i = 0; i < h.size(); ++i) CHECK(nv[i].flags == NGHTTP2_NV_FLAG_NONE);
}

TEST_CASE("h2 head: past the inline fields and arena, every field is kept in order") {
  std::vector<std::string> names, values;
  for (int i = 0; i < 60; ++i) {
    // Upper-case names of 40 bytes: their lowered copies outgrow the arena.
    names.push_back("X-Field-" + std::to_string(i) + std::string(30, 'N'));
    values.push_back("v" + std::to_string(i));
  }
  H2Head h;
  for (int i = 0; i < 60; ++i) {
    h.add(names[static_cast<std::size_t>(i)], values[static_cast<std::size_t>(i)]);
    h.add_number("n", static_cast<std::uint64_t>(i));
  }
  REQUIRE(h.size() == 120);
  const nghttp2_nv* nv = h.data();
  for (int i = 0; i < 60; ++i) {
    std::string want = names[static_cast<std::size_t>(i)];
    for (char& ch : want) ch = static_cast<char>(ch >= 'A' && ch <= 'Z' ? ch - 'A' + 'a' : ch);
    CHECK(name_of(nv[2 * i]) == want);
    CHECK(value_of(nv[2 * i]) == values[static_cast<std::size_t>(i)]);
    CHECK(value_of(nv[2 * i + 1]) == std::to_string(i));
  }
}
