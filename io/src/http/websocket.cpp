// websocket.cpp: http::WebSocket on Beast's websocket::stream, synchronous
// API, over spindle's TcpStream (docs/http.md "WebSocket").
//
// Three pieces make Beast's stream fit spindle:
//
//  1. Layer, the NextLayer Beast reads and writes through. Beast's
//     websocket::stream<NextLayer> asks its next layer for an executor
//     (NextLayer::get_executor()) even when only the synchronous API is
//     used: its constructor builds a steady_timer (for async timeouts) and
//     registers with a service of the executor's execution_context. The
//     synchronous calls never touch either. TcpStream has no executor, and
//     should not grow one (it is not an Asio object), so Layer hands out the
//     executor of one process-wide io_context that is never run ("inert"):
//     it only gives the timer and the service a home. It is created on the
//     first WebSocket and deliberately never destroyed (a WebSocket may
//     outlive static destruction on a detached fiber); the timer service
//     opens three descriptors for it (epoll, eventfd, timerfd) once per
//     process.
//
//  2. Waiting outside Beast. Beast's stream state is not thread-safe and
//     its read path also writes (pongs, the close reply), so every call into
//     Beast runs under Impl::mu, a spindle Mutex. A receive() must not hold
//     it while waiting for the peer, or a sender would wait for the next
//     incoming message. So receive() calls Beast with Layer in "no wait"
//     mode: Layer serves Beast from Wire::in (bytes already read) and, when
//     that is empty, throws NeedInput instead of waiting. receive() catches
//     it, drops the lock, waits for bytes on the TcpStream into Wire::in, and
//     calls Beast again. This relies on a property of Beast 1.74's sync
//     read_some (websocket/impl/read.hpp): every read of the next layer
//     happens before any state change that depends on its result (nothing
//     is committed, consumed or unmasked for a read that did not return),
//     and a call that reads the next layer has delivered no payload bytes
//     yet. An exception from Layer::read_some then leaves Beast where it
//     was, and the message buffer (Impl::msg, a member) keeps what earlier
//     calls delivered; a receive() cancelled in its wait stays usable.
//     One more property is needed, and Beast lacks it: parse_fh
//     (stream_impl.hpp) writes the header it parses into rd_fh, fin
//     included, before it returns "need more bytes" for a control frame
//     whose payload is incomplete. Unwound there, the next read() would see
//     fin set with nothing left of the frame and end a fragmented message
//     early (a ping arriving split inside it). So Layer hands Beast a
//     control frame only when all of it is in Wire::in (Wire::deliverable,
//     a frame cursor over the bytes given to Beast): Beast may still see
//     part of one when its buffer has less room than the frame, but then
//     the rest is already in Wire::in and its next read gets it without
//     unwinding. An incomplete data-frame header is harmless (parse_fh
//     returns before writing fin) but the cursor needs whole headers to
//     follow the frames, so it waits for those too.
//
//  3. teardown(role, Layer&, ec), the customisation point Beast requires for
//     a user-defined next layer: after a close handshake (or a failure Beast
//     answers with a close frame), flush, shut down our write side and read
//     until the peer's end of stream, all of it within close_timeout (past
//     it the socket is shut down both ways). The descriptor itself is
//     closed by the WebSocket's destructor.
//
//  4. Writing outside the lock, too. A sender that held Impl::mu while
//     waiting for a full socket would block the receiver, and two peers
//     that both send while the other's receiver is blocked that way
//     deadlock (two chat clients do). So Layer::write_some only appends
//     Beast's frames to Wire::out, under mu, in Beast's order; they reach
//     the socket by Wire::flush outside mu, one flusher at a time
//     (Wire::flush_mu, FIFO). A sender flushes before it returns (so a
//     slow peer slows the sender: memory stays bounded by one message, and
//     by one 64 KiB fragment for a longer one: Impl::send_message); the
//     receiver flushes the pongs Beast wrote only if nobody else is
//     flushing (never waiting for its turn: it would block reading on a
//     peer that does not read). Before Beast waits for input in wait mode
//     (handshake, close) Layer flushes, since Beast expects an answer to
//     what it wrote. A flush that fails or is cancelled has lost frames:
//     the connection is broken (connection_lost from then on), and the
//     socket is shut down both ways so a receiver waiting for the peer
//     raises it too (Impl::end).
//
//  5. The heartbeat (WsOptions::heartbeat), a fiber per WebSocket
//     (Impl::heartbeat_loop). It must see the peer's bytes whether or not a
//     fiber is in receive(), without becoming a second reader of the
//     socket (it would wait for the receiver's read turn, StreamTurns in
//     tcp.hpp, and bytes it took would have to be handed to the receiver).
//     So it only counts: Wire::rx_bytes (what the reader took from the
//     socket, and when) plus the bytes the kernel holds unread (FIONREAD).
//     A change in that sum is the peer being alive. Silent for
//     `heartbeat`: it sends a ping the way a sender does
//     (appended under mu, then flushed, but never waiting for the flush
//     turn: a sender holding it sends the ping too, and the heartbeat does
//     not queue behind a write to a dead peer). Still silent heartbeat/2
//     later: lost. It cannot close the socket (another fiber may be inside
//     a call on it, and the descriptor is the destructor's), and it does
//     not know the receiver's fiber to cancel it; it shuts the socket down
//     both ways (::shutdown(SHUT_RDWR), which touches no TcpStream state),
//     which makes a blocked read return end of stream and a blocked write
//     fail: every waiter wakes, and state kLost tells them why. The
//     cheaper alternative, a deadline on the receiver's own wait, covers
//     only connections where someone receives; a send-only session would
//     have no keep-alive at all. The cost here is one parked fiber (and
//     its stack) per WebSocket with a heartbeat, woken about once per
//     period. close() and the destructor cancel and join it (shielded)
//     before anything it uses goes away; a ping it is writing is not cut
//     by that cancel (a cut frame would end the close handshake before it
//     began), so close() waits for it, within close_timeout and its
//     caller's deadline (past either it shuts the socket), and the
//     destructor shuts the socket first. Impl is on the heap, so moving a
//     WebSocket moves a pointer only. The sum has a blind spot of a few
//     instructions: the reader's read_some has taken bytes from the kernel
//     but not yet added them to rx_bytes. A pong that falls into it right
//     at the deadline would look missing, so a silent verdict is checked a
//     second time 1 ms later before it is final.
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>

#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/detail/utf8_checker.hpp>  // check_utf8: close()'s reason
#include <boost/beast/websocket/stream.hpp>

#include <spindle/io/asio_stream.hpp>
#include <spindle/io/http/error.hpp>
#include <spindle/io/http/websocket.hpp>
#include <spindle/io/tcp.hpp>
#include "transport.hpp"
#include "url.hpp"
#include <spindle/runtime/all.hpp>
#include <spindle/sync/event.hpp>
#include <spindle/sync/mutex.hpp>

namespace spindle::http {

namespace beast = boost::beast;
namespace bws = boost::beast::websocket;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;

namespace {

beast::string_view bsv(std::string_view s) noexcept { return {s.data(), s.size()}; }

net::io_context& inert_context() {
  static net::io_context* ctx = new net::io_context();  // never run, never destroyed (top of file)
  return *ctx;
}

// kKeptMessageBuffer: a message buffer above this is given back once its
// message was handed over (receive()).
constexpr std::size_t kKeptMessageBuffer = 64 * 1024;
// kIdleRead: receive()'s first read between messages, on the fiber's
// stack (receive()). A chat-sized message comes whole in it.
constexpr std::size_t kIdleRead = 1024;

// NeedInput: Layer found no buffered bytes in "no wait" mode.
struct NeedInput {};

// Wire: what Layer reads from and writes to. Owned by Impl (heap, never
// moves), so Layer keeps a plain pointer.
struct Wire {
  detail::Transport conn;   // TCP, or TLS over it (wss://)
  beast::flat_buffer in;    // bytes read from tcp, not yet given to Beast
  bool wait = true;         // false: Layer throws NeedInput instead of waiting
  // bad_close_code: the peer's close frame carried a code of 5000 or more,
  // which Beast 1.74 takes as valid and echoes; RFC 6455 7.4 defines none
  // there (Autobahn 7.9 expects a 1002). Set by the control callback,
  // under Impl::mu, before Beast writes its close reply: Layer::write_some
  // makes that reply's code 1002. Receiver side only, as `framing`.
  bool bad_close_code = false;

  // What the bytes given to Beast are (piece 2's last paragraph). head: a
  // client's handshake response, given up to the end of its head and no
  // further, so the frame cursor starts at the first frame; raw: past that
  // head during the handshake (only a refused handshake's body is read
  // then); frames: the WebSocket frame stream. Receiver side only (under
  // Impl::mu, or before the WebSocket is shared).
  enum class Framing { head, raw, frames };
  Framing framing = Framing::frames;
  std::uint64_t frame_left = 0;  // frames: bytes of the current frame not yet given
  // mid_message: frames: the last data frame given was not its message's
  // last (FIN clear), so a message has begun even if none of its payload
  // is held (empty frames): receive()'s message_timeout runs. Without it,
  // a peer sending an empty first frame and then empty continuations held
  // a message open for ever, each one looking like an idle session.
  bool mid_message = false;
  unsigned head_match = 0;       // head: how much of "\r\n\r\n" the given bytes end with
  // status_line: head: the response's first line as given to Beast (its
  // first 64 bytes), for a failed handshake's text: Beast (1.74) leaves
  // the response it was handed unfilled on every failure (a refusal, a
  // 101 with a wrong Sec-WebSocket-Accept), so its status read 200.
  std::string status_line;
  bool status_line_done = false;
  // raw_left: how much of a refused handshake's body Beast may still have.
  // Beast reads a refusal whole, up to its parser's 8 MB default: a server
  // that answered 403 with a body of that size made every connect() hold
  // it. Past this, the read fails (body_limit): the handshake fails at
  // once with the refusal's status, as it would have after the body.
  static constexpr std::size_t kRefusalBody = 64 * 1024;
  std::size_t raw_left = kRefusalBody;

  // deliverable: how many bytes at the front of `in` Beast may have now,
  // at most `room`; updates the cursor as if they were given.
  std::size_t deliverable(std::size_t room) {
    const auto* p = static_cast<const unsigned char*>(in.data().data());
    const std::size_t avail = std::min(in.size(), room);
    std::size_t n = 0;
    switch (framing) {
      case Framing::raw: {
        const std::size_t k = std::min(avail, raw_left);
        raw_left -= k;
        return k;
      }
      case Framing::head:
        while (n < avail) {
          const unsigned char c = p[n++];
          if (!status_line_done) {
            if (c == '\r' || c == '\n') {
              status_line_done = true;
            } else if (status_line.size() < 64) {
              status_line.push_back(static_cast<char>(c));
            }
          }
          head_match = c == "\r\n\r\n"[head_match] ? head_match + 1 : (c == '\r' ? 1 : 0);
          if (head_match == 4) {
            framing = Framing::raw;
            break;
          }
        }
        return n;
      case Framing::frames: break;
    }
    const std::size_t all = in.size();
    while (n < avail) {
      if (frame_left == 0) {
        // A frame starts at p + n: RFC 6455 5.2. Its header is 2 bytes, a
        // 2- or 8-byte extended length, and a 4-byte mask key if masked.
        if (all - n < 2) break;
        const unsigned len7 = p[n + 1] & 0x7f;
        const std::size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
        const std::size_t header = 2 + ext + ((p[n + 1] & 0x80) ? 4 : 0);
        if (all - n < header) break;
        std::uint64_t len = len7;
        if (ext != 0) {
          len = 0;
          for (std::size_t i = 0; i < ext; ++i) len = (len << 8) | p[n + 2 + i];
        }
        const bool control = (p[n] & 0x08) != 0;
        if (!control) mid_message = (p[n] & 0x80) == 0;
        // A control frame over 125 bytes is Beast's to reject: not waited for.
        if (control && len <= 125 && all - n < header + len) break;
        // Saturated: a length near 2^64 is Beast's to refuse (message_too_big).
        frame_left = len > UINT64_MAX - header ? UINT64_MAX : header + len;
      }
      const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(frame_left, avail - n));
      n += take;
      frame_left -= take;
    }
    return n;
  }
  std::chrono::milliseconds close_timeout{5'000};
  std::chrono::milliseconds send_timeout{0};  // WsOptions::send_timeout (write_chunk)

  // What was read from the socket (by receive(), by Beast in wait mode, by
  // teardown) and when the latest read was: the heartbeat's evidence that
  // the peer lives (piece 5 at the top). Written by the one reader after
  // each read; read by the heartbeat fiber. Not kept without a heartbeat
  // (track_rx, set once before the first read): nobody would look.
  bool track_rx = false;
  std::atomic<std::uint64_t> rx_bytes{0};
  std::atomic<std::int64_t> rx_at{0};  // steady_clock ticks since its epoch
  void note_rx(std::size_t n) noexcept {
    if (!track_rx) return;
    rx_bytes.fetch_add(n, std::memory_order_relaxed);
    rx_at.store(std::chrono::steady_clock::now().time_since_epoch().count(), std::memory_order_release);
  }

  // Frames Beast wrote, in order, not yet on the socket (piece 4 at the
  // top). out_mu is held for appends and swaps only, never across a wait.
  std::mutex out_mu;
  std::string out;
  Mutex flush_mu;  // one flusher at a time: frames leave in order
  // Senders that appended and have not yet taken the flush turn (flush).
  // Relaxed: out_mu orders what matters. A sender's increment (under mu)
  // precedes, in its own thread, the append it makes under out_mu; a
  // non-waiting flusher reads the count under out_mu before a swap, so if
  // it could take those frames it sees the count. A decrement is made
  // holding flush_mu (which a non-waiting flusher must take), or on
  // giving up the wait for it, where a stale count only defers pongs on a
  // connection that is broken from then on.
  std::atomic<int> sender_frames{0};
  // Flushes whose write failed or was cut (frames taken from `out` and
  // lost), counted by the flusher while it still holds flush_mu. A sender
  // reads it before its append (Impl::append) and again once its own
  // flush returns: a sender's frames may go out in another sender's
  // flush, and if that flush failed they are lost while this sender's own
  // turn finds `out` empty and returned success (it now raises). Relaxed:
  // the increment precedes that flusher's unlock, and the sender's second
  // read follows its own lock of flush_mu; its first read precedes its
  // append, which precedes (out_mu) any swap that takes its frames.
  std::atomic<std::uint64_t> flushes_failed{0};

  // Pongs in `out` (under out_mu; both reset when a flusher takes it).
  // The receiver answers each ping without waiting for the flush turn, so
  // while a sender is stuck on a peer that does not read, a peer that
  // floods pings would grow `out` by a pong per ping without bound (26 MB
  // of pings raised a server's RSS by 41 MB). Past kQueuedPongs queued, a
  // new pong replaces the last one when that is the tail of `out`: RFC
  // 6455 5.5.3 lets an endpoint answer only the most recent ping. Anything
  // else appended between them is a sender's, bounded by its own wait.
  static constexpr std::size_t kQueuedPongs = 16;
  std::size_t out_pongs = 0;
  std::size_t last_pong = std::string::npos;  // where the tail pong starts, if the tail is one

  // flush: writes `out` until it is empty. wait: wait for flush_mu;
  // otherwise return at once if another fiber flushes (it re-checks `out`
  // after it lets go, so nothing is stranded). Throws std::system_error
  // (reset, broken pipe) and Cancelled / TimedOut (then the frames taken
  // are lost: the caller marks the connection broken).
  //
  // sender: the caller is a sender that counted itself in sender_frames
  // before appending (Impl::append); it is uncounted once it holds the
  // turn (or gives up waiting for it). A flusher that does not wait (the
  // receiver's pongs, the heartbeat's ping) takes nothing while a counted
  // sender is yet to flush: that sender writes the pongs too, and a
  // sender's frames (a 64 KiB fragment) written by the receiver would
  // block it on a peer that does not read (piece 4's deadlock), or by the
  // heartbeat under its half-period deadline would find a slow peer lost.
  // The count rises before the sender's append (under out_mu) and is read
  // under out_mu before a swap, so no such swap takes a counted sender's
  // frames.
  void flush(bool wait_turn, bool sender = false) {
    bool yield = !wait_turn;
    for (;;) {
      if (wait_turn && sender) {
        try {
          flush_mu.lock();
        } catch (...) {
          sender_frames.fetch_sub(1, std::memory_order_relaxed);
          throw;
        }
        sender_frames.fetch_sub(1, std::memory_order_relaxed);
        sender = false;
      } else if (wait_turn) {
        flush_mu.lock();
      } else if (!flush_mu.try_lock()) {
        return;
      }
      std::unique_lock turn(flush_mu, std::adopt_lock);
      for (;;) {
        std::string chunk;
        {
          std::lock_guard lk(out_mu);
          if (out.empty()) break;
          if (yield && sender_frames.load(std::memory_order_relaxed) > 0) break;
          chunk.swap(out);
          out_pongs = 0;
          last_pong = std::string::npos;
        }
        try {
          write_chunk(chunk);
        } catch (...) {
          flushes_failed.fetch_add(1, std::memory_order_relaxed);  // before `turn` lets go
          // The chunk may be cut mid-frame, and its frames are lost
          // anyway: nothing may follow them. The peer would take the next
          // bytes for the cut frame's rest and read a frame header out of
          // a later frame's payload (unmasked from a server: a relayed
          // message's bytes). Shut the write side, still holding the turn:
          // every later write (a queued sender's, a pong) fails at once,
          // and its flusher counts it. The read side goes with the broken
          // state Impl::flush then sets (Impl::end), which wakes a
          // receiver; the close handshake's and teardown's flushes (Layer)
          // hold the reading turn, and teardown shuts both ways itself.
          ::shutdown(conn.tcp().native_handle(), SHUT_WR);
          throw;
        }
      }
      turn.unlock();
      std::lock_guard lk(out_mu);
      if (out.empty()) return;
      if (sender_frames.load(std::memory_order_relaxed) > 0) return;  // that sender flushes it
      wait_turn = false;
      yield = true;
    }
  }
  bool out_empty() {
    std::lock_guard lk(out_mu);
    return out.empty();
  }
  // write_chunk: all of it; with send_timeout, each write may wait that long
  // for the peer to take a byte (TimedOut: the caller marks the connection
  // broken, the chunk cut). Progress, not the whole: a 32 MiB message to a
  // slow reader still goes.
  void write_chunk(std::string_view chunk) {
    if (send_timeout.count() <= 0) {
      conn.write_all(chunk);
      return;
    }
    while (!chunk.empty()) {
      const std::size_t n =
          with_timeout(send_timeout, [&] { return conn.write_some(net::buffer(chunk.data(), chunk.size())); });
      chunk.remove_prefix(n);
    }
  }
};

class Layer {
 public:
  using executor_type = net::io_context::executor_type;

  explicit Layer(Wire* w) noexcept : w_(w) {}
  executor_type get_executor() noexcept { return inert_context().get_executor(); }
  Wire& wire() noexcept { return *w_; }

  template <class B>
  std::size_t read_some(const B& b, boost::system::error_code& ec) {
    for (;;) {
      const std::size_t n = w_->deliverable(net::buffer_size(b));
      if (n > 0) {
        net::buffer_copy(b, w_->in.data(), n);
        w_->in.consume(n);
        ec = {};
        return n;
      }
      if (w_->framing == Wire::Framing::raw && w_->raw_left == 0) {
        ec = bhttp::error::body_limit;  // Wire::kRefusalBody
        return 0;
      }
      if (!w_->wait) throw NeedInput{};
      // Beast waits for an answer to what it wrote (handshake, close).
      try {
        w_->flush(true);
      } catch (const std::system_error& e) {
        io::detail::ErrorCodeAdapter<boost::system::error_code>::assign(ec, e.code());
        return 0;
      }
      const std::size_t got = w_->conn.read_some(w_->in.prepare(16 * 1024), ec);
      if (!ec && got == 0) ec = net::error::eof;
      if (ec) return 0;
      w_->in.commit(got);
      w_->note_rx(got);
    }
  }
  template <class B>
  std::size_t read_some(const B& b) {
    boost::system::error_code ec;
    const std::size_t n = read_some(b, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }
  // write_some: appends to Wire::out (flushed after Beast returns). In
  // "no wait" mode (receive()) Beast writes only whole control replies,
  // one per call: a pong (first byte 0x8A: FIN and opcode 0xA) is counted,
  // and past Wire::kQueuedPongs replaces the pong at the tail. A sender's
  // writes (wait mode) are never looked into: a masked payload written
  // apart from its header may start with any byte.
  template <class B>
  std::size_t write_some(const B& b, boost::system::error_code& ec) {
    std::size_t n = 0;
    std::lock_guard lk(w_->out_mu);
    bool pong = false;
    if (!w_->wait) {
      for (auto it = net::buffer_sequence_begin(b); it != net::buffer_sequence_end(b); ++it) {
        const net::const_buffer x(*it);
        if (x.size() == 0) continue;
        pong = *static_cast<const unsigned char*>(x.data()) == 0x8A;
        break;
      }
    }
    if (pong && w_->out_pongs >= Wire::kQueuedPongs && w_->last_pong != std::string::npos) {
      w_->out.resize(w_->last_pong);  // the queued pong at the tail gives way to this one
      --w_->out_pongs;
    }
    const std::size_t at = w_->out.size();
    for (auto it = net::buffer_sequence_begin(b); it != net::buffer_sequence_end(b); ++it) {
      const net::const_buffer x(*it);
      w_->out.append(static_cast<const char*>(x.data()), x.size());
      n += x.size();
    }
    if (pong) ++w_->out_pongs;
    w_->last_pong = pong ? at : std::string::npos;
    if (!w_->wait && w_->bad_close_code) refuse_close_code(at);
    ec = {};
    return n;
  }
  template <class B>
  std::size_t write_some(const B& b) {
    boost::system::error_code ec;
    const std::size_t n = write_some(b, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }

 private:
  // refuse_close_code: the frame written at `at` of Wire::out, if it is
  // Beast's close reply (FIN and opcode 8, so first byte 0x88; Beast writes
  // a control frame whole), gets 1002 (protocol error) for its code: the
  // echo of a code no peer may send. A client's frame is masked: the code
  // is then written through the mask.
  void refuse_close_code(std::size_t at) {
    std::string& o = w_->out;
    if (o.size() - at < 4 || static_cast<unsigned char>(o[at]) != 0x88) return;
    const bool masked = (static_cast<unsigned char>(o[at + 1]) & 0x80) != 0;
    const std::size_t code_at = at + 2 + (masked ? 4 : 0);
    if (o.size() < code_at + 2 || (static_cast<unsigned char>(o[at + 1]) & 0x7f) < 2) return;
    const unsigned char m0 = masked ? static_cast<unsigned char>(o[at + 2]) : 0;
    const unsigned char m1 = masked ? static_cast<unsigned char>(o[at + 3]) : 0;
    o[code_at] = static_cast<char>(0x03 ^ m0);  // 1002 = 0x03ea
    o[code_at + 1] = static_cast<char>(0xea ^ m1);
    w_->bad_close_code = false;
  }

  Wire* w_;
};

// teardown: found by Beast through argument-dependent lookup (piece 3 at
// the top). Never fails: whatever happens, the socket ends closed.
// All of it within close_timeout: the flush waits for the flush turn,
// which a sender blocked on a peer that reads nothing may hold for ever,
// and a TLS shutdown writes too. Beast calls this from receive() under
// Impl::mu when a close frame or a frame it refuses arrives, and the
// heartbeat stands down then (closing) or waits for mu, so nothing else
// would end the connection. Past the limit the socket is shut down both
// ways, as the heartbeat's verdict does: that sender's write fails at
// once (connection_lost).
void teardown(beast::role_type, Layer& layer, boost::system::error_code& ec) {
  ec = {};
  Wire& w = layer.wire();
  w.in.consume(w.in.size());
  bool ended = false;  // the peer's end of stream came in time
  try {
    with_timeout(w.close_timeout, [&] {
      w.flush(true);  // the close frame
      w.conn.shutdown();
      char sink[4096];
      for (;;) {
        std::error_code e;
        const std::size_t n = w.conn.read_some(net::buffer(sink), e);
        if (e || n == 0) break;
        w.note_rx(n);
      }
      ended = true;
    });
  } catch (const TimedOut&) {
  } catch (const std::system_error&) {
  } catch (const Cancelled&) {
    // The reading fiber's cancel: the handshake's end is cut short as at
    // close_timeout, and Beast is let finish its close (status closed,
    // receive() returns the peer's close). The fiber's cancel mark stays,
    // so its next wait raises it. Escaping here, it left Beast mid-close
    // and the WebSocket open: a later close() wrote a second close frame
    // (Beast asserts against it) and a receive() read past the peer's.
  }
  if (!ended) ::shutdown(w.conn.tcp().native_handle(), SHUT_RDWR);
  // Not closed here: Impl::end says why.
}

// async_teardown: declared for Beast's overload resolution only; the async
// API is never instantiated.
template <class Handler>
void async_teardown(beast::role_type, Layer&, Handler&&) = delete;

// check_handshake_fields: WsOptions::headers, checked as the Client checks
// its fields (url.cpp: names RFC 9110 tokens, values without CR, LF, NUL),
// and none of the fields the opening handshake itself is made of: a second
// Upgrade, Connection, Sec-WebSocket-Key or Sec-WebSocket-Version would
// make the server read another handshake than Beast checks the answer to,
// and a Content-Length or Transfer-Encoding on the upgrade GET would make
// it read our first frames as a request body (smuggling). A Host is
// allowed: it replaces the URL's, as with the Client. Throws
// std::invalid_argument naming the field (never its value).
void check_handshake_fields(const Headers& headers) {
  constexpr std::string_view kWho = "spindle::http::WebSocket";
  detail::check_header_fields(headers, kWho);
  for (const auto& field : headers) {
    for (std::string_view owned : {"Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version",
                                   "Content-Length", "Transfer-Encoding"}) {
      if (iequals(field.first, owned))
        throw std::invalid_argument(std::string(kWho) + ": " + field.first +
                                    " is the handshake's own field (WsOptions::headers)");
    }
  }
}

// parse_ws_url: url.hpp's parser with ws:// and wss:// (the same rules as
// the Client's URLs); its http::Error becomes WsError(invalid_url), whose
// text, like the parser's, never shows the userinfo.
detail::Url parse_ws_url(std::string_view url) {
  try {
    return detail::parse_url(url, detail::UrlKind::websocket);
  } catch (const Error& e) {
    throw WsError(ws_errc::invalid_url, std::string("spindle::http::WebSocket: ") + e.what());
  }
}

#if SPINDLE_HAVE_TLS
// client_tls_context: the context for wss:// connects. Making one loads the
// trust store (milliseconds), so the default options share one context for
// the process; other options get their own per connect. Only options equal
// to the defaults share: a shared context keyed on verify and ca_file alone
// kept the first caller's ALPN list, and after one connect offering h2
// every default wss:// connect offered it too (a server that picks h2
// cannot answer a WebSocket handshake).
io::TlsContext client_tls_context(const io::TlsClientOptions& o) {
  if (o.verify && o.ca_file.empty() && !o.allow_no_name && o.alpn.empty()) {
    static const io::TlsContext shared = io::TlsContext::client(o);
    return shared;
  }
  return io::TlsContext::client(o);
}
#endif

class WsCategory : public std::error_category {
 public:
  const char* name() const noexcept override { return "spindle.websocket"; }
  std::string message(int v) const override {
    switch (static_cast<ws_errc>(v)) {
      case ws_errc::invalid_url: return "invalid WebSocket URL";
      case ws_errc::refused: return "connection refused";
      case ws_errc::connect_failed: return "connect failed";
      case ws_errc::tls_failed: return "TLS handshake or verification failed";
      case ws_errc::handshake_failed: return "WebSocket handshake failed";
      case ws_errc::message_too_big: return "WebSocket message too big";
      case ws_errc::protocol_error: return "WebSocket protocol error";
      case ws_errc::connection_lost: return "WebSocket connection lost";
      case ws_errc::closed: return "WebSocket closed";
      case ws_errc::timeout: return "WebSocket timed out";
    }
    return "unknown WebSocket error";
  }
};

}  // namespace

const std::error_category& ws_category() noexcept {
  static const WsCategory c;
  return c;
}

// WsTether: how websocket_handler's upgrade learns that a WebSocket its
// session moved elsewhere is gone, and how it shuts that WebSocket's
// socket down at the server's shutdown. `fd` is the socket while the
// Impl lives (-1 after): ~Impl clears it under `m` before the descriptor
// is closed (the Wire's destructor, after ~Impl's body; nothing else
// closes it during a session), so shut() never reaches a descriptor
// number reused by another file.
struct WsTether {
  std::mutex m;
  int fd = -1;
  Event gone;
  void release() noexcept {
    {
      std::lock_guard lk(m);
      fd = -1;
    }
    gone.set();
  }
  void shut() noexcept {
    std::lock_guard lk(m);
    if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
  }
};

struct WebSocket::Impl {
  // States: open; closed (a close frame went both ways, or Beast failed the
  // connection and closed it); broken (the TCP connection is unusable);
  // lost (the heartbeat got no answer: broken, and the socket shut down).
  static constexpr int kOpen = 0, kClosed = 1, kBroken = 2, kLost = 3;

  Wire wire;                     // before ws: Layer points into it
  bws::stream<Layer> ws{&wire};  // guarded by mu
  Mutex mu;                      // every call into ws (piece 2 at the top)
  // One message's frames at a time (send_message); taken before mu, never
  // while holding it.
  Mutex send_mu;
  beast::flat_buffer msg;        // the message being received (receiver only)
  std::atomic<int> state{kOpen};
  std::atomic<bool> reading{false};  // a receive() or close() is under way
  WsMessage close_msg;               // the peer's close; written under mu before state = closed
  std::atomic<std::uint16_t> peer_code{0};
  std::atomic<std::uint64_t> pings{0}, pongs{0};
  std::chrono::milliseconds heartbeat{0}, receive_timeout{0}, message_timeout{0};
  // msg_since: when receive() first found a message part read (bytes in
  // msg or a frame's start in wire.in); {}: none is. Receiver only.
  std::chrono::steady_clock::time_point msg_since{};
  // closing: a close frame was received (Beast replies and tears down
  // under mu before receive() sets the state): the heartbeat stands down.
  std::atomic<bool> closing{false};
  Task<void> hb;  // the heartbeat fiber (piece 5); empty when off or stopped
  // pinging: the heartbeat is sending a ping (appending or writing it);
  // stopping: close() is stopping the heartbeat (stop_heartbeat(until)).
  std::atomic<bool> pinging{false}, stopping{false};
  // Set by websocket_handler for its session's WebSocket only (WsTether).
  std::shared_ptr<WsTether> tether;

  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  // The heartbeat fiber uses every member: it ends first. The tether is
  // let go before the descriptor closes (WsTether).
  ~Impl() {
    // A heartbeat writing its ping finishes that write before it takes the
    // cancel (heartbeat_loop), up to heartbeat / 2 on a peer that reads
    // nothing. The connection goes with this WebSocket anyway: shut it
    // first, so that the write fails at once and the destructor is prompt.
    if (hb) ::shutdown(wire.conn.tcp().native_handle(), SHUT_RDWR);
    stop_heartbeat();
    if (tether) tether->release();
  }

  void setup(const WsOptions& opt) {
    wire.conn.full_duplex();  // receive() reads while a sender flushes
    // Each duration at most kLongestTimeout (deadline.hpp): milliseconds::
    // max() ("no limit") overflows in the clock's unit.
    using spindle::detail::capped;
    wire.close_timeout = capped(opt.close_timeout);
    wire.send_timeout = capped(opt.send_timeout);
    wire.track_rx = opt.heartbeat.count() > 0;
    heartbeat = capped(std::max(opt.heartbeat, std::chrono::milliseconds{0}));
    receive_timeout = capped(std::max(opt.receive_timeout, std::chrono::milliseconds{0}));
    message_timeout = capped(std::max(opt.message_timeout, std::chrono::milliseconds{0}));
    ws.read_message_max(opt.max_message_size);
    // Beast's auto-fragmenting would split at its write buffer size (4 KiB
    // frames); send_message makes 64 KiB fragments itself, and only of a
    // message longer than that.
    ws.auto_fragment(false);
    ws.control_callback([this](bws::frame_type k, beast::string_view) {
      if (k == bws::frame_type::ping) pings.fetch_add(1, std::memory_order_relaxed);
      if (k == bws::frame_type::pong) pongs.fetch_add(1, std::memory_order_relaxed);
      if (k == bws::frame_type::close) {
        closing.store(true, std::memory_order_relaxed);
        // Beast set the close reason before this call and replies after it.
        if (ws.reason().code >= 5000) wire.bad_close_code = true;
      }
    });
  }

  // throw_lost: connection_lost, saying why when the heartbeat decided it.
  [[noreturn]] void throw_lost(const std::string& detail) const {
    if (state.load(std::memory_order_acquire) == kLost)
      throw WsError(ws_errc::connection_lost,
                    "spindle::http::WebSocket: connection lost: no answer to the heartbeat ping within " +
                        std::to_string((heartbeat / 2).count()) + " ms");
    throw WsError(ws_errc::connection_lost, "spindle::http::WebSocket: " + detail);
  }

  // start_heartbeat: once the handshake is done (connect, accept).
  void start_heartbeat() {
    if (heartbeat.count() == 0) return;
    hb = spawn(SpawnOptions{.name = "ws-heartbeat"}, [this] { heartbeat_loop(); });
  }

  // stop_heartbeat: cancels the heartbeat fiber and waits until it has
  // ended. Shielded: a destructor (or a close() of a cancelled fiber) must
  // not leave it running on a freed Impl.
  void stop_heartbeat() noexcept {
    if (!hb) return;
    hb.cancel();
    try {
      shield([&] { hb.join(); });
    } catch (...) {  // Cancelled, its normal end here
    }
    hb = {};
  }
  // stop_heartbeat(until): close()'s. A ping the heartbeat is writing
  // goes out first (heartbeat_loop), but not past `until` nor past the
  // caller's own deadline or cancel: then the connection is broken
  // (end: the socket shut down both ways), which ends that write at once
  // (the peer took no ping in that time). A heartbeat that is not writing
  // a ping takes the cancel at its next wait, and is joined at once.
  // `stopping` and `pinging` (both seq_cst, Dekker's pattern with
  // heartbeat_loop): either this sees the ping begun, or the heartbeat
  // sees `stopping` and starts none. A caller's cancel caught here stays
  // marked on its fiber, and its next wait raises it.
  void stop_heartbeat(std::chrono::steady_clock::time_point until) noexcept {
    if (!hb) return;
    stopping.store(true, std::memory_order_seq_cst);
    hb.cancel();
    if (pinging.load(std::memory_order_seq_cst)) {
      try {
        with_deadline(until, [&] { hb.join(); });
      } catch (...) {  // its Cancelled (its normal end), our deadline, the caller's cancel
      }
      if (!hb.done()) end(kBroken);
    }
    stop_heartbeat();
  }

  // arrived: every byte the peer has sent us so far, as far as we can
  // tell: read by us, or waiting in the kernel (piece 5 at the top).
  // FIONREAD before rx_bytes: a read in between then counts twice (looks
  // alive), never zero times.
  std::uint64_t arrived() {
    int queued = 0;
    if (::ioctl(wire.conn.tcp().native_handle(), FIONREAD, &queued) != 0) queued = 0;
    return static_cast<std::uint64_t>(queued) + wire.rx_bytes.load(std::memory_order_relaxed);
  }
  std::chrono::steady_clock::time_point rx_at() const {
    using C = std::chrono::steady_clock;
    return C::time_point(C::duration(wire.rx_at.load(std::memory_order_acquire)));
  }
  bool heartbeat_on_duty() const {
    return state.load(std::memory_order_acquire) == kOpen && !closing.load(std::memory_order_relaxed);
  }

  // lose: the heartbeat's verdict. State lost (from open, or from broken
  // when the heartbeat's own ping write was cut), then the socket shut down
  // both ways so that fibers blocked on it wake (piece 5).
  void lose() {
    int s = state.load(std::memory_order_acquire);
    while (s == kOpen || s == kBroken) {
      if (state.compare_exchange_weak(s, kLost, std::memory_order_acq_rel)) {
        ::shutdown(wire.conn.tcp().native_handle(), SHUT_RDWR);
        return;
      }
    }
  }

  // heartbeat_loop: the heartbeat fiber's body (piece 5). Ends when the
  // connection ends, or by cancellation (stop_heartbeat).
  void heartbeat_loop() {
    using namespace std::chrono_literals;
    using Clock = std::chrono::steady_clock;
    const auto answer_within = std::max<Clock::duration>(heartbeat / 2, 1ms);
    std::uint64_t seen = arrived();
    Clock::time_point since = Clock::now();  // nothing new seen after this
    // heard: bytes came after `after` (the count changed, or the reader
    // recorded a read); moves `seen` and `since` on when so.
    auto heard = [&](Clock::time_point after) {
      const std::uint64_t a = arrived();
      const Clock::time_point at = rx_at();
      if (a == seen && at <= after) return false;
      seen = a;
      // The reader's time when it read; else the bytes wait unread: now
      // is as close as we can tell.
      since = at > after ? at : Clock::now();
      return true;
    };
    for (;;) {
      sleep_until(spindle::detail::time_after(since, heartbeat));
      if (!heartbeat_on_duty()) return;
      if (heard(since)) continue;
      // Silent for a whole period: ping. Appended under mu like a send;
      // mu is never held across a wait except by close's and teardown's,
      // which end the connection (bounded by close_timeout).
      // pinging from here until the ping is out (or given up), and only
      // so long: stop_heartbeat(until) waits for a ping it finds begun.
      Clock::time_point ping_at;
      {
        pinging.store(true, std::memory_order_seq_cst);
        const auto pinged = defer([this] { pinging.store(false, std::memory_order_seq_cst); });
        if (stopping.load(std::memory_order_seq_cst)) return;  // close() stops us: no ping
        {
          std::lock_guard lk(mu);
          if (!heartbeat_on_duty()) return;
          beast::error_code ec;
          ws.ping(bws::ping_data(), ec);
          if (ec) return;  // Beast is closing: not ours to judge
        }
        ping_at = Clock::now();
        try {
          // flush(false): not behind a sender stuck on a dead peer (the ping
          // waits in Wire::out for it). The write itself is bounded too.
          // Shielded from this fiber's cancel, which is how close() stops it
          // (stop_heartbeat): a ping cut mid-write shuts our write side
          // (Wire::flush), so close()'s close frame could not follow and a
          // close() that met a ping on its way to a slow reader ended broken.
          // The cancel is taken at the next wait instead: close() waits for
          // the ping (stop_heartbeat(until)); the destructor shuts the
          // socket first and does not wait.
          shield([&] { with_deadline(ping_at + answer_within, [&] { flush(false); }); });
        } catch (const TimedOut&) {
          lose();  // the ping could not even be written in time
          return;
        } catch (const WsError&) {
          return;  // broken already: the others see connection_lost
        }
      }
      sleep_until(ping_at + answer_within);
      if (!heartbeat_on_duty()) return;
      if (heard(ping_at)) continue;
      sleep_for(1ms);  // the blind spot (piece 5): one more look
      if (!heartbeat_on_duty()) return;
      if (heard(ping_at)) continue;
      lose();
      return;
    }
  }

  // end: a terminal state; the first one set stays. The socket is not
  // closed here: senders write outside mu (piece 4), and a TcpStream must
  // not be closed while another fiber is inside a call on it. The peer has
  // seen our end of stream by then (teardown) or the connection is gone;
  // the descriptor goes with the WebSocket's destructor.
  //
  // Broken (frames lost, or the socket failed) ends both directions: every
  // call raises connection_lost from then on. A receiver already waiting
  // for the peer would not see it until the peer sent something, and a
  // peer that stopped reading (often why a send timed out) may send
  // nothing for good: it held the receiver for ever, heartbeat or not (the
  // heartbeat stands down once the connection is not open). So the socket
  // is shut down both ways, as lose() does: the waiting read returns end of
  // stream and the receiver raises now.
  void end(int s) {
    int expected = kOpen;
    if (state.compare_exchange_strong(expected, s, std::memory_order_acq_rel) && s == kBroken)
      ::shutdown(wire.conn.tcp().native_handle(), SHUT_RDWR);
  }

  // fail_read: a Beast read error, under mu. Returns the close message for
  // a close frame received; throws otherwise.
  WsMessage on_read_error(const beast::error_code& ec) {
    // Whatever part of a message was read goes now: the connection takes
    // no more. Kept, a closed WebSocket held up to max_message_size until
    // it was destroyed (a reviewer's 10 sessions each closed after a 4 MiB
    // fragment: +41.9 MB while a hub kept them), where the message_timeout
    // path already gave it back.
    msg.clear();
    msg.shrink_to_fit();
    msg_since = {};
    if (ec == bws::error::closed && ws.reason().code >= 5000) {
      // Answered with 1002 (Wire::bad_close_code): a protocol error, not a
      // close the peer may make.
      end(kClosed);
      throw WsError(ws_errc::protocol_error,
                    "spindle::http::WebSocket: a close code of 5000 or more, which no peer may send (closed with 1002)");
    }
    if (ec == bws::error::closed) {
      const auto& cr = ws.reason();
      close_msg.kind = WsMessage::Kind::close;
      close_msg.code = cr.code == bws::close_code::none ? ws_close::no_status : static_cast<std::uint16_t>(cr.code);
      close_msg.data = std::string(cr.reason.data(), cr.reason.size());
      peer_code.store(close_msg.code, std::memory_order_relaxed);
      end(kClosed);
      return close_msg;
    }
    if (ec == bws::error::message_too_big) {
      end(kClosed);
      throw WsError(ws_errc::message_too_big, "spindle::http::WebSocket: message over max_message_size (closed with 1009)");
    }
    if (ec == net::error::operation_aborted) {
      end(kClosed);
      throw WsError(ws_errc::closed, "spindle::http::WebSocket: closed");
    }
    if (ec.category() == bws::make_error_code(bws::error::closed).category()) {
      end(kClosed);
      throw WsError(ws_errc::protocol_error, "spindle::http::WebSocket: " + ec.message());
    }
    end(kBroken);
    throw_lost(ec.message());
  }

  // check_open: under mu, before a send.
  void check_open() const {
    const int s = state.load(std::memory_order_acquire);
    if (s == kBroken || s == kLost) throw_lost("connection lost");
    if (s != kOpen) throw WsError(ws_errc::closed, "spindle::http::WebSocket: closed");
  }

  // append: one Beast write under mu (`f(ec)` makes the call; it only
  // appends to wire.out). write: that, then the flush outside mu.
  // The sender is counted before its append (Wire::flush) and must flush
  // with wait_turn next. A throw from inside Beast's write (bad_alloc in
  // the append) may leave part of a frame in wire.out and Beast's state
  // mid-message: broken.
  // Returns wire.flushes_failed as it was before the append, for flush.
  template <class F>
  std::uint64_t append(F&& f) {
    std::lock_guard lk(mu);
    check_open();
    const std::uint64_t failed_before = wire.flushes_failed.load(std::memory_order_relaxed);
    wire.sender_frames.fetch_add(1, std::memory_order_relaxed);
    beast::error_code ec;
    try {
      f(ec);
    } catch (...) {
      wire.sender_frames.fetch_sub(1, std::memory_order_relaxed);
      end(kBroken);
      throw;
    }
    if (ec) {
      wire.sender_frames.fetch_sub(1, std::memory_order_relaxed);
      end(kClosed);
      throw WsError(ws_errc::closed, "spindle::http::WebSocket: closed");
    }
    return failed_before;
  }
  template <class F>
  void write(F&& f) {
    flush(true, append(std::forward<F>(f)));
  }

  // send_message: one text or binary message. Up to kFragment bytes it
  // is one frame, appended whole under mu and flushed (write). A longer
  // one goes as frames of kFragment bytes, each flushed before the next
  // is framed, so a peer that reads nothing holds one fragment's copy in
  // wire.out, not the message's: 50 such peers sent one shared 1 MiB
  // message held 56 MB until send_timeout, one copy each (piece 4 at the
  // top). send_mu keeps another sender's message out from between the
  // fragments (RFC 6455 5.4: only control frames may come between them; a
  // pong or the heartbeat's ping still may); a short message holds it
  // for its append only, so short sends still share a flush. A message cut
  // after its first fragment (a failed or cancelled flush, a timeout, the
  // WebSocket closed meanwhile) leaves the peer inside a message no frame
  // can finish: broken, and a WsError is connection_lost whatever cut it.
  static constexpr std::size_t kFragment = 64 * 1024;
  void send_message(bool text, std::string_view data) {
    if (data.size() <= kFragment) {
      std::uint64_t failed_before;
      {
        std::lock_guard turn(send_mu);
        failed_before = append([&](beast::error_code& ec) {
          ws.text(text);
          ws.write(net::buffer(data.data(), data.size()), ec);
        });
      }
      flush(true, failed_before);
      return;
    }
    std::lock_guard turn(send_mu);
    bool started = false;
    try {
      while (!data.empty()) {
        const std::size_t n = std::min(data.size(), kFragment);
        const bool fin = n == data.size();
        const std::uint64_t failed_before = append([&](beast::error_code& ec) {
          if (!started) ws.text(text);
          started = true;  // from here a throw leaves the message cut
          ws.write_some(fin, net::buffer(data.data(), n), ec);
        });
        data.remove_prefix(n);
        flush(true, failed_before);
      }
    } catch (const WsError& e) {
      if (!started || data.empty()) throw;
      // Cut: closed by the peer (or a close() of ours) between fragments
      // is connection_lost like any other cut, so a sender is told by its
      // error's kind alone whether part of its message went out.
      end(kBroken);
      if (e.kind() != ws_errc::closed) throw;
      throw WsError(ws_errc::connection_lost,
                    "spindle::http::WebSocket: closed while a message was being sent; the message was cut");
    } catch (...) {
      if (started && !data.empty()) end(kBroken);
      throw;
    }
  }

  // flush: wire.flush, with failures turned into the broken state. A flush
  // cut by cancellation loses the frames it had taken: broken too.
  // wait_turn: the caller is a sender that appended through append()
  // (counted there; failed_before is what append returned); otherwise a
  // flusher that never waits. A sender whose frames another flusher took
  // and lost (Wire::flushes_failed moved) gets connection_lost.
  void flush(bool wait_turn, std::uint64_t failed_before = 0) {
    try {
      wire.flush(wait_turn, wait_turn);
      if (wait_turn && wire.flushes_failed.load(std::memory_order_relaxed) != failed_before) {
        end(kBroken);
        throw_lost("connection lost: a write that carried our frames failed");
      }
    } catch (const WsError&) {
      throw;
    } catch (const std::system_error& e) {
      end(kBroken);
      throw_lost(e.what());
    } catch (const TimedOut&) {
      // send_timeout's own (a caller's scope would be Cancelled here).
      end(kBroken);
      throw WsError(ws_errc::timeout, "spindle::http::WebSocket: the peer took no byte of our frames within "
                                      "send_timeout (" + std::to_string(wire.send_timeout.count()) +
                                          " ms); connection lost");
    } catch (...) {
      end(kBroken);
      throw;
    }
  }
};

namespace {

// ReadingGuard: one receive() or close() at a time (both read).
struct ReadingGuard {
  std::atomic<bool>& flag;
  explicit ReadingGuard(std::atomic<bool>& f) : flag(f) {
    if (flag.exchange(true, std::memory_order_acquire))
      throw std::system_error(std::make_error_code(std::errc::operation_in_progress),
                              "spindle::http::WebSocket: another fiber is receiving");
  }
  ~ReadingGuard() { flag.store(false, std::memory_order_release); }
};

// utf8_cut_short: whether s ends inside a UTF-8 sequence. Beast 1.74
// validates a text message's bytes as they come, but checks that the last
// sequence is whole only when the final frame carries bytes: a message
// whose final fragment is empty ("\xcc", then an empty FIN continuation)
// passed with its sequence cut, and an echo sent it on as text
// (ws_server_fuzz found it). The rest was checked by Beast, so only the
// tail is looked at: O(1) per message.
bool utf8_cut_short(std::string_view s) {
  std::size_t k = 0;  // continuation bytes (10xxxxxx) at the end, at most 3
  while (k < 3 && k < s.size() && (static_cast<unsigned char>(s[s.size() - 1 - k]) & 0xc0) == 0x80) ++k;
  if (k == s.size()) return false;  // no lead byte in reach: Beast refused such text already
  const auto lead = static_cast<unsigned char>(s[s.size() - 1 - k]);
  const std::size_t need = lead < 0x80 ? 0 : (lead & 0xe0) == 0xc0 ? 1 : (lead & 0xf0) == 0xe0 ? 2 : (lead & 0xf8) == 0xf0 ? 3 : 0;
  return k < need;
}

// flush_pongs: the receiver's share of flushing (pongs Beast wrote while
// reading). Never waits for the flush turn: a sender that holds it sends
// them too. Failures: the state says broken, the next call raises. Within
// receive()'s own deadline (receive_timeout), which then raises: the
// write of the pongs to a peer that floods pings and reads nothing held
// receive() past it (the connection is lost then: the pongs were cut).
void flush_pongs(WebSocket::Impl& I, std::chrono::steady_clock::time_point deadline) {
  if (I.wire.out_empty()) return;
  try {
    // With send_timeout on, that bounds the pongs (a peer that takes no
    // byte), and receive_timeout keeps its promise that the WebSocket
    // stays usable: a pong cut by a short poll tick broke the connection.
    if (deadline == std::chrono::steady_clock::time_point::max() || I.wire.send_timeout.count() > 0) {
      I.flush(false);
    } else {
      with_deadline(deadline, [&] { I.flush(false); });
    }
  } catch (const TimedOut&) {
    I.end(WebSocket::Impl::kBroken);
    throw WsError(ws_errc::timeout, "spindle::http::WebSocket: no message within receive_timeout (" +
                                        std::to_string(I.receive_timeout.count()) +
                                        " ms): our pongs to the peer's pings were not taken; connection lost");
  } catch (const WsError& e) {
    if (e.kind() == ws_errc::timeout) throw;  // send_timeout: said now
  }
}

// close_as_reader: the close handshake, by the fiber that holds the
// reading turn (close(), or receive() failing the connection itself).
void close_as_reader(WebSocket::Impl& I, std::uint16_t code, std::string_view reason) {
  // The heartbeat ends first: it would take mu for its ping, and its
  // verdict has no meaning during a close handshake bounded anyway. Its
  // ping, if one is being written, and the handshake share close_timeout.
  const auto until = spindle::detail::time_after(std::chrono::steady_clock::now(), I.wire.close_timeout);
  I.stop_heartbeat(until);
  std::lock_guard lk(I.mu);
  if (I.state.load(std::memory_order_acquire) != WebSocket::Impl::kOpen) return;
  bws::close_reason cr(static_cast<bws::close_code>(code),
                       bsv(reason.substr(0, std::min<std::size_t>(reason.size(), 123))));
  beast::error_code ec;
  bool answered = false;  // the handshake ended (a timeout leaves ec unset)
  try {
    with_deadline(until, [&] {
      I.ws.close(cr, ec);
      answered = true;
    });
  } catch (const TimedOut&) {
    // The peer did not answer in time: closed anyway, and the socket shut
    // both ways as the teardown does, so that a sender blocked on a peer
    // that reads nothing fails now (it stayed blocked for good).
    ::shutdown(I.wire.conn.tcp().native_handle(), SHUT_RDWR);
  } catch (...) {
    I.end(WebSocket::Impl::kClosed);
    throw;
  }
  if (answered && !ec) {
    const auto& got = I.ws.reason();
    I.close_msg.kind = WsMessage::Kind::close;
    I.close_msg.code = got.code == bws::close_code::none ? ws_close::no_status : static_cast<std::uint16_t>(got.code);
    I.close_msg.data = std::string(got.reason.data(), got.reason.size());
    I.peer_code.store(I.close_msg.code, std::memory_order_relaxed);
  }
  I.end(WebSocket::Impl::kClosed);
}

// trim_ows: v without its leading and trailing spaces and tabs.
std::string_view trim_ows(std::string_view v) noexcept {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

// unasked_in_101: why a server's 101 answers something the client did not
// ask for (empty when it did not): any Sec-WebSocket-Extensions (the client
// offers none), a Sec-WebSocket-Protocol that is not one of those offered
// (each Sec-WebSocket-Protocol field of `asked` is a comma-separated list).
std::string unasked_in_101(const bws::response_type& res, const Headers& asked) {
  if (res.find(bhttp::field::sec_websocket_extensions) != res.end())
    return "the server named an extension the client did not offer";
  const auto it = res.find(bhttp::field::sec_websocket_protocol);
  if (it == res.end()) return {};
  // One subprotocol, in one field (RFC 6455 4.1, 4.2.2: the server selects
  // one). Only the first was checked: `chat` then `evil`, with `chat`
  // offered, passed, and which one the server speaks is anyone's guess.
  if (res.count(bhttp::field::sec_websocket_protocol) != 1)
    return "the server named more than one subprotocol";
  const std::string_view chosen = trim_ows(std::string_view(it->value().data(), it->value().size()));
  for (const auto& [name, value] : asked) {
    if (!iequals(name, "Sec-WebSocket-Protocol")) continue;
    std::string_view list = value;
    while (!list.empty()) {
      const std::size_t comma = list.find(',');
      if (trim_ows(list.substr(0, comma)) == chosen) return {};
      list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
    }
  }
  return "the server chose a subprotocol the client did not offer (" + std::string(chosen) + ")";
}

// NoWait: Layer in "no wait" mode for one Beast call.
struct NoWait {
  Wire& w;
  explicit NoWait(Wire& wire) : w(wire) { w.wait = false; }
  ~NoWait() { w.wait = true; }
};

}  // namespace

WebSocket::WebSocket() noexcept = default;
WebSocket::WebSocket(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
WebSocket::WebSocket(WebSocket&&) noexcept = default;
WebSocket& WebSocket::operator=(WebSocket&&) noexcept = default;
WebSocket::~WebSocket() = default;

// status_of: the status code of an HTTP/1.x status line ("HTTP/1.1 403
// Forbidden"), or 0 when it is none.
static int status_of(std::string_view line) {
  if (line.size() < 12 || line.substr(0, 5) != "HTTP/" || line[8] != ' ') return 0;
  int code = 0;
  for (std::size_t i = 9; i < 12; ++i) {
    if (line[i] < '0' || line[i] > '9') return 0;
    code = code * 10 + (line[i] - '0');
  }
  return line.size() == 12 || line[12] == ' ' ? code : 0;
}

// open_client: connect()'s work: the TCP connect, TLS for wss://, and the
// HTTP handshake, on the calling fiber (connect bounds it).
static std::unique_ptr<WebSocket::Impl> open_client(const detail::Url& u, const WsOptions& options) {
  using Impl = WebSocket::Impl;
  auto impl = std::make_unique<Impl>();
  io::TcpStream tcp;
  try {
    tcp = io::TcpStream::connect(u.connect_host(), u.port);
  } catch (const std::system_error& e) {
    if (e.code() == std::errc::connection_refused) throw WsError(ws_errc::refused, std::string("spindle::http::WebSocket: ") + e.what());
    throw WsError(ws_errc::connect_failed, std::string("spindle::http::WebSocket: ") + e.what());
  }
  tcp.set_nodelay(true);
  if (options.tcp_keepalive) tcp.set_keepalive(*options.tcp_keepalive);
  if (u.https) {
#if SPINDLE_HAVE_TLS
    try {
      impl->wire.conn = detail::Transport(io::TlsStream::client(std::move(tcp), client_tls_context(options.tls), u.host));
    } catch (const std::system_error& e) {
      throw WsError(ws_errc::tls_failed, "spindle::http::WebSocket: TLS with " + u.str() + ": " + e.what());
    }
#else
    throw WsError(ws_errc::invalid_url, "spindle::http::WebSocket: wss:// needs spindle built with OpenSSL: " + u.str());
#endif
  } else {
    impl->wire.conn = detail::Transport(std::move(tcp));
  }
  impl->setup(options);
  // user:password@ in the URL is Basic authentication, as with the Client,
  // unless the caller set Authorization itself.
  std::string basic = u.has_userinfo && !options.headers.contains("Authorization") ? u.basic_auth() : std::string();
  if (!options.headers.empty() || !basic.empty()) {
    // Every field as often as it was added (several Sec-WebSocket-Protocol
    // fields are legal, RFC 6455 4.1), except Host: the caller's replaces
    // the handshake's (one field; a second is a 400, RFC 9112 3.2).
    impl->ws.set_option(bws::stream_base::decorator([h = options.headers, basic](bws::request_type& req) {
      for (const auto& [name, value] : h) {
        if (iequals(name, "Host")) {
          req.set(bsv(name), bsv(value));
        } else {
          req.insert(bsv(name), bsv(value));
        }
      }
      if (!basic.empty()) req.set(bhttp::field::authorization, bsv(basic));
    }));
  }
  const std::string host = u.authority();
  bws::response_type res;
  beast::error_code ec;
  impl->wire.framing = Wire::Framing::head;
  impl->ws.handshake(res, bsv(host), bsv(u.target), ec);
  // A 101 has no body, so Beast read nothing past the head: the frame
  // cursor starts at the first frame.
  impl->wire.framing = Wire::Framing::frames;
  // The handshake's 16 KiB read buffer is not kept for a session that may
  // idle (receive() reads between messages into its stack).
  if (impl->wire.in.size() == 0) impl->wire.in.shrink_to_fit();
  if (ec) {
    // The status from the line the server sent (res is empty here: Beast
    // fills it only on success), when that line is a status line.
    std::string what = "spindle::http::WebSocket: handshake with " + u.str() + " failed: " + ec.message();
    if (const int status = status_of(impl->wire.status_line); status != 0)
      what += " (HTTP " + std::to_string(status) + ")";
    throw WsError(ws_errc::handshake_failed, what);
  }
  // RFC 6455 4.1: a 101 that names an extension we did not offer (we offer
  // none), or a subprotocol that is not one of ours, fails the connection.
  // Beast 1.74 checks neither.
  if (const std::string why = unasked_in_101(res, options.headers); !why.empty())
    throw WsError(ws_errc::handshake_failed, "spindle::http::WebSocket: handshake with " + u.str() + " failed: " + why);
  return impl;
}

WebSocket WebSocket::connect(std::string_view url, WsOptions options) {
  // Both checks come before the connect: nothing goes out for a bad URL or
  // field (as with the Client).
  const detail::Url u = parse_ws_url(url);
  check_handshake_fields(options.headers);
  if (options.tcp_keepalive) options.tcp_keepalive->check();
  // The connect, TLS and the HTTP handshake, all within handshake_timeout:
  // a server that accepts and never answers (or drips its 101) must not
  // hold connect() forever.
  std::unique_ptr<Impl> impl;
  if (options.handshake_timeout.count() <= 0) {
    impl = open_client(u, options);
  } else {
    try {
      impl = with_timeout(options.handshake_timeout, [&] { return open_client(u, options); });
    } catch (const TimedOut&) {
      // This scope's own deadline (a caller's passes as its own TimedOut).
      throw WsError(ws_errc::timeout, "spindle::http::WebSocket: connecting to " + u.str() + " took over " +
                                          std::to_string(options.handshake_timeout.count()) +
                                          " ms (WsOptions::handshake_timeout)");
    }
  }
  impl->start_heartbeat();
  return WebSocket(std::move(impl));
}

WebSocket WebSocket::accept(io::TcpStream&& conn, const Request& upgrade, std::string_view buffered,
                            WsOptions options) {
  return accept_on(detail::Transport(std::move(conn)), upgrade, buffered, options);
}

#if SPINDLE_HAVE_TLS
WebSocket WebSocket::accept(io::TlsStream&& conn, const Request& upgrade, std::string_view buffered,
                            WsOptions options) {
  return accept_on(detail::Transport(std::move(conn)), upgrade, buffered, options);
}
#else
WebSocket WebSocket::accept(io::TlsStream&&, const Request&, std::string_view, WsOptions) {
  throw WsError(ws_errc::handshake_failed, "spindle::http::WebSocket: built without OpenSSL");
}
#endif

// ws_key_ok: RFC 6455 4.2.1: a Sec-WebSocket-Key is the base64 of 16
// bytes: 22 characters of its alphabet, then "==". (Beast 1.74 refuses
// only a key over 24 characters.)
static bool ws_key_ok(std::string_view key) {
  if (key.size() != 24 || key.substr(22) != "==") return false;
  return std::all_of(key.begin(), key.begin() + 22, [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
  });
}

WebSocket WebSocket::accept_on(detail::Transport&& conn, const Request& upgrade, std::string_view buffered,
                               const WsOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->wire.conn = std::move(conn);
  impl->setup(options);
  // Bytes the peer sent after its request (frames sent without waiting for
  // the 101) are the WebSocket's first input.
  if (!buffered.empty()) {
    auto b = impl->wire.in.prepare(buffered.size());
    net::buffer_copy(b, net::buffer(buffered.data(), buffered.size()));
    impl->wire.in.commit(buffered.size());
  }
  bhttp::request<bhttp::empty_body> req;
  req.method_string(bsv(upgrade.method));
  req.target(bsv(upgrade.target));
  req.version(upgrade.version);
  // A key that is no base64 of 16 bytes ("k", 23 characters) got a 101
  // and a session. It is refused as Beast refuses a key too long, with
  // the same 400 (its text names the field): the key it checks, the
  // first, is given to it as one.
  bool key_seen = false;
  for (const auto& [name, value] : upgrade.headers) {
    if (!key_seen && iequals(name, "Sec-WebSocket-Key")) {
      key_seen = true;
      if (!ws_key_ok(value)) {
        req.insert(bsv(name), bsv(std::string(25, '-')));
        continue;
      }
    }
    req.insert(bsv(name), bsv(value));
  }
  // Beast's 101 (and its 400/426) carried "Server: Boost.Beast/300": the
  // library and its version to any scanner (an attacker's review). Beast
  // puts its own back when a decorator leaves none, so the handshake
  // answers say "spindle", ServerOptions::server_name's default
  // (ServerOptions does not reach this far: a server_name of the user's,
  // or minimal, is not applied to them).
  impl->ws.set_option(
      bws::stream_base::decorator([](bws::response_type& res) { res.set(bhttp::field::server, "spindle"); }));
  beast::error_code ec;
  impl->ws.accept(req, ec);  // on a bad request Beast answers 400 itself
  try {
    // The 101 or the error response, within handshake_timeout: the
    // server's write_timeout stopped applying when the handler handed the
    // connection over, and a client that pipelined requests without
    // reading their answers may have left the socket full.
    if (options.handshake_timeout.count() > 0) {
      with_timeout(options.handshake_timeout, [&] { impl->wire.flush(true); });
    } else {
      impl->wire.flush(true);
    }
  } catch (const std::system_error&) {
    if (!ec) ec = net::error::connection_reset;
  } catch (const TimedOut&) {
    if (!ec) ec = net::error::timed_out;
  }
  if (ec) {
    try {
      impl->wire.conn.shutdown();
    } catch (const std::system_error&) {
    }
    impl->wire.conn.tcp().close();
    throw WsError(ws_errc::handshake_failed, "spindle::http::WebSocket: bad upgrade request: " + ec.message());
  }
  impl->start_heartbeat();
  return WebSocket(std::move(impl));
}

void WebSocket::send_text(std::string_view text) { impl_->send_message(true, text); }

void WebSocket::send_binary(std::string_view bytes) { impl_->send_message(false, bytes); }

void WebSocket::ping(std::string_view payload) {
  if (payload.size() > 125) throw std::invalid_argument("spindle::http::WebSocket::ping: payload over 125 bytes");
  Impl& I = *impl_;
  I.write([&](beast::error_code& ec) { I.ws.ping(bws::ping_data(payload.data(), payload.size()), ec); });
}

WsMessage WebSocket::receive() {
  Impl& I = *impl_;
  ReadingGuard guard(I.reading);
  // receive_timeout bounds the waits for the peer only (below), not the
  // work between them: a pong cut half written would break the connection.
  using Clock = std::chrono::steady_clock;
  const Clock::time_point deadline =
      I.receive_timeout.count() > 0 ? spindle::detail::deadline_after(I.receive_timeout) : Clock::time_point::max();
  for (;;) {
    {
      std::unique_lock lk(I.mu);
      switch (I.state.load(std::memory_order_acquire)) {
        case Impl::kOpen: break;
        case Impl::kClosed:
          if (I.close_msg.is_close()) return I.close_msg;
          throw WsError(ws_errc::closed, "spindle::http::WebSocket: closed");
        default: I.throw_lost("connection lost");
      }
      beast::error_code ec;
      bool need_input = false;
      try {
        NoWait nw(I.wire);
        I.ws.read(I.msg, ec);
      } catch (const NeedInput&) {
        need_input = true;
      }
      if (!need_input) {
        if (ec) return I.on_read_error(ec);
        WsMessage m;
        m.kind = I.ws.got_text() ? WsMessage::Kind::text : WsMessage::Kind::binary;
        m.data = beast::buffers_to_string(I.msg.data());
        I.msg.clear();
        I.msg_since = {};
        // A large message's buffer is not kept for the next: an idle
        // session held the capacity of its largest message (40 sessions
        // after one 4 MiB message each: +168 MiB of the server).
        if (I.msg.capacity() > kKeptMessageBuffer) I.msg.shrink_to_fit();
        const bool cut = m.kind == WsMessage::Kind::text && utf8_cut_short(m.data);
        lk.unlock();
        try {
          flush_pongs(I, deadline);
        } catch (const WsError&) {
          // The message is whole: it is returned, not lost; the broken
          // state raises at the next call.
        }
        if (cut) {
          // What Beast does for text it finds invalid: close with 1007.
          close_as_reader(I, ws_close::bad_payload, "invalid UTF-8");
          throw WsError(ws_errc::protocol_error,
                        "spindle::http::WebSocket: a text message that is not UTF-8 (closed with 1007)");
        }
        return m;
      }
    }
    flush_pongs(I, deadline);
    // Whatever Beast could not use yet is a message's or a control
    // frame's start: msg holds the payload read so far, wire.in the rest;
    // and a message whose frames so far were empty has begun too.
    const bool part_read = I.msg.size() != 0 || I.wire.in.size() != 0 || I.wire.mid_message;
    // A message part read has message_timeout in all, from when it was
    // first found so (right after the read that brought its first bytes).
    Clock::time_point until = deadline;
    bool by_message = false;
    if (!part_read) {
      I.msg_since = {};
    } else if (I.message_timeout.count() > 0) {
      if (I.msg_since == Clock::time_point{}) I.msg_since = Clock::now();
      const Clock::time_point due = spindle::detail::time_after(I.msg_since, I.message_timeout);
      if (due < until) {
        until = due;
        by_message = true;
      }
    }
    // Wait for the peer without the lock (a sender may go on meanwhile). A
    // cancellation here changes nothing: the next receive() resumes.
    std::error_code e;
    std::size_t n = 0;
    // Between messages (nothing part read) the wait holds no 16 KiB read
    // buffer: the first read goes to the stack and only what came is kept
    // (an idle session held 16 KiB of its 25 KiB in wire.in: an attacker's
    // review, 1,000 idle sessions +24.8 MB). Inside a message, reads are
    // 16 KiB into wire.in as before.
    if (!part_read && I.wire.in.capacity() > kIdleRead) I.wire.in.shrink_to_fit();  // empty: frees it
    const auto read = [&]() -> std::size_t {
      if (part_read) return I.wire.conn.read_some(I.wire.in.prepare(16 * 1024), e);
      char first[kIdleRead];
      const std::size_t got = I.wire.conn.read_some(net::buffer(first, sizeof first), e);
      if (got != 0) std::memcpy(I.wire.in.prepare(got).data(), first, got);
      return got;
    };
    if (until == Clock::time_point::max()) {
      n = read();
    } else {
      // Our own deadline's TimedOut only (an outer scope's passes as
      // Cancelled): as http::Client's own timeouts become errc::timeout.
      try {
        n = with_deadline(until, read);
      } catch (const TimedOut&) {
        if (by_message) {
          // The part read goes now, not when the session ends.
          I.msg.clear();
          I.msg.shrink_to_fit();
          I.msg_since = {};
          close_as_reader(I, ws_close::policy, "message too slow");
          throw WsError(ws_errc::timeout, "spindle::http::WebSocket: a message not whole within message_timeout (" +
                                              std::to_string(I.message_timeout.count()) + " ms): closed with 1008");
        }
        throw WsError(ws_errc::timeout, "spindle::http::WebSocket: no message within receive_timeout (" +
                                            std::to_string(I.receive_timeout.count()) + " ms)");
      }
    }
    if (e || n == 0) {
      std::lock_guard lk(I.mu);
      if (I.state.load(std::memory_order_acquire) == Impl::kOpen) I.end(Impl::kBroken);
      // The part read goes now (the end of stream or a reset, as
      // on_read_error does for a close frame or a protocol error).
      I.msg.clear();
      I.msg.shrink_to_fit();
      I.msg_since = {};
      I.throw_lost("connection lost: " + (e ? e.message() : std::string("end of stream")));
    }
    I.wire.in.commit(n);
    I.wire.note_rx(n);
  }
}

namespace {
// sendable_close_code: a code RFC 6455 7.4 lets an endpoint put in a close
// frame (Beast's is_valid_close_code less 1014, which Beast refuses to
// receive, and 5000 and up, which we refuse: Wire::bad_close_code).
bool sendable_close_code(std::uint16_t c) noexcept {
  return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1013) || (c >= 3000 && c <= 4999);
}

// close_reason_cut: at most 123 bytes of reason (a close frame's payload
// is at most 125, the code included), cut back to a whole UTF-8 sequence;
// a reason that is not UTF-8 is refused (the peer fails the connection
// with 1007 on it).
std::string_view close_reason_cut(std::string_view reason) {
  std::size_t n = std::min<std::size_t>(reason.size(), 123);
  if (n < reason.size()) {
    // Back to the start of the sequence the cut falls in (at most three
    // continuation bytes back), dropping it whole.
    while (n > 0 && (static_cast<unsigned char>(reason[n]) & 0xC0) == 0x80) --n;
  }
  reason = reason.substr(0, n);
  // (Beast's checker reads through a null pointer given nothing to check.)
  if (!reason.empty() && !bws::detail::check_utf8(reason.data(), reason.size())) {
    throw std::invalid_argument("spindle::http::WebSocket::close: the reason is not UTF-8");
  }
  return reason;
}
}  // namespace

void WebSocket::close(std::uint16_t code, std::string_view reason) {
  if (!impl_) return;
  // RFC 6455 7.4.1: 1005, 1006 and 1015 name what a receiver saw (no code,
  // no close frame, a TLS failure) and MUST NOT be sent: a close with no
  // code goes instead, which the peer reads as 1005 (a relay that passes a
  // received 1005 on sends what it got). Before, they went on the wire
  // and a strict peer (spindle's own) failed the connection with 1002.
  // 0 (close_code()'s "none yet") does the same, as it did before.
  // Any other code outside the registry's sendable ranges is a mistake of
  // the caller's: invalid_argument, nothing sent.
  if (code == 0 || code == ws_close::no_status || code == 1006 || code == 1015) {
    code = 0;
    reason = {};
  } else if (!sendable_close_code(code)) {
    throw std::invalid_argument("spindle::http::WebSocket::close: close code " + std::to_string(code) +
                                " may not be sent (RFC 6455 7.4: 1000-1003, 1007-1013, 3000-4999; 1005 sends none)");
  }
  reason = close_reason_cut(reason);
  Impl& I = *impl_;
  ReadingGuard guard(I.reading);
  close_as_reader(I, code, reason);
}

bool WebSocket::is_open() const noexcept {
  return impl_ && impl_->state.load(std::memory_order_acquire) == Impl::kOpen;
}
std::uint16_t WebSocket::close_code() const noexcept {
  return impl_ ? impl_->peer_code.load(std::memory_order_relaxed) : 0;
}
std::uint64_t WebSocket::pings_received() const noexcept {
  return impl_ ? impl_->pings.load(std::memory_order_relaxed) : 0;
}
std::uint64_t WebSocket::pongs_received() const noexcept {
  return impl_ ? impl_->pongs.load(std::memory_order_relaxed) : 0;
}

namespace detail {
struct WsAccess {
  static WebSocket::Impl& impl(WebSocket& ws) noexcept { return *ws.impl_; }
};
}  // namespace detail

Handler websocket_handler(WsSession session, WsOptions options) {
  struct Shared {
    WsSession session;
    WsOptions options;
  };
  auto sh = std::make_shared<Shared>(Shared{std::move(session), std::move(options)});
  return [sh](Request& req) {
    if (!ws_origin_allowed(req, sh->options.origins)) {
      // Before anything of the upgrade: a plain answer, the connection kept.
      return Response::text_body(403, "WebSocket handshake from this Origin refused (WsOptions::origins)\n");
    }
    // An opening handshake has no body (RFC 6455 4.1: a GET a browser
    // sends bare). One that comes with a body is refused: the request
    // lives as long as the session, and with it a body of up to max_body.
    const auto cl = req.headers.get("content-length");
    if (req.headers.contains("transfer-encoding") || (cl && *cl != "0")) {
      Response r = Response::text_body(400, "WebSocket handshake with a body refused\n");
      r.close = true;
      return r;
    }
    Response res;
    // The request is the server's (Upgraded::request), not a copy: a copy
    // here lived as long as the session, beside the server's (a 15 KB head
    // held twice). A handler that wraps this one hands it the request the
    // session will see: change it in place, not in a copy.
    res.upgrade = [sh](Upgraded conn, std::string_view buffered) {
      if (conn.request == nullptr) {
        throw std::invalid_argument("spindle::http: websocket_handler's upgrade called without its request (Upgraded::request)");
      }
      const Request& req = *conn.request;
      WebSocket ws;
      try {
        // wss:// when the server speaks TLS: the WebSocket takes the TLS stream.
        ws = conn.tls != nullptr ? WebSocket::accept(std::move(*conn.tls), req, buffered, sh->options)
                                 : WebSocket::accept(std::move(*conn.tcp), req, buffered, sh->options);
      } catch (const WsError&) {
        return;  // answered 400 and closed by accept
      }
      auto tether = std::make_shared<WsTether>();
      {
        WebSocket::Impl& impl = detail::WsAccess::impl(ws);
        tether->fd = impl.wire.conn.tcp().native_handle();
        impl.tether = tether;
      }
      // Returned with the WebSocket moved elsewhere (a hub): the
      // connection is still open, so this fiber keeps its places in the
      // server's limits and its shutdown's reach until the WebSocket goes
      // (WsSession). Cancelled (the shutdown past drain_timeout), or the
      // session threw after moving it: the socket is shut down both ways,
      // which the holder's next call meets (a no-op when the WebSocket
      // died with the session: its tether is let go first).
      try {
        sh->session(std::move(ws), req);
        tether->gone.wait();
      } catch (...) {
        tether->shut();
        throw;
      }
    };
    return res;
  };
}

}  // namespace spindle::http
