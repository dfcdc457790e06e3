// bench_stat.hpp: median, minimum and maximum of a series of runs, for the
// TLS benchmarks' "median [min..max]" lines.
#pragma once

#include <algorithm>
#include <vector>

namespace tls_bench {

struct Stat {
  double med, lo, hi;
};

// stat: v must not be empty (every benchmark runs at least once).
inline Stat stat(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v.front(), v.back()};
}

}  // namespace tls_bench
