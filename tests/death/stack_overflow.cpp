// stack_overflow.cpp: infinite recursion in a fiber named "deep" must end
// in a message naming the fiber (the guard page and the SIGSEGV handler on
// the alternate stack), not a bare SIGSEGV.
#include <spindle/runtime/all.hpp>

#include "death.hpp"

namespace {
// The volatile array keeps every frame alive and large, and the use after
// the call keeps the compiler from turning the recursion into a loop.
[[gnu::noinline]] int recurse(int depth) {
  volatile char frame[512];
  frame[0] = static_cast<char>(depth);
  const int below = recurse(depth + 1);
  return below + frame[0] + frame[511];
}
}  // namespace

int main() {
  return spindle_death::expect_death([] {
    spindle::run(
        [] {
          auto t = spindle::spawn(spindle::SpawnOptions{.name = "deep"}, [] { return recurse(0); });
          return t.join();
        },
        spindle::RuntimeOptions{.workers = 2});
  });
}
