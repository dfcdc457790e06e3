// runtime.hpp: Runtime (long-lived embedding) and run (asyncio.run).
#pragma once

#include <iosfwd>
#include <memory>
#include <optional>
#include <spindle/runtime/source_location.hpp>
#include <type_traits>
#include <utility>

#include <spindle/runtime/cancel.hpp>
#include <spindle/runtime/errors.hpp>
#include <spindle/runtime/options.hpp>
#include <spindle/runtime/spawn.hpp>
#include <spindle/runtime/stats.hpp>

namespace spindle {

namespace detail {
class Scheduler;
// Called when block_on's main fiber ends (however it ends).
void main_finished(Scheduler* s) noexcept;
}

// Runtime owns the worker threads, their loops and stack pools, and its
// offload and blocking pools (offload.hpp). Construct it on a plain thread
// (never on a fiber). The constructor starts the workers, which park in
// their loops until work arrives; the pools start with their first job.
//
// Shutdown protocol (docs/runtime.md "Shutdown"):
//  1. cancel every live fiber;
//  2. wait up to options.shutdown_timeout for them to finish;
//  3. report the ones left (fiber dump on stderr) and abandon them;
//  4. stop the runtime's offload and blocking pools: queued jobs fail with
//     Cancelled, running ones finish, their threads are joined (offload.hpp;
//     one still running after shutdown_timeout is named on stderr);
//  5. stop and join the workers, close every loop;
//  6. fibers still alive are abandoned for good: never woken again, their
//     stacks kept (what links to them stays valid), a join raises Cancelled.
class Runtime {
 public:
  explicit Runtime(RuntimeOptions options = {});
  ~Runtime();  // calls shutdown()
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  // block_on: runs f as a fiber named "main" and blocks the calling plain
  // thread until it finishes; returns its value or rethrows its exception.
  // Throws spindle::Deadlock when every fiber is blocked with nothing left
  // to wake them (the fiber dump goes to stderr). Not from a fiber.
  // One block_on at a time per Runtime. `where` is the main fiber's spawn
  // site in dumps and reports: the caller's block_on (or run) call.
  template <class F>
  auto block_on(F&& f, spindle::source_location where = spindle::source_location::current()) {
    detail::Scheduler* s = sched_.get();
    begin_main();
    auto body = [s, fn = std::forward<F>(f)]() mutable {
      struct Signal {
        detail::Scheduler* s;
        ~Signal() { detail::main_finished(s); }
      } signal{s};
      return fn();
    };
    SpawnOptions opts{.name = "main", .where = where};
    auto task = detail::make_task(s, &opts, opts.where, std::move(body));
    wait_main();  // throws Deadlock
    // main has finished (or the runtime gave it up): the join only waits
    // for its last clean-up. Shielded: a with_timeout of the calling
    // thread's does not reach block_on (wait_main ignores it), and cutting
    // this last wait alone would throw away main's finished result.
    return shield([&]() -> decltype(auto) { return task.join(); });
  }

  // shutdown: the protocol above. Idempotent. From a plain thread only.
  void shutdown();

  // stats: a snapshot of the per-worker counters. Any thread.
  Stats stats() const;
  unsigned workers() const noexcept;
  const RuntimeOptions& options() const noexcept;

 private:
  void begin_main();
  void wait_main();
  std::unique_ptr<detail::Scheduler> sched_;
};

// run: asyncio.run. Starts a Runtime, runs f as the main fiber, returns its
// value (or rethrows), and shuts down cleanly (fibers still alive are
// cancelled and joined within options.shutdown_timeout). From a plain thread.
// The main fiber's spawn site (dumps, reports) is the caller's run call.
template <class F>
auto run(F&& f, RuntimeOptions options = {},
         spindle::source_location where = spindle::source_location::current()) {
  Runtime rt(options);
  if constexpr (std::is_void_v<std::invoke_result_t<std::decay_t<F>>>) {
    rt.block_on(std::forward<F>(f), where);
    rt.shutdown();
  } else {
    auto r = rt.block_on(std::forward<F>(f), where);
    rt.shutdown();
    return r;
  }
}

// dump_fibers: writes one line per live fiber of the current runtime (or of
// every runtime when called on a plain thread): id, name, state, what it
// waits on, spawn site and age. Any thread. Also printed on SIGQUIT.
void dump_fibers(std::ostream& os);

// current_stats: stats of the runtime the caller runs in (fiber only).
Stats current_stats();

}  // namespace spindle
