// file_conditions.hpp: the parsers behind http::static_files' validators,
// conditional requests and byte ranges (RFC 9110 5.6.7, 8.8, 13, 14):
// HTTP-dates both ways, If-None-Match's list, If-Range, and one Range.
// Pure functions of their text (and of `now` where a rule needs it), so
// the rules can be read here apart from the handler; docs/http.md
// "Static files". Every one costs O(length of its input), allocates
// nothing (but format_http_date's result) and reads each number with a
// bound: a peer's header is at most the server's max_head, and no part of
// it makes more work than its bytes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace spindle::http::detail {

// format_http_date: `unix_s` (seconds since 1970, UTC) as an IMF-fixdate,
// "Sun, 06 Nov 1994 08:49:37 GMT" (English names, whatever the locale).
// Empty for a year outside 0..9999, which the form cannot write.
std::string format_http_date(std::int64_t unix_s);

// parse_http_date: the seconds since 1970 of any of the three HTTP-date
// forms a recipient must accept (RFC 9110 5.6.7): IMF-fixdate, the
// obsolete RFC 850 form ("Sunday, 06-Nov-94 08:49:37 GMT"; a two-digit
// year more than 50 years after `now_s`'s is taken from the century
// before) and asctime's ("Sun Nov  6 08:49:37 1994"). Names are
// case-sensitive, as the grammar's %s strings; a day past its month's end
// (30 Feb), an hour past 23 or a minute past 59 is not a date. A leap
// second (:60) reads as :59. Anything else, including surrounding text:
// nullopt (the caller then ignores the field, as the RFC says).
std::optional<std::int64_t> parse_http_date(std::string_view v, std::int64_t now_s) noexcept;

// etag_matches_weak: whether the If-None-Match field value `list` (a
// comma-separated list of entity-tags, or "*") names `etag` under the weak
// comparison (RFC 9110 8.8.3.2: W/ ignored on both sides, then the quoted
// strings equal). "*" matches any tag. A list that stops parsing
// (garbage, an unclosed quote) matches nothing past that point.
bool etag_matches_weak(std::string_view list, std::string_view etag) noexcept;

// etag_matches_strong: whether `tag` (one entity-tag, If-Range's) equals
// `etag` under the strong comparison: neither weak, and the same bytes.
bool etag_matches_strong(std::string_view tag, std::string_view etag) noexcept;

// ByteRange: what one Range field asks of a representation of `size`
// bytes (RFC 9110 14.1.1, 14.2).
struct ByteRange {
  enum Kind {
    whole,          // ignored: not bytes, not valid, or more than one range
    unsatisfiable,  // 416: starts at or past the end, or a suffix of 0
    part,           // 206: `length` bytes from `first`
  };
  Kind kind = whole;
  std::uint64_t first = 0;
  std::uint64_t length = 0;
};

// parse_range: the Range field's value against a representation of `size`
// bytes. One range of "bytes" (the unit in any case): "a-b" (b past the
// end is the end), "a-", "-n" (the last n bytes; all of them when n is
// more). A syntactically invalid value (a > b, a sign, a space inside a
// range, no range at all, another unit) is `whole`: ignored, as 14.2 says.
// More than one range is `whole` too: a server may ignore Range, and
// serving several (multipart/byteranges) lets a small request ask for the
// file many times over (CVE-2011-3192); the scan stops at the second one,
// so a list of thousands costs no more than its bytes. Numbers of any
// length are read exactly for their order and saturate for their value
// (a first past 2^64 is past any end, a last past 2^64 is the end): no
// wrap. An empty representation has no range Content-Range can name: a
// suffix on it is `whole` (a 200 of no bytes), a first is unsatisfiable.
ByteRange parse_range(std::string_view value, std::uint64_t size) noexcept;

}  // namespace spindle::http::detail
