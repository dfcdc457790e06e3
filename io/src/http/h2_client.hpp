// h2_client.hpp: http::Client's HTTP/2 connections (h2_client.cpp), as
// client.cpp uses them: one connection per origin, shared by every fiber
// that requests from it, each request a stream. nghttp2 stays inside
// h2_client.cpp (docs/decisions/0019-http2.md "Client").
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <spindle/io/http/client.hpp>
#include <spindle/io/http/message.hpp>

#include "transport.hpp"
#include "url.hpp"

namespace spindle::http::detail {

class H2ClientConn;
struct H2ClientStream;

// H2Ended: told once that a connection has ended (the server closed it, a
// failure, its last stream done after a GOAWAY or a probe, h2_close), from
// one of its fibers, holding none of its locks: the pool lets it go
// (client.cpp h2_ended), and may take its own lock for that (the pool
// takes a connection's lock inside its own, never the other way). Must
// not throw or suspend.
using H2Ended = std::function<void(H2ClientConn&)>;
// h2_connect: the HTTP/2 side of a connected transport, not yet started;
// `ended` (may be empty) is told of its end. h2_start: its reader and
// writer fibers start (the preface and SETTINGS go out at once) and run
// it until it ends; throws only when a fiber cannot be made. Neither
// suspends.
std::shared_ptr<H2ClientConn> h2_connect(Transport t, const ClientOptions& opt, H2Ended ended = {});
void h2_start(H2ClientConn& c);

// h2_usable: the connection takes new streams (no GOAWAY, not broken, its
// stream ids not used up, no stream of it timed out: h2_client.cpp).
bool h2_usable(const H2ClientConn& c) noexcept;
// h2_client_conn_window: the connection window later connections open
// (1 GiB; 0 puts it back). For tests: what would take a gigabyte to fill
// takes megabytes at a few MiB.
void h2_client_conn_window(std::int32_t bytes) noexcept;
// h2_client_queue_base: the frames a connection may hold unsent beyond
// four per stream before its server is taken for a flood (1000; 0 puts
// it back). For tests: a flood of any frame kind, small.
void h2_client_queue_base(std::size_t frames) noexcept;
// h2_client_first_stream_id: the first stream id later connections use
// (odd; 1, the default, puts it back). For tests: ids near 2^31 run out
// after a few requests.
void h2_client_first_stream_id(std::int32_t id) noexcept;
// h2_client_probe_wait: how long later connections without a
// read_timeout wait for the answer to the PING a stream's timeout sends
// before they close (10 s; 0 puts it back). For tests: an unanswered
// PING seen to close its connection in a fraction of a second.
void h2_client_probe_wait(std::chrono::milliseconds wait) noexcept;
// h2_client_streams_alive: the H2ClientStream objects alive in this
// process, for tests: what connections keep for calls that are gone.
std::size_t h2_client_streams_alive() noexcept;
// h2_close: ends the connection now (its streams fail with errc::reset).
// Never suspends.
void h2_close(H2ClientConn& c) noexcept;

// H2Call: one request's stream, from submit to the end of its body.
// Destroyed before the body's end (or after a failure), it resets the
// stream (RST_STREAM CANCEL): the connection and its other streams go on.
class H2Call {
 public:
  // send: submits the request and its body (a whole one at once; a
  // generator's or a file's in pieces, as the server's windows allow),
  // then waits for the final response head (1xx heads are skipped).
  // `retry` is set (and nothing thrown) when the server refused the
  // stream before processing it (REFUSED_STREAM, or a GOAWAY whose last
  // stream is below it): the request may be sent again on a new
  // connection whatever its method (RFC 9113 8.7); and, with
  // `may_replay` (the request may run twice: client.cpp replayable),
  // when a connection that had answered before closed after the request
  // left and before its answer. Errors: http::Error.
  SPINDLE_MAY_SUSPEND static std::unique_ptr<H2Call> send(const std::shared_ptr<H2ClientConn>& c,
                                                          std::string_view method, const Url& u,
                                                          const RequestOptions& ro, const ClientOptions& opt,
                                                          bool may_replay, bool& gen_called, bool& retry);
  ~H2Call();
  H2Call(const H2Call&) = delete;
  H2Call& operator=(const H2Call&) = delete;

  int status() const noexcept;
  const Headers& headers() const noexcept;
  // take_trailers: the fields after the body, moved out, once read_some
  // returned 0 (the body's end); empty before.
  Headers take_trailers() noexcept;
  std::optional<std::uint64_t> content_length() const noexcept;
  // read_some: body bytes into dst (at least one), 0 at its end; each wait
  // bounded by read_timeout. The stream's window opens by what is read.
  SPINDLE_MAY_SUSPEND std::size_t read_some(std::byte* dst, std::size_t n);
  bool done() const noexcept;

  H2Call(std::shared_ptr<H2ClientConn> c, std::shared_ptr<H2ClientStream> st, const Url& u, const ClientOptions& opt);

 private:
  std::shared_ptr<H2ClientConn> c_;
  std::shared_ptr<H2ClientStream> st_;
  Url u_;
  const ClientOptions& opt_;
};

}  // namespace spindle::http::detail
