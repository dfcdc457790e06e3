// load.cpp: each worker's load, and where its sockets consolidate
// (placement.hpp rule 5; docs/io.md "Where a connection lives").
//
// Each io worker samples its thread's time on a core and time waiting for
// one (schedstat.hpp) once a kLoadWindow, publishes the window's shares,
// and asks the policy where its sockets go (placement::
// consolidation_target). The CPU time the policy's looks and trials read
// comes from the kernel through KernelCpu.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <ctime>
#include <vector>

#include <spindle/runtime/detail/introspect.hpp>

#include "placement.hpp"
#include "scheduler.hpp"
#include "worker.hpp"

namespace spindle::detail {

namespace {
std::int64_t ns_of(std::chrono::steady_clock::time_point t) noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

// -1: the kernel says (read_machine_cpu); 0 or 1: a test's answer.
// Relaxed on both sides: a test sets it before its runtime starts (the
// workers' thread start orders it); a watcher that read it late would only
// decide one look by the other answer.
std::atomic<int> g_spare_override{-1};

// The machine's CPU times from /proc/stat's first line ("cpu  user nice
// system idle iowait irq softirq steal ..."), in jiffies summed over the
// CPUs; idle counts iowait too (a CPU waiting on a disk runs nothing).
// False when the file cannot be read or parsed (then nothing is known and
// spreads are decided by their trials alone). `fd`: /proc/stat, opened
// once with the runtime, and `cpus` counted then (Scheduler::proc_stat_).
bool read_machine_cpu(int fd, unsigned cpus, placement::SpareCpu::Times& t) noexcept {
  if (fd < 0) return false;
  char buf[256];
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);  // from the start: the kernel makes it anew
  if (n <= 0) return false;
  buf[n] = '\0';
  unsigned long long v[8] = {};
  if (std::sscanf(buf, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                  &v[6], &v[7]) != 8) {
    return false;
  }
  t.idle = v[3] + v[4];
  t.total = 0;
  for (unsigned long long x : v) t.total += x;
  t.cpus = cpus;
  return true;
}
}  // namespace

void override_spare_cpu(int v) noexcept {
  g_spare_override.store(v < 0 ? -1 : (v > 0 ? 1 : 0), std::memory_order_relaxed);
}

bool Scheduler::spread_allowed(std::chrono::steady_clock::time_point now) noexcept {
  // Sampled even while the trials back spreads off: the first look after a
  // long backoff must judge by the last window, not find it stale (unknown,
  // so spare) and open a trial.
  if (spare_cpu_.wants_sample(now)) {
    placement::SpareCpu::Times t;
    if (read_machine_cpu(proc_stat_.fd, online_cpus_, t)) spare_cpu_.sample(now, t);
  }
  if (!spread_trials_.allowed(now)) return false;
  if (const int o = g_spare_override.load(std::memory_order_relaxed); o >= 0) return o == 1;
  return spare_cpu_.spare();
}

placement::LoadSnapshot Worker::load_snapshot() const noexcept {
  placement::LoadSnapshot l;
  l.io = remote_.poller_set.load(std::memory_order_relaxed);
  l.target = consolidation_target();
  l.refused_until = remote_.refused_until.load(std::memory_order_relaxed);
  l.run = remote_.run_share.load(std::memory_order_relaxed);
  l.wait = remote_.wait_share.load(std::memory_order_relaxed);
  l.shares_at = remote_.shares_at.load(std::memory_order_relaxed);
  return l;
}

void Worker::sample_load(std::chrono::steady_clock::time_point coarse) noexcept {
  if (coarse < core_.next_sample) [[likely]] return;
  const auto now = std::chrono::steady_clock::now();
  core_.next_sample = now + placement::kLoadWindow;
  const SchedSample s = read_schedstat(remote_.schedstat_fd);
  if (!s.valid()) return;
  const std::int64_t at = ns_of(now);
  if (core_.last_sample.valid() && at > core_.last_sample_at) {
    const std::int64_t span = at - core_.last_sample_at;
    remote_.run_share.store(placement::permille(s.run_ns - core_.last_sample.run_ns, span),
                            std::memory_order_relaxed);
    remote_.wait_share.store(placement::permille(s.wait_ns - core_.last_sample.wait_ns, span),
                             std::memory_order_relaxed);
    remote_.shares_at.store(at, std::memory_order_relaxed);
  }
  core_.last_sample = s;
  core_.last_sample_at = at;
  decide_consolidation(now);
}

void Worker::decide_consolidation(std::chrono::steady_clock::time_point now) noexcept {
  const placement::Config& c = sched_.placement();
  int to = -1;
  if (c.consolidate && c.watching() && core_.io_poll_on && !sched_.stopping()) {
    // A spread's trial gets its verdict from whichever worker samples
    // first once it is due.
    placement::SpreadTrials& trials = sched_.spread_trials();
    if (trials.verdict_due(now)) trials.judge(now, workers_cpu_ns());
    // Only this worker's and the lower ones' loads matter (the policy
    // looks at no other).
    std::vector<placement::LoadSnapshot>& loads = core_.loads;
    for (unsigned j = 0; j <= index_; ++j) loads[j] = sched_.worker(j).load_snapshot();
    const placement::TargetDecision d = placement::consolidation_target(
        c, index_, std::span<const placement::LoadSnapshot>(loads.data(), index_ + 1), consolidation_target(),
        ns_of(now), !trials.allowed(now));
    if (d.starved) trials.starved_consolidation(now);
    to = d.target;
  }
  remote_.consolidate_to.store(to, std::memory_order_relaxed);
}

void Worker::spread(Worker& v, std::chrono::steady_clock::time_point now) noexcept {
  placement::SpreadTrials& trials = sched_.spread_trials();
  if (trials.opens_trial(now)) trials.spread(now, workers_cpu_ns());
  v.remote_.refused_until.store(ns_of(now + placement::kReconsolidateAfter), std::memory_order_relaxed);
  // Ours at once (we are the owner of our consolidate_to); the others' at
  // their next window.
  if (consolidation_target() == static_cast<int>(v.index_)) {
    remote_.consolidate_to.store(-1, std::memory_order_relaxed);
  }
}

std::int64_t Worker::thread_cpu_ns(const Worker& v) noexcept {
  // acquire; pairs with the release in thread_main (stat_fd, cpu_clock).
  if (!v.remote_.tid_set.load(std::memory_order_acquire) || v.remote_.stat_fd < 0) return -1;
  timespec ts;
  if (clock_gettime(v.remote_.cpu_clock, &ts) != 0) return -1;
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

std::int64_t Worker::workers_cpu_ns() const noexcept {
  std::int64_t sum = 0;
  for (unsigned i = 0; i < sched_.size(); ++i) sum += std::max<std::int64_t>(thread_cpu_ns(sched_.worker(i)), 0);
  return sum;
}

std::int64_t KernelCpu::thread_cpu_ns(unsigned worker) const noexcept {
  return Worker::thread_cpu_ns(sched_.worker(worker));
}

char KernelCpu::thread_state(unsigned worker) const noexcept {
  return read_thread_state(sched_.worker(worker).remote_.stat_fd);
}

std::uint32_t KernelCpu::wait_share(unsigned worker) const noexcept {
  return sched_.worker(worker).remote_.wait_share.load(std::memory_order_relaxed);
}

}  // namespace spindle::detail
