// options.hpp: how a Runtime and a spawned fiber are configured.
#pragma once

#include <chrono>
#include <cstddef>
#include <spindle/runtime/source_location.hpp>
#include <string>

namespace spindle {

// RuntimeOptions configures a Runtime (and `run`). Plain data; copy freely.
// A duration past ten years (milliseconds::max() for "no limit" included)
// counts as ten years (detail::capped: in the clock's nanoseconds it would
// overflow).
struct RuntimeOptions {
  // Number of worker threads. 0 means std::thread::hardware_concurrency().
  // 1 is a supported single-threaded mode.
  unsigned workers = 0;
  // Default stack size of a fiber (bytes, rounded up to the page size). Only
  // touched pages cost memory, so the default is small but roomy. Over 1 GiB:
  // std::length_error from the Runtime's constructor.
  std::size_t stack_size = 64 * 1024;
  // Put a PROT_NONE guard page below every stack so an overflow is caught and
  // reported with the fiber's name. Past a share of vm.max_map_count the pool
  // hands out unguarded stacks (and says so once on stderr); see
  // docs/runtime.md "Stacks".
  bool guard_pages = true;
  // Threads of this runtime's CPU offload pool and blocking pool (0 = the
  // defaults, hardware_concurrency() and 64; offload.hpp).
  unsigned offload_threads = 0;
  unsigned blocking_threads = 0;
  // CPU offload threads run at the lowest priority (SCHED_IDLE and nice 19,
  // Linux): a worker thread that wakes (a timer, I/O, a wake-up) takes the
  // core from them at once instead of waiting out their time slice, so
  // fibers keep sub-millisecond timing while CPU-bound jobs use every
  // otherwise idle cycle (docs/runtime.md "Offload" has the figures). The
  // cost is real: when other processes keep the cores busy, the jobs get a
  // tiny share (beside two CPU-bound processes the offload workload took
  // seconds instead of 70 ms). Set false on shared or loaded machines. Threads that
  // jobs start inherit the low priority (Linux lets an unprivileged thread
  // lower its priority, never raise it); the blocking pool's are started at
  // the runtime's. Like offload_threads, read when this runtime's offload
  // pool is created (by its first offload()).
  bool offload_low_priority = true;
  // Pin worker i to the i-th CPU of the affinity that the thread creating
  // the Runtime has (the process's, or what `taskset` gave it), modulo its
  // size. The kernel may keep two busy workers on one CPU while another
  // idles (seen on a 2-vCPU VM for whole 5 ms runs: docs/runtime.md
  // "Pinned workers"); pinned, it cannot, but a worker also cannot leave a
  // CPU that another process keeps busy, so it is off by default: for
  // machines the program has to itself. The offload and blocking pools'
  // threads keep the unpinned affinity; a std::thread started from a fiber
  // inherits its worker's single CPU (set its affinity yourself).
  bool pin_workers = false;
  // A fiber running longer than this without suspending is reported on
  // stderr by name. Zero disables the monitor thread.
  std::chrono::milliseconds slow_fiber_threshold{0};
  // A worker that has run one fiber for longer than this without suspending
  // is *stuck* for the others: an idle worker fires its due timers and asks
  // it (with SIGURG, handled only while the fiber runs user code) to put its
  // queued fibers where idle workers can take them, so one CPU-bound fiber
  // never strands the work queued behind it while a core idles
  // (docs/runtime.md "Hand-off"). Zero turns both off; the due timers of a
  // busy worker are then fired only by that worker. With 1 worker there is
  // nobody to take over, and nothing happens.
  std::chrono::microseconds handoff_after{200};
  // Connections (sockets, pipes) go where a core serves them best
  // (docs/io.md "Where a connection lives"; the rules and their constants:
  // docs/decisions/0017-placement.md):
  //  - those that several workers serve while fewer would keep up
  //    consolidate on the lower-numbered workers (a worker whose load and
  //    another's fit on one core moves each socket it waits to read to
  //    that one), which saves the wake-ups of workers with little to do;
  //  - a worker whose thread waits for a core (the machine has more busy
  //    threads than cores) is not stuck: nothing is taken from it (but its
  //    due timers) until it has been in one fiber for 25 handoff_after
  //    periods, and then its sockets stay;
  //  - a saturated worker's connections spread only while spreading buys
  //    a core: a spread after which the workers wait for cores backs the
  //    next ones off (100 ms, doubling to 5 s).
  // Off: a connection stays where accept put it until a hand-off moves it,
  // and every hand-off of a stuck, slow or saturated worker moves sockets.
  // Needs handoff_after.
  bool consolidate_io = true;
  // A worker that stole fibers which ran there for less than a few
  // cache-line transfers each (their work, whatever they spawned, and
  // moving them; the transfer as the worker's steals measure it) pauses its
  // stealing: the steal slowed their owner down more than it helped (50 us,
  // doubling while it goes on, at most 1 ms; a worker stuck in one fiber is
  // still handed off at once). This caps that bar: fibers that ran for
  // longer are always worth stealing. docs/runtime.md "Stealing what pays".
  // 400 ns is three transfers between cores at the slowest measured; zero
  // turns pausing off.
  std::chrono::nanoseconds steal_worth{400};
  // How long shutdown waits for cancelled fibers to finish before it reports
  // the ones left and gives up on them.
  std::chrono::milliseconds shutdown_timeout{2000};
  // When every worker is parked, no timer, I/O or offload is pending and
  // fibers are still alive, nothing in the runtime can wake them. After this
  // quiet period `run`/`block_on` fail with spindle::Deadlock and a fiber
  // dump. The runtime cannot see a plain thread that will wake a fiber later
  // (set an Event, send on a Channel): such a thread should hold a
  // spindle::detail::ExternalWork guard meanwhile. 1 s rather than less
  // because a plain thread on a loaded machine can stall for over 100 ms
  // (seen in the wake stress test). Zero disables the detector.
  std::chrono::milliseconds deadlock_grace{1000};
  // Raise the process's descriptor limit (RLIMIT_NOFILE's soft limit) to
  // its hard limit, once per process (the first Runtime created with this
  // on does it; later ones find it done), as Go does at start: spindle
  // never uses select(2), and at the common soft limit of 1,024 a server
  // runs out of descriptors at a few hundred connections. Children the
  // process starts inherit the raised limit (a child that uses select(2)
  // and opens more than 1,024 descriptors overflows its fd_set; start it
  // through `sh -c 'ulimit -n 1024; exec prog'`), and so does any library
  // in the process. Off: this Runtime leaves the limit alone.
  // docs/runtime.md "Descriptor limit".
  bool raise_fd_limit = true;
  // Print the fiber dump on SIGQUIT (handled on worker 0's loop). Only while
  // nobody else handles SIGQUIT: the runtime installs its handler over
  // SIG_DFL or SIG_IGN only, and puts that back when it ends
  // (docs/runtime.md "Observability").
  bool dump_on_sigquit = true;
};

// SpawnOptions names a fiber and sizes its stack. Its `where` member records
// the call site of the aggregate initialisation, which is the spawn call.
struct SpawnOptions {
  std::string name{};
  std::size_t stack_size = 0;  // 0: the runtime's default; over 1 GiB: std::length_error at spawn
  spindle::source_location where = spindle::source_location::current();
};

}  // namespace spindle
