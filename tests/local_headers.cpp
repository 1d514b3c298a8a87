// local_headers.cpp: a program of local microthreads that includes only the
// local headers. tests/local_headers.cmake checks that compiling it reaches
// no cereal header and not vm.hpp; building and running it checks that
// those headers are enough on their own.
#include <cos/join.hpp>
#include <cos/scheduler.hpp>
#include <cos/spawn.hpp>
#include <cos/task.hpp>
#include <cos/wait.hpp>

int main() {
  int sum = 0;
  coop::run([&] {
    auto a = coop::spawn([] { return 40; });
    auto b = coop::spawn([] {
      coop::yield();
      return 2;
    });
    coop::wait_all(a, b);
    sum = a.join() + b.join();
    coop::spawn([] {});
    while (coop::join()) {
    }
  });
  return sum == 42 ? 0 : 1;
}
