// helper_threads_test.cpp: io's process-wide helper threads (the signal
// hub, the process reaper) and child processes do not inherit what the
// thread that happened to start them had (io/src/helper_thread.hpp): a
// pinned worker's single CPU, an offload thread's SCHED_IDLE, nice 19 and
// name. A binary of its own: the helpers are made once per process, by the
// first caller, which is what this test chooses.
#include <dirent.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include <spindle/io/process.hpp>
#include <spindle/io/signal.hpp>
#include <spindle/runtime/offload.hpp>

#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;
namespace io = spindle::io;

namespace {

std::string status_line(const std::string& status_path, const std::string& key) {
  std::ifstream f(status_path);
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind(key, 0) == 0) return line + "\n";
  }
  return {};
}

std::string comm_of(const std::string& tid) {
  std::ifstream f("/proc/self/task/" + tid + "/comm");
  std::string c;
  std::getline(f, c);
  return c;
}

}  // namespace

TEST_CASE("helper threads and children run on the process's CPUs, at normal priority, under their own names") {
  cpu_set_t all;
  REQUIRE(::sched_getaffinity(::getpid(), sizeof all, &all) == 0);
  if (CPU_COUNT(&all) < 2) {
    WARN("a single CPU: pinning narrows nothing here");
    return;
  }
  const std::string main_status = "/proc/self/task/" + std::to_string(::getpid()) + "/status";
  const std::string process_cpus = status_line(main_status, "Cpus_allowed_list");
  REQUIRE(!process_cpus.empty());
  sp::RuntimeOptions o = options(2);
  o.pin_workers = true;
  o.offload_low_priority = true;
  run_checked(o, [&] {
    // Spawned from a worker pinned to one CPU.
    const auto out = io::run_command({"grep", "Cpus_allowed_list", "/proc/self/status"});
    FIBER_CHECK(out.out == process_cpus);
    // The process's first SignalSet, made by an offload job (SCHED_IDLE).
    sp::offload([] { io::SignalSet s({SIGUSR1}); });
    // The first child dropped unreaped, by a pinned worker: the reaper.
    { auto p = io::Process::spawn({"sleep", "1"}); }
  });
  const int nice = ::getpriority(PRIO_PROCESS, 0);
  int hub = 0, reaper = 0;
  DIR* d = ::opendir("/proc/self/task");
  REQUIRE(d != nullptr);
  while (dirent* e = ::readdir(d)) {
    if (e->d_name[0] == '.') continue;
    const std::string comm = comm_of(e->d_name);
    if (comm != "spindle-signals" && comm != "spindle-reaper") continue;
    ++(comm == "spindle-signals" ? hub : reaper);
    INFO(comm);
    const pid_t tid = std::atoi(e->d_name);
    CHECK(::sched_getscheduler(tid) == SCHED_OTHER);
    CHECK(::getpriority(PRIO_PROCESS, static_cast<id_t>(tid)) == nice);
    CHECK(status_line(std::string("/proc/self/task/") + e->d_name + "/status", "Cpus_allowed_list") == process_cpus);
  }
  ::closedir(d);
  CHECK(hub == 1);
  CHECK(reaper == 1);
}
