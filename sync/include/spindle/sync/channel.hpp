// channel.hpp: Channel<T>, Go's channel for fibers.
//
//   Channel<T> ch;                    // rendezvous (capacity 0)
//   Channel<T> ch(16);                // bounded: up to 16 buffered values
//   Channel<T> ch(spindle::unbounded) // unbounded: send never waits
//
// send(v) waits while the channel is full (rendezvous: until a receiver has
// taken v); recv() waits while it is empty and returns std::nullopt once the
// channel is closed and drained. close() wakes every waiter: receivers drain
// what is buffered and then get nullopt; waiting and later senders get
// spindle::ChannelClosed. `for (T v : ch)` receives until closed. T may be
// move-only. Values from one sender arrive in the order it sent them;
// waiting senders and receivers are served FIFO.
//
// Every operation may be used from fibers on any worker and from plain
// threads (which block), so an offload job can feed fibers. Blocking
// operations are cancellation points (Cancelled); the _for/_until forms
// report a timeout in their return value. select() (select.hpp) waits on
// several channel operations at once.
//
// Memory ordering: the send of a value happens before the recv that gets it
// returns; close() happens before any recv that returns nullopt because of
// it.
#pragma once

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>

#include <spindle/sync/detail/channel_lock.hpp>
#include <spindle/sync/detail/pull_iterator.hpp>
#include <spindle/sync/detail/ring_buffer.hpp>
#include <spindle/sync/detail/wait_queue.hpp>

namespace spindle {

struct unbounded_t {
  explicit unbounded_t() = default;
};
// Tag for an unbounded Channel: Channel<T> ch(spindle::unbounded).
inline constexpr unbounded_t unbounded{};

// ChannelClosed: raised by send on a closed channel (Go panics there).
struct ChannelClosed : std::logic_error {
  ChannelClosed() : std::logic_error("spindle: send on a closed channel") {}
};

namespace detail {
// Result of one channel step attempted under the channel's lock.
enum class ChanOp : std::uint8_t { done, blocked, closed };
// WaitNode::outcome values a channel writes for a winner it completes.
inline constexpr std::uint32_t chan_delivered = 1;
inline constexpr std::uint32_t chan_closed = 2;
template <class T>
struct ChannelAccess;
}  // namespace detail

template <class T>
class Channel {
  // A value is moved into a waiting receiver's slot (or out of a waiting
  // sender's) after that waiter was chosen: a move that threw there would
  // leave it woken by nobody and deaf to its own timeout and cancel for
  // ever. A type whose move may throw goes in a std::unique_ptr.
  static_assert(std::is_nothrow_move_constructible_v<T>,
                "spindle::Channel<T>: T's move constructor must be noexcept (wrap T in a std::unique_ptr)");

 public:
  // Channel(capacity): rendezvous for 0, else bounded to `capacity` values.
  explicit Channel(std::size_t capacity = 0) : cap_(capacity) { buf_.set_floor(capacity); }
  // A signed capacity (a literal, an int from a config) is checked: a
  // negative one is std::invalid_argument, as Semaphore(-1) is. Before
  // 2026-11-30 it converted to size_t: Channel<T>(-1) was unbounded.
  template <std::signed_integral I>
  explicit Channel(I capacity) : Channel(checked_capacity(capacity)) {}
  explicit Channel(unbounded_t) : cap_(std::numeric_limits<std::size_t>::max()) {
    buf_.set_floor(64);
  }
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;
  // Precondition: nobody waits on the channel.
  ~Channel() = default;

  // send: delivers v, waiting while the channel is full. May suspend (a
  // plain thread blocks). Raises ChannelClosed if the channel is or gets
  // closed before v was taken; a cancellation point (Cancelled; v not sent).
  // v is moved from only when it was sent: a send that raises leaves the
  // caller's value as it was (send(std::move(job)) can be retried, or the
  // job put back). Until 2026-11-30 send took v by value, so a cancelled or
  // closed send destroyed a move-only value with the parameter.
  SPINDLE_MAY_SUSPEND void send(T&& v) { send_impl(v, nullptr); }
  SPINDLE_MAY_SUSPEND void send(const T& v) {
    T c(v);
    send_impl(c, nullptr);
  }

  // try_send: sends only if that needs no wait. Never suspends; not a
  // cancellation point. v is moved from only when it returns true. Raises
  // ChannelClosed on a closed channel.
  bool try_send(T&& v) { return try_send_impl(v); }
  bool try_send(const T& v) {
    T c(v);
    return try_send_impl(c);
  }

  // send_for / send_until: send with a time limit; false when it ran out (v
  // is then not moved from). May suspend; a cancellation point; raises
  // ChannelClosed like send.
  template <class Rep, class Period>
  SPINDLE_MAY_SUSPEND bool send_for(T&& v, std::chrono::duration<Rep, Period> d) {
    return send_until(std::move(v), detail::deadline_after(d));
  }
  template <class Rep, class Period>
  SPINDLE_MAY_SUSPEND bool send_for(const T& v, std::chrono::duration<Rep, Period> d) {
    T c(v);
    return send_until(std::move(c), detail::deadline_after(d));
  }
  SPINDLE_MAY_SUSPEND bool send_until(T&& v, std::chrono::steady_clock::time_point t) {
    return send_impl(v, &t);
  }

  // recv: the next value, waiting while none is available; std::nullopt once
  // the channel is closed and drained. May suspend (a plain thread blocks);
  // a cancellation point (Cancelled; nothing taken).
  SPINDLE_MAY_SUSPEND std::optional<T> recv() {
    std::optional<T> out;
    recv_impl(out, nullptr);
    return out;
  }
  // try_recv: a value if one is available without waiting, else nullopt
  // (check is_closed() to tell "closed and drained" apart). Never suspends.
  std::optional<T> try_recv() {
    std::optional<T> out;
    detail::Wakeups wakeups;
    std::lock_guard g(mu_);
    recv_locked(out, wakeups);
    return out;
  }
  // recv_for / recv_until: recv with a time limit; nullopt when it ran out
  // or the channel is closed and drained (is_closed() tells them apart).
  template <class Rep, class Period>
  SPINDLE_MAY_SUSPEND std::optional<T> recv_for(std::chrono::duration<Rep, Period> d) {
    return recv_until(detail::deadline_after(d));
  }
  SPINDLE_MAY_SUSPEND std::optional<T> recv_until(std::chrono::steady_clock::time_point t) {
    std::optional<T> out;
    recv_impl(out, &t);
    return out;
  }

  // close: no more sends. Wakes every waiting receiver (they drain the
  // buffer, then get nullopt) and every waiting sender (ChannelClosed).
  // Idempotent. Never suspends; any fiber or thread.
  void close() {
    detail::Wakeups wakeups;
    std::lock_guard g(mu_);
    closed_ = true;
    while (detail::WaitNode* n = recvq_.pop_winner()) {
      n->outcome = detail::chan_closed;  // buffer is empty when receivers wait
      wakeups.add(n);
    }
    while (detail::WaitNode* n = sendq_.pop_winner()) {
      n->outcome = detail::chan_closed;
      wakeups.add(n);
    }
  }

  // Snapshots; never suspend.
  bool is_closed() const {
    std::lock_guard g(mu_);
    return closed_;
  }
  std::size_t size() const {
    std::lock_guard g(mu_);
    return buf_.size();
  }
  std::size_t capacity() const noexcept { return cap_; }

  // Range-for: receives until the channel is closed and drained. Each ++ is
  // a recv() (may suspend; a cancellation point).
  using iterator = detail::PullIterator<T, Channel, &Channel::recv>;
  iterator begin() { return iterator(this); }
  iterator end() { return iterator(); }

 private:
  template <std::signed_integral I>
  static std::size_t checked_capacity(I capacity) {
    if (capacity < 0) throw std::invalid_argument("spindle::Channel: a negative capacity (0 is a rendezvous channel; unbounded is spindle::unbounded)");
    return static_cast<std::size_t>(capacity);
  }
  friend struct detail::ChannelAccess<T>;

  // send_locked: one send step under mu_. Hands v to a waiting receiver,
  // else buffers it if there is room. v is moved from only on `done`.
  detail::ChanOp send_locked(T& v, detail::Wakeups& wakeups) {
    if (closed_) return detail::ChanOp::closed;
    // A waiting receiver implies an empty buffer: hand v over directly.
    if (detail::WaitNode* r = recvq_.pop_winner()) {
      static_cast<std::optional<T>*>(r->slot)->emplace(std::move(v));
      r->outcome = detail::chan_delivered;
      wakeups.add(r);
      return detail::ChanOp::done;
    }
    if (buf_.size() < cap_) {
      buf_.push_back(std::move(v));
      return detail::ChanOp::done;
    }
    return detail::ChanOp::blocked;
  }

  // recv_locked: one recv step under mu_. `done` with out set, `closed`
  // with out empty (closed and drained), or `blocked`.
  detail::ChanOp recv_locked(std::optional<T>& out, detail::Wakeups& wakeups) {
    if (!buf_.empty()) {
      out.emplace(std::move(buf_.front()));
      buf_.pop_front();
      // Room now: move the oldest waiting sender's value into the buffer.
      if (detail::WaitNode* s = sendq_.pop_winner()) {
        buf_.push_back(std::move(*static_cast<T*>(s->slot)));
        s->outcome = detail::chan_delivered;
        wakeups.add(s);
      }
      return detail::ChanOp::done;
    }
    // Empty buffer: take from a waiting sender (rendezvous).
    if (detail::WaitNode* s = sendq_.pop_winner()) {
      out.emplace(std::move(*static_cast<T*>(s->slot)));
      s->outcome = detail::chan_delivered;
      wakeups.add(s);
      return detail::ChanOp::done;
    }
    return closed_ ? detail::ChanOp::closed : detail::ChanOp::blocked;
  }

  bool try_send_impl(T& v) {
    detail::ChanOp op;
    {
      detail::Wakeups wakeups;
      std::lock_guard g(mu_);
      op = send_locked(v, wakeups);
    }
    if (op == detail::ChanOp::closed) throw ChannelClosed{};
    return op == detail::ChanOp::done;
  }

  // send_impl / recv_impl: one try under mu_, and if that blocks, wait with
  // mu_ still held (suspend_on_locked). Wakeups is declared before the lock so
  // that it wakes after the lock is released.
  bool send_impl(T& v, const detail::TimePoint* deadline) {
    detail::Wakeups wakeups;
    std::unique_lock g(mu_);
    const detail::ChanOp op = send_locked(v, wakeups);
    if (op == detail::ChanOp::done) return true;
    if (op == detail::ChanOp::closed) throw ChannelClosed{};  // g unlocks first
    detail::WaitNode node;
    node.slot = &v;
    const auto s = detail::suspend_on_locked(g, sendq_, node, deadline, "channel send");
    if (s == detail::Waiter::notified) {
      if (node.outcome == detail::chan_closed) throw ChannelClosed{};
      return true;
    }
    detail::throw_if_cancelled(s);
    return false;
  }

  void recv_impl(std::optional<T>& out, const detail::TimePoint* deadline) {
    detail::Wakeups wakeups;
    std::unique_lock g(mu_);
    if (recv_locked(out, wakeups) != detail::ChanOp::blocked) return;
    detail::WaitNode node;
    node.slot = &out;
    const auto s = detail::suspend_on_locked(g, recvq_, node, deadline, "channel recv");
    detail::throw_if_cancelled(s);
  }

  // A spin lock that yields the thread when its holder looks preempted
  // (channel_lock.hpp).
  mutable detail::ChannelLock mu_;
  const std::size_t cap_;
  bool closed_ = false;      // SPINDLE_GUARDED_BY(mu_)
  detail::RingBuffer<T> buf_;  // SPINDLE_GUARDED_BY(mu_)
  detail::WaitList recvq_;   // SPINDLE_GUARDED_BY(mu_): node.slot is std::optional<T>*
  detail::WaitList sendq_;   // SPINDLE_GUARDED_BY(mu_): node.slot is T*
};

namespace detail {
// ChannelAccess: select()'s view of a channel's internals.
template <class T>
struct ChannelAccess {
  static ChannelLock& lock(Channel<T>& c) noexcept { return c.mu_; }
  static ChanOp send(Channel<T>& c, T& v, Wakeups& w) { return c.send_locked(v, w); }
  static ChanOp recv(Channel<T>& c, std::optional<T>& out, Wakeups& w) {
    return c.recv_locked(out, w);
  }
  static WaitList& sendq(Channel<T>& c) noexcept { return c.sendq_; }
  static WaitList& recvq(Channel<T>& c) noexcept { return c.recvq_; }
};
}  // namespace detail

}  // namespace spindle
