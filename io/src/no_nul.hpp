// no_nul.hpp: refusing NUL bytes in what goes to the kernel as a C string.
#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>

namespace spindle::io::detail {

// no_nul: a path, argument or environment entry holding a NUL byte would be
// cut short at it by the system call (read_file("secret\0.txt") opened
// "secret", past the caller's check of the extension; an argument "a\0b"
// reached the child as "a"). std::invalid_argument instead, naming what,
// never the value (it may come from a peer): Python raises ValueError
// ("embedded null byte"), Go returns EINVAL.
inline void no_nul(std::string_view s, const char* what) {
  if (s.find('\0') != std::string_view::npos) {
    throw std::invalid_argument(std::string("spindle::io: ") + what + " holds a NUL byte");
  }
}
inline void no_nul_path(const std::filesystem::path& p, const char* what) { no_nul(std::string_view(p.native()), what); }

}  // namespace spindle::io::detail
