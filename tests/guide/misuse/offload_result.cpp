// expect: offload takes the function to run on the pool, not its result
// offload(compute(3)): compute already ran on the worker, which offload is
// there to spare.
#include <spindle/spindle.hpp>

int compute(int x) { return x * 2; }

int main() {
  return spindle::run([] {
#ifdef SPINDLE_MISUSE_FIXED
    int r = spindle::offload([=] { return compute(3); });
#else
    int r = spindle::offload(compute(3));
#endif
    return r;
  });
}
