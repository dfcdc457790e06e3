// main_site_test.cpp: the main fiber's spawn site, as dumps and reports show
// it, is the user's run / block_on call (issue #15), not a line of
// runtime.hpp. Uses Runtime directly: run_checked's own block_on call would
// be the site otherwise.
#include <sstream>
#include <string>

#include "spindle_test.hpp"

using namespace spindle_test;
namespace sp = spindle;

namespace {
// The dump line of the fiber named "main".
std::string main_line(const std::string& dump) {
  std::istringstream in(dump);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find("\"main\"") != std::string::npos || line.find(" main ") != std::string::npos) return line;
  }
  return {};
}
}  // namespace

TEST_CASE("block_on: the main fiber's site is the block_on call", "[dump]") {
  sp::Runtime rt(options(2));
  const unsigned line = __LINE__ + 1;
  const std::string dump = rt.block_on([] {
    std::ostringstream os;
    sp::dump_fibers(os);
    return os.str();
  });
  rt.shutdown();
  const std::string main = main_line(dump);
  INFO(dump);
  REQUIRE(!main.empty());
  CHECK(main.find("main_site_test.cpp:" + std::to_string(line)) != std::string::npos);
  CHECK(main.find("runtime.hpp") == std::string::npos);
}

TEST_CASE("run: the main fiber's site is the run call", "[dump]") {
  const unsigned line = __LINE__ + 1;
  const std::string dump = sp::run(
      [] {
        std::ostringstream os;
        sp::dump_fibers(os);
        return os.str();
      },
      options(1));
  const std::string main = main_line(dump);
  INFO(dump);
  REQUIRE(!main.empty());
  CHECK(main.find("main_site_test.cpp:" + std::to_string(line)) != std::string::npos);
  CHECK(main.find("runtime.hpp") == std::string::npos);
}
