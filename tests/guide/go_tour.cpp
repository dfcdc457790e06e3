// go_tour.cpp: the Go snippets of docs/guide.md (regions between
// "snippet: NAME" and "end snippet", verbatim in the guide; checked by
// guide_snippets). Runs them all, checks the results, prints "ok".
#include <atomic>
#include <chrono>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include <spindle/spindle.hpp>

using namespace std::chrono_literals;
namespace sp = spindle;

namespace {
int failures = 0;
void expect(bool ok, const char* what) {
  if (!ok) {
    std::cout << "FAILED: " << what << '\n';
    ++failures;
  }
}
void work(int) { sp::sleep_for(1ms); }
}  // namespace

int main() {
  return sp::run([] {
    {
      std::atomic<int> worked{0};
      // snippet: goroutines
      sp::WaitGroup wg;  // var wg sync.WaitGroup
      for (int i = 0; i < 10; ++i) {
        wg.add(1);
        sp::spawn([&, i] {  // go func() {
          auto done = sp::defer([&] { wg.done(); });  // defer wg.Done()
          work(i);
          ++worked;
        }).detach();
      }
      wg.wait();
      // end snippet
      expect(worked == 10, "WaitGroup");
    }

    {
      long sum = 0;
      // snippet: channels
      sp::Channel<int> jobs(16);  // jobs := make(chan int, 16)
      auto producer = sp::spawn([&] {
        for (int i = 1; i <= 100; ++i) jobs.send(i);  // jobs <- i
        jobs.close();                                  // close(jobs)
      });
      for (int j : jobs) sum += j;  // for j := range jobs
      producer.join();
      // end snippet
      expect(sum == 5050, "Channel");
    }

    {
      int got = 0;
      bool timed_out = false;
      // snippet: select
      sp::Channel<int> results(1);
      sp::Channel<int> errors(1);
      results.send(7);
      sp::select(sp::on_recv(results, [&](std::optional<int> v) { got = *v; }),
                 sp::on_recv(errors, [&](std::optional<int> code) { std::cout << *code; }),
                 sp::on_timeout(100ms, [&] { timed_out = true; }));  // case <-time.After(...)
      // end snippet
      expect(got == 7 && !timed_out, "select");
    }

    {
      bool deadline_hit = false;
      // snippet: context
      // ctx, cancel := context.WithTimeout(ctx, 50ms): every wait inside
      // the scope is bounded, however deep the call stack.
      try {
        sp::with_timeout(50ms, [] {
          sp::Channel<int> never;
          never.recv();  // <-ctx.Done() wins
        });
      } catch (const sp::TimedOut&) {
        deadline_hit = true;  // ctx.Err() == context.DeadlineExceeded
      }
      // cancel(): Task::cancel() raises sp::Cancelled at the task's current wait
      auto worker = sp::spawn([] { sp::sleep_for(1h); });
      worker.cancel();
      // end snippet
      try {
        worker.join();
        expect(false, "cancel");
      } catch (const sp::Cancelled&) {
      }
      expect(deadline_hit, "context deadline");
    }

    {
      int ticks = 0;
      // snippet: ticker
      sp::Ticker ticker(10ms);  // ticker := time.NewTicker(10 * time.Millisecond)
      for (int i = 0; i < 3; ++i) {
        ticker.tick();  // <-ticker.C (overrun ticks are dropped and counted)
        ++ticks;
      }
      // end snippet
      expect(ticks == 3, "Ticker");
    }

    if (failures != 0) return 1;
    std::cout << "ok\n";
    return 0;
  });
}
