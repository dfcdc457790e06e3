// rng.hpp: the tests' one random generator. Free of the runtime, so the
// header-only unit tests (run_queue, timer_heap) use it too.
#pragma once

#include <cstdint>

namespace spindle_test {

// Xorshift: a tiny deterministic PRNG (no shared state, no locks): one per
// fiber or thread, seeded from the test's own numbers, so a failing run
// repeats with the same sequence.
struct Xorshift {
  std::uint64_t s;
  explicit Xorshift(std::uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 1) {}
  std::uint64_t operator()() noexcept {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
};

}  // namespace spindle_test
