// backends_support.hpp: the remote functions and helpers of the backends test
// program (test_backends), whose cases GENERATE over every VM backend. The
// functions are registered once, in backends_functions.cpp, and exist in the
// workers too: the test program is also the workers' program.
//
// A task on a ProcessVM runs in another process, so what a task did is
// recorded in a file (RunFile), never in a variable of the test.
#pragma once

#include <cos/cos.hpp>

#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace backends {

using namespace std::chrono_literals;

inline const coop::Spawn remote{.remote = true};

inline double ms_since(coop::clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(coop::clock::now() - t0).count();
}

// wait_done(t) sleeps (letting the scheduler take the VM's messages) until t ended.
template <class R> void wait_done(const coop::Task<R>& t) {
  while (!t.done()) coop::sleep_for(1ms);
}

// RunFile is a file that remote tasks append lines to, removed when the test
// ends; lines() is what they wrote so far.
class RunFile {
 public:
  RunFile() : path_("/tmp/cos_backends_" + std::to_string(::getpid()) + "_" + std::to_string(next_++)) {
    std::remove(path_.c_str());
  }
  ~RunFile() { std::remove(path_.c_str()); }
  RunFile(const RunFile&) = delete;
  RunFile& operator=(const RunFile&) = delete;

  const std::string& path() const { return path_; }
  std::vector<std::string> lines() const {
    std::vector<std::string> out;
    std::ifstream in(path_);
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  }
  bool has(int id) const {
    for (auto& line : lines())
      if (line == std::to_string(id)) return true;
    return false;
  }

 private:
  static inline int next_ = 0;
  std::string path_;
};

// ---- remote functions (backends_functions.cpp) ------------------------------

int square(int x);
// nap(ms, value) sleeps on its slot, then returns value.
int nap(int ms, int value);
// where() names the process and thread a call runs in ("pid:thread").
std::string where();

struct Point {
  double x = 0;
  double y = 0;
  std::string label;
  template <class Archive> void serialize(Archive& ar) { ar(x, y, label); }
  friend bool operator==(const Point&, const Point&) = default;
};

Point scale(const Point& p, double k);
std::vector<int> reversed(std::vector<int> v);
std::map<std::string, int> count_words(std::string text);
std::map<std::string, std::vector<Point>> group(std::vector<Point> points);
// touch(path, value) writes value to the file at path.
void touch(std::string path, int value);
std::string describe(int a, double b, std::string c, long d);
int throw_invalid(std::string why);
int throw_int(int code);
// record_run(path, id) appends id to the file at path and returns it.
int record_run(std::string path, int id);
int twice(int x) noexcept;
// sum_of_squares(n) runs a scheduler of its own inside its slot; there is no
// VM there, so its remote spawns run as local microthreads.
int sum_of_squares(int n);
using cos_test::crash;  // crash_function.cpp
// crash_once(path) dies the first time it runs for `path` and returns 7 after.
int crash_once(std::string path);

}  // namespace backends

// Not registered: the function that coop::NotRegistered should name. Outside
// any namespace, with external linkage, as a user's function would be.
int unregistered_cube(int x);
