// http_section.hpp: the main table's http section (bench/table/rows.cpp,
// extra_sections), a short version of bench/http/run.sh and
// bench/http/client.sh:
//   - http_hello (BENCHMARKS.md): `wrk -t1 -c100` against the raw libuv C
//     server, nginx (one worker), spindle's minimal server http_hello and
//     the full http::Server (http_server_hello), spindle with 1 and 2
//     workers; requests/s and requests per second of server CPU;
//   - http client: 100 fibers fetching over keep-alive with http::Client
//     (spindle_bench_http_client, 1 and 2 workers) against 100 aiohttp
//     tasks (aiohttp_client_peer.py), both on the libuv C server;
//     requests/s and requests per second of client CPU;
//   - idle connections: the server's RSS growth per idle keep-alive
//     connection (spindle_bench_idle_conns holds idle_conns of them, one
//     GET each), http::Server at 1 and 2 workers against nginx and
//     libuv C; bench/http/idle_conns.sh is the full version, with the
//     breakdown of spindle's share;
//   - http2_hello (http2_section.cpp): `h2load -n N -c 10 -m 10 -t1`, h2c
//     with prior knowledge, against h2o (1 thread) and http::Server
//     (http_server_hello) at 1 and 2 workers, after N/10 warm-up requests;
//     requests/s and requests per second of server CPU; a round where any
//     request failed marks its row FAILED. bench/http2/run.sh is the full
//     version.
// Every server and client is a process of its own (started by path, the
// binaries bench/http/CMakeLists.txt builds), stopped by PID. Missing
// tools (wrk, nginx, Debian's python3-aiohttp, h2load, h2o) skip their rows
// with a line saying so.
#pragma once

#include <string>

namespace http_bench {

// Which part to run: "http_hello", "http_client", "http_idle",
// "http2_hello" (the table's --filter matches these names: "http" all
// four, "http2" only the last).
struct SectionOptions {
  bool servers = true;
  bool clients = true;
  bool idle = true;
  bool http2 = true;
  int h2_requests = 500000;  // h2load -n per server and round (~12-20 s in all at 3 rounds)
  int idle_conns = 10000;   // connections held idle per server and round
  int rounds = 3;           // interleaved rounds; medians and min-max over them
  int wrk_seconds = 2;      // wrk window per server, after a 1 s wrk warm-up
  double client_seconds = 2;  // client window, after client_warmup_s
  double client_warmup_s = 0.5;
};

// section: measures and returns the Markdown text (tables and skip lines).
// Progress lines go to stderr.
std::string section(const SectionOptions& o);

}  // namespace http_bench
