// file_tree.hpp: a directory tree for the tests of opening files under a
// root (io::File::open_in_root, http::static_files): files, symlinks that
// stay under the root and ones that lead out, a FIFO, a directory, and a
// secret file beside the root that nothing may reach. Removed with
// everything in it.
#pragma once

#include <fcntl.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <thread>
#include <utility>

namespace spindle_test {

// have_openat2: whether this kernel (and any seccomp filter) lets openat2
// run: the cases that expect its answers (a symlink under the root
// followed, one out refused as "leads out") hold only then.
inline bool have_openat2() {
  open_how how{};
  how.flags = O_PATH | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH;
  const long fd = ::syscall(SYS_openat2, AT_FDCWD, ".", &how, sizeof how);
  if (fd < 0) return false;
  ::close(static_cast<int>(fd));
  return true;
}

struct FileTree {
  std::filesystem::path base;  // holds root/ and outside/
  std::filesystem::path root;
  static constexpr const char* kSecret = "SECRET-outside-the-root\n";

  FileTree() {
    namespace fs = std::filesystem;
    std::string t = (fs::temp_directory_path() / "spindle_tree_XXXXXX").string();
    if (::mkdtemp(t.data()) == nullptr) throw std::system_error(errno, std::system_category(), "mkdtemp");
    base = t;
    root = base / "root";
    fs::create_directories(root / "sub");
    fs::create_directories(root / "dir");
    fs::create_directories(base / "outside");
    write(root / "a.txt", "hello\n");
    write(root / "sub" / "page.html", "<p>page</p>\n");
    write(root / "Photo.JPG", "jpeg bytes");
    write(base / "outside" / "secret.txt", kSecret);
    fs::create_symlink("../a.txt", root / "sub" / "link_in");            // stays under the root
    fs::create_symlink(root / "a.txt", root / "link_abs_in");              // absolute, to a file under it
    fs::create_symlink("../outside/secret.txt", root / "link_out");       // leads out
    fs::create_directory_symlink("../outside", root / "dir_out");          // a directory out
    if (::mkfifo((root / "fifo").c_str(), 0600) != 0) {
      throw std::system_error(errno, std::system_category(), "mkfifo");
    }
  }
  ~FileTree() {
    std::error_code ec;
    std::filesystem::remove_all(base, ec);
  }
  FileTree(const FileTree&) = delete;
  FileTree& operator=(const FileTree&) = delete;

  static void write(const std::filesystem::path& p, const std::string& s) {
    std::ofstream(p, std::ios::binary) << s;
  }
};

// FifoWatchdog: while it lives, a thread that, 5 s on, opens the FIFO
// for writing and closes it again, so an open that waits for a writer
// (the bug the FIFO cases look for: open(2) without O_NONBLOCK) ends,
// and the case fails with its checks instead of hanging until ctest's
// timeout. Destroyed before that: the thread leaves without touching it.
class FifoWatchdog {
 public:
  explicit FifoWatchdog(std::filesystem::path fifo)
      : fifo_(std::move(fifo)), thread_([this] {
          std::unique_lock lk(mu_);
          if (cv_.wait_for(lk, std::chrono::seconds(5), [this] { return done_; })) return;
          const int fd = ::open(fifo_.c_str(), O_RDWR | O_NONBLOCK);  // O_RDWR: never waits
          if (fd >= 0) ::close(fd);
        }) {}
  ~FifoWatchdog() {
    {
      std::lock_guard lk(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  FifoWatchdog(const FifoWatchdog&) = delete;
  FifoWatchdog& operator=(const FifoWatchdog&) = delete;

 private:
  std::filesystem::path fifo_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

}  // namespace spindle_test
