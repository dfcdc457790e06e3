// http2_section.hpp: the http section's HTTP/2 part, http2_hello, a short
// version of bench/http2/run.sh: `h2load -n N -c 10 -m 10 -t1` (h2c, prior
// knowledge) against h2o (1 thread, the same 13-byte body from a file) and
// http::Server (http_server_hello) at 1 and 2 workers.
#pragma once

#include <string>

#include "http_section.hpp"

namespace http_bench {

// http2_part: the Markdown text (table, notes, skip lines); tmp: a scratch
// directory the caller removes.
std::string http2_part(const SectionOptions& o, const std::string& tmp);

}  // namespace http_bench
