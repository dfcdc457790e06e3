// hello.cpp: the first program of docs/guide.md (between the markers,
// verbatim). Prints 42.
// snippet: hello
#include <iostream>

#include <spindle/spindle.hpp>

namespace sp = spindle;

int main() {
  return sp::run([] {  // asyncio.run(main())
    auto task = sp::spawn([](int x) { return x * 2; }, 21);  // asyncio.create_task(...)
    std::cout << task.join() << '\n';                        // await task
    return 0;
  });
}
// end snippet
