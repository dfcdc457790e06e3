// sync_generator.cpp: a generator streaming values (asyncio's async
// generator consumed with `async for`).
//
// The body runs on its own fiber and may block (here it sleeps); it only
// runs when the consumer asks for the next value.
#include <chrono>
#include <iostream>

#include <spindle/spindle.hpp>

namespace sp = spindle;
using namespace std::chrono_literals;

int main() {
  return sp::run([] {
    sp::Generator<long> fib([](auto& yield) {
      long a = 0, b = 1;
      for (;;) {  // infinite: the consumer stops it by destroying the generator
        sp::sleep_for(1ms);
        yield(a);
        const long c = a + b;
        a = b;
        b = c;
      }
    });
    std::cout << "fib:";
    int n = 0;
    for (long v : fib) {
      std::cout << ' ' << v;
      // Leaving the loop leaves the body waiting in yield(); `fib`'s
      // destructor, at the end of the scope, cancels it.
      if (++n == 10) break;
    }
    std::cout << "\n";
    return 0;
  }, sp::RuntimeOptions{.workers = 2});
}
