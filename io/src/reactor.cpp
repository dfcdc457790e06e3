// reactor.cpp: the readiness core (reactor.hpp; docs/io.md).
#include "reactor.hpp"

#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <system_error>
#include <thread>

#include <spindle/io/error.hpp>
#include <spindle/runtime/cancel.hpp>
#include <spindle/runtime/detail/io_hook.hpp>
#include <spindle/runtime/detail/spinlock.hpp>
#include <spindle/runtime/this_fiber.hpp>

namespace spindle::io::detail {

namespace {

// Spins on a kLock holder: a completer or publisher between two of its own
// instructions (no syscall, no suspension in between), so a few pauses
// normally suffice; yield the thread if its holder was preempted.
void backoff(int& i) noexcept {
  if (++i < 64) {
    spindle::detail::spin_hint();
  } else {
    std::this_thread::yield();
  }
}

void* make_reactor(unsigned workers) { return new Reactor(workers); }
void destroy_reactor(void* r) noexcept { delete static_cast<Reactor*>(r); }

}  // namespace

[[noreturn]] void throw_errno(int err, const char* what) {
  throw std::system_error(err, std::system_category(), what);
}

[[noreturn]] void throw_aborted(const char* what) {
  throw std::system_error(std::make_error_code(std::errc::operation_canceled), what);
}

std::error_code closed_error(const Descriptor* d) noexcept {
  if (d->life.load(std::memory_order_acquire) == Descriptor::kDetached) return make_error_code(error::runtime_ended);
  return std::make_error_code(std::errc::operation_canceled);
}

// ---- Dir ------------------------------------------------------------------

void Dir::signal(std::uint32_t gen, bool close, bool hup) noexcept {
  // seq_cst for close: it pairs with Inflight's seq_cst load (docs/io.md
  // "Close").
  post(gen, (close ? kClosed : kReady) | (hup ? kHup : 0), true,
       close ? std::memory_order_seq_cst : std::memory_order_acq_rel);
}

void Dir::nudge(std::uint32_t gen) noexcept { post(gen, kNudge, false, std::memory_order_acq_rel); }

void Dir::post(std::uint32_t gen, std::uint64_t set, bool tick, std::memory_order order) noexcept {
  std::uint64_t s = state.load(std::memory_order_relaxed);
  int spins = 0;
  for (;;) {
    if (gen_of(s) != (gen & kGenMask) || (s & kClosed)) return;  // recycled or closed
    if (s & kLock) {
      backoff(spins);
      s = state.load(std::memory_order_relaxed);
      continue;
    }
    std::uint64_t ns = (tick ? next_tick(s) : s) | set;
    if (s & kWaiting) ns = (ns & ~kWaiting) | kLock;
    // acq_rel (at least): acquire pairs with the publisher's release of
    // kLock (its write of `waiter`); release orders this event before the
    // woken fiber's acquire load of the state.
    if (state.compare_exchange_weak(s, ns, order, std::memory_order_relaxed)) break;
  }
  if (!(s & kWaiting)) return;
  // We own `waiter` until kLock clears: its fiber, if woken another way,
  // waits in retract for that (reactor.hpp, Dir::waiter).
  Waiter* w = waiter;
  const bool won = w->try_complete(Waiter::notified);
  // release; pairs with the acquire load in the fiber's retract.
  state.fetch_and(~kLock, std::memory_order_release);
  // Only the winner wakes, after releasing kLock: the fiber stays suspended
  // until this wake, so w is alive.
  if (won) spindle::detail::wake(*w);
}

void Dir::wake_foreign(const void* own) noexcept {
  std::uint64_t s = state.load(std::memory_order_relaxed);
  int spins = 0;
  for (;;) {
    if (!(s & kWaiting)) return;  // kClosed is set: nobody publishes any more
    if (s & kLock) {  // a retracting fiber
      backoff(spins);
      s = state.load(std::memory_order_relaxed);
      continue;
    }
    // acquire: pairs with the publisher's release of kLock (its write of
    // `waiter`), as post's.
    if (state.compare_exchange_weak(s, (s & ~kWaiting) | kLock, std::memory_order_acquire,
                                    std::memory_order_relaxed))
      break;
  }
  Waiter* w = waiter;
  const bool foreign = w->fiber == nullptr || spindle::detail::runtime_of(w->fiber) != own;
  const bool won = foreign && w->try_complete(Waiter::notified);
  // release; pairs with the acquire load in the fiber's retract.
  state.fetch_and(~kLock, std::memory_order_release);
  if (won) spindle::detail::wake(*w);
}

void Dir::await(const char* what, std::uint64_t also) {
  Waiter w;
  bool published = false;
  bool busy = false;
  // The deadlock detector must not take fibers parked on sockets for a
  // deadlock: readiness comes from outside.
  spindle::detail::ExternalWork external;
  auto publish = [&]() noexcept -> bool {
    std::uint64_t s = state.load(std::memory_order_relaxed);
    int spins = 0;
    for (;;) {
      if (s & (kReady | kHup | kClosed | also)) return false;  // w never became visible
      if (s & kWaiting) {
        busy = true;  // a second fiber on this direction
        return false;
      }
      if (s & kLock) {
        backoff(spins);
        s = state.load(std::memory_order_relaxed);
        continue;
      }
      if (state.compare_exchange_weak(s, s | kWaiting | kLock, std::memory_order_acquire,
                                      std::memory_order_relaxed)) {
        break;
      }
    }
    waiter = &w;
    published = true;
    // release; pairs with the acq_rel CAS in signal (the write of waiter).
    state.fetch_and(~kLock, std::memory_order_release);
    return true;
  };
  const Waiter::State st = spindle::detail::suspend(w, nullptr, publish, what);
  if (published && st != Waiter::notified) {
    // Retract: w must be unreachable before it dies.
    std::uint64_t s = state.load(std::memory_order_acquire);
    int spins = 0;
    for (;;) {
      if (s & kLock) {  // a completer holds w: wait until it let go
        backoff(spins);
        s = state.load(std::memory_order_acquire);
        continue;
      }
      if (!(s & kWaiting)) break;  // a completer took w and let go of it
      // kWaiting with no kLock: w is still ours (only we set kWaiting).
      if (state.compare_exchange_weak(s, s & ~kWaiting, std::memory_order_acquire,
                                      std::memory_order_acquire)) {
        break;
      }
    }
  }
  if (busy) {
    throw std::system_error(std::make_error_code(std::errc::operation_in_progress),
                            "spindle::io: another fiber is already waiting in this direction");
  }
  spindle::detail::throw_if_cancelled(st);
}

// ---- Inflight -------------------------------------------------------------

Inflight::Inflight(Descriptor* d) noexcept : d_(d) {
  // seq_cst both: pairs with close(), which sets kClosed (seq_cst RMW) and
  // then reads inflight (seq_cst). Either close sees us and waits, or we see
  // kClosed and do not touch the fd.
  d->inflight.fetch_add(1, std::memory_order_seq_cst);
  ok_ = !(d->rd.state.load(std::memory_order_seq_cst) & Dir::kClosed);
}

// ---- Reactor --------------------------------------------------------------

Reactor& Reactor::get() {
  return *static_cast<Reactor*>(spindle::detail::runtime_extension(&make_reactor, &destroy_reactor));
}

Reactor::Reactor(unsigned workers)
    : runtime_(spindle::detail::current_runtime()), chunks_(new std::atomic<Chunk*>[kMaxChunks]) {
  for (std::uint32_t i = 0; i < kMaxChunks; ++i) chunks_[i].store(nullptr, std::memory_order_relaxed);
  epfd_.reserve(workers);
  for (unsigned i = 0; i < workers; ++i) {
    const int fd = epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0) {
      const int err = errno;
      for (int e : epfd_) ::close(e);
      throw_errno(err, "spindle::io: epoll_create1");
    }
    epfd_.push_back(fd);
  }
  for (unsigned i = 0; i < workers; ++i) {
    spindle::detail::set_worker_poller(
        i, epfd_[i],
        [](void* ctx, const epoll_event* ev, int n) noexcept { static_cast<Reactor*>(ctx)->dispatch(ev, n); },
        this);
  }
  spindle::detail::set_move_listener(
      [](void* ctx, std::uint64_t tag, unsigned w) noexcept { static_cast<Reactor*>(ctx)->moved(tag, w); }, this);
}

Reactor::~Reactor() {
  // Every worker has stopped (runtime_extension): no fiber can open,
  // signal or wait on a descriptor now. A handle's owner on another thread
  // may still close one (Reactor::close is static): the life CAS decides
  // which of us handles each open descriptor (reactor.hpp, "Lifetimes").
  for (std::uint32_t i = 0; i < nchunks_; ++i) {
    Chunk* c = chunks_[i].load(std::memory_order_relaxed);
    for (Descriptor& d : c->d) {
      // The reference first: a concurrent close_detached of d must not see
      // refs reach 0 while we still walk the chunk. Ours (the chunk's base
      // reference) keeps it above 0 until the end anyway; this one is d's.
      c->refs.fetch_add(1, std::memory_order_relaxed);
      std::uint8_t v = d.life.load(std::memory_order_acquire);
      int spins = 0;
      bool detached = false;
      for (;;) {
        if (v == Descriptor::kOpen) {
          // The kClosed bits before the kDetached publication: whoever
          // sees kDetached (acquire) sees them, so no later operation parks
          // on a direction nobody will ever signal. Plain RMWs, not signal:
          // a fiber abandoned at shutdown may still be published as a
          // waiter, and waking it would touch a stopped worker (the other
          // waiters are woken below, once kDetached is there to read).
          d.rd.state.fetch_or(Dir::kClosed, std::memory_order_relaxed);
          d.wr.state.fetch_or(Dir::kClosed, std::memory_order_relaxed);
          if (d.life.compare_exchange_weak(v, Descriptor::kDetached, std::memory_order_acq_rel,
                                           std::memory_order_acquire)) {
            detached = true;
            break;
          }
          continue;  // a closer took it meanwhile: it sets kFree, below
        }
        if (v == Descriptor::kClosing) {  // a close in progress uses us: let it end
          backoff(spins);
          v = d.life.load(std::memory_order_acquire);
          continue;
        }
        break;  // kFree (or already detached: cannot happen, one reactor per chunk)
      }
      if (!detached) c->refs.fetch_sub(1, std::memory_order_relaxed);
    }
  }
  // A plain thread or another runtime's fiber waiting on one of ours is
  // woken now (it waited for ever for an event no loop would deliver) and
  // reads runtime_ended: kDetached was published before (a wake in the
  // pass above let it read kClosed on a still open descriptor, and take
  // it for a close of its own: operation_canceled). The chunks are ours
  // still (their base references).
  for (std::uint32_t i = 0; i < nchunks_; ++i) {
    for (Descriptor& d : chunks_[i].load(std::memory_order_relaxed)->d) {
      if (d.life.load(std::memory_order_acquire) != Descriptor::kDetached) continue;
      d.rd.wake_foreign(runtime_);
      d.wr.wake_foreign(runtime_);
    }
  }
  // A closer's last step (kFree) is inside mu_: once we hold it, that
  // closer has left mu_ too, and nothing of ours is in use.
  { std::lock_guard lk(mu_); }
  for (int e : epfd_) ::close(e);
  for (std::uint32_t i = 0; i < nchunks_; ++i) {
    Chunk* c = chunks_[i].load(std::memory_order_relaxed);
    // acq_rel: the last owner of a reference frees the chunk after every
    // other owner's last use of it.
    if (c->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete c;
  }
}

Descriptor* Reactor::at(std::uint32_t slot) noexcept {
  // acquire; pairs with the release in alloc() that published the chunk.
  return &chunks_[slot / kChunk].load(std::memory_order_acquire)->d[slot % kChunk];
}

Descriptor* Reactor::alloc() {
  std::lock_guard lk(mu_);
  if (free_ == nullptr) {
    if (nchunks_ == kMaxChunks) throw_errno(EMFILE, "spindle::io: descriptor table full");
    auto* c = new Chunk;
    for (std::uint32_t i = kChunk; i-- > 0;) {
      Descriptor& d = c->d[i];
      d.slot = nchunks_ * kChunk + i;
      d.reactor = this;
      d.chunk = c;
      d.next_free = free_;
      free_ = &d;
    }
    // release; pairs with the acquire in at().
    chunks_[nchunks_++].store(c, std::memory_order_release);
  }
  Descriptor* d = free_;
  free_ = d->next_free;
  d->next_free = nullptr;
  return d;
}

int Reactor::spread_home() noexcept {
  const int w = static_cast<int>(next_home_.fetch_add(1, std::memory_order_relaxed) % epfd_.size());
  const int to = spindle::detail::consolidation_target_of(static_cast<unsigned>(w));
  return to >= 0 && static_cast<std::size_t>(to) < epfd_.size() ? to : w;
}

Descriptor* Reactor::open(int fd, bool ready_rd, bool ready_wr, int home) {
  Descriptor* d;
  try {
    d = alloc();
  } catch (...) {
    ::close(fd);
    throw;
  }
  // The caller's worker, when it names one of ours: a fiber of another
  // runtime (a listener shared between runtimes) has an index of its own
  // runtime, which may be past this reactor's instances (before: epfd_[w]
  // read out of bounds, and the accepted socket was dropped or went to a
  // descriptor nobody polls). Any of ours is polled, so in range is enough.
  const int caller = spindle::this_fiber::worker_index();
  const int w = home >= 0 ? home : (caller < 0 || static_cast<std::size_t>(caller) >= epfd_.size() ? 0 : caller);
  d->fd = fd;
  d->home.store(w, std::memory_order_relaxed);
  const std::uint64_t g = std::uint64_t{d->gen} << Dir::kGenShift;
  // Relaxed: the epoll_ctl below orders these before any event naming the
  // tag (the kernel hands the tag over; TSan models it as a release on the
  // epoll fd and an acquire in epoll_wait), and no other fiber has d yet.
  d->rd.state.store(g | (ready_rd ? Dir::kReady : 0), std::memory_order_relaxed);
  d->wr.state.store(g | (ready_wr ? Dir::kReady : 0), std::memory_order_relaxed);
  d->write_broken.store(false, std::memory_order_relaxed);
  d->records = false;
  // Relaxed: no one else has d yet; the handle's hand-over publishes it.
  d->life.store(Descriptor::kOpen, std::memory_order_relaxed);
  if (!add(w, d)) {
    const int err = errno;
    close(d);
    throw_errno(err, "spindle::io: epoll_ctl(ADD)");
  }
  return d;
}

bool Reactor::add(int w, Descriptor* d) noexcept {
  epoll_event ev{};
  // EPOLLPRI: TCP urgent data (dispatch, kHup).
  ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI | EPOLLET;
  ev.data.u64 = d->tag();
  return epoll_ctl(instance(w), EPOLL_CTL_ADD, d->fd, &ev) == 0;
}

void Reactor::follow(Descriptor* d, int w) noexcept {
  if (w < 0 || static_cast<unsigned>(w) >= epfd_.size()) return;
  if (d->home.load(std::memory_order_relaxed) == w) return;
  // acquire; pairs with the release below by the last mover, whose home
  // store we then read.
  if (d->moving.exchange(true, std::memory_order_acquire)) return;
  const int old = d->home.load(std::memory_order_relaxed);
  if (old != w) {
    Inflight in(d);  // close waits for us: fd and gen stay ours until then
    if (in.ok()) {
      // ADD first: if it fails, d is still registered where it was. Until
      // the DEL both instances may report d; a duplicate signal costs at
      // most one extra try of the syscall.
      if (add(w, d)) {
        (void)epoll_ctl(instance(old), EPOLL_CTL_DEL, d->fd, nullptr);
        d->home.store(w, std::memory_order_relaxed);
      }
    }
  }
  d->moving.store(false, std::memory_order_release);
}

void Reactor::moved(std::uint64_t tag, unsigned w) noexcept {
  tag &= ~Descriptor::kMoveTagBit;
  const auto slot = static_cast<std::uint32_t>(tag);
  const auto gen = static_cast<std::uint32_t>(tag >> 32);
  // The slot was allocated once (the fiber waited on it), so its chunk is
  // published, and chunks live as long as the reactor. The guard first:
  // while we hold it a close of d waits, and a d that is closed or free
  // has kClosed set (ok() false). Neither touches anything but the two
  // atomics; open() never resets inflight (a recycled slot's is 0), so a
  // stale guard's increment and decrement stay balanced.
  Descriptor* d = at(slot);
  Inflight in(d);
  if (!in.ok()) return;
  // A matching generation is the socket the fiber waited on, still open:
  // its open() happened before that wait, and the wait before the move
  // that brought the fiber here, so follow may read its fd.
  if (Dir::gen_of(d->rd.state.load(std::memory_order_relaxed)) != gen) return;
  follow(d, static_cast<int>(w));
}

void Reactor::close(Descriptor* d) noexcept {
  std::uint8_t v = Descriptor::kOpen;
  // acq_rel: on success the reactor is pinned (~Reactor waits for kFree);
  // on failure (kDetached) we see the destructor's writes to d.
  if (d->life.compare_exchange_strong(v, Descriptor::kClosing, std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
    d->reactor->close_attached(d);
  } else {
    close_detached(d);
  }
}

void Reactor::close_detached(Descriptor* d) noexcept {
  // The reactor and its epoll instances are gone (closing them dropped
  // every registration); the fd is still ours. No fiber can be using d:
  // every operation on a detached descriptor fails before its syscall.
  if (d->fd >= 0) ::close(d->fd);
  d->fd = -1;
  Chunk* c = d->chunk;
  // The slot is never reused (its free list died with the reactor). The
  // last reference frees the chunk (reactor.hpp, Chunk).
  if (c->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete c;
}

void Reactor::close_attached(Descriptor* d) noexcept {
  // 1. kClosed on both directions, completing any waiter (it throws
  //    operation_canceled). No event can complete a waiter after this:
  //    signal ignores a closed direction, and await never parks on one.
  d->rd.signal(d->gen, true, false);
  d->wr.signal(d->gen, true, false);
  // 2. Wait for syscalls already past their Inflight check (nonblocking
  //    ones: microseconds).
  int spins = 0;
  while (d->inflight.load(std::memory_order_seq_cst) != 0) backoff(spins);
  // 3. Deregister, then close: the fd number can be reused only now.
  //    A poller may still hold an event with the old tag; the generation
  //    bump below makes signal ignore it.
  if (d->fd >= 0) {
    (void)epoll_ctl(instance(d->home.load(std::memory_order_relaxed)), EPOLL_CTL_DEL, d->fd, nullptr);
    ::close(d->fd);
  }
  d->fd = -1;
  std::lock_guard lk(mu_);
  d->gen = (d->gen + 1) & Dir::kGenMask;
  d->next_free = free_;
  free_ = d;
  // Last, under mu_: ~Reactor, once it sees kFree, takes mu_ before it
  // frees anything (reactor.hpp, "Lifetimes"). release: with the acquire
  // loads in ~Reactor.
  d->life.store(Descriptor::kFree, std::memory_order_release);
}

void Reactor::dispatch(const epoll_event* ev, int n) noexcept {
  for (int k = 0; k < n; ++k) {
    const std::uint64_t tag = ev[k].data.u64;
    const auto slot = static_cast<std::uint32_t>(tag);
    const auto gen = static_cast<std::uint32_t>(tag >> 32);
    Descriptor* d = at(slot);
    const std::uint32_t e = ev[k].events;
    // Errors and hang-ups wake both sides: the syscall reports them.
    // The end of the stream (or an error) is sticky: a short read that
    // clears kReady must not hide a FIN queued behind the data it read.
    // So is TCP urgent data (EPOLLPRI): a read stops at the urgent mark
    // with bytes queued behind it, and the peer's `a`, urgent `X`, `b`
    // left `b` unread until the peer sent more (a review's probe).
    const bool hup = (e & (EPOLLHUP | EPOLLERR)) != 0;
    if (e & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR | EPOLLPRI)) {
      d->rd.signal(gen, false, hup || (e & (EPOLLRDHUP | EPOLLPRI)) != 0);
    }
    if (e & (EPOLLOUT | EPOLLHUP | EPOLLERR)) d->wr.signal(gen, false, hup);
  }
}

}  // namespace spindle::io::detail
