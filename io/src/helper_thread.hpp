// helper_thread.hpp: io's process-wide helper threads (the signal hub,
// signal.cpp; the process reaper, process.cpp) and the CPUs a child
// process starts on.
//
// A thread inherits its creator's CPU affinity, name, scheduling policy
// and nice value, and a child process its spawner's affinity. The creator
// here is whatever thread first needed the helper: a worker pinned to one
// CPU (RuntimeOptions::pin_workers), or a thread of the offload pool
// (SCHED_IDLE, nice 19, named "spindle-offload"). A helper that inherited
// that ran on one CPU and only when it was idle, under the wrong name, and
// `make -j16` spawned from a pinned worker ran on one core (a review,
// 2026-12-01). So:
//  - a helper is started through start_unlowered_thread (offload.hpp: from
//    an offload-pool thread, its starter thread creates it at normal
//    priority), with every signal blocked (they go to the program's
//    threads), and first names itself and widens its affinity;
//  - a spawn widens the spawning thread's affinity for the call
//    (WideAffinity): posix_spawn has no attribute for it.
// "The process's CPUs" are the main thread's affinity (sched_getaffinity
// of the pid): what `taskset` gave the process, and what the runtime's
// pinning plan captured when the runtime was made there (cpu_pin.hpp).
#pragma once

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <thread>
#include <utility>

#include <spindle/runtime/offload.hpp>

namespace spindle::io::detail {

// process_cpus: the process's CPU set (above); false if it cannot be read.
inline bool process_cpus(cpu_set_t& set) noexcept {
  return ::sched_getaffinity(::getpid(), sizeof set, &set) == 0;
}

// WideAffinity: the calling thread on the process's CPUs while it lives,
// then back on its own; nothing when they are the same set already.
class WideAffinity {
 public:
  WideAffinity() noexcept {
    cpu_set_t mine;
    cpu_set_t all;
    if (::sched_getaffinity(0, sizeof mine, &mine) != 0 || !process_cpus(all) || CPU_EQUAL(&mine, &all)) return;
    if (::sched_setaffinity(0, sizeof all, &all) == 0) {
      old_ = mine;
      changed_ = true;
    }
  }
  ~WideAffinity() {
    if (changed_) (void)::sched_setaffinity(0, sizeof old_, &old_);
  }
  WideAffinity(const WideAffinity&) = delete;
  WideAffinity& operator=(const WideAffinity&) = delete;

 private:
  cpu_set_t old_{};
  bool changed_ = false;
};

// start_helper_thread: a detached thread named `name` (15 characters at
// most) that runs body() on the process's CPUs, at normal priority, with
// every signal blocked. Throws std::system_error if it cannot be made.
template <class F>
void start_helper_thread(const char* name, F body) {
  spindle::detail::start_unlowered_thread([&] {
    sigset_t all;
    sigset_t old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    try {
      std::thread([name, body = std::move(body)]() mutable {
        pthread_setname_np(pthread_self(), name);
        cpu_set_t cpus;
        if (process_cpus(cpus)) (void)::sched_setaffinity(0, sizeof cpus, &cpus);
        body();
      }).detach();
    } catch (...) {
      // The caller's mask comes back (a worker's, left all-blocked, lost
      // SIGURG and every signal from then on).
      pthread_sigmask(SIG_SETMASK, &old, nullptr);
      throw;
    }
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
  });
}

}  // namespace spindle::io::detail
