#include <cos/cos.hpp>

#include <catch2/catch.hpp>

TEST_CASE("spawn: a child's value comes back through join") {
  int v = coop::run([] { return coop::spawn([](int a, int b) { return a * b; }, 6, 7).join(); });
  CHECK(v == 42);
}
