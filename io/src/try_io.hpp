// try_io.hpp: the readiness protocol around one nonblocking syscall, shared
// by every socket kind (tcp.cpp, udp.cpp; docs/io.md "Waiting").
#pragma once

#include <sys/types.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <system_error>

#include "errno_now.hpp"
#include "reactor.hpp"

namespace spindle::io::detail {

// try_ready: try_io's attempt without its wait. While `dir` is ready,
// runs call(fd) inside an Inflight guard. On EAGAIN it clears readiness
// (kHup too: reactor.hpp) with the state loaded before the call (a readiness event that came
// meanwhile bumped the tick, so the clear fails and the next try goes
// ahead); EINTR tries again. A stream's short transfer (a result in
// (0, want); want = 0 for datagrams, which are never short) clears
// readiness too: the kernel's queue is drained, so the next call waits
// first instead of paying an EAGAIN. Not on a record-oriented descriptor
// (Descriptor::records: a terminal in canonical mode, a SEQPACKET or
// datagram socket): its read returns one record however many are queued,
// so a short read says nothing about the queue, and under edge triggering
// the records behind it would wait for an event that never comes. Those
// keep reading until EAGAIN.
// Returns call's non-negative result; -1 with ec set: operation_canceled
// when the descriptor closes (io::error::runtime_ended when its runtime
// ended: closed_error) or the errno of a failed call; or kNotReady when
// `dir` is not ready (no syscall made if it was not ready to begin with).
inline constexpr ssize_t kNotReady = -2;
template <class Call>
ssize_t try_ready(Descriptor* d, Dir& dir, std::size_t want, std::error_code& ec, Call call) {
  ec.clear();
  for (;;) {
    // acquire; pairs with the release side of Dir::signal's CAS.
    const std::uint64_t s = dir.state.load(std::memory_order_acquire);
    if (s & Dir::kClosed) {
      ec = closed_error(d);
      return -1;
    }
    if (!Dir::ready(s)) return kNotReady;
    ssize_t r;
    {
      Inflight in(d);
      if (!in.ok()) {
        ec = closed_error(d);
        return -1;
      }
      r = call(d->fd);
    }
    if (r >= 0) {
      if (r > 0 && static_cast<std::size_t>(r) < want && !d->records) dir.clear_ready(s);
      return r;
    }
    // errno_now, not errno: this loop's caller waits (errno_now.hpp).
    const int err = errno_now();
    if (err == EAGAIN || err == EWOULDBLOCK) {
      dir.clear_on_eagain(s);
      continue;
    }
    if (err == EINTR) continue;
    ec = std::error_code(err, std::system_category());
    return -1;
  }
}

// note_read_wait: the calling fiber is about to wait to read d. The
// runtime learns which socket (it moves the socket along if it moves the
// fiber for load: Reactor::moved) and says where the socket should be for
// this wait: its worker's consolidation target, or a pinned fiber's
// worker (reactor.hpp, follow). Mostly where it already is.
// Only for a socket of the calling fiber's own runtime (the runtime
// checks `owner`): the tag names a slot of d's reactor, which the
// runtime's move listener looks up in its own reactor (another runtime's
// slot there: a chunk that may not exist, or an unrelated socket), and
// `to` is a worker of this runtime, not of d's. A socket of another
// runtime that is still running is simply not moved along.
inline void note_read_wait(Descriptor* d) noexcept {
  const int to = spindle::detail::note_read_wait(d->reactor, d->move_tag());
  if (to >= 0 && d->home.load(std::memory_order_relaxed) != to) [[unlikely]] d->reactor->follow(d, to);
}

// try_io: try_ready, waiting on `dir` whenever it is not ready. Returns
// call's non-negative result, or -1 with ec set as try_ready's, or the
// error of a second fiber waiting in the same direction. Cancelled and
// TimedOut from the wait propagate: they are not I/O outcomes.
template <class Call>
ssize_t try_io(Descriptor* d, Dir& dir, const char* wait_name, std::size_t want, std::error_code& ec,
               Call call) {
  for (;;) {
    const ssize_t r = try_ready(d, dir, want, ec, call);
    if (r != kNotReady) return r;
    if (&dir == &d->rd) note_read_wait(d);
    try {
      dir.await(wait_name);
    } catch (const std::system_error& e) {
      ec = e.code();
      return -1;
    }
  }
}

}  // namespace spindle::io::detail
