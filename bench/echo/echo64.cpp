// echo64.cpp: servers in child processes, cells, rounds, the table
// (echo64.hpp). The workload: docs/benchmarks.md "echo64".
#include "echo64.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <system_error>
#include <vector>

#include <spindle/io/tcp.hpp>
#include <spindle/spindle.hpp>

#include "libuv_echo.h"

namespace echo64 {

std::string ServerSpec::name() const {
  return kind == Server::libuv ? "libuv C" : "spindle " + std::to_string(workers) + "w";
}

std::vector<ServerSpec> default_servers() {
  return {{Server::libuv, 1}, {Server::spindle, 1}, {Server::spindle, 2}};
}

void spindle_echo_serve(unsigned workers, int port, void (*on_listening)(int, void*), void* arg) {
  spindle::RuntimeOptions o{.workers = workers};
  // SPINDLE_ECHO_CONSOLIDATE=0: the placement policy's consolidation off,
  // for A/B runs of it (docs/decisions/0017-placement.md "Four workers").
  if (const char* e = std::getenv("SPINDLE_ECHO_CONSOLIDATE"); e != nullptr && e[0] == '0') o.consolidate_io = false;
  spindle::Runtime rt(o);
  // SPINDLE_ECHO_STATS=1: every 500 ms, one stderr line per worker with
  // its counters' growth and how many connections last echoed on it (for
  // finding where the connections live in a slow run).
  const bool stats = std::getenv("SPINDLE_ECHO_STATS") != nullptr;
  static std::atomic<int> last_worker[1 << 16];
  rt.block_on([&] {
    auto l = spindle::io::TcpListener::bind("127.0.0.1", static_cast<std::uint16_t>(port));
    on_listening(l.local_endpoint().port(), arg);
    if (stats) {
      spindle::spawn([workers] {
        std::vector<spindle::WorkerStats> before = spindle::current_stats().workers;
        for (int tick = 0;; ++tick) {
          spindle::sleep_for(std::chrono::milliseconds(500));
          const std::vector<spindle::WorkerStats> now = spindle::current_stats().workers;
          std::vector<int> conns(workers + 1, 0);
          for (auto& w : last_worker) {
            const int v = w.load(std::memory_order_relaxed);
            if (v > 0) ++conns[static_cast<std::size_t>(v - 1)];
          }
          for (std::size_t i = 0; i < now.size(); ++i) {
            std::fprintf(stderr, "t%d w%zu switches %llu parks %llu polls %llu steals %llu spreads %llu handed %llu conns %d\n",
                         tick, i, (unsigned long long)(now[i].switches - before[i].switches),
                         (unsigned long long)(now[i].parks - before[i].parks),
                         (unsigned long long)(now[i].polls - before[i].polls),
                         (unsigned long long)(now[i].steals - before[i].steals),
                         (unsigned long long)(now[i].spreads - before[i].spreads),
                         (unsigned long long)(now[i].handed_off - before[i].handed_off), conns[i]);
          }
          before = now;
        }
      }).detach();
    }
    for (int id = 0;; ++id) {
      spindle::io::TcpStream s = l.accept();
      spindle::spawn([cap = std::move(s), id, stats]() mutable {
        spindle::io::TcpStream s = std::move(cap);
        char buf[4096];
        auto& where = last_worker[static_cast<std::size_t>(id) % (1 << 16)];
        try {
          s.set_nodelay(true);
          for (;;) {
            if (stats) where.store(spindle::this_fiber::worker_index() + 1, std::memory_order_relaxed);
            const std::size_t n = s.read_some(buf, sizeof buf);
            if (n == 0) break;  // end of stream: s closes as the fiber ends
            s.write_all(buf, n);
          }
        } catch (const std::system_error&) {
          // The protocol: close silently on error.
        }
        where.store(0, std::memory_order_relaxed);
      }).detach();
    }
  });
}

namespace {

void raise_nofile() {
  rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

void pin(int cpu) {
  if (cpu < 0) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (sched_setaffinity(0, sizeof set, &set) != 0) {
    std::perror("echo64: sched_setaffinity");
    std::_Exit(5);
  }
}

void report_port(int port, void* arg) {
  const int fd = *static_cast<int*>(arg);
  const std::int32_t p = port;
  if (::write(fd, &p, sizeof p) != sizeof p) std::_Exit(4);
  ::close(fd);
}

bool read_exact_fd(int fd, void* p, std::size_t n, int timeout_ms) {
  auto* b = static_cast<char*>(p);
  std::size_t got = 0;
  while (got < n) {
    pollfd pf{fd, POLLIN, 0};
    const int r = ::poll(&pf, 1, timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    const ssize_t k = ::read(fd, b + got, n - got);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    got += static_cast<std::size_t>(k);
  }
  return true;
}

std::string slurp(const char* path) {
  std::string s;
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return s;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) s.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  return s;
}

}  // namespace

double process_cpu_s(pid_t pid) {
  const std::string s = slurp(("/proc/" + std::to_string(pid) + "/stat").c_str());
  // Fields after the command (which may hold spaces) start after the last ')'.
  const std::size_t at = s.rfind(')');
  if (at == std::string::npos) return NAN;
  unsigned long long utime = 0, stime = 0;
  // state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
  if (std::sscanf(s.c_str() + at + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                  &utime, &stime) != 2) {
    return NAN;
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double process_rss_kib(pid_t pid) {
  const std::string s = slurp(("/proc/" + std::to_string(pid) + "/status").c_str());
  const std::size_t at = s.find("VmRSS:");
  if (at == std::string::npos) return NAN;
  return std::strtod(s.c_str() + at + 6, nullptr);
}

RunningServer start_server(const ServerSpec& s, int cpu) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    std::perror("echo64: pipe");
    std::exit(1);
  }
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("echo64: fork");
    std::exit(1);
  }
  if (pid == 0) {
    ::close(fds[0]);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the bench
    raise_nofile();
    pin(cpu);
    int fd = fds[1];
    if (s.kind == Server::libuv) {
      std::_Exit(libuv_echo_serve(0, report_port, &fd));
    }
    spindle_echo_serve(s.workers, 0, report_port, &fd);
    std::_Exit(0);
  }
  ::close(fds[1]);
  std::int32_t port = 0;
  const bool ok = read_exact_fd(fds[0], &port, sizeof port, 10'000);
  ::close(fds[0]);
  RunningServer r{pid, port};
  if (!ok) {
    stop_server(r);
    std::fprintf(stderr, "echo64: server %s did not report its port\n", s.name().c_str());
    std::exit(1);
  }
  return r;
}

void stop_server(RunningServer& s) {
  if (s.pid <= 0) return;
  ::kill(s.pid, SIGKILL);
  int st;
  while (::waitpid(s.pid, &st, 0) < 0 && errno == EINTR) {
  }
  s.pid = -1;
}

Cell measure_cell(const ServerSpec& spec, int conns, const ClientOptions& o, const Layout& l) {
  RunningServer srv = start_server(spec, l.server_cpu);
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    std::perror("echo64: pipe");
    std::exit(1);
  }
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    pin(l.client_cpu);
    ClientOptions co = o;
    co.server_pid = srv.pid;
    const ClientResult r = run_client(srv.port, conns, co);
    if (::write(fds[1], &r, sizeof r) != sizeof r) std::_Exit(4);
    std::_Exit(0);
  }
  ::close(fds[1]);
  Cell c{spec, conns, {}};
  const int budget_ms = static_cast<int>((o.warmup_s + o.measure_s) * 1000) + 60'000;
  const bool ok = read_exact_fd(fds[0], &c.r, sizeof c.r, budget_ms);
  ::close(fds[0]);
  if (!ok) ::kill(pid, SIGKILL);
  int st = 0;
  while (::waitpid(pid, &st, 0) < 0 && errno == EINTR) {
  }
  stop_server(srv);
  if (!ok || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
    std::fprintf(stderr, "echo64: client against %s with %d connections failed (status %d)\n",
                 spec.name().c_str(), conns, st);
    std::exit(1);
  }
  return c;
}

std::vector<Cell> run_rounds(const std::vector<ServerSpec>& servers, const std::vector<int>& conns,
                             int rounds, const ClientOptions& o, const Layout& l, bool progress) {
  std::vector<Cell> out;
  for (int r = 0; r < rounds; ++r) {
    for (int n : conns) {
      for (std::size_t k = 0; k < servers.size(); ++k) {
        const ServerSpec& s = servers[(k + static_cast<std::size_t>(r)) % servers.size()];
        Cell c = measure_cell(s, n, o, l);
        if (progress) {
          std::fprintf(stderr, "  echo64 %-10s conns %4d  %8.0f req/s  %8.0f req/cpu-s  p50 %6.1f us  p99 %7.1f us  max %7.1f us\n",
                       s.name().c_str(), n, c.r.rps, c.r.rps_per_cpu, c.r.p50_us, c.r.p99_us, c.r.max_us);
        }
        out.push_back(c);
      }
    }
  }
  return out;
}

namespace {

double med(std::vector<double> v) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

std::string fmt(double v) {
  char b[32];
  if (std::isnan(v)) return "-";
  const double a = std::fabs(v);
  std::snprintf(b, sizeof b, a >= 10000 ? "%.1fk" : a >= 100 ? "%.0f" : a >= 10 ? "%.1f" : "%.2f",
                a >= 10000 ? v / 1000 : v);
  return b;
}

std::string cell(const std::vector<double>& v, bool spread) {
  std::string s = fmt(med(v));
  if (spread && v.size() > 1) {
    s += " (" + fmt(*std::min_element(v.begin(), v.end())) + "–" +
         fmt(*std::max_element(v.begin(), v.end())) + ")";
  }
  return s;
}

}  // namespace

std::string format(const std::vector<Cell>& cells, const std::vector<ServerSpec>& servers,
                   const std::vector<int>& conns, bool spread) {
  std::string out =
      "| conns | server | req/s | req per server CPU-s | p50 µs | p99 µs | req/s vs libuv | req/CPU-s vs libuv | server KiB/conn |\n"
      "|---:|---|---:|---:|---:|---:|---:|---:|---:|\n";
  for (int n : conns) {
    double base_rps = NAN, base_cpu = NAN;
    for (const ServerSpec& s : servers) {
      std::vector<double> rps, cpu, p50, p99, kib;
      for (const Cell& c : cells) {
        if (c.conns != n || c.server.name() != s.name()) continue;
        rps.push_back(c.r.rps);
        cpu.push_back(c.r.rps_per_cpu);
        p50.push_back(c.r.p50_us);
        p99.push_back(c.r.p99_us);
        kib.push_back(c.r.kib_per_conn);
      }
      if (rps.empty()) continue;
      if (s.kind == Server::libuv) {
        base_rps = med(rps);
        base_cpu = med(cpu);
      }
      char ratio[64] = "", ratio_cpu[64] = "";
      if (s.kind != Server::libuv) {
        std::snprintf(ratio, sizeof ratio, "%.2fx", med(rps) / base_rps);
        std::snprintf(ratio_cpu, sizeof ratio_cpu, "%.2fx", med(cpu) / base_cpu);
      }
      out += "| " + std::to_string(n) + " | " + s.name() + " | " + cell(rps, spread) + " | " +
             cell(cpu, spread) + " | " + cell(p50, spread) + " | " + cell(p99, spread) + " | " +
             ratio + " | " + ratio_cpu + " | " + (n >= 1000 ? cell(kib, spread) : std::string("")) +
             " |\n";
    }
  }
  return out;
}

}  // namespace echo64
