// message.hpp: the HTTP message types both sides share: Headers, Request,
// Response. Plain values (strings and vectors); no Beast type appears in a
// public http header, so only io/src/http/*.cpp pays Beast's compile time
// (docs/http.md "Layout").
//
// JSON: Request::json() and Response::json() return nlohmann::json, which
// this header only forward-declares (<nlohmann/json_fwd.hpp>); a caller
// that uses the value includes <nlohmann/json.hpp> itself.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include <spindle/io/endpoint.hpp>

namespace spindle::io {
class TcpStream;
}

namespace spindle::http {

// Headers: an ordered list of (name, value) fields. Names compare without
// regard to case, as HTTP defines; the order and spelling given are kept on
// the wire. Repeated fields are kept apart (add), get() returns the first.
class Headers {
 public:
  using Field = std::pair<std::string, std::string>;

  Headers() = default;
  Headers(std::initializer_list<Field> fields) : fields_(fields) {}

  // set: replaces every field named `name` by one with `value`.
  void set(std::string_view name, std::string_view value);
  // add: appends a field, keeping those of the same name.
  void add(std::string_view name, std::string_view value);
  // get: the first field's value, or nothing.
  std::optional<std::string_view> get(std::string_view name) const;
  bool contains(std::string_view name) const { return get(name).has_value(); }
  // erase: removes every field named `name`; returns how many.
  std::size_t erase(std::string_view name);

  std::size_t size() const noexcept { return fields_.size(); }
  bool empty() const noexcept { return fields_.empty(); }
  auto begin() const noexcept { return fields_.begin(); }
  auto end() const noexcept { return fields_.end(); }

 private:
  std::vector<Field> fields_;
};

// iequals: ASCII case-insensitive comparison (header names, methods).
bool iequals(std::string_view a, std::string_view b) noexcept;

// Request: what a handler receives (Server) and what Client sends.
struct Request {
  std::string method = "GET";  // as on the wire: "GET", "POST", ...
  std::string target = "/";    // origin form: path and query
  Headers headers;
  std::string body;
  unsigned version = 11;  // 10 or 11

  // Server side only. remote: the peer's address. params: the router's
  // path parameters, in pattern order.
  io::Endpoint remote;
  std::vector<std::pair<std::string, std::string>> params;

  // path / query: target split at the first '?' (query without it).
  std::string_view path() const noexcept;
  std::string_view query() const noexcept;
  // param: a path parameter by name ("" when absent).
  std::string_view param(std::string_view name) const noexcept;
  // json: body parsed as JSON; throws nlohmann::json::parse_error.
  nlohmann::json json() const;
};

// Response: what a handler returns (Server) and what Client returns.
struct Response {
  int status = 200;
  std::string reason;  // empty: the standard phrase for status
  Headers headers;
  std::string body;
  // Server side: true closes the connection after this response.
  bool close = false;
  // Server side: when set, the server sends nothing for this response and
  // hands the connection over: it calls upgrade(conn, buffered) on the
  // connection's fiber (`buffered`: bytes read past the request) and ends
  // the connection when it returns. websocket_handler (websocket.hpp) sets
  // it; status, headers and body are then unused.
  std::function<void(io::TcpStream& conn, std::string_view buffered)> upgrade;
  // Client side: the URL that answered (after redirects).
  std::string url;

  // text: the body as text (no charset conversion). bytes: the same bytes.
  std::string_view text() const noexcept { return body; }
  std::span<const std::byte> bytes() const noexcept {
    return {reinterpret_cast<const std::byte*>(body.data()), body.size()};
  }
  // json: body parsed as JSON; throws nlohmann::json::parse_error.
  nlohmann::json json() const;

  // Factories for handlers: a body with its Content-Type.
  static Response text_body(int status, std::string body,
                            std::string_view content_type = "text/plain; charset=utf-8");
  static Response json_body(int status, const nlohmann::json& value);
};

// reason_phrase: the standard phrase for a status ("Not Found"), or "".
std::string_view reason_phrase(int status) noexcept;

}  // namespace spindle::http
