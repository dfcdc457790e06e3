// word_count.cpp: the aiofiles seed. Reads every file of a directory
// concurrently (at most 16 at once), counts the words in each, and writes a
// summary file, atomically (a reader sees the old summary or the new one).
//
//   example_word_count DIR SUMMARY
//
// The summary has one line per file, "<words> <name>", sorted by name, then
// "<total> total"; the same lines go to stdout. A file that cannot be read
// is reported ("error <name>: <reason>") and left out of the total: one
// bad file does not stop the rest. Each read suspends only its fiber (the
// read itself runs on the runtime's blocking pool).
#include <cctype>
#include <cstdint>
#include <iostream>
#include <string>
#include <string_view>
#include <vector>

#include <spindle/spindle.hpp>

namespace sp = spindle;
namespace io = spindle::io;

// Words: maximal runs of non-space characters, as `wc -w` counts them.
static std::uint64_t count_words(std::string_view text) {
  std::uint64_t words = 0;
  bool in_word = false;
  for (const char c : text) {
    const bool space = std::isspace(static_cast<unsigned char>(c)) != 0;
    if (!space && !in_word) ++words;
    in_word = !space;
  }
  return words;
}

struct Count {
  std::string name;
  std::uint64_t words = 0;
  std::string error;  // empty when the file was read
};

// run_count: the program on a runtime; returns the exit status.
static int run_count(const std::filesystem::path& dir, const std::filesystem::path& summary) {
  return sp::run([&] {
    sp::Semaphore limit(16);  // open files at once, as a well-behaved crawler would
    std::vector<sp::Task<Count>> tasks;
    for (const auto& e : io::list_directory(dir)) {
      if (e.type != std::filesystem::file_type::regular) continue;
      tasks.push_back(sp::spawn([&, name = e.name] {
        auto permit = limit.acquire_guard();
        Count c;
        c.name = name;
        try {
          c.words = count_words(io::read_file(dir / name));
        } catch (const std::system_error& err) {
          c.error = err.code().message();
        }
        return c;
      }));
    }
    // list_directory sorts by name, and tasks are joined in that order.
    std::string out;
    std::uint64_t total = 0;
    for (auto& t : tasks) {
      const Count c = t.join();
      if (!c.error.empty()) {
        std::cout << "error " << c.name << ": " << c.error << '\n';
        continue;
      }
      total += c.words;
      out += std::to_string(c.words) + ' ' + c.name + '\n';
    }
    out += std::to_string(total) + " total\n";
    io::write_file(summary, out, {.atomic = true});
    std::cout << out;
    return 0;
  });
}

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: " << argv[0] << " DIR SUMMARY\n";
    return 2;
  }
  const std::filesystem::path dir = argv[1];
  const std::filesystem::path summary = argv[2];
  try {
    return run_count(dir, summary);
  } catch (const std::system_error& e) {
    // A missing or unreadable directory, or a summary that cannot be
    // written: e.what() names the path.
    std::cerr << "word_count: " << e.what() << '\n';
    return 1;
  }
}
