// process.cpp: Process::spawn, wait, kill, communicate and run_command
// (process.hpp; the design and its measurements are in
// docs/decisions/0007-processes-signals.md).
//
// Protocol of one child:
//  1. spawn: the child's descriptors are prepared in the parent (pipes,
//     /dev/null, files: an open error names the path), posix_spawn starts
//     the child (a failed exec is its result: ENOENT, EACCES), the child's
//     ends are closed in the parent.
//  2. pidfd_open(pid) is registered with the calling worker's reactor like
//     a socket (read direction; the kernel reports it readable once the
//     child has exited). No SIGCHLD handler is involved, so the program's
//     SIGCHLD disposition is left alone (libuv, which the runtime links,
//     would install one only for a uv_spawn, which nothing calls).
//  3. wait: waitid(WNOHANG) under State::mu; if the child runs, the fiber
//     waits for the pidfd's readiness (try_io: the same no-lost-wake-up
//     argument as a socket read) and tries again.
//  4. kill sends the signal under State::mu only while the child is not
//     reaped: its pid cannot be reused before the reap, and the reap takes
//     the same lock, so kill never reaches a stranger.
//  5. ~Process: a child that is not reaped is handed, with a duplicate of
//     its pidfd, to the reaper thread (process-wide, started on first use),
//     which reaps it when the pidfd turns readable. No zombie stays behind,
//     also when the fiber in wait() was cancelled.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <utility>

#include <spindle/io/process.hpp>
#include <spindle/runtime/cancel.hpp>
#include <spindle/runtime/task_group.hpp>
#include <spindle/runtime/this_fiber.hpp>

#include "file_ops.hpp"
#include "helper_thread.hpp"
#include "no_nul.hpp"
#include "reactor.hpp"
#include "try_io.hpp"

extern char** environ;

namespace spindle::io {

using detail::Descriptor;
using detail::Reactor;

struct Process::State {
  pid_t pid = -1;
  Descriptor* pidfd = nullptr;  // registered pidfd; nullptr without pidfd support
  std::mutex mu;                // rank: leaf; guards reaped and status
  bool reaped = false;
  ExitStatus status;
};

namespace {

struct FdGuard {
  int fd = -1;
  FdGuard() = default;
  FdGuard(const FdGuard&) = delete;
  FdGuard& operator=(const FdGuard&) = delete;
  ~FdGuard() {
    if (fd >= 0) ::close(fd);
  }
  int release() noexcept { return std::exchange(fd, -1); }
};

[[noreturn]] void throw_path(int err, const std::string& what, const std::string& path) {
  throw std::system_error(err, std::system_category(), "spindle::io: " + what + " '" + path + "'");
}

#ifndef P_PIDFD
#define P_PIDFD 3  // linux/wait.h (Linux 5.4); glibc declares it from 2.36 on
#endif

// wait_child: waitid(WEXITED | WNOHANG) for the child `pid`, by its pidfd
// where there is one (fd >= 0). By pid alone, a child reaped elsewhere
// (SIGCHLD set to SIG_IGN, a waitpid(-1)) whose pid a later child of ours
// got named that later child: wait() took its status or found it running
// for good, and the reaper thread, its pidfd readable for ever, spun a core
// until that child ended (an io review). A pidfd names this child only, as
// kill() already relies on. EINVAL (a kernel without P_PIDFD): by pid.
std::atomic<bool> g_no_p_pidfd{false};  // a kernel with pidfd_open (5.3) but no P_PIDFD (5.4)

int wait_child(pid_t pid, int fd, siginfo_t& si) noexcept {
  if (g_no_p_pidfd.load(std::memory_order_relaxed)) fd = -1;
  for (;;) {
    si = siginfo_t{};
    int r = -1;
    if (fd >= 0) {
      r = ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(fd), &si, WEXITED | WNOHANG);
      if (r != 0 && errno == EINVAL) {
        g_no_p_pidfd.store(true, std::memory_order_relaxed);
        fd = -1;
      }
    }
    if (fd < 0) r = ::waitid(P_PID, static_cast<id_t>(pid), &si, WEXITED | WNOHANG);
    if (r == 0 || errno != EINTR) return r;
  }
}

// try_reap_locked: reaps the child if it has ended. ECHILD (someone else
// reaped it: a SIGCHLD of SIG_IGN, or a waitpid(-1) elsewhere) marks it
// reaped with an unknown status and throws. Never inlined: wait() calls it
// inside try_io's loop, which waits, and its errno reads must not reuse an
// address from before a wait (errno_now.hpp).
[[gnu::noinline]] bool try_reap_locked(Process::State& s) {
  if (s.reaped) return true;
  siginfo_t si{};
  // Inflight: the runtime may have ended and closed the pidfd (then by pid).
  std::optional<detail::Inflight> in;
  int fd = -1;
  if (s.pidfd != nullptr) {
    in.emplace(s.pidfd);
    if (in->ok()) fd = s.pidfd->fd;
  }
  const int r = wait_child(s.pid, fd, si);
  if (r != 0) {
    const int err = errno;
    s.reaped = true;
    throw std::system_error(err, std::system_category(),
                            "spindle::io: wait: child " + std::to_string(s.pid) + " was reaped elsewhere");
  }
  if (si.si_pid == 0) return false;  // still running
  s.reaped = true;
  if (si.si_code == CLD_EXITED) {
    s.status.code = si.si_status;
  } else {
    s.status.signal = si.si_status;  // CLD_KILLED, CLD_DUMPED
  }
  return true;
}

// ---- the reaper: children whose Process went away unreaped -----------------

class Reaper {
 public:
  static Reaper& get() {
    // Never destroyed: it may be reaping while static destructors run.
    static Reaper* r = new Reaper;
    return *r;
  }

  // adopt: reaps `pid` once it has ended. Takes ownership of pidfd (-1:
  // none; a thread then blocks in waitpid for it).
  void adopt(pid_t pid, int pidfd) noexcept {
    if (pidfd >= 0 && ep_ >= 0) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.u64 = (static_cast<std::uint64_t>(static_cast<std::uint32_t>(pid)) << 32) |
                    static_cast<std::uint32_t>(pidfd);
      if (::epoll_ctl(ep_, EPOLL_CTL_ADD, pidfd, &ev) == 0) return;
    }
    if (pidfd >= 0) ::close(pidfd);
    try {
      std::thread([pid] {
        while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
        }
      }).detach();
    } catch (...) {
      // No thread to be had: the child stays a zombie until we exit.
    }
  }

 private:
  Reaper() {
    ep_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (ep_ < 0) return;  // adopt falls back to a thread per child
    // Signals go to the program's threads; its own name, the process's
    // CPUs and normal priority, whoever dropped the first unreaped child
    // (helper_thread.hpp).
    try {
      detail::start_helper_thread("spindle-reaper", [ep = ep_] { run(ep); });
    } catch (...) {
      ::close(ep_);
      ep_ = -1;
    }
  }

  static void run(int ep) noexcept {
    epoll_event evs[64];
    for (;;) {
      const int n = ::epoll_wait(ep, evs, 64, -1);
      for (int i = 0; i < n; ++i) {
        const auto pid = static_cast<pid_t>(evs[i].data.u64 >> 32);
        const int fd = static_cast<int>(evs[i].data.u64 & 0xffffffffu);
        siginfo_t si{};
        const int r = wait_child(pid, fd, si);
        if (r == 0 && si.si_pid == 0) continue;  // not yet (cannot happen once readable)
        ::epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
        ::close(fd);
      }
    }
  }

  int ep_ = -1;
};

// ---- spawning ---------------------------------------------------------------

// child_fd: the descriptor the child gets as `target` (0, 1, 2) for `s`,
// or -1 for inherit; a pipe's parent end goes to `parent`.
int child_fd(const Stdio& s, int target, FdGuard& parent) {
  switch (s.kind) {
    case Stdio::inherit:
      return -1;
    case Stdio::null: {
      const int fd = ::open("/dev/null", (target == 0 ? O_RDONLY : O_WRONLY) | O_CLOEXEC);
      if (fd < 0) throw_path(errno, "spawn: open", "/dev/null");
      return fd;
    }
    case Stdio::file: {
      // Opened without waiting (open_no_wait): spawn() runs on the worker
      // and never suspends, and open(2) of a FIFO waits for its other end
      // (a FIFO planted at the path stopped the worker and every fiber on
      // it). A FIFO is refused; what else opens (a file, /dev/null, a
      // terminal) gets its blocking mode back for the child.
      const int flags = target == 0 ? O_RDONLY : O_WRONLY | O_CREAT | (s.append ? O_APPEND : O_TRUNC);
      const int fd =
          detail::open_no_wait(s.path.c_str(), flags | O_CLOEXEC, 0666, [](mode_t m) { return !S_ISFIFO(m); });
      if (fd == -ENXIO) {
        throw_path(ENXIO, "spawn: open (a FIFO with no reader, or a socket: Stdio::to_file takes neither)", s.path);
      }
      if (fd == detail::kRefusedType) {
        throw_path(EINVAL, "spawn: open (a FIFO: Stdio::to_file takes no FIFO, its open would wait)", s.path);
      }
      if (fd < 0) throw_path(-fd, "spawn: open", s.path);
      return fd;
    }
    case Stdio::pipe_kind: {
      int sv[2];
      if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        detail::throw_errno(errno, "spindle::io: spawn: socketpair");
      }
      parent.fd = sv[0];
      // Only our end is nonblocking: the child expects blocking stdio.
      ::fcntl(sv[0], F_SETFL, ::fcntl(sv[0], F_GETFL) | O_NONBLOCK);
      return sv[1];
    }
  }
  return -1;
}

struct SpawnArgs {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  SpawnArgs() {
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
  }
  ~SpawnArgs() {
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
  }
  SpawnArgs(const SpawnArgs&) = delete;
  SpawnArgs& operator=(const SpawnArgs&) = delete;
};

std::vector<char*> c_strings(const std::vector<std::string>& v) {
  std::vector<char*> out;
  out.reserve(v.size() + 1);
  for (const auto& s : v) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

}  // namespace

Process::Process() noexcept = default;
Process::Process(Process&&) noexcept = default;

Process& Process::operator=(Process&& o) noexcept {
  if (this != &o) {
    Process old(std::move(*this));  // its destructor releases what we held
    st_ = std::move(o.st_);
    in_ = std::move(o.in_);
    out_ = std::move(o.out_);
    err_ = std::move(o.err_);
  }
  return *this;
}

Process::~Process() {
  // The child sees end of input (and EPIPE on its output) first.
  in_.close();
  out_.close();
  err_.close();
  if (!st_) return;
  bool reaped;
  {
    std::lock_guard lk(st_->mu);
    try {
      reaped = try_reap_locked(*st_);
    } catch (const std::system_error&) {
      reaped = true;  // someone else reaped it
    }
  }
  Descriptor* d = st_->pidfd;
  if (!reaped) {
    const int dup = d != nullptr ? ::fcntl(d->fd, F_DUPFD_CLOEXEC, 0) : -1;
    Reaper::get().adopt(st_->pid, dup);
  }
  if (d != nullptr) Reactor::close(d);
}

Process Process::spawn(const std::vector<std::string>& argv, const ProcessOptions& o) {
  if (argv.empty()) throw std::invalid_argument("spindle::io: spawn with an empty argv");
  for (const auto& arg : argv) detail::no_nul(arg, "spawn: an argument");
  if (o.env) {
    for (const auto& e : *o.env) detail::no_nul(e, "spawn: an environment entry");
  }
  detail::no_nul_path(o.cwd, "spawn: cwd");
  for (const Stdio* s : {&o.in, &o.out, &o.err}) {
    if (s->kind == Stdio::file) detail::no_nul_path(s->path, "spawn: a Stdio file's path");
  }
  // pass_fds checked before this spawn opens descriptors of its own (one
  // could take the number of a closed one).
  std::vector<int> keep = o.pass_fds;
  std::sort(keep.begin(), keep.end());
  keep.erase(std::unique(keep.begin(), keep.end()), keep.end());
  for (const int fd : keep) {
    if (fd < 3 || ::fcntl(fd, F_GETFD) == -1)
      throw std::invalid_argument("spindle::io: spawn: pass_fds holds " + std::to_string(fd) +
                                  ", not an open descriptor above 2");
  }
  Reactor& reactor = Reactor::get();

  FdGuard parent[3], child[3];
  const Stdio* specs[3] = {&o.in, &o.out, &o.err};
  SpawnArgs a;
  for (int i = 0; i < 3; ++i) {
    child[i].fd = child_fd(*specs[i], i, parent[i]);
    if (child[i].fd < 0) continue;
    if (child[i].fd < 3) {
      // Our own 0-2 were closed and the new descriptor took one of their
      // numbers: move it up, or an earlier dup2 in the child could
      // overwrite it before its own dup2 runs.
      const int up = ::fcntl(child[i].fd, F_DUPFD_CLOEXEC, 3);
      if (up < 0) detail::throw_errno(errno, "spindle::io: spawn: fcntl");
      ::close(child[i].fd);
      child[i].fd = up;
    }
    // dup2 clears close-on-exec on the copy: the child keeps exactly 0-2.
    // Each action checked (ENOMEM): one not recorded would start the child
    // with the parent's stream there, or in the parent's directory.
    if (const int rc = posix_spawn_file_actions_adddup2(&a.fa, child[i].fd, i); rc != 0)
      detail::throw_errno(rc, "spindle::io: spawn: posix_spawn_file_actions_adddup2");
  }
  if (!o.cwd.empty()) {
    if (const int rc = posix_spawn_file_actions_addchdir_np(&a.fa, o.cwd.c_str()); rc != 0)
      detail::throw_errno(rc, "spindle::io: spawn: posix_spawn_file_actions_addchdir_np");
  }
  // Every descriptor above 2 closed in the child, close-on-exec or not:
  // spindle's are, but one the program inherited, or a library opened
  // without O_CLOEXEC, would reach the child (a socket, a secret file).
  // Python's close_fds=True; glibc 2.34's close_range-backed action. The
  // pass_fds survive: every number below each is closed one by one, each
  // is dup2'd onto itself (which clears its close-on-exec in the child,
  // POSIX 2024, glibc 2.29), and closefrom starts past the last. Every
  // number, not only those open now: another thread may open one without
  // O_CLOEXEC before the child's table is copied, and glibc ignores a
  // close action whose number is not open (only one out of range fails).
  // The cost: one action (tens of bytes) and one close per number below
  // the highest pass_fd.
  int close_from = 3;
  if (!keep.empty()) {
    for (const int fd : keep) {
      for (int x = close_from; x < fd; ++x) {
        if (const int rc = posix_spawn_file_actions_addclose(&a.fa, x); rc != 0)
          detail::throw_errno(rc, "spindle::io: spawn: posix_spawn_file_actions_addclose");
      }
      if (const int rc = posix_spawn_file_actions_adddup2(&a.fa, fd, fd); rc != 0)
        detail::throw_errno(rc, "spindle::io: spawn: posix_spawn_file_actions_adddup2");
      close_from = fd + 1;
    }
  }
  if (const int rc = posix_spawn_file_actions_addclosefrom_np(&a.fa, close_from); rc != 0)
    detail::throw_errno(rc, "spindle::io: spawn: posix_spawn_file_actions_addclosefrom_np");
  // A clean slate for signals: the parent's mask (the program may block
  // SIGTERM for a sigwait thread) and its SIG_IGN dispositions would
  // otherwise be inherited through exec.
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&a.attr, &none);
  posix_spawnattr_setsigdefault(&a.attr, &all);
  posix_spawnattr_setflags(&a.attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<char*> args = c_strings(argv);
  std::vector<char*> envs;
  if (o.env) envs = c_strings(*o.env);
  char** envp = o.env ? envs.data() : environ;

  pid_t pid = -1;
  // A child inherits this thread's CPU affinity: on a pinned worker that
  // was one CPU, for the child and everything it starts (`make -j16` ran
  // on one core). The process's CPUs for the spawn (helper_thread.hpp).
  int rc = 0;
  {
    const detail::WideAffinity wide;
    rc = o.search_path ? ::posix_spawnp(&pid, args[0], &a.fa, &a.attr, args.data(), envp)
                       : ::posix_spawn(&pid, args[0], &a.fa, &a.attr, args.data(), envp);
  }
  if (rc != 0) {
    std::string what = "spawn";
    if (!o.cwd.empty()) what += " (cwd '" + o.cwd + "')";
    throw_path(rc, what, argv[0]);
  }
  for (auto& c : child) {
    if (c.fd >= 0) ::close(c.release());
  }

  // From here the child runs: every failure below must leave it to the
  // destructor (which hands it to the reaper), so p owns it at once.
  Process p;
  p.st_ = std::make_unique<State>();
  p.st_->pid = pid;
  const int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd >= 0) {
    try {
      // Readable once the child has exited. Registered as not ready:
      // EPOLL_CTL_ADD reports a child that exited already, and wait()
      // tries waitid once before it waits anyway (one waitid fewer per
      // child than a ready registration: 2 instead of 3, measured with
      // strace -c, docs/decisions/0007).
      p.st_->pidfd = reactor.open(pidfd, false, false);
    } catch (const std::system_error&) {
      // open closed it; wait() polls instead.
    }
  }
  FdStream* pipes[3] = {&p.in_, &p.out_, &p.err_};
  for (int i = 0; i < 3; ++i) {
    if (parent[i].fd >= 0) *pipes[i] = FdStream::adopt(parent[i].release());
  }
  return p;
}

pid_t Process::pid() const noexcept { return st_ ? st_->pid : -1; }

std::optional<ExitStatus> Process::try_wait() {
  if (!st_) {
    throw std::system_error(std::make_error_code(std::errc::no_child_process),
                            "spindle::io: wait on an empty Process");
  }
  std::lock_guard lk(st_->mu);
  if (try_reap_locked(*st_)) return st_->status;
  return std::nullopt;
}

ExitStatus Process::wait() {
  if (auto s = try_wait()) return *s;
  State& s = *st_;
  if (Descriptor* d = s.pidfd) {
    std::error_code ec;
    detail::try_io(d, d->rd, "process wait", 0, ec, [&](int) -> ssize_t {
      std::lock_guard lk(s.mu);
      if (try_reap_locked(s)) return 0;
      detail::set_errno_now(EAGAIN);  // still running: wait for the pidfd (errno_now.hpp)
      return -1;
    });
    if (ec) throw std::system_error(ec, "spindle::io: wait");
    std::lock_guard lk(s.mu);
    return s.status;
  }
  // No pidfd (a kernel before 5.3): poll, 1 ms doubling to 50 ms.
  auto pause = std::chrono::milliseconds(1);
  for (;;) {
    if (auto st = try_wait()) return *st;
    spindle::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds(50));
  }
}

void Process::kill(int sig) {
  if (!st_) return;
  std::lock_guard lk(st_->mu);
  if (st_->reaped) return;
#ifdef SYS_pidfd_send_signal
  // By the pidfd where there is one: the pid could have been reaped by
  // someone else (SIGCHLD set to SIG_IGN, a waitpid(-1) elsewhere) and
  // reused by an unrelated process; the pidfd names this child only.
  // Inflight: the runtime may have ended and closed it (then by pid).
  if (st_->pidfd != nullptr) {
    detail::Inflight in(st_->pidfd);
    if (in.ok()) {
      if (::syscall(SYS_pidfd_send_signal, st_->pidfd->fd, sig, nullptr, 0) == 0 || errno == ESRCH) return;
      if (errno != ENOSYS) detail::throw_errno(errno, "spindle::io: kill");
    }
  }
#endif
  if (::kill(st_->pid, sig) != 0 && errno != ESRCH) detail::throw_errno(errno, "spindle::io: kill");
}

Process::Output Process::communicate(std::string_view input, std::size_t max_output) {
  Output o;
  try {
    {
      // Writer, stderr reader and stdout reader, all at once: a child
      // blocked writing one stream while we wait on another would
      // otherwise deadlock with us. All three are the group's children, so
      // the first to fail (a stream past max_output) cancels the others and
      // g.wait() raises it at once; this fiber reading stdout itself was not
      // cancelled by a failing stderr reader, and waited for a stdout end
      // that a child blocked on its full stderr pipe never gave. The
      // group's destructor cancels and joins the helpers if this fiber
      // unwinds.
      spindle::TaskGroup g;
      if (in_.is_open()) {
        g.spawn([&] {
          try {
            in_.write_all(input);
          } catch (const std::system_error& e) {
            // The child need not read its input (`true`): not our error.
            if (e.code() != std::errc::broken_pipe && e.code() != std::errc::connection_reset) throw;
          }
          in_.close();
        });
      }
      if (err_.is_open()) g.spawn([&] { err_.read_to_end(o.err, max_output); });
      if (out_.is_open()) g.spawn([&] { out_.read_to_end(o.out, max_output); });
      g.wait();
    }
    o.status = wait();
  } catch (...) {
    // Cancelled, timed out or failed: the child does not outlive the call.
    // The clean-up must not replace the exception being reported: with
    // SIGCHLD set to SIG_IGN (or a waitpid(-1) elsewhere) the kernel reaps
    // the killed child itself and wait() raises ECHILD ("reaped
    // elsewhere"), which turned a TimedOut or Cancelled into a
    // system_error. The child is gone either way.
    try {
      kill(SIGKILL);
      spindle::shield([&] { wait(); });
    } catch (const std::system_error&) {
    }
    throw;
  }
  return o;
}

Process::Output run_command(const std::vector<std::string>& argv, const RunOptions& options) {
  ProcessOptions po = options.process;
  po.in = po.out = po.err = Stdio::pipe();
  Process p = Process::spawn(argv, po);
  if (options.timeout == std::chrono::steady_clock::duration::max()) {
    return p.communicate(options.input, options.max_output);
  }
  return spindle::with_timeout(options.timeout,
                               [&] { return p.communicate(options.input, options.max_output); });
}

}  // namespace spindle::io
