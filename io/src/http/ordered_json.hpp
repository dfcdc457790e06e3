// ordered_json.hpp: JSON text parsed into nlohmann::ordered_json (objects
// keep their keys in the order of the text, as Python's json) in time
// O(n log n) in the text's size. nlohmann's own ordered_json::parse looks
// every key up linearly in its object: quadratic in the number of keys
// (40,000 keys, 0.43 MB: 0.82 s, against 0.007 s here; docs/http.md
// "URLs and query strings"), so a peer's body could hold a worker for
// seconds. Request::json and Response::json parse with this, under a cap
// on values and one on depth.
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
// max_values: more values than this (every scalar, array and object,
// the root included; keys are not values) is
// http::Error(errc::too_many_json_values), raised when value
// max_values + 1 begins, before it is stored; `cap_name` names the
// option that set it in that error's text. Why: a value costs 16 bytes
// in its container (32 with the vector's growth) plus its own allocation
// (a string, array or object: ~48 bytes), so 1 MiB of `["","",...]`
// built 25 MB, 1 MiB of `[[],[],...]` 19.6 MB (docs/http.md "JSON
// values"), bounded by the body's size only.
inline constexpr std::size_t kMaxJsonDepth = 128;
nlohmann::ordered_json parse_ordered_json(std::string_view text, std::size_t max_values, const char* cap_name);

}  // namespace spindle::http::detail
