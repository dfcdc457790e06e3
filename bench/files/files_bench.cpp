// files_bench.cpp: file reads, spindle against plain blocking calls on
// threads and against libuv's uv_fs_* pool, measured in the same process.
//
// Guards against regressions in the file path (io/src/file.cpp, fs.cpp) and
// backs docs/decisions/0006-files.md; it makes no claim about disks: every
// file is read once before the clocks start, so all reads come from the
// page cache and the figures measure the hand-offs, not the device.
//
// Workloads (each run: spindle, threads, libuv, in that order):
//  - small: read_file of 1,000 files of 4 KiB (all at once: one fiber per
//    file; once as shipped, once with the page-cache fast path off, so the
//    pool path alone is compared with libuv's pool; the threads peer: T threads taking files from a shared counter,
//    open/fstat/read/close each; libuv: 64 chains of uv_fs_open -> fstat ->
//    read -> close on one loop, its default 4-thread pool); and once more
//    on a second runtime with RuntimeOptions::pin_workers, after the
//    threads peer (the row's mode on this VM: docs/decisions/0006-files.md);
//  - big: one 256 MiB file read sequentially into a prefaulted buffer
//    (spindle: File::read, kFileChunk jobs; threads: read() of 4 MiB after
//    4 MiB on one thread; libuv: uv_fs_read of 4 MiB after 4 MiB).
// During spindle's runs a ticker fiber on the same runtime sleeps 1 ms in a
// loop and records its worst lateness. `--sweep` also times the big read
// through shielded blocking() jobs of 256 KiB to 16 MiB (the chunk size
// choice in file.hpp).
//
// Usage: spindle_bench_files [--runs N] [--workers W] [--threads T] [--limit L]
//        [--blocking-threads B] [--sweep] [--dir D]
// --limit: at most L read_file calls at once (a Semaphore); --blocking-threads:
// RuntimeOptions::blocking_threads (0: the default bound, 64).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <spindle/spindle.hpp>

namespace {

namespace sp = spindle;
namespace io = spindle::io;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr int kSmallFiles = 1000;
constexpr std::size_t kSmallSize = 4096;
constexpr std::size_t kBigSize = std::size_t{256} << 20;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "files_bench: %s\n", what);
  std::exit(1);
}

char byte_at(std::size_t i, unsigned seed) { return static_cast<char>((i * 2654435761u) >> 11 ^ seed); }

struct Setup {
  fs::path dir;
  std::vector<fs::path> small;
  fs::path big;
};

void write_plain(const fs::path& p, std::size_t n, unsigned seed) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = byte_at(i, seed);
  std::FILE* f = std::fopen(p.c_str(), "wb");
  if (f == nullptr || std::fwrite(s.data(), 1, n, f) != n || std::fclose(f) != 0) fail("cannot write test files");
}

// Creates the files and reads each once (page cache warm).
Setup make_files(const fs::path& dir) {
  Setup s{dir, {}, dir / "big"};
  fs::create_directories(dir);
  for (int i = 0; i < kSmallFiles; ++i) {
    s.small.push_back(dir / std::string("s").append(std::to_string(i)));
    write_plain(s.small.back(), kSmallSize, static_cast<unsigned>(i));
  }
  write_plain(s.big, kBigSize, 77);
  // Written back now, not during the runs: the kernel starts writing dirty
  // pages back ~30 s after they were written (dirty_expire_centisecs), in
  // the middle of the measured reads, and a 1 ms sleeper then woke up to
  // 4 ms late in spindle and in a plain thread alike.
  ::sync();
  std::vector<char> buf(1 << 20);
  for (const auto& p : s.small) {
    std::FILE* f = std::fopen(p.c_str(), "rb");
    while (std::fread(buf.data(), 1, buf.size(), f) > 0) {
    }
    std::fclose(f);
  }
  std::FILE* f = std::fopen(s.big.c_str(), "rb");
  while (std::fread(buf.data(), 1, buf.size(), f) > 0) {
  }
  std::fclose(f);
  return s;
}

// Samples of the big buffer against the pattern (every 4 KiB).
void check_big(const char* b) {
  for (std::size_t i = 0; i < kBigSize; i += 4093) {
    if (b[i] != byte_at(i, 77)) fail("big file content mismatch");
  }
}

// ---- plain blocking calls on threads ---------------------------------------

std::string plain_read_file(const fs::path& p) {
  const int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("open");
  struct stat st{};
  ::fstat(fd, &st);
  std::string s(static_cast<std::size_t>(st.st_size) + 1, '\0');
  std::size_t got = 0;
  for (;;) {
    const ssize_t r = ::read(fd, s.data() + got, s.size() - got);
    if (r <= 0) break;
    got += static_cast<std::size_t>(r);
    if (got == s.size()) s.resize(s.size() * 2);
  }
  ::close(fd);
  s.resize(got);
  return s;
}

double threads_small(const Setup& s, unsigned threads) {
  std::atomic<int> next{0};
  std::atomic<std::size_t> bytes{0};
  const auto t0 = Clock::now();
  std::vector<std::thread> ts;
  for (unsigned t = 0; t < threads; ++t) {
    ts.emplace_back([&] {
      for (int i; (i = next.fetch_add(1)) < kSmallFiles;) bytes += plain_read_file(s.small[i]).size();
    });
  }
  for (auto& t : ts) t.join();
  const double ms = ms_since(t0);
  if (bytes != kSmallFiles * kSmallSize) fail("threads: small byte count");
  return ms;
}

// A plain thread sleeping 1 ms at a time until stopped, keeping its worst
// lateness: what the OS gives a sleeper here (a VM's timer and vCPU
// jitter), idle or beside the same file work, to read the fiber ticker's
// rows against.
struct ThreadTicker {
  std::atomic<bool> stop{false};
  double worst_ms = 0;
  std::thread t;
  void start() {
    t = std::thread([this] {
      while (!stop.load(std::memory_order_relaxed)) {
        const auto due = Clock::now() + std::chrono::milliseconds(1);
        std::this_thread::sleep_until(due);
        worst_ms = std::max(worst_ms, std::chrono::duration<double, std::milli>(Clock::now() - due).count());
      }
    });
  }
  double finish() {
    stop = true;
    t.join();
    return worst_ms;
  }
};

// The big read on a thread; *worst_tick gets a ThreadTicker's worst
// lateness over the read.
double threads_big(const Setup& s, char* buf, double* worst_tick) {
  ThreadTicker ticker;
  ticker.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(3));  // as the fiber ticker's
  const auto t0 = Clock::now();
  std::thread t([&] {
    const int fd = ::open(s.big.c_str(), O_RDONLY | O_CLOEXEC);
    std::size_t got = 0;
    // 4 MiB per read(), as spindle's chunks: one 256 MiB read() measured
    // slower here (a fairer peer is the faster one).
    for (ssize_t r; got < kBigSize && (r = ::read(fd, buf + got, std::min(io::kFileChunk, kBigSize - got))) > 0;) {
      got += static_cast<std::size_t>(r);
    }
    ::close(fd);
    if (got != kBigSize) fail("threads: big short read");
  });
  t.join();
  const double ms = ms_since(t0);
  *worst_tick = ticker.finish();
  check_big(buf);
  return ms;
}

// ---- libuv's uv_fs_* pool ----------------------------------------------------

struct UvChain {
  uv_fs_t req;
  const Setup* s;
  std::atomic<int>* next;
  std::size_t* bytes;
  uv_file fd = -1;
  std::string buf;
};

void uv_start_next(UvChain* c);

void uv_on_close(uv_fs_t* r) {
  auto* c = static_cast<UvChain*>(r->data);
  uv_fs_req_cleanup(r);
  uv_start_next(c);
}

void uv_on_read(uv_fs_t* r) {
  auto* c = static_cast<UvChain*>(r->data);
  if (r->result < 0) fail("uv read");
  *c->bytes += static_cast<std::size_t>(r->result);
  uv_fs_req_cleanup(r);
  uv_fs_close(r->loop, &c->req, c->fd, uv_on_close);
}

void uv_on_stat(uv_fs_t* r) {
  auto* c = static_cast<UvChain*>(r->data);
  if (r->result < 0) fail("uv fstat");
  c->buf.resize(static_cast<std::size_t>(r->statbuf.st_size) + 1);
  uv_fs_req_cleanup(r);
  const uv_buf_t b = uv_buf_init(c->buf.data(), static_cast<unsigned>(c->buf.size()));
  uv_fs_read(r->loop, &c->req, c->fd, &b, 1, -1, uv_on_read);
}

void uv_on_open(uv_fs_t* r) {
  auto* c = static_cast<UvChain*>(r->data);
  if (r->result < 0) fail("uv open");
  c->fd = static_cast<uv_file>(r->result);
  uv_fs_req_cleanup(r);
  uv_fs_fstat(r->loop, &c->req, c->fd, uv_on_stat);
}

void uv_start_next(UvChain* c) {
  const int i = c->next->fetch_add(1);
  if (i >= kSmallFiles) return;
  c->req.data = c;
  uv_fs_open(uv_default_loop(), &c->req, c->s->small[i].c_str(), O_RDONLY | O_CLOEXEC, 0, uv_on_open);
}

double libuv_small(const Setup& s) {
  constexpr int kChains = 64;
  std::atomic<int> next{0};
  std::size_t bytes = 0;
  std::vector<UvChain> chains(kChains);
  const auto t0 = Clock::now();
  for (auto& c : chains) {
    c.s = &s;
    c.next = &next;
    c.bytes = &bytes;
    uv_start_next(&c);
  }
  uv_run(uv_default_loop(), UV_RUN_DEFAULT);
  const double ms = ms_since(t0);
  if (bytes != kSmallFiles * kSmallSize) fail("libuv: small byte count");
  return ms;
}

struct UvBig {
  uv_fs_t req;
  uv_file fd = -1;
  char* buf;
  std::size_t got = 0;
};

void uv_big_read(uv_fs_t* r);

void uv_big_issue(uv_loop_t* loop, UvBig* b) {
  const std::size_t n = std::min<std::size_t>(std::size_t{4} << 20, kBigSize - b->got);
  const uv_buf_t ub = uv_buf_init(b->buf + b->got, static_cast<unsigned>(n));
  b->req.data = b;
  uv_fs_read(loop, &b->req, b->fd, &ub, 1, -1, uv_big_read);
}

void uv_big_read(uv_fs_t* r) {
  auto* b = static_cast<UvBig*>(r->data);
  if (r->result <= 0) fail("uv big read");
  b->got += static_cast<std::size_t>(r->result);
  uv_fs_req_cleanup(r);
  if (b->got < kBigSize) uv_big_issue(r->loop, b);
}

double libuv_big(const Setup& s, char* buf) {
  UvBig b;
  b.buf = buf;
  const auto t0 = Clock::now();
  uv_fs_t open_req;
  b.fd = uv_fs_open(uv_default_loop(), &open_req, s.big.c_str(), O_RDONLY | O_CLOEXEC, 0, nullptr);  // sync: not timed apart
  uv_fs_req_cleanup(&open_req);
  uv_big_issue(uv_default_loop(), &b);
  uv_run(uv_default_loop(), UV_RUN_DEFAULT);
  const double ms = ms_since(t0);
  ::close(b.fd);
  if (b.got != kBigSize) fail("libuv: big short read");
  check_big(buf);
  return ms;
}

// ---- spindle -----------------------------------------------------------------

// A fiber that sleeps 1 ms in a loop and keeps its worst lateness.
struct Ticker {
  std::atomic<bool> stop{false};
  double worst_ms = 0;
  sp::Task<void> task;
  void start() {
    task = sp::spawn([this] {
      while (!stop.load(std::memory_order_relaxed)) {
        const auto due = Clock::now() + std::chrono::milliseconds(1);
        sp::sleep_until(due);
        worst_ms = std::max(worst_ms, std::chrono::duration<double, std::milli>(Clock::now() - due).count());
      }
    });
  }
  double finish() {
    stop = true;
    task.join();
    return worst_ms;
  }
};

struct Timed {
  double ms;
  double worst_tick_ms;
};

Timed spindle_small(const Setup& s, int limit) {
  Ticker ticker;
  ticker.start();
  sp::sleep_for(std::chrono::milliseconds(3));  // the ticker is in its loop
  const auto t0 = Clock::now();
  std::unique_ptr<sp::Semaphore> sem;
  if (limit > 0) sem = std::make_unique<sp::Semaphore>(limit);
  sp::Semaphore* const gate = sem.get();
  std::vector<sp::Task<std::size_t>> tasks;
  tasks.reserve(kSmallFiles);
  for (int i = 0; i < kSmallFiles; ++i) {
    tasks.push_back(sp::spawn([&s, &gate, i] {
      if (gate == nullptr) return io::read_file(s.small[i]).size();
      auto permit = gate->acquire_guard();
      return io::read_file(s.small[i]).size();
    }));
  }
  std::size_t bytes = 0;
  for (auto& t : tasks) bytes += t.join();
  const double ms = ms_since(t0);
  const double worst = ticker.finish();
  if (bytes != kSmallFiles * kSmallSize) fail("spindle: small byte count");
  return {ms, worst};
}

Timed spindle_big(const Setup& s, char* buf) {
  Ticker ticker;
  ticker.start();
  sp::sleep_for(std::chrono::milliseconds(3));
  const auto t0 = Clock::now();
  auto f = io::File::open(s.big, io::OpenMode::read);
  if (f.read(buf, kBigSize) != kBigSize) fail("spindle: big short read");
  f.close();
  const double ms = ms_since(t0);
  const double worst = ticker.finish();
  check_big(buf);
  return {ms, worst};
}

// A plain thread sleeping 1 ms at a time for 50 ms, no runtime involved.
double thread_ticker_idle() {
  ThreadTicker ticker;
  ticker.start();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  return ticker.finish();
}

// The ticker alone for 50 ms: what the machine gives a 1 ms sleeper with no
// file work (the baseline for the lateness rows).
double ticker_idle() {
  Ticker ticker;
  ticker.start();
  sp::sleep_for(std::chrono::milliseconds(50));
  return ticker.finish();
}

// The floor under spindle_small: the same 1,000 fibers, each waiting for
// one empty blocking() job (two thread hand-offs and no syscall).
double spindle_noop_handoffs() {
  const auto t0 = Clock::now();
  std::vector<sp::Task<int>> tasks;
  tasks.reserve(kSmallFiles);
  for (int i = 0; i < kSmallFiles; ++i) tasks.push_back(sp::spawn([i] { return sp::blocking([i] { return i; }); }));
  long sum = 0;
  for (auto& t : tasks) sum += t.join();
  const double ms = ms_since(t0);
  if (sum != static_cast<long>(kSmallFiles) * (kSmallFiles - 1) / 2) fail("noop: sum");
  return ms;
}

// The big read through shielded blocking() jobs of `chunk` bytes (what
// File::read does with kFileChunk).
double spindle_big_chunked(const Setup& s, char* buf, std::size_t chunk) {
  const auto t0 = Clock::now();
  const int fd = ::open(s.big.c_str(), O_RDONLY | O_CLOEXEC);
  for (std::size_t got = 0; got < kBigSize;) {
    const std::size_t n = std::min(chunk, kBigSize - got);
    const ssize_t r =
        sp::shield([&] { return sp::blocking([&] { return ::pread(fd, buf + got, n, static_cast<off_t>(got)); }); });
    if (r <= 0) fail("sweep: read");
    got += static_cast<std::size_t>(r);
  }
  ::close(fd);
  const double ms = ms_since(t0);
  check_big(buf);
  return ms;
}

// ---- report ----------------------------------------------------------------

struct Stat {
  double median, lo, hi;
};

Stat stat_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.front(), v.back()};
}

void row(const char* name, const std::vector<double>& v, const char* unit) {
  const Stat s = stat_of(v);
  std::printf("  %-44s median %8.3f %s  [%.3f .. %.3f]\n", name, s.median, unit, s.lo, s.hi);
}

std::vector<double> ratio(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> r;
  for (std::size_t i = 0; i < a.size(); ++i) r.push_back(a[i] / b[i]);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 3;
  unsigned workers = 2;
  unsigned threads = 4;
  bool sweep = false;
  int limit = 0;
  unsigned blocking_threads = 0;
  fs::path dir = fs::temp_directory_path() / std::string("spindle_files_bench.").append(std::to_string(::getpid()));
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--runs" && i + 1 < argc) runs = std::atoi(argv[++i]);
    else if (a == "--workers" && i + 1 < argc) workers = static_cast<unsigned>(std::atoi(argv[++i]));
    else if (a == "--threads" && i + 1 < argc) threads = static_cast<unsigned>(std::atoi(argv[++i]));
    else if (a == "--dir" && i + 1 < argc) dir = argv[++i];
    else if (a == "--sweep") sweep = true;
    else if (a == "--limit" && i + 1 < argc) limit = std::atoi(argv[++i]);
    else if (a == "--blocking-threads" && i + 1 < argc) blocking_threads = static_cast<unsigned>(std::atoi(argv[++i]));
    else {
      std::fprintf(stderr,
                   "usage: %s [--runs N] [--workers W] [--threads T] [--limit L] [--blocking-threads B] [--sweep] "
                   "[--dir D]\n",
                   argv[0]);
      return 2;
    }
  }
  const Setup s = make_files(dir);
  // The big buffer, prefaulted: page faults are not what is measured.
  std::vector<char> big(kBigSize);
  std::memset(big.data(), 1, big.size());

  std::vector<double> sp_pin_small, tick_pin_small;
  std::vector<double> tick_idle, tick_thread, sp_pool_small, sp_noop, sp_small, sp_big, th_small, th_big, uv_small, uv_big, tick_small, tick_big,
      tick_thread_big;
  std::vector<std::vector<double>> sweep_ms(4);
  const std::size_t sweep_chunks[4] = {256 << 10, 1 << 20, 4 << 20, 16 << 20};
  sp::RuntimeOptions o;
  o.workers = workers;
  o.blocking_threads = blocking_threads;
  sp::Runtime rt(o);
  // The same with RuntimeOptions::pin_workers: where the kernel would put
  // both workers on one CPU (docs/decisions/0006-files.md).
  o.pin_workers = true;
  sp::Runtime rt_pin(o);
  // Warm-up: the blocking pool starts empty and grows on demand.
  rt.block_on([&] { (void)spindle_small(s, limit); });
  rt_pin.block_on([&] { (void)spindle_small(s, limit); });
  (void)threads_small(s, threads);
  (void)libuv_small(s);
  for (int r = 0; r < runs; ++r) {
    rt.block_on([&] {
      const Timed a = spindle_small(s, limit);
      sp_small.push_back(a.ms);
      tick_small.push_back(a.worst_tick_ms);
    });
    rt.block_on([&] {
      io::detail::set_page_cache_fast_path(false);
      sp_pool_small.push_back(spindle_small(s, limit).ms);
      io::detail::set_page_cache_fast_path(true);
      sp_noop.push_back(spindle_noop_handoffs());
      tick_idle.push_back(ticker_idle());
    });
    th_small.push_back(threads_small(s, threads));
    rt_pin.block_on([&] {
      const Timed a = spindle_small(s, limit);
      sp_pin_small.push_back(a.ms);
      tick_pin_small.push_back(a.worst_tick_ms);
    });
    tick_thread.push_back(thread_ticker_idle());
    uv_small.push_back(libuv_small(s));
    rt.block_on([&] {
      const Timed b = spindle_big(s, big.data());
      sp_big.push_back(b.ms);
      tick_big.push_back(b.worst_tick_ms);
    });
    double thread_tick = 0;
    th_big.push_back(threads_big(s, big.data(), &thread_tick));
    tick_thread_big.push_back(thread_tick);
    uv_big.push_back(libuv_big(s, big.data()));
    if (sweep) {
      rt.block_on([&] {
        for (int k = 0; k < 4; ++k) sweep_ms[k].push_back(spindle_big_chunked(s, big.data(), sweep_chunks[k]));
      });
    }
  }
  rt.shutdown();
  rt_pin.shutdown();
  std::error_code ec;
  fs::remove_all(dir, ec);

  std::printf("files bench: %d runs, spindle workers:%u blocking_threads:%u limit:%d, threads peer: %u threads, "
              "libuv pool: %s threads\n",
              runs, workers, blocking_threads, limit, threads, std::getenv("UV_THREADPOOL_SIZE") ? std::getenv("UV_THREADPOOL_SIZE") : "4");
  std::printf("small: read_file of %d files of %zu B\n", kSmallFiles, kSmallSize);
  row("spindle read_file (one fiber per file)", sp_small, "ms");
  row("spindle read_file, workers pinned (pin_workers)", sp_pin_small, "ms");
  row("spindle read_file, fast path off (pool only)", sp_pool_small, "ms");
  row("spindle 1,000 empty blocking() jobs (floor)", sp_noop, "ms");
  row("threads open/fstat/read/close", th_small, "ms");
  row("libuv uv_fs_* (64 chains)", uv_small, "ms");
  row("ratio spindle / threads (<1: spindle faster)", ratio(sp_small, th_small), "x ");
  row("ratio spindle / libuv", ratio(sp_small, uv_small), "x ");
  row("ratio spindle pinned / threads", ratio(sp_pin_small, th_small), "x ");
  row("ratio spindle pool only / threads", ratio(sp_pool_small, th_small), "x ");
  row("ratio spindle pool only / libuv", ratio(sp_pool_small, uv_small), "x ");
  row("ticker worst lateness during spindle run", tick_small, "ms");
  row("ticker worst lateness during pinned run", tick_pin_small, "ms");
  row("ticker worst lateness, no file work (baseline)", tick_idle, "ms");
  row("plain thread sleeping 1 ms, worst lateness (OS)", tick_thread, "ms");
  std::printf("big: sequential read of one %zu MiB file\n", kBigSize >> 20);
  row("spindle File::read", sp_big, "ms");
  row("threads read() 4 MiB", th_big, "ms");
  row("libuv uv_fs_read 4 MiB", uv_big, "ms");
  row("ratio spindle / threads", ratio(sp_big, th_big), "x ");
  row("ratio spindle / libuv", ratio(sp_big, uv_big), "x ");
  row("ticker worst lateness during spindle run", tick_big, "ms");
  row("plain thread sleeping 1 ms during threads' read (OS)", tick_thread_big, "ms");
  if (sweep) {
    std::printf("sweep: the big read in shielded blocking() jobs of\n");
    const char* names[4] = {"256 KiB", "1 MiB", "4 MiB", "16 MiB"};
    for (int k = 0; k < 4; ++k) {
      std::string n = std::string(names[k]) + " (ratio to threads read())";
      row(n.c_str(), ratio(sweep_ms[k], th_big), "x ");
    }
  }
  return 0;
}
