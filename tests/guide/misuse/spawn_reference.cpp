// expect: To pass an argument by reference, write spawn(f, std::ref(x))
// spawn copies its arguments; a T& parameter needs std::ref.
#include <functional>

#include <spindle/spindle.hpp>

int main() {
  return spindle::run([] {
    int v = 0;
#ifdef SPINDLE_MISUSE_FIXED
    auto t = spindle::spawn([](int& x) { x = 1; }, std::ref(v));
#else
    auto t = spindle::spawn([](int& x) { x = 1; }, v);
#endif
    t.join();
    return v;
  });
}
