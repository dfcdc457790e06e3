// sync_select_timeout.cpp: Go's select with a timeout.
//
// A ticker fiber sends three ticks 10 ms apart and then goes quiet. The main
// fiber selects between "a tick arrived" and "nothing for 200 ms"; after the
// third tick the timeout branch runs and the loop ends.
#include <chrono>
#include <iostream>

#include <spindle/spindle.hpp>

namespace sp = spindle;
using namespace std::chrono_literals;

int main() {
  return sp::run([] {
    sp::Channel<int> ticks;
    sp::Event stop;
    auto ticker = sp::spawn([&] {
      for (int i = 1; i <= 3; ++i) {
        sp::sleep_for(10ms);
        ticks.send(i);
      }
      stop.wait();
    });

    int seen = 0;
    for (bool running = true; running;) {
      sp::select(sp::on_recv(ticks, [&](std::optional<int> t) {
                   std::cout << "got tick " << *t << "\n";
                   ++seen;
                 }),
                 sp::on_timeout(200ms, [&] {
                   std::cout << "timeout after " << seen << " ticks\n";
                   running = false;
                 }));
    }
    stop.set();
    ticker.join();
    return 0;
  }, sp::RuntimeOptions{.workers = 2});
}
