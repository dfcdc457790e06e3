// file_word_count_test.cpp: runs examples/word_count (the aiofiles seed) as
// its users would, on a directory of files made here, and checks both the
// summary file it writes and what it prints.
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include <catch2/catch.hpp>

namespace fs = std::filesystem;

namespace {

void put(const fs::path& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary);
  f << s;
  REQUIRE(f.good());
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

TEST_CASE("word_count counts the words of every file and writes the summary") {
  std::string t = (fs::temp_directory_path() / "spindle_wc_XXXXXX").string();
  REQUIRE(::mkdtemp(t.data()) != nullptr);
  const fs::path root = t;
  const fs::path dir = root / "in";
  fs::create_directories(dir / "sub");  // a directory: skipped
  put(dir / "a.txt", "hello world\n");
  put(dir / "b.txt", "  one\ttwo\nthree  ");
  put(dir / "c.txt", "");
  std::string expect = "2 a.txt\n3 b.txt\n0 c.txt\n";
  std::uint64_t total = 5;
  for (int i = 0; i < 50; ++i) {
    char name[8];
    std::snprintf(name, sizeof name, "n%02d", i);
    std::string text;
    for (int w = 0; w < i; ++w) text += "w" + std::to_string(w) + (w % 7 == 6 ? "\n" : " ");
    put(dir / name, text);
    expect += std::to_string(i) + " " + name + "\n";
    total += static_cast<std::uint64_t>(i);
  }
  expect += std::to_string(total) + " total\n";
  put(root / "summary.txt", "old summary\n");  // replaced atomically

  const std::string cmd = std::string(WORD_COUNT_PATH) + " " + dir.string() + " " + (root / "summary.txt").string() +
                          " > " + (root / "stdout.txt").string();
  const int rc = std::system(cmd.c_str());
  REQUIRE(WIFEXITED(rc));
  CHECK(WEXITSTATUS(rc) == 0);
  CHECK(slurp(root / "summary.txt") == expect);
  CHECK(slurp(root / "stdout.txt") == expect);
  // Nothing but the summary and the captured output next to it: the
  // atomic write's temporary is gone.
  std::size_t entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(root)) ++entries;
  CHECK(entries == 3);  // in/, summary.txt, stdout.txt

  // A missing directory: a clear error, exit status not 0.
  const std::string bad = std::string(WORD_COUNT_PATH) + " " + (root / "missing").string() + " " +
                          (root / "s2").string() + " 2> " + (root / "err.txt").string();
  const int rc2 = std::system(bad.c_str());
  CHECK((WIFEXITED(rc2) && WEXITSTATUS(rc2) == 1));
  const std::string err = slurp(root / "err.txt");
  CHECK(err.find("word_count: ") == 0);
  CHECK(err.find((root / "missing").string()) != std::string::npos);
  fs::remove_all(root);
}
