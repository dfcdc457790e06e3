// fuzz_driver.cpp: a main() for the fuzz targets in builds without
// libFuzzer (gcc, every CI preset). It replays the files named on the
// command line, if any, else feeds LLVMFuzzerTestOneInput a fixed-seed
// series of random inputs (SPINDLE_FUZZ_ITERS, default 3000), so each
// target is a deterministic ctest that still reaches deep states. With
// clang, -DSPINDLE_LIBFUZZER=ON links the same targets with libFuzzer
// instead (docs/hacking.md "Fuzzing").
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

int main(int argc, char** argv) {
  if (argc > 1) {
    for (int i = 1; i < argc; ++i) {
      std::ifstream in(argv[i], std::ios::binary);
      if (!in) {
        std::fprintf(stderr, "fuzz_driver: cannot read %s\n", argv[i]);
        return 2;
      }
      std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                      std::istreambuf_iterator<char>());
      LLVMFuzzerTestOneInput(bytes.data(), bytes.size());
    }
    std::printf("replayed %d inputs\n", argc - 1);
    return 0;
  }
  const char* env = std::getenv("SPINDLE_FUZZ_ITERS");
  const long iters = env != nullptr ? std::atol(env) : 3000;
  std::uint64_t x = 0x9e3779b97f4a7c15ull;  // splitmix64: fixed, reproducible
  auto next = [&x] {
    std::uint64_t z = (x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  std::vector<std::uint8_t> buf;
  for (long i = 0; i < iters; ++i) {
    buf.resize(next() % 1024);
    for (auto& b : buf) b = static_cast<std::uint8_t>(next());
    LLVMFuzzerTestOneInput(buf.data(), buf.size());
  }
  std::printf("ran %ld random inputs\n", iters);
  return 0;
}
