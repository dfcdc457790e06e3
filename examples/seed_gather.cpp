// seed_gather.cpp: three greetings with different sleeps run concurrently
// with gather: the total is about the longest sleep, not the sum.
#include <chrono>
#include <iostream>
#include <string>

#include <spindle/spindle.hpp>

using namespace std::chrono_literals;
namespace sp = spindle;

static std::string greet(std::string who, std::chrono::milliseconds d) {
  sp::sleep_for(d);
  return "hello, " + who;
}

int main() {
  return sp::run([] {
    const auto t0 = std::chrono::steady_clock::now();
    auto [a, b, c] = sp::gather(sp::spawn(greet, "ada", 300ms), sp::spawn(greet, "bob", 200ms),
                                sp::spawn(greet, "cy", 100ms));
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - t0).count();
    std::cout << a << '\n' << b << '\n' << c << '\n';
    std::cout << "took " << ms << " ms (longest 300, sum 600)\n";
    // Results in argument order; time near the longest sleep (generous upper
    // bound: well below the 600 ms a sequential run needs).
    if (a != "hello, ada" || b != "hello, bob" || c != "hello, cy") return 1;
    if (ms < 300 || ms >= 550) return 1;
    std::cout << "ok\n";
    return 0;
  });
}
