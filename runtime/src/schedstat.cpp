// schedstat.cpp: see schedstat.hpp.
#include "schedstat.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

namespace spindle::detail {

int open_schedstat() noexcept {
  int fd;
  do {
    fd = ::open("/proc/thread-self/schedstat", O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

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

}  // namespace spindle::detail
