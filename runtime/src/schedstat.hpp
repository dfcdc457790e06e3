// schedstat.hpp: a thread's time on a core and time waiting for one, from
// the kernel's /proc/thread-self/schedstat (CONFIG_SCHED_INFO; Debian's
// kernels have it). load.cpp uses it to measure each worker's load; and
// a thread's state letter (read_thread_state), with its CPU clock, to tell
// a worker that has no core (its thread runnable, waiting in the kernel's
// run queue) from one that is busy or blocked (placement.hpp's no-core
// rule, through load.cpp's KernelCpu).
#pragma once

#include <cstdint>

namespace spindle::detail {

struct SchedSample {
  std::int64_t run_ns = -1;   // on a core, since the thread began
  std::int64_t wait_ns = -1;  // runnable but waiting for a core
  bool valid() const noexcept { return run_ns >= 0; }
};

// The calling thread's schedstat file, opened once (close-on-exec), or -1
// where the kernel has none. The descriptor names that thread for good, so
// any thread may read it (read_schedstat) while the thread lives.
int open_schedstat() noexcept;

// One pread of a file from open_schedstat; an invalid sample if fd < 0 or
// the read fails. A system call (~1-2 us): callers read it per load window
// or per decision, never per switch.
SchedSample read_schedstat(int fd) noexcept;

// The calling thread's stat file (/proc/thread-self/stat), opened once
// like open_schedstat, or -1.
int open_thread_stat() noexcept;

// The state letter of a file from open_thread_stat ('R' runnable, on a
// core or waiting for one; 'S', 'D' blocked; ...), or 0 if fd < 0 or the
// read fails. One pread (~2 us).
char read_thread_state(int fd) noexcept;

}  // namespace spindle::detail
