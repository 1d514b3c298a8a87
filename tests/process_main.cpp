// process_main.cpp: the main of test programs that start worker processes.
// coop::init comes first, so that a worker (this same program, started again
// by ProcessVM) serves tasks instead of running the tests.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cos/init.hpp>

int main(int argc, char** argv) {
  coop::init(argc, argv);
  return Catch::Session().run(argc, argv);
}
