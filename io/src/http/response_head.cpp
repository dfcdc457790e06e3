// response_head.cpp: a whole-body response's head, by Beast's serializer
// or directly (response_head.hpp says when and why).
#include "response_head.hpp"

#include <charconv>
#include <cstdint>
#include <limits>

#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/status.hpp>

#include "ascii.hpp"

namespace spindle::http::detail {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

namespace {

beast::string_view bsv(std::string_view s) { return {s.data(), s.size()}; }

void append_field(std::string& out, std::string_view name, std::string_view value) {
  out += name;
  out += ": ";
  out += trim_ows(value);  // as Beast's basic_fields stores it
  out += "\r\n";
}

}  // namespace

bhttp::response<bhttp::empty_body> beast_head(const Response& res, const HeadParams& p) {
  bhttp::response<bhttp::empty_body> m;
  m.result(static_cast<unsigned>(res.status));  // throws over 999
  m.version(p.version);
  if (!res.reason.empty()) m.reason(bsv(res.reason));
  // The framing is the server's: a handler's Transfer-Encoding, and its
  // Content-Length except on a 304 (the representation's length there),
  // would not match the body sent (a 204 with "chunked", "gzip" beside a
  // Content-Length, a length over an HTTP/1.0 stream cut by the close: a
  // helper's probes). Content-Length on a status with a body is set below.
  for (const auto& [name, value] : res.headers) {
    if (iequals(name, "Transfer-Encoding") || (iequals(name, "Content-Length") && res.status != 304)) continue;
    m.insert(bsv(name), bsv(value));
  }
  if (!p.minimal) {
    if (!res.headers.contains("Date")) m.set(bhttp::field::date, bsv(p.date()));
    if (!res.headers.contains("Server")) m.set(bhttp::field::server, bsv(p.server_name));
  }
  return m;
}

void serialize_head(const bhttp::response<bhttp::empty_body>& m, std::string& out) {
  bhttp::response_serializer<bhttp::empty_body> sr(m);
  sr.split(true);
  beast::error_code ec;
  while (!sr.is_header_done()) {
    sr.next(ec, [&](beast::error_code&, const auto& buffers) {
      const std::size_t n = boost::asio::buffer_size(buffers);
      const std::size_t at = out.size();
      out.resize(at + n);
      boost::asio::buffer_copy(boost::asio::buffer(out.data() + at, n), buffers);
      sr.consume(n);
    });
    if (ec) throw beast::system_error(ec);  // not reached for a head: nothing in it can fail
  }
}

void append_head_beast(const Response& res, const HeadParams& p, std::string& out) {
  auto m = beast_head(res, p);
  m.keep_alive(p.keep_alive);
  // Not Beast's prepare_payload: it would send Content-Length: 0 on a 204
  // or 304 (and refuse a body there by throwing, which would drop the
  // connection unanswered). HEAD gets the length GET would get.
  if (body_allowed(res.status)) m.content_length(res.body.size());
  serialize_head(m, out);
}

bool append_head_direct(const Response& res, const HeadParams& p, std::string& out) {
  const int status = res.status;
  if (status < 200 || status > 999 || !body_allowed(status) || p.version > 99) return false;
  // Beast stores a field's name and value behind 16-bit offsets.
  constexpr std::size_t kMaxPiece = std::numeric_limits<std::uint16_t>::max() - 2;
  bool has_date = false;
  bool has_server = false;
  for (const auto& [name, value] : res.headers) {
    // Fields Beast's keep_alive and content_length would edit.
    if (name.empty() || name.size() > kMaxPiece || value.size() > kMaxPiece || iequals(name, "Connection") ||
        iequals(name, "Content-Length") || iequals(name, "Transfer-Encoding")) {
      return false;
    }
    has_date = has_date || iequals(name, "Date");
    has_server = has_server || iequals(name, "Server");
  }
  // "HTTP/1.1 200 OK\r\n": Beast's standard phrase when none is set.
  char line[13] = {'H', 'T', 'T', 'P', '/', static_cast<char>('0' + p.version / 10), '.',
                   static_cast<char>('0' + p.version % 10), ' ', static_cast<char>('0' + status / 100),
                   static_cast<char>('0' + status / 10 % 10), static_cast<char>('0' + status % 10), ' '};
  out.append(line, sizeof line);
  if (res.reason.empty()) {
    const auto phrase = bhttp::obsolete_reason(static_cast<bhttp::status>(status));
    out.append(phrase.data(), phrase.size());
  } else {
    out += res.reason;
  }
  out += "\r\n";
  for (const auto& [name, value] : res.headers) append_field(out, name, value);
  if (!p.minimal) {
    if (!has_date) append_field(out, "Date", p.date());
    if (!has_server) append_field(out, "Server", p.server_name);
  }
  // Beast's keep_alive with no Connection field present: HTTP/1.1 says
  // close when it closes, HTTP/1.0 says keep-alive when it stays.
  if (p.version >= 11 && !p.keep_alive) out += "Connection: close\r\n";
  if (p.version < 11 && p.keep_alive) out += "Connection: keep-alive\r\n";
  char digits[24];
  const auto [end, ec] = std::to_chars(digits, digits + sizeof digits, res.body.size());
  out += "Content-Length: ";
  out.append(digits, end);
  out += "\r\n\r\n";
  return true;
}

}  // namespace spindle::http::detail
