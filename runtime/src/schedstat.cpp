// schedstat.cpp: see schedstat.hpp.
#include "schedstat.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

namespace spindle::detail {

namespace {
int open_retrying(const char* path) noexcept {
  int fd;
  do {
    fd = ::open(path, O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  return fd;
}
}  // namespace

int open_schedstat() noexcept { return open_retrying("/proc/thread-self/schedstat"); }

SchedSample read_schedstat(int fd) noexcept {
  if (fd < 0) return {};
  // "RUN_NS WAIT_NS TIMESLICES\n": three decimal numbers, under 64 bytes.
  char buf[96];
  ssize_t n;
  do {
    n = ::pread(fd, buf, sizeof buf - 1, 0);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return {};
  buf[n] = '\0';
  char* end = nullptr;
  const long long run = std::strtoll(buf, &end, 10);
  if (end == buf) return {};
  char* end2 = nullptr;
  const long long wait = std::strtoll(end, &end2, 10);
  if (end2 == end || run < 0 || wait < 0) return {};
  return {run, wait};
}

int open_thread_stat() noexcept { return open_retrying("/proc/thread-self/stat"); }

char read_thread_state(int fd) noexcept {
  if (fd < 0) return 0;
  // "TID (COMM) S ...": COMM is at most 15 bytes and may hold spaces or
  // parentheses, so the state follows the *last* ')'. The fields before
  // the state fit in 64 bytes.
  char buf[64];
  ssize_t n;
  do {
    n = ::pread(fd, buf, sizeof buf, 0);
  } while (n < 0 && errno == EINTR);
  if (n <= 0) return 0;
  const char* close = nullptr;
  for (ssize_t i = 0; i < n; ++i) {
    if (buf[i] == ')') close = buf + i;
  }
  if (close == nullptr || close + 2 >= buf + n || close[1] != ' ') return 0;
  return close[2];
}

}  // namespace spindle::detail
