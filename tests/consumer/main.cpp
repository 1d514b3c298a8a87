// A program that uses cos through add_subdirectory and cos::cos.
#include <cos/cos.hpp>

#include <cmath>
#include <cstdio>

int main() {
  double r = coop::run([] {
    auto t = coop::spawn([] { return std::cos(0.0); });
    return t.join();
  });
  std::printf("%g\n", r);
  return r == 1.0 ? 0 : 1;
}
