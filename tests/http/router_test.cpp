// router_test.cpp: http::Router's path rules (decoded parameters and
// literals, empty segments, malformed escapes), Request::query_params, and
// JSON key order (Request::json / Response::json as ordered_json,
// Response::json_body and Client::post_json with ordered and sorted values).
// The Router is called directly for the path rules (it is a Handler); the
// JSON round trip goes through a Server and a Client.
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "http_test_support.hpp"

using namespace spindle_test;
using namespace http_test;

namespace {

// Answers "<route>:<params>" so each check sees which route matched with what.
http::Router routes() {
  http::Router r;
  auto show = [](std::string name) {
    return [name](http::Request& q) {
      std::string out = name;
      for (const auto& [k, v] : q.params) out += "|" + k + "=" + v;
      return http::Response::text_body(200, out);
    };
  };
  r.get("/users/:id", show("user"));
  r.get("/files/:name/", show("dir"));
  r.get("/café", show("cafe"));
  r.get("/a%20b", show("space"));
  r.get("/static/*", show("static"));
  r.get("/", show("root"));
  return r;
}

// call: the router's answer to GET target: "<status> <body>".
std::string call(const http::Router& r, std::string target, std::string method = "GET") {
  http::Request q;
  q.method = std::move(method);
  q.target = std::move(target);
  const http::Response res = r(q);
  return std::to_string(res.status) + " " + res.body;
}

// allow_of: the router's status and Allow field for `method` on target.
std::pair<int, std::string> allow_of(const http::Router& r, std::string method, std::string target) {
  http::Request q;
  q.method = std::move(method);
  q.target = std::move(target);
  const http::Response res = r(q);
  return {res.status, std::string(res.headers.get("Allow").value_or(""))};
}

}  // namespace

TEST_CASE("router: path parameters are percent-decoded after the split") {
  const http::Router r = routes();
  CHECK(call(r, "/users/J%C3%B6hn%20Doe") == "200 user|id=Jöhn Doe");
  CHECK(call(r, "/users/%32") == "200 user|id=2");
  CHECK(call(r, "/users/a+b") == "200 user|id=a+b");  // '+' is not a space in a path
  CHECK(call(r, "/users/a%2Fb") == "200 user|id=a/b");  // %2F does not split
  CHECK(call(r, "/users/42?x=%20") == "200 user|id=42");
  CHECK(call(r, "/static/css/a%20b.css") == "200 static|*=css/a b.css");
  CHECK(call(r, "/static/") == "200 static|*=");
}

TEST_CASE("router: literal segments compare decoded") {
  const http::Router r = routes();
  CHECK(call(r, "/caf%C3%A9") == "200 cafe");
  CHECK(call(r, "/café") == "200 cafe");
  CHECK(call(r, "/a%20b") == "200 space");
  CHECK(call(r, "/a b") == "200 space");
  CHECK(call(r, "/caf%c3%a9") == "200 cafe");  // hex digits in either case
}

// Found by fuzz_url: a pattern's kinds were read after decoding, so an
// escaped ':' or '*' turned a literal into a parameter or a wildcard; and
// the 405's Allow looked names up by substring (PATCH "in" PROPPATCH).
TEST_CASE("router: an escaped ':' or '*' in a pattern is a literal; Allow lists whole method names") {
  http::Router r;
  auto ok = [](http::Request& q) {
    std::string out = "ok";
    for (const auto& [k, v] : q.params) out += "|" + k + "=" + v;
    return http::Response::text_body(200, out);
  };
  r.get("/lit/%3Aid", ok);
  r.get("/lit2/%2A", ok);
  r.add("PROPPATCH", "/dav", ok);
  r.add("PATCH", "/dav", ok);
  CHECK(call(r, "/lit/foo") == "404 not found\n");
  CHECK(call(r, "/lit/%3Aid") == "200 ok");
  CHECK(call(r, "/lit/:id") == "200 ok");
  CHECK(call(r, "/lit2/a/b") == "404 not found\n");
  CHECK(call(r, "/lit2/*") == "200 ok");
  const auto [status, allow] = allow_of(r, "DELETE", "/dav");
  CHECK(status == 405);
  CHECK(allow == "PROPPATCH, PATCH");
}

TEST_CASE("router: empty segments match only where the pattern has one") {
  const http::Router r = routes();
  CHECK(call(r, "/users/2/").starts_with("404 "));
  CHECK(call(r, "//users/2").starts_with("404 "));
  CHECK(call(r, "/users//").starts_with("404 "));
  CHECK(call(r, "/users/").starts_with("404 "));  // ":id" never matches an empty segment
  // A pattern with a trailing slash takes that form only.
  CHECK(call(r, "/files/x/") == "200 dir|name=x");
  CHECK(call(r, "/files/x").starts_with("404 "));
  CHECK(call(r, "/") == "200 root");
  CHECK(call(r, "//").starts_with("404 "));
}

TEST_CASE("router: a malformed escape in the path is 400") {
  const http::Router r = routes();
  for (const char* t : {"/users/%zz", "/users/%4", "/users/%", "/nowhere/%G0", "/users/1%"}) {
    INFO(t);
    CHECK(call(r, t).starts_with("400 "));
  }
  // In the query it is the handler's business: the path still routes.
  CHECK(call(r, "/users/1?q=%zz") == "200 user|id=1");
  // 405 still says Allow for a decoded path; a GET route serves HEAD too,
  // and Allow says so (it said "GET" alone until 2026-12-01).
  const auto [status, allow] = allow_of(r, "DELETE", "/users/%32");
  CHECK(status == 405);
  CHECK(allow == "GET, HEAD");
}

// A guard on the raw path() missed "/%61dmin/keys", which the router
// routes as "/admin/:what": decoded_path() is the path the router saw.
TEST_CASE("request: decoded_path is the path the router matched; path() stays raw") {
  http::Router r;
  r.get("/admin/:what", [](http::Request& req) {
    return http::Response::text_body(req.decoded_path().starts_with("/admin/") ? 200 : 500, std::string(req.path()));
  });
  CHECK(call(r, "/%61dmin/keys") == "200 /%61dmin/keys");
  http::Request q;
  q.target = "/a%20b/c%2Fd+e?x=%20";
  CHECK(q.path() == "/a%20b/c%2Fd+e");
  CHECK(q.decoded_path() == "/a b/c/d+e");
}

TEST_CASE("request: query_params decodes the query; query() stays raw") {
  http::Request q;
  q.target = "/search?tag=a&tag=b%20c&name=J%C3%B6hn+Doe&empty&=x";
  CHECK(q.query() == "tag=a&tag=b%20c&name=J%C3%B6hn+Doe&empty&=x");
  const http::QueryParams p = q.query_params();
  CHECK(p.get("name") == "Jöhn Doe");
  CHECK(p.get_all("tag") == std::vector<std::string_view>{"a", "b c"});
  CHECK(p.get("empty") == "");
  CHECK(p.get("") == "x");
  CHECK(p.size() == 5);
  q.target = "/no-query";
  CHECK(q.query_params().empty());
}

TEST_CASE("json: objects keep their keys in order, a repeated key its first place and last value") {
  http::Request q;
  q.body = R"({"zeta":1,"alpha":{"y":2,"x":3},"mid":[{"b":1,"a":2}],"zeta":4})";
  const auto j = q.json();
  CHECK(j.dump() == R"({"zeta":4,"alpha":{"y":2,"x":3},"mid":[{"b":1,"a":2}]})");
  // Converts to nlohmann::json on assignment (whose objects sort).
  nlohmann::json sorted = q.json();
  CHECK(sorted.dump() == R"({"alpha":{"x":3,"y":2},"mid":[{"a":2,"b":1}],"zeta":4})");
  CHECK(j["alpha"]["x"].get<int>() == 3);
  // A large object (the sorted path of the dedupe), with repeats.
  std::string big = "{";
  for (int i = 0; i < 5000; ++i) big += "\"k" + std::to_string(4999 - i) + "\":" + std::to_string(i) + ",";
  big += "\"k7\":-1,\"k4999\":-2}";
  q.body = big;
  const auto b = q.json();
  CHECK(b.size() == 5000);
  CHECK(b.begin().key() == "k4999");
  CHECK(b["k4999"] == -2);
  CHECK(b["k7"] == -1);
  CHECK(std::prev(b.end()).key() == "k0");
  // Scalars, arrays and errors as nlohmann's parse.
  q.body = "[1, \"two\", null, true, 2.5]";
  CHECK(q.json().dump() == R"([1,"two",null,true,2.5])");
  q.body = "{\"a\":1} trailing";
  CHECK_THROWS_AS(q.json(), nlohmann::json::parse_error);
  q.body = "";
  CHECK_THROWS_AS(q.json(), nlohmann::json::parse_error);
}

// Nesting: each level costs the stack of whatever recurses over the value
// next (a copy, a conversion, dump()); a ~1 KB body of brackets overflowed
// a 64 KiB fiber stack once converted. 128 levels parse; the 129th is a
// parse_error (the handler's 500, or its own 400), at any position.
TEST_CASE("json: arrays and objects nest at most 128 deep; deeper is a parse_error") {
  auto nested = [](std::size_t depth, bool objects) {
    std::string open, close;
    for (std::size_t i = 0; i < depth; ++i) {
      open += objects ? "{\"k\":" : "[";
      close += objects ? "}" : "]";
    }
    return open + "1" + close;
  };
  http::Request q;
  for (bool objects : {false, true}) {
    q.body = nested(128, objects);
    const auto j = q.json();
    const nlohmann::json converted = j;  // recurses: fine at this depth
    CHECK(converted.dump() == q.body);
    q.body = nested(129, objects);
    CHECK_THROWS_AS(q.json(), nlohmann::json::parse_error);
    q.body = "{\"a\":[" + nested(128, !objects) + "]}";  // the limit counts every level
    CHECK_THROWS_AS(q.json(), nlohmann::json::parse_error);
  }
  q.body = std::string(1u << 20, '[');  // a megabyte of openers: refused at the 129th
  try {
    q.json();
    FAIL("parsed");
  } catch (const nlohmann::json::parse_error& e) {
    CHECK(std::string(e.what()).find("deeper than 128") != std::string::npos);
  }
  http::Response r;  // the client's Response::json() too
  r.body = nested(129, false);
  CHECK_THROWS_AS(r.json(), nlohmann::json::parse_error);
}

// A Request or Response that no server or Client set a cap on has the
// defaults (ServerOptions' and ClientOptions' max_json_values).
TEST_CASE("json: values past the default cap are too_many_json_values, before they are stored") {
  auto values = [](std::size_t n) {  // an array of n values in all
    std::string s = "[";
    for (std::size_t i = 1; i < n; ++i) s += i == 1 ? "0" : ",0";
    return s + "]";
  };
  auto kind = [](auto&& parse) {
    try {
      (void)parse();
    } catch (const http::Error& e) {
      return e.kind();
    }
    return http::errc{};
  };
  http::Request q;
  CHECK(http::Request::kDefaultMaxJsonValues == 100'000);
  q.body = values(100'000);
  CHECK(q.json().size() == 99'999);
  q.body = values(100'001);
  CHECK(kind([&] { return q.json(); }) == http::errc::too_many_json_values);
  http::Response r;
  CHECK(http::Response::kDefaultMaxJsonValues == 1'000'000);
  r.body = values(1'000'000);
  CHECK(r.json().size() == 999'999);
  r.body = values(1'000'001);
  CHECK(kind([&] { return r.json(); }) == http::errc::too_many_json_values);
  CHECK(http::make_error_code(http::errc::too_many_json_values).message() == "too many JSON values");
}

TEST_CASE("json: json_body keeps a braced list's order; nlohmann::json stays sorted") {
  CHECK(http::Response::json_body(200, {{"zeta", 1}, {"alpha", 2}}).body == R"({"zeta":1,"alpha":2})");
  const nlohmann::json sorted{{"zeta", 1}, {"alpha", 2}};
  CHECK(http::Response::json_body(200, sorted).body == R"({"alpha":2,"zeta":1})");
  nlohmann::ordered_json ordered;
  ordered["zeta"] = 1;
  ordered["alpha"] = 2;
  const http::Response res = http::Response::json_body(201, ordered);
  CHECK(res.body == R"({"zeta":1,"alpha":2})");
  CHECK(res.headers.get("Content-Type") == "application/json");
  CHECK(res.json().dump() == R"({"zeta":1,"alpha":2})");
}

// A handler echoing a decoded value ("%FF" in a path or query) made
// nlohmann's dump() throw, a 500, for input that was merely unusual. The
// bytes that are not UTF-8 become U+FFFD, as Go's encoding/json writes them.
TEST_CASE("json: json_body writes bytes that are not UTF-8 as U+FFFD instead of throwing") {
  std::string body;
  REQUIRE_NOTHROW(body = http::Response::json_body(200, {{"x", "a\xff"}}).body);
  CHECK(body == "{\"x\":\"a\xef\xbf\xbd\"}");
  const nlohmann::json sorted{{"q", "\xc3"}};
  REQUIRE_NOTHROW(body = http::Response::json_body(200, sorted).body);
  CHECK(body == "{\"q\":\"\xef\xbf\xbd\"}");
  CHECK(http::Response::json_body(200, {{"ok", "caf\xc3\xa9"}}).body == "{\"ok\":\"caf\xc3\xa9\"}");
}

TEST_CASE("json: post_json and the server's json() keep the order end to end") {
  run_checked(2, [] {
    http::Router r;
    r.post("/echo", [](http::Request& q) { return http::Response::json_body(200, q.json()); });
    LiveServer srv(r);
    http::Client c;
    const auto res = c.post_json(srv.url("/echo"), {{"title", "write docs"}, {"done", false}, {"id", 1}});
    FIBER_CHECK(res.body == R"({"title":"write docs","done":false,"id":1})");
    FIBER_CHECK(res.json().begin().key() == "title");
    const nlohmann::json sorted{{"title", "x"}, {"done", true}};
    FIBER_CHECK(c.post_json(srv.url("/echo"), sorted).body == R"({"done":true,"title":"x"})");
  });
}
