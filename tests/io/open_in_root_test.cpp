// open_in_root_test.cpp: io::File::open_in_root (file.hpp) opens a file
// under a root and nowhere else: absolute paths, "..", and symlinks that
// lead out are refused, symlinks that stay under the root are followed
// (or every one with follow_symlinks), and anything but a regular file is
// refused without waiting. Each case runs with openat2 and with the
// component walk that kernels without it get.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <system_error>

#include <spindle/io/all.hpp>

#include "file_tree.hpp"
#include "io_test.hpp"
#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;
namespace io = spindle::io;
namespace fs = std::filesystem;

namespace {

std::string read_all(io::File& f) {
  std::string out;
  char buf[256];
  while (const std::size_t n = f.read(buf, sizeof buf)) out.append(buf, n);
  return out;
}

// The error open_in_root raised, and its what(); a default code if it
// opened.
struct Refusal {
  std::error_code code;
  std::string what;
  bool invalid_argument = false;
};

Refusal refusal(const fs::path& root, const fs::path& rel, bool follow = false) {
  try {
    (void)io::File::open_in_root(root, rel, follow);
  } catch (const std::system_error& e) {
    return {e.code(), e.what()};
  } catch (const std::invalid_argument& e) {
    return {{}, e.what(), true};
  }
  return {};
}


// Sets the mode for one section, back to openat2 after it.
struct Mode {
  explicit Mode(bool openat2) { io::detail::set_open_in_root_openat2(openat2); }
  ~Mode() { io::detail::set_open_in_root_openat2(true); }
};

}  // namespace

TEST_CASE("open_in_root opens files under the root, and nothing that leads out") {
  const bool openat2 = GENERATE(true, false);
  INFO("openat2 " << openat2);
  if (openat2 && !have_openat2()) {
    WARN("no openat2 here (a kernel before 5.6, or a seccomp filter): its half is not run");
    return;
  }
  FileTree t;
  run_checked(2, [&] {
    Mode mode(openat2);
    const std::size_t fds_before = open_fds();
    // Under the root: a file, a nested one, the path the File names.
    io::File a = io::File::open_in_root(t.root, "a.txt");
    FIBER_CHECK(read_all(a) == "hello\n");
    FIBER_CHECK(a.path() == t.root / "a.txt");
    // Opened O_NONBLOCK (a FIFO must not wait), handed over without it.
    FIBER_CHECK((::fcntl(a.fd(), F_GETFL) & O_NONBLOCK) == 0);
    FIBER_CHECK((::fcntl(a.fd(), F_GETFD) & FD_CLOEXEC) != 0);
    io::File p = io::File::open_in_root(t.root, "sub/page.html");
    FIBER_CHECK(read_all(p) == "<p>page</p>\n");
    io::File p2 = io::File::open_in_root(t.root, "./sub//page.html");
    FIBER_CHECK(read_all(p2) == "<p>page</p>\n");

    // Lexically out, before any syscall: absolute, "..", even one that
    // would come back.
    for (const char* rel : {"/etc/passwd", "../outside/secret.txt", "sub/../../outside/secret.txt", "sub/../a.txt"}) {
      INFO(rel);
      const Refusal r = refusal(t.root, rel);
      FIBER_CHECK(r.code == std::errc::permission_denied);
      FIBER_CHECK(r.what.find("leads out of the root") != std::string::npos);
    }
    // Symlinks that lead out: refused in both modes (the walk refuses
    // every symlink, openat2 those that leave).
    for (const char* rel : {"link_out", "dir_out/secret.txt", "link_abs_in"}) {
      INFO(rel);
      const Refusal r = refusal(t.root, rel);
      FIBER_CHECK(!r.invalid_argument);
      FIBER_CHECK(r.code != std::error_code{});
    }
    if (openat2) {
      // The kernel's own word: the path leads out (EXDEV, reported as
      // permission_denied); a relative symlink that stays under is followed.
      FIBER_CHECK(refusal(t.root, "link_out").code == std::errc::permission_denied);
      FIBER_CHECK(refusal(t.root, "link_out").what.find("a symlink leads out of the root") != std::string::npos);
      io::File in = io::File::open_in_root(t.root, "sub/link_in");
      FIBER_CHECK(read_all(in) == "hello\n");
    } else {
      FIBER_CHECK(refusal(t.root, "sub/link_in").code != std::error_code{});  // the walk refuses every symlink
    }

    // follow_symlinks: every symlink followed; "..", absolute still refused.
    io::File out = io::File::open_in_root(t.root, "link_out", true);
    FIBER_CHECK(read_all(out) == FileTree::kSecret);
    io::File abs_in = io::File::open_in_root(t.root, "link_abs_in", true);
    FIBER_CHECK(read_all(abs_in) == "hello\n");
    FIBER_CHECK(refusal(t.root, "../outside/secret.txt", true).code == std::errc::permission_denied);
    FIBER_CHECK(refusal(t.root, "/etc/passwd", true).code == std::errc::permission_denied);

    // Not regular files: refused at once (a FIFO with no writer would make
    // open(2) wait for one: the watchdog turns that into a failure here,
    // not a hang); missing: open's own error; NUL: invalid_argument.
    {
      FifoWatchdog watchdog(t.root / "fifo");
      const auto t0 = std::chrono::steady_clock::now();
      FIBER_CHECK(refusal(t.root, "fifo").code == std::errc::invalid_argument);
      FIBER_CHECK(refusal(t.root, "fifo", true).code == std::errc::invalid_argument);
      FIBER_CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(5));
    }
    FIBER_CHECK(refusal(t.root, "dir").code == std::errc::invalid_argument);
    FIBER_CHECK(refusal(t.root, "").code == std::errc::no_such_file_or_directory);
    // A file's name with a trailing '/' or "." names a directory: both
    // resolutions say so.
    FIBER_CHECK(refusal(t.root, "a.txt/").code == std::errc::not_a_directory);
    FIBER_CHECK(refusal(t.root, "a.txt/.").code == std::errc::not_a_directory);
    FIBER_CHECK(refusal(t.root, "nope.txt").code == std::errc::no_such_file_or_directory);
    FIBER_CHECK(refusal(t.root, std::string("a.txt\0.png", 10)).invalid_argument);
    FIBER_CHECK(refusal(t.root / "nope", "a.txt").code == std::errc::no_such_file_or_directory);

    // Every refusal above closed what it opened (the root's descriptor,
    // the walk's directories, the FIFO and directory it opened to look).
    a.close();
    p.close();
    p2.close();
    out.close();
    abs_in.close();
    FIBER_CHECK(open_fds() == fds_before);
  });
}

// /proc's magic links lead anywhere (/proc/self/fd/N is whatever the
// process holds as N): openat2 refuses them even with follow_symlinks.
// (The walk's follow mode is a plain openat and follows them: docs/io.md.)
TEST_CASE("open_in_root refuses /proc's magic links even when it follows symlinks") {
  if (!have_openat2()) {
    WARN("no openat2 here: not run");
    return;
  }
  FileTree t;
  run_checked(1, [&] {
    io::File secret = io::File::open(t.base / "outside" / "secret.txt", io::OpenMode::read);
    fs::create_symlink("/proc/self/fd/" + std::to_string(secret.fd()), t.root / "magic");
    const Refusal r = refusal(t.root, "magic", true);
    FIBER_CHECK(r.code == std::errc::too_many_symbolic_link_levels);
    FIBER_CHECK(refusal(t.root, "magic").code == std::errc::permission_denied);  // absolute: out
  });
}
