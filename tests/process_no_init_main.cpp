// process_no_init_main.cpp: a program that makes a ProcessVM but forgets
// coop::init. Its tests expect the constructor to fail with a message that
// says what to do, instead of the workers running main again:
//   process_no_init        the worker runs main, which fails at once
//   process_no_init hang   the worker runs main, which first works for a long
//                          time (the spawner gives up after its start timeout)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include <cos/errors.hpp>
#include <cos/process_vm.hpp>

int main(int argc, char** argv) {
  if (argc > 1 && std::strcmp(argv[1], "hang") == 0 && std::getenv("COS_WORKER")) {
    std::this_thread::sleep_for(std::chrono::seconds(30));
  }
  try {
    coop::ProcessVM vm(1);
  } catch (const coop::Error& e) {
    std::printf("error: %s\n", e.what());
    return 0;
  }
  std::printf("no error\n");
  return 1;
}
