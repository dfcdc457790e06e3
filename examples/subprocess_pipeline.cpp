// subprocess_pipeline.cpp: child processes from fibers (asyncio's
// create_subprocess_exec + communicate). Its Python twin:
// examples/python/subprocess_pipeline.py.
//
// Part 1 feeds `sort` through its stdin pipe from one fiber while another
// fiber reads its stdout line by line: the same write_all / read_line calls
// as on a TCP stream, and neither fiber blocks a worker thread.
// Part 2 runs eight commands with at most three alive at once (a Semaphore
// around run_command, which feeds stdin, collects stdout and stderr, and
// kills the child if its timeout expires), and prints their outputs in
// order.
#include <atomic>
#include <chrono>
#include <iostream>
#include <string>
#include <vector>

#include <spindle/spindle.hpp>

namespace sp = spindle;
namespace io = spindle::io;
using namespace std::chrono_literals;

int main() {
  return sp::run(
      [] {
        // ---- 1. feed sort, read its output --------------------------------
        io::ProcessOptions o;
        o.in = io::Stdio::pipe();
        o.out = io::Stdio::pipe();
        auto sort = io::Process::spawn({"sort"}, o);
        auto feeder = sp::spawn([&] {
          for (const char* w : {"pear", "apple", "fig", "banana", "cherry"}) {
            sort.stdin_pipe().write_all(std::string(w) + "\n");
          }
          sort.stdin_pipe().close();  // end of input: sort starts writing
        });
        std::string words;
        for (std::string line; !(line = sort.stdout_pipe().read_line()).empty();) {
          words += (words.empty() ? "" : " ") + line.substr(0, line.size() - 1);
        }
        feeder.join();
        const io::ExitStatus st = sort.wait();
        std::cout << "sorted: " << words << " (exit " << st.code << ")\n";

        // ---- 2. eight commands, at most three at once ----------------------
        sp::Semaphore limit(3);
        std::atomic<int> running{0}, peak{0};
        std::vector<sp::Task<std::string>> jobs;
        for (int i = 1; i <= 8; ++i) {
          jobs.push_back(sp::spawn([&, i] {
            auto permit = limit.acquire_guard();
            const int now = ++running;
            auto leaving = sp::defer([&] { --running; });  // a TimedOut too
            for (int p = peak; now > p && !peak.compare_exchange_weak(p, now);) {
            }
            io::RunOptions r;
            r.input = std::to_string(i * i) + "\n";
            r.timeout = 10s;  // a hung child is killed, and TimedOut raised
            // The child reads its square from stdin and sleeps a little, so
            // that the limit is actually reached.
            return io::run_command({"sh", "-c", "read x; sleep 0.05; echo job " + std::to_string(i) + ": $x"}, r).out;
          }));
        }
        for (auto& out : sp::gather(jobs)) std::cout << out;
        std::cout << "8 commands, at most " << peak << " at once\n";
        return st.success() && peak <= 3 ? 0 : 1;
      },
      sp::RuntimeOptions{.workers = 2});
}
