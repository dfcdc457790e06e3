// measure.cpp: fork, run, report through a pipe (see measure.hpp).
#include "measure.hpp"

#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <spindle/spindle.hpp>

#include "../peers/boost_env.hpp"

namespace bench {

std::string algo_name(const Config& c) {
  static const char* const algos[] = {"round_robin", "work_stealing", "shared_work"};
  std::string s = algos[static_cast<int>(c.algo)];
  if (c.algo != BoostAlgo::round_robin) s += c.suspend ? " suspend" : " spin";
  return s;
}

std::string to_string(const Config& c) {
  if (c.peer == Peer::spindle) return cat("spindle workers:", std::to_string(c.threads));
  return cat("boost_fiber threads:", std::to_string(c.threads), " ", algo_name(c));
}

void fail(const std::string& workload, const std::string& msg) {
  std::fprintf(stderr, "spindle_bench: %s: %s\n", workload.c_str(), msg.c_str());
  std::fflush(stderr);
  // _Exit: worker threads are still running; destructors could hang.
  std::_Exit(3);
}

namespace {
void write_all(int fd, const std::string& s) {
  std::size_t done = 0;
  while (done < s.size()) {
    ssize_t n = ::write(fd, s.data() + done, s.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) std::_Exit(4);
    done += static_cast<std::size_t>(n);
  }
}

// Reads until EOF; false if the deadline (if any) passed first.
bool read_all(int fd, std::string& out, double timeout_s) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  char buf[4096];
  for (;;) {
    if (timeout_s > 0) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      pollfd p{fd, POLLIN, 0};
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) == 0) return false;
    }
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return true;
    out.append(buf, static_cast<std::size_t>(n));
  }
}
}  // namespace

namespace {
// Distinct stderr lines of children that succeeded, in first-seen order.
std::vector<std::string>& diagnostics() {
  static std::vector<std::string> d;
  return d;
}

std::string read_file(FILE* f) {
  std::string s;
  std::rewind(f);
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  return s;
}

void keep_diagnostics(const std::string& text) {
  std::size_t at = 0;
  while (at < text.size()) {
    std::size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(at, end - at);
    auto& d = diagnostics();
    if (!line.empty() && std::find(d.begin(), d.end(), line) == d.end()) d.push_back(line);
    at = end + 1;
  }
}
}  // namespace

std::string collected_diagnostics() {
  std::string s;
  for (const std::string& l : diagnostics()) s += "  " + l + "\n";
  return s;
}

std::optional<std::string> run_in_child(const std::string& what,
                                        const std::function<std::string()>& f, double timeout_s) {
  int fds[2];
  if (::pipe(fds) != 0) {
    std::perror("spindle_bench: pipe");
    std::exit(1);
  }
  // The child's stderr goes to a file, not to ours: a runtime diagnostic
  // printed mid-run would otherwise land in the middle of the progress
  // lines. A file rather than a pipe, so a chatty child cannot block on a
  // full pipe that nobody reads until it exits.
  FILE* err = std::tmpfile();
  if (err == nullptr) {
    std::perror("spindle_bench: tmpfile");
    std::exit(1);
  }
  std::fflush(nullptr);  // or buffered output would be printed twice
  pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("spindle_bench: fork");
    std::exit(1);
  }
  if (pid == 0) {
    ::close(fds[0]);
    ::dup2(::fileno(err), STDERR_FILENO);
    write_all(fds[1], f());
    std::fflush(nullptr);
    std::_Exit(0);  // skip static destructors of runtimes we abandoned
  }
  ::close(fds[1]);
  std::string out;
  const bool finished = read_all(fds[0], out, timeout_s);
  ::close(fds[0]);
  if (!finished) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  const std::string child_err = read_file(err);
  std::fclose(err);
  const bool ok = finished && WIFEXITED(status) && WEXITSTATUS(status) == 0;
  // A failed child's stderr explains the failure: print it now, in full.
  if (ok || !finished) {
    keep_diagnostics(child_err);
  } else {
    std::fputs(child_err.c_str(), stderr);
  }
  if (!finished) return std::nullopt;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    if (WIFSIGNALED(status)) {
      std::fprintf(stderr, "spindle_bench: %s: child killed by signal %d (%s)\n", what.c_str(),
                   WTERMSIG(status), strsignal(WTERMSIG(status)));
    } else {
      std::fprintf(stderr, "spindle_bench: %s: child exited with status %d\n", what.c_str(),
                   WEXITSTATUS(status));
    }
    std::exit(1);
  }
  return out;
}

namespace {
std::vector<Sample> run_spindle(const Workload& w, unsigned workers, int warmups, int runs) {
  spindle::Runtime rt(spindle::RuntimeOptions{.workers = workers});
  for (int i = 0; i < warmups; ++i) rt.block_on(w.on_spindle);
  std::vector<Sample> out;
  for (int i = 0; i < runs; ++i) out.push_back(rt.block_on(w.on_spindle));
  return out;
}

std::vector<Sample> run_boost(const Workload& w, const Config& c, int warmups, int runs) {
  BoostEnv env(c);
  for (int i = 0; i < warmups; ++i) w.on_boost();
  std::vector<Sample> out;
  for (int i = 0; i < runs; ++i) out.push_back(w.on_boost());
  return out;
}
}  // namespace

std::vector<Sample> measure(const Workload& w, const Config& c, int warmups, int runs,
                            double timeout_s) {
  std::optional<std::string> got = run_in_child(w.name + " on " + to_string(c), [&] {
    std::vector<Sample> s = c.peer == Peer::spindle ? run_spindle(w, c.threads, warmups, runs)
                                                    : run_boost(w, c, warmups, runs);
    return std::string(reinterpret_cast<const char*>(s.data()), s.size() * sizeof(Sample));
  }, timeout_s);
  if (!got) return {};
  const std::string& bytes = *got;
  if (bytes.size() != static_cast<std::size_t>(runs) * sizeof(Sample)) {
    std::fprintf(stderr, "spindle_bench: %s: child sent %zu bytes, expected %zu\n",
                 w.name.c_str(), bytes.size(), runs * sizeof(Sample));
    std::exit(1);
  }
  std::vector<Sample> s(static_cast<std::size_t>(runs));
  std::memcpy(s.data(), bytes.data(), bytes.size());
  return s;
}

double median(const std::vector<Sample>& s, double Sample::*field) {
  std::vector<double> v;
  for (const Sample& x : s) v.push_back(x.*field);
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace bench
