// process.hpp: child processes (asyncio's create_subprocess_exec and
// communicate, Python's subprocess.run).
//
//   io::ProcessOptions o;
//   o.in = o.out = io::Stdio::pipe();
//   auto p = io::Process::spawn({"sort"}, o);
//   p.stdin_pipe().write_all("b\na\n");
//   p.stdin_pipe().close();                   // sort sees end of input
//   std::string sorted;
//   p.stdout_pipe().read_to_end(sorted);
//   io::ExitStatus st = p.wait();             // suspends only this fiber
//
// Spawning uses posix_spawn (glibc's is clone(CLONE_VFORK) + exec, and it
// reports a failed exec as its result): a missing or non-executable program,
// a bad cwd, or a redirect file that cannot be opened throws
// std::system_error at spawn (std::errc::no_such_file_or_directory,
// permission_denied, ...) naming the program or the path -- never a child
// that exits 127. The child gets an empty signal mask and the default
// disposition for every signal (a SIG_IGN or a handler of the parent does not
// leak into it), and only the descriptors 0, 1, 2 and ProcessOptions::
// pass_fds (every other one is closed in the child, close-on-exec or
// not). A NUL byte in an argument, an env entry, cwd or a redirect path:
// std::invalid_argument, nothing spawned.
//
// Reaping: the child's exit is a readiness event on a pidfd (Linux >= 5.3)
// registered with the calling runtime's reactor; wait() reaps it. No zombie
// is left: a Process destroyed before its child was reaped -- wait() never
// called, or its fiber cancelled -- hands the child to a process-wide reaper
// thread that reaps it when it exits (it is not killed: kill() first if that
// is what you want). Without pidfd (older kernels) wait() polls waitpid.
//
// Who may call: spawn and wait from a fiber of a running runtime (they use
// its reactor); kill, pid and try_wait from anywhere. wait() and kill() may
// run concurrently (one fiber waits, another kills on a timeout); two
// concurrent wait() calls on one Process: the second gets
// std::errc::operation_in_progress. A Process (and its pipes) may outlive
// its runtime, as a socket may (docs/io.md "Shutdown with sockets open"):
// wait() and its pipes' reads then raise io::error::runtime_ended;
// try_wait, kill and the destructor work.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <spindle/io/fd_stream.hpp>
#include <spindle/runtime/detail/macros.hpp>

namespace spindle::io {

// The pipes: our end of the child's stdin, stdout or stderr is an FdStream
// (fd_stream.hpp: the same calls as TcpStream, read_line included, every
// wait a cancellation point obeying with_timeout; several fibers may use
// one pipe, taking turns). It is one end of a Unix stream socketpair,
// as libuv's pipes are: writes use MSG_NOSIGNAL, so a child that closed
// its stdin gives std::errc::broken_pipe, never SIGPIPE. Closing the stdin
// stream is how the child sees end of input.

// Stdio: where one of the child's standard descriptors goes.
struct Stdio {
  enum Kind { inherit, null, pipe_kind, file } kind = inherit;
  std::string path;     // file: the path
  bool append = false;  // file as output: append rather than truncate

  static Stdio inherited() { return {}; }
  // null: /dev/null.
  static Stdio devnull() { return {null, {}, false}; }
  // pipe: an FdStream in the Process (stdin_pipe() ...).
  static Stdio pipe() { return {pipe_kind, {}, false}; }
  // to_file: opened by the parent before the spawn (an error names the
  // path): read-only for stdin; for stdout/stderr created (0666 & ~umask)
  // and truncated, or appended to with `append`. A FIFO is refused
  // (std::system_error, EINVAL; ENXIO for output with no reader): its
  // open would wait for the other end on the worker's thread, since
  // spawn() never suspends. Use pipe() and copy instead.
  static Stdio to_file(std::string p, bool append = false) { return {file, std::move(p), append}; }
};

struct ProcessOptions {
  // cwd: the child's working directory; empty: the parent's.
  std::string cwd;
  // env: the child's whole environment ("NAME=value" entries); unset: the
  // parent's (environ at the time of the spawn).
  std::optional<std::vector<std::string>> env;
  Stdio in, out, err;
  // search_path: argv[0] without a '/' is looked up in PATH (posix_spawnp).
  bool search_path = true;
  // pass_fds: descriptors above 2 the child keeps, at the same numbers,
  // close-on-exec or not (Python's pass_fds: a listening socket handed
  // on, a --fd=N protocol). Every other descriptor above 2 is closed in
  // the child. One that is not open, or not above 2:
  // std::invalid_argument.
  std::vector<int> pass_fds;
};

// ExitStatus: how the child ended.
struct ExitStatus {
  int code = -1;   // exit code when it exited, else -1
  int signal = 0;  // the terminating signal, else 0
  bool exited() const noexcept { return signal == 0; }
  bool success() const noexcept { return signal == 0 && code == 0; }
};

class Process {
 public:
  Process() noexcept;
  Process(Process&&) noexcept;
  Process& operator=(Process&&) noexcept;
  // Closes the pipes; a child not yet reaped goes to the reaper (see top).
  ~Process();

  // spawn: starts argv[0] with argv (argv must not be empty). Never
  // suspends. Throws std::system_error naming the program or path.
  static Process spawn(const std::vector<std::string>& argv, const ProcessOptions& options = {});

  // pid: the child's process id (it stays valid until the child is reaped).
  pid_t pid() const noexcept;
  // wait: the child's exit status, waiting for it to end; reaps it. Returns
  // the same status again once reaped. May suspend; a cancellation point
  // (Cancelled, TimedOut): a cancelled wait leaves the child running and
  // unreaped; a later wait() or the destructor takes care of it.
  SPINDLE_MAY_SUSPEND ExitStatus wait();
  // try_wait: the status if the child has ended (reaping it), else empty.
  std::optional<ExitStatus> try_wait();
  // kill: sends `sig` to the child; does nothing once it was reaped (so it
  // never reaches another process that got the same pid). Throws
  // std::system_error for an invalid signal.
  void kill(int sig);

  // The pipes the options asked for; an empty (closed) FdStream otherwise.
  FdStream& stdin_pipe() noexcept { return in_; }
  FdStream& stdout_pipe() noexcept { return out_; }
  FdStream& stderr_pipe() noexcept { return err_; }

  // communicate: writes `input` to stdin (then closes it), reads stdout and
  // stderr to their ends concurrently (no deadlock whatever the sizes), and
  // waits for the child. Streams the options did not pipe give empty
  // strings. Each output is limited to max_output bytes
  // (std::errc::message_size past it). A child that does not read its
  // input (broken_pipe) is not an error. May suspend; a cancellation point.
  // On any exception -- cancelled, a with_timeout around it expired, an
  // I/O error, message_size -- the child is killed (SIGKILL) and reaped
  // (shielded) before the exception propagates. Call once.
  struct Output {
    ExitStatus status;
    std::string out, err;
  };
  SPINDLE_MAY_SUSPEND Output communicate(std::string_view input = {},
                                         std::size_t max_output = std::string::npos);

  struct State;

 private:
  std::unique_ptr<State> st_;
  FdStream in_, out_, err_;
};

// run_command: spawns argv with its stdin, stdout and stderr piped (the
// options' in/out/err are ignored), feeds `input`, collects the outputs
// and waits (Process::communicate). With a timeout, a child still running
// when it expires is killed (SIGKILL) and reaped, and spindle::TimedOut is
// raised. May suspend; a cancellation point.
struct RunOptions {
  ProcessOptions process;
  std::string input;
  std::chrono::steady_clock::duration timeout = std::chrono::steady_clock::duration::max();
  std::size_t max_output = std::string::npos;
};
SPINDLE_MAY_SUSPEND Process::Output run_command(const std::vector<std::string>& argv,
                                                const RunOptions& options = {});

}  // namespace spindle::io
