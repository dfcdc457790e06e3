// asyncio_tour.cpp: the asyncio snippets of docs/guide.md. Each region
// between "snippet: NAME" and "end snippet" appears verbatim in the guide
// (guide_snippets checks it); the program runs them all and checks the
// results, printing "ok" at the end.
#include <atomic>
#include <chrono>
#include <iostream>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
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

std::string fetch(const std::string& url) {
  sp::sleep_for(5ms);  // stands in for a request
  return "<html>" + url + "</html>";
}
int slow_computation() {
  sp::sleep_for(1h);
  return 0;
}
int blocking_library_call() {
  std::this_thread::sleep_for(5ms);  // a call that blocks its thread
  return 7;
}
}  // namespace

int main() {
  return sp::run([] {
    // snippet: create_task
    auto task = sp::spawn([] { return fetch("a"); });  // asyncio.create_task(fetch("a"))
    std::string page = task.join();                     // await task
    std::string again = task.join();                    // awaiting again: the same value
    // end snippet
    expect(page == again && page == "<html>a</html>", "create_task");

    {
      // snippet: gather
      auto [a, b] = sp::gather([] { return fetch("a"); }, [] { return fetch("b"); });

      std::vector<sp::Task<std::string>> tasks;
      for (auto url : {"x", "y", "z"}) tasks.push_back(sp::spawn(fetch, url));
      std::vector<std::string> pages = sp::gather(std::move(tasks));
      // end snippet
      expect(a == "<html>a</html>" && b == "<html>b</html>" && pages.size() == 3, "gather");
    }

    {
      // snippet: gather_settled
      std::vector<sp::Task<int>> jobs;
      jobs.push_back(sp::spawn([] { return 1; }));
      jobs.push_back(sp::spawn([]() -> int { throw std::runtime_error("bad input"); }));
      jobs.push_back(sp::spawn([] { return sp::with_timeout(10ms, slow_computation); }));
      for (auto& r : sp::gather_settled(jobs)) {  // return_exceptions=True
        if (r.ok()) std::cout << "value " << r.value() << '\n';
        else if (r.timed_out()) std::cout << "timed out\n";
        else std::cout << "failed: " << r.what() << '\n';
      }
      // end snippet
    }

    {
      // snippet: wait_for
      auto slow = sp::spawn(slow_computation);
      try {
        int v = sp::wait_for(slow, 50ms);  // asyncio.wait_for(slow, 0.05)
        std::cout << v << '\n';
      } catch (const sp::TimedOut&) {
        // `slow` was cancelled and has ended (its clean-up ran)
      }
      // end snippet
      expect(slow.done(), "wait_for cancels");
    }

    {
      bool timed_out = false;
      // snippet: timeout
      try {
        sp::with_timeout(50ms, [&] {  // async with asyncio.timeout(0.05):
          fetch("a");
          slow_computation();  // cancelled when the 50 ms are over
        });
      } catch (const sp::TimedOut&) {
        timed_out = true;
      }
      // end snippet
      expect(timed_out, "with_timeout");
    }

    {
      std::atomic<int> done{0};
      // snippet: task_group
      {
        sp::TaskGroup group;  // async with asyncio.TaskGroup() as group:
        for (int i = 0; i < 3; ++i) group.spawn([&] { fetch("a"); ++done; });
        group.wait();  // rethrows the first failure (the others are cancelled)
      }
      // end snippet
      expect(done == 3, "TaskGroup");
    }

    {
      // snippet: as_completed
      std::vector<sp::Task<int>> tasks;
      for (int ms : {30, 10, 20}) {
        tasks.push_back(sp::spawn([ms] {
          sp::sleep_for(std::chrono::milliseconds(ms));
          return ms;
        }));
      }
      for (auto& t : sp::as_completed(tasks)) std::cout << t.join() << ' ';  // 10 20 30
      // end snippet
      std::cout << '\n';
    }

    {
      long total = 0;
      // snippet: lock
      sp::Mutex mu;  // asyncio.Lock, but fibers run in parallel: use it for shared state
      long sum = 0;  // guarded by mu
      sp::TaskGroup group;
      for (int i = 1; i <= 100; ++i) {
        group.spawn([&, i] {
          std::lock_guard lock(mu);  // async with lock:
          sum += i;
        });
      }
      group.wait();
      // end snippet
      total = sum;
      expect(total == 5050, "Mutex");
    }

    {
      int consumed = 0;
      // snippet: queue
      sp::Queue<int> queue(10);  // asyncio.Queue(maxsize=10)
      auto consumer = sp::spawn([&] {
        int n = 0;
        try {
          for (;;) n += queue.get();  // await queue.get()
        } catch (const sp::QueueShutDown&) {
          // shut down and drained (asyncio 3.13's QueueShutDown)
        }
        return n;
      });
      for (int i = 1; i <= 100; ++i) queue.put(i);  // await queue.put(i)
      queue.shutdown();
      consumed = consumer.join();
      // end snippet
      expect(consumed == 5050, "Queue");
    }

    {
      // snippet: to_thread
      int v = sp::blocking(blocking_library_call);         // asyncio.to_thread(f)
      long n = sp::offload([] { return 6L * 7; });          // loop.run_in_executor(pool, f), CPU-bound
      // end snippet
      expect(v == 7 && n == 42, "blocking/offload");
    }

    {
      std::vector<int> seen;
      // snippet: generator
      sp::Generator<int> countdown([](auto& yield) {  // async def countdown(): ... yield n
        for (int n = 3; n > 0; --n) {
          sp::sleep_for(1ms);
          yield(n);
        }
      });
      for (int n : countdown) std::cout << n << ' ';  // async for n in countdown()
      // end snippet
      std::cout << '\n';
      sp::Generator<int> endless([](auto& yield) {
        for (int n = 0;; ++n) yield(n);
      });
      // snippet: generator_close
      for (int n : endless) {
        if (n == 2) break;
      }
      endless.close();  // await gen.aclose(): GeneratorExit at its yield, clean-up awaited
      // end snippet
    }

    {
      int ticks = 0;
      // snippet: ticker
      sp::Ticker every(10ms);  // while True: ...; await asyncio.sleep(0.01), without drift
      for (int i = 0; i < 3; ++i) {
        every.tick();  // returns how many ticks went by (more than 1 after an overrun)
        ++ticks;
      }
      // end snippet
      expect(ticks == 3, "Ticker");
    }

    {
      // snippet: event
      sp::Event ready;  // asyncio.Event
      auto waiter = sp::spawn([&] {
        ready.wait();  // await ready.wait()
        return 1;
      });
      ready.set();
      waiter.join();
      // end snippet
    }

    if (failures != 0) return 1;
    std::cout << "ok\n";
    return 0;
  });
}
