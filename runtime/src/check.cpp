// check.cpp: where a failed SPINDLE_CHECK ends (detail/macros.hpp).
#include <cstdio>
#include <cstdlib>

#include <spindle/runtime/detail/macros.hpp>

namespace spindle::detail {

void check_failed(const char* file, int line, const char* msg) noexcept {
  std::fprintf(stderr, "spindle: %s:%d: %s\n", file, line, msg);
  std::fflush(stderr);
  std::abort();
}

}  // namespace spindle::detail
