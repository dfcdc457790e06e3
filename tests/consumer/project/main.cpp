// The consumer tests' program (tests/consumer): built against an installed
// prefix with find_package and with pkg-config, and through add_subdirectory,
// then run; the tests check the line it prints. README.md shows this file
// below this comment verbatim: keep the two the same.
#include <spindle/spindle.hpp>

#include <chrono>
#include <cstdio>

int main() {
  // run: start a runtime (one worker per hardware thread), run the lambda as
  // the main fiber, return its value, shut down.
  int answer = spindle::run([] {
    // spawn: a new fiber; join waits for its value without blocking a thread.
    auto task = spindle::spawn(
        [](int x) {
          spindle::sleep_for(std::chrono::milliseconds(1));  // suspends this fiber only
          return x * 2;
        },
        21);
    return task.join();
  });
  std::printf("spindle consumer: %d\n", answer);
  return answer == 42 ? 0 : 1;
}
