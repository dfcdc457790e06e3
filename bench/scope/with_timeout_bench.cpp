// with_timeout_bench.cpp: guards the claim that a with_timeout scope that
// finishes in time costs no more than a few hundred nanoseconds (DESIGN.md
// "Cancellation and deadlines": a scope arms no timer of its own, it only
// saves and restores the fiber's earliest deadline). Compares a fiber
// calling with_timeout(1s, [] { return 1; }) in a loop with the bare call,
// both in the same binary; report ns per scope = difference.
#include <benchmark/benchmark.h>

#include <chrono>

#include <spindle/spindle.hpp>

using namespace std::chrono_literals;
namespace sp = spindle;

namespace {

// Kept out of line so both loops pay the same call.
[[gnu::noinline]] int body() { return 1; }

sp::RuntimeOptions one_worker() {
  sp::RuntimeOptions o;
  o.workers = 1;
  return o;
}

void BM_bare_call(benchmark::State& state) {
  sp::Runtime rt(one_worker());
  rt.block_on([&] {
    for (auto _ : state) benchmark::DoNotOptimize(body());
  });
}
BENCHMARK(BM_bare_call);

void BM_with_timeout_in_time(benchmark::State& state) {
  sp::Runtime rt(one_worker());
  rt.block_on([&] {
    for (auto _ : state) benchmark::DoNotOptimize(sp::with_timeout(1s, [] { return body(); }));
  });
}
BENCHMARK(BM_with_timeout_in_time);

// Nested: the inner scope's deadline is later than the outer one.
void BM_with_timeout_nested(benchmark::State& state) {
  sp::Runtime rt(one_worker());
  rt.block_on([&] {
    sp::with_timeout(1h, [&] {
      for (auto _ : state) benchmark::DoNotOptimize(sp::with_timeout(1s, [] { return body(); }));
    });
  });
}
BENCHMARK(BM_with_timeout_nested);

}  // namespace

BENCHMARK_MAIN();
