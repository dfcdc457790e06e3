// message.hpp: the HTTP message types both sides share: Headers, Request,
// Response. Plain values (strings and vectors); no Beast type appears in a
// public http header, so only io/src/http/*.cpp pays Beast's compile time
// (docs/http.md "Layout").
//
// JSON: Request::json() and Response::json() return nlohmann::ordered_json
// (objects keep the keys in the order of the text, as Python's json and
// aiohttp), which this header only forward-declares
// (<nlohmann/json_fwd.hpp>); a caller that uses the value includes
// <nlohmann/json.hpp> itself. It converts to nlohmann::json on assignment
// (`nlohmann::json j = req.json();`, keys then sorted); docs/http.md "JSON
// key order".
//
// Streamed bodies (server side, docs/http.md "Streamed bodies (server)"): a
// Request's body may still be on the connection when the handler runs
// (body_streamed(); the handler reads it in pieces with read_body_some /
// read_body_chunk), and a Response's body may be produced in pieces
// (body_stream, a generator, sent chunked) or read from a file (body_file,
// sent with Content-Length), so neither side holds a large body whole.
#pragma once

#include <cstddef>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include <spindle/io/endpoint.hpp>
#include <spindle/io/http/url.hpp>
#include <spindle/runtime/detail/macros.hpp>

namespace spindle::io {
class File;
class TcpStream;
class TlsStream;
}

namespace spindle::http {

// BodySource: where a streamed request body comes from. The server
// implements it over the connection (server.cpp); a handler never sees it,
// only Request's read_body_* calls.
class BodySource {
 public:
  virtual ~BodySource() = default;
  // read_some: up to out.size() (> 0) bytes of the body; 0 only at its end.
  SPINDLE_MAY_SUSPEND virtual std::size_t read_some(std::span<std::byte> out) = 0;
  // load: the rest of the body appended to `into`, at most `limit` bytes in
  // all (more: http::Error(errc::body_too_large)).
  SPINDLE_MAY_SUSPEND virtual void load(std::string& into, std::size_t limit) = 0;
  // limit: the size load() allows (the server's max_body).
  virtual std::size_t limit() const noexcept = 0;
  // load_first: load() before the request was acted on at all (the
  // server's own load, the Router's before a Body::whole route's
  // handler): a load failed for the server's limits may then be answered
  // as unprocessed (HTTP/2's REFUSED_STREAM, which a client may send
  // again; RFC 9113 8.7). Any other load may follow side effects.
  SPINDLE_MAY_SUSPEND virtual void load_first(std::string& into, std::size_t limit) { load(into, limit); }
};

struct Request;
struct Response;
namespace detail {
// load_body_first: Request::load_body through BodySource::load_first (the
// server and the Router, before a handler runs).
SPINDLE_MAY_SUSPEND void load_body_first(Request& req);
// set_max_json_values: the cap json() applies from now on: the server's
// ServerOptions::max_json_values on each Request before its handler, the
// client's ClientOptions::max_json_values on each Response it returns.
void set_max_json_values(Request& req, std::size_t n) noexcept;
void set_max_json_values(Response& res, std::size_t n) noexcept;
// own_refusal: called in a catch block, whether the exception being
// handled is the one req's own query_params(), form_params() or json()
// raised for its cap (the same object, let pass or rethrown with
// `throw;`), which the server answers for the handler (call_handler.hpp).
bool own_refusal(const Request& req) noexcept;
}  // namespace detail

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
  unsigned version = 11;  // 10 or 11 (20: HTTP/2, server side)
  // Server side: the fields a client sent after the body (a checksum,
  // gRPC's), once the body has been read to its end (before the handler
  // when it is loaded whole; after the read that returns 0 when
  // streamed). Over HTTP/2, pseudo-fields are refused by nghttp2 (the
  // stream is reset), and they count against ServerOptions::max_head with
  // the head; past it the body's end fails (errc::malformed_request) and
  // the request gets 431.
  // Over HTTP/1.1: a chunked body's trailer section, at the same point;
  // it must fit in the connection's buffer (max(max_head, 16 KiB): 400
  // past it), and one holding Content-Length or Transfer-Encoding is 400.
  Headers trailers;

  // Server side only. remote: the peer's address. params: the router's
  // path parameters, in pattern order.
  io::Endpoint remote;
  std::vector<std::pair<std::string, std::string>> params;

  // path / query: target split at the first '?' (query without it), as
  // on the wire (still percent-encoded). query_params: query() decoded
  // (QueryParams::parse: '+' is a space, repeated keys kept in order);
  // form_params: `body` decoded the same way (an
  // application/x-www-form-urlencoded form; the body as loaded: a
  // streamed one is load_body()'d first). More than max_items is
  // http::Error(errc::too_many_params), which the server answers 400 if
  // the handler lets that exception pass (the client's fault, not
  // reported to on_error). Only these two: the same error from any other
  // parse (QueryParams::parse(req.body) called directly, a URL's or a
  // backend's query) is the handler's failure, a 500 reported like any
  // other throw.
  std::string_view path() const noexcept;
  // decoded_path: path() percent-decoded ('+' stays '+', %2F becomes '/'),
  // what the Router's literal segments compare against (aiohttp's
  // request.path, Go's URL.Path). A guard on a path prefix belongs here,
  // not on path(): "/%61dmin/keys" reaches a route "/admin/:what" while
  // its path() does not start with "/admin". But the Router keeps a %2F
  // inside its segment, not as a separator: a guard that lets a prefix
  // through ("/public/") also lets "/public%2F..%2Fsecret" through, which
  // a route "/:doc" takes as one segment (docs/http.md "URLs and query
  // strings"); a guard that refuses a prefix is not fooled.
  std::string decoded_path() const;
  std::string_view query() const noexcept;
  QueryParams query_params(std::size_t max_items = QueryParams::kDefaultMaxItems) const;
  QueryParams form_params(std::size_t max_items = QueryParams::kDefaultMaxItems) const;
  // param: a path parameter by name ("" when absent).
  std::string_view param(std::string_view name) const noexcept;
  // json: body parsed as JSON, keys in the body's order (a repeated key:
  // first place, last value), in O(n log n) of the body's size; throws
  // nlohmann::json::parse_error (also past 128 levels of nesting). More
  // values than ServerOptions::max_json_values (on a Request the server
  // passed; kDefaultMaxJsonValues on any other) is
  // http::Error(errc::too_many_json_values), refused before the value is
  // stored, which the server answers 413 if the handler lets that
  // exception pass (not reported). docs/http.md "JSON values".
  nlohmann::ordered_json json() const;
  static constexpr std::size_t kDefaultMaxJsonValues = 100'000;

  // Streamed request bodies (server side). body_streamed(): the body is
  // still on the connection (a Router route added with Body::stream, or
  // ServerOptions::stream_bodies, and a request with a body): `body` is
  // empty and the bytes are read from the connection, in order, by the
  // calls below (false again after load_body).
  // Without streaming the same calls read from `body`, so a handler written
  // for streaming also works when the body was read whole.
  //  - read_body_some: up to out.size() bytes; 0 only at the end of the
  //    body. The first read sends "100 Continue" when the client asked.
  //  - read_body_chunk: the next piece (at most `max` bytes); "" at the end.
  //  - load_body: the rest of a streamed body into `body`, bounded by
  //    ServerOptions::max_body (over it: http::Error(errc::body_too_large),
  //    and the server answers 413 and closes if the handler lets it pass).
  //    No-op when not streamed. The Router calls it for Body::whole routes.
  // Failures raise http::Error: errc::truncated (the peer closed or reset
  // mid-body), errc::malformed_request (bad chunked framing; the server
  // answers 400), errc::timeout (no byte for ServerOptions::read_timeout).
  // Each is a cancellation point. One fiber at a time.
  // A body the handler does not read to its end is drained by the server
  // after the handler returns (at most ServerOptions::max_drain bytes) or
  // the connection is closed after the response: never parsed as a request.
  bool body_streamed() const noexcept { return body_source_ != nullptr; }
  SPINDLE_MAY_SUSPEND std::size_t read_body_some(std::span<std::byte> out);
  SPINDLE_MAY_SUSPEND std::string read_body_chunk(std::size_t max = 64 * 1024);
  SPINDLE_MAY_SUSPEND void load_body();
  // Server use: attaches the connection's body (nullptr: the body is whole).
  void set_body_source(BodySource* src) noexcept { body_source_ = src; }

 private:
  friend void detail::load_body_first(Request& req);
  friend void detail::set_max_json_values(Request& req, std::size_t n) noexcept;
  friend bool detail::own_refusal(const Request& req) noexcept;
  BodySource* body_source_ = nullptr;  // owned by the server's connection
  std::size_t body_pos_ = 0;           // read_body_some's offset in `body`
  std::size_t max_json_values_ = kDefaultMaxJsonValues;  // json()'s cap
  // refused_: the cap error query_params(), form_params() or json()
  // raised last (detail::own_refusal); mutable: they are const. Touched by
  // the fiber that has the Request only, as every other member.
  mutable std::exception_ptr refused_;
};

// Upgraded: the connection a Response::upgrade takes over. tcp is always
// set; on an https server (ServerOptions::tls) tls is set too and is the
// stream to use: tcp is then the socket under it, carrying ciphertext.
// Either may be moved from; the server only destroys what is left.
// request: the request being upgraded, as the handler left it (the
// server's own object, not a copy), alive until the upgrade returns: an
// upgrade that needs it reads it here instead of keeping a copy for the
// session's life (websocket_handler does).
struct Upgraded {
  io::TcpStream* tcp = nullptr;
  io::TlsStream* tls = nullptr;
  const Request* request = nullptr;
};

// Response: what a handler returns (Server) and what Client returns.
struct Response {
  int status = 200;
  std::string reason;  // empty: the standard phrase for status
  Headers headers;
  std::string body;
  // Server side: true closes the connection after this response (so does
  // a `Connection: close` field in headers, as in Go).
  bool close = false;
  // Server side: when set, the server sends nothing for this response and
  // hands the connection over: it calls upgrade(conn, buffered) on the
  // connection's fiber (`buffered`: bytes read past the request) and ends
  // the connection when it returns. websocket_handler (websocket.hpp) sets
  // it; status, headers and body are then unused.
  std::function<void(Upgraded conn, std::string_view buffered)> upgrade;
  // Server side, streamed bodies (`body` is then ignored; the first set
  // wins: body_stream, then body_opened or body_file):
  //  - body_stream: called on the connection's fiber for each next piece
  //    until it returns ""; sent with Transfer-Encoding: chunked (to an
  //    HTTP/1.0 client: unframed, then the connection closes). It may
  //    suspend. If it throws after the head was sent, the connection is
  //    closed without the last chunk (the client sees a truncated body;
  //    HTTP/1.0, unframed: reset, not closed, so that the cut shows).
  //  - body_file: a regular file sent with Content-Length (its size when
  //    the response is written), read through io::File in pieces. A file
  //    that cannot be opened, or is not a regular file (a FIFO, a device,
  //    a directory: refused without waiting, io::OpenMode::regular), makes
  //    the response a 500. body_opened, when set (file_body with an
  //    io::File), is that file already open, and body_file only names it:
  //    what the handler checked is what is sent (static_files.hpp opens
  //    with io::File::open_in_root), from its start; file_body refuses
  //    (std::invalid_argument) a File that is not a regular file open for
  //    reading. While set it is what is sent, whatever body_file says:
  //    reset it to send something else. It is sent once: copies of the
  //    Response share it, and a copy sent after it (or at once, on
  //    another connection) is a 500. The file is read at offsets (pread),
  //    so its position (a handler that read some of it) does not matter.
  //    body_file_range, when set, sends only `length` bytes from `offset`
  //    under a Content-Length of `length` (static_files' 206; the handler
  //    sets Content-Range); a range that does not lie within the file when
  //    the response is written (it shrank since the handler looked) is a
  //    500 before any head, as a file that does not open.
  // A client that goes away mid-body ends the connection; the server goes
  // on. HEAD gets the head only (body_stream is never called).
  std::function<std::string()> body_stream;
  std::filesystem::path body_file;
  std::shared_ptr<io::File> body_opened;
  struct FileRange {
    std::uint64_t offset = 0;
    std::uint64_t length = 0;
  };
  std::optional<FileRange> body_file_range;
  // trailers: fields after the body (gRPC's grpc-status, a checksum known
  // only at the end). Server side: sent over HTTP/2 as a last HEADERS
  // frame, after any body (also after none); fields HTTP/2 forbids, or
  // holding CR, LF or NUL, are left out as in the head. Over HTTP/1.1
  // after a chunked body only (a body_stream generator's, to an HTTP/1.1
  // client), announced in the head's Trailer field; framing and
  // connection fields (Content-Length, Transfer-Encoding, Connection,
  // Host, TE, Trailer) are left out, and a CR, LF or NUL in one makes the
  // response a 500 as in the head. A body with a Content-Length (given
  // whole, a file) carries none. None for HEAD, 204 and 304. Client side: what the server
  // sent after the body (HTTP/2's trailing HEADERS, bounded by
  // ClientOptions::max_head apart from the head's; HTTP/1.1's chunked
  // trailer section, bounded by the connection's buffer), never merged
  // into `headers`.
  Headers trailers;
  // Client side: the URL that answered (after redirects).
  std::string url;

  // text: the body as text (no charset conversion). bytes: the same bytes.
  std::string_view text() const noexcept { return body; }
  std::span<const std::byte> bytes() const noexcept {
    return {reinterpret_cast<const std::byte*>(body.data()), body.size()};
  }
  // json: as Request::json, under ClientOptions::max_json_values (on a
  // Response a Client returned; kDefaultMaxJsonValues on any other): more
  // values is http::Error(errc::too_many_json_values).
  nlohmann::ordered_json json() const;
  static constexpr std::size_t kDefaultMaxJsonValues = 1'000'000;

  // Factories for handlers: a body with its Content-Type.
  static Response text_body(int status, std::string body,
                            std::string_view content_type = "text/plain; charset=utf-8");
  // json_body: value.dump() as application/json; a string's bytes that
  // are not UTF-8 become U+FFFD (Go's encoding/json the same; until
  // 2026-12-01 dump() threw, a 500). An ordered_json, or a
  // braced list ({{"id", 7}, {"name", "ada"}}), keeps its keys in the order
  // given; any other value (a nlohmann::json, a type with to_json) goes
  // through nlohmann::json, whose objects sort their keys.
  static Response json_body(int status, const nlohmann::ordered_json& value);
  template <class T>
    requires(!std::is_same_v<T, nlohmann::ordered_json>)
  static Response json_body(int status, const T& value) {
    return json_body_sorted(status, value);
  }
  static Response json_body_sorted(int status, const nlohmann::json& value);
  // Streamed bodies (above).
  static Response stream_body(int status, std::function<std::string()> next,
                              std::string_view content_type = "application/octet-stream");
  static Response file_body(int status, std::filesystem::path path,
                            std::string_view content_type = "application/octet-stream");
  // file_body of a file the handler opened (body_opened above); an
  // io::File that is not open is std::invalid_argument.
  static Response file_body(int status, io::File file, std::string_view content_type = "application/octet-stream");

 private:
  friend void detail::set_max_json_values(Response& res, std::size_t n) noexcept;
  std::size_t max_json_values_ = kDefaultMaxJsonValues;  // json()'s cap
};

// reason_phrase: the standard phrase for a status ("Not Found"), or "".
std::string_view reason_phrase(int status) noexcept;

}  // namespace spindle::http
