// limits.hpp: option values at their extremes, made safe where they are
// stored narrower or added to. A user who sets a size to SIZE_MAX means
// "as large as it goes": stored in a 32-bit field it must not become 0
// (1ull << 32 cast to uint32_t), and max_head + one read must not wrap to
// 65,535. Both happened (ClientOptions::max_head, ServerOptions::max_head).
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>

namespace spindle::http::detail {

// u32_limit: v as a 32-bit limit, UINT32_MAX past it.
constexpr std::uint32_t u32_limit(std::uint64_t v) noexcept {
  return v > std::numeric_limits<std::uint32_t>::max() ? std::numeric_limits<std::uint32_t>::max()
                                                         : static_cast<std::uint32_t>(v);
}

// sat_add: a + b, the type's maximum past it.
template <class U>
constexpr U sat_add(U a, U b) noexcept {
  static_assert(std::numeric_limits<U>::is_integer && !std::numeric_limits<U>::is_signed);
  return a > std::numeric_limits<U>::max() - b ? std::numeric_limits<U>::max() : static_cast<U>(a + b);
}

}  // namespace spindle::http::detail
