// backends_objects.hpp: the remote class and the spawner functions of the
// backends test program's object and spawner-call cases, registered once in
// backends_objects.cpp (the test program is also the workers' program).
#pragma once

#include <cos/cos.hpp>

#include <string>
#include <vector>

namespace backends {

struct Config {
  int start = 0;
  std::string name;
  bool fail = false;  // the constructor throws
  template <class Archive> void serialize(Archive& ar) { ar(start, name, fail); }
};

// Counter is a stateful model: its state is what was added so far, in order.
class Counter {
 public:
  explicit Counter(Config c);
  int add(int k);
  int value() const;
  std::vector<int> history() const { return history_; }
  // where() is "pid:thread" of the process and thread that hold the object.
  std::string where() const;
  // nap(ms) sleeps on the slot, then returns the state.
  int nap(int ms);
  // fail(why) throws std::runtime_error(why).
  int fail(std::string why);
  // crash(how) kills the worker (cos_test::crash).
  int crash(std::string how);
  // host() is coop::this_host() inside the method ("none" outside a slot).
  std::string host() const;
  // report(k) adds k to the spawner's total through a spawner call, adds
  // the total it returns to the state, and returns the state.
  int report(int k);
  // read(path) is read_mirrored_in(path), in the object.
  std::string read(coop::AbstractPath path) const;
  // not_registered() has no COS_REMOTE_METHOD.
  int not_registered() { return 0; }

 private:
  int value_ = 0;
  std::vector<int> history_;
};

// ---- functions that run in the spawner (spawner calls) ----------------------

// spawner_total is the spawner's state that spawner calls change; it lives
// in the test process (the spawner) and is touched only by its scheduler.
extern int spawner_total;
extern coop::Tid spawner_tid;  // the task add_to_total last ran in
extern std::vector<int> spawner_log_lines;
// spawner_release lets spawner_wait return.
extern bool spawner_release;

// add_to_total(k) yields once, adds k to spawner_total and returns it; it
// records its tid and throws coop::Error when it finds itself in a remote task.
int add_to_total(int k);
// log_line(i) appends i to spawner_log_lines.
void log_line(int i);
// spawner_fail(why) throws std::invalid_argument(why).
int spawner_fail(std::string why);
// spawner_wait() yields in the spawner until spawner_release is set.
int spawner_wait();

// ---- remote tasks that call the spawner ------------------------------------

// call_spawner(n): n spawner calls of add_to_total(1); returns the last total.
int call_spawner(int n);
// post_spawner(from, n): posts log_line(from), ..., log_line(from + n - 1).
int post_spawner(int from, int n);
// call_spawner_fail(): what the failing spawner call threw, "type|message|host".
std::string call_spawner_fail();
// call_spawner_unregistered(): what a spawner call of an unregistered function threw.
std::string call_spawner_unregistered();
// call_spawner_wait(): a spawner call of spawner_wait; returns "ended" or what it threw.
std::string call_spawner_wait(std::string path);
// post_fail(): a spawner_post of spawner_fail.
int post_fail();
// where_am_i(): "host|task id" from this_host() and this_task_id(), or "none".
std::string where_am_i();
// spawner_scratch() yields in the spawner, then returns coop::task_scratch()
// there; call_spawner_scratch(n) makes n overlapping spawner posts of it
// and one call, and returns what the call saw.
std::string spawner_scratch();
std::string call_spawner_scratch();
// read_mirrored_in(path) is the content of a mirrored file, read through
// to_actual on the slot (a function and a Counter method alike).
std::string read_mirrored_in(coop::AbstractPath path);
// post_then_nap(ms) posts log_line(0) and then sleeps ms milliseconds.
int post_then_nap(int ms);

}  // namespace backends
