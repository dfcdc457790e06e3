// source_location.hpp: spindle::source_location, the spawn site a fiber
// records for dumps, warnings and the overflow report.
//
// It is std::source_location wherever the standard library has one. It
// exists because libstdc++ 12's <source_location> needs the compiler's
// __builtin_source_location, which clang gained only in version 15: with
// clang 14 (Debian 12's) and libstdc++ 12, std::source_location is not
// declared at all, and nothing that spawns a fiber would compile. Then a
// class with the same members takes its place, filled from the builtins
// every C++20 compiler here has (__builtin_FILE, _LINE, _COLUMN,
// _FUNCTION). The libFuzzer build (clang only; docs/hacking.md "Fuzzing")
// is the build that needs it.
#pragma once

#include <version>

#if defined(__cpp_lib_source_location)
#include <source_location>
namespace spindle {
using source_location = std::source_location;
}  // namespace spindle
#else
#include <cstdint>
namespace spindle {
class source_location {
 public:
  // The defaults are evaluated at the caller's site, as with
  // std::source_location::current().
  static constexpr source_location current(const char* file = __builtin_FILE(),
                                           const char* function = __builtin_FUNCTION(),
                                           std::uint_least32_t line = __builtin_LINE(),
                                           std::uint_least32_t column = __builtin_COLUMN()) noexcept {
    source_location l;
    l.file_ = file;
    l.function_ = function;
    l.line_ = line;
    l.column_ = column;
    return l;
  }
  constexpr source_location() noexcept = default;
  constexpr const char* file_name() const noexcept { return file_; }
  constexpr const char* function_name() const noexcept { return function_; }
  constexpr std::uint_least32_t line() const noexcept { return line_; }
  constexpr std::uint_least32_t column() const noexcept { return column_; }

 private:
  const char* file_ = "";
  const char* function_ = "";
  std::uint_least32_t line_ = 0;
  std::uint_least32_t column_ = 0;
};
}  // namespace spindle
#endif
