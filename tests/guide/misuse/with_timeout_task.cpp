// expect: Pass with_timeout a callable taking no arguments
// with_timeout takes a callable, not a Task (wait_for takes the Task).
#include <spindle/spindle.hpp>

using namespace std::chrono_literals;

int main() {
  return spindle::run([] {
    auto t = spindle::spawn([] { return 1; });
#ifdef SPINDLE_MISUSE_FIXED
    return spindle::wait_for(t, 100ms);
#else
    return spindle::with_timeout(100ms, t);
#endif
  });
}
