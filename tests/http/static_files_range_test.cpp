// static_files_range_test.cpp: http::static_files' validators (ETag,
// Last-Modified), conditional requests (If-None-Match, If-Modified-Since:
// 304) and byte ranges (Range, If-Range: 206, 416), RFC 9110 8.8, 13 and
// 14. First the parsers alone (file_conditions.hpp), with the hostile
// inputs (numbers past 2^64, 10,000 ranges, garbage, reversed ranges);
// then over real sockets against a live server, the exact statuses, heads
// and bytes, over HTTP/1.1 and HTTP/2; and a Response whose range no
// longer fits its file when it is sent is a 500 before any head.
#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include <spindle/io/file.hpp>
#include <spindle/io/http/static_files.hpp>

#include "file_conditions.hpp"
#include "file_tree.hpp"
#include "http_test_support.hpp"

using namespace spindle_test;
using namespace http_test;
namespace fs = std::filesystem;
using http::detail::ByteRange;

namespace {

// The served files' mtime: 2020-01-02T03:04:05.123456789Z. Their ETag is
// "<mtime ns hex>-<size hex>", worked out here by hand (Python):
// 1577934245123456789 is 0x15e5f2d5ef81ff15.
constexpr std::int64_t kMtime = 1577934245;
constexpr long kMtimeNs = 123456789;
constexpr std::string_view kLastModified = "Thu, 02 Jan 2020 03:04:05 GMT";
constexpr std::string_view kTag = "\"15e5f2d5ef81ff15-3e8\"";  // data.bin, 1000 bytes
constexpr std::size_t kSize = 1000;
constexpr std::size_t kBigSize = 300 * 1024;  // several of the servers' 64 KiB pieces

// pattern: n bytes, none alike at a short period, so an offset off by one
// shows.
std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('!' + (i * 7919 + i / 90) % 90);
  return s;
}

void set_mtime(const fs::path& p, std::int64_t sec, long nsec) {
  const timespec times[2] = {{sec, nsec}, {sec, nsec}};
  if (::utimensat(AT_FDCWD, p.c_str(), times, 0) != 0) throw std::system_error(errno, std::generic_category());
}

// Files: a FileTree with data.bin (1000 bytes), big.bin (300 KiB) and
// empty.bin, all with the mtime above.
struct Files {
  FileTree t;
  Files() {
    FileTree::write(t.root / "data.bin", pattern(kSize));
    FileTree::write(t.root / "big.bin", pattern(kBigSize));
    FileTree::write(t.root / "empty.bin", "");
    for (const char* f : {"data.bin", "big.bin", "empty.bin"}) set_mtime(t.root / f, kMtime, kMtimeNs);
  }
};

// ask: one HTTP/1.1 request with `extra` head lines (each ending in CRLF)
// on a fresh connection; the whole response.
std::string ask(std::uint16_t port, std::string_view method, std::string_view target, std::string_view extra = "") {
  auto s = raw_connect(port);
  s.write_all(std::string(method) + " " + std::string(target) + " HTTP/1.1\r\nHost: x\r\n" + std::string(extra) +
              "Connection: close\r\n\r\n");
  return read_all(s);
}

std::string status_of(const std::string& res) { return res.substr(0, res.find("\r\n")); }

// field: the value of the head's first field named `name` (any case), or
// nothing.
std::optional<std::string> field(const std::string& res, std::string_view name) {
  const std::string head = res.substr(0, res.find("\r\n\r\n") + 2);
  for (std::size_t i = head.find("\r\n") + 2; i < head.size();) {
    const std::size_t end = head.find("\r\n", i);
    const std::string line = head.substr(i, end - i);
    const std::size_t colon = line.find(':');
    if (colon != std::string::npos && lower(line.substr(0, colon)) == lower(std::string(name))) {
      std::string v = line.substr(colon + 1);
      while (!v.empty() && v.front() == ' ') v.erase(0, 1);
      return v;
    }
    i = end + 2;
  }
  return std::nullopt;
}

// CASE_CHECK: FIBER_CHECK with the case it checks named in its failure
// (Catch's INFO belongs to the test's thread, not to a fiber's).
#define CASE_CHECK(cond, what)                                                                          \
  do {                                                                                                 \
    if (!(cond))                                                                                       \
      ::spindle_test::fiber_failures().add(std::string(__FILE__ ":" SPINDLE_TEST_STR(__LINE__) ": ") + \
                                           std::string(what) + ": CASE_CHECK(" #cond ") failed");      \
  } while (0)

// The router every live case serves.
http::Router files_router(const fs::path& root) {
  http::Router r;
  r.get("/static/*", http::static_files(root));
  return r;
}

// is_whole: a 200 with the whole of data.bin and its validators.
bool is_whole(const std::string& res) {
  return status_of(res) == "HTTP/1.1 200 OK" && body_of(res) == pattern(kSize) &&
         field(res, "content-length") == std::to_string(kSize) && !field(res, "content-range") &&
         field(res, "etag") == kTag;
}

}  // namespace

TEST_CASE("file_conditions: HTTP-dates in the three forms, and nothing else") {
  using http::detail::format_http_date;
  using http::detail::parse_http_date;
  const std::int64_t now = kMtime;
  CHECK(format_http_date(kMtime) == kLastModified);
  CHECK(format_http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT");
  CHECK(format_http_date(-1) == "Wed, 31 Dec 1969 23:59:59 GMT");
  CHECK(format_http_date(951782400) == "Tue, 29 Feb 2000 00:00:00 GMT");
  CHECK(format_http_date(253402300800).empty());  // year 10000
  // RFC 9110 5.6.7's example in each form.
  CHECK(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT", now) == 784111777);
  CHECK(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT", now) == 784111777);
  CHECK(parse_http_date("Sun Nov  6 08:49:37 1994", now) == 784111777);
  CHECK(parse_http_date(kLastModified, now) == kMtime);
  CHECK(parse_http_date("Thu, 31 Dec 2020 23:59:60 GMT", now) == 1609459199);  // leap second: :59
  // A two-digit year more than 50 years ahead (of 2020 here) is the last
  // century's; 50 years ahead is not more.
  CHECK(parse_http_date("Friday, 01-Jan-71 00:00:00 GMT", now) == 31536000);
  CHECK(parse_http_date("Wednesday, 01-Jan-70 00:00:00 GMT", now) == 3155760000);
  CHECK(parse_http_date("Friday, 01-Jan-49 00:00:00 GMT", now) == 2493072000);
  for (const char* bad : {"", "yesterday", "Sun, 06 Nov 1994 08:49:37 UTC", "sun, 06 Nov 1994 08:49:37 GMT",
                          "Sun, 06 nov 1994 08:49:37 GMT", "Sun, 30 Feb 1994 08:49:37 GMT",
                          "Sun, 06 Nov 1994 24:00:00 GMT", "Sun, 06 Nov 1994 08:60:00 GMT",
                          "Sun, 06 Nov 1994 08:49:61 GMT", "Sun, 6 Nov 1994 08:49:37 GMT",
                          "Sun, 06 Nov 1994 08:49:37 GMT trailing", "Sun, 06 Nov -994 08:49:37 GMT",
                          "Sun, 00 Nov 1994 08:49:37 GMT", "Sund, 06-Nov-94 08:49:37 GMT",
                          "Sunday, 06-Nov-1994 08:49:37 GMT", "Sun Nov 6 08:49:37 1994", "Sun Nov  6 08:49:37 94",
                          "Sun, 06 Nov 1994 08:49:3x GMT", "1994-11-06T08:49:37Z", "784111777"}) {
    INFO(bad);
    CHECK(!parse_http_date(bad, now));
  }
}

TEST_CASE("file_conditions: one Range read exactly; invalid, several or another unit ignored") {
  using http::detail::parse_range;
  auto is = [](ByteRange r, ByteRange::Kind k, std::uint64_t first = 0, std::uint64_t length = 0) {
    return r.kind == k && (k != ByteRange::part || (r.first == first && r.length == length));
  };
  CHECK(is(parse_range("bytes=0-9", 1000), ByteRange::part, 0, 10));
  CHECK(is(parse_range("bytes=10-10", 1000), ByteRange::part, 10, 1));
  CHECK(is(parse_range("bytes=990-", 1000), ByteRange::part, 990, 10));
  CHECK(is(parse_range("bytes=-10", 1000), ByteRange::part, 990, 10));
  CHECK(is(parse_range("bytes=-1000", 1000), ByteRange::part, 0, 1000));
  CHECK(is(parse_range("bytes=-5000", 1000), ByteRange::part, 0, 1000));
  CHECK(is(parse_range("bytes=999-5000", 1000), ByteRange::part, 999, 1));
  CHECK(is(parse_range("BYTES=0-0", 1000), ByteRange::part, 0, 1));
  CHECK(is(parse_range("  bytes=,, 5-6 ,,", 1000), ByteRange::part, 5, 2));  // empty list members
  CHECK(is(parse_range("bytes=0005-0006", 1000), ByteRange::part, 5, 2));
  // Past 2^63 and 2^64: no wrap. A first that large is past the end, a
  // last or a suffix that large is the end.
  CHECK(is(parse_range("bytes=0-99999999999999999999999", 1000), ByteRange::part, 0, 1000));
  CHECK(is(parse_range("bytes=-99999999999999999999999", 1000), ByteRange::part, 0, 1000));
  CHECK(is(parse_range("bytes=-18446744073709551615", 1000), ByteRange::part, 0, 1000));
  CHECK(is(parse_range("bytes=99999999999999999999999-", 1000), ByteRange::unsatisfiable));
  CHECK(is(parse_range("bytes=18446744073709551616-", 1000), ByteRange::unsatisfiable));
  CHECK(is(parse_range("bytes=9223372036854775808-9223372036854775809", 1000), ByteRange::unsatisfiable));
  CHECK(is(parse_range("bytes=1000-", 1000), ByteRange::unsatisfiable));
  CHECK(is(parse_range("bytes=1000-2000", 1000), ByteRange::unsatisfiable));
  CHECK(is(parse_range("bytes=-0", 1000), ByteRange::unsatisfiable));
  // An empty file: a first is past its end; a suffix has nothing to name.
  CHECK(is(parse_range("bytes=0-", 0), ByteRange::unsatisfiable));
  CHECK(is(parse_range("bytes=-5", 0), ByteRange::whole));
  // Invalid: ignored, never a 416.
  for (const char* bad : {"", "bytes", "bytes=", "bytes=,,,", "bytes=-", "bytes=--5", "bytes=5", "bytes=5-4",
                          "bytes=99999999999999999999-99999999999999999998", "bytes=+1-2", "bytes=1-+2",
                          "bytes=-1-2", "bytes=1 - 2", "bytes=0x10-", "bytes = 0-1", "byte=0-1", "items=0-1",
                          "bytes=a-b", "bytes=1-2-3", "bytes=\x80-1"}) {
    INFO(bad);
    CHECK(is(parse_range(bad, 1000), ByteRange::whole));
  }
  // Several ranges: ignored, however many, overlapping or not.
  CHECK(is(parse_range("bytes=0-1,2-3", 1000), ByteRange::whole));
  CHECK(is(parse_range("bytes=0-1,5000-", 1000), ByteRange::whole));
  std::string many = "bytes=0-0";
  for (int i = 0; i < 10000; ++i) many += ",0-999";
  CHECK(is(parse_range(many, 1000), ByteRange::whole));
  std::string empties = "bytes=" + std::string(10000, ',') + "7-8" + std::string(10000, ',');
  CHECK(is(parse_range(empties, 1000), ByteRange::part, 7, 2));
}

TEST_CASE("file_conditions: entity-tags compare weakly for If-None-Match, strongly for If-Range") {
  using http::detail::etag_matches_strong;
  using http::detail::etag_matches_weak;
  CHECK(etag_matches_weak("\"a-1\"", "\"a-1\""));
  CHECK(etag_matches_weak("W/\"a-1\"", "\"a-1\""));
  CHECK(etag_matches_weak("\"a-1\"", "W/\"a-1\""));
  CHECK(etag_matches_weak("\"x\", W/\"y\" ,\"a-1\"", "\"a-1\""));
  CHECK(etag_matches_weak("*", "\"a-1\""));
  CHECK(!etag_matches_weak("\"a-2\"", "\"a-1\""));
  CHECK(!etag_matches_weak("a-1", "\"a-1\""));             // not quoted
  CHECK(!etag_matches_weak("\"a-1", "\"a-1\""));           // unclosed
  CHECK(!etag_matches_weak("garbage, \"a-1\"", "\"a-1\""));  // nothing past garbage
  CHECK(!etag_matches_weak("", "\"a-1\""));
  CHECK(etag_matches_strong("\"a-1\"", "\"a-1\""));
  CHECK(!etag_matches_strong("W/\"a-1\"", "\"a-1\""));
  CHECK(!etag_matches_strong("\"a-1\"", "W/\"a-1\""));
  CHECK(!etag_matches_strong("\"a-2\"", "\"a-1\""));
}

TEST_CASE("static_files sends its validators and Accept-Ranges, to GET and HEAD") {
  Files f;
  run_checked(2, [&] {
    LiveServer srv(files_router(f.t.root));
    const std::string res = ask(srv.port(), "GET", "/static/data.bin");
    FIBER_CHECK(is_whole(res));
    FIBER_CHECK(field(res, "last-modified") == kLastModified);
    FIBER_CHECK(field(res, "accept-ranges") == "bytes");
    const std::string head = ask(srv.port(), "HEAD", "/static/data.bin");
    FIBER_CHECK(status_of(head) == "HTTP/1.1 200 OK");
    FIBER_CHECK(field(head, "etag") == kTag);
    FIBER_CHECK(field(head, "last-modified") == kLastModified);
    FIBER_CHECK(field(head, "content-length") == std::to_string(kSize));
    FIBER_CHECK(body_of(head).empty());
  });
}

TEST_CASE("static_files answers 304 to a matching If-None-Match or If-Modified-Since") {
  Files f;
  run_checked(2, [&] {
    LiveServer srv(files_router(f.t.root));
    const std::string tag(kTag);
    const std::string lm(kLastModified);
    auto not_modified = [&](std::string_view method, const std::string& extra) {
      const std::string res = ask(srv.port(), method, "/static/data.bin", extra);
      const bool ok = status_of(res) == "HTTP/1.1 304 Not Modified" && body_of(res).empty() &&
                      field(res, "etag") == kTag && field(res, "last-modified") == kLastModified &&
                      !field(res, "content-length") && !field(res, "content-range");
      CASE_CHECK(ok, std::string(method) + " " + extra);
    };
    auto whole = [&](const std::string& extra) {
      CASE_CHECK(is_whole(ask(srv.port(), "GET", "/static/data.bin", extra)), extra);
    };
    for (const char* method : {"GET", "HEAD"}) {
      not_modified(method, "If-None-Match: " + tag + "\r\n");
      not_modified(method, "If-Modified-Since: " + lm + "\r\n");
    }
    not_modified("GET", "If-None-Match: W/" + tag + "\r\n");                // weak comparison
    not_modified("GET", "If-None-Match: \"other\", " + tag + "\r\n");       // a list
    not_modified("GET", "If-None-Match: \"other\"\r\nIf-None-Match: " + tag + "\r\n");  // two fields: one list
    not_modified("GET", "If-None-Match: *\r\n");
    not_modified("GET", "If-Modified-Since: Thu, 02 Jan 2020 03:04:06 GMT\r\n");   // later
    not_modified("GET", "If-Modified-Since: Thursday, 02-Jan-20 03:04:05 GMT\r\n");  // RFC 850
    not_modified("GET", "If-Modified-Since: Thu Jan  2 03:04:05 2020\r\n");         // asctime
    // A Range after a 304's condition changes nothing.
    not_modified("GET", "If-None-Match: " + tag + "\r\nRange: bytes=0-1\r\n");
    whole("If-None-Match: \"other\"\r\n");
    whole("If-None-Match: garbage\r\n");
    whole("If-Modified-Since: Thu, 02 Jan 2020 03:04:04 GMT\r\n");  // a second before the mtime
    whole("If-Modified-Since: not a date\r\n");                    // unparsable: ignored
    whole("If-Modified-Since: " + lm + "\r\nIf-Modified-Since: " + lm + "\r\n");  // two: ignored
    // If-None-Match decides alone when present: a matching date is not looked at.
    whole("If-None-Match: \"other\"\r\nIf-Modified-Since: " + lm + "\r\n");
  });
}

TEST_CASE("static_files serves one byte range as 206 with exactly its bytes, and 416 past the end") {
  Files f;
  run_checked(2, [&] {
    http::ServerOptions o;
    o.max_head = 128 * 1024;  // room for the 10,000-range header below
    LiveServer srv(files_router(f.t.root), o);
    const std::string data = pattern(kSize);
    auto part = [&](std::string_view method, const std::string& range, std::uint64_t first, std::uint64_t last) {
      const std::string what = std::string(method) + " " + range;
      const std::string res = ask(srv.port(), method, "/static/data.bin", "Range: " + range + "\r\n");
      CASE_CHECK(status_of(res) == "HTTP/1.1 206 Partial Content", what);
      CASE_CHECK(field(res, "content-range") ==
                     "bytes " + std::to_string(first) + "-" + std::to_string(last) + "/" + std::to_string(kSize),
                 what);
      CASE_CHECK(field(res, "content-length") == std::to_string(last - first + 1), what);
      CASE_CHECK(field(res, "etag") == kTag, what);
      CASE_CHECK(field(res, "accept-ranges") == "bytes", what);
      CASE_CHECK(field(res, "content-type") == "application/octet-stream", what);
      CASE_CHECK(body_of(res) == (method == "HEAD" ? "" : data.substr(first, last - first + 1)), what);
    };
    auto unsatisfiable = [&](const std::string& range) {
      const std::string res = ask(srv.port(), "GET", "/static/data.bin", "Range: " + range + "\r\n");
      CASE_CHECK(status_of(res) == "HTTP/1.1 416 Range Not Satisfiable", range);
      CASE_CHECK(field(res, "content-range") == "bytes */" + std::to_string(kSize), range);
      CASE_CHECK(res.find(data.substr(0, 16)) == std::string::npos, range);
    };
    part("GET", "bytes=0-9", 0, 9);
    part("HEAD", "bytes=0-9", 0, 9);
    part("GET", "bytes=500-500", 500, 500);
    part("GET", "bytes=990-", 990, 999);
    part("GET", "bytes=-10", 990, 999);
    part("HEAD", "bytes=-10", 990, 999);
    part("GET", "bytes=-5000", 0, 999);
    part("GET", "bytes=5-5000", 5, 999);
    part("GET", "bytes=0-99999999999999999999999", 0, 999);
    part("GET", "bytes=-99999999999999999999999", 0, 999);
    part("GET", "Bytes=,, 7-8 ,", 7, 8);
    unsatisfiable("bytes=1000-");
    unsatisfiable("bytes=1000-1000");
    unsatisfiable("bytes=-0");
    unsatisfiable("bytes=9223372036854775808-");
    unsatisfiable("bytes=99999999999999999999999-");
    // An empty file: a first is past its end; a suffix is the whole, a 200.
    const std::string e = ask(srv.port(), "GET", "/static/empty.bin", "Range: bytes=0-\r\n");
    FIBER_CHECK(status_of(e) == "HTTP/1.1 416 Range Not Satisfiable");
    FIBER_CHECK(field(e, "content-range") == "bytes */0");
    const std::string es = ask(srv.port(), "GET", "/static/empty.bin", "Range: bytes=-5\r\n");
    FIBER_CHECK(status_of(es) == "HTTP/1.1 200 OK");
    FIBER_CHECK(field(es, "content-length") == "0");
  });
}

TEST_CASE("static_files ignores an invalid, a repeated or a multiple Range: 200 and the whole file") {
  Files f;
  run_checked(2, [&] {
    http::ServerOptions o;
    o.max_head = 128 * 1024;
    LiveServer srv(files_router(f.t.root), o);
    std::string many = "bytes=0-0";
    for (int i = 0; i < 10000; ++i) many += ",0-999";  // the Apache Killer's shape, 60 KB
    for (const std::string& range :
         {std::string("bytes=5-4"), std::string("bytes=99999999999999999999-99999999999999999998"),
          std::string("bytes=abc"), std::string("bytes="), std::string("bytes=-"), std::string("bytes=-1-2"),
          std::string("bytes=1 - 2"), std::string("bytes=+1-2"), std::string("items=0-5"),
          std::string("bytes=0-1,2-3"), std::string("bytes=0-1,5000-"), many}) {
      CASE_CHECK(is_whole(ask(srv.port(), "GET", "/static/data.bin", "Range: " + range + "\r\n")), range.substr(0, 60));
    }
    // Two Range fields: not a list, so ignored.
    FIBER_CHECK(is_whole(ask(srv.port(), "GET", "/static/data.bin", "Range: bytes=0-1\r\nRange: bytes=0-1\r\n")));
  });
}

TEST_CASE("static_files honours If-Range: the range when it matches, else the whole file") {
  Files f;
  run_checked(2, [&] {
    LiveServer srv(files_router(f.t.root));
    const std::string tag(kTag);
    auto with = [&](const std::string& if_range, const std::string& range = "bytes=0-9") {
      return ask(srv.port(), "GET", "/static/data.bin", "Range: " + range + "\r\nIf-Range: " + if_range + "\r\n");
    };
    const std::string by_tag = with(tag);
    FIBER_CHECK(status_of(by_tag) == "HTTP/1.1 206 Partial Content");
    FIBER_CHECK(body_of(by_tag) == pattern(kSize).substr(0, 10));
    FIBER_CHECK(status_of(with(std::string(kLastModified))) == "HTTP/1.1 206 Partial Content");
    FIBER_CHECK(status_of(with("Thursday, 02-Jan-20 03:04:05 GMT")) == "HTTP/1.1 206 Partial Content");
    FIBER_CHECK(is_whole(with("\"other\"")));
    FIBER_CHECK(is_whole(with("W/" + tag)));  // the strong comparison
    FIBER_CHECK(is_whole(with("Thu, 02 Jan 2020 03:04:06 GMT")));
    FIBER_CHECK(is_whole(with("garbage")));
    // Not matching: the Range is ignored whole, an unsatisfiable one too.
    FIBER_CHECK(is_whole(with("\"other\"", "bytes=5000-")));
    FIBER_CHECK(is_whole(ask(srv.port(), "GET", "/static/data.bin",
                             "Range: bytes=0-9\r\nIf-Range: " + tag + "\r\nIf-Range: " + tag + "\r\n")));
  });
}

// A file written within the last second may be written again within its
// timestamp's tick with the same size, so its tag promises no exact
// bytes. Its mtime is set an hour ahead here, so that it stays "not a
// second old" however slowly the test runs.
TEST_CASE("static_files: a file modified less than a second ago has weak validators") {
  Files f;
  FileTree::write(f.t.root / "fresh.txt", "fresh\n");
  set_mtime(f.t.root / "fresh.txt", ::time(nullptr) + 3600, 5);
  run_checked(2, [&] {
    LiveServer srv(files_router(f.t.root));
    const std::string res = ask(srv.port(), "GET", "/static/fresh.txt");
    const std::string tag = field(res, "etag").value_or("");
    FIBER_CHECK(tag.starts_with("W/\""));
    // Weakly compared, it still makes a 304.
    FIBER_CHECK(status_of(ask(srv.port(), "GET", "/static/fresh.txt", "If-None-Match: " + tag + "\r\n")) ==
                "HTTP/1.1 304 Not Modified");
    FIBER_CHECK(status_of(ask(srv.port(), "GET", "/static/fresh.txt",
                              "If-Modified-Since: " + field(res, "last-modified").value_or("") + "\r\n")) ==
                "HTTP/1.1 304 Not Modified");
    // If-Range needs a strong validator: neither the tag (as sent, or
    // without its W/) nor the date is one.
    for (const std::string& v : {tag, tag.substr(std::min<std::size_t>(2, tag.size())),
                                 field(res, "last-modified").value_or("")}) {
      const std::string r = ask(srv.port(), "GET", "/static/fresh.txt", "Range: bytes=0-1\r\nIf-Range: " + v + "\r\n");
      CASE_CHECK(status_of(r) == "HTTP/1.1 200 OK", v);
      CASE_CHECK(body_of(r) == "fresh\n", v);
    }
    // Without If-Range the range is served.
    FIBER_CHECK(body_of(ask(srv.port(), "GET", "/static/fresh.txt", "Range: bytes=0-1\r\n")) == "fr");
  });
}

TEST_CASE("static_files: a range of a large file crosses the servers' pieces exactly") {
  Files f;
  run_checked(2, [&] {
    LiveServer srv(files_router(f.t.root));
    const std::string big = pattern(kBigSize);
    const std::string res = ask(srv.port(), "GET", "/static/big.bin", "Range: bytes=70001-250000\r\n");
    FIBER_CHECK(status_of(res) == "HTTP/1.1 206 Partial Content");
    FIBER_CHECK(field(res, "content-range") == "bytes 70001-250000/" + std::to_string(kBigSize));
    FIBER_CHECK(body_of(res) == big.substr(70001, 180000));
    FIBER_CHECK(body_of(ask(srv.port(), "GET", "/static/big.bin", "Range: bytes=-65537\r\n")) ==
                big.substr(kBigSize - 65537));
  });
}

// What the handler's range names is checked again when the response is
// written: a file that shrank meanwhile cannot fill its Content-Range.
TEST_CASE("Response::body_file_range past the file's end when sent is a 500 before any head") {
  Files f;
  run_checked(2, [&] {
    http::Router r;
    r.get("/range/:first/:length", [&](http::Request& q) {
      http::Response res = http::Response::file_body(
          206, io::File::open(f.t.root / "data.bin", io::OpenMode::read | io::OpenMode::regular));
      res.body_file_range = http::Response::FileRange{std::stoull(std::string(q.param("first"))),
                                                      std::stoull(std::string(q.param("length")))};
      return res;
    });
    LiveServer srv(std::move(r));
    const std::string ok = ask(srv.port(), "GET", "/range/990/10");
    FIBER_CHECK(status_of(ok) == "HTTP/1.1 206 Partial Content");
    FIBER_CHECK(body_of(ok) == pattern(kSize).substr(990));
    FIBER_CHECK(body_of(ask(srv.port(), "GET", "/range/1000/0")).empty());
    for (const char* target : {"/range/990/11", "/range/1001/0", "/range/18446744073709551615/2",
                               "/range/1/18446744073709551615"}) {
      CASE_CHECK(status_of(ask(srv.port(), "GET", target)).starts_with("HTTP/1.1 500 "), target);
    }
#if defined(STATIC_FILES_HTTP2)
    http::ClientOptions co;
    co.http2 = http::ClientHttp2::prior_knowledge;
    http::Client c(co);
    auto h2ok = c.get(srv.url("/range/990/10"));
    FIBER_CHECK(h2ok.status == 206);
    FIBER_CHECK(h2ok.text() == pattern(kSize).substr(990));
    FIBER_CHECK(c.get(srv.url("/range/990/11")).status == 500);
    FIBER_CHECK(c.get(srv.url("/range/1/18446744073709551615")).status == 500);
#endif
  });
}

#if defined(STATIC_FILES_HTTP2)
TEST_CASE("static_files over HTTP/2: 206 with exactly the range, 304, 416") {
  Files f;
  run_checked(2, [&] {
    std::atomic<unsigned> version{0};
    http::Router r;
    r.get("/static/*", [files = http::static_files(f.t.root), &version](http::Request& q) {
      version.store(q.version);
      return files(q);
    });
    LiveServer srv(std::move(r));
    http::ClientOptions o;
    o.http2 = http::ClientHttp2::prior_knowledge;
    http::Client c(o);
    auto with = [&](std::string_view path, std::string_view name, std::string_view value) {
      http::RequestOptions ro;
      ro.headers.add(name, value);
      return c.get(srv.url(path), ro);
    };
    const std::string big = pattern(kBigSize);
    auto part = with("/static/big.bin", "Range", "bytes=70001-250000");
    FIBER_CHECK(version.load() == 20);
    FIBER_CHECK(part.status == 206);
    FIBER_CHECK(part.headers.get("content-range").value_or("") == "bytes 70001-250000/" + std::to_string(kBigSize));
    FIBER_CHECK(part.headers.get("content-length").value_or("") == "180000");
    FIBER_CHECK(part.text() == big.substr(70001, 180000));
    auto suffix = with("/static/data.bin", "Range", "bytes=-10");
    FIBER_CHECK(suffix.status == 206);
    FIBER_CHECK(suffix.text() == pattern(kSize).substr(990));
    http::RequestOptions head_ro;
    head_ro.headers.add("Range", "bytes=-10");
    auto head = c.request("HEAD", srv.url("/static/data.bin"), head_ro);
    FIBER_CHECK(head.status == 206);
    FIBER_CHECK(head.headers.get("content-length").value_or("") == "10");
    FIBER_CHECK(head.headers.get("content-range").value_or("") == "bytes 990-999/1000");
    FIBER_CHECK(head.text().empty());
    auto nm = with("/static/data.bin", "If-None-Match", kTag);
    FIBER_CHECK(nm.status == 304);
    FIBER_CHECK(nm.text().empty());
    FIBER_CHECK(nm.headers.get("etag").value_or("") == kTag);
    FIBER_CHECK(!nm.headers.get("content-length"));
    auto past = with("/static/data.bin", "Range", "bytes=1000-");
    FIBER_CHECK(past.status == 416);
    FIBER_CHECK(past.headers.get("content-range").value_or("") == "bytes */1000");
    auto many = with("/static/data.bin", "Range", "bytes=0-1,2-3");
    FIBER_CHECK(many.status == 200);
    FIBER_CHECK(many.text() == pattern(kSize));
    FIBER_CHECK(many.headers.get("etag").value_or("") == kTag);
    FIBER_CHECK(many.headers.get("last-modified").value_or("") == kLastModified);
  });
}
#endif

// A modification time in the future (a clock that was ahead, `touch -d`)
// is sent as now (RFC 9110 8.8.2.1), and an If-Modified-Since later than
// now is ignored: before, a file stamped 2030 went out with
// "Last-Modified: ... 2030", and that date, sent back, answered 304 to
// every content the file had until 2030 (a reviewer's repro).
TEST_CASE("static_files: a future mtime is sent as now, and an If-Modified-Since later than now is ignored") {
  Files f;
  constexpr std::int64_t k2030 = 1893456000;  // Tue, 01 Jan 2030 00:00:00 GMT
  const std::string ims_2030 = "If-Modified-Since: Tue, 01 Jan 2030 00:00:00 GMT\r\n";
  FileTree::write(f.t.root / "skew.txt", "v1\n");
  set_mtime(f.t.root / "skew.txt", k2030, 0);
  run_checked(2, [&] {
    LiveServer srv(files_router(f.t.root));
    const std::string res = ask(srv.port(), "GET", "/static/skew.txt");
    FIBER_CHECK(status_of(res) == "HTTP/1.1 200 OK");
    const auto lm = http::detail::parse_http_date(field(res, "last-modified").value_or(""), ::time(nullptr));
    const auto date = http::detail::parse_http_date(field(res, "date").value_or(""), ::time(nullptr));
    FIBER_CHECK(lm.has_value());
    FIBER_CHECK(date.has_value());
    FIBER_CHECK((lm && date && *lm <= *date));
    FIBER_CHECK((lm && *lm < k2030));
    // The far-future date, sent back, validates neither that file nor
    // one with a past mtime.
    FIBER_CHECK(status_of(ask(srv.port(), "GET", "/static/skew.txt", ims_2030)) == "HTTP/1.1 200 OK");
    FIBER_CHECK(is_whole(ask(srv.port(), "GET", "/static/data.bin", ims_2030)));
    // A date up to now still validates (the 304 case above is unchanged).
    FIBER_CHECK(status_of(ask(srv.port(), "GET", "/static/data.bin",
                              "If-Modified-Since: " + field(res, "date").value_or("") + "\r\n")) ==
                "HTTP/1.1 304 Not Modified");
  });
}

// A file that fails while its body is sent (here: truncated after the
// head went out, so a pread finds its end early) cuts the response (the
// connection closes; over HTTP/2 the stream is reset) and is reported to
// on_error, as a failing body generator is. Before, the cut was silent:
// nothing reached on_error or stderr.
TEST_CASE("static_files: a file that fails mid-body is reported to on_error") {
  Files f;
  const fs::path huge = f.t.root / "huge.bin";
  constexpr std::uint64_t kHuge = 256ull << 20;  // sparse: more than any socket buffer holds
  auto make_huge = [&] {
    FileTree::write(huge, "");
    fs::resize_file(huge, kHuge);
  };
  make_huge();
  run_checked(2, [&] {
    std::mutex mu;
    std::vector<std::string> errors;
    http::ServerOptions o;
    o.on_error = [&](const http::Request&, std::exception_ptr e) {
      std::string what = "?";
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& x) {
        what = x.what();
      } catch (...) {
      }
      std::lock_guard lk(mu);
      errors.push_back(what);
    };
    LiveServer srv(files_router(f.t.root), o);
    auto shrank_reported = [&] {
      for (int i = 0; i < 200; ++i) {
        {
          std::lock_guard lk(mu);
          for (const std::string& e : errors) {
            if (e.find("shrank") != std::string::npos) return true;
          }
        }
        spindle::sleep_for(std::chrono::milliseconds(10));
      }
      return false;
    };
    {
      auto s = raw_connect(srv.port());
      s.write_all("GET /static/huge.bin HTTP/1.1\r\nHost: x\r\n\r\n");
      std::string got(4096, '\0');
      got.resize(s.read_some(got.data(), got.size()));
      FIBER_CHECK(got.starts_with("HTTP/1.1 200 OK"));
      fs::resize_file(huge, 0);
      const std::string rest = read_all(s);  // until the server closes
      FIBER_CHECK(got.size() + rest.size() < kHuge);
      FIBER_CHECK(shrank_reported());
    }
#if defined(STATIC_FILES_HTTP2)
    {
      std::lock_guard lk(mu);
      errors.clear();
    }
    make_huge();
    http::ClientOptions co;
    co.http2 = http::ClientHttp2::prior_knowledge;
    http::Client c(co);
    auto r = c.open("GET", srv.url("/static/huge.bin"));
    FIBER_CHECK(r.status == 200);
    FIBER_CHECK(!r.read_chunk().empty());
    fs::resize_file(huge, 0);
    bool cut = false;
    std::uint64_t read = 0;
    try {
      for (std::string piece = r.read_chunk(1 << 20); !piece.empty(); piece = r.read_chunk(1 << 20)) read += piece.size();
    } catch (const std::exception&) {
      cut = true;
    }
    FIBER_CHECK(cut);
    FIBER_CHECK(read < kHuge);
    FIBER_CHECK(shrank_reported());
#endif
  });
}
