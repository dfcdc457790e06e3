// fuzz_input.hpp: the fuzz input read as a script (a byte at a time), a
// hex dump for failure reports and the input being run (CurrentInput),
// shared by the fuzz targets that read
// their input as operations (h2_server_fuzz.cpp, h2_client_fuzz.cpp,
// ws_server_fuzz.cpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>

namespace fuzz_support {

// hex: the first 4 KiB of s as hex bytes, 32 a line (failure reports).
inline std::string hex(const std::string& s) {
  std::string out;
  char b[4];
  for (std::size_t i = 0; i < s.size() && i < 4096; ++i) {
    std::snprintf(b, sizeof b, "%02x", static_cast<unsigned char>(s[i]));
    out += b;
    out += (i % 32 == 31) ? '\n' : ' ';
  }
  if (s.size() > 4096) out += "...";
  return out;
}

// Input: the fuzz input, a byte at a time; past its end, zeros (so a
// script always ends, whatever was cut off).
struct Input {
  const std::uint8_t* p;
  std::size_t n;
  std::size_t at = 0;
  bool empty() const { return at >= n; }
  std::uint8_t byte() { return at < n ? p[at++] : 0; }
  std::uint32_t u32() {
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v = (v << 8) | byte();
    return v;
  }
  std::string bytes(std::size_t k) {
    k = std::min(k, n - std::min(n, at));
    std::string s(reinterpret_cast<const char*>(p + at), k);
    at += k;
    return s;
  }
};

// CurrentInput: the input being run, so that a failure report can write it
// out: the fixed-seed ctests have no libFuzzer to keep it. Set at the top
// of LLVMFuzzerTestOneInput; save() writes `file` in the working directory
// and says so (replay: the target with the file as its argument).
struct CurrentInput {
  const std::uint8_t* data = nullptr;
  std::size_t size = 0;
  void save(const char* file) const {
    if (data == nullptr) return;
    if (FILE* f = std::fopen(file, "wb"); f != nullptr) {
      std::fwrite(data, 1, size, f);
      std::fclose(f);
      std::fprintf(stderr, "the input: %s (replay: the fuzz target with it as its argument)\n", file);
    }
  }
};

}  // namespace fuzz_support
