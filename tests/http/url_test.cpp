// url_test.cpp: http::URL, QueryParams, url_encode / url_decode
// (<spindle/io/http/url.hpp>): RFC 3986 5.4's resolution examples, Python's
// quote / unquote / parse_qsl / urlencode results, and the parse rules the
// Client shares (io/src/http/url.cpp). Plain string work: no runtime.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include <spindle/io/http/error.hpp>
#include <spindle/io/http/url.hpp>

#include "url.hpp"  // io/src/http: detail::Url, the Client's

namespace http = spindle::http;

namespace {

http::errc error_of_url(std::string_view s, std::string* what = nullptr) {
  try {
    http::URL u(s);
  } catch (const http::Error& e) {
    if (what != nullptr) *what = e.what();
    return e.kind();
  }
  return http::errc{};
}

using Cases = std::vector<std::pair<std::string, std::string>>;

// check_joins: each (reference, expected) of an RFC 3986 5.4 table
// resolved against the section's base.
void check_joins(const Cases& cases) {
  const http::URL base("http://a/b/c/d;p?q");
  for (const auto& [ref, want] : cases) {
    INFO(ref);
    CHECK(base.join(ref).str() == want);
  }
}

}  // namespace

TEST_CASE("url: RFC 3986 5.4.1 normal examples") {
  check_joins({
      {"g:h", "g:h"},
      {"g", "http://a/b/c/g"},
      {"./g", "http://a/b/c/g"},
      {"g/", "http://a/b/c/g/"},
      {"/g", "http://a/g"},
      {"//g", "http://g"},
      {"?y", "http://a/b/c/d;p?y"},
      {"g?y", "http://a/b/c/g?y"},
      {"#s", "http://a/b/c/d;p?q#s"},
      {"g#s", "http://a/b/c/g#s"},
      {"g?y#s", "http://a/b/c/g?y#s"},
      {";x", "http://a/b/c/;x"},
      {"g;x", "http://a/b/c/g;x"},
      {"g;x?y#s", "http://a/b/c/g;x?y#s"},
      {"", "http://a/b/c/d;p?q"},
      {".", "http://a/b/c/"},
      {"./", "http://a/b/c/"},
      {"..", "http://a/b/"},
      {"../", "http://a/b/"},
      {"../g", "http://a/b/g"},
      {"../..", "http://a/"},
      {"../../", "http://a/"},
      {"../../g", "http://a/g"},
  });
}

TEST_CASE("url: RFC 3986 5.4.2 abnormal examples") {
  check_joins({
      {"../../../g", "http://a/g"},
      {"../../../../g", "http://a/g"},
      {"/./g", "http://a/g"},
      {"/../g", "http://a/g"},
      {"g.", "http://a/b/c/g."},
      {".g", "http://a/b/c/.g"},
      {"g..", "http://a/b/c/g.."},
      {"..g", "http://a/b/c/..g"},
      {"./../g", "http://a/b/g"},
      {"./g/.", "http://a/b/c/g/"},
      {"g/./h", "http://a/b/c/g/h"},
      {"g/../h", "http://a/b/c/h"},
      {"g;x=1/./y", "http://a/b/c/g;x=1/y"},
      {"g;x=1/../y", "http://a/b/c/y"},
      {"g?y/./x", "http://a/b/c/g?y/./x"},
      {"g?y/../x", "http://a/b/c/g?y/../x"},
      {"g#s/./x", "http://a/b/c/g#s/./x"},
      {"g#s/../x", "http://a/b/c/g#s/../x"},
      {"http:g", "http:g"},  // strict parser (5.4.2)
  });
}

TEST_CASE("url: join keeps the base's userinfo only for its own authority") {
  const http::URL base("https://ada:secret@example.com:8443/a/b?x=1");
  const http::URL same = base.join("../c");
  CHECK(same.str() == "https://example.com:8443/c");
  CHECK(same.user() == "ada");
  CHECK(same.password() == "secret");
  const http::URL other = base.join("//other.example/p");
  CHECK(other.str() == "https://other.example/p");
  CHECK_FALSE(other.has_userinfo());
  CHECK(other.password().empty());
  // An empty base path: the merge starts at "/".
  CHECK(http::URL("http://h").join("x").str() == "http://h/x");
  // Dot segments in an absolute reference are removed too.
  CHECK(base.join("http://h/a/./b/../c").str() == "http://h/a/c");
}

// str() reads back as the same URL. A path with no authority starting
// "//" was written as a network-path reference ("/api/" joined with
// "..//evil.com/x" gave "//evil.com/x": host evil.com once joined to any
// base), and a relative path whose first segment holds ':' as a scheme.
TEST_CASE("url: str() reads back as the same URL, whatever path dot-segment removal left") {
  struct Case {
    std::string base, ref, path, str;
  };
  for (const auto& [base, ref, path, str] :
       std::vector<Case>{{"/api/", "..//evil.com/x", "//evil.com/x", "/.//evil.com/x"},
                         {"http:x", "/.//evil.com/p", "//evil.com/p", "http:/.//evil.com/p"},
                         {"a", "./b:c", "b:c", "./b:c"}}) {
    INFO(base << " + " << ref);
    const http::URL joined = http::URL(base).join(ref);
    REQUIRE(joined.path() == path);
    REQUIRE(!joined.has_authority());
    CHECK(joined.str() == str);
    // Read back: the same parts (no authority, no scheme for "b:c").
    const http::URL back(joined.str());
    CHECK(!back.has_authority());
    CHECK(back.scheme() == joined.scheme());
    CHECK(back.path() == path);
    CHECK(back.str() == str);
    // A "." segment is all that was added: resolving gives the path again.
    CHECK(http::URL(base).join(joined.str()).path() == path);
  }
  // The first, joined to a real base, stays on the base's host.
  const http::URL on = http::URL("https://good.com/").join(http::URL("/api/").join("..//evil.com/x").str());
  CHECK(on.host() == "good.com");
  CHECK(on.path() == "//evil.com/x");
}

TEST_CASE("url: parts, defaults and str() without the password") {
  const http::URL u("HTTPS://Ada:p%40ss@Example.COM:8443/a%2Fb/c d?q=1&r#frag");
  CHECK(u.scheme() == "https");
  CHECK(u.host() == "example.com");
  CHECK(u.port() == 8443);
  CHECK(u.explicit_port() == 8443);
  CHECK(u.user() == "Ada");
  CHECK(u.password() == "p@ss");
  CHECK(u.path() == "/a%2Fb/c%20d");
  CHECK(u.query() == "q=1&r");
  CHECK(u.fragment() == "frag");
  CHECK(u.target() == "/a%2Fb/c%20d?q=1&r");
  CHECK(u.str() == "https://example.com:8443/a%2Fb/c%20d?q=1&r#frag");
  CHECK(u.str().find("p%40ss") == std::string::npos);
  CHECK(u.query_params().get("r") == "");

  CHECK(http::URL("http://h").port() == 80);
  CHECK(http::URL("wss://h").port() == 443);
  CHECK(http::URL("http://h").target() == "/");
  CHECK(http::URL("http://[::1]:81/").host() == "::1");
  CHECK(http::URL("http://[::1]:81/").str() == "http://[::1]:81/");
  const http::URL rel("../x?y");
  CHECK_FALSE(rel.is_absolute());
  CHECK(rel.path() == "../x");
  CHECK(http::URL("x?").has_query());
  CHECK_FALSE(http::URL("x").has_query());
}

TEST_CASE("url: bad URLs are errc::invalid_url and never show the password") {
  std::string what;
  CHECK(error_of_url("http://ex ample.com/", &what) == http::errc::invalid_url);
  CHECK(error_of_url("http://h/\r\nX-Injected: 1") == http::errc::invalid_url);
  CHECK(error_of_url("http://h:0/") == http::errc::invalid_url);
  CHECK(error_of_url("http://h:65536/") == http::errc::invalid_url);
  CHECK(error_of_url("http://[::1/") == http::errc::invalid_url);
  // Brackets hold an IPv6 address (a zone after '%' at most): a name in
  // them lost its brackets in str() and the Host field and read as
  // another host (found by fuzz_url: "http://[a%b]/" wrote "http://a%b/").
  CHECK(error_of_url("http://[a%b]/") == http::errc::invalid_url);
  CHECK(error_of_url("http://[example.com]/") == http::errc::invalid_url);
  CHECK(error_of_url("http://[1.2.3.4]/") == http::errc::invalid_url);
  CHECK(http::URL("http://[fe80::1%25eth0]:8/").str() == "http://[fe80::1%25eth0]:8/");
  CHECK(http::URL("http://[::FFFF:1.2.3.4]/").host() == "::ffff:1.2.3.4");
  CHECK(error_of_url("http://u:p%zz@h/", &what) == http::errc::invalid_url);
  CHECK(what.find("p%zz") == std::string::npos);
  CHECK(error_of_url("http://u:hunter2@bad host/", &what) == http::errc::invalid_url);
  CHECK(what.find("hunter2") == std::string::npos);
  CHECK(error_of_url("http://h/ok") == http::errc{});
}

// A host whose last label is a number is IPv4, and only the dotted quad
// is taken (WHATWG's "ends in a number"; Go's ParseIP): the resolver reads
// inet_aton's other forms as addresses too, so a check of host() against
// a list was passed by "127.1", "0x7f000001", "2130706433" or
// "0177.0.0.1" (octal), and the request went to 127.0.0.1 (an attacker's
// review).
TEST_CASE("url: a numeric host is a dotted-quad IPv4 address or invalid") {
  for (const char* u : {"http://127.1/", "http://0x7f000001/", "http://2130706433/", "http://0177.0.0.1/",
                        "http://127.0.0.01/", "http://0x7f.0.0.1/", "http://1.2.3.4.5/", "http://256.0.0.1/",
                        "http://example.123/", "http://a.0x1f/", "http://127.0.0.1./", "http://0X7F000001/"}) {
    INFO(u);
    CHECK(error_of_url(u) == http::errc::invalid_url);
  }
  CHECK(http::URL("http://127.0.0.1:8080/").host() == "127.0.0.1");
  CHECK(http::URL("http://169.254.169.254/").host() == "169.254.169.254");
  // Names that only look numeric in part are names.
  CHECK(http::URL("http://1.2.3.example/").host() == "1.2.3.example");
  CHECK(http::URL("http://0x.example/").host() == "0x.example");
  CHECK(http::URL("http://a.0xg/").host() == "a.0xg");
  CHECK(http::URL("http://123abc/").host() == "123abc");
}

TEST_CASE("url: with_query, with_params and with_fragment") {
  const http::URL u("http://h/p?x=1#f");
  CHECK(u.with_params({{"q", "a b"}, {"q", "c&d"}}).str() == "http://h/p?x=1&q=a+b&q=c%26d#f");
  CHECK(u.with_query({{"k", "v"}}).str() == "http://h/p?k=v#f");
  CHECK(u.with_query({}).str() == "http://h/p#f");
  CHECK(http::URL("http://h/p").with_params({{"a", "1"}}).str() == "http://h/p?a=1");
  CHECK(http::URL("http://h/p?").with_params({{"a", "1"}}).str() == "http://h/p?a=1");
  CHECK(u.with_params({}).str() == u.str());
  CHECK(u.with_fragment(std::nullopt).str() == "http://h/p?x=1");
  CHECK(u.with_fragment("a b").str() == "http://h/p?x=1#a%20b");
}

TEST_CASE("url: url_encode and url_decode as Python's quote(safe='') and unquote") {
  CHECK(http::url_encode("a b&c=d/é~-._") == "a%20b%26c%3Dd%2F%C3%A9~-._");
  CHECK(http::url_encode("") == "");
  CHECK(http::url_encode(std::string("\0\xff", 2)) == "%00%FF");
  CHECK(http::url_decode("J%C3%B6hn%20Doe") == "Jöhn Doe");
  CHECK(http::url_decode("a+b") == "a+b");
  CHECK(http::url_decode("a+b", true) == "a b");
  CHECK(http::url_decode("%2f%2F") == "//");
  // Invalid escapes stay as they are (Python's unquote), also at the end.
  CHECK(http::url_decode("100%") == "100%");
  CHECK(http::url_decode("%zz%4") == "%zz%4");
  CHECK(http::url_decode("%") == "%");
  CHECK(http::url_decode("%%41") == "%A");
  // Round trip over every byte.
  std::string all;
  for (int c = 0; c < 256; ++c) all += static_cast<char>(c);
  CHECK(http::url_decode(http::url_encode(all)) == all);
}

TEST_CASE("url: QueryParams::parse as Python's parse_qsl(keep_blank_values=True)") {
  const auto q = http::QueryParams::parse("a&b=&c=1&c=2&&name=J%C3%B6hn+Doe&x=a=b&=v&%zz=1");
  const std::vector<http::QueryParams::Item> want{{"a", ""},         {"b", ""},     {"c", "1"},  {"c", "2"},
                                                  {"name", "Jöhn Doe"}, {"x", "a=b"}, {"", "v"}, {"%zz", "1"}};
  CHECK(std::vector<http::QueryParams::Item>(q.begin(), q.end()) == want);
  CHECK(q.get("c") == "1");
  CHECK(q.get_all("c") == std::vector<std::string_view>{"1", "2"});
  CHECK_FALSE(q.get("missing"));
  CHECK(q.get_all("missing").empty());
  CHECK(http::QueryParams::parse("").empty());
  CHECK(http::QueryParams::parse("&&&").empty());
  // A bound: items never outnumber the '&'-separated pieces.
  const std::string many(100000, '&');
  CHECK(http::QueryParams::parse(many + "a=1").size() == 1);
}

// The cap on items (QueryParams::kDefaultMaxItems, 1,000: Django's, PHP's
// and Node's): "a&a&..." took ~35x its size in items. One past it is
// errc::too_many_params, raised before the item is made; empty pieces do
// not count; a caller may raise it (SIZE_MAX: none) or lower it.
TEST_CASE("url: QueryParams::parse refuses more items than its cap") {
  const auto items = [](std::size_t n) {
    std::string s;
    for (std::size_t i = 0; i < n; ++i) s += "k=v&";
    return s;
  };
  const auto kind = [](auto&& f) {
    try {
      f();
    } catch (const http::Error& e) {
      return e.kind();
    }
    return http::errc{};
  };
  CHECK(http::QueryParams::kDefaultMaxItems == 1000);
  CHECK(http::QueryParams::parse(items(1000)).size() == 1000);
  CHECK(kind([&] { http::QueryParams::parse(items(1001)); }) == http::errc::too_many_params);
  CHECK(http::QueryParams::parse("a" + std::string(499'998, '&') + "b").size() == 2);  // empty pieces are free
  CHECK(http::QueryParams::parse("a&&&b", 2).size() == 2);
  CHECK(kind([] { http::QueryParams::parse("a&b&c", 2); }) == http::errc::too_many_params);
  CHECK(kind([] { http::QueryParams::parse("a", 0); }) == http::errc::too_many_params);
  CHECK(http::QueryParams::parse("", 0).empty());
  CHECK(http::QueryParams::parse(items(5000), 5000).size() == 5000);
  CHECK(http::QueryParams::parse(items(5000), SIZE_MAX).size() == 5000);
  std::string what;
  try {
    http::QueryParams::parse(items(3), 2);
  } catch (const http::Error& e) {
    what = e.what();
  }
  CHECK(what.find("more than 2 query or form parameters") != std::string::npos);
  // URL::query_params has the same cap and the same way to raise it.
  const http::URL u("http://h/p?" + items(1001));
  CHECK(kind([&] { (void)u.query_params(); }) == http::errc::too_many_params);
  CHECK(u.query_params(1001).size() == 1001);
}

TEST_CASE("url: QueryParams::encode as Python's urlencode") {
  http::QueryParams q{{"q", "a b"}, {"lang", "c++"}};
  q.add("q", "é/&=");
  CHECK(q.encode() == "q=a+b&lang=c%2B%2B&q=%C3%A9%2F%26%3D");
  CHECK(http::QueryParams::parse(q.encode()) == q);
  q.set("q", "1");
  CHECK(q.encode() == "q=1&lang=c%2B%2B");
  CHECK(q.erase("lang") == 1);
  CHECK(q.encode() == "q=1");
  CHECK(http::QueryParams{}.encode().empty());
  CHECK(http::QueryParams{{"", ""}}.encode() == "=");
}

// An IPv6 zone is kept as RFC 6874 spells it ("%25") in the host, the Host
// field and the pool key, and reaches the resolver as the "%" getaddrinfo
// reads: "fe80::1%25lo" never connected ("Name or service not known").
TEST_CASE("url: an IPv6 zone reaches the resolver as '%'") {
  http::detail::Url u;
  u.host = "fe80::1%25lo";
  CHECK(u.connect_host() == "fe80::1%lo");
  u.host = "fe80::1";
  CHECK(u.connect_host() == "fe80::1");
  u.host = "example.com";
  CHECK(u.connect_host() == "example.com");
}
