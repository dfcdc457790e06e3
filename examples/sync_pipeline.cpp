// sync_pipeline.cpp: a pipeline of stages connected by channels (Go style).
//
//   generate -> square -> add_one -> sum
//
// Each stage is a fiber that ranges over its input channel until it is
// closed, sends results downstream, and closes its output when done, so the
// end of the stream flows through the pipeline.
#include <iostream>

#include <spindle/spindle.hpp>

namespace sp = spindle;

int main() {
  return sp::run([] {
    sp::Channel<long> numbers;     // rendezvous
    sp::Channel<long> squares(4);  // small buffers between the stages
    sp::Channel<long> results(4);

    auto gen = sp::spawn([&] {
      for (long i = 1; i <= 50; ++i) numbers.send(i);
      numbers.close();
    });
    auto sq = sp::spawn([&] {
      for (long n : numbers) squares.send(n * n);
      squares.close();
    });
    auto inc = sp::spawn([&] {
      for (long n : squares) results.send(n + 1);
      results.close();
    });

    long count = 0, total = 0;
    for (long r : results) {
      ++count;
      total += r;
    }
    gen.join();
    sq.join();
    inc.join();
    std::cout << "pipeline: " << count << " values, sum of squares + 1 = " << total << "\n";
    return 0;
  }, sp::RuntimeOptions{.workers = 2});
}
