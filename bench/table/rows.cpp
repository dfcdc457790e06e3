// rows.cpp: the table's rows and columns. To add a workload, write its
// Workload (bench/workloads/) and add one Row below.
#include "rows.hpp"

#include <algorithm>
#include <cstdio>
#include <thread>
#include <cstring>
#include <memory>
#include <map>

#include "../harness/measure.hpp"
#include "../workloads/stranded.hpp"
#include "../workloads/workloads.hpp"
#include "echo64.hpp"

#ifdef SPINDLE_BENCH_HTTP_ROWS
#include "http_section.hpp"
#endif

#ifdef SPINDLE_BENCH_SYNC_ROWS
#include "offload_workload.hpp"
#include "sync_workloads.hpp"
#endif

namespace bench {

namespace {
int g_fast_runs = 3;

// runs == 0: g_fast_runs. Results are cached per (workload, config,
// repetitions); a screening run is one cold run, the same as a `once` row's.
Measure cached(const Workload& w, double Sample::*field, int warmups, int runs) {
  return [=](const Config& c, const Effort& e) {
    static std::map<std::string, std::vector<Sample>> cache;
    static std::map<std::string, double> killed;  // key -> limit it was killed at
    const int n = e.screen ? 1 : runs == 0 ? g_fast_runs : runs;
    const int warm = e.screen || n == 1 ? 0 : warmups;
    const std::string key = w.name + "|" + to_string(c) + "|" + std::to_string(n);
    auto it = cache.find(key);
    if (it == cache.end()) {
      std::fprintf(stderr, "  %-20s %-42s %-6s", w.name.c_str(), to_string(c).c_str(),
                   n == 1 ? "1 run" : "median");
      it = cache.emplace(key, measure(w, c, warm, n, e.timeout_s)).first;
      if (it->second.empty()) {
        killed[key] = e.timeout_s;
        std::fprintf(stderr, "   killed after %.1f s\n", e.timeout_s);
      } else {
        std::fprintf(stderr, " %9.1f ms\n", median(it->second, &Sample::ms));
      }
    }
    if (e.killed_after_s != nullptr && killed.count(key)) *e.killed_after_s = killed[key];
    return median(it->second, field);
  };
}

// median_in_children: the median of --runs calls of f, each in a fresh
// child process (one set-up per process, as every table cell gets).
template <class F>
double median_in_children(const char* what, F f) {
  std::vector<Sample> runs;
  for (int i = 0; i < g_fast_runs; ++i) {
    std::string bytes = *run_in_child(what, [&] {
      const double v = f();
      return std::string(reinterpret_cast<const char*>(&v), sizeof v);
    });
    Sample s;
    std::memcpy(&s.ms, bytes.data(), sizeof(double));
    runs.push_back(s);
  }
  return median(runs, &Sample::ms);
}

}  // namespace

void set_fast_runs(int runs) { g_fast_runs = runs; }

Measure per_config(double (*on_spindle)(unsigned), std::function<double(const Config&)> on_boost,
                   std::function<bool(const Config&)> boost_runs) {
  auto cache = std::make_shared<std::map<std::string, double>>();
  return [=](const Config& c, const Effort&) {
    if (c.peer == Peer::boost_fiber && !boost_runs(c)) return double(NAN);
    const std::string key = to_string(c);
    auto it = cache->find(key);
    if (it != cache->end()) return it->second;
    return (*cache)[key] = median_in_children("function row", [&] {
      return c.peer == Peer::spindle ? on_spindle(c.threads) : on_boost(c);
    });
  };
}

Measure per_threads(double (*on_spindle)(unsigned), double (*on_boost)(unsigned), BoostAlgo algo,
                    bool suspend) {
  return per_config(
      on_spindle, [on_boost](const Config& c) { return on_boost(c.threads); },
      [algo, suspend](const Config& c) { return c.threads < 2 || (c.algo == algo && c.suspend == suspend); });
}

Measure median_of3(const Workload& w, double Sample::*field) { return cached(w, field, 1, 0); }
Measure once(const Workload& w, double Sample::*field) { return cached(w, field, 0, 1); }

std::vector<Row> table_rows() {
  const Workload sky = skynet(), sj = spawn_join(), y2 = yield_switch(2), y1k = yield_switch(1000),
                 tm = timers();
  std::vector<Row> rows = {
      {"skynet", "ns/fiber", median_of3(sky, &Sample::ns_per_op)},
      {"skynet", "ms", median_of3(sky, &Sample::ms)},
      {"spawn_join", "ns/fiber", median_of3(sj, &Sample::ns_per_op)},
      {"yield n=2", "ns/yield", median_of3(y2, &Sample::ns_per_op)},
      {"yield n=1000", "ns/yield", median_of3(y1k, &Sample::ns_per_op)},
      {"timers", "ms", once(tm, &Sample::ms)},
      {"timers_fire", "ms", once(tm, &Sample::fire_ms)},
      {"timers", "KiB/fiber", once(tm, &Sample::kib_per_fiber)},
      // New core rows go here: {name, unit, median_of3(workload, &Sample::field)}.
  };
#ifdef SPINDLE_BENCH_SYNC_ROWS
  // The sync module's rows (bench/sync/sync_workloads.hpp). A throughput row
  // in values/s would set higher_is_better.
  using namespace sync_bench;
  rows.push_back({"pingpong", "ns/round trip",
                  per_threads(pingpong_spindle, pingpong_boost, BoostAlgo::shared_work, true)});
  rows.push_back({"pingpong_unbuf", "ns/round trip",
                  per_threads(pingpong_unbuf_spindle, pingpong_unbuf_boost, BoostAlgo::shared_work, true)});
  rows.push_back({"mutex_contention", "ns/inc",
                  per_threads(mutex_contention_spindle, mutex_contention_boost, BoostAlgo::shared_work, true)});
  rows.push_back({"mutex_work", "ns/iter",
                  per_threads(mutex_work_row_spindle, mutex_work_row_boost, BoostAlgo::shared_work, true)});
  rows.push_back({"channel_mpmc", "ns/msg",
                  per_threads(channel_throughput_spindle, channel_throughput_boost, BoostAlgo::shared_work, true)});
  // offload (BENCHMARKS.md 7): the Boost.Fiber peer is a std::thread pool and
  // a boost::fibers::future. Each figure runs in its own child process (Boost's
  // work_stealing can be set up once per process).
  using namespace offload_bench;
  // Boost: work_stealing in either idle mode on 2 threads, round_robin on 1.
  auto ws_only = [](const Config& c) { return c.threads < 2 || c.algo == BoostAlgo::work_stealing; };
  rows.push_back({"offload total", "ms",
                  per_config(
                      [](unsigned w) {
                        double tick = 0;
                        return offload_total_ms(w, &tick);
                      },
                      [](const Config& c) {
                        double tick = 0;
                        return offload_boost_total_ms(c.threads, &tick, c.suspend);
                      },
                      ws_only)});
  rows.push_back({"offload worst tick", "ms",
                  per_config(
                      [](unsigned w) {
                        double tick = 0;
                        offload_total_ms(w, &tick);
                        return tick;
                      },
                      [](const Config& c) {
                        double tick = 0;
                        offload_boost_total_ms(c.threads, &tick, c.suspend);
                        return tick;
                      },
                      ws_only)});
#endif
  // stranded (bench/workloads/stranded.hpp): like the offload ticker, how
  // late a fiber runs while a CPU-bound fiber holds its worker, here with
  // the other worker idle. yield: ms from the spinner's start until the
  // yielding fiber runs; sleep: ms a 1 ms sleep ends late. Median of 5
  // trials per child; the 1-worker/1-thread cells are "-" (NaN: nobody else
  // could take the fiber, so the figure would only be the 200 ms spin).
  // Boost.Fiber 2t: work_stealing in both idle modes (shared_work: "-").
  // Boost cannot pin, so each child prints on stderr in how many trials the
  // fiber really waited on the spinner's thread: read the Boost cell with it.
  auto ws = [](const Config& c) { return c.algo == BoostAlgo::work_stealing; };
  rows.push_back({"stranded_yield", "ms", per_config(stranded_yield_spindle, stranded_yield_boost, ws)});
  rows.push_back({"stranded_sleep", "ms", per_config(stranded_sleep_spindle, stranded_sleep_boost, ws)});
  return rows;
}

std::string extra_sections(const std::map<std::string, std::vector<double>>& spindle,
                           const std::string& filter) {
  std::string out;
#ifdef SPINDLE_BENCH_SYNC_ROWS
  const std::string row = "mutex_contention";
  if (filter.empty() || row.find(filter) != std::string::npos) {
    // std::mutex with plain threads, same workload (1,000,000 increments),
    // median of three, each in a fresh child, like the rows above.
    double fig[2] = {0, 0};
    for (unsigned t = 1; t <= 2; ++t) {
      fig[t - 1] = median_in_children("std::mutex", [t] { return sync_bench::mutex_contention_std(t); });
    }
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "\nmutex_contention against std::mutex with plain threads (same run):\n"
                  "std::mutex 1 thread %.2f ns/inc, 2 threads %.2f ns/inc",
                  fig[0], fig[1]);
    out += buf;
    auto it = spindle.find(row);
    if (it != spindle.end() && it->second.size() >= 2) {
      // Both readings: std::mutex with 2 threads swings widely on a shared
      // 2-core VM (10-42 ns/inc between runs), depending on how much the two
      // threads actually overlap.
      std::snprintf(buf, sizeof buf,
                    "; spindle 2w / std::mutex 2t = %.2fx, spindle best / std::mutex best = %.2fx",
                    it->second[1] / fig[1],
                    std::min(it->second[0], it->second[1]) / std::min(fig[0], fig[1]));
      out += buf;
    }
    out += "\n";
  }
  const std::string work_row = "mutex_work";
  if (filter.empty() || work_row.find(filter) != std::string::npos) {
    // The same with std::mutex on plain threads: the scaling a fiber mutex
    // should match (docs/sync.md "Choices", Mutex).
    double fig[2] = {0, 0};
    for (unsigned t = 1; t <= 2; ++t) {
      fig[t - 1] = median_in_children(
          "std::mutex work", [t] { return sync_bench::mutex_work_std(t, sync_bench::kMutexWorkRounds); });
    }
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "\nmutex_work (%ld rounds of work per lock) against std::mutex with plain threads (same run):\n"
                  "std::mutex 1 thread %.1f ns/iter, 2 threads %.1f ns/iter (2t/1t %.2fx)",
                  sync_bench::kMutexWorkRounds, fig[0], fig[1], fig[1] / fig[0]);
    out += buf;
    auto it = spindle.find(work_row);
    if (it != spindle.end() && it->second.size() >= 2) {
      std::snprintf(buf, sizeof buf, "; spindle 2w/1w %.2fx", it->second[1] / it->second[0]);
      out += buf;
    }
    out += "\n";
  }
  const std::string off = "offload total";
  if (filter.empty() || off.find(filter) != std::string::npos) {
    // The ideal total depends on how fast the job runs here: measure one job
    // alone (in a child, like everything else) and scale.
    const double job_ms = median_in_children("offload job", [] { return offload_bench::offload_job_ms(); });
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    const double ideal = 64 * job_ms / cores;
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "\noffload: one job takes %.2f ms alone on this machine (BENCHMARKS.md: ~2 ms),\n"
                  "so the ideal total is 64 x %.2f ms / %u cores = %.1f ms",
                  job_ms, job_ms, cores, ideal);
    out += buf;
    auto it = spindle.find(off);
    if (it != spindle.end() && !it->second.empty()) {
      const double best = *std::min_element(it->second.begin(), it->second.end());
      std::snprintf(buf, sizeof buf, "; spindle's best total / ideal = %.2fx", best / ideal);
      out += buf;
    }
    // The same jobs on plain threads, every core at once (same run): the
    // ideal as this machine delivers it (offload_threads_ms).
    const double plain = median_in_children("offload plain threads",
                                            [cores] { return offload_bench::offload_threads_ms(cores); });
    std::snprintf(buf, sizeof buf, ";\nthe 64 jobs on %u plain threads (no runtime, no ticker) take %.1f ms", cores,
                  plain);
    out += buf;
    if (it != spindle.end() && it->second.size() >= 2) {
      std::snprintf(buf, sizeof buf, "; spindle 1w / that = %.2fx, 2w / that = %.2fx", it->second[0] / plain,
                    it->second[1] / plain);
      out += buf;
    }
    // The worst tick's floor (same run): a plain thread's 1 ms timerfd
    // sleeps beside the jobs on plain SCHED_IDLE threads, no runtime. The
    // row moves between days with this machine's wake-up latency
    // (docs/benchmarks.md "Offload"); read it against this line.
    const double floor_ms = median_in_children("offload plain ticker",
                                               [cores] { return offload_bench::offload_threads_tick_ms(cores); });
    std::snprintf(buf, sizeof buf,
                  ";\na plain thread's 1 ms timerfd sleeps beside them (jobs at SCHED_IDLE, as spindle's pool): "
                  "worst lateness %.2f ms,\nthe floor this machine puts under the worst-tick row now",
                  floor_ms);
    out += buf;
    out += "\n";
  }
#else
  (void)spindle;
#endif
  const std::string stranded = "stranded";
  if (filter.empty() || stranded.find(filter) != std::string::npos) {
    // What the stranded rows' Boost.Fiber figures cost: work_stealing that
    // spins its idle threads takes a queued fiber at once, and burns them;
    // the one that sleeps strands it (the tried table). Medians of 3
    // children each (docs/benchmarks.md "Stranded fibers").
    const double idle_sp = median_in_children("idle cpu", [] { return idle_cpu_spindle(2); });
    const double idle_spin = median_in_children("idle cpu", [] { return idle_cpu_boost(2, false); });
    const double idle_susp = median_in_children("idle cpu", [] { return idle_cpu_boost(2, true); });
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "\nCPU ms an idle runtime burns while its one fiber sleeps 200 ms (2 workers / threads):\n"
                  "spindle %.1f, Boost.Fiber work_stealing spin %.1f, work_stealing suspend %.1f\n",
                  idle_sp, idle_spin, idle_susp);
    out += buf;
  }
  const std::string echo = "echo64";
  if (filter.empty() || echo.find(filter) != std::string::npos) {
    // BENCHMARKS.md echo64 (bench/echo/): the raw libuv C server and spindle
    // with 1 and 2 workers, each server in its own process and the client in
    // another, servers alternating within each round. --runs rounds of 1 s
    // windows (~15 s a round); the pinned layout and longer windows are
    // spindle_echo64's (docs/benchmarks.md "echo64").
    echo64::ClientOptions o;
    o.warmup_s = 0.3;
    o.measure_s = 1.0;
    const std::vector<int> conns{1, 100, 1000};
    const auto servers = echo64::default_servers();
    const auto cells = echo64::run_rounds(servers, conns, g_fast_runs, o, echo64::Layout{}, true);
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "\necho64 (loopback, 64-byte closed-loop echoes from one epoll client thread; "
                  "median of %d rounds,\n(min-max); ratios: spindle median / libuv C median at "
                  "the same conns; KiB/conn: server RSS\ngrowth / connections; "
                  "build/release/bench/echo/spindle_echo64 adds the pinned layout):\n\n",
                  g_fast_runs);
    out += buf;
    out += echo64::format(cells, servers, conns, g_fast_runs > 1);
  }
#ifdef SPINDLE_BENCH_HTTP_ROWS
  // BENCHMARKS.md http_hello and the http client figure (bench/http/):
  // --runs short rounds (wrk: 1 s warm-up + 2 s per server; clients: 0.5 s
  // + 2 s), about 30 s a round; bench/http/run.sh and client.sh run the
  // 5 s windows. http2_hello: h2load -n 500000 per server, 4-7 s a round
  // (bench/http2/run.sh in full). Rows whose tool is missing are
  // skipped with a line. --filter=http: all four parts; http2: the last.
  auto picks = [&filter](const char* part) {
    return filter.empty() || std::string(part).find(filter) != std::string::npos;
  };
  http_bench::SectionOptions h;
  h.rounds = g_fast_runs;
  h.servers = picks("http_hello");
  h.clients = picks("http_client");
  h.idle = picks("http_idle");
  h.http2 = picks("http2_hello");
  if (h.servers || h.clients || h.idle || h.http2) out += http_bench::section(h);
#else
  if (filter.empty() || std::string("http_hello").find(filter) != std::string::npos ||
      std::string("http2_hello").find(filter) != std::string::npos) {
    out += "\nhttp_hello, http client, http2_hello: skipped (spindle was built without io's http part).\n";
  }
#endif
  return out;
}

std::vector<Column> table_columns() {
  const Peer s = Peer::spindle, b = Peer::boost_fiber;
  using A = BoostAlgo;
  return {
      {"spindle 1w", s, {{s, 1}}},
      {"spindle 2w", s, {{s, 2}}},
      {"Boost.Fiber 1t", b, {{b, 1, A::round_robin}}},
      // shared_work spinning lost to shared_work suspending on every row
      // but timers_fire when measured, and costs minutes on skynet (64 s
      // per run), so it is not screened.
      {"Boost.Fiber 2t", b,
       {{b, 2, A::work_stealing, false},
        {b, 2, A::work_stealing, true},
        {b, 2, A::shared_work, true}}},
  };
}

}  // namespace bench
