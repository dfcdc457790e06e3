// expect: Pass gather either Tasks from spawn
// gather over a Task and a callable at once: neither overload applies.
#include <spindle/spindle.hpp>

int main() {
  return spindle::run([] {
    auto t = spindle::spawn([] { return 1; });
#ifdef SPINDLE_MISUSE_FIXED
    auto [a, b] = spindle::gather(t, spindle::spawn([] { return 2; }));
#else
    auto [a, b] = spindle::gather(t, [] { return 2; });
#endif
    return a + b;
  });
}
