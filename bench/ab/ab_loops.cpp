// ab_loops.cpp: spindle-only loops for A/B comparisons of two builds
// (scripts/ab.sh runs two such binaries alternately). Each prints one line
// "<ns> ns/op" per repetition (REPS, default 3) and nothing else, so the
// script can take the best of each run.
//
//   spindle_ab_loops pingpong WORKERS CAPACITY   1,000,000 round trips over
//                                                two channels (BENCHMARKS.md 3)
//   spindle_ab_loops yield WORKERS N             N fibers share 1,000,000
//                                                yields (BENCHMARKS.md 4)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include <spindle/spindle.hpp>

namespace {

constexpr long kOps = 1'000'000;

double pingpong(std::size_t capacity) {
  spindle::Channel<long> ping(capacity), pong(capacity);
  auto echo = spindle::spawn([&] {
    for (long i = 0; i < kOps; ++i) pong.send(*ping.recv());
  });
  const auto t0 = std::chrono::steady_clock::now();
  long sum = 0;
  for (long i = 0; i < kOps; ++i) {
    ping.send(i);
    sum += *pong.recv();
  }
  const auto t1 = std::chrono::steady_clock::now();
  echo.join();
  if (sum != kOps * (kOps - 1) / 2) std::abort();
  return std::chrono::duration<double, std::nano>(t1 - t0).count() / kOps;
}

double yields(int n) {
  const long per = kOps / n;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<spindle::Task<void>> fibers;
  for (int i = 0; i < n; ++i) {
    fibers.push_back(spindle::spawn([per] {
      for (long k = 0; k < per; ++k) spindle::yield();
    }));
  }
  for (auto& f : fibers) f.join();
  const auto t1 = std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::nano>(t1 - t0).count() / (per * n);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4 || (std::strcmp(argv[1], "pingpong") != 0 && std::strcmp(argv[1], "yield") != 0)) {
    std::fprintf(stderr, "usage: %s pingpong WORKERS CAPACITY | yield WORKERS N\n", argv[0]);
    return 2;
  }
  const bool pp = std::strcmp(argv[1], "pingpong") == 0;
  const int workers = std::atoi(argv[2]);
  const long arg = std::atol(argv[3]);
  const char* reps_env = std::getenv("REPS");
  const int reps = reps_env != nullptr ? std::atoi(reps_env) : 3;
  spindle::RuntimeOptions o;
  o.workers = static_cast<unsigned>(workers);
  return spindle::run(
      [&] {
        for (int r = 0; r < reps; ++r) {
          const double ns = pp ? pingpong(static_cast<std::size_t>(arg)) : yields(static_cast<int>(arg));
          std::printf("%.1f ns/op\n", ns);
        }
        return 0;
      },
      o);
}
