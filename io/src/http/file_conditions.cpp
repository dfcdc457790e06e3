// file_conditions.cpp: HTTP-dates, entity-tag comparison and Range
// parsing for http::static_files (file_conditions.hpp).
#include "file_conditions.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <limits>

#include "ascii.hpp"

namespace spindle::http::detail {

namespace {

constexpr std::string_view kDays[7] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
constexpr std::string_view kLongDays[7] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                           "Thursday", "Friday", "Saturday"};
constexpr std::string_view kMonths[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

// The seconds of 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the
// years an IMF-fixdate's four digits can write.
constexpr std::int64_t kFirstDate = -62167219200;
constexpr std::int64_t kLastDate = 253402300799;

bool is_ows(char c) noexcept { return c == ' ' || c == '\t'; }

// number: the n-digit decimal at s[at..], or -1 (short, or not digits).
int number(std::string_view s, std::size_t at, std::size_t n) noexcept {
  if (at > s.size() || n > s.size() - at) return -1;
  int v = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const char c = s[at + i];
    if (c < '0' || c > '9') return -1;
    v = v * 10 + (c - '0');
  }
  return v;
}

// month: 1..12 for the three letters at s[at..], or 0.
unsigned month(std::string_view s, std::size_t at) noexcept {
  if (at > s.size() || s.size() - at < 3) return 0;
  for (unsigned i = 0; i < 12; ++i) {
    if (s.substr(at, 3) == kMonths[i]) return i + 1;
  }
  return 0;
}

bool one_of(std::string_view s, const std::string_view (&names)[7]) noexcept {
  return std::find(std::begin(names), std::end(names), s) != std::end(names);
}

struct Civil {
  int year = 0;
  unsigned month = 0, day = 0;
  int hour = -1, minute = -1, second = -1;
};

// clock: "HH:MM:SS" at s[at..] into c.
bool clock(std::string_view s, std::size_t at, Civil& c) noexcept {
  if (at > s.size() || s.size() - at < 8 || s[at + 2] != ':' || s[at + 5] != ':') return false;
  c.hour = number(s, at, 2);
  c.minute = number(s, at + 3, 2);
  c.second = number(s, at + 6, 2);
  return true;
}

// seconds: c as seconds since 1970, if every field is in its range (the
// day within its month: year_month_day::ok). :60 (a leap second) is :59.
std::optional<std::int64_t> seconds(const Civil& c) noexcept {
  if (c.hour < 0 || c.hour > 23 || c.minute < 0 || c.minute > 59 || c.second < 0 || c.second > 60) return {};
  if (c.year < 0 || c.year > 9999) return {};
  const std::chrono::year_month_day ymd{std::chrono::year{c.year}, std::chrono::month{c.month},
                                        std::chrono::day{c.day}};
  if (!ymd.ok()) return {};
  const std::int64_t days = std::chrono::sys_days{ymd}.time_since_epoch().count();
  return days * 86400 + c.hour * 3600 + c.minute * 60 + std::min(c.second, 59);
}

// imf_fixdate: "Sun, 06 Nov 1994 08:49:37 GMT", exactly 29 bytes.
std::optional<std::int64_t> imf_fixdate(std::string_view v) noexcept {
  Civil c;
  if (v.size() != 29 || !one_of(v.substr(0, 3), kDays) || v.substr(3, 2) != ", " || v[7] != ' ' ||
      v[11] != ' ' || v[16] != ' ' || v.substr(25) != " GMT") {
    return {};
  }
  const int day = number(v, 5, 2);
  c.month = month(v, 8);
  c.year = number(v, 12, 4);
  if (day < 1 || c.month == 0 || c.year < 0 || !clock(v, 17, c)) return {};
  c.day = static_cast<unsigned>(day);
  return seconds(c);
}

// rfc850: "Sunday, 06-Nov-94 08:49:37 GMT". Its two-digit year is this
// century's, or the last one's when that would be more than 50 years
// after `now_s` (RFC 9110 5.6.7).
std::optional<std::int64_t> rfc850(std::string_view v, std::int64_t now_s) noexcept {
  const std::size_t comma = v.find(',');
  if (comma == std::string_view::npos || !one_of(v.substr(0, comma), kLongDays)) return {};
  const std::string_view d = v.substr(comma);  // ", 06-Nov-94 08:49:37 GMT"
  Civil c;
  if (d.size() != 24 || d[1] != ' ' || d[4] != '-' || d[8] != '-' || d[11] != ' ' || d.substr(20) != " GMT") {
    return {};
  }
  const int day = number(d, 2, 2);
  c.month = month(d, 5);
  const int yy = number(d, 9, 2);
  if (day < 1 || c.month == 0 || yy < 0 || !clock(d, 12, c)) return {};
  c.day = static_cast<unsigned>(day);
  const auto now_days = std::chrono::sys_days{std::chrono::days{std::clamp(now_s, kFirstDate, kLastDate) / 86400}};
  const int this_year = static_cast<int>(std::chrono::year_month_day{now_days}.year());
  c.year = this_year / 100 * 100 + yy;
  if (c.year > this_year + 50) c.year -= 100;
  return seconds(c);
}

// asctime: "Sun Nov  6 08:49:37 1994" (the day's first digit may be a
// space), exactly 24 bytes.
std::optional<std::int64_t> asctime(std::string_view v) noexcept {
  Civil c;
  if (v.size() != 24 || !one_of(v.substr(0, 3), kDays) || v[3] != ' ' || v[7] != ' ' || v[10] != ' ' ||
      v[19] != ' ') {
    return {};
  }
  c.month = month(v, 4);
  const int day = v[8] == ' ' ? number(v, 9, 1) : number(v, 8, 2);
  c.year = number(v, 20, 4);
  if (day < 1 || c.month == 0 || c.year < 0 || !clock(v, 11, c)) return {};
  c.day = static_cast<unsigned>(day);
  return seconds(c);
}

// Digits: a run of decimal digits, its value saturated at 2^64 - 1 (any
// number that large is past every file's end).
struct Digits {
  std::string_view text;
  std::uint64_t value = 0;
};

std::optional<Digits> digits(std::string_view s) noexcept {
  if (s.empty()) return {};
  Digits d{s, 0};
  constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
  for (const char c : s) {
    if (c < '0' || c > '9') return {};
    const auto digit = static_cast<std::uint64_t>(c - '0');
    d.value = d.value > (kMax - digit) / 10 ? kMax : d.value * 10 + digit;
  }
  return d;
}

// less: a < b as numbers, exactly, whatever their length (two saturated
// values are not equal for this: "bytes=99999999999999999999-
// 99999999999999999998" is reversed, so invalid).
bool less(std::string_view a, std::string_view b) noexcept {
  while (a.size() > 1 && a.front() == '0') a.remove_prefix(1);
  while (b.size() > 1 && b.front() == '0') b.remove_prefix(1);
  if (a.size() != b.size()) return a.size() < b.size();
  return a < b;
}

// one_range: a single range-spec against `size` bytes (RFC 9110 14.1.1).
ByteRange one_range(std::string_view spec, std::uint64_t size) noexcept {
  const std::size_t dash = spec.find('-');
  if (dash == std::string_view::npos) return {};
  const std::string_view first_text = spec.substr(0, dash);
  const std::string_view last_text = spec.substr(dash + 1);
  if (first_text.empty()) {
    // "-n": the last n bytes (a suffix longer than the file is all of it).
    const std::optional<Digits> n = digits(last_text);
    if (!n) return {};
    if (n->value == 0) return {ByteRange::unsatisfiable};
    if (size == 0) return {};  // nothing to name: the whole (empty) file
    const std::uint64_t length = std::min(n->value, size);
    return {ByteRange::part, size - length, length};
  }
  const std::optional<Digits> first = digits(first_text);
  if (!first) return {};
  std::uint64_t last = size == 0 ? 0 : size - 1;
  if (!last_text.empty()) {
    const std::optional<Digits> l = digits(last_text);
    if (!l || less(l->text, first->text)) return {};  // reversed: invalid, not unsatisfiable
    last = std::min(l->value, last);
  }
  if (first->value >= size) return {ByteRange::unsatisfiable};
  return {ByteRange::part, first->value, last - first->value + 1};
}

}  // namespace

std::string format_http_date(std::int64_t unix_s) {
  if (unix_s < kFirstDate || unix_s > kLastDate) return {};
  // Floor division: a time before 1970 is in the day before its quotient.
  std::int64_t day_count = unix_s / 86400;
  std::int64_t in_day = unix_s % 86400;
  if (in_day < 0) {
    in_day += 86400;
    --day_count;
  }
  const std::chrono::sys_days day{std::chrono::days{day_count}};
  const std::chrono::year_month_day ymd{day};
  const std::chrono::weekday wd{day};
  char buf[40];
  const int n = std::snprintf(buf, sizeof buf, "%s, %02u %s %04d %02d:%02d:%02d GMT",
                              kDays[wd.c_encoding()].data(), static_cast<unsigned>(ymd.day()),
                              kMonths[static_cast<unsigned>(ymd.month()) - 1].data(), static_cast<int>(ymd.year()),
                              static_cast<int>(in_day / 3600), static_cast<int>(in_day / 60 % 60),
                              static_cast<int>(in_day % 60));
  return std::string(buf, static_cast<std::size_t>(n));
}

std::optional<std::int64_t> parse_http_date(std::string_view v, std::int64_t now_s) noexcept {
  v = trim_ows(v);
  if (v.size() < 4) return {};
  if (v[3] == ',') return imf_fixdate(v);
  if (v[3] == ' ') return asctime(v);
  return rfc850(v, now_s);
}

bool etag_matches_weak(std::string_view list, std::string_view etag) noexcept {
  if (etag.starts_with("W/")) etag.remove_prefix(2);
  std::size_t i = 0;
  for (;;) {
    while (i < list.size() && (is_ows(list[i]) || list[i] == ',')) ++i;
    if (i == list.size()) return false;
    if (list[i] == '*') return true;
    if (list.substr(i, 2) == "W/") i += 2;
    if (i == list.size() || list[i] != '"') return false;  // garbage: nothing past it is read
    const std::size_t close = list.find('"', i + 1);
    if (close == std::string_view::npos) return false;
    if (list.substr(i, close + 1 - i) == etag) return true;
    i = close + 1;
  }
}

bool etag_matches_strong(std::string_view tag, std::string_view etag) noexcept {
  tag = trim_ows(tag);
  // Neither weak: a tag that opens with its quote has no W/, and the tag
  // it equals then has none either.
  return tag.starts_with('"') && tag == etag;
}

ByteRange parse_range(std::string_view value, std::uint64_t size) noexcept {
  value = trim_ows(value);
  const std::size_t eq = value.find('=');
  if (eq == std::string_view::npos || eq != 5) return {};
  for (std::size_t i = 0; i < 5; ++i) {
    if (ascii_lower(value[i]) != "bytes"[i]) return {};
  }
  // The range-set is a list (RFC 9110 5.6.1): empty members are skipped;
  // a second non-empty one ends the scan (several ranges: ignored).
  const std::string_view set = value.substr(eq + 1);
  std::string_view spec;
  for (std::size_t i = 0;;) {
    const std::size_t comma = set.find(',', i);
    const std::string_view member = trim_ows(set.substr(i, comma == std::string_view::npos ? set.npos : comma - i));
    if (!member.empty()) {
      if (!spec.empty()) return {};
      spec = member;
    }
    if (comma == std::string_view::npos) break;
    i = comma + 1;
  }
  if (spec.empty()) return {};
  return one_range(spec, size);
}

}  // namespace spindle::http::detail
