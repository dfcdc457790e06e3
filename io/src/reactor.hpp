// reactor.hpp: the readiness core (docs/io.md has the protocol and the
// no-lost-wake-up argument; docs/decisions/0005-io-readiness.md the design
// choice and its syscall counts).
//
// Each worker owns an edge-triggered epoll instance, which the worker itself
// polls and parks in (detail/io_hook.hpp). A socket is registered in one
// instance at a time: the worker its fiber ran on (or the next in turn for
// an accepted connection), moved only when a hand-off takes its reader
// elsewhere (follow); with EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET and a
// tag (slot index, generation) naming a type-stable Descriptor: descriptors
// live in chunks that are freed only with the reactor or after it (see
// "Lifetimes" below), so a poller holding a stale tag can always read the
// slot and finds the generation changed.
//
// Each direction (read, write) is one 64-bit state word:
//   bits 0-7   flags: kReady, kClosed, kWaiting, kLock, kHup, kNudge
//   bits 8-39  tick: +1 on every readiness event for this direction
//   bits 40-63 the descriptor's generation (low 24 bits)
// and a Waiter pointer guarded by kWaiting/kLock (see Dir).
//
// Lifetimes: a Reactor is the io object of one runtime and dies with it
// (runtime_extension's destroy, after every worker has stopped), but the
// handles (TcpStream, TcpListener, UdpSocket, FdStream, Process, and what
// wraps them: TlsStream, http::Client's pool, ...) may be declared outside
// `run` and outlive it. So the Descriptor memory a handle points at is not
// the reactor's alone: each chunk of descriptors is reference-counted
// (Chunk::refs: one reference held by the reactor, one per descriptor the
// reactor detached at its end), and a handle that outlives its runtime finds
// its descriptor detached (Descriptor::life): closing it is a plain
// ::close(fd) plus the drop of the chunk reference; any other operation
// fails with io::error::runtime_ended. Never a wait on an epoll instance
// nobody polls (a hang) nor a touch of the freed reactor.
//
// Who may touch what:
//  - Descriptor::reactor may be dereferenced only while the reactor lives:
//    by code on one of its runtime's fibers or workers (the runtime cannot
//    end meanwhile), or by close() after it moved life from kOpen to
//    kClosing (~Reactor waits for that close to finish). Never by code that
//    holds only a handle, off the runtime (use Reactor::close(d), static).
//  - ~Reactor moves every kOpen descriptor to kDetached, waiting out those
//    in kClosing, then takes mu_ once (a closer's last step, under mu_, has
//    ended) before freeing anything. Lock order: mu_ is a leaf; life is a
//    CAS, not a lock, and no one holds mu_ while spinning on it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <system_error>
#include <vector>

#include <spindle/runtime/detail/io_hook.hpp>
#include <spindle/runtime/suspend.hpp>

namespace spindle::io::detail {

using spindle::detail::Waiter;

struct Dir {
  static constexpr std::uint64_t kReady = 1;    // an event came and no clear since
  static constexpr std::uint64_t kClosed = 2;   // close() began; never cleared
  static constexpr std::uint64_t kWaiting = 4;  // `waiter` holds a parked fiber's Waiter
  static constexpr std::uint64_t kLock = 8;     // a completer or publisher is using `waiter`
  // kHup: the peer ended its side or the socket has an error (or, on TCP,
  // urgent data came: a read stops at its mark, short). Like kReady
  // for every purpose, but a short transfer's clear_ready never clears it
  // (tokio's "closed" readiness): data and FIN can arrive in one event,
  // and the read that returns the data stops short of the FIN. Only
  // EAGAIN clears it (clear_on_eagain): an EOF reads as 0 and an error as
  // that error, never EAGAIN, so EAGAIN proves neither is pending. An
  // error need not be final: a connected UDP socket's ICMP "port
  // unreachable" is EPOLLERR once, recv returns ECONNREFUSED once, and the
  // socket works on; a kHup kept past that made every later recv spin on
  // EAGAIN without ever waiting (a worker at 100%, no way to cancel).
  static constexpr std::uint64_t kHup = 16;
  // kNudge: nudge() asked the fiber in an idle wait (io/src/idle_wait.hpp)
  // to return without readiness. Only await(what, kNudge) returns for it
  // (every other wait ignores it), and it stays set until clear_nudge.
  static constexpr std::uint64_t kNudge = 32;
  static constexpr std::uint64_t kFlags = 0xff;
  static constexpr int kTickShift = 8;
  static constexpr std::uint64_t kTickMask = 0xffffffffull << kTickShift;
  static constexpr int kGenShift = 40;
  static constexpr std::uint32_t kGenMask = 0xffffff;

  static std::uint32_t gen_of(std::uint64_t s) noexcept {
    return static_cast<std::uint32_t>(s >> kGenShift);
  }
  static std::uint64_t next_tick(std::uint64_t s) noexcept {
    return (s & ~kTickMask) | ((s + (1ull << kTickShift)) & kTickMask);
  }

  // state: see the file comment. Every transition is a CAS or RMW.
  std::atomic<std::uint64_t> state{0};
  // waiter: written by the waiting fiber only while it holds kLock with
  // kWaiting (publish); read by the one completer that moved the state from
  // kWaiting to kLock (signal / close), which keeps kLock until it has
  // finished with the Waiter. The waiting fiber, woken any other way
  // (timeout, cancel), retracts: it waits for kLock to clear, then removes
  // kWaiting if still set. So a Waiter on the fiber's stack outlives every
  // completer's use of it.
  Waiter* waiter = nullptr;

  // signal: a readiness event (or close when `close`): ready (plus kHup
  // when `hup`) and a new tick, and completes the waiter if one is parked.
  // Any thread. Ignored when the generation in the state is not `gen` (a
  // recycled slot) or the direction is closed.
  void signal(std::uint32_t gen, bool close, bool hup) noexcept;
  // nudge: sets kNudge and completes the waiter if one is parked, as
  // signal does for an event, but with no kReady and no tick: a wait that
  // does not take kNudge (await's `also`) parks again. Any thread, while
  // the descriptor is open (the caller's protocol keeps it so).
  void nudge(std::uint32_t gen) noexcept;
  void clear_nudge() noexcept { state.fetch_and(~kNudge, std::memory_order_relaxed); }
  static bool ready(std::uint64_t s) noexcept { return (s & (kReady | kHup)) != 0; }
  // clear_ready: the caller saw EAGAIN (or a short transfer) after loading
  // `seen`: clears kReady only if no event came since (same tick).
  void clear_ready(std::uint64_t seen) noexcept {
    if (seen & kReady) {
      state.compare_exchange_strong(seen, seen & ~kReady, std::memory_order_relaxed,
                                    std::memory_order_relaxed);
    }
  }
  // clear_on_eagain: the caller saw EAGAIN after loading `seen`: clears
  // kReady and kHup (see kHup) only if no event came since (same tick).
  void clear_on_eagain(std::uint64_t seen) noexcept {
    if (seen & (kReady | kHup)) {
      state.compare_exchange_strong(seen, seen & ~(kReady | kHup), std::memory_order_relaxed,
                                    std::memory_order_relaxed);
    }
  }
  // await: parks the calling fiber until kReady, kHup or kClosed, or one
  // of the flags in `also` (returns at once if any is set). Throws
  // Cancelled / TimedOut, or std::system_error (operation_in_progress)
  // when another fiber already waits here.
  void await(const char* what, std::uint64_t also = 0);
  // wake_foreign: the reactor of runtime `own` has ended (~Reactor: the
  // direction is kClosed and its descriptor kDetached): a waiter that is
  // not one of own's fibers (a plain thread, a fiber of another runtime)
  // is completed, so it sees the close (runtime_ended) instead of waiting
  // for ever. One of own's fibers parked here was abandoned at shutdown:
  // it is left unwoken (waking it would touch a stopped worker).
  void wake_foreign(const void* own) noexcept;

 private:
  // post: ORs `set` into the state (plus a new tick when `tick`) and
  // completes the parked waiter, if any; signal and nudge.
  void post(std::uint32_t gen, std::uint64_t set, bool tick, std::memory_order order) noexcept;
};

class Reactor;
struct Chunk;

struct Descriptor {
  // life: whose the descriptor is (file comment, "Lifetimes").
  //   kFree     on the reactor's free list (or never used)
  //   kOpen     a handle owns it and the reactor lives
  //   kClosing  Reactor::close is deregistering it (the reactor must live
  //             until it sets kFree, under Reactor::mu_)
  //   kDetached the reactor ended while it was open: rd and wr are
  //             kClosed, fd is still open and owned by the handle, the
  //             slot is never reused; only close_detached may follow.
  // Transitions: kFree->kOpen (open, before the handle exists),
  // kOpen->kClosing (close, CAS), kClosing->kFree (close, under mu_),
  // kOpen->kDetached (~Reactor, CAS). acq_rel/acquire: a detached close
  // must see the reactor's last writes to d (the kClosed bits).
  static constexpr std::uint8_t kFree = 0, kOpen = 1, kClosing = 2, kDetached = 3;
  std::atomic<std::uint8_t> life{kFree};
  // records: reads return one record (a line of a terminal in canonical
  // mode, a SEQPACKET or datagram packet) rather than what the queue holds,
  // so a short read says nothing about what is left: readiness is cleared
  // only by EAGAIN (try_io). Set by the opener before the handle is shared;
  // reset by open.
  bool records = false;
  Dir rd, wr;
  Reactor* reactor = nullptr;  // set once, at chunk creation; see "Lifetimes"
  Chunk* chunk = nullptr;      // set once, at chunk creation
  int fd = -1;
  // home: the worker whose epoll instance holds fd. Written by open (before
  // the handle is shared) and by follow, inside an Inflight guard; read by
  // follow and by close, which waits for in-flight guards first (their
  // release decrement orders the write before close's read).
  std::atomic<int> home{0};
  // A fiber is moving the registration (follow): a second one skips.
  std::atomic<bool> moving{false};
  std::uint32_t slot = 0;
  std::uint32_t gen = 0;  // owner of the handle only (allocation, close)
  // Syscalls in progress on fd: close() waits for them to finish before it
  // closes the fd, so a concurrent operation never reaches a recycled fd
  // number. Paired seq_cst with the kClosed RMW (docs/io.md).
  std::atomic<std::uint32_t> inflight{0};
  // A write_all was cancelled after sending part of its data: every later
  // data operation fails (io::error::write_interrupted). Set by the writer
  // fiber, read by any operation; relaxed: a flag, no data rides on it (a
  // reader racing the cancelled writer may do one more read).
  std::atomic<bool> write_broken{false};
  Descriptor* next_free = nullptr;  // guarded by Reactor::mu_

  // The generation has 24 bits (Dir::kGenMask), so a tag's top byte is 0,
  // never the runtime's (io_hook.hpp kRuntimeTagByte).
  std::uint64_t tag() const noexcept { return (std::uint64_t{gen} << 32) | slot; }
  // The tag the runtime keeps for a fiber waiting to read d (io_hook.hpp,
  // note_read_wait): never 0. Reactor::moved takes it back.
  static constexpr std::uint64_t kMoveTagBit = std::uint64_t{1} << 63;
  std::uint64_t move_tag() const noexcept { return tag() | kMoveTagBit; }
};
static_assert((std::uint64_t{Dir::kGenMask} << 32) >> 56 != spindle::detail::kRuntimeTagByte);

// Chunk: kChunk descriptors allocated together, never moved. Freed when
// refs drops to 0: the reactor's reference goes in ~Reactor, a detached
// descriptor's in close_detached (file comment, "Lifetimes").
struct Chunk {
  static constexpr std::uint32_t kSize = 256;
  std::atomic<std::uint32_t> refs{1};
  Descriptor d[kSize];
};

// closed_error: what an operation on a closed direction of d reports:
// io::error::runtime_ended when the descriptor's runtime has ended
// (detached), else operation_canceled (close() aborted it).
std::error_code closed_error(const Descriptor* d) noexcept;

class Reactor {
 public:
  // The calling fiber's runtime's reactor (created on first use).
  static Reactor& get();

  explicit Reactor(unsigned workers);
  ~Reactor();
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  // open: takes ownership of fd (nonblocking) and registers it with the
  // epoll instance of worker `home` (the calling worker's when negative).
  // `ready_rd`/`ready_wr`: the initial readiness (try the syscall first).
  // On failure closes fd and throws.
  Descriptor* open(int fd, bool ready_rd, bool ready_wr, int home = -1);
  // spread_home: the worker an accepted connection lives on, round robin.
  // Readiness is dispatched by the worker whose instance holds the socket
  // and the fibers it wakes stay there (docs/runtime.md "Readiness wakes
  // stay home"), so the instance a connection is registered in is where it
  // runs: registering every accepted socket with the acceptor's worker
  // left the other workers idle however busy that one was. A worker that
  // consolidates its connections on another (io_hook.hpp,
  // consolidation_target_of) is skipped for its target.
  int spread_home() noexcept;
  // follow: registers d with worker w's instance instead of its home's
  // (EPOLL_CTL_ADD there, then DEL from the old one), so its readiness
  // wakes its fibers on w. For a fiber about to wait on d's read direction
  // after the runtime moved it for load from the worker that d lived on,
  // or whose worker consolidates to w (Reactor::moved; try_io, io_hook.hpp note_read_wait). Skipped
  // while d closes or another fiber moves it; a failed ADD leaves d where
  // it was. ADD reports readiness already present, so no edge is lost; an
  // event the old instance fetched before the DEL still signals d (same
  // generation) and wakes its waiter there once.
  void follow(Descriptor* d, int w) noexcept;
  // moved: the runtime moved a fiber for load to worker w (io_hook.hpp,
  // set_move_listener); `tag` is the move_tag() of the socket it last
  // waited to read. Follows that socket there if it is still open with
  // that generation (the fiber may have closed it since: then the slot is
  // free or another socket's, and nothing moves). Worker w's thread, in
  // its switch path: never blocks.
  void moved(std::uint64_t tag, unsigned w) noexcept;
  // close: aborts waiters (they throw operation_canceled), waits for
  // in-flight syscalls, EPOLL_CTL_DEL, close(fd), recycles the slot. The
  // handle's owner only, once. Static: d's reactor may be gone (its runtime
  // ended); then d is detached and close is a plain ::close(fd) that drops
  // d's chunk reference. Safe on any thread, inside a runtime or not.
  static void close(Descriptor* d) noexcept;

  // dispatch: events the worker read from one of our epoll instances
  // (WorkerPollFn; any worker thread, concurrently).
  void dispatch(const epoll_event* ev, int n) noexcept;

 private:
  Descriptor* alloc();
  int instance(int w) const noexcept { return epfd_[static_cast<unsigned>(w)]; }
  // add: EPOLL_CTL_ADD of d->fd to worker w's instance, with the mask and
  // tag every socket uses (file comment); false with errno on failure.
  bool add(int w, Descriptor* d) noexcept;
  Descriptor* at(std::uint32_t slot) noexcept;
  void close_attached(Descriptor* d) noexcept;  // close, life is kClosing
  static void close_detached(Descriptor* d) noexcept;

  static constexpr std::uint32_t kChunk = Chunk::kSize;
  std::vector<int> epfd_;
  const void* runtime_;  // the runtime whose extension this is (end_runtime)
  // Relaxed: only spreads; no other data hangs on it.
  std::atomic<unsigned> next_home_{0};
  std::mutex mu_;  // rank: leaf; guards chunks_ growth and free_
  // Chunk pointers never move once published: a fixed table, each entry
  // written once (release) before any tag naming it exists.
  static constexpr std::uint32_t kMaxChunks = 1u << 14;  // 4M descriptors
  std::unique_ptr<std::atomic<Chunk*>[]> chunks_;
  std::uint32_t nchunks_ = 0;   // guarded by mu_
  Descriptor* free_ = nullptr;  // guarded by mu_
};

// RAII in-flight guard around one syscall: false from ok() when the
// descriptor is closing (the caller then throws operation_canceled).
class Inflight {
 public:
  explicit Inflight(Descriptor* d) noexcept;
  ~Inflight() { d_->inflight.fetch_sub(1, std::memory_order_release); }
  bool ok() const noexcept { return ok_; }
  Inflight(const Inflight&) = delete;
  Inflight& operator=(const Inflight&) = delete;

 private:
  Descriptor* d_;
  bool ok_;
};

[[noreturn]] void throw_errno(int err, const char* what);
[[noreturn]] void throw_aborted(const char* what);

}  // namespace spindle::io::detail
