// client.hpp: http::Client, an HTTP/1.1 client with a keep-alive
// connection pool, built on Beast's serializer and parser over spindle's
// TcpStream.
//
//   sp::http::Client client({.limit = 100, .limit_per_host = 10});
//   auto r = client.get("http://127.0.0.1:8080/users/7");
//   if (r.status == 200) use(r.text());
//
// Every call may suspend the calling fiber (connect, write, read, waiting
// for a pool slot) and is a cancellation point: it obeys Task::cancel and
// the caller's with_timeout / with_deadline. Call from fibers only.
//
// Pool (docs/http.md "Client"): connections are kept per scheme, host and port after a
// response that allows keep-alive was read whole. At most `limit` open
// connections in total and `limit_per_host` per host (0: no limit); a
// request beyond them waits for one (an idle connection of another host is
// closed to make room, as aiohttp does). A request that fails, is
// cancelled or times out at any point closes its connection: a half-read
// connection is never reused. An idle connection that has anything to
// read when it is taken from the pool (the server's close, or bytes nobody
// asked for: they would be read as the next response) is closed instead
// of used. A request whose reused connection turns out to be closed by
// the server (end of stream or reset before any response byte) is sent
// once more on a new connection if it is replayable (RequestOptions::
// replayable: idempotent methods by default); else that is errc::reset.
//
// URLs: http:// or https:// in any case; control bytes anywhere, or a host
// that is not a DNS name or IP literal, are errc::invalid_url; spaces and
// non-ASCII bytes in the path and query are percent-encoded;
// user:password@host is sent as Basic authentication (unless the request
// has its own Authorization), and never appears in Response::url or error
// texts.
//
// Thread-safety: one Client may be used by any number of fibers on any
// workers at once. The destructor closes the idle connections; no request
// may be in flight then, and no StreamedResponse of it may be left.
//
// https:// (when spindle is built with OpenSSL; otherwise
// errc::invalid_url): TLS over the same pool, keyed by scheme, host and
// port; the server's certificate is verified against the system trust
// store (or ClientOptions::tls.ca_file) and the URL's host, which is also
// sent as SNI. Handshake and verification failures are errc::tls, with
// OpenSSL's reason in what(); the connect timeout covers the handshake.
//
// Streamed bodies (docs/http.md "Streamed bodies"). Download: open()
// returns a StreamedResponse once the head is read (redirects followed
// first); its body is read piece by piece with read_some / read_chunk and
// never buffered whole, and max_body does not apply. Its connection goes
// back to the pool only when the body was read to its end; destroyed,
// closed, cancelled or failed before that, it closes the connection.
// download() streams a body into a file through a temporary that is
// renamed only on success. Upload: RequestOptions::body_generator (chunked,
// or Content-Length when body_length is given) or body_file
// (Content-Length from its size, read with io::File in chunks).
//
// Errors: http::Error (error.hpp) with an http::errc kind.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include <nlohmann/json_fwd.hpp>

#include <spindle/io/http/error.hpp>
#include <spindle/io/http/message.hpp>
#include <spindle/io/http/url.hpp>
#include <spindle/io/tcp.hpp>
#include <spindle/io/tls.hpp>
#include <spindle/runtime/detail/macros.hpp>

namespace spindle::http {

namespace detail {
struct ClientPool;  // client.cpp
struct BodyReader;  // client.cpp
}

// ClientHttp2: when http::Client speaks HTTP/2 (docs/http.md "HTTP/2").
//  - alpn: https:// offers h2 by ALPN, then http/1.1; an origin that picks
//    h2 gets one connection, shared by every fiber's requests (each a
//    stream). http:// stays HTTP/1.1 (as curl, Go and browsers).
//  - never: HTTP/1.1 only.
//  - prior_knowledge: http:// speaks HTTP/2 without asking (h2c, for a
//    server known to: curl's --http2-prior-knowledge); https:// as alpn.
enum class ClientHttp2 { alpn, never, prior_knowledge };

// A timeout past ten years (milliseconds::max() for "no limit" included)
// counts as ten years; zero or negative: none, as each says.
struct ClientOptions {
  std::size_t limit = 100;         // open connections in total; 0: no limit
  std::size_t limit_per_host = 0;  // open connections per host:port; 0: no limit
  // Timeouts (zero or negative: none), raised as Error(errc::timeout). connect: each
  // connection's connect (and TLS handshake). read: each wait for response
  // bytes (time without progress). total: the whole call, redirects
  // included; for open() and download() also every read of the body, so a
  // download longer than total_timeout needs a larger one (or zero).
  //
  // Defaults as aiohttp's (ClientTimeout(total=300, sock_connect=30)): a
  // server that accepts and never answers, or drips a byte at a time,
  // holds a request 5 minutes at most, not forever. read has no default
  // (aiohttp's sock_read is None too): total bounds it.
  std::chrono::milliseconds connect_timeout{30'000};
  std::chrono::milliseconds read_timeout{0};
  std::chrono::milliseconds total_timeout{300'000};
  int max_redirects = 10;               // followed; one more is an error
  // Response head; more: malformed_response. Its fields, and a chunked
  // body's trailer fields with them, are charged each name and value plus
  // 32 against it. Also bounds what one chunk header (extensions) or the
  // trailer may hold, and the 1xx heads before a response: at most 5 (as
  // Go's client), each under max_head.
  std::size_t max_head = 64 * 1024;
  // Response body; more: body_too_large, as soon as a Content-Length or a
  // chunk line announces more (before its data).
  std::size_t max_body = 64u << 20;
  // Values (every scalar, array and object) Response::json() builds at
  // most, on a Response this Client returned; more:
  // http::Error(errc::too_many_json_values), before the value is stored.
  // A value costs up to ~72 bytes of tree: at the default the tree stays
  // under ~72 MB (about max_body), and an answer of ~10 MB of typical
  // JSON passes. SIZE_MAX: no cap. docs/http.md "JSON values".
  std::size_t max_json_values = Response::kDefaultMaxJsonValues;
  std::string user_agent = "spindle-http";
  // A pooled connection idle this long is closed (an HTTP/2 one once its
  // last stream ended this long ago), and an origin with nothing left
  // open is forgotten; 0: kept until used, evicted or close_idle().
  // aiohttp's keepalive_timeout (15 s; Go's IdleConnTimeout is 90 s).
  // The pool looks in each request and, while anything is idle, in a
  // reaper fiber of its own (at most every quarter of this, 1 s at most),
  // so a Client nobody calls lets go too (docs/http.md "Client", idle
  // expiry).
  std::chrono::milliseconds keepalive_timeout{15'000};
  // tcp_keepalive: TCP keep-alive probes on each connection (not the same
  // thing as keepalive_timeout above: io::TcpKeepAlive). A server that
  // vanished without a FIN is found within 150 s by default (Go's
  // net.Dialer: 15 s idle, 9 probes 15 s apart), where a wait with no
  // timeout (total_timeout and read_timeout zero, a long download) would
  // wait for ever. None: off (the kernel's default).
  std::optional<io::TcpKeepAlive> tcp_keepalive = io::TcpKeepAlive{};
  // RequestOptions::expect_continue: how long to wait for the server's
  // 100 Continue before sending the body anyway (a server that ignores
  // Expect never answers until it has the body). Go's ExpectContinueTimeout.
  std::chrono::milliseconds expect_continue_timeout{1000};
  // https:// connections: verification on and the system trust store by
  // default (io::TlsClientOptions, tls.hpp).
  io::TlsClientOptions tls = {};
  // http2: above. Over HTTP/2, `limit` counts the connection once, and
  // `limit_per_host` (when set) the streams open on it; the server's
  // SETTINGS_MAX_CONCURRENT_STREAMS holds the rest back. expect_continue
  // works there as over HTTP/1.1 (the body waits for the 100); a refusal
  // from the head ends only its stream, and the connection stays pooled.
  ClientHttp2 http2 = ClientHttp2::alpn;
};

// BodyGenerator: a streamed request body, one chunk per call; an empty
// string ends the body. Called on the requesting fiber, between writes (it
// may suspend). An exception from it ends the request (the connection is
// closed) and reaches the caller.
using BodyGenerator = std::function<std::string()>;

struct RequestOptions {
  // headers: sent as given (after Host and User-Agent), each field as
  // often as it was added (Headers::add: several Cookie or Accept fields go
  // out as several); a Host or User-Agent here replaces the client's own
  // (one field; the last given counts). Names must be
  // RFC 9110 tokens and values free of control bytes but HTAB (CR, LF and
  // NUL would split the head: header injection); else
  // std::invalid_argument before anything is sent. The method is checked as
  // a token the same way. Content-Length and Transfer-Encoding are the
  // client's (from the body): given here, std::invalid_argument.
  // Authorization, Proxy-Authorization, Cookie and Cookie2 (and a Host set
  // here) are not sent on after a redirect to another origin (scheme, host
  // or port differ, https to http included), as curl and Go do.
  Headers headers = {};
  // params: appended to the URL's query, form-encoded (QueryParams::encode:
  // "q=a+b&tag=x"), after a '&' when the URL has a query already, as
  // aiohttp's params=. They go with the first URL only; a redirect's
  // Location is followed as given.
  QueryParams params = {};
  std::string body = {};
  bool follow_redirects = true;
  // replayable: the request may be sent again on a new connection when its
  // pooled connection fails after it was written and before any response
  // byte (the server closed it meanwhile). Without it only idempotent
  // methods (GET, HEAD, OPTIONS, TRACE, PUT, DELETE) or a request with an
  // Idempotency-Key header are, as Go's rule: a POST may have run on the
  // server already, and sending it twice can run it twice. A
  // body_generator once called is never replayed, whatever this says.
  bool replayable = false;
  // Streamed request bodies; at most one of body, body_generator and
  // body_file (more: std::invalid_argument).
  //
  // body_generator: sent with Transfer-Encoding: chunked, or with
  // Content-Length: *body_length when given (a generator that yields more
  // or fewer bytes than that: std::length_error, connection closed). It
  // cannot be replayed: a 307/308 redirect is not followed (the redirect
  // response is returned as is), and a pooled connection found closed by
  // the server after the generator was first called is errc::reset rather
  // than a silent retry.
  BodyGenerator body_generator = {};
  std::optional<std::uint64_t> body_length = {};
  // body_file: the file's bytes, Content-Length from its size at open, read
  // in chunks with io::File (never whole in memory). Re-read from the start
  // for a 307/308 redirect or a retry. A file that cannot be opened, or is
  // not a regular file (opened with io::OpenMode::regular: a FIFO is
  // refused, not waited on), raises io::File's std::system_error before
  // anything is sent (a path with a NUL byte: std::invalid_argument).
  std::filesystem::path body_file = {};
  // max_download: download() only: the most bytes written to the file. A
  // Content-Length over it is errc::body_too_large before any file is
  // made; a body that passes it while streaming (or a chunk line that
  // announces more, before its data), the same error, the temporary
  // removed. None (the default): no limit but total_timeout, as
  // curl's --max-filesize is off by default; set it for URLs a peer gave.
  std::optional<std::uint64_t> max_download = {};
  // expect_continue: a request with a body is sent with
  // `Expect: 100-continue`: the head goes first, and the body only after
  // the server's 100 Continue (or after ClientOptions::
  // expect_continue_timeout without an answer). A server that refuses the
  // request from its head (413, 401, 404) answers before the body: the
  // body is never sent (a generator never called, a file never read) and
  // that response is returned; its connection is then closed, not pooled
  // (the server may still be waiting for the body it announced). Over
  // HTTP/2 only that stream is reset (CANCEL) once its response was read;
  // the connection stays. Without it, such a server's early answer
  // usually reaches the client only as a reset in the middle of the upload.
  // A final 2xx before the 100 is a server that answers as it reads (Go's,
  // when a handler writes its head first): the body is sent, and the
  // response read after it, unless that 2xx closes the connection
  // (HTTP/1.1) or ends the stream (HTTP/2), as Go's client does.
  bool expect_continue = false;
};

// StreamedResponse: a response whose body is read in pieces (Client::open).
// status, reason, headers and url are there when open() returns; the body
// is not read yet. Move-only; one fiber at a time. It may outlive its
// Client: over HTTP/1.1 its body can still be read, and its connection is
// then closed, not pooled; over HTTP/2 the Client's end closes the
// connection, and a read past the bytes already come raises
// errc::truncated. Each read is a cancellation point bounded by read_timeout (and by
// total_timeout counted from open()), raised as errc::timeout; the body's
// framing (Content-Length, chunked, until close) is checked as for
// request(): a body that ends early is errc::truncated, never a short
// success.
//
// The connection: given back to the pool (keep-alive allowing) by the read
// that reaches the end of the body; closed by close(), the destructor, or
// any failure (error, Cancelled, TimedOut) before that, so a half-read
// connection is never reused. After a failed read the stream is closed:
// later reads raise Error(errc::reset).
class StreamedResponse {
 public:
  int status = 0;
  std::string reason;
  Headers headers;
  std::string url;  // the URL that answered (after redirects)

  StreamedResponse() noexcept;  // closed, done, no body
  StreamedResponse(StreamedResponse&&) noexcept;
  StreamedResponse& operator=(StreamedResponse&&) noexcept;
  ~StreamedResponse();

  // read_some: the next body bytes into buf: at least one, at most
  // buf.size(); 0 only at the end of the body (or for an empty buf).
  SPINDLE_MAY_SUSPEND std::size_t read_some(std::span<std::byte> buf);
  SPINDLE_MAY_SUSPEND std::size_t read_some(void* p, std::size_t n) {
    return read_some(std::span<std::byte>(static_cast<std::byte*>(p), n));
  }
  // read_chunk: the next piece of the body, at most max bytes (and at most
  // 1 MiB whatever max is); empty at the end.
  SPINDLE_MAY_SUSPEND std::string read_chunk(std::size_t max = 64 * 1024);
  // read_all: the rest of the body as one string; more than max bytes is
  // errc::body_too_large (and closes the connection), raised as soon as
  // the Content-Length or a chunk line announces more (before its data).
  SPINDLE_MAY_SUSPEND std::string read_all(std::size_t max = 64u << 20);

  // done: the whole body was read (the connection went back or closed).
  bool done() const noexcept;

  // trailers: the fields the server sent after the body
  // (Response::trailers: HTTP/2's, or HTTP/1.1's chunked trailer
  // section); empty until done().
  const Headers& trailers() const noexcept;
  // bytes_read: body bytes returned so far.
  std::uint64_t bytes_read() const noexcept;
  // content_length: the head's Content-Length, if it had one.
  std::optional<std::uint64_t> content_length() const noexcept;
  // close: closes the connection unless the body was read whole;
  // idempotent; never suspends.
  void close() noexcept;

 private:
  friend class Client;
  std::unique_ptr<detail::BodyReader> r_;
};

// DownloadResult: what download() fetched.
struct DownloadResult {
  int status = 0;
  std::string reason;
  Headers headers;
  std::string url;         // after redirects
  std::uint64_t bytes = 0;  // written to the file (0 when not written)
  bool written = false;     // true: a 2xx body is in the file, complete
  // A non-2xx response's body (the server's reason, most often), up to
  // kDownloadErrorBodyMax bytes; a longer one is cut there.
  std::string error_body;
  static constexpr std::size_t kDownloadErrorBodyMax = 64 * 1024;
};

struct ClientStats {
  std::uint64_t connections_opened = 0;  // connects that succeeded
  std::uint64_t connections_reused = 0;  // requests sent on a pooled connection
  std::size_t open = 0;                  // open now (idle or in use)
  std::size_t idle = 0;                  // idle in the pool now
  std::size_t origins = 0;               // scheme/host/port entries the pool keeps (keepalive_timeout)
};

class Client {
 public:
  explicit Client(ClientOptions options = {});
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // request: sends `method` to `url` (http://host[:port][/path][?query])
  // and returns the response, following redirects (301, 302, 303 drop the
  // body and turn any method but GET and HEAD into GET; 307, 308 repeat the
  // method and body) unless told not to. Any status is a Response; only transport and protocol failures
  // throw (Error).
  SPINDLE_MAY_SUSPEND Response request(std::string_view method, std::string_view url,
                                       RequestOptions options = {});
  SPINDLE_MAY_SUSPEND Response get(std::string_view url, RequestOptions options = {}) {
    return request("GET", url, std::move(options));
  }
  SPINDLE_MAY_SUSPEND Response post(std::string_view url, std::string body, RequestOptions options = {}) {
    options.body = std::move(body);
    return request("POST", url, std::move(options));
  }
  // post_json: body = value.dump(), Content-Type: application/json. An
  // nlohmann::ordered_json (and a braced list: {{"b", 1}, {"a", 2}}) keeps
  // its keys in the order given, as Python's json does; any other value
  // goes through nlohmann::json, whose objects sort their keys.
  SPINDLE_MAY_SUSPEND Response post_json(std::string_view url, const nlohmann::ordered_json& value,
                                         RequestOptions options = {});
  template <class T>
    requires(!std::is_same_v<T, nlohmann::ordered_json>)
  SPINDLE_MAY_SUSPEND Response post_json(std::string_view url, const T& value, RequestOptions options = {}) {
    return post_json_sorted(url, value, std::move(options));
  }

  // open: as request(), redirects and all, but returns once the final
  // response's head is read; its body is read through the result
  // (StreamedResponse). max_body does not apply. total_timeout, when set,
  // bounds open() and every read of the body, counted from this call.
  SPINDLE_MAY_SUSPEND StreamedResponse open(std::string_view method, std::string_view url,
                                            RequestOptions options = {});
  // download: GET url and stream a 2xx body into `path` (created or
  // replaced). The bytes go to a temporary file next to it
  // ("<path>.part-<pid>-<n>"), which is renamed to `path` only after the last
  // byte was read and written; a failure, timeout or cancel at any point
  // removes the temporary and leaves `path` as it was, so a file at `path`
  // is always a complete body. A non-2xx response writes nothing (written =
  // false) and is not an error: its body, up to 64 KiB, is in error_body
  // (the connection goes back to the pool; a longer body is cut there and
  // its connection closed). Errors: those of open() and of the reads, and io::File's
  // std::system_error for the file.
  SPINDLE_MAY_SUSPEND DownloadResult download(std::string_view url, const std::filesystem::path& path,
                                              RequestOptions options = {});

  ClientStats stats() const;
  // close_idle: closes every idle pooled connection. Never suspends.
  void close_idle() noexcept;

 private:
  SPINDLE_MAY_SUSPEND Response post_json_sorted(std::string_view url, const nlohmann::json& value,
                                                RequestOptions options);
  std::shared_ptr<detail::ClientPool> pool_;  // shared with its reaper fiber (client.cpp)
};

}  // namespace spindle::http
