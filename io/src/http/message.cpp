// message.cpp: Headers, Request/Response helpers, reason phrases, JSON and
// the error category. No Beast here (docs/http.md "Layout").
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include <spindle/io/file.hpp>
#include <spindle/io/http/error.hpp>
#include <spindle/io/http/message.hpp>
#include <spindle/io/http/url.hpp>

#include "ascii.hpp"
#include "body_opened.hpp"
#include "ordered_json.hpp"

namespace spindle::http {

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (detail::ascii_lower(a[i]) != detail::ascii_lower(b[i])) return false;
  return true;
}

void Headers::set(std::string_view name, std::string_view value) {
  erase(name);
  add(name, value);
}

void Headers::add(std::string_view name, std::string_view value) {
  fields_.emplace_back(std::string(name), std::string(value));
}

std::optional<std::string_view> Headers::get(std::string_view name) const {
  for (const auto& [n, v] : fields_)
    if (iequals(n, name)) return std::string_view(v);
  return std::nullopt;
}

std::size_t Headers::erase(std::string_view name) {
  const auto before = fields_.size();
  std::erase_if(fields_, [&](const Field& f) { return iequals(f.first, name); });
  return before - fields_.size();
}

std::string_view Request::path() const noexcept {
  const std::string_view t = target;
  return t.substr(0, t.find('?'));
}

std::string Request::decoded_path() const { return url_decode(path()); }

std::string_view Request::query() const noexcept {
  const std::string_view t = target;
  const auto q = t.find('?');
  return q == std::string_view::npos ? std::string_view{} : t.substr(q + 1);
}

std::string_view Request::param(std::string_view name) const noexcept {
  for (const auto& [n, v] : params)
    if (n == name) return v;
  return {};
}

namespace {
// own: f() (a parse of the request's own text), and the cap error it
// raises recorded in `refused` before it goes on: call_handler answers
// that very exception (detail::own_refusal), and no other of its kind.
template <class F>
auto own(std::exception_ptr& refused, F&& f) {
  try {
    return f();
  } catch (const Error& e) {
    if (e.kind() == errc::too_many_params || e.kind() == errc::too_many_json_values) refused = std::current_exception();
    throw;
  }
}
}  // namespace

QueryParams Request::query_params(std::size_t max_items) const {
  return own(refused_, [&] { return QueryParams::parse(query(), max_items); });
}

QueryParams Request::form_params(std::size_t max_items) const {
  return own(refused_, [&] { return QueryParams::parse(body, max_items); });
}

nlohmann::ordered_json Request::json() const {
  return own(refused_, [&] { return detail::parse_ordered_json(body, max_json_values_, "ServerOptions::max_json_values"); });
}

void detail::set_max_json_values(Request& req, std::size_t n) noexcept { req.max_json_values_ = n; }
void detail::set_max_json_values(Response& res, std::size_t n) noexcept { res.max_json_values_ = n; }

// The same object: `throw;` and std::rethrow_exception rethrow it (a
// dependent exception's current_exception() is its primary one), a
// handler's `throw e;` copies it, and another parse's error is another.
bool detail::own_refusal(const Request& req) noexcept {
  return req.refused_ != nullptr && req.refused_ == std::current_exception();
}

std::size_t Request::read_body_some(std::span<std::byte> out) {
  if (out.empty()) return 0;
  if (body_source_ != nullptr) return body_source_->read_some(out);
  // Not streamed: the same reads over the body read whole.
  const std::size_t n = std::min(out.size(), body.size() - std::min(body_pos_, body.size()));
  std::memcpy(out.data(), body.data() + body_pos_, n);
  body_pos_ += n;
  return n;
}

std::string Request::read_body_chunk(std::size_t max) {
  std::string piece(std::max<std::size_t>(max, 1), '\0');
  const std::size_t n = read_body_some(std::as_writable_bytes(std::span(piece)));
  piece.resize(n);
  return piece;
}

void Request::load_body() {
  if (body_source_ == nullptr) return;
  body_source_->load(body, body_source_->limit());
  body_source_ = nullptr;  // the body is whole now: later reads come from it
  body_pos_ = 0;
}

void detail::load_body_first(Request& req) {
  if (req.body_source_ == nullptr) return;
  req.body_source_->load_first(req.body, req.body_source_->limit());
  req.body_source_ = nullptr;
  req.body_pos_ = 0;
}
nlohmann::ordered_json Response::json() const {
  return detail::parse_ordered_json(body, max_json_values_, "ClientOptions::max_json_values");
}

Response Response::text_body(int status, std::string body, std::string_view content_type) {
  Response r;
  r.status = status;
  r.headers.set("Content-Type", content_type);
  r.body = std::move(body);
  return r;
}

// Bytes that are not UTF-8 in a string (a percent-decoded %FF from a
// path or query, echoed back) become U+FFFD, one per bad sequence (Go's
// encoding/json writes one per bad byte): nlohmann's dump() threw (type_error 316), and a handler echoing
// such a value answered 500 for input that was merely unusual.
Response Response::json_body(int status, const nlohmann::ordered_json& value) {
  return text_body(status, value.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace),
                   "application/json");
}

Response Response::json_body_sorted(int status, const nlohmann::json& value) {
  return text_body(status, value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                   "application/json");
}

Response Response::stream_body(int status, std::function<std::string()> next, std::string_view content_type) {
  Response r;
  r.status = status;
  r.headers.set("Content-Type", content_type);
  r.body_stream = std::move(next);
  return r;
}

Response Response::file_body(int status, std::filesystem::path path, std::string_view content_type) {
  Response r;
  r.status = status;
  r.headers.set("Content-Type", content_type);
  r.body_file = std::move(path);
  return r;
}

Response Response::file_body(int status, io::File file, std::string_view content_type) {
  if (!file.is_open()) throw std::invalid_argument("spindle::http: Response::file_body of an io::File that is not open");
  // Only what the path form would send: a regular file opened for reading
  // (its size is the Content-Length; a FIFO's or a device's is not, and a
  // write-only File would fail after the head). fstat and fcntl of an open
  // descriptor do not wait for a device.
  struct stat st{};
  const int fl = ::fcntl(file.fd(), F_GETFL);
  if (::fstat(file.fd(), &st) != 0 || !S_ISREG(st.st_mode) || fl < 0 || (fl & O_ACCMODE) == O_WRONLY) {
    throw std::invalid_argument("spindle::http: Response::file_body of an io::File that is not a regular file open "
                                "for reading: " +
                                file.path().string());
  }
  // Sent whole under a Content-Length of its size, from its start even if
  // the handler read some of it: the servers read it with pread from the
  // start (or from body_file_range's offset), never at its position.
  Response r;
  r.status = status;
  r.headers.set("Content-Type", content_type);
  r.body_file = file.path();
  r.body_opened = std::make_shared<io::File>(std::move(file));
  return r;
}

namespace {
std::mutex g_take_opened;  // body_opened.hpp: one sender per opened file
}  // namespace

io::File detail::take_body_opened(Response& res) noexcept {
  if (!res.body_opened) return {};
  std::lock_guard lk(g_take_opened);
  return std::move(*res.body_opened);
}

std::string_view reason_phrase(int status) noexcept {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "";
  }
}

namespace {
class HttpCategory : public std::error_category {
 public:
  const char* name() const noexcept override { return "spindle.http"; }
  std::string message(int v) const override {
    switch (static_cast<errc>(v)) {
      case errc::refused: return "connection refused";
      case errc::reset: return "connection reset";
      case errc::timeout: return "timed out";
      case errc::tls: return "TLS failure";
      case errc::malformed_response: return "malformed response";
      case errc::truncated: return "response truncated";
      case errc::body_too_large: return "body too large";
      case errc::too_many_redirects: return "too many redirects";
      case errc::invalid_url: return "invalid URL";
      case errc::connect_failed: return "connect failed";
      case errc::malformed_request: return "malformed request";
      case errc::too_many_params: return "too many query or form parameters";
      case errc::too_many_json_values: return "too many JSON values";
    }
    return "unknown http error";
  }
};
}  // namespace

const std::error_category& http_category() noexcept {
  static const HttpCategory c;
  return c;
}

}  // namespace spindle::http
