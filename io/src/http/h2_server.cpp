// h2_server.cpp: one HTTP/2 server connection on libnghttp2
// (docs/decisions/0019-http2.md, docs/http.md "HTTP/2").
//
// Fibers of a connection:
//  - the connection's fiber (serve_h2) is the writer: it takes what the
//    session has to send (nghttp2_session_mem_send) and writes it, and
//    keeps the connection's clock (idle_timeout, shutdown's GOAWAY);
//  - a reader fiber feeds what the socket gives to the session
//    (nghttp2_session_mem_recv), whose callbacks record each stream's
//    head and body and start its fiber;
//  - one fiber per stream runs the handler, then submits the response and
//    feeds its body, then waits until the stream is closed (unless the
//    client's windows already admit a whole body: then it ends at once).
// All three kinds are children of one TaskGroup owned by the writer, so
// none outlives the connection; the session outlives them all. The
// reader and writer are pinned to the connection's worker (Pin).
//
// Release (a plain connection, ServerOptions::idle_release_after): once
// no stream is open and nothing waits to be sent for release_after, the
// writer nudges the reader's idle wait; the reader agrees under mu_ if it
// is still so, and both fibers end. The session (HPACK tables, settings,
// stream ids) stays in the H2Conn, which server.cpp's Conn owns; the
// socket waits in the server's wake epoll like a released HTTP/1.1
// connection's, and the next bytes start run() again. What an idle
// connection then holds is the session and this object, no stack and no
// read buffer (plain connections read into their thread's buffer:
// read_plain).
//
// Lock: `mu_` guards the session and every stream's fields below it (the
// callbacks run under it, inside mem_recv and mem_send). It is a plain
// mutex (H2Lock), held for nghttp2 calls and field updates only, never across
// a wait, so a cancelled fiber can always take it to clean up. Events are
// set after the change they announce was made under mu, and cleared only
// under mu before the check that decides to wait: no wake is lost.
//
// What a peer can make a connection hold (the limits, Http2Options):
// unread request bytes are bounded by the windows (window updates follow
// the handler's reads: nghttp2_option_set_no_auto_window_update), bodies
// read whole by whole_body_budget (H2Body::charge: past it a stream is
// refused), a whole response body by write_timeout in all (await_close,
// watch_fits), other response bytes not yet sent by kOutHigh per stream
// (a generator waits), header
// fields by max_head per stream (past it nothing more is kept), streams by
// max_concurrent_streams (counting fibers not yet ended), queued control
// frames by max_outbound_ack, every queued frame (RST_STREAM among them)
// by queue_cap (feed), header blocks by max_continuations. Resets
// are rate limited by client_reset (reset_burst, reset_rate), with
// nghttp2's own limiter as a looser backstop.
#include "h2_server.hpp"

#include "ascii.hpp"
#include "body_allowed.hpp"
#include "body_opened.hpp"
#include "h2_common.hpp"
#include "h2_mem.hpp"
#include "limits.hpp"
#include "../idle_wait.hpp"
#include "../test_hooks.hpp"
#include "call_handler.hpp"

#include <nghttp2/nghttp2.h>
#include <pthread.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cxxabi.h>

#include <algorithm>
#include <cassert>
#include <charconv>
#include <optional>
#include <stdexcept>
#include <chrono>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <spindle/io/file.hpp>
#include <spindle/io/http/error.hpp>
#include <spindle/runtime/all.hpp>
#include <spindle/runtime/suspend.hpp>
#include <spindle/runtime/detail/io_hook.hpp>
#include <spindle/runtime/this_fiber.hpp>
#include <spindle/sync/event.hpp>


namespace spindle::http::detail {

using namespace std::string_view_literals;

namespace {

using Clock = std::chrono::steady_clock;

// A stream's response bytes not yet taken by the session: a generator or a
// file waits below this before it makes more.
constexpr std::size_t kOutHigh = 64 * 1024;
// All streams' together (not whole bodies: the handler made them whole,
// and they would hold the connection under pressure while they drain):
// past this the connection is under pressure (out_pressure), and a stream
// adds a piece only when all of its own were taken; a file's pieces
// shrink to one frame. A client
// that opens 100 streams and reads nothing would otherwise hold kOutHigh
// and a piece per stream: 10 connections with 100 streams of a 16 KiB-piece
// generator each held ~100 MB of the server (10 MB a connection) for
// write_timeout. Streams whose own window is shut hold at most a piece
// more each, and the others keep going (one piece per drain under
// pressure): a slow reader still stalls only its own stream.
constexpr std::size_t kConnOutHigh = 256 * 1024;
// A file's piece under pressure: one DATA frame of the default size.
constexpr std::size_t kOutFrame = 16 * 1024;
// What the writer takes from the session per socket write.
constexpr std::size_t kWriteBatch = 64 * 1024;
// kLingerStall: a client that takes none of them for this long (one that
// never reads) is not waited for further.
constexpr std::chrono::milliseconds kLingerStall{1'000};
// The reader's socket reads.
constexpr std::size_t kReadSize = 16 * 1024;
// The reader yields to its worker's other fibers after this many reads in
// a row that found bytes waiting (128 KiB parsed): a client that sends
// faster than the session parses would otherwise hold the worker, and
// every fiber queued on it, for as long as it kept sending (HTTP/1.1's
// serve_conn yields every kRequestsPerTurn requests for the same reason).
constexpr unsigned kReadsPerTurn = 8;

// breaks_line: s holds CR, LF or NUL. One pass (find_first_of with a set
// calls memchr once per character of s).
bool breaks_line(std::string_view s) noexcept {
  return std::any_of(s.begin(), s.end(), [](char ch) { return ch == '\r' || ch == '\n' || ch == '\0'; });
}

// Fields HTTP/2 forbids in a message (RFC 9113 8.2.2), and those the
// server sets itself; `name` in any case (a handler's "Content-Length").
// By length first: six calls of iequals per field of every response were
// most of sendable_field's ~190 instructions a request.
bool dropped_field(std::string_view name) {
  switch (name.size()) {
    case 7: return iequals(name, "upgrade");
    case 10: return iequals(name, "connection") || iequals(name, "keep-alive");
    case 14: return iequals(name, "content-length");
    case 16: return iequals(name, "proxy-connection");
    case 17: return iequals(name, "transfer-encoding");
    default: return false;
  }
}

// sendable_field: a field of the handler's the server sends, in the head
// or the trailers: not a pseudo-field, not one HTTP/2 forbids (but the
// handler's Content-Length of a 304, `keep_length`), nothing that would
// split a line on an HTTP/1.1 hop.
bool sendable_field(std::string_view name, std::string_view value, bool keep_length = false) {
  if (name.empty() || name[0] == ':') return false;
  if (breaks_line(name) || breaks_line(value)) return false;
  return !dropped_field(name) || (keep_length && iequals(name, "content-length"));
}

}  // namespace

struct H2Stream;

// Pin: keeps the calling fiber on worker `w` (moving it there first) until
// it goes, then restores the fiber's previous pin. A connection's reader
// and writer are pinned to the worker it started on (or, once that worker
// consolidates its sockets onto another, to that one: follow_consolidation
// moves them, and the socket follows the reader): a stream fiber that
// runs elsewhere wakes the writer into that worker's inbox instead of
// pulling it over, and the socket stays in one worker's epoll. Unpinned,
// a connection's fibers spread over both workers of h2load's benchmark
// and it served 0.60x of h2o per CPU-second; pinned, 0.89x
// (docs/decisions/0019-http2.md "Two workers"). The price: a worker
// stuck in a fiber that does not yield holds its connections' I/O until
// it does (the runtime's hand-off does not move pinned fibers).
struct Pin {
  int prev;
  explicit Pin(int w) : prev(spindle::detail::hop_to_worker(w)) {}
  ~Pin() {
    if (prev < 0) {
      spindle::detail::unpin();
    } else {
      spindle::detail::hop_to_worker(prev);
    }
  }
  Pin(const Pin&) = delete;
  Pin& operator=(const Pin&) = delete;
};

// H2Lock: the connection's lock (file comment): a mutex that spins a
// moment before it sleeps (glibc's adaptive mutex). Its holders never
// wait, so a taker on another worker mostly finds it free within the
// spin; with a plain std::mutex, at 2 workers the streams' fibers slept
// in the kernel on it about once every 4 requests of h2load (94,689 futex
// calls for 400,000 requests; docs/decisions/0019-http2.md).
class H2Lock {
 public:
  H2Lock() noexcept {
#ifdef PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(&m_, &a);
    pthread_mutexattr_destroy(&a);
#else
    pthread_mutex_init(&m_, nullptr);
#endif
  }
  ~H2Lock() { pthread_mutex_destroy(&m_); }
  H2Lock(const H2Lock&) = delete;
  H2Lock& operator=(const H2Lock&) = delete;
  void lock() noexcept { pthread_mutex_lock(&m_); }
  void unlock() noexcept { pthread_mutex_unlock(&m_); }
  bool try_lock() noexcept { return pthread_mutex_trylock(&m_) == 0; }

 private:
  pthread_mutex_t m_;
};

class H2Conn {
 public:
  H2Conn(Transport& t, const io::Endpoint& peer, H2Env env);
  ~H2Conn();
  H2Conn(const H2Conn&) = delete;
  H2Conn& operator=(const H2Conn&) = delete;

  H2Rest run(std::string_view preread, const std::function<void(H2Conn*)>& published, H2Upgrade* upgrade);
  void wake() noexcept { wake_.set(); }
  void goodbye(int fd) noexcept;
  // quiet_ms: steady-clock ms since when no stream fiber has run (the
  // server's idle stamp for it), or kBusy while one does. reclaim: the
  // server's connection limit wants it: a GOAWAY once (if) it is quiet
  // when the writer looks; a stream under way cancels the request.
  static constexpr std::uint64_t kBusy = ~std::uint64_t{0};
  std::uint64_t quiet_ms() const noexcept { return quiet_ms_.load(std::memory_order_relaxed); }
  void reclaim() noexcept {
    // Not a candidate again while the writer decides (set_quiet makes it
    // one when a stream that came meanwhile has ended).
    quiet_ms_.store(kBusy, std::memory_order_relaxed);
    reclaim_.store(true, std::memory_order_relaxed);
    wake_.set();
  }

 private:
  friend struct H2Stream;
  friend class H2Body;

  // nghttp2's callbacks (under mu).
  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* f, void* self);
  static int on_header(nghttp2_session*, const nghttp2_frame* f, nghttp2_rcbuf* name, nghttp2_rcbuf* value,
                       uint8_t flags, void* self);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* f, void* self);
  static int on_data_chunk(nghttp2_session*, uint8_t flags, int32_t id, const uint8_t* data, size_t len, void* self);
  static int on_stream_close(nghttp2_session*, int32_t id, uint32_t error, void* self);
  static int on_frame_send(nghttp2_session*, const nghttp2_frame* f, void* self);
  static ssize_t read_body(nghttp2_session*, int32_t id, uint8_t* buf, size_t len, uint32_t* flags,
                           nghttp2_data_source* src, void* self);

  void reader(std::string preread);
  void read_tls();
  bool read_plain();
  bool feed(const void* p, std::size_t n);
  // unpromise: n of st's promised bytes were taken (or never will be).
  // Under mu_.
  void unpromise(H2Stream& st, std::uint64_t n) noexcept;
  // unwatched_done: st's unwatched body was taken to its end, or never
  // will be (the stream closed): the rest of its promise comes back, and
  // watch_fits no longer looks at it. Under mu_.
  void unwatched_done(H2Stream& st) noexcept;
  // queue_cap: the most frames the session may hold unsent before the
  // client that keeps sending them is taken for a flood (feed): its acks'
  // bound, and four per stream it may open.
  std::size_t queue_cap() const noexcept {
    // Saturating: max_outbound_ack = SIZE_MAX ("no bound") wrapped to ~400.
    return detail::sat_add(static_cast<std::size_t>(h2_.max_outbound_ack),
                           4 * static_cast<std::size_t>(h2_.max_concurrent_streams));
  }
  enum class WriterEnd { released, ended, cut };
  WriterEnd writer();
  void linger();
  bool may_release() const;
  void follow_consolidation();
  void run_stream(const std::shared_ptr<H2Stream>& st);
  void respond(H2Stream& st, Response& res);
  void release_body(H2Stream& st);
  std::size_t await_room(H2Stream& st);
  bool put_out(H2Stream& st, std::string_view piece);
  bool progressed(H2Stream& st, std::uint64_t sent0);
  void await_close(H2Stream& st);
  void reset(H2Stream& st, uint32_t error);
  void client_reset();
  H2Stream* head_stream(int32_t id) const;
  // adopt_stream / drop_stream: st joins / leaves streams_ (under mu_);
  // drop_stream returns the reference streams_ held.
  void adopt_stream(std::shared_ptr<H2Stream> st);
  std::shared_ptr<H2Stream> drop_stream(H2Stream& st);
  // out_pressure: the streams' response bytes not yet taken pass
  // kConnOutHigh (under mu_; a sum over the streams, stopping at the cap).
  bool out_pressure() const noexcept;
  // end_fiber: st's fiber no longer counts (under mu_); its Task moves to
  // `own`. True when it was the last.
  bool end_fiber(H2Stream& st, Task<void>& own);
  bool watch_fits(Clock::time_point now, Clock::time_point& next);

  Transport& t_;
  io::Endpoint peer_;
  const H2Env env_;
  const Http2Options& h2_;
  // A plain connection with release_after set: an idle one is released
  // (H2Rest), and its reader reads into its worker's buffer (read_plain).
  const bool releasable_;
  H2Mem mem_;  // the session's allocator: destroyed after it (h2_mem.hpp)
  nghttp2_session* s_ = nullptr;
  TaskGroup* group_ = nullptr;  // run()'s, while it runs
  // The worker the connection's reader and writer are pinned to. Set by
  // run() before the reader starts; later only the reader changes it
  // (follow_consolidation, under mu_), and the writer follows at its next
  // wake (which it does not clear while home_ is elsewhere: writer).
  std::atomic<int> home_{0};

  H2Lock mu_;
  // Guarded by mu_:
  // Open streams we serve, in no order: a stream's `slot` is its index
  // here. The session's stream user data finds a stream by id; this only
  // owns them (a hash map's node per stream measured one more allocation
  // per request).
  std::vector<std::shared_ptr<H2Stream>> streams_;
  // The stream whose head nghttp2 delivers now (head_stream): set by
  // on_begin_headers for a stream of ours, 0 for any other header block,
  // and cleared when that stream closes (ids are never reused, so an id
  // that matches names a live stream).
  int32_t head_id_ = 0;
  H2Stream* head_st_ = nullptr;
  std::size_t fibers_ = 0;      // stream fibers not yet ended
  // promised_: the streams' `promised` bytes in all. They share the
  // connection's window, so a body fits only in what it leaves. Under mu_.
  std::uint64_t promised_ = 0;
  // unwatched_: streams with `unwatched` set (the writer runs watch_fits
  // while there are any). Under mu_.
  std::size_t unwatched_ = 0;
  // loaded_: the streams' `loaded` bytes in all: request bodies read whole
  // and still held (Http2Options::whole_body_budget bounds it; charge_body).
  std::size_t loaded_ = 0;
  Clock::time_point quiet_since_;  // when fibers_ last became 0
  // revived_at_: when this run of the connection began (run(): its first,
  // or a revival after a release). A release waits release_after from the
  // later of the two, so bytes that open no stream (a PING) do not make a
  // released connection start and release again per segment. Under mu_.
  Clock::time_point revived_at_;
  // quiet_since_ in ms, kBusy while fibers_ > 0: written under mu_, read
  // by the server's make_room without it (a stale stamp costs at most a
  // reclaim() the writer then ignores). set_quiet and add_fiber keep them.
  std::atomic<std::uint64_t> quiet_ms_{kBusy};
  std::atomic<bool> reclaim_{false};
  void set_quiet(Clock::time_point t) noexcept {
    quiet_since_ = t;
    quiet_ms_.store(static_cast<std::uint64_t>(
                        std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count()),
                    std::memory_order_relaxed);
  }
  void add_fiber() noexcept {
    if (fibers_++ == 0) quiet_ms_.store(kBusy, std::memory_order_relaxed);
  }
  bool reader_done_ = false;
  // Release (releasable_ only): the writer found the connection quiet for
  // release_after and nudged the reader's idle wait (release_asked_); the
  // reader, woken by that nudge, agreed (released_: it stopped reading)
  // or declined (it clears release_asked_). Both decide under mu_, so a
  // stream that began between the two keeps the connection.
  bool release_asked_ = false;
  bool released_ = false;
  bool goaway_ = false;         // we submitted GOAWAY: no new stream
  // The client sent GOAWAY: no new stream either (on_begin_headers). It
  // said it opens none (RFC 9113 6.8), and nghttp2 refuses new streams
  // only after a GOAWAY of ours: it took them, and their handlers ran,
  // also once the connection had no writer left to answer them (its
  // GOAWAY with no stream open ends the writer; the reader still feeds
  // during the lingering close).
  bool client_goaway_ = false;
  bool broken_ = false;         // a session call failed: end now
  // writer_ended_: the writer decided to end, or returned (any way: a
  // GOAWAY done, a failed write, a failed session). Nothing the session
  // makes from here is ever sent, so feed drops what the reader still
  // reads (the linger's reads) rather than hand it to the session: a
  // HEADERS would start a handler whose answer nobody writes, holding a
  // stream slot and its memory until the connection's end. Cleared by
  // run() (a released connection's next run).
  bool writer_ended_ = false;
  // Rapid reset (Http2Options::reset_burst, reset_rate): a token bucket of
  // the client's resets of streams it opened, refilled by the clock.
  double reset_tokens_ = 0;
  Clock::time_point reset_at_;
  Event wake_;                  // the writer's: something to send, or to check
  Event writer_done_;           // the writer returned
};

// H2Stream: one request and its response. Fields under the connection's
// mu_ unless said otherwise; the stream fiber and the session (its stream
// user data, until on_stream_close) share it.
struct H2Stream {
  H2Conn& c;
  int32_t id;
  Request req;            // head: filled by the callbacks before the fiber starts; then the fiber's
  std::string authority;  // :authority (to Host)
  std::string cookie;     // the cookie crumbs so far, joined
  std::size_t head_bytes = 0;
  bool head_too_large = false;
  bool trailers_too_large = false;  // the trailers took the list past max_head
  Headers in_trailers;              // the request's trailers so far; to req.trailers at the body's end (H2Body)
  bool over_head = false;  // its fields passed max_head (charged to client_reset once)
  bool out_whole = false;  // out holds a whole body (the handler's, not counted by out_pressure)
  // promised: bytes of a whole body, sent on the strength of the
  // connection's window with no fiber to watch them go (respond's `fits`),
  // not yet taken by nghttp2; counted in H2Conn::promised_. Under mu.
  std::uint64_t promised = 0;
  // unwatched: its whole body was answered that way and not yet taken to
  // its end (the end of an empty body too: a trailers-only answer has no
  // bytes to promise, but nghttp2 defers even its empty DATA frame at a
  // zero window); watch_fits gives it write_timeout. Counted in
  // H2Conn::unwatched_. Under mu.
  bool unwatched = false;
  // loaded: bytes of its request body read whole (H2Body::load), counted
  // in H2Conn::loaded_ until its fiber ends (end_fiber). Under mu.
  std::size_t loaded = 0;
  // due: an unwatched body must be taken whole by then (the
  // writer stamps it when it first finds it waiting: watch_fits).
  Clock::time_point due{};

  std::string in;          // body bytes received, not yet read
  std::size_t in_off = 0;  // read up to here
  bool in_ended = false;   // END_STREAM received
  bool continue_sent = false;
  Event in_ev;             // in, in_ended or closed changed

  H2Out out;                // the response body not yet taken by the session
  Headers trailers;         // the response's, sent once out is all taken (read_body)
  // Their fields for the submit, pointing into `trailers` (whose elements
  // stay put when the vector is moved in): made by run_stream, so that
  // read_body, a C callback, allocates nothing.
  std::unique_ptr<H2Head> trailer_nv;
  bool submitted = false;   // the response was submitted
  bool response_sent = false;  // END_STREAM sent
  Event out_ev;             // out drained, or closed
  nghttp2_data_provider provider{};

  std::size_t slot = 0;     // its index in the connection's streams_
  bool closed = false;      // on_stream_close ran
  uint32_t close_error = 0;
  // charged: the stream has cost the client's reset budget (client_reset:
  // its RST_STREAM, a header list over max_head, or a reset for its
  // fault); reset_by_us: the server ended it for its own reasons (reset():
  // a timeout, a failure of ours), never charged.
  bool charged = false;
  bool reset_by_us = false;
  // in_cut: the stream closed with body bytes the handler had not read
  // (dropped): its reader must not take the rest for the body's end.
  bool in_cut = false;
  // A reset cancels the fiber while true: in the handler, and in a
  // streamed response's generator (respond), which may wait long for its
  // next piece.
  bool in_handler = false;
  Task<void> task;
  // Set before the fiber starts (the spawn orders it), the fiber's own
  // after: whether a body follows the head, and whether the fiber's end
  // was counted already (respond, for a response it need not watch).
  bool has_body = false;
  bool accounted = false;

  H2Stream(H2Conn& conn, int32_t sid) : c(conn), id(sid) { provider.source.ptr = this; }
};

void H2Conn::adopt_stream(std::shared_ptr<H2Stream> st) {
  st->slot = streams_.size();
  streams_.push_back(std::move(st));
}

std::shared_ptr<H2Stream> H2Conn::drop_stream(H2Stream& st) {
  assert(st.slot < streams_.size() && streams_[st.slot].get() == &st);
  std::shared_ptr<H2Stream> mine = std::move(streams_[st.slot]);
  if (st.slot + 1 != streams_.size()) {
    streams_[st.slot] = std::move(streams_.back());
    streams_[st.slot]->slot = st.slot;
  }
  streams_.pop_back();
  return mine;
}

bool H2Conn::out_pressure() const noexcept {
  std::size_t total = 0;
  for (const auto& st : streams_) {
    if (st->out_whole) continue;  // held by its handler anyway: pieces are what the budget bounds
    total += st->out.waiting();
    if (total > kConnOutHigh) return true;
  }
  return false;
}

bool H2Conn::end_fiber(H2Stream& st, Task<void>& own) {
  loaded_ -= std::exchange(st.loaded, 0);  // a fiber that never got past its handler (run_stream gives it back after)
  const bool last = --fibers_ == 0;
  if (last) set_quiet(Clock::now());
  own = std::move(st.task);
  st.in_handler = false;
  return last;
}

// H2Body: a stream's request body as the handler reads it (Request::
// read_body_some and co.).
class H2Body final : public BodySource {
 public:
  H2Body(H2Conn& c, H2Stream& st) : c_(c), st_(st) {
    const ServerOptions& o = c.env_.opt;
    // Only a body has a deadline (no clock read for a request without).
    if (st.has_body && o.body_timeout.count() > 0) deadline_ = spindle::detail::deadline_after(o.body_timeout);
  }
  std::size_t read_some(std::span<std::byte> out) override {
    const std::size_t n = read_piece(out);
    handed_ = handed_ || n > 0;
    return n;
  }
  void load(std::string& into, std::size_t limit) override;
  void load_first(std::string& into, std::size_t limit) override {
    first_ = true;
    load(into, limit);
  }
  std::size_t limit() const noexcept override { return c_.env_.opt.max_body; }
  // failed: what the latest read or load raised (errc{} if none).
  errc failed() const noexcept { return failed_; }
  // refused: the load failed for the connection's whole_body_budget (its
  // failed() is body_too_large). unprocessed: and nothing had acted on
  // the request yet: the load was the server's or the Router's, before
  // the handler (load_first), and no read of the handler's came before
  // it. A handler that loads after acting may have had side effects.
  bool refused() const noexcept { return refused_; }
  bool unprocessed() const noexcept { return refused_ && first_ && !handed_; }

 private:
  [[noreturn]] void fail(errc e, const char* what) {
    failed_ = e;
    throw Error(e, what);
  }
  std::size_t read_piece(std::span<std::byte> out);
  // charge: n more bytes of a body read whole, against the connection's
  // budget; past it, fails (refused_).
  void charge(std::size_t n);
  errc failed_{};
  bool refused_ = false;
  bool handed_ = false;
  bool first_ = false;
  H2Conn& c_;
  H2Stream& st_;
  Clock::time_point deadline_ = Clock::time_point::max();
};

std::size_t H2Body::read_piece(std::span<std::byte> out) {
  if (out.empty()) return 0;
  const ServerOptions& o = c_.env_.opt;
  for (;;) {
    {
      std::unique_lock lk(c_.mu_);
      if (st_.in_off < st_.in.size()) {
        const std::size_t n = std::min(out.size(), st_.in.size() - st_.in_off);
        std::memcpy(out.data(), st_.in.data() + st_.in_off, n);
        st_.in_off += n;
        if (st_.in_off == st_.in.size()) {
          st_.in.clear();
          st_.in_off = 0;
        }
        // The window opens by what the handler took: flow control follows
        // consumption (a slow reader stalls only its stream).
        if (!st_.closed) {
          nghttp2_session_consume(c_.s_, st_.id, n);
        }
        lk.unlock();
        c_.wake_.set();
        return n;
      }
      // Reset with bytes unread: they were dropped, so what follows is not
      // the body's end (a body read whole would come out short, and as if
      // complete).
      if (st_.in_cut) fail(errc::truncated, "spindle::http: HTTP/2 stream reset before its body was read");
      if (st_.in_ended) {
        // The body's end: its trailers came before END_STREAM (they carry
        // it), so they are whole; the fiber's Request takes them.
        if (st_.trailers_too_large) fail(errc::malformed_request, "spindle::http: HTTP/2 request trailers over max_head");
        if (!st_.in_trailers.empty()) st_.req.trailers = std::move(st_.in_trailers);
        return 0;
      }
      if (st_.closed) fail(errc::truncated, "spindle::http: HTTP/2 stream reset before its body's end");
      if (!st_.continue_sent) {
        // A client that asked for 100 Continue waits for it (or a while)
        // before its body: the first read is the moment it is wanted.
        st_.continue_sent = true;
        const auto expect = st_.req.headers.get("expect");
        if (expect && iequals(*expect, "100-continue")) {
          static const char status[] = ":status";
          static const char hundred[] = "100";
          nghttp2_nv nv{const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(status)),
                        const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(hundred)), 7, 3,
                        NGHTTP2_NV_FLAG_NONE};
          nghttp2_submit_headers(c_.s_, NGHTTP2_FLAG_NONE, st_.id, nullptr, &nv, 1, nullptr);
          lk.unlock();
          c_.wake_.set();
          lk.lock();
          continue;
        }
      }
      st_.in_ev.clear();
    }
    auto until = deadline_;
    if (o.read_timeout.count() > 0) until = std::min(until, spindle::detail::deadline_after(o.read_timeout));
    const bool woke = until == Clock::time_point::max() ? (st_.in_ev.wait(), true) : st_.in_ev.wait_until(until);
    if (!woke) {
      std::lock_guard lk(c_.mu_);
      if (st_.in_off < st_.in.size() || st_.in_ended || st_.closed) continue;
      fail(errc::timeout, "spindle::http: HTTP/2 request body timed out");
    }
  }
}

void H2Body::load(std::string& into, std::size_t limit) {
  // A body read whole has read_timeout in all, as over HTTP/1.1 (from the
  // request's start there; from the load's here, which follows the head at
  // once): body_timeout is for streamed bodies, and under it a client
  // dripping bytes held each stream's buffered body for 300 s.
  const ServerOptions& o = c_.env_.opt;
  if (o.read_timeout.count() > 0) deadline_ = std::min(deadline_, spindle::detail::deadline_after(o.read_timeout));
  if (const auto cl = st_.req.headers.get("content-length")) {
    std::uint64_t n = 0;
    const auto [p, ec] = std::from_chars(cl->data(), cl->data() + cl->size(), n);
    if (ec == std::errc{} && n > limit - std::min(limit, into.size()))
      fail(errc::body_too_large, "spindle::http: request body over max_body");
    // The whole declared body is charged before a byte is read: a stream
    // refused later, halfway, would have cost its client the bytes sent
    // (nghttp2 checks that DATA does not pass content-length).
    if (ec == std::errc{}) charge(into.size() + static_cast<std::size_t>(n));
  }
  std::byte buf[16 * 1024];
  for (;;) {
    const std::size_t n = read_piece(buf);
    if (n == 0) return;
    if (into.size() + n > limit) fail(errc::body_too_large, "spindle::http: request body over max_body");
    charge(into.size() + n);
    into.append(reinterpret_cast<const char*>(buf), n);
  }
}

// charge: the stream's body read whole is to hold `total` bytes. Under mu
// (end_fiber gives the charge back). A stream alone in loading is always
// let through (up to max_body, checked by load): the budget never stops
// a connection's only upload, and refusing rather than waiting keeps the
// streams from holding each other's windows (unread bytes of a stream
// that waited would hold the connection window its rivals need).
void H2Body::charge(std::size_t total) {
  std::lock_guard lk(c_.mu_);
  if (total <= st_.loaded) return;
  const std::size_t more = total - st_.loaded;
  const std::size_t others = c_.loaded_ - st_.loaded;
  if (others != 0 && (total > c_.h2_.whole_body_budget || others > c_.h2_.whole_body_budget - total)) {
    refused_ = true;
    fail(errc::body_too_large, "spindle::http: HTTP/2 request bodies read whole over the connection's whole_body_budget");
  }
  st_.loaded = total;
  c_.loaded_ += more;
}

H2Conn::H2Conn(Transport& t, const io::Endpoint& peer, H2Env env)
    : t_(t),
      peer_(peer),
      env_(std::move(env)),
      h2_(env_.opt.http2),
      releasable_(env_.release_after.count() > 0 && !t.is_tls()) {
  nghttp2_session_callbacks* cb = nullptr;
  nghttp2_option* op = nullptr;
  if (nghttp2_session_callbacks_new(&cb) != 0 || nghttp2_option_new(&op) != 0) {
    if (cb != nullptr) nghttp2_session_callbacks_del(cb);
    throw std::bad_alloc();
  }
  nghttp2_session_callbacks_set_on_begin_headers_callback(cb, Guarded<on_begin_headers>::call);
  nghttp2_session_callbacks_set_on_header_callback2(cb, Guarded<on_header>::call);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, Guarded<on_frame_recv>::call);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, Guarded<on_data_chunk>::call);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, Guarded<on_stream_close>::call);
  nghttp2_session_callbacks_set_on_frame_send_callback(cb, Guarded<on_frame_send>::call);
  nghttp2_option_set_no_auto_window_update(op, 1);
  // Closed streams are not kept: nghttp2 keeps up to max_concurrent_streams
  // of them for RFC 7540's priority tree (which RFC 9113 deprecates and
  // this server does not use), about 230 bytes each: 72.4 KiB per idle
  // connection that had served 100 streams, 38.0 without them (2,000
  // connections, MODE=h2 H2_STREAMS=100 bench/http/idle_conns.sh).
  nghttp2_option_set_no_closed_streams(op, 1);
  nghttp2_option_set_max_continuations(op, h2_.max_continuations);
  // A backstop only: client_reset answers first (ENHANCE_YOUR_CALM).
  // (Saturating: a burst past 2^63 wrapped to a small one.)
  const auto twice_plus_one = [](std::uint64_t v) { return detail::sat_add(detail::sat_add(v, v), std::uint64_t{1}); };
  nghttp2_option_set_stream_reset_rate_limit(op, twice_plus_one(h2_.reset_burst), twice_plus_one(h2_.reset_rate));
  nghttp2_option_set_max_settings(op, h2_.max_settings);
  nghttp2_option_set_max_outbound_ack(op, h2_.max_outbound_ack);
  nghttp2_mem mem = mem_.mem();  // copied by the session
  mem_.map_big(true);  // its frame buffer, made with it, on pages of its own (h2_mem.hpp)
  const int rv = nghttp2_session_server_new3(&s_, cb, this, op, &mem);
  mem_.map_big(false);
  nghttp2_option_del(op);
  nghttp2_session_callbacks_del(cb);
  if (rv != 0) throw std::bad_alloc();
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, h2_.max_concurrent_streams},
      // 2^31 - 1 at most (RFC 9113 6.5.2): past it nghttp2 refused the
      // whole SETTINGS frame, and every stream failed with PROTOCOL_ERROR.
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, std::min<uint32_t>(h2_.stream_window, 0x7fffffff)},
      {NGHTTP2_SETTINGS_MAX_FRAME_SIZE, std::clamp<uint32_t>(h2_.max_frame_size, 16384, 16777215)},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, detail::u32_limit(env_.opt.max_head)},
  };
  // Every value is in range above, so only memory can fail it; a session
  // without its SETTINGS would hold none of these limits.
  if (nghttp2_submit_settings(s_, NGHTTP2_FLAG_NONE, settings, std::size(settings)) != 0) {
    nghttp2_session_del(s_);  // no destructor runs for a constructor that throws
    throw std::bad_alloc();
  }
  if (h2_.connection_window > 65535) {
    nghttp2_session_set_local_window_size(s_, NGHTTP2_FLAG_NONE, 0,
                                          static_cast<int32_t>(std::min<uint32_t>(h2_.connection_window, 0x7fffffff)));
  }
  set_quiet(Clock::now());
  reset_tokens_ = static_cast<double>(h2_.reset_burst);
  reset_at_ = quiet_since_;
}

// client_reset: the client reset a stream of its own (under mu). Past the
// rate, the connection ends with GOAWAY ENHANCE_YOUR_CALM (RFC 9113 5.4.1:
// the session sends it and stops; Go, nginx and h2o answer rapid reset
// the same way). nghttp2's own limiter (a looser backstop) would answer
// INTERNAL_ERROR and keep the connection open behind its GOAWAY.
void H2Conn::client_reset() {
  const Clock::time_point now = Clock::now();
  const double refill = std::chrono::duration<double>(now - reset_at_).count() * static_cast<double>(h2_.reset_rate);
  reset_at_ = now;
  reset_tokens_ = std::min(static_cast<double>(h2_.reset_burst), reset_tokens_ + refill);
  if (reset_tokens_ >= 1) {
    reset_tokens_ -= 1;
    return;
  }
  nghttp2_session_terminate_session(s_, NGHTTP2_ENHANCE_YOUR_CALM);
  goaway_ = true;
  wake_.set();
}

H2Conn::~H2Conn() { nghttp2_session_del(s_); }

// reset: RST_STREAM st with `error` (under mu). The writer sends it.
void H2Conn::reset(H2Stream& st, uint32_t error) {
  st.reset_by_us = true;
  if (!st.closed) nghttp2_submit_rst_stream(s_, NGHTTP2_FLAG_NONE, st.id, error);
  wake_.set();
}

int H2Conn::on_begin_headers(nghttp2_session* s, const nghttp2_frame* f, void* self) {
  auto* c = static_cast<H2Conn*>(self);
  c->head_id_ = 0;  // until a stream of ours is made below
  c->head_st_ = nullptr;
  if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  if (c->goaway_ || c->client_goaway_) {
    // Not served: refused (the client may send it again elsewhere), which
    // also ends the checks of its fields (on_header).
    nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_REFUSED_STREAM);
    return 0;
  }
  // Fibers, not streams: a reset stream's fiber may still be unwinding,
  // and resets must not pile them up (rapid reset).
  if (c->fibers_ >= c->h2_.max_concurrent_streams) {
    nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_REFUSED_STREAM);
    return 0;
  }
  auto st = std::allocate_shared<H2Stream>(ThreadListAlloc<H2Stream>{}, *c, f->hd.stream_id);
  st->req.version = 20;
  st->req.remote = c->peer_;
  H2Stream* mine = st.get();
  c->adopt_stream(std::move(st));  // first: it may throw (no memory), and then nothing points at the stream
  nghttp2_session_set_stream_user_data(s, f->hd.stream_id, mine);
  c->head_id_ = f->hd.stream_id;
  c->head_st_ = mine;
  return 0;
}

// head_stream: stream `id`'s H2Stream, or null when it is not ours; the
// stream whose head is being received without a lookup in the session's
// map (which costs one hash search per call, and on_header is called per
// field).
H2Stream* H2Conn::head_stream(int32_t id) const {
  if (id != 0 && id == head_id_) return head_st_;
  return static_cast<H2Stream*>(nghttp2_session_get_stream_user_data(s_, id));
}

// A header list this many times max_head is a bomb (on_header).
constexpr std::size_t kBombFactor = 4;

int H2Conn::on_header(nghttp2_session*, const nghttp2_frame* f, nghttp2_rcbuf* name, nghttp2_rcbuf* value,
                      uint8_t, void* self) {
  auto* c = static_cast<H2Conn*>(self);
  H2Stream* st = c->head_stream(f->hd.stream_id);
  // A block no stream of ours takes (refused in on_begin_headers, its
  // RST_STREAM queued): nothing more of it is checked or handed over.
  // nghttp2 checks each field before this callback (its name's and value's
  // bytes, every time a dynamic-table entry is referenced); with
  // TEMPORAL_CALLBACK_FAILURE it only decodes the rest of the block (the
  // table must stay in step), and queues no second reset for a stream
  // already being reset.
  if (st == nullptr || f->hd.type != NGHTTP2_HEADERS) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  const nghttp2_vec n = nghttp2_rcbuf_get_buf(name);
  const nghttp2_vec v = nghttp2_rcbuf_get_buf(value);
  // As SETTINGS_MAX_HEADER_LIST_SIZE counts (RFC 9113 6.5.2), the head
  // and the trailers together. Past max_head nothing more is kept and the
  // request gets 431. Past kBombFactor times it the list is an HPACK bomb
  // (one 4 KB table entry referenced once per byte of the block: a 147 KB
  // block decodes to ~600 MB, and nghttp2's checks of those bytes took
  // ~350 ms of a core): the stream is reset now (ENHANCE_YOUR_CALM), and
  // the rest of its block only decoded.
  st->head_bytes += n.len + v.len + 32;
  if (st->head_bytes > c->env_.opt.max_head) {
    if (!st->over_head) {
      // A list over max_head is charged as a reset (client_reset's
      // budget): a bomb that stops short of kBombFactor still costs
      // nghttp2's checks of up to that much per stream from a few bytes
      // of references, and a client repeating it meets ENHANCE_YOUR_CALM
      // as rapid reset does. A conforming client's rare 431 never does.
      st->over_head = true;
      st->charged = true;
      const bool ending = c->goaway_;
      c->client_reset();
      if (!ending && c->goaway_) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // the connection ends
    }
    if (f->headers.cat == NGHTTP2_HCAT_REQUEST) {
      st->head_too_large = true;
    } else {
      st->trailers_too_large = true;  // none kept: a part would read as all
      st->in_trailers = Headers();
    }
    if (st->head_bytes / kBombFactor > c->env_.opt.max_head) {
      nghttp2_submit_rst_stream(c->s_, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_ENHANCE_YOUR_CALM);
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    return 0;
  }
  const std::string_view nm(reinterpret_cast<const char*>(n.base), n.len);
  const std::string_view val(reinterpret_cast<const char*>(v.base), v.len);
  if (f->headers.cat != NGHTTP2_HCAT_REQUEST) {
    // Trailers (nghttp2's HTTP checks reset a stream whose trailers hold a
    // pseudo-field or do not end it). Kept for the body's reader, who
    // hands them over.
    if (!st->trailers_too_large) st->in_trailers.add(nm, val);
    return 0;
  }
  if (!nm.empty() && nm[0] == ':') {
    if (nm == ":method") st->req.method = val;
    else if (nm == ":path") st->req.target = val;
    else if (nm == ":authority") st->authority = val;
    return 0;  // :scheme, :protocol: not kept
  }
  if (nm == "cookie") {
    // Cookie crumbs are one field again for the handler (RFC 9113 8.2.3),
    // appended here (joining into the field each time would copy it per
    // crumb) and added when the head is whole.
    if (!st->cookie.empty()) st->cookie += "; ";
    st->cookie += val;
    return 0;
  }
  st->req.headers.add(nm, val);
  return 0;
}

int H2Conn::on_frame_recv(nghttp2_session* s, const nghttp2_frame* f, void* self) {
  auto* c = static_cast<H2Conn*>(self);
  if (f->hd.type == NGHTTP2_GOAWAY) {
    c->client_goaway_ = true;  // its streams open now finish; no new one starts
    return 0;
  }
  if (f->hd.type == NGHTTP2_RST_STREAM) {
    // on_stream_close follows (the stream is still ours here).
    if (auto* st = static_cast<H2Stream*>(nghttp2_session_get_stream_user_data(s, f->hd.stream_id))) {
      st->charged = true;
      c->client_reset();
    }
    return 0;
  }
  if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) return 0;
  H2Stream* st = c->head_stream(f->hd.stream_id);
  if (st == nullptr) return 0;
  if ((f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
    st->in_ended = true;
    st->in_ev.set();
  }
  if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
    // A host field that names another authority than :authority: RFC 9113
    // 8.3.1 makes it malformed. Served, a handler (or a Router on Host)
    // would act for the host while a front that routed, checked or cached
    // by :authority saw the other: refused (RST_STREAM PROTOCOL_ERROR),
    // as a malformed request is, before any fiber starts.
    // So is an :authority with a userinfo ("user:pw@host", 8.3.1), which
    // nghttp2 lets through: as over HTTP/1.1 (server.cpp's origin_form),
    // a host is checked by its characters, and a host field with them
    // too when there is no :authority.
    const auto h = st->req.headers.get("host");
    if ((h && !st->authority.empty() && !iequals(*h, st->authority)) || !host_field_ok(st->authority) ||
        (h && !host_field_ok(*h))) {
      nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_PROTOCOL_ERROR);
      return 0;
    }
    // :path in origin-form ("/..."), or "*" for OPTIONS, as over HTTP/1.1
    // (server.cpp's origin_form). nghttp2 checks that only for :scheme
    // http and https: with any other :scheme, "admin/keys" came through,
    // which a Router splits into the segments of "/admin/keys" while a
    // guard on path().starts_with("/admin") saw no match (an attacker's
    // review). Refused as malformed, before any fiber starts; so is a '#'
    // (a fragment is never sent: origin_form's reason). CONNECT has no
    // :path (its target is set below).
    const std::string& target = st->req.target;
    const bool origin = target.starts_with('/') || (target == "*" && st->req.method == "OPTIONS");
    if (st->req.method != "CONNECT" && (!origin || target.find('#') != std::string::npos)) {
      nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_PROTOCOL_ERROR);
      return 0;
    }
    // CONNECT (nghttp2 requires its :authority and no :path): its target
    // is that authority, as over HTTP/1.1 (authority-form); it was "/",
    // which a handler could take for a request of its root.
    if (st->req.method == "CONNECT") st->req.target = st->authority;
    if (!st->req.headers.contains("host") && !st->authority.empty()) st->req.headers.add("host", st->authority);
    if (!st->cookie.empty()) st->req.headers.add("cookie", std::exchange(st->cookie, std::string()));
    c->add_fiber();
    // Never suspends (TaskGroup::spawn); the fiber waits for mu_ to see
    // the stream's first fields complete.
    st->in_handler = true;
    st->has_body = !st->in_ended;
    assert(c->streams_[st->slot].get() == st);
    st->task = c->group_->spawn([c, sp = c->streams_[st->slot]] { c->run_stream(sp); });
  }
  return 0;
}

int H2Conn::on_data_chunk(nghttp2_session* s, uint8_t, int32_t id, const uint8_t* data, size_t len, void*) {
  auto* st = static_cast<H2Stream*>(nghttp2_session_get_stream_user_data(s, id));
  if (st == nullptr) {
    // Not ours (refused, or after GOAWAY): its bytes never reach a reader,
    // so they are consumed now, or the connection window would shrink.
    nghttp2_session_consume(s, id, len);
    return 0;
  }
  st->in.append(reinterpret_cast<const char*>(data), len);  // bounded by the stream's window
  st->in_ev.set();
  return 0;
}

int H2Conn::on_stream_close(nghttp2_session* s, int32_t id, uint32_t error, void* self) {
  auto* c = static_cast<H2Conn*>(self);
  auto* found = static_cast<H2Stream*>(nghttp2_session_get_stream_user_data(s, id));
  if (found == nullptr) return 0;
  if (c->head_id_ == id) {  // head_st_ is about to go
    c->head_id_ = 0;
    c->head_st_ = nullptr;
  }
  H2Stream& st = *found;
  st.closed = true;
  st.close_error = error;
  // Reset with an error nobody charged: nghttp2 (or a check of ours, as
  // a host that differs from :authority) refused something the client
  // sent on it (a WINDOW_UPDATE of 0, DATA past its content-length). Each
  // such stream started a handler that is now cancelled, at whatever rate
  // the client sends them: the reset budget counts them as it counts the
  // client's own resets ("MadeYouReset", CVE-2025-8671).
  if (error != NGHTTP2_NO_ERROR && !st.charged && !st.reset_by_us) {
    st.charged = true;
    c->client_reset();
  }
  c->unwatched_done(st);  // what was not sent never will be
  // The client reset it (or the connection failed) while the handler ran:
  // nobody will read its answer (aiohttp and Go cancel too).
  if (st.in_handler) st.task.cancel();
  // Bytes the handler will never read give their connection window back.
  if (st.in.size() > st.in_off) {
    nghttp2_session_consume_connection(s, st.in.size() - st.in_off);
    st.in_cut = true;
  }
  st.in.clear();
  st.in_off = 0;
  nghttp2_session_set_stream_user_data(s, id, nullptr);
  st.in_ev.set();
  st.out_ev.set();
  // Dropped when this returns, after its last use here; the fiber keeps
  // its own reference.
  const std::shared_ptr<H2Stream> gone = c->drop_stream(st);
  return 0;
}

int H2Conn::on_frame_send(nghttp2_session* s, const nghttp2_frame* f, void* self) {
  auto* c = static_cast<H2Conn*>(self);
  if ((f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) || (f->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0)
    return 0;
  auto* st = static_cast<H2Stream*>(nghttp2_session_get_stream_user_data(s, f->hd.stream_id));
  if (st == nullptr) return 0;
  st->response_sent = true;
  // The response is whole and the request is not: the rest of its body is
  // not wanted (RFC 9113 8.1), and its bytes must not hold the window.
  if (!st->in_ended) c->reset(*st, NGHTTP2_NO_ERROR);
  st->out_ev.set();
  return 0;
}

ssize_t H2Conn::read_body(nghttp2_session* s, int32_t id, uint8_t* buf, size_t len, uint32_t* flags,
                          nghttp2_data_source* src, void* self) {
  auto* st = static_cast<H2Stream*>(src->ptr);
  const ssize_t n = st->out.take(buf, len, flags);
  if (n < 0) return n;
  auto* c = static_cast<H2Conn*>(self);
  c->unpromise(*st, static_cast<std::uint64_t>(n));
  if ((*flags & NGHTTP2_DATA_FLAG_EOF) != 0) c->unwatched_done(*st);
  // The body's end with trailers to send: this DATA frame leaves the
  // stream open, and the trailers' HEADERS frame (queued here, as
  // nghttp2 allows from this callback) ends it. A failed submit (no
  // memory) ends the stream here instead, without them.
  if ((*flags & NGHTTP2_DATA_FLAG_EOF) != 0 && st->trailer_nv != nullptr) {
    H2Head& nv = *st->trailer_nv;
    if (nv.size() > 0 && nghttp2_submit_trailer(s, id, nv.data(), nv.size()) == 0) *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    st->trailer_nv.reset();  // copied by the submit
    st->trailers = Headers();
  }
  st->out_ev.set();
  return n;
}

void H2Conn::unpromise(H2Stream& st, std::uint64_t n) noexcept {
  n = std::min(n, st.promised);
  st.promised -= n;
  promised_ -= n;
}

void H2Conn::unwatched_done(H2Stream& st) noexcept {
  unpromise(st, st.promised);
  if (st.unwatched) {
    st.unwatched = false;
    --unwatched_;
  }
}

// feed: bytes from the socket into the session. False: the session
// failed (a protocol error it answered with GOAWAY, a flood): stop reading.
bool H2Conn::feed(const void* p, std::size_t n) {
  ssize_t rv = 0;
  {
    std::lock_guard lk(mu_);
    // Read and dropped: no frame of them can be answered (writer_ended_).
    if (writer_ended_) return true;
    rv = nghttp2_session_mem_recv(s_, static_cast<const uint8_t*>(p), n);
    // Frames queued for a client that keeps sending and reads nothing.
    // max_outbound_ack bounds only SETTINGS and PING acks: before our
    // SETTINGS are acknowledged, nghttp2 refuses each stream past the
    // concurrency limit itself with a RST_STREAM (REFUSED_STREAM), which no
    // limit counts, so 10-byte HEADERS frames on fresh stream ids queued
    // ~15 times their size for as long as the client sent them (a probe
    // against libnghttp2 1.52: 13 MB in, 199 MB queued). A served
    // connection queues at most a few frames per stream (HEADERS,
    // trailers, RST_STREAM, WINDOW_UPDATE) beside its acks.
    if (rv >= 0 && nghttp2_session_get_outbound_queue_size(s_) > queue_cap()) rv = NGHTTP2_ERR_FLOODED;
    if (rv < 0) {
      // A flood or a protocol error nghttp2 stopped at: the client is
      // told why (GOAWAY) when the session can still say it; a client
      // that did not send the preface (not HTTP/2) gets nothing.
      const uint32_t why = rv == NGHTTP2_ERR_FLOODED || rv == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS
                               ? NGHTTP2_ENHANCE_YOUR_CALM
                               : NGHTTP2_PROTOCOL_ERROR;
      broken_ = rv == NGHTTP2_ERR_BAD_CLIENT_MAGIC ||
                (nghttp2_session_terminate_session(s_, why) != 0 && nghttp2_session_want_write(s_) == 0);
      goaway_ = true;
    }
  }
  wake_.set();
  return rv >= 0;
}

void H2Conn::reader(std::string preread) {
  struct Done {
    H2Conn& c;
    ~Done() {
      {
        std::lock_guard lk(c.mu_);
        c.reader_done_ = true;
      }
      c.wake_.set();
    }
  } done{*this};
  Pin pin(home_.load(std::memory_order_relaxed));  // with the writer
  bool released = false;
  [&] {
    if (!preread.empty() && !feed(preread.data(), preread.size())) return;
    preread = std::string();
    if (t_.is_tls()) {
      read_tls();
    } else {
      released = read_plain();
    }
  }();
  {
    std::lock_guard lk(mu_);
    reader_done_ = true;
  }
  wake_.set();
  // Released: the writer asked for it from its wait, so it is not stuck
  // in a write, and it ends by itself.
  if (released) return;
  // The writer may be blocked on a client that reads nothing (a flood
  // behind a full pipe: nghttp2 refused more, but the write waits out
  // write_timeout). It gets a moment to send what the session queued (its
  // GOAWAY); then the socket is shut both ways, which fails that write.
  // (The descriptor stays open until the connection's end: no reuse.)
  if (!writer_done_.wait_for(std::chrono::seconds(1))) ::shutdown(t_.tcp().native_handle(), SHUT_RDWR);
}

// read_tls: a TLS connection's reads, into a buffer of its own (a TLS
// read may wait inside, between filling parts of it).
void H2Conn::read_tls() {
  auto buf = std::make_unique<char[]>(kReadSize);
  // A TLS read may have waited inside: counted all the same (a yield with
  // nothing else to run costs next to nothing).
  for (unsigned reads = 1;; ++reads) {
    std::error_code ec;
    const std::size_t n = t_.read_some(buf.get(), kReadSize, ec);
    if (ec || n == 0) return;  // the client closed or reset: its streams are cancelled
    if (!feed(buf.get(), n)) return;
    if (reads % kReadsPerTurn == 0) yield();
  }
}

namespace {
// worker_read_buffer: the calling thread's read buffer for read_plain.
// Not inlined: a fiber must not keep a thread-local address across a
// wait (it may resume on another thread), so each call looks it up.
[[gnu::noinline]] char* worker_read_buffer() {
  thread_local std::unique_ptr<char[]> buf;
  if (!buf) buf = std::make_unique<char[]>(kReadSize);
  return buf.get();
}
}  // namespace

// read_plain: a plain connection's reads, into its thread's buffer: an
// idle connection keeps no read buffer of its own. Sharing it is safe
// because nothing suspends between the read that fills it and the feed
// that empties it (the session copies what it keeps, and its callbacks
// never suspend: spawn does not, and mu_ blocks the thread, not the
// fiber). The waits are idle waits, which the writer nudges to release
// the connection (release_asked_). True: released (the reader stops).
bool H2Conn::read_plain() {
  io::TcpStream& s = t_.tcp();
  unsigned in_a_row = 0;  // reads that found bytes since the last wait
  for (;;) {
    std::error_code ec;
    char* buf = worker_read_buffer();
    const std::ptrdiff_t n = io::detail::idle_read(s, buf, kReadSize, ec);
    if (n == 0) return false;  // the client closed or reset: its streams are cancelled
    if (n > 0) {
      if (!feed(buf, static_cast<std::size_t>(n))) return false;
      // After the feed: buf is free, and looked up again after the yield
      // (the fiber may resume on another thread).
      if (++in_a_row % kReadsPerTurn == 0) yield();
      continue;
    }
    in_a_row = 0;
    follow_consolidation();  // buf is not used again: the loop looks it up
    if (io::detail::idle_wait(s) != io::detail::IdleWake::nudged) continue;
    {
      // The writer nudges under mu_, so the nudge is whole when it is
      // cleared here, and none is left over for a later wait.
      std::lock_guard lk(mu_);
      io::detail::idle_nudge_done(s);
      if (release_asked_ && may_release()) {
        released_ = true;
        mem_.forget_big();  // may_release: its frame buffer holds nothing to send
        return true;
      }
      release_asked_ = false;  // bytes came first: the writer asks again later
    }
    wake_.set();
  }
}

// follow_consolidation: the reader, about to wait for bytes, moves the
// connection to the worker its worker consolidates its sockets to
// (runtime/src/placement.hpp, rule 5), as an unpinned reader's socket
// moves at its wait. The reader hops there (its socket follows at the
// wait: a pinned fiber's socket goes where it is pinned), and the writer
// follows when it wakes. Without it a connection stayed on the worker
// that accepted it for its whole life: at 2 workers on 2 cores beside
// h2load, a quarter of the runs kept half the connections on a second
// worker that had no core of its own (docs/decisions/0019-http2.md "Two
// workers").
void H2Conn::follow_consolidation() {
  const int h = home_.load(std::memory_order_relaxed);
  const int t = spindle::detail::consolidation_target_of(static_cast<unsigned>(h));
  if (t < 0 || t == h) [[likely]] return;
  {
    // Under mu_, so the writer, which clears its wake under mu_, either
    // sees the new home_ or clears before the wake below is set.
    std::lock_guard lk(mu_);
    home_.store(t, std::memory_order_relaxed);
  }
  spindle::detail::hop_to_worker(t);
  wake_.set();
}

// may_release: nothing of the connection is in flight (under mu_): no
// stream open or with a fiber, nothing for the session to send, no
// GOAWAY. The session itself (HPACK tables, settings, the last stream id)
// is kept for the next request.
bool H2Conn::may_release() const {
  return fibers_ == 0 && streams_.empty() && !goaway_ && !broken_ && nghttp2_session_want_write(s_) == 0;
}

// writer: the connection fiber's loop (file comment). Returns when the
// connection is done (ended): the client went, the session wants nothing
// more, or a GOAWAY (ours) has no stream left behind it; when a write
// failed or timed out, or a session call failed (cut: no linger); or when
// it was released (the reader agreed and stopped). From the pass that
// decides to end, no stream starts (writer_ended_).
H2Conn::WriterEnd H2Conn::writer() {
  std::string out;
  const ServerOptions& o = env_.opt;
  const auto idle = o.idle_timeout;
  // The worker the writer is pinned to (run()'s Pin; the reader may have
  // moved home_ already): it changes only by the hop below.
  int here = spindle::this_fiber::worker_index();
  for (;;) {
    // The reader moved the connection (follow_consolidation): go with it.
    if (const int h = home_.load(std::memory_order_relaxed); h != here) [[unlikely]] {
      spindle::detail::hop_to_worker(h);
      here = h;
    }
    bool end = false, more = false, released = false, recheck = false;
    // No timer while streams run: their ends wake the writer, and so does
    // shutdown (wake_h2). Idle, it sleeps until idle_timeout would pass,
    // or until it may release the connection.
    Clock::time_point until = Clock::time_point::max();
    out.clear();
    {
      std::lock_guard lk(mu_);
      const bool quiet = fibers_ == 0;
      const Clock::time_point now = quiet && (idle.count() > 0 || releasable_) ? Clock::now() : Clock::time_point{};
      if (!goaway_) {
        const bool stop = env_.stopping.load(std::memory_order_seq_cst);
        // reclaim_ is read (and cleared) whether quiet or not: a request
        // that came since the server picked it keeps it.
        const bool reclaimed = reclaim_.exchange(false, std::memory_order_relaxed) && quiet;
        const bool idled = (idle.count() > 0 && quiet && now - quiet_since_ >= idle) || reclaimed;
        if (stop || idled) {
          // Streams after the last one processed are not served; those
          // before it finish (graceful shutdown).
          nghttp2_submit_goaway(s_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(s_),
                                NGHTTP2_NO_ERROR, nullptr, 0);
          goaway_ = true;
        }
      }
      while (out.size() < kWriteBatch) {
        const uint8_t* data = nullptr;
        // A test's fault (test_hooks.hpp, h2_send; 0 in every build but
        // the test's): the call fails as it would out of memory.
        const int fault = SPINDLE_IO_TEST_POINT(h2_send, t_.tcp().native_handle());
        const ssize_t k = fault != 0 ? fault : nghttp2_session_mem_send(s_, &data);
        if (k < 0) {
          broken_ = true;
          break;
        }
        if (k == 0) break;
        out.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(k));
      }
      more = out.size() >= kWriteBatch;
      // Bodies sent with no fiber still wait: a window the client shrank
      // since, or a client that takes our batches slowly (watch_fits).
      // Every pass, not only when nothing more is to send: a client taking
      // each batch within write_timeout kept the writer's batches full,
      // and 100 bodies of 256 KiB went at its pace (~35 s at 700 KiB/s,
      // hours at 1 KB/s). O(streams) a batch of 64 KiB.
      if (unwatched_ > 0 && !broken_ && o.write_timeout.count() > 0) {
        Clock::time_point next = Clock::time_point::max();
        if (watch_fits(Clock::now(), next)) recheck = true;
        until = std::min(until, next);
      }
      const bool wants = nghttp2_session_want_read(s_) != 0 || nghttp2_session_want_write(s_) != 0;
      end = broken_ || (!more && (reader_done_ || !wants || (goaway_ && fibers_ == 0 &&
                                                               nghttp2_session_want_write(s_) == 0)));
      // From here no stream starts (writer_ended_): this pass's bytes are
      // the last, and its write may wait (a client that reads nothing).
      writer_ended_ = writer_ended_ || end;
      // Only the reader's agreement ends it released; a GOAWAY queued
      // since (shutdown) makes it a close.
      released = end && released_ && !goaway_;
      // Quiet for release_after: ask the reader to stop (it decides, under
      // mu_, whether a stream came first). A batch to write first is
      // written, then the loop looks again at once.
      if (releasable_ && !release_asked_ && quiet && !goaway_ && !end && streams_.empty()) {
        const Clock::time_point at = std::max(quiet_since_, revived_at_) + env_.release_after;
        if (now < at) {
          until = at;
        } else if (more || !out.empty()) {
          recheck = true;
        } else if (may_release()) {
          release_asked_ = true;
          // Under mu_ (a wake under the lock: the file's one, once per
          // idle period, never per request): the reader clears the nudge
          // under mu_, so it never clears one still being posted, and no
          // nudge is left over for a later wait (read_plain).
          io::detail::idle_nudge(t_.tcp());
        }
      }
      // Under mu_: a change after this sets it again. Not when the reader
      // moved the connection (home_ is stored under mu_): the wake it set
      // is for us to follow it, at the loop's top.
      if (!more && !end && home_.load(std::memory_order_relaxed) == here) {
        wake_.clear();
        // reclaim() stores its flag, then sets wake_ (under the Event's
        // lock, as clear() is): a set that this clear() erased came after
        // a store this load sees. Look again rather than sleep on it.
        if (!goaway_ && reclaim_.load(std::memory_order_relaxed)) recheck = true;
      }
      if (!goaway_ && idle.count() > 0 && quiet) until = std::min(until, quiet_since_ + idle);
    }
    // A test's pause (test_hooks.hpp, h2_writer_end): the last write held
    // back, as a client that reads nothing holds it.
    if (end) (void)SPINDLE_IO_TEST_POINT(h2_writer_end, t_.tcp().native_handle());
    if (!out.empty()) {
      try {
        auto write = [&] { t_.write_all(out); };
        if (o.write_timeout.count() > 0) {
          with_timeout(o.write_timeout, write);
        } else {
          write();
        }
      } catch (const TimedOut&) {
        return WriterEnd::cut;  // a client that does not read: the connection goes
      } catch (const std::system_error&) {
        return WriterEnd::cut;
      }
    }
    // A failed session (broken_) is cut, not ended: it can send nothing
    // more (no GOAWAY), so lingering for the client to take our last
    // bytes would only keep the streams' fibers, whose answers it can no
    // longer send, running until the linger's end (up to write_timeout).
    if (end) return broken_ ? WriterEnd::cut : released ? WriterEnd::released : WriterEnd::ended;
    if (more || recheck) continue;
    if (until == Clock::time_point::max()) {
      wake_.wait();
    } else {
      wake_.wait_until(until);
    }
    // Let the fibers made runnable with this wake run first (the streams
    // a read started, answering now): their responses then share one
    // socket write. Without it the writer ran first and wrote each
    // response alone: a send per response was most of the server's CPU
    // under h2load -m 10 (docs/decisions/0019-http2.md).
    yield();
  }
}

// watch_fits: whole bodies sent with no fiber to watch them (respond's
// `fits`) that still wait to be taken: they fitted the windows when
// answered, and only a client that shrank them since (a
// SETTINGS_INITIAL_WINDOW_SIZE of 0) holds them, watched by nothing but
// idle_timeout, which any live stream held off. Each gets write_timeout
// in all from when the writer first finds it waiting (the whole body's
// rule, await_close), then is reset. Under mu_. True when it reset one;
// `next`: the earliest deadline of the rest.
bool H2Conn::watch_fits(Clock::time_point now, Clock::time_point& next) {
  bool cut = false;
  for (const auto& sp : streams_) {
    H2Stream& st = *sp;
    if (!st.unwatched || st.closed || st.reset_by_us) continue;
    if (st.due == Clock::time_point{}) st.due = spindle::detail::time_after(now, env_.opt.write_timeout);
    if (now >= st.due) {
      reset(st, NGHTTP2_CANCEL);
      cut = true;
    } else {
      next = std::min(next, st.due);
    }
  }
  return cut;
}

H2Rest H2Conn::run(std::string_view preread, const std::function<void(H2Conn*)>& published, H2Upgrade* upgrade) {
  home_.store(spindle::this_fiber::worker_index(), std::memory_order_relaxed);
  Pin pin(home_.load(std::memory_order_relaxed));  // the writer (file comment); undone when run() returns
  {
    // A connection served again after a release starts its fibers afresh.
    std::lock_guard lk(mu_);
    reader_done_ = release_asked_ = released_ = writer_ended_ = false;
    revived_at_ = Clock::now();
    reclaim_.store(false, std::memory_order_relaxed);  // one for the last run, declined or late
  }
  writer_done_.clear();
  // group_ is cleared only once the group has waited for its children:
  // until then a reader already running (one that was mid-hop to home_
  // when the writer failed, say) may still feed a HEADERS frame, whose
  // callback spawns into the group (a cancelled group's spawn is a child
  // cancelled at birth). Cleared before that, it crashed the server.
  struct ClearGroup {
    TaskGroup*& mine;
    ~ClearGroup() { mine = nullptr; }
  } clear_group{group_};
  TaskGroup group;
  group_ = &group;
  struct Unpublish {
    const std::function<void(H2Conn*)>& f;
    TaskGroup& g;
    ~Unpublish() {
      g.cancel();  // the reader and every stream; the group's destructor waits
      f(nullptr);
    }
  } unpublish{published, group};
  published(this);
  if (upgrade != nullptr) {
    // The upgraded request is stream 1, half closed by the client (RFC
    // 7540 3.2): it runs as a stream that came whole, before any frame.
    std::lock_guard lk(mu_);
    const bool head = upgrade->req.method == "HEAD";
    if (nghttp2_session_upgrade2(s_, reinterpret_cast<const uint8_t*>(upgrade->settings.data()),
                                 upgrade->settings.size(), head ? 1 : 0, nullptr) != 0) {
      return {};
    }
    auto st = std::make_shared<H2Stream>(*this, 1);
    st->req = std::move(upgrade->req);
    st->req.version = 20;
    st->req.remote = peer_;
    st->in_ended = true;
    adopt_stream(st);  // first, as on_begin_headers: it may throw
    nghttp2_session_set_stream_user_data(s_, 1, st.get());
    add_fiber();
    st->in_handler = true;
    st->task = group.spawn([this, st] { run_stream(st); });
  }
  group.spawn([this, pre = std::string(preread)]() mutable { reader(std::move(pre)); });
  struct WriterDone {
    Event& e;
    ~WriterDone() { e.set(); }
  } writer_done{writer_done_};
  const WriterEnd how = writer();
  {
    // A write that failed returns without the flag (writer): from here
    // the reader only drains (feed).
    std::lock_guard lk(mu_);
    writer_ended_ = true;
  }
  if (how == WriterEnd::released) {
    std::lock_guard lk(mu_);
    return {true, std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - quiet_since_)};
  }
  // A graceful end: the client gets a clean close of the write side
  // (close_notify for TLS) after the GOAWAY, not a reset.
  try {
    with_timeout(std::chrono::milliseconds(100), [&] { t_.shutdown(); });
  } catch (const std::exception&) {
  }
  writer_done_.set();  // the reader, should it end under the linger, need not shut the socket (reader())
  if (how == WriterEnd::ended) linger();
  return {};
}

// linger: after a graceful end (our FIN sent), keeps the socket open, its
// reader still reading, while bytes we wrote have not all reached the
// client (SIOCOUTQ: not yet acknowledged): for at most write_timeout (the
// bound a client taking our bytes already has: a whole body's, await_close;
// none when it is 0, as for the writes), while the client takes some within
// each kLingerStall, and until the reader ends (the client closed). Not after
// a write that failed or timed out: that client takes nothing.
// Why: closed with unread input, or given input after its close, the
// kernel answers with a reset and drops what it still held of ours, so a
// client whose last frames (a SETTINGS ACK, a WINDOW_UPDATE, a PING)
// crossed our end lost the tail of its last response (a TSan run: 35 KB
// of a 100 KB body after a shutdown's GOAWAY; h2_server "a graceful end
// waits for the last response"). Bytes still queued when it gives up go
// all the same (a close with no unread input is a FIN after them); only
// the client's frames after that meet a reset. A connection whose bytes
// all arrived (every small response on loopback) does not wait at all.
// HTTP/1.1's linger (server.cpp) drains 200 ms after the response that
// ends a connection; nginx's lingering close lasts up to 30 s.
void H2Conn::linger() {
  const int fd = t_.tcp().native_handle();
  if (fd < 0) return;
  const auto wt = env_.opt.write_timeout;
  const Clock::time_point until = wt.count() > 0 ? spindle::detail::deadline_after(wt) : Clock::time_point::max();
  auto pause = std::chrono::milliseconds(1);
  int last = std::numeric_limits<int>::max();
  Clock::time_point moved = Clock::now();
  for (;;) {
    // A test's slow client (test_hooks.hpp, h2_linger): its count stands
    // for the kernel's.
    int queued = SPINDLE_IO_TEST_POINT(h2_linger, fd);
    if (queued <= 0 && (::ioctl(fd, SIOCOUTQ, &queued) != 0 || queued <= 0)) return;
    {
      std::lock_guard lk(mu_);
      if (reader_done_) return;
    }
    const Clock::time_point now = Clock::now();
    if (queued < last) {
      last = queued;
      moved = now;
    }
    if (now >= until || now - moved >= kLingerStall) return;
    // Polled: the kernel has no event for "acknowledged". From 1 ms up to
    // 50 ms apart, so a client that takes long costs few wakes.
    sleep_for(std::min<Clock::duration>(pause, until - now));
    pause = std::min(pause * 2, std::chrono::milliseconds(50));
  }
}

// goodbye: goodbye_h2 (h2_server.hpp).
void H2Conn::goodbye(int fd) noexcept {
  try {
    std::string out;
    {
      std::lock_guard lk(mu_);
      if (!goaway_) {
        nghttp2_submit_goaway(s_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(s_), NGHTTP2_NO_ERROR,
                              nullptr, 0);
        goaway_ = true;
      }
      while (out.size() < kWriteBatch) {
        const uint8_t* data = nullptr;
        const ssize_t k = nghttp2_session_mem_send(s_, &data);
        if (k <= 0) break;
        out.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(k));
      }
    }
    if (!out.empty()) (void)::send(fd, out.data(), out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  } catch (const std::bad_alloc&) {
  }
}

// run_stream: a stream's fiber. Never throws (a TaskGroup child's failure
// would cancel the connection): Cancelled (a reset, the connection's end)
// ends it quietly, as does any failure of the server's own.
void H2Conn::run_stream(const std::shared_ptr<H2Stream>& sp) {
  H2Stream& st = *sp;
  // Not pinned: a connection's streams may run on every worker (their
  // handlers may be long). Pinning them too measured no better at 2
  // workers (0.86x of h2o per CPU-second against 0.89x).
  struct Done {
    H2Conn& c;
    H2Stream& st;
    ~Done() {
      if (st.accounted) return;  // respond did it, under the lock it took anyway
      Task<void> own;  // dropped after mu_: the stream no longer holds this fiber (no cycle through it)
      bool last = false;
      {
        std::lock_guard lk(c.mu_);
        last = c.end_fiber(st, own);
      }
      // The writer counts fibers only to end a drained connection and
      // to start the idle clock: the last one is all it waits for.
      if (last) c.wake_.set();
    }
  } done{*this, st};
  const ServerOptions& o = env_.opt;
  try {
    // The callbacks completed st.req (and has_body) before this fiber was
    // spawned; from here the head is this fiber's.
    const bool has_body = st.has_body;
    H2Body body(*this, st);
    std::exception_ptr thrown;
    bool ran = false;
    // The handler's Response is built in `res` itself (each return below
    // is a prvalue: no move, no empty Response to assign over and destroy;
    // ~230 instructions of a hello request's 13,700).
    auto answer = [&]() -> Response {
      if (st.head_too_large) return Response::text_body(431, "request header fields too large\n");
      if (has_body) st.req.set_body_source(&body);
      if (has_body && !o.stream_bodies) {
        try {
          detail::load_body_first(st.req);  // whole, before the handler (bounded by max_body)
        } catch (const Error&) {
        }
      }
      if (body.failed() != errc{}) return Response();  // answered below
      ran = true;
      return call_handler(env_.handler, st.req, env_.opt, thrown);
    };
    // Whatever way this fiber leaves, the body goes (release_body); a
    // whole response body releases it sooner, in respond.
    struct Release {
      H2Conn& c;
      H2Stream& st;
      ~Release() { c.release_body(st); }
    } release{*this, st};
    Response res = answer();
    if (ran) env_.served.add();
    if (!st.head_too_large) {
      st.req.set_body_source(nullptr);
      // A failure of the body (the handler's reads, the Router's load) is
      // the answer, not the handler's error (as for HTTP/1.1).
      if (body.unprocessed()) {
        // The connection's budget for bodies read whole: unprocessed, so
        // the client may send it again (RFC 9113 8.7).
        std::lock_guard lk(mu_);
        st.in_handler = false;
        reset(st, NGHTTP2_REFUSED_STREAM);
        return;
      } else if (body.refused()) {
        res = Response::text_body(503, "request bodies of this connection over its budget; retry\n");
        res.headers.set("Retry-After", "1");
      } else if (body.failed() == errc::body_too_large) {
        res = Response::text_body(413, "request body too large\n");
      } else if (body.failed() == errc::malformed_request) {
        res = Response::text_body(431, "request header fields too large\n");  // its trailers (H2Body)
      } else if (body.failed() != errc{}) {
        std::lock_guard lk(mu_);
        st.in_handler = false;
        reset(st, NGHTTP2_CANCEL);  // timed out, or the client reset it
        return;
      } else if (thrown) {
        env_.report(st.req, thrown);
      }
    }
    respond(st, res);
  } catch (const Cancelled&) {
    // Reset by the client, or the connection ends: the fiber just ends.
    // The stream is reset in case it is still open (a no-op for a closed
    // one): no stream may be left without an answer, holding its place.
    std::lock_guard lk(mu_);
    reset(st, NGHTTP2_CANCEL);
  } catch (abi::__forced_unwind&) {
    throw;
  } catch (...) {
    // The server's own failure (no memory): this stream only.
    std::lock_guard lk(mu_);
    reset(st, NGHTTP2_INTERNAL_ERROR);
  }
}

// release_body: the request body read whole, and its charge against
// whole_body_budget, are given back. Not needed once nothing can see the
// request's body any more: on_error has been told (run_stream, respond's
// checks) and no generator of a streamed response (which may read
// st.req.body, as over HTTP/1.1) is left to run. Sooner than the fiber's
// end: a long response after a large upload held the budget against the
// connection's other uploads while no body was needed. st.loaded has no
// other writer than this fiber (charge, end_fiber), so it is read without
// mu_: a request with no body read whole takes no lock here.
void H2Conn::release_body(H2Stream& st) {
  std::string().swap(st.req.body);
  if (st.loaded != 0) {
    std::lock_guard lk(mu_);
    loaded_ -= std::exchange(st.loaded, 0);
  }
}

// respond: submits res's head and feeds its body, then waits for the
// stream's end (await_close) and logs it.
void H2Conn::respond(H2Stream& st, Response& res) {
  const ServerOptions& o = env_.opt;
  const bool head = st.req.method == "HEAD";
  auto fail = [&](const char* why) {
    env_.report(st.req, std::make_exception_ptr(std::logic_error(why)));
    res = Response::text_body(500, "internal server error\n");
  };
  if (res.upgrade) fail("spindle::http: Response::upgrade over HTTP/2 (a protocol switch HTTP/2 does not have)");
  if (res.status < 200 || res.status > 999) fail("spindle::http: a final status outside 200..999 over HTTP/2");
  // 204, 304: the head is the whole response, as over HTTP/1.1
  // (write_response), and no file is opened or taken for it.
  if (!body_allowed(res.status)) drop_body(res);
  // Nothing below tells on_error of this request but a generator's throw.
  if (!res.body_stream) release_body(st);
  std::optional<io::File> file;
  std::uint64_t file_size = 0;  // the bytes sent: the file's, or body_file_range's
  std::uint64_t file_offset = 0;
  if (!res.body_stream && (!res.body_file.empty() || res.body_opened)) {
    try {
      // Opened by the handler (file_body of an io::File): that file.
      file = res.body_opened ? detail::take_body_opened(res)
                             : io::File::open(res.body_file, io::OpenMode::read | io::OpenMode::regular);
      file_size = file->size();
      if (!detail::clip_to_range(res, file_offset, file_size)) {
        file.reset();
        res = Response::text_body(500, "internal server error\n");
      }
    } catch (const std::system_error&) {
      file.reset();
      res = Response::text_body(500, "internal server error\n");
    } catch (const std::invalid_argument&) {  // a path with a NUL byte
      file.reset();
      res = Response::text_body(500, "internal server error\n");
    }
  }
  const bool allowed = body_allowed(res.status);
  const bool streamed = allowed && static_cast<bool>(res.body_stream);
  const bool whole = allowed && !streamed && !file;
  // Trailers need a body's end to follow (an empty one will do).
  const bool trailing = allowed && !head && !res.trailers.empty();
  const bool data = allowed && !head && (streamed || (file && file_size > 0) || (whole && !res.body.empty()) || trailing);

  // The head, without the fields HTTP/2 forbids; Content-Length is the
  // server's (the handler's kept on 304). nghttp2 lowers the names (RFC
  // 9113 8.2) as it copies them. It points into res and the options,
  // which outlive the submit below.
  H2Head head_nv;
  head_nv.add_number(":status", static_cast<std::uint64_t>(res.status));
  bool has_date = false, has_server = false;
  for (const auto& [name, value] : res.headers) {
    if (!sendable_field(name, value, res.status == 304)) continue;
    has_date = has_date || iequals(name, "date");
    has_server = has_server || iequals(name, "server");
    head_nv.add(name, value);
  }
  if (allowed && (whole || file)) head_nv.add_number("content-length", file ? file_size : res.body.size());
  if (!o.minimal) {
    // A copy: env_.date() points at this thread's clock text, which the
    // submit below must not depend on (mu_ is taken between).
    if (!has_date && env_.date != nullptr) head_nv.add_static_copy("date", env_.date());
    if (!has_server && !o.server_name.empty()) head_nv.add_static("server", o.server_name);
  }
  // The trailers' fields, for read_body's submit at the body's end. They
  // point into res.trailers' elements, which the move into st.trailers
  // below leaves where they are (the vector's buffer changes hands).
  std::unique_ptr<H2Head> trailer_nv;
  if (trailing) {
    trailer_nv = std::make_unique<H2Head>();
    for (const auto& [name, value] : res.trailers)
      if (sendable_field(name, value)) trailer_nv->add(name, value);
  }
  bool fits = false;
  std::uint64_t whole_bytes = 0;
  Task<void> own;  // dropped after the lock (Done's rule)
  {
    std::lock_guard lk(mu_);
    st.in_handler = false;
    if (st.closed) return;  // reset meanwhile: nobody to answer
    if (data && whole) {
      st.out.data = std::move(res.body);
      st.out.ended = true;
      st.out_whole = true;
      whole_bytes = st.out.data.size();
    }
    if (trailing) {
      st.trailers = std::move(res.trailers);
      st.trailer_nv = std::move(trailer_nv);
    }
    // A whole body the client's windows already admit cannot stall on
    // flow control: the fiber need not watch it go (await_close). Only a
    // client that stops reading altogether could hold it, and the
    // writer's write_timeout ends that connection. The connection's
    // window is shared: a body fits in what earlier such bodies, not yet
    // sent, leave of it (promised_). Checked each against the whole
    // window, 99 bodies answered in one burst all fitted a window that
    // held one of them, and the rest waited with no fiber and no deadline
    // for a WINDOW_UPDATE the client never had to send.
    if (!data || whole) {
      const int32_t sw = nghttp2_session_get_remote_settings(s_, NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE);
      const auto cw = static_cast<std::uint64_t>(std::max(nghttp2_session_get_remote_window_size(s_), 0));
      fits = !data || (whole_bytes <= static_cast<std::uint64_t>(std::max<int32_t>(sw, 0)) &&
                       promised_ <= cw && whole_bytes <= cw - promised_);
      if (data && fits) {
        st.promised = whole_bytes;
        promised_ += whole_bytes;
        // Watched until taken to its end, an empty one too: counted by its
        // promise alone, a trailers-only answer (gRPC's error reply) to a
        // client whose window was 0 was held with no fiber and no deadline
        // for as long as any stream kept idle_timeout off.
        st.unwatched = true;
        ++unwatched_;
      }
    }
    st.provider.read_callback = Guarded<read_body>::call;
    // nghttp2 copies the fields here.
    if (nghttp2_submit_response(s_, st.id, head_nv.data(), head_nv.size(), data ? &st.provider : nullptr) != 0) {
      reset(st, NGHTTP2_INTERNAL_ERROR);
      return;
    }
    st.submitted = true;
    // The fiber ends right after a response it need not watch: its end is
    // counted here, saving Done a second turn of the lock.
    if (fits) {
      end_fiber(st, own);  // the wake below covers a last fiber's
      st.accounted = true;
    }
  }
  wake_.set();
  if (fits) {
    if (o.access_log) env_.log(st.req, res.status, whole_bytes);
    return;
  }
  // A generator's piece is made before there is room for it: its last
  // piece ("") then comes while the one before still waits, and the body's
  // last DATA frame carries END_STREAM. Made after, the end needs a frame
  // of its own, which nghttp2 holds back while the stream's window is shut
  // (a client that opened exactly the body's size waits for it). Under
  // out_pressure it is made after all: a stream that waits then holds no
  // piece beside the one it queued (10 clients of 100 streams that read
  // nothing: 28 MB of the server instead of 50). A file knows its end: its
  // piece is read once there is room for it.
  if (data && streamed) {
    for (;;) {
      bool pressed = false;
      {
        std::lock_guard lk(mu_);
        if (st.closed) return;
        pressed = out_pressure();
        // From here until the piece is made, a reset cancels this fiber
        // (on_stream_close), as it does a handler: a generator waiting for
        // its next event (server-sent events) ends with the stream, not at
        // its next piece. Set before await_room too: a cancel there is the
        // stream's end as well (the Cancelled ends the fiber quietly).
        st.in_handler = true;
      }
      if (pressed && await_room(st) == 0) {
        // Closed, or reset by us (write_timeout): the reset's close must
        // not cancel the fiber while it unwinds (the generator's captures
        // are destroyed then, and a destructor may wait).
        std::lock_guard lk(mu_);
        st.in_handler = false;
        return;
      }
      std::string piece;
      std::exception_ptr failed;
      try {
        piece = res.body_stream();
      } catch (const Cancelled&) {
        if (cancellation_requested()) throw;  // only its own: call_handler.hpp
        failed = std::current_exception();
      } catch (abi::__forced_unwind&) {
        throw;
      } catch (...) {
        failed = std::current_exception();
      }
      {
        std::lock_guard lk(mu_);
        st.in_handler = false;
      }
      if (failed) {
        // Its head is out: the client sees the stream reset (HTTP/1.1's
        // truncated body).
        env_.report(st.req, failed);
        std::lock_guard lk(mu_);
        reset(st, NGHTTP2_INTERNAL_ERROR);
        return;
      }
      if (piece.empty()) break;
      if (await_room(st) == 0 || !put_out(st, piece)) return;
    }
    // The generator has made its last piece: nothing reads the request's
    // body any more (release_body's rule). Its budget went back only at
    // the fiber's end before, after the client had taken the response:
    // a client that kept that window shut held it for write_timeout.
    release_body(st);
  } else if (data && file) {
    std::uint64_t left = file_size;
    std::uint64_t at = file_offset;
    std::string piece;
    while (left > 0) {
      const std::size_t most = await_room(st);
      if (most == 0) return;
      piece.resize(static_cast<std::size_t>(std::min<std::uint64_t>(left, most)));
      std::size_t n = 0;
      std::exception_ptr failed;
      try {
        n = file->pread(piece.data(), piece.size(), at);
        if (n == 0) throw std::runtime_error("spindle::http: file shrank while being sent");
      } catch (const TimedOut&) {
        throw;  // an enclosing deadline's, not the file's
      } catch (const std::exception&) {
        failed = std::current_exception();
      }
      if (failed) {
        // The file failed us (EIO, shrank): Content-Length cannot be met,
        // and on_error (or stderr) hears it, as of a failed generator
        // (HTTP/1.1's write_streamed does the same).
        env_.report(st.req, failed);
        std::lock_guard lk(mu_);
        reset(st, NGHTTP2_INTERNAL_ERROR);
        return;
      }
      piece.resize(n);
      left -= n;
      at += n;
      if (!put_out(st, piece)) return;
    }
  }
  if (data && !whole) {
    std::lock_guard lk(mu_);
    if (st.out.end() && !st.closed) nghttp2_session_resume_data(s_, st.id);
  }
  wake_.set();
  await_close(st);
  if (o.access_log) env_.log(st.req, res.status, st.out.sent);
}

// stalled: waits for st's response to make progress (the session took
// bytes of it, or it closed). False, after resetting the stream, when
// write_timeout passed with no progress (a client that keeps the window
// shut). The caller cleared out_ev under mu_ and read `sent0` there.
bool H2Conn::progressed(H2Stream& st, std::uint64_t sent0) {
  const auto wt = env_.opt.write_timeout;
  if (wt.count() <= 0) {
    st.out_ev.wait();
    return true;
  }
  if (st.out_ev.wait_for(wt)) return true;
  std::lock_guard lk(mu_);
  if (st.closed || st.out.sent != sent0) return true;
  // Our reset, not the client's: its close (on_stream_close, once the
  // writer sent it) must not cancel this fiber, which returns from here
  // to unwind (respond's wait before a generator's piece: the generator's
  // captures are destroyed then, and a destructor may wait). Cleared under
  // the reset's own lock: cleared by the caller after it, the writer could
  // close the stream in between and leave the cancel pending.
  st.in_handler = false;
  reset(st, NGHTTP2_CANCEL);
  return false;
}

// await_room: waits until st may queue one more piece of its body: fewer
// than kOutHigh of its bytes wait to be taken, or, while the connection is
// under out_pressure, none do. Returns the most a file's piece should hold
// (kOutHigh, or one frame under pressure); 0 when the stream closed or
// stalled (reset after write_timeout without progress).
std::size_t H2Conn::await_room(H2Stream& st) {
  for (;;) {
    std::uint64_t sent0 = 0;
    {
      std::lock_guard lk(mu_);
      if (st.closed) return 0;
      // A stream whose pieces were all taken always gets one more: it
      // never waits on other streams' windows (kConnOutHigh's comment).
      if (st.out.waiting() < kOutHigh) {
        const bool pressed = out_pressure();
        if (!pressed || st.out.waiting() == 0) return pressed ? kOutFrame : kOutHigh;
      }
      st.out_ev.clear();
      sent0 = st.out.sent;
    }
    if (!progressed(st, sent0)) return 0;
  }
}

// put_out: queues one piece of a streamed body for the session (after
// await_room). False: the stream closed meanwhile.
bool H2Conn::put_out(H2Stream& st, std::string_view piece) {
  {
    std::lock_guard lk(mu_);
    if (st.closed) return false;
    if (st.out.append(piece)) nghttp2_session_resume_data(s_, st.id);
  }
  wake_.set();
  return true;
}

// await_close: the response was submitted whole; waits until the stream
// closes (END_STREAM both ways, or a reset), resetting it if it makes no
// progress for write_timeout. A whole body has write_timeout in all, as
// over HTTP/1.1 (where it is one write): counted by progress, a client
// granting a byte of window now and then held each of its 100 streams'
// bodies (~100 MB a connection) for as long as it kept that up.
void H2Conn::await_close(H2Stream& st) {
  const auto wt = env_.opt.write_timeout;
  const Clock::time_point due = st.out_whole && wt.count() > 0 ? spindle::detail::deadline_after(wt) : Clock::time_point::max();
  for (;;) {
    std::uint64_t sent0 = 0;
    bool all_taken = false;
    {
      std::lock_guard lk(mu_);
      if (st.closed) return;
      st.out_ev.clear();
      sent0 = st.out.sent;
      all_taken = st.response_sent || st.reset_by_us;
    }
    bool moved = true;
    if (due != Clock::time_point::max() && !all_taken) {
      if (!st.out_ev.wait_until(due)) {
        std::lock_guard lk(mu_);
        if (!st.closed && !st.response_sent && !st.reset_by_us) {
          reset(st, NGHTTP2_CANCEL);
          moved = false;
        }
      }
    } else {
      moved = progressed(st, sent0);
    }
    if (!moved) {
      // Reset: the stream closes once the writer sends it.
      std::lock_guard lk(mu_);
      if (st.closed) return;
      st.out_ev.clear();
    }
  }
}

bool h2c_settings(std::string_view value, std::string& out) {
  out.clear();
  std::uint32_t acc = 0;
  int bits = 0;
  for (const char ch : value) {
    int v = -1;
    if (ch >= 'A' && ch <= 'Z') v = ch - 'A';
    else if (ch >= 'a' && ch <= 'z') v = ch - 'a' + 26;
    else if (ch >= '0' && ch <= '9') v = ch - '0' + 52;
    else if (ch == '-') v = 62;
    else if (ch == '_') v = 63;
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out.size() % 6 == 0 && out.size() <= 6 * 64;  // 6 bytes a setting; a few dozen at most
}

void H2Deleter::operator()(H2Conn* c) const noexcept { delete c; }

H2Owned make_h2(Transport& t, const io::Endpoint& peer, H2Env env) {
  try {
    return H2Owned(new H2Conn(t, peer, std::move(env)));
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}

H2Rest serve_h2(H2Conn& c, std::string_view preread, const std::function<void(H2Conn*)>& published,
                H2Upgrade* upgrade) {
  return c.run(preread, published, upgrade);
}

void wake_h2(H2Conn& c) noexcept { c.wake(); }

std::uint64_t h2_quiet_ms(const H2Conn& c) noexcept { return c.quiet_ms(); }

void reclaim_h2(H2Conn& c) noexcept { c.reclaim(); }

void goodbye_h2(H2Conn& c, int fd) noexcept { c.goodbye(fd); }

}  // namespace spindle::http::detail
