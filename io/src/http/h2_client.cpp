// h2_client.cpp: http::Client's HTTP/2 connections on libnghttp2
// (docs/decisions/0019-http2.md "Client", docs/http.md "HTTP/2").
//
// A connection runs as the server's does (h2_server.cpp): a writer fiber
// takes what the session has to send and writes it, a reader fiber feeds
// what the socket gives; one std::mutex (`mu_`) guards the session and
// every stream's fields, held for nghttp2 calls and field updates only,
// never across a wait. The requesting fibers are the streams' fibers:
// each submits its request, feeds a streamed body, waits for its head and
// reads its body, all through the stream's fields and two Events (set
// after the change they announce was made under mu_, cleared under mu_
// before the check that decides to wait).
//
// The connection ends when the server closes it, a GOAWAY came and its
// last stream is done, a session call fails, or h2_close; its streams then
// fail (errc::reset, or truncated mid-body), and the first of its fibers
// to end tells the pool (H2Ended), which lets it go. Its two fibers hold
// it alive while they run; the pool and the calls hold it too.
//
// What a server can make it hold: response bytes not yet read are bounded
// by the windows (updates follow the reader's reads), a head by
// ClientOptions::max_head (past it the stream is reset: malformed_response),
// control frames queued by nghttp2's max_outbound_ack, every queued frame
// by queue_cap (the reader: past it the server is taken for a flood). A
// PUSH_PROMISE ends the connection at its frame head (on_begin_frame).
//
// A connection stops taking new streams (usable() false: the pool dials
// another) after a GOAWAY, once its stream ids run out (retired_), and
// after a stream's wait ran out or was broken off (retired_: the server
// may be gone; a PING probes it, and no answer within probe_wait_ closes
// it). Its streams in flight finish on it; it ends when they are done.
#include "h2_client.hpp"

#include "h2_common.hpp"
#include "limits.hpp"

#include <nghttp2/nghttp2.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <vector>

#include <spindle/io/file.hpp>
#include <spindle/io/http/error.hpp>
#include <spindle/runtime/all.hpp>
#include <spindle/runtime/detail/deadline.hpp>
#include <spindle/sync/event.hpp>

namespace spindle::http::detail {

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::size_t kWriteBatch = 64 * 1024;
constexpr std::size_t kReadSize = 16 * 1024;
// The reader yields to its worker's other fibers every this many reads
// (128 KiB): a server that sends faster than the session parses would
// otherwise hold the worker, and every fiber queued on it, for as long as
// it kept sending (the server's reader does the same: h2_server.cpp).
constexpr unsigned kReadsPerTurn = 8;
constexpr std::size_t kOutHigh = 64 * 1024;        // upload bytes waiting per stream
constexpr std::int32_t kStreamWindow = 1 << 20;    // per response body, ahead of the reader
// All of a connection's bodies. Not a bound of its own: a server sends
// only on streams our callers opened (push is off), so what a connection
// holds is at most kStreamWindow per stream of ours, and a window of a few
// streams' worth let four callers that read slowly (or not yet) stall
// every other fiber sharing the connection (four open() bodies of 2 MiB
// with one byte read: a fifth fiber's small GET timed out). Go's
// transport opens 1 GiB for the connection for the same reason.
constexpr std::int32_t kConnWindow = 1 << 30;
// The window new connections open (h2_client_conn_window: tests shrink it
// to see what would fill the real one).
std::atomic<std::int32_t> g_conn_window{kConnWindow};
// Frames the session may hold unsent beyond four per stream before the
// server that keeps making more is taken for a flood (queue_cap): nghttp2's
// own bound on queued acks (max_outbound_ack, 1000 by default). What else
// the server's frames queue (a RST_STREAM, a WINDOW_UPDATE) is per stream
// of ours, except what nghttp2 answers without a bound of its own (one
// RST_STREAM per PUSH_PROMISE before our SETTINGS were acked: 6 million of
// them queued 894 MB while the server read nothing), which this catches.
constexpr std::size_t kQueueBase = 1000;
std::atomic<std::size_t> g_queue_base{kQueueBase};  // h2_client_queue_base (tests shrink it)
// The first stream id of later connections (h2_client_first_stream_id:
// tests start near 2^31 to see the ids run out).
std::atomic<std::int32_t> g_first_stream_id{1};
// How long a connection whose stream's wait ran out waits for its PING's
// answer when no read_timeout is set (with one: read_timeout).
constexpr std::chrono::milliseconds kProbeWait{10'000};
// That wait for later connections, in ms (h2_client_probe_wait: tests
// shrink it to see an unanswered PING close a connection).
std::atomic<std::int64_t> g_probe_wait_ms{kProbeWait.count()};
std::atomic<std::size_t> g_streams_alive{0};  // h2_client_streams_alive
constexpr int kMaxInterim = 5;  // 1xx heads per request, as HTTP/1.1's (client.cpp) and Go's client

// Fields HTTP/2 forbids in a request (RFC 9113 8.2.2), and those the
// client sets itself (Host is :authority).
bool dropped_field(std::string_view ln) {
  return ln == "connection" || ln == "keep-alive" || ln == "proxy-connection" || ln == "transfer-encoding" ||
         ln == "upgrade" || ln == "host" || ln == "content-length" || ln == "expect";
}

}  // namespace

struct H2ClientStream {
  H2ClientStream() noexcept { g_streams_alive.fetch_add(1, std::memory_order_relaxed); }
  ~H2ClientStream() { g_streams_alive.fetch_sub(1, std::memory_order_relaxed); }
  H2ClientStream(const H2ClientStream&) = delete;
  H2ClientStream& operator=(const H2ClientStream&) = delete;
  int32_t id = -1;
  // The response, as the callbacks build it.
  int cur_status = 0;
  Headers cur_headers;
  std::size_t head_bytes = 0;
  bool too_large = false;
  bool head_done = false;
  int interims = 0;             // 1xx heads so far
  bool too_many_interim = false;
  int status = 0;
  Headers headers;
  Headers trailers;        // after the body; bounded by max_head as the head
  std::size_t trailer_bytes = 0;
  std::string in;
  std::size_t in_off = 0;
  bool in_ended = false;
  H2Out out;  // the request body (whole or pieces) for the data source
  bool headers_sent = false;  // our HEADERS left: the server may have seen the request
  // The connection had answered a stream before this one was submitted:
  // if it dies now, the server went away under a working connection (an
  // idle timeout, a restart), not a request it cannot take.
  bool on_proven = false;
  // A wait of its call ran out (read_timeout) or was broken off
  // (total_timeout, a cancellation): reset() then probes the connection.
  bool waited_out = false;
  bool expect = false;     // the body waits for a 100 (await_continue)
  bool continued = false;  // a 100 Continue came (expect_continue)
  bool closed = false;
  uint32_t error = 0;
  bool conn_lost = false;     // closed because the connection ended
  // Why nghttp2 reset the stream, or ended the connection, for a frame of
  // the server's that broke the protocol (an invalid head, DATA past the
  // window or the content-length, bad HPACK, a PUSH_PROMISE): not the
  // server's reset or close, and no reason to send the request again.
  const char* protocol_error = nullptr;
  Event ev;                   // head, body, end, close, or upload progress
  nghttp2_data_provider provider{};
};

class H2ClientConn : public std::enable_shared_from_this<H2ClientConn> {
 public:
  H2ClientConn(Transport t, const ClientOptions& opt);
  ~H2ClientConn() {
    if (s_ != nullptr) nghttp2_session_del(s_);
  }
  void start();
  // on_ended: `ended` is told of the connection's end (before start()).
  void on_ended(H2Ended ended) noexcept { ended_ = std::move(ended); }
  // tell_ended: the reader's or the writer's end tells ended_, once (the
  // first to come; the other finds it empty). Holding no lock of ours.
  void tell_ended() noexcept {
    H2Ended f;
    {
      std::lock_guard lk(mu_);
      f.swap(ended_);
    }
    if (f) f(*this);
  }
  bool usable() const noexcept {
    std::lock_guard lk(mu_);
    return !goaway_ && !dead_ && !retired_;
  }
  void close() noexcept;

  std::mutex& mu() const noexcept { return mu_; }
  nghttp2_session* session() const noexcept { return s_; }
  bool dead() const noexcept { return dead_; }  // under mu_
  void wake() noexcept { wake_.set(); }
  // submit: under mu_. The stream id, or -1 when the connection takes no
  // new stream.
  int32_t submit(const std::shared_ptr<H2ClientStream>& st, std::vector<nghttp2_nv>& nva, bool body);
  // room: under mu_: a new stream would be opened at once, not queued
  // inside nghttp2 behind the server's SETTINGS_MAX_CONCURRENT_STREAMS
  // (or the connection takes none: submit then says so). slot_ev: set
  // when a stream leaves streams_ or the connection ends (cleared under
  // mu_ by a waiter before it checks room again).
  bool room() const noexcept {
    return goaway_ || dead_ || retired_ ||
           streams_.size() < nghttp2_session_get_remote_settings(s_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
  }
  Event& slot_ev() noexcept { return slot_ev_; }
  void forget(int32_t id) { streams_.erase(id); }  // under mu_
  void reset(H2ClientStream& st) {                 // under mu_
    if (!st.closed && st.id > 0 && !dead_) {
      if (st.waited_out) probe();
      nghttp2_submit_rst_stream(s_, NGHTTP2_FLAG_NONE, st.id, NGHTTP2_CANCEL);
      // A request nghttp2 still holds back (the server's
      // SETTINGS_MAX_CONCURRENT_STREAMS reached: no stream opened yet, its
      // HEADERS queued): the RST only marks it canceled, and its stream
      // closes (on_stream_close) when a slot frees and nghttp2 drops it,
      // which a server that holds its slots never lets happen: 10,000
      // such requests timed out kept 10,001 streams here (8 MiB). It goes
      // now, with the queued request's pointer to it: nghttp2 gives a
      // canceled request's stream no frame (nor its data source a call)
      // before closing it, and on_stream_close finds no id here.
      if (nghttp2_session_find_stream(s_, st.id) == nullptr) {
        nghttp2_session_set_stream_user_data(s_, st.id, nullptr);
        ++held_back_;  // its HEADERS stays queued (queue_cap)
        st.closed = true;
        streams_.erase(st.id);
        slot_ev_.set();
      }
    }
    wake_.set();
  }
  std::size_t max_head() const noexcept { return max_head_; }
  // remote_streams: the server's SETTINGS_MAX_CONCURRENT_STREAMS (under mu_).
  std::uint32_t remote_streams() const noexcept {
    return nghttp2_session_get_remote_settings(s_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
  }

 private:
  // probe: a stream's wait ran out: the server may be gone with the
  // connection still open (a black hole answers nothing, not even a PING).
  // The connection takes no new stream (the pool dials another, as Go's
  // transport does: golang/go#59690), and a PING asks whether the server
  // is there: no answer within probe_wait_ and it is closed (its streams
  // fail; a replayable request goes again). Answered, its streams go on
  // and it ends after them. Under mu_.
  void probe() {
    retired_ = true;
    slot_ev_.set();  // a caller waiting for a slot goes to a new connection
    if (probe_deadline_ || probed_) return;
    probed_ = true;
    if (nghttp2_submit_ping(s_, NGHTTP2_FLAG_NONE, nullptr) == 0)
      probe_deadline_ = spindle::detail::deadline_after(probe_wait_);
    wake_.set();
  }
  // queue_cap: the most frames the session may hold unsent after the
  // server's bytes were fed (reader): four per stream (HEADERS, RST_STREAM,
  // WINDOW_UPDATEs), counting requests nghttp2 still holds whose stream
  // reset() let go (held_back_), beside its acks (kQueueBase). Under mu_.
  std::size_t queue_cap() const noexcept {
    return g_queue_base.load(std::memory_order_relaxed) + 4 * (streams_.size() + held_back_);
  }

  static int on_header(nghttp2_session*, const nghttp2_frame* f, nghttp2_rcbuf* name, nghttp2_rcbuf* value,
                       uint8_t, void* self);
  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* f, void* self);
  static int on_frame_send(nghttp2_session*, const nghttp2_frame* f, void* self);
  static int on_data_chunk(nghttp2_session*, uint8_t, int32_t id, const uint8_t* data, size_t len, void* self);
  static int on_stream_close(nghttp2_session*, int32_t id, uint32_t error, void* self);
  static int on_invalid_frame(nghttp2_session*, const nghttp2_frame* f, int lib_error, void* self);
  static int on_begin_frame(nghttp2_session*, const nghttp2_frame_hd* hd, void* self);

  void reader();
  void writer();
  void end() noexcept;  // under mu_: fail every stream

  Transport t_;
  std::size_t max_head_;
  std::chrono::milliseconds write_timeout_;
  std::chrono::milliseconds probe_wait_;
  nghttp2_session* s_ = nullptr;
  mutable std::mutex mu_;
  // Guarded by mu_:
  std::unordered_map<int32_t, std::shared_ptr<H2ClientStream>> streams_;
  bool goaway_ = false;
  bool dead_ = false;
  bool reader_done_ = false;
  bool proven_ = false;  // a final response head came on this connection
  // No new stream (usable): its stream ids ran out (submit), or a
  // stream's wait ran out (probe). Ends once streams_ is empty (writer).
  bool retired_ = false;
  bool probed_ = false;  // probe()'s PING was sent (one per connection)
  // The probe's PING not yet answered: the writer closes the connection
  // at this time.
  std::optional<Clock::time_point> probe_deadline_;
  std::size_t held_back_ = 0;  // queue_cap
  bool push_seen_ = false;     // on_begin_frame failed the session for a PUSH_PROMISE
  // The protocol error nghttp2 ended the connection for (the GOAWAY it
  // sent, or mem_recv's failure); given to every stream end() fails.
  // last_invalid_: what the last invalid frame broke (on_invalid_frame),
  // the reason a GOAWAY that follows it names. Both static strings
  // (nghttp2_strerror, nghttp2_http2_strerror).
  const char* protocol_error_ = nullptr;
  const char* last_invalid_ = nullptr;
  // last_goaway_: the error code of a GOAWAY the writer sends by hand when
  // mem_recv failed fatally (the CONTINUATION cap, a flood): nghttp2
  // queues none for those errors, and the session, whose streams end()
  // let go, is not fed or drained again. kNoLastGoaway: none to send.
  static constexpr uint32_t kNoLastGoaway = 0xffffffffu;
  uint32_t last_goaway_ = kNoLastGoaway;
  Task<void> reader_task_, writer_task_;
  H2Ended ended_;  // guarded by mu_ once started (tell_ended)
  Event wake_;
  Event writer_done_;
  Event slot_ev_;
};

namespace {

ssize_t read_upload(nghttp2_session*, int32_t, uint8_t* buf, size_t len, uint32_t* flags, nghttp2_data_source* src,
                    void*) {
  auto* st = static_cast<H2ClientStream*>(src->ptr);
  const ssize_t n = st->out.take(buf, len, flags);
  if (n >= 0) st->ev.set();  // upload progress
  return n;
}

}  // namespace

H2ClientConn::H2ClientConn(Transport t, const ClientOptions& opt)
    : t_(std::move(t)),
      max_head_(opt.max_head),
      // A server that stops reading: each write has read_timeout (60 s
      // when none), then the connection and its streams fail.
      write_timeout_(opt.read_timeout.count() > 0 ? opt.read_timeout : std::chrono::milliseconds(60'000)),
      probe_wait_(opt.read_timeout.count() > 0 ? opt.read_timeout
                                                : std::chrono::milliseconds(g_probe_wait_ms.load(std::memory_order_relaxed))) {
  nghttp2_session_callbacks* cb = nullptr;
  nghttp2_option* op = nullptr;
  if (nghttp2_session_callbacks_new(&cb) != 0 || nghttp2_option_new(&op) != 0) {
    if (cb != nullptr) nghttp2_session_callbacks_del(cb);
    throw std::bad_alloc();
  }
  nghttp2_session_callbacks_set_on_header_callback2(cb, Guarded<on_header>::call);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cb, Guarded<on_frame_recv>::call);
  nghttp2_session_callbacks_set_on_frame_send_callback(cb, Guarded<on_frame_send>::call);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, Guarded<on_data_chunk>::call);
  nghttp2_session_callbacks_set_on_stream_close_callback(cb, Guarded<on_stream_close>::call);
  nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cb, Guarded<on_invalid_frame>::call);
  nghttp2_session_callbacks_set_on_begin_frame_callback(cb, Guarded<on_begin_frame>::call);
  nghttp2_option_set_no_auto_window_update(op, 1);
  const int rv = nghttp2_session_client_new2(&s_, cb, this, op);
  nghttp2_option_del(op);
  nghttp2_session_callbacks_del(cb);
  if (rv != 0) throw std::bad_alloc();
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, detail::u32_limit(max_head_)},
  };
  if (nghttp2_submit_settings(s_, NGHTTP2_FLAG_NONE, settings, std::size(settings)) != 0) {
    nghttp2_session_del(s_);  // (the destructor does not run for a constructor that throws)
    s_ = nullptr;
    throw std::bad_alloc();
  }
  nghttp2_session_set_local_window_size(s_, NGHTTP2_FLAG_NONE, 0, g_conn_window.load(std::memory_order_relaxed));
  if (const std::int32_t first = g_first_stream_id.load(std::memory_order_relaxed); first > 1)
    nghttp2_session_set_next_stream_id(s_, first);
}

void H2ClientConn::start() {
  // The fibers own a reference while they run (moved into the body, so it
  // goes when the body returns: no cycle through the Tasks kept here).
  auto self = shared_from_this();
  std::lock_guard lk(mu_);
  writer_task_ = spawn([self]() mutable {
    auto me = std::move(self);
    me->writer();
  });
  reader_task_ = spawn([self]() mutable {
    auto me = std::move(self);
    me->reader();
  });
}

void H2ClientConn::close() noexcept {
  std::lock_guard lk(mu_);
  end();
  reader_task_.cancel();
  writer_task_.cancel();
}

// end: the connection takes nothing more; every stream fails (under mu_).
void H2ClientConn::end() noexcept {
  dead_ = true;
  for (auto& [id, st] : streams_) {
    st->closed = true;
    st->conn_lost = true;
    if (st->protocol_error == nullptr) st->protocol_error = protocol_error_;
    st->ev.set();
  }
  streams_.clear();
  wake_.set();
  slot_ev_.set();
}

int32_t H2ClientConn::submit(const std::shared_ptr<H2ClientStream>& st, std::vector<nghttp2_nv>& nva, bool body) {
  if (goaway_ || dead_ || retired_) return -1;
  st->provider.source.ptr = st.get();
  st->provider.read_callback = Guarded<read_upload>::call;
  const int32_t id = nghttp2_submit_request(s_, nullptr, nva.data(), nva.size(), body ? &st->provider : nullptr, st.get());
  // Stream ids used up (this was the last, or none was left), or no
  // memory: the connection takes no new stream, so the caller's retry and
  // every later request dial a new one; kept, it failed them all, each
  // submit refused, until the origin went idle.
  if (id < 0 || nghttp2_session_get_next_stream_id(s_) > 0x7fffffffu) retired_ = true;
  if (id < 0) return -1;
  st->id = id;
  st->on_proven = proven_;
  streams_.emplace(id, st);
  wake_.set();
  return id;
}

int H2ClientConn::on_header(nghttp2_session* s, const nghttp2_frame* f, nghttp2_rcbuf* name, nghttp2_rcbuf* value,
                            uint8_t, void* self) {
  auto* c = static_cast<H2ClientConn*>(self);
  auto* st = static_cast<H2ClientStream*>(nghttp2_session_get_stream_user_data(s, f->hd.stream_id));
  // A stream no call reads, or one being reset: nothing more of its block
  // is checked or handed over. nghttp2 checks each field before this
  // callback, every time a table entry is referenced (an HPACK bomb: one
  // 4 KB entry, one byte per reference); with TEMPORAL_CALLBACK_FAILURE it
  // only decodes the rest of the block, and adds no second RST_STREAM to
  // a stream already being reset (h2_server.cpp on_header, the same).
  if (st == nullptr || st->too_large) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  const nghttp2_vec n = nghttp2_rcbuf_get_buf(name);
  const nghttp2_vec v = nghttp2_rcbuf_get_buf(value);
  if (st->head_done) {
    // Trailers (nghttp2 has checked they hold no pseudo-field): kept in
    // their own list, under the same bound as the head.
    st->trailer_bytes += n.len + v.len + 32;
    if (st->trailer_bytes > c->max_head_) {
      st->too_large = true;
      st->trailers = Headers();  // not kept: the call fails (read_some, done)
      nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_CANCEL);
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    st->trailers.add(std::string_view(reinterpret_cast<const char*>(n.base), n.len),
                     std::string_view(reinterpret_cast<const char*>(v.base), v.len));
    return 0;
  }
  st->head_bytes += n.len + v.len + 32;
  if (st->head_bytes > c->max_head_) {
    st->too_large = true;
    nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_CANCEL);
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  }
  const std::string_view nm(reinterpret_cast<const char*>(n.base), n.len);
  const std::string_view val(reinterpret_cast<const char*>(v.base), v.len);
  if (nm == ":status") {
    int code = 0;
    std::from_chars(val.data(), val.data() + val.size(), code);
    // nghttp2 checks for three digits only: 000-099 would reach the caller
    // as a final status (code testing `status < 400` takes it for
    // success). The stream is reset, as for a malformed field; HTTP/1.1
    // refuses the same (client.cpp status_below_100).
    if (code < 100) {
      st->protocol_error = "a :status below 100";
      nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_PROTOCOL_ERROR);
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    st->cur_status = code;
  } else if (nm.empty() || nm[0] != ':') {
    st->cur_headers.add(nm, val);
  }
  return 0;
}

int H2ClientConn::on_frame_recv(nghttp2_session* s, const nghttp2_frame* f, void* self) {
  auto* c = static_cast<H2ClientConn*>(self);
  if (f->hd.type == NGHTTP2_PING && (f->hd.flags & NGHTTP2_FLAG_ACK) != 0) {
    c->probe_deadline_.reset();  // the server is there (probe)
    return 0;
  }
  if (f->hd.type == NGHTTP2_GOAWAY) {
    // Streams past its last one are closed by nghttp2 with REFUSED_STREAM
    // (retried by the caller); the rest finish.
    c->goaway_ = true;
    c->wake_.set();
    c->slot_ev_.set();  // a caller waiting for a slot goes to a new connection
    return 0;
  }
  if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) return 0;
  auto* st = static_cast<H2ClientStream*>(nghttp2_session_get_stream_user_data(s, f->hd.stream_id));
  if (st == nullptr) return 0;
  if (f->hd.type == NGHTTP2_HEADERS && !st->head_done && !st->too_large) {
    if (st->cur_status >= 100 && st->cur_status < 200) {
      // An interim head (100 Continue, 103 Early Hints): the final one follows.
      if (st->cur_status == 100) st->continued = true;
      st->cur_status = 0;
      st->cur_headers = Headers();
      // Each one wakes the requesting fiber: a server sending them without
      // end would keep it busy until max_head (counted over all heads).
      if (++st->interims > kMaxInterim) {
        st->too_many_interim = true;
        st->too_large = true;  // nothing more of the stream is kept
        nghttp2_submit_rst_stream(s, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_CANCEL);  // the reader wakes the writer
      }
    } else {
      st->head_done = true;
      c->proven_ = true;
      st->status = st->cur_status;
      st->headers = std::move(st->cur_headers);
    }
  }
  if ((f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) st->in_ended = true;
  // A DATA frame's bytes woke the reader already (on_data_chunk); one that
  // carries none and does not end the stream is no progress, and a wake
  // for it would let a server that sends empty frames hold a body wait
  // (each wake restarted read_timeout) or an upload.
  if (f->hd.type == NGHTTP2_HEADERS || st->in_ended) st->ev.set();
  return 0;
}

int H2ClientConn::on_frame_send(nghttp2_session* s, const nghttp2_frame* f, void* self) {
  auto* c = static_cast<H2ClientConn*>(self);
  if (f->hd.type == NGHTTP2_GOAWAY) {
    // nghttp2 ends the connection for a frame of the server's (we send no
    // other GOAWAY).
    if (f->goaway.error_code != NGHTTP2_NO_ERROR && c->protocol_error_ == nullptr)
      c->protocol_error_ = c->last_invalid_ != nullptr ? c->last_invalid_ : nghttp2_http2_strerror(f->goaway.error_code);
    return 0;
  }
  auto* st = static_cast<H2ClientStream*>(nghttp2_session_get_stream_user_data(s, f->hd.stream_id));
  if (st == nullptr) return 0;
  if (f->hd.type == NGHTTP2_RST_STREAM) {
    // Ours are CANCEL (a call ended, a limit passed); any other code is
    // nghttp2's, for a frame of the server's on this stream.
    if (f->rst_stream.error_code != NGHTTP2_CANCEL && f->rst_stream.error_code != NGHTTP2_NO_ERROR &&
        st->protocol_error == nullptr) {
      st->protocol_error = nghttp2_http2_strerror(f->rst_stream.error_code);
    }
    return 0;
  }
  if (f->hd.type != NGHTTP2_HEADERS) return 0;
  st->headers_sent = true;
  if (st->expect) st->ev.set();  // await_continue's clock starts here (no wake otherwise)
  return 0;
}

// on_invalid_frame: nghttp2 found a frame of the server's invalid and will
// reset its stream or end the connection: the stream's call fails for it
// either way, and a GOAWAY that follows names it.
int H2ClientConn::on_invalid_frame(nghttp2_session* s, const nghttp2_frame* f, int lib_error, void* self) {
  auto* c = static_cast<H2ClientConn*>(self);
  c->last_invalid_ = nghttp2_strerror(lib_error);
  if (f->hd.stream_id != 0) {
    auto* st = static_cast<H2ClientStream*>(nghttp2_session_get_stream_user_data(s, f->hd.stream_id));
    if (st != nullptr && st->protocol_error == nullptr) st->protocol_error = c->last_invalid_;
  }
  return 0;
}

// on_begin_frame: a PUSH_PROMISE is a connection error at its frame head
// (RFC 9113 8.4: our SETTINGS_ENABLE_PUSH is 0), as Go's client has it.
// nghttp2 makes it one only once the server acked those SETTINGS; before,
// it answers each with a RST_STREAM that no bound of its counts, so a
// server that held its ack and read nothing grew this client without
// bound. The session fails here (mem_recv); the reader sends the GOAWAY.
int H2ClientConn::on_begin_frame(nghttp2_session*, const nghttp2_frame_hd* hd, void* self) {
  if (hd->type != NGHTTP2_PUSH_PROMISE) return 0;
  static_cast<H2ClientConn*>(self)->push_seen_ = true;
  return NGHTTP2_ERR_CALLBACK_FAILURE;
}

int H2ClientConn::on_data_chunk(nghttp2_session* s, uint8_t, int32_t id, const uint8_t* data, size_t len, void*) {
  auto* st = static_cast<H2ClientStream*>(nghttp2_session_get_stream_user_data(s, id));
  if (st == nullptr || st->closed) {
    nghttp2_session_consume(s, id, len);
    return 0;
  }
  st->in.append(reinterpret_cast<const char*>(data), len);  // bounded by the stream's window
  st->ev.set();
  return 0;
}

int H2ClientConn::on_stream_close(nghttp2_session* s, int32_t id, uint32_t error, void* self) {
  auto* c = static_cast<H2ClientConn*>(self);
  auto it = c->streams_.find(id);
  if (it == c->streams_.end()) return 0;
  H2ClientStream& st = *it->second;
  st.closed = true;
  st.error = error;
  // Unread bytes go back to the connection window: the caller may never
  // read them (a reset, a call dropped).
  if (st.in.size() > st.in_off && !st.in_ended) {
    nghttp2_session_consume_connection(s, st.in.size() - st.in_off);
    st.in.clear();
    st.in_off = 0;
  }
  nghttp2_session_set_stream_user_data(s, id, nullptr);
  st.ev.set();
  c->streams_.erase(it);
  c->slot_ev_.set();
  return 0;
}

void H2ClientConn::reader() {
  auto buf = std::make_unique<char[]>(kReadSize);
  struct Done {
    H2ClientConn& c;
    ~Done() {
      {
        std::lock_guard lk(c.mu_);
        c.reader_done_ = true;
        c.end();
      }
      c.tell_ended();  // a Cancelled's way out too
    }
  } done{*this};
  // The writer ended the connection (a PING unanswered, its last stream
  // done after a GOAWAY or a timeout, a failed write): its end cancels
  // this fiber, after writer_done_ was set. The socket is closed below
  // all the same (the tail's reason): before, the Cancelled skipped that,
  // and a connection given up on a black hole kept its descriptor, and
  // the server its end, until the pool next looked at the origin.
  bool writer_ended = false;
  try {
    for (unsigned reads = 1;; ++reads) {
      // Here, holding no lock. A read may have waited inside: counted all
      // the same (a yield with nothing else to run costs next to nothing).
      if (reads % kReadsPerTurn == 0) yield();
      std::error_code ec;
      const std::size_t n = t_.read_some(buf.get(), kReadSize, ec);
      if (ec || n == 0) break;
      std::lock_guard lk(mu_);
      // Ended (h2_close, the writer's end): the streams were let go, and the
      // session's pointers to them with them: it is not fed again.
      if (dead_) break;
      // What an earlier read's invalid frame broke does not name a GOAWAY
      // this read causes (bad HPACK ends the session without that callback).
      last_invalid_ = nullptr;
      ssize_t rv = nghttp2_session_mem_recv(s_, reinterpret_cast<const uint8_t*>(buf.get()), n);
      // Frames queued past queue_cap: the server makes more than it reads
      // (the writer sends what it can; what it cannot stays queued).
      if (rv >= 0 && nghttp2_session_get_outbound_queue_size(s_) > queue_cap()) rv = NGHTTP2_ERR_FLOODED;
      wake_.set();
      if (rv < 0) {
        // A flood, too many CONTINUATION frames or a PUSH_PROMISE: the
        // server's. (Bad HPACK and the other connection errors are not
        // fatal to the session: nghttp2 queues their GOAWAY itself and the
        // writer sends it.)
        if (protocol_error_ == nullptr)
          protocol_error_ = push_seen_ ? "a PUSH_PROMISE (push is disabled)" : nghttp2_strerror(static_cast<int>(rv));
        // RFC 9113 5.4.1: say why before closing.
        last_goaway_ = push_seen_ ? NGHTTP2_PROTOCOL_ERROR
                       : rv == NGHTTP2_ERR_FLOODED || rv == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS ? NGHTTP2_ENHANCE_YOUR_CALM
                                                                                             : NGHTTP2_INTERNAL_ERROR;
        break;
      }
    }
  } catch (const Cancelled&) {
    if (!writer_done_.is_set()) throw;  // h2_close, the run's end: the writer may still write
    writer_ended = true;
  }
  {
    std::lock_guard lk(mu_);
    reader_done_ = true;
    end();
  }
  // The pool lets it go now, not when its origin is next asked for (or
  // its idle sweep): before, a crawler's pool held every dead connection
  // (its session and buffers) of every origin it had met.
  tell_ended();
  if (writer_ended) {
    t_.close();  // neither fiber touches it again (never suspends)
    return;
  }
  // As the server's reader (h2_server.cpp): a writer blocked on a server
  // that reads nothing gets a moment, then the socket is shut under it,
  // which fails that write.
  bool writer_gone = writer_done_.wait_for(std::chrono::seconds(1));
  if (!writer_gone) {
    ::shutdown(t_.tcp().native_handle(), SHUT_RDWR);
    writer_gone = writer_done_.wait_for(std::chrono::seconds(1));
  }
  if (!writer_gone) return;  // the last reference closes it
  // Then the socket is closed here, with neither fiber left to touch it:
  // the pool lets go of a dead connection only when its origin is asked
  // for again (h2_take), and until then a server that broke the protocol
  // (a CONTINUATION flood) would go on writing into a window nobody reads
  // and the descriptor would stay taken. (A shutdown alone does not stop
  // a peer's writes on Linux; a close with unread bytes resets it.)
  t_.close();
}

void H2ClientConn::writer() {
  std::string out;
  struct Done {
    H2ClientConn& c;
    ~Done() {
      {
        std::lock_guard lk(c.mu_);
        c.end();
        c.reader_task_.cancel();
      }
      c.tell_ended();
    }
  } done{*this};
  struct WriterDone {
    Event& e;
    ~WriterDone() { e.set(); }
  } writer_done{writer_done_};
  for (;;) {
    bool end_now = false, more = false;
    std::optional<Clock::time_point> probe;
    out.clear();
    {
      std::lock_guard lk(mu_);
      while (!dead_ && out.size() < kWriteBatch) {  // dead: as the reader's check
        const uint8_t* data = nullptr;
        const ssize_t k = nghttp2_session_mem_send(s_, &data);
        if (k <= 0) {
          end_now = k < 0;
          break;
        }
        out.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(k));
      }
      if (dead_ && last_goaway_ != kNoLastGoaway) {
        // The session's frames written so far end on a frame boundary
        // (each mem_send result is whole frames, and a failed write ended
        // this fiber), so the GOAWAY follows them: 9 bytes of frame head
        // (length 8, type 7, no flags, stream 0), the last stream the
        // server opened (none: push is off) and the code.
        const uint32_t code = last_goaway_;
        last_goaway_ = kNoLastGoaway;
        const char frame[17] = {0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                static_cast<char>(code >> 24), static_cast<char>(code >> 16),
                                static_cast<char>(code >> 8), static_cast<char>(code)};
        out.append(frame, sizeof frame);
      }
      more = out.size() >= kWriteBatch;
      const bool wants = nghttp2_session_want_read(s_) != 0 || nghttp2_session_want_write(s_) != 0;
      // A probe's PING unanswered in time: the server is gone (probe).
      const bool silent = probe_deadline_ && Clock::now() >= *probe_deadline_;
      end_now = end_now || dead_ || silent ||
                (!more && (reader_done_ || !wants || ((goaway_ || retired_) && streams_.empty())));
      if (!more && !end_now) wake_.clear();
      probe = probe_deadline_;
    }
    if (!out.empty()) {
      try {
        auto write = [&] { t_.write_all(out); };
        if (write_timeout_.count() > 0) {
          with_timeout(write_timeout_, write);
        } else {
          write();
        }
      } catch (const TimedOut&) {
        return;
      } catch (const std::system_error&) {
        return;
      }
    }
    if (end_now) return;
    if (more) continue;
    if (probe) {
      wake_.wait_until(*probe);
    } else {
      wake_.wait();
    }
    yield();  // the requests made runnable with this wake go out in one write (h2_server.cpp)
  }
}

std::shared_ptr<H2ClientConn> h2_connect(Transport t, const ClientOptions& opt, H2Ended ended) {
  auto c = std::make_shared<H2ClientConn>(std::move(t), opt);
  c->on_ended(std::move(ended));
  return c;
}
void h2_start(H2ClientConn& c) { c.start(); }

bool h2_usable(const H2ClientConn& c) noexcept { return c.usable(); }
void h2_client_conn_window(std::int32_t bytes) noexcept {
  g_conn_window.store(bytes > 0 ? bytes : kConnWindow, std::memory_order_relaxed);
}
void h2_client_queue_base(std::size_t frames) noexcept {
  g_queue_base.store(frames > 0 ? frames : kQueueBase, std::memory_order_relaxed);
}
void h2_client_first_stream_id(std::int32_t id) noexcept {
  g_first_stream_id.store(id > 1 && id % 2 == 1 ? id : 1, std::memory_order_relaxed);
}
void h2_client_probe_wait(std::chrono::milliseconds wait) noexcept {
  g_probe_wait_ms.store(wait.count() > 0 ? wait.count() : kProbeWait.count(), std::memory_order_relaxed);
}
std::size_t h2_client_streams_alive() noexcept { return g_streams_alive.load(std::memory_order_relaxed); }
void h2_close(H2ClientConn& c) noexcept { c.close(); }

H2Call::H2Call(std::shared_ptr<H2ClientConn> c, std::shared_ptr<H2ClientStream> st, const Url& u,
               const ClientOptions& opt)
    : c_(std::move(c)), st_(std::move(st)), u_(u), opt_(opt) {}

H2Call::~H2Call() {
  std::lock_guard lk(c_->mu());
  H2ClientStream& st = *st_;
  // Body bytes the caller will never read give the connection's window
  // back, as read_some would have. on_stream_close does it only for a
  // stream that had not ended: one that ended (a body under max_body's
  // cap, an open() dropped after its head, a total_timeout mid-read)
  // kept its bytes charged for the connection's life, and five dropped
  // 900 KiB bodies shut the 4 MiB window: every later request on the
  // shared connection timed out, and the pool kept handing it out.
  if (const std::size_t unread = st.in.size() - st.in_off; unread > 0 && !c_->dead()) {
    if (st.closed) {
      nghttp2_session_consume_connection(c_->session(), unread);
    } else {
      nghttp2_session_consume(c_->session(), st.id, unread);
    }
    c_->wake();
  }
  st.in.clear();
  st.in_off = 0;
  if (!st.closed) c_->reset(st);
}

int H2Call::status() const noexcept { return st_->status; }
const Headers& H2Call::headers() const noexcept { return st_->headers; }
Headers H2Call::take_trailers() noexcept {
  std::lock_guard lk(c_->mu());
  return std::move(st_->trailers);
}
bool H2Call::done() const noexcept {
  std::lock_guard lk(c_->mu());
  // Not with trailers over max_head: the next read_some reports them.
  return st_->in_ended && !st_->too_large && st_->in_off == st_->in.size();
}
std::optional<std::uint64_t> H2Call::content_length() const noexcept {
  const auto v = st_->headers.get("content-length");
  if (!v) return std::nullopt;
  std::uint64_t n = 0;
  const auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
  if (ec != std::errc{} || p != v->data() + v->size()) return std::nullopt;
  return n;
}

namespace {

// mark_waited_out: a wait of st's call ran out (read_timeout) or was
// broken off (total_timeout cancels the calling fiber, as a caller's
// cancellation does): the stream's reset (~H2Call) then probes the
// connection (H2ClientConn::probe).
void mark_waited_out(H2ClientConn& c, H2ClientStream& st) noexcept {
  std::lock_guard lk(c.mu());
  st.waited_out = true;
}

// watched: runs `wait`, a wait on st.ev; one broken off by an exception
// marks st (mark_waited_out) on its way out.
template <class F>
auto watched(H2ClientConn& c, H2ClientStream& st, F&& wait) {
  try {
    return wait();
  } catch (...) {
    mark_waited_out(c, st);
    throw;
  }
}

// wait_ev: waits on st.ev (cleared by the caller under mu) for at most the
// read timeout. False when that passed with nothing (the caller marks st
// if that fails the call).
bool wait_ev(H2ClientConn& c, H2ClientStream& st, std::chrono::milliseconds limit) {
  return watched(c, st, [&] {
    if (limit.count() <= 0) {
      st.ev.wait();
      return true;
    }
    return st.ev.wait_for(limit);
  });
}

Error stream_error(const H2ClientStream& st, const Url& u, bool mid_body) {
  if (st.too_many_interim)
    return Error(errc::malformed_response, "more than " + std::to_string(kMaxInterim) + " 1xx responses (" + u.str() + ")");
  if (st.too_large)
    return Error(errc::malformed_response,
                 std::string(st.head_done ? "response trailers" : "response head") + " over max_head (" + u.str() + ")");
  if (st.protocol_error != nullptr)
    return Error(errc::malformed_response,
                 std::string("invalid HTTP/2 response: ") + st.protocol_error + " (" + u.str() + ")");
  if (mid_body) return Error(errc::truncated, "HTTP/2 stream ended before its body's end (" + u.str() + ")");
  std::string why = st.conn_lost ? "HTTP/2 connection closed" : "HTTP/2 stream reset by the server (error " +
                                                                    std::to_string(st.error) + ")";
  return Error(errc::reset, why + " before a response (" + u.str() + ")");
}

// body_refused: the server's final head says the rest of the request body
// is not wanted: a 3xx-5xx, or a response that ended the stream. A 2xx
// that leaves the stream open is a server that answers as it reads
// (streaming, or a head flushed before the body is read): the body goes
// on, as Go's client does (its rule: a status over 299 aborts the body's
// write; golang.org/issue/13444). HTTP/1.1 has the same rule
// (client.cpp await_continue). Under the connection's lock.
bool body_refused(const H2ClientStream& st) noexcept {
  return st.head_done && (st.status >= 300 || st.in_ended);
}

// await_continue: after a head sent with Expect: 100-continue (its data
// source deferring, nothing given to it yet), waits for the server's
// word. True: send the body (a 100 came, or nothing within
// expect_continue_timeout: a server that ignores Expect waits for the
// body, RFC 9110 10.1.1, or a final head that does not refuse it:
// body_refused). False: a final head that refuses it came first, or the
// stream closed; the caller sends nothing and waits for the head (or the
// failure) as usual. Interim heads other than 100 (103 Early Hints) do
// not count. The timeout runs from when the HEADERS left (nghttp2 holds a
// stream back while the server's SETTINGS_MAX_CONCURRENT_STREAMS is
// reached): a head not yet sent within read_timeout sends the body too,
// queued behind it.
bool await_continue(H2ClientConn& c, H2ClientStream& st, const ClientOptions& opt) {
  std::optional<Clock::time_point> deadline;
  for (;;) {
    {
      std::lock_guard lk(c.mu());
      if (st.closed || body_refused(st)) return false;
      if (st.continued || st.head_done) return true;
      if (st.headers_sent && !deadline) deadline = spindle::detail::deadline_after(opt.expect_continue_timeout);
      if (deadline && Clock::now() >= *deadline) return true;
      st.ev.clear();
    }
    if (deadline) {
      watched(c, st, [&] { return st.ev.wait_until(*deadline); });
    } else if (!wait_ev(c, st, opt.read_timeout)) {
      return true;
    }
  }
}

}  // namespace

std::unique_ptr<H2Call> H2Call::send(const std::shared_ptr<H2ClientConn>& c, std::string_view method, const Url& u,
                                     const RequestOptions& ro, const ClientOptions& opt, bool may_replay,
                                     bool& gen_called, bool& retry) {
  retry = false;
  // The head: pseudo-fields first (RFC 9113 8.3.1), then the caller's
  // fields lower-cased, without those HTTP/2 forbids.
  std::vector<std::string> keep;
  auto put = [&keep](std::string n, std::string v) {
    keep.push_back(std::move(n));
    keep.push_back(std::move(v));
  };
  const auto host = ro.headers.get("Host");
  put(":method", std::string(method));
  put(":scheme", u.https ? "https" : "http");
  put(":authority", host ? std::string(*host) : u.authority());
  put(":path", u.target);
  const auto ua = ro.headers.get("User-Agent");
  put("user-agent", ua ? std::string(*ua) : opt.user_agent);
  for (const auto& [n, v] : ro.headers) {
    std::string ln = lower(n);
    if (dropped_field(ln) || ln == "user-agent") continue;
    if (ln == "te" && !iequals(v, "trailers")) continue;
    put(std::move(ln), v);
  }
  if (u.has_userinfo && !ro.headers.contains("Authorization")) put("authorization", u.basic_auth());
  std::optional<io::File> file;
  std::uint64_t file_size = 0;
  if (!ro.body_file.empty()) {
    file = io::File::open(ro.body_file, io::OpenMode::read | io::OpenMode::regular);
    file_size = file->size();
    put("content-length", std::to_string(file_size));
  } else if (ro.body_generator) {
    if (ro.body_length) put("content-length", std::to_string(*ro.body_length));
  } else if (!ro.body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
    put("content-length", std::to_string(ro.body.size()));
  }
  const bool has_body = (file && file_size > 0) || static_cast<bool>(ro.body_generator) || !ro.body.empty();
  // Expect: 100-continue, asked for or set by hand (the caller's own field
  // is dropped above), as over HTTP/1.1 (client.cpp send): the body waits
  // for the server's 100 (RFC 9113 8.1, RFC 9110 10.1.1).
  const auto asked = ro.headers.get("Expect");
  const bool expect = (ro.expect_continue || (asked && iequals(*asked, "100-continue"))) && has_body;
  if (expect) put("expect", "100-continue");
  std::vector<nghttp2_nv> nva = to_nv(keep);

  auto st = std::make_shared<H2ClientStream>();
  // A stream past the server's SETTINGS_MAX_CONCURRENT_STREAMS waits here
  // for a slot, not inside nghttp2: a request queued there stays (its
  // copy, ~470 bytes) until a slot frees, even after its call timed out,
  // so a server that holds its slots grew the client without bound. The
  // wait is a wait for the server: read_timeout bounds it.
  std::optional<Clock::time_point> slot_deadline;
  for (;;) {
    {
      std::lock_guard lk(c->mu());
      if (c->room()) {
        if (!ro.body.empty() && !expect) {  // with expect: once the 100 came (below)
          st->out.data = ro.body;
          st->out.ended = true;
        }
        st->expect = expect;
        if (c->submit(st, nva, has_body) < 0) {
          retry = true;
          return nullptr;
        }
        break;
      }
      c->slot_ev().clear();
    }
    if (opt.read_timeout.count() <= 0) {
      c->slot_ev().wait();
      continue;
    }
    if (!slot_deadline) slot_deadline = spindle::detail::deadline_after(opt.read_timeout);
    if (!c->slot_ev().wait_until(*slot_deadline)) {
      bool none = false;
      {
        std::lock_guard lk(c->mu());
        none = c->remote_streams() == 0;
      }
      // A server whose SETTINGS allow no stream at all is told apart from
      // one whose streams are all taken.
      throw Error(errc::timeout, std::string("spindle::http: no HTTP/2 stream slot within read_timeout (") +
                                     (none ? "the server allows no stream: SETTINGS_MAX_CONCURRENT_STREAMS 0"
                                           : "the server's SETTINGS_MAX_CONCURRENT_STREAMS all in use") +
                                     ") for " + u.str());
    }
  }
  auto call = std::make_unique<H2Call>(c, st, u, opt);
  // With expect, no byte of the body is handed to the session (the data
  // source defers) until the 100 came or expect_continue_timeout passed
  // without an answer. A final answer first (the server refused from the
  // head), or the stream's end, and none is: a generator is not called, a
  // file not read; the stream stays half open on our side until the call
  // ends (~H2Call resets it, CANCEL), and the connection goes on.
  const bool send_body = !expect || await_continue(*c, *st, opt);
  // A streamed body, piece by piece as the windows allow; the server may
  // answer before it is all sent: a refusal (body_refused) stops it. A
  // server that answers 2xx and sends more than the stream's window before
  // it reads the body stalls it (the call returns once the body is sent):
  // read_timeout bounds that wait.
  // Progress is the body's bytes taken by the session: the deadline moves
  // only then, not at every wake (a server could drip response bytes,
  // each a wake, and never open the window for ours).
  auto put_out = [&](std::string piece) {
    std::optional<Clock::time_point> deadline;
    std::uint64_t sent0 = 0;
    for (;;) {
      {
        std::lock_guard lk(c->mu());
        if (st->closed || body_refused(*st)) return false;
        if (st->out.waiting() < kOutHigh) {
          if (st->out.append(piece)) nghttp2_session_resume_data(c->session(), st->id);
          c->wake();
          return true;
        }
        if (opt.read_timeout.count() > 0 && (!deadline || st->out.sent != sent0)) {
          deadline = spindle::detail::deadline_after(opt.read_timeout);
          sent0 = st->out.sent;
        }
        st->ev.clear();
      }
      if (!deadline) {
        watched(*c, *st, [&] { st->ev.wait(); });
      } else if (!watched(*c, *st, [&] { return st->ev.wait_until(*deadline); })) {
        std::lock_guard lk(c->mu());
        if (st->out.sent != sent0 || st->closed || body_refused(*st)) continue;
        st->waited_out = true;
        throw Error(errc::timeout, "sending the body of " + u.str() + ": no progress within " +
                                       std::to_string(opt.read_timeout.count()) + " ms (read_timeout)");
      }
    }
  };
  auto end_out = [&] {
    std::lock_guard lk(c->mu());
    if (st->out.end() && !st->closed) nghttp2_session_resume_data(c->session(), st->id);
    c->wake();
  };
  if (send_body && expect && !ro.body.empty()) {
    put_out(ro.body);
    end_out();
  } else if (send_body && ro.body_generator) {
    std::uint64_t sent = 0;
    for (;;) {
      gen_called = true;
      std::string piece = ro.body_generator();
      if (piece.empty()) break;
      if (ro.body_length && piece.size() > *ro.body_length - sent)
        throw std::length_error("spindle::http: body_generator yielded more than body_length");
      sent += piece.size();
      if (!put_out(std::move(piece))) break;
    }
    if (ro.body_length && sent != *ro.body_length) {
      std::lock_guard lk(c->mu());
      if (!st->closed && !body_refused(*st)) throw std::length_error("spindle::http: body_generator yielded less than body_length");
    }
    end_out();
  } else if (send_body && file && file_size > 0) {
    std::uint64_t left = file_size;
    std::string piece;
    while (left > 0) {
      piece.resize(static_cast<std::size_t>(std::min<std::uint64_t>(left, kOutHigh)));
      const std::size_t n = file->read(piece.data(), piece.size());
      if (n == 0) throw std::length_error("spindle::http: body_file shrank while being sent: " + ro.body_file.string());
      piece.resize(n);
      left -= n;
      if (!put_out(std::move(piece))) break;
      piece = std::string();
    }
    end_out();
  }
  // The final head.
  for (;;) {
    {
      std::lock_guard lk(c->mu());
      if (st->head_done) return call;
      if (st->closed) {
        // Refused before the server processed it (REFUSED_STREAM, or past
        // a GOAWAY's last stream), or the connection died before the
        // request left: safe to send again, whatever the method. A
        // connection that had answered before and died after the request
        // left (a GOAWAY that covered the stream included): the server may
        // have run it, so only a request that may run twice goes again
        // (HTTP/1.1's rule for a pooled connection closed before a
        // response: client.cpp replayable; Go's http2 Transport retries
        // the same way).
        if (!st->too_large && (st->error == NGHTTP2_REFUSED_STREAM || (st->conn_lost && !st->headers_sent) ||
                               (st->conn_lost && st->on_proven && may_replay && !gen_called &&
                                st->protocol_error == nullptr))) {
          retry = true;
          return nullptr;
        }
        throw stream_error(*st, u, false);
      }
      st->ev.clear();
    }
    if (!wait_ev(*c, *st, opt.read_timeout)) {
      mark_waited_out(*c, *st);
      throw Error(errc::timeout, "waiting for the response of " + u.str() + ": nothing within " +
                                     std::to_string(opt.read_timeout.count()) + " ms (read_timeout)");
    }
  }
}

std::size_t H2Call::read_some(std::byte* dst, std::size_t n) {
  if (n == 0) return 0;
  H2ClientStream& st = *st_;
  // read_timeout is time without progress: one deadline for this call,
  // which returns at the first byte; wakes that bring none (a window
  // update's, a trailer's) do not move it.
  std::optional<Clock::time_point> deadline;
  if (opt_.read_timeout.count() > 0) deadline = spindle::detail::deadline_after(opt_.read_timeout);
  for (;;) {
    {
      std::lock_guard lk(c_->mu());
      if (st.in_off < st.in.size()) {
        const std::size_t k = std::min(n, st.in.size() - st.in_off);
        std::memcpy(dst, st.in.data() + st.in_off, k);
        st.in_off += k;
        if (st.in_off == st.in.size()) {
          st.in.clear();
          st.in_off = 0;
        }
        if (!c_->dead()) {
          // The window opens by what the caller read (a closed stream's
          // bytes still hold the connection's).
          if (st.closed) {
            nghttp2_session_consume_connection(c_->session(), k);
          } else {
            nghttp2_session_consume(c_->session(), st.id, k);
          }
          c_->wake();
        }
        return k;
      }
      if (st.too_large) throw stream_error(st, u_, false);  // trailers over max_head (the head's are caught in send)
      if (st.in_ended) return 0;
      if (st.closed) throw stream_error(st, u_, true);
      st.ev.clear();
    }
    if (!deadline) {
      watched(*c_, st, [&] { st.ev.wait(); });
    } else if (!watched(*c_, st, [&] { return st.ev.wait_until(*deadline); })) {
      mark_waited_out(*c_, st);
      throw Error(errc::timeout, "reading the body of " + u_.str() + ": nothing within " +
                                     std::to_string(opt_.read_timeout.count()) + " ms (read_timeout)");
    }
  }
}

}  // namespace spindle::http::detail
