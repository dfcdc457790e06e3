// ascii.hpp: ASCII case folding for protocol text (field names, schemes,
// hosts), never locale-dependent.
#pragma once

namespace spindle::http::detail {

inline char ascii_lower(char c) noexcept { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

}  // namespace spindle::http::detail
