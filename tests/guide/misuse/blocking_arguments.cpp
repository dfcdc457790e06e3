// expect: blocking takes a callable with no arguments: bind them in a lambda
// blocking(f, x), asyncio's to_thread(f, *args): blocking takes no
// arguments for f.
#include <string>

#include <spindle/spindle.hpp>

int read_config(const std::string& path) { return static_cast<int>(path.size()); }

int main() {
  return spindle::run([] {
    std::string path = "/etc/hosts";
#ifdef SPINDLE_MISUSE_FIXED
    return spindle::blocking([=] { return read_config(path); });
#else
    return spindle::blocking(read_config, path);
#endif
  });
}
