// expect: Pass gather_settled either Tasks from spawn
// gather_settled over a const Task (it must join, so it needs it mutable).
#include <spindle/spindle.hpp>

int main() {
  return spindle::run([] {
    auto t = spindle::spawn([] { return 1; });
#ifdef SPINDLE_MISUSE_FIXED
    auto& ref = t;
#else
    const auto& ref = t;
#endif
    auto [r] = spindle::gather_settled(ref);
    return r.value();
  });
}
