// ordered_json.hpp: JSON text parsed into nlohmann::ordered_json (objects
// keep their keys in the order of the text, as Python's json) in time
// O(n log n) in the text's size. nlohmann's own ordered_json::parse looks
// every key up linearly in its object: quadratic in the number of keys
// (40,000 keys, 0.43 MB: 0.82 s, against 0.007 s here; docs/http.md
// "URLs and query strings"), so a peer's body could hold a worker for
// seconds. Request::json and Response::json parse with this.
#pragma once

#include <cstddef>
#include <string_view>

#include <nlohmann/json.hpp>

namespace spindle::http::detail {

// parse_ordered_json: text as JSON (RFC 8259, strict: no comments, no
// trailing data); a key repeated in one object keeps its first place and
// its last value (as nlohmann's parse and Python's json.loads). Errors:
// nlohmann::json::parse_error, as nlohmann's parse; also for arrays and
// objects nested more than kMaxJsonDepth deep (serde_json's limit).
inline constexpr std::size_t kMaxJsonDepth = 128;
nlohmann::ordered_json parse_ordered_json(std::string_view text);

}  // namespace spindle::http::detail
