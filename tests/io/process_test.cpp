// process_test.cpp: Process and run_command (process.hpp): exit codes and
// terminating signals, a missing program as an error at spawn, cwd and
// environment, stdio to null and files, pipes in both directions with
// large outputs on stdout and stderr at once (no deadlock), cancellation of
// wait with the child still reaped (no zombie), timeouts that kill, 200
// concurrent children, and no descriptor leaked.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <spindle/io/process.hpp>
#include <spindle/sync/all.hpp>

#include "io_test.hpp"
#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;
namespace io = spindle::io;

namespace {

// gone_eventually: true once pid no longer exists, false if it is still
// there (running or a zombie) after a generous while. Polls /proc: the
// reaper thread reaps on its own schedule, and nothing else can tell us.
bool gone_eventually(pid_t pid) {
  const auto end = Clock::now() + slack(std::chrono::seconds(20));
  const std::string path = "/proc/" + std::to_string(pid);
  while (Clock::now() < end) {
    if (!std::filesystem::exists(path)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

std::string temp_path(const char* name) {
  return (std::filesystem::temp_directory_path() / (std::string("spindle_proc_") + std::to_string(::getpid()) + "_" + name)).string();
}

}  // namespace

TEST_CASE("process: exit codes and terminating signals") {
  const unsigned workers = GENERATE(1u, 2u);
  INFO("workers " << workers);
  run_checked(workers, [&] {
    auto ok = io::Process::spawn({"true"});
    FIBER_CHECK(ok.pid() > 0);
    FIBER_CHECK(ok.wait().success());
    FIBER_CHECK(ok.wait().code == 0);  // again: the same status

    auto three = io::Process::spawn({"sh", "-c", "exit 3"});
    const io::ExitStatus s3 = three.wait();
    FIBER_CHECK((s3.exited() && s3.code == 3));

    io::ProcessOptions o;
    o.in = io::Stdio::pipe();
    auto cat = io::Process::spawn({"cat"}, o);
    FIBER_CHECK(!cat.try_wait());
    cat.kill(SIGTERM);
    const io::ExitStatus st = cat.wait();
    FIBER_CHECK((!st.exited() && st.signal == SIGTERM && st.code == -1));
    cat.kill(SIGTERM);  // reaped: nothing happens, nobody else is hit

    auto self = io::Process::spawn({"sh", "-c", "kill -9 $$"});
    FIBER_CHECK(self.wait().signal == SIGKILL);
  });
}

TEST_CASE("process: a missing program, cwd or input file is an error at spawn") {
  run_checked(1, [&] {
    auto fails_with = [](std::errc want, auto&& f) {
      try {
        f();
      } catch (const std::system_error& e) {
        INFO(e.what());
        return e.code() == want;
      }
      return false;
    };
    FIBER_CHECK(fails_with(std::errc::no_such_file_or_directory,
                           [] { io::Process::spawn({"/nonexistent/spindle-no-such-program"}); }));
    FIBER_CHECK(fails_with(std::errc::no_such_file_or_directory,
                           [] { io::Process::spawn({"spindle-no-such-program-in-path"}); }));
    FIBER_CHECK(fails_with(std::errc::permission_denied, [] { io::Process::spawn({"/etc/passwd"}); }));
    io::ProcessOptions cwd;
    cwd.cwd = "/nonexistent/dir";
    FIBER_CHECK(fails_with(std::errc::no_such_file_or_directory, [&] { io::Process::spawn({"true"}, cwd); }));
    io::ProcessOptions in;
    in.in = io::Stdio::to_file("/nonexistent/input");
    FIBER_CHECK(fails_with(std::errc::no_such_file_or_directory, [&] { io::Process::spawn({"cat"}, in); }));
    // The message names the program.
    try {
      io::Process::spawn({"spindle-no-such-program-in-path"});
    } catch (const std::system_error& e) {
      FIBER_CHECK(std::string(e.what()).find("spindle-no-such-program-in-path") != std::string::npos);
    }
  });
}

// Stdio::to_file is opened on the worker (spawn never suspends): a FIFO
// there waited in open(2) for its other end, stopping the worker. Now it
// is refused at once. On the old code the spawns below blocked until the
// helper thread opened the other ends (after 1 s), then succeeded.
TEST_CASE("process: a FIFO as Stdio::to_file is refused without waiting for its other end") {
  const auto dir = std::filesystem::temp_directory_path() / ("spindle_fifo_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string in_fifo = (dir / "in").string(), out_fifo = (dir / "out").string();
  REQUIRE(::mkfifo(in_fifo.c_str(), 0600) == 0);
  REQUIRE(::mkfifo(out_fifo.c_str(), 0600) == 0);
  std::atomic<bool> done{false};
  std::thread other_ends([&] {
    for (int i = 0; i < 100 && !done.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (done.load()) return;
    const int w = ::open(in_fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    const int r = ::open(out_fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    while (!done.load()) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (w >= 0) ::close(w);
    if (r >= 0) ::close(r);
  });
  struct Stop {  // on every way out, a failed REQUIRE included
    std::atomic<bool>& done;
    std::thread& t;
    ~Stop() {
      done = true;
      t.join();
    }
  } stop{done, other_ends};
  run_checked(1, [&] {
    auto refused = [](std::errc want, const io::ProcessOptions& o) {
      try {
        io::Process::spawn({"true"}, o).wait();
      } catch (const std::system_error& e) {
        INFO(e.what());
        return e.code() == want;
      }
      return false;
    };
    io::ProcessOptions in;
    in.in = io::Stdio::to_file(in_fifo);
    FIBER_CHECK(refused(std::errc::invalid_argument, in));
    io::ProcessOptions out;
    out.out = io::Stdio::to_file(out_fifo);
    FIBER_CHECK(refused(std::errc::no_such_device_or_address, out));  // no reader
  });
  std::filesystem::remove_all(dir);
}

TEST_CASE("process: cwd, environment, null and file redirects") {
  const std::string out_file = temp_path("out");
  run_checked(2, [&] {
    io::RunOptions r;
    r.process.cwd = "/";
    r.process.env = std::vector<std::string>{"SPINDLE_X=hello", "PATH=/usr/bin:/bin"};
    auto o = io::run_command({"sh", "-c", "echo $SPINDLE_X; pwd; echo err >&2"}, r);
    FIBER_CHECK(o.status.success());
    FIBER_CHECK(o.out == "hello\n/\n");
    FIBER_CHECK(o.err == "err\n");

    io::ProcessOptions f;
    f.out = io::Stdio::to_file(out_file);
    f.err = io::Stdio::devnull();
    FIBER_CHECK(io::Process::spawn({"sh", "-c", "echo one; echo lost >&2"}, f).wait().success());
    f.out = io::Stdio::to_file(out_file, true);
    FIBER_CHECK(io::Process::spawn({"echo", "two"}, f).wait().success());

    io::ProcessOptions in;
    in.in = io::Stdio::to_file(out_file);
    in.out = io::Stdio::pipe();
    auto cat = io::Process::spawn({"cat"}, in);
    std::string got;
    cat.stdout_pipe().read_to_end(got);
    FIBER_CHECK(got == "one\ntwo\n");
    FIBER_CHECK(cat.wait().success());

    io::ProcessOptions null_in;
    null_in.in = io::Stdio::devnull();
    null_in.out = io::Stdio::pipe();
    auto wc = io::Process::spawn({"wc", "-c"}, null_in);
    std::string n;
    wc.stdout_pipe().read_to_end(n);
    FIBER_CHECK(n.find('0') != std::string::npos);
    FIBER_CHECK(wc.wait().success());
  });
  std::filesystem::remove(out_file);
}

// A NUL byte would cut an argument, variable or path short at execve:
// "a\0b" reached the child as "a".
TEST_CASE("process: an argument, environment entry or path with a NUL byte is std::invalid_argument") {
  run_checked(2, [&] {
    const std::string nul("x\0y", 3);
    int refused = 0;
    auto refuses = [&](const std::vector<std::string>& argv, const io::ProcessOptions& o) {
      try {
        io::Process::spawn(argv, o).wait();
      } catch (const std::invalid_argument& e) {
        ++refused;
        FIBER_CHECK(std::string(e.what()).find("NUL") != std::string::npos);
      }
    };
    refuses({"echo", nul}, {});
    refuses({nul}, {});
    io::ProcessOptions env;
    env.env = std::vector<std::string>{"A=1" + std::string(1, '\0') + "B=2"};
    refuses({"true"}, env);
    io::ProcessOptions cwd;
    cwd.cwd = "/" + nul;
    refuses({"true"}, cwd);
    io::ProcessOptions out;
    out.out = io::Stdio::to_file("/tmp/" + nul);
    refuses({"true"}, out);
    FIBER_CHECK(refused == 5);
  });
}

// Only 0-2 reach a child: a descriptor the program holds without
// O_CLOEXEC (inherited, or opened by a library) is closed at the spawn.
TEST_CASE("process: a descriptor without close-on-exec does not reach the child; pass_fds hands some on") {
  run_checked(2, [&] {
    const int fd = ::open("/dev/null", O_RDONLY);  // no O_CLOEXEC
    FIBER_CHECK(fd > 2);
    const auto o = io::run_command(
        {"sh", "-c", "if [ -e /proc/$$/fd/" + std::to_string(fd) + " ]; then echo open; else echo closed; fi"});
    ::close(fd);
    FIBER_CHECK(o.out == "closed\n");
    // pass_fds: kept at its number, close-on-exec or not; the others still
    // closed.
    int p[2];
    FIBER_CHECK(::pipe2(p, O_CLOEXEC) == 0);
    const int other = ::open("/dev/null", O_RDONLY);
    io::RunOptions r;
    r.process.pass_fds = {p[1]};
    const auto kept = io::run_command({"sh", "-c",
                                       // (dash takes one-digit fds in >&N only: the path instead)
                                       "echo through > /proc/$$/fd/" + std::to_string(p[1]) + "; if [ -e /proc/$$/fd/" +
                                           std::to_string(other) + " ]; then echo open; else echo closed; fi"},
                                      r);
    ::close(p[1]);
    ::close(other);
    char buf[32];
    const ssize_t n = ::read(p[0], buf, sizeof buf);
    ::close(p[0]);
    FIBER_CHECK(std::string(buf, n > 0 ? static_cast<std::size_t>(n) : 0) == "through\n");
    FIBER_CHECK(kept.out == "closed\n");
    // One that is not open: refused before anything runs.
    r.process.pass_fds = {p[1]};  // closed above
    bool refused = false;
    try {
      io::run_command({"true"}, r);
    } catch (const std::invalid_argument&) {
      refused = true;
    }
    FIBER_CHECK(refused);
  });
}

// The numbers below a pass_fd are closed in the child whether or not they
// were open when spawn() looked: another thread may open one without
// O_CLOEXEC just before the child's table is copied. A thread here opens
// and closes number `gap` (below the pass_fd) as fast as it can while
// children report whether they got it. Before the fix about a quarter of
// them did (only the numbers open at the check were closed).
TEST_CASE("process: a descriptor another thread opens below a pass_fd during the spawn does not reach the child") {
  constexpr int gap = 250, passed = 300;
  REQUIRE(::fcntl(gap, F_GETFD) == -1);
  REQUIRE(::fcntl(passed, F_GETFD) == -1);
  const int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  REQUIRE(null >= 0);
  REQUIRE(::dup3(null, passed, O_CLOEXEC) == passed);
  std::atomic<bool> stop{false};
  std::thread opener([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      ::dup2(null, gap);  // dup2: the copy is not close-on-exec
      ::close(gap);
    }
  });
  struct Stop {  // on every way out, a failed REQUIRE included
    std::atomic<bool>& stop;
    std::thread& t;
    int null;
    ~Stop() {
      stop = true;
      t.join();
      ::close(passed);
      ::close(null);
    }
  } stopper{stop, opener, null};
  int leaked = 0, spawned = 0;
  run_checked(2, [&] {
    io::RunOptions r;
    r.process.pass_fds = {passed};
    const std::vector<std::string> argv = {
        "sh", "-c", "if [ -e /proc/$$/fd/" + std::to_string(gap) + " ]; then echo open; else echo closed; fi"};
    for (int i = 0; i < 150; ++i) {
      const auto o = io::run_command(argv, r);
      ++spawned;
      if (o.out != "closed\n") ++leaked;
    }
  });
  CHECK(spawned == 150);
  CHECK(leaked == 0);
}

TEST_CASE("process: 10 MiB on stdout and stderr at once, and 10 MiB through cat, without deadlock") {
  const unsigned workers = GENERATE(1u, 2u);
  INFO("workers " << workers);
  const std::size_t mib = 10 * 1024 * 1024;
  run_checked(workers, [&] {
    // Both streams written concurrently by the child: reading one to its
    // end before the other would stall it on a full buffer.
    auto o = io::run_command({"sh", "-c",
                              "head -c 10485760 /dev/zero | tr '\\0' e >&2 & "
                              "head -c 10485760 /dev/zero | tr '\\0' o; wait"});
    FIBER_CHECK(o.status.success());
    FIBER_CHECK(o.out.size() == mib);
    FIBER_CHECK(o.err.size() == mib);
    FIBER_CHECK(o.out.find_first_not_of('o') == std::string::npos);
    FIBER_CHECK(o.err.find_first_not_of('e') == std::string::npos);

    // The other direction: cat echoes while we still write.
    std::string in(mib, '\0');
    for (std::size_t i = 0; i < in.size(); ++i) in[i] = static_cast<char>((i * 7 + i / 4096) & 0xff);
    io::RunOptions r;
    r.input = in;
    auto echoed = io::run_command({"cat"}, r);
    FIBER_CHECK(echoed.status.success());
    FIBER_CHECK(echoed.out == in);
  });
}

TEST_CASE("process: pipes are streams; a child that closed its stdin gives broken_pipe, not SIGPIPE") {
  run_checked(2, [&] {
    io::ProcessOptions o;
    o.in = o.out = io::Stdio::pipe();
    auto p = io::Process::spawn({"sh", "-c", "read line; echo got:$line"}, o);
    p.stdin_pipe().write_all("hello\nrest that nobody reads\n");
    std::string buf;
    const std::size_t n = p.stdout_pipe().read_until(buf, "\n", 1024);
    FIBER_CHECK(buf.substr(0, n) == "got:hello\n");
    FIBER_CHECK(p.wait().success());
    std::string big(1 << 20, 'x');
    bool broken = false;
    try {
      p.stdin_pipe().write_all(big);
    } catch (const std::system_error& e) {
      broken = e.code() == std::errc::broken_pipe || e.code() == std::errc::connection_reset;
    }
    FIBER_CHECK(broken);
  });
}

TEST_CASE("process: a cancelled or timed-out wait leaves the child running; it is still reaped") {
  pid_t abandoned = -1;
  pid_t timed = -1;
  run_checked(2, [&] {
    {
      io::ProcessOptions o;
      o.in = io::Stdio::pipe();
      auto p = io::Process::spawn({"cat"}, o);  // runs until its stdin closes
      abandoned = p.pid();
      auto waiter = sp::spawn([&] { return p.wait(); });
      wait_suspended(waiter, "process wait");
      waiter.cancel();
      FIBER_CHECK(raises_cancelled([&] { waiter.join(); }));
      FIBER_CHECK(!p.try_wait());  // still running, unreaped
    }  // ~Process closes cat's stdin: cat exits, and the reaper reaps it

    io::ProcessOptions o;
    o.in = io::Stdio::pipe();
    auto p = io::Process::spawn({"cat"}, o);
    timed = p.pid();
    FIBER_CHECK(raises_timeout([&] { sp::with_timeout(std::chrono::milliseconds(20), [&] { return p.wait(); }); }));
    p.stdin_pipe().close();
    FIBER_CHECK(p.wait().success());  // a later wait reaps it
  });
  CHECK(gone_eventually(abandoned));
  CHECK(gone_eventually(timed));
}

TEST_CASE("process: run_command with a timeout kills and reaps the child") {
  run_checked(2, [&] {
    io::RunOptions r;
    r.timeout = std::chrono::milliseconds(50);
    const auto t0 = Clock::now();
    FIBER_CHECK(raises_timeout([&] { io::run_command({"sleep", "30"}, r); }));
    // Not a speed claim: only that the 30 s child was not waited for.
    FIBER_CHECK(Clock::now() - t0 < slack(std::chrono::seconds(10)));
  });
}

// A program that sets SIGCHLD to SIG_IGN has the kernel reap its children.
// communicate's clean-up (kill, then a shielded wait) then got ECHILD from
// wait(), and its system_error ("reaped elsewhere") replaced the TimedOut or
// Cancelled being raised.
TEST_CASE("process: with SIGCHLD ignored, a timed-out or cancelled run_command still raises TimedOut or Cancelled") {
  struct sigaction ign{};
  struct sigaction old{};
  ign.sa_handler = SIG_IGN;
  sigemptyset(&ign.sa_mask);
  REQUIRE(::sigaction(SIGCHLD, &ign, &old) == 0);
  struct Restore {
    struct sigaction& old;
    ~Restore() { ::sigaction(SIGCHLD, &old, nullptr); }
  } restore{old};
  run_checked(2, [&] {
    io::RunOptions r;
    r.timeout = std::chrono::milliseconds(50);
    FIBER_CHECK(raises_timeout([&] { io::run_command({"sleep", "30"}, r); }));

    auto t = sp::spawn([] { return io::run_command({"sleep", "30"}); });
    wait_suspended(t, "join");  // communicate waits for its stream helpers
    t.cancel();
    FIBER_CHECK(raises_cancelled([&] { t.join(); }));
  });
}

TEST_CASE("process: 200 concurrent children, no descriptor leaked") {
  const unsigned workers = GENERATE(1u, 2u);
  INFO("workers " << workers);
  const int n = kTsan ? 50 : 200;
  std::atomic<int> right{0};
  run_checked(workers, [&] {
    // Warm-up: the first spawn creates the runtime's reactor (an epoll
    // instance per worker), which stays until the runtime ends.
    FIBER_CHECK(io::run_command({"true"}).status.success());
    const std::size_t before = open_fds();
    {
      sp::TaskGroup g;
      for (int i = 0; i < n; ++i) {
        g.spawn([i, &right] {
          auto o = io::run_command({"echo", std::to_string(i)});
          if (o.status.success() && o.out == std::to_string(i) + "\n") right.fetch_add(1);
        });
      }
      g.wait();
    }
    FIBER_CHECK(open_fds() == before);
  });
  CHECK(right.load() == n);
}

TEST_CASE("process: the child gets an empty signal mask and default dispositions") {
  // The runtime's threads inherit this thread's mask: SIGUSR1 blocked and
  // SIGUSR2 ignored in the parent must not reach the child.
  sigset_t usr1, old;
  sigemptyset(&usr1);
  sigaddset(&usr1, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &usr1, &old);
  struct sigaction ign {}, old_usr2{};
  ign.sa_handler = SIG_IGN;
  ::sigaction(SIGUSR2, &ign, &old_usr2);
  int sig1 = 0, sig2 = 0;
  run_checked(1, [&] {
    sig1 = io::Process::spawn({"sh", "-c", "kill -USR1 $$; exit 0"}).wait().signal;
    sig2 = io::Process::spawn({"sh", "-c", "kill -USR2 $$; exit 0"}).wait().signal;
  });
  ::sigaction(SIGUSR2, &old_usr2, nullptr);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  CHECK(sig1 == SIGUSR1);
  CHECK(sig2 == SIGUSR2);
}

TEST_CASE("process: output past max_output is message_size, and the endless child is killed and reaped") {
  run_checked(2, [&] {
    io::RunOptions r;
    r.max_output = 1 << 20;
    bool too_big = false;
    try {
      io::run_command({"yes"}, r);  // never ends by itself
    } catch (const std::system_error& e) {
      too_big = e.code() == std::errc::message_size;
    }
    FIBER_CHECK(too_big);
    // The same on stderr, while stdout stays open and silent: the stdout
    // read is cancelled too. Before, this fiber went on reading stdout,
    // which the child, blocked on its full stderr pipe, never ended: a
    // hang (here bounded by the outer timeout, which raised TimedOut).
    std::string got = "returned";
    try {
      sp::with_timeout(slack(std::chrono::seconds(10)), [&] { io::run_command({"sh", "-c", "yes err >&2"}, r); });
    } catch (const std::system_error& e) {
      got = e.code() == std::errc::message_size ? "message_size" : e.what();
    } catch (const sp::TimedOut&) {
      got = "hung";
    }
    FIBER_CHECK(got == "message_size");
  });
}
