// io_hook.hpp: the two things the io layer needs from the runtime, kept free
// of io types: a per-runtime object it owns, and a per-worker poll callback.
//
// A worker poller is an epoll instance (the io layer's, one per worker)
// plus a callback that takes the io layer's events. The worker waits on
// that instance itself: parked, it blocks in it (epoll_pwait2, so a timer
// deadline keeps nanosecond precision); busy, it polls it without blocking
// in every maintenance() round; an idle worker that finds another worker
// stuck in one fiber (docs/runtime.md "Hand-off") polls that worker's
// instance too. One epoll_wait per wake-up, nothing nested: the worker adds
// its own entries (its wake eventfd, its libuv loop's backend fd) to the
// instance with tags whose top byte is kRuntimeTagByte, and passes every
// other event to the callback. So the io layer's tags must never have that
// top byte; the callback must be safe to run on any worker thread,
// concurrently with itself for the same worker, and must not suspend. It
// may call wake().
#pragma once

#include <cstdint>

struct epoll_event;

namespace spindle::detail {

inline constexpr std::uint64_t kRuntimeTagByte = 0xff;  // epoll_event.data.u64 >> 56
using WorkerPollFn = void (*)(void* ctx, const epoll_event* events, int n) noexcept;

// runtime_extension: the calling fiber's runtime's io object: created by
// make(worker_count) on the first call (under a lock; make must not
// suspend), destroyed by destroy() after the workers have stopped. Later
// calls return the same pointer (they must pass the same functions). Only
// on a fiber.
void* runtime_extension(void* (*make)(unsigned workers), void (*destroy)(void*) noexcept);

// current_runtime: the calling worker's runtime (nullptr off a worker);
// runtime_of: fiber f's. Identities to compare (a runtime_extension's make
// may record its runtime's), never to dereference.
class Fiber;
const void* current_runtime() noexcept;
const void* runtime_of(const Fiber* f) noexcept;

// set_worker_poller: installs the poller of worker `worker` of the calling
// fiber's runtime (once per worker; fd and ctx must live until destroy()).
// The owner adds its entries to fd and polls it (and parks in it) from its
// next maintenance round on, and is unparked for that; a rescuer polls it
// as soon as it is set. Any thread.
void set_worker_poller(unsigned worker, int fd, WorkerPollFn fn, void* ctx) noexcept;

// Where a socket lives (docs/io.md "Where a connection lives"). The io layer
// holds no placement policy: it tells the runtime which socket a fiber
// waits to read, and the runtime tells it where that socket should go.
//
// note_read_wait: the calling fiber is about to wait for readiness to read
// the socket `tag` names (io's own value, never 0; the runtime stores it
// with the fiber). Returns the worker whose instance the socket should be
// registered with for this wait, or -1 to leave it: the worker its worker
// consolidates its sockets to (runtime/src/placement.hpp, rule 5), or,
// for a fiber pinned to its worker (hop_to_worker), that worker (the
// socket follows a pinned fiber's hops). -1 off a fiber, and -1 without
// storing the tag unless `owner` (the socket's io object) is the one
// runtime_extension made for the calling fiber's runtime: a tag names a
// slot of its own io object only, and the worker returned is one of this
// runtime's (a socket of another, running runtime is not moved along).
int note_read_wait(const void* owner, std::uint64_t tag) noexcept;

// set_move_listener: fn(ctx, tag, worker) is called once each time the
// runtime moves a fiber for load away from the worker whose instance holds
// its socket (a hand-off from a stuck, slow or saturated worker, or a
// rescuer's poll of a stuck worker's instance: placement.hpp), with the tag
// that fiber last passed to note_read_wait, on the thread of worker
// `worker`, where it now runs, just before it resumes there. fn runs in the
// runtime's switch path: it must not suspend or block, and should be
// short (io moves that one socket's registration). The calling fiber's
// runtime; once; fn and ctx must live until the runtime's extension is
// destroyed (runtime_extension).
using MoveFn = void (*)(void* ctx, std::uint64_t tag, unsigned worker) noexcept;
void set_move_listener(MoveFn fn, void* ctx) noexcept;

// consolidation_target_of: the worker that worker `worker` of the calling
// fiber's runtime consolidates its sockets to, or -1 (a hint: it changes once a load window). An
// accepted socket is placed there rather than on a worker that would move
// it at its first wait. -1 off a fiber.
int consolidation_target_of(unsigned worker) noexcept;

}  // namespace spindle::detail
