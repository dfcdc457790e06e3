// seed_as_completed.cpp: print results as they finish (asyncio.as_completed),
// fastest first, whatever order the tasks were started in.
#include <chrono>
#include <iostream>
#include <vector>

#include <spindle/spindle.hpp>

using namespace std::chrono_literals;
namespace sp = spindle;

int main() {
  return sp::run([] {
    std::vector<sp::Task<int>> tasks;
    for (int ms : {300, 100, 200}) {
      tasks.push_back(sp::spawn([ms] {
        sp::sleep_for(std::chrono::milliseconds(ms));
        return ms;
      }));
    }
    std::vector<int> order;
    for (auto& t : sp::as_completed(tasks)) {
      const int v = t.join();
      std::cout << "finished after " << v << " ms\n";
      order.push_back(v);
    }
    if (order != std::vector<int>{100, 200, 300}) return 1;
    std::cout << "ok\n";
    return 0;
  });
}
