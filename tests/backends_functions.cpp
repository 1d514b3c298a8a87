// backends_functions.cpp: the remote functions of the backends test program,
// each registered once (a name registered twice is an error at start-up).
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "backends_support.hpp"

int unregistered_cube(int x) { return x * x * x; }

namespace backends {

int square(int x) { return x * x; }
COS_REMOTE(square);

int nap(int ms, int value) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return value;
}
COS_REMOTE(nap);

std::string where() {
  return std::to_string(::getpid()) + ":" + std::to_string(std::hash<std::thread::id>{}(std::this_thread::get_id()));
}
COS_REMOTE(where);

Point scale(const Point& p, double k) {
  return Point{p.x * k, p.y * k, p.label + "*" + std::to_string(static_cast<int>(k))};
}
COS_REMOTE(scale);

std::vector<int> reversed(std::vector<int> v) {
  std::reverse(v.begin(), v.end());
  return v;
}
COS_REMOTE(reversed);

std::map<std::string, int> count_words(std::string text) {
  std::map<std::string, int> counts;
  std::istringstream in(text);
  for (std::string w; in >> w;) ++counts[w];
  return counts;
}
COS_REMOTE(count_words);

std::map<std::string, std::vector<Point>> group(std::vector<Point> points) {
  std::map<std::string, std::vector<Point>> out;
  for (auto& p : points) out[p.label].push_back(p);
  return out;
}
COS_REMOTE(group);

void touch(std::string path, int value) { std::ofstream(path) << value << "\n"; }
COS_REMOTE(touch);

std::string describe(int a, double b, std::string c, long d) {
  std::ostringstream os;
  os << a << "|" << b << "|" << c << "|" << d;
  return os.str();
}
COS_REMOTE(describe);

int throw_invalid(std::string why) { throw std::invalid_argument(why); }
COS_REMOTE(throw_invalid);

int throw_int(int code) { throw code; }
COS_REMOTE(throw_int);

int record_run(std::string path, int id) {
  // One write of a whole line in append mode: tasks on several slots may
  // record at once.
  std::string line = std::to_string(id) + "\n";
  std::ofstream(path, std::ios::app) << line << std::flush;
  return id;
}
COS_REMOTE(record_run);

int twice(int x) noexcept { return 2 * x; }
COS_REMOTE(twice);

int sum_of_squares(int n) {
  return coop::run([n] {
    std::vector<coop::Task<int>> ts;
    for (int i = 1; i <= n; ++i) ts.push_back(coop::spawn(remote, square, i));
    int sum = 0;
    for (auto& t : ts) sum += t.join();
    return sum;
  });
}
COS_REMOTE(sum_of_squares);

int crash_once(std::string path) {
  if (std::ifstream(path)) return 7;
  std::ofstream(path) << "crashed\n";
  std::_Exit(3);
}
COS_REMOTE(crash_once);

}  // namespace backends
