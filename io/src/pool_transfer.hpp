// pool_transfer.hpp: a file transfer of many kFileChunk steps run as ONE
// blocking() job that stops between two steps when its caller is cancelled
// (docs/decisions/0006-files.md "One job per transfer").
//
// Why one job: every pool job costs two thread wake-ups (the pool thread,
// then the caller's worker) that do not overlap the copying; in one job the
// thread that copies never sleeps between steps. A cancel still lands
// within one step. Figures: docs/decisions/0006-files.md "One job per
// transfer".
//
// Every job that copies more than one kFileChunk pauses between steps
// (step_pause, below).
#pragma once

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <exception>
#include <memory>

#include <spindle/io/file.hpp>
#include <spindle/runtime/cancel.hpp>
#include <spindle/runtime/offload.hpp>
#include <spindle/runtime/suspend.hpp>
#include <spindle/sync/event.hpp>

#include "file_ops.hpp"

namespace spindle::io::detail {

// step_pause: between two steps of one pool job, give the CPU to whoever
// waits for it (docs/decisions/0006-files.md "The copy yields between
// steps"). The kernel may place a woken pool thread on its waker's CPU,
// and a worker woken there later (its park timer fires during the copy)
// then waits until the copying thread's slice ends, even with another CPU
// idle. Pausing after each step (at most kFileChunk, ~0.2 ms of copying
// from the page cache) bounds that wait by one step, for one syscall that
// returns at once when nobody waits.
inline void step_pause() noexcept { sched_yield(); }

// run_steps: the one loop of every pool-side transfer. Calls
// step(done, want) for want = min(kFileChunk, n - done), with step_pause()
// between two steps, until n bytes are done, a step moves fewer than it
// was asked (end of file), a step fails (-errno), or stop() says so before
// a step.
struct Steps {
  std::size_t done = 0;
  int err = 0;           // errno of the failed step, or 0
  bool stopped = false;  // stop() ended it before n bytes
};
template <class Step, class Stop>
Steps run_steps(std::size_t n, Step& step, Stop stop) noexcept {
  Steps s;
  while (s.done < n) {
    if (stop()) {
      s.stopped = true;
      break;
    }
    const std::size_t want = std::min(kFileChunk, n - s.done);
    const ssize_t r = step(s.done, want);
    if (r < 0) {
      s.err = static_cast<int>(-r);
      break;
    }
    s.done += static_cast<std::size_t>(r);
    if (static_cast<std::size_t>(r) < want) break;  // end of file
    if (s.done < n) step_pause();
  }
  return s;
}

// in_steps: run_steps for a job that is not stopped midway (the first job
// of read_file / write_file, inside shield()): the bytes done, or -errno.
template <class Step>
ssize_t in_steps(std::size_t n, Step step) noexcept {
  const Steps s = run_steps(n, step, [] { return false; });
  return s.err != 0 ? -s.err : static_cast<ssize_t>(s.done);
}

// TransferState: what the caller and the job share. Heap-allocated and
// held by both (shared_ptr): a caller whose job was withdrawn from the
// queue leaves while the job's closure may still be destroyed elsewhere.
struct TransferState {
  // The job claims 0 -> 1 before its first step; a caller that gives up
  // claims 0 -> 2, and then the job, should it still run, does nothing.
  // acq_rel on both sides: exactly one claim wins.
  std::atomic<int> phase{0};
  // Set by a cancelled caller; the job reads it before each step. Relaxed:
  // it carries no data, and `finished` orders the results.
  std::atomic<bool> stop{false};
  // Written by the job before finished.set() (which releases them to the
  // caller's wait), or before the job returns (blocking()'s completion
  // releases them then). stopped: it left because of `stop`, with steps
  // still to go (not at the end, an error or end of file).
  std::size_t done = 0;
  int err = 0;
  bool stopped = false;
  Event finished;
};

// transfer_in_pool: runs step(done, want) -> ssize_t on the blocking pool
// for want = min(kFileChunk, n - done) until n bytes are done, a step
// returns -errno (err), or a step moves fewer than `want` bytes (end of
// file). Returns the errno (0: none); `done` holds the bytes moved, also
// when it throws. step runs on a pool thread, noexcept, and may use the
// caller's buffers: the caller never leaves while it runs.
// A cancel or an expired deadline scope while the job waits in the queue:
// it never runs. While it runs: it stops before its next step, the caller
// waits for that (shielded), then raises Cancelled / the scope's TimedOut
// with `done` set. A step is never interrupted, and a transfer the job
// finished anyway (the cancel came during its last step) returns as if
// uncancelled: the fiber's cancel mark stays and its next suspension point
// raises it (docs/runtime.md "Cancellation"), so no finished write is
// reported as cut short and no finished read is thrown away.
template <class Step>
SPINDLE_MAY_SUSPEND int transfer_in_pool(std::size_t n, std::size_t& done, Step step) {
  cancel_point();
  // blocking() tells the deadlock detector that its job may still wake the
  // fiber only while blocking() waits; after a cancel the fiber waits on
  // `finished` for a job that still runs, which this guard covers.
  spindle::detail::ExternalWork running;
  auto st = std::make_shared<TransferState>();
  std::exception_ptr interrupted;
  try {
    spindle::blocking([st, n, step]() mutable noexcept {
      int idle = 0;
      if (!st->phase.compare_exchange_strong(idle, 1, std::memory_order_acq_rel)) return;  // given up
      const Steps s = run_steps(n, step, [&] { return st->stop.load(std::memory_order_relaxed); });
      st->done = s.done;
      st->err = s.err;
      st->stopped = s.stopped;
      st->finished.set();
    });
  } catch (...) {
    // Cancelled or TimedOut (or the pools stopped, or the job could not be
    // queued): settled below, outside the handler.
    interrupted = std::current_exception();
  }
  if (interrupted) {
    st->stop.store(true, std::memory_order_relaxed);
    int idle = 0;
    if (!st->phase.compare_exchange_strong(idle, 2, std::memory_order_acq_rel)) {
      // The job has started: wait for it to stop at a step boundary.
      spindle::shield([&] { st->finished.wait(); });
      done = st->done;
      if (!st->stopped) return st->err;  // it finished: the cancel stays pending
    }
    std::rethrow_exception(interrupted);
  }
  done = st->done;
  return st->err;
}

}  // namespace spindle::io::detail
