// io_hook.hpp: the two things the io layer needs from the runtime, kept free
// of io types: a per-runtime object it owns, and a per-worker poll callback.
//
// A worker poller is an fd (the io layer's epoll instance for that worker)
// plus a callback. The worker watches the fd with one permanent, unref'd
// uv_poll_t in its own loop, so a parked worker (uv_run UV_RUN_ONCE) wakes
// when it becomes readable and runs the callback there; a busy worker calls
// the callback in every maintenance() round (non-blocking); an idle worker
// that finds another worker stuck in one fiber (docs/runtime.md "Hand-off")
// calls that worker's callback too. So the callback must be safe to run on
// any worker thread, concurrently with itself for the same worker, and must
// not suspend. It may call wake().
#pragma once

namespace spindle::detail {

using WorkerPollFn = void (*)(void* ctx, unsigned worker) noexcept;

// runtime_extension: the calling fiber's runtime's io object: created by
// make(worker_count) on the first call (under a lock; make must not
// suspend), destroyed by destroy() after the workers have stopped. Later
// calls return the same pointer (they must pass the same functions). Only
// on a fiber.
void* runtime_extension(void* (*make)(unsigned workers), void (*destroy)(void*) noexcept);

// set_worker_poller: installs the poller of worker `worker` of the calling
// fiber's runtime (once per worker; fd and ctx must live until destroy()).
// The worker starts watching fd at its next maintenance round (it is
// unparked for it); the callback is called from then on. Any thread.
void set_worker_poller(unsigned worker, int fd, WorkerPollFn fn, void* ctx) noexcept;

}  // namespace spindle::detail
