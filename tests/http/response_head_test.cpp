// response_head_test.cpp: http::Server writes the head of a whole-body
// response directly where it can (io/src/http/response_head.hpp); these
// tests hold that path to Beast's serializer, byte for byte, over a matrix
// of statuses, reasons, fields, versions, keep-alive, HEAD and minimal, and
// check which responses it must leave to Beast.
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "response_head.hpp"

namespace http = spindle::http;
using http::detail::HeadParams;

namespace {

std::string_view fixed_date() { return "Mon, 23 Nov 2026 04:00:00 GMT"; }

std::string beast_bytes(const http::Response& r, const HeadParams& p) {
  std::string out;
  http::detail::append_head_beast(r, p, out);
  return out;
}

}  // namespace

TEST_CASE("the direct head is Beast's head, byte for byte") {
  const std::vector<int> statuses{200, 201, 299, 301, 400, 404, 418, 500, 503, 599, 799, 999};
  const std::vector<std::string> reasons{"", "Quite Fine", " padded "};
  const std::vector<http::Headers> field_sets{
      {},
      {{"Content-Type", "text/plain"}},
      {{"content-type", "application/json"}, {"X-A", "1"}, {"X-A", "2"}, {"Set-Cookie", "a=b; Path=/"}},
      {{"X-Spaces", "  around\t "}, {"X-Empty", ""}, {"X-Tabs", "\t\t"}},
      {{"Date", "Tue, 01 Jan 2030 00:00:00 GMT"}, {"server", "mine"}},
      {{"Keep-Alive", "timeout=5"}, {"Vary", "Accept-Encoding"}}};
  const std::vector<std::string> bodies{"", "Hello, World!", std::string(70000, 'x')};
  int compared = 0;
  for (int status : statuses)
    for (const auto& reason : reasons)
      for (const auto& fields : field_sets)
        for (const auto& body : bodies)
          for (unsigned version : {9u, 10u, 11u, 20u})
            for (bool keep : {true, false})
              for (bool head : {false, true})
                for (bool minimal : {false, true}) {
                  http::Response r;
                  r.status = status;
                  r.reason = reason;
                  r.headers = fields;
                  r.body = body;
                  HeadParams p;
                  p.version = version;
                  p.keep_alive = keep;
                  p.head_request = head;
                  p.minimal = minimal;
                  p.date = &fixed_date;
                  p.server_name = "spindle-test";
                  std::string direct = "prefix:";  // appends, leaving what was there
                  REQUIRE(http::detail::append_head_direct(r, p, direct));
                  const std::string expected = "prefix:" + beast_bytes(r, p);
                  if (direct != expected) {
                    INFO("status " << status << " reason '" << reason << "' version " << version << " keep "
                                   << keep << " head " << head << " minimal " << minimal);
                    REQUIRE(direct == expected);
                  }
                  ++compared;
                }
  CHECK(compared == 12 * 3 * 6 * 3 * 4 * 2 * 2 * 2);
}

TEST_CASE("the direct head leaves to Beast what Beast edits or refuses") {
  HeadParams p;
  p.date = &fixed_date;
  p.server_name = "s";
  auto direct_answers = [&](const http::Response& r) {
    std::string out;
    const bool answered = http::detail::append_head_direct(r, p, out);
    CHECK((answered || out.empty()));  // a refusal writes nothing
    return answered;
  };
  http::Response r;
  for (int status : {100, 101, 199, 204, 304, 1000, -1, 0, 99}) {
    r.status = status;
    INFO("status " << status);
    CHECK_FALSE(direct_answers(r));
  }
  r.status = 200;
  for (const char* name : {"Connection", "connection", "Content-Length", "TRANSFER-ENCODING"}) {
    r.headers = {{name, "x"}};
    INFO(name);
    CHECK_FALSE(direct_answers(r));
  }
  r.headers = {{"", "nameless"}};
  CHECK_FALSE(direct_answers(r));
  r.headers = {{"X-Big", std::string(70000, 'v')}};
  CHECK_FALSE(direct_answers(r));
  r.headers = {{"X-Fine", "v"}};
  CHECK(direct_answers(r));
  p.version = 100;
  CHECK_FALSE(direct_answers(r));
}

TEST_CASE("append_head: no Content-Length where the status forbids a body; a status over 999 throws") {
  HeadParams p;
  p.date = &fixed_date;
  http::Response r;
  std::string out;
  r.status = 1000;
  CHECK_THROWS_AS(http::detail::append_head(r, p, out), std::invalid_argument);
  for (int status : {100, 103, 204, 304}) {
    for (bool head : {false, true}) {
      INFO("status " << status << " head " << head);
      r = {};
      r.status = status;
      r.body = "a handler's mistake";  // never sent (server.cpp drops it)
      p.head_request = head;
      out.clear();
      http::detail::append_head(r, p, out);
      CHECK(out.rfind("HTTP/1.1 " + std::to_string(status) + " ", 0) == 0);
      CHECK(out.find("Content-Length") == std::string::npos);
      CHECK(out.find("Transfer-Encoding") == std::string::npos);
      CHECK(out.size() >= 4);
      CHECK(out.substr(out.size() - 4) == "\r\n\r\n");
    }
  }
  // A 304's Content-Length is the handler's to give (the length a 200
  // would have had): kept, once.
  r = {};
  r.status = 304;
  r.headers = {{"Content-Length", "42"}, {"ETag", "\"v1\""}};
  out.clear();
  http::detail::append_head(r, p, out);
  CHECK(out.find("Content-Length: 42\r\n") != std::string::npos);
  CHECK(out.find("Content-Length") == out.rfind("Content-Length"));
}
