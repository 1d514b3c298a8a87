// backends_objects.cpp: the remote class Counter and the spawner functions of
// the backends test program, each registered once.
#include "backends_objects.hpp"

#include <unistd.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <iterator>
#include <stdexcept>
#include <thread>

#include "test_support.hpp"

namespace backends {

Counter::Counter(Config c) : value_(c.start) {
  if (c.fail) throw std::invalid_argument("bad config " + c.name);
}
int Counter::add(int k) {
  value_ += k;
  history_.push_back(k);
  return value_;
}
int Counter::value() const { return value_; }
std::string Counter::where() const {
  return std::to_string(::getpid()) + ":" + std::to_string(std::hash<std::thread::id>{}(std::this_thread::get_id()));
}
int Counter::nap(int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return value_;
}
int Counter::fail(std::string why) { throw std::runtime_error(why); }
int Counter::crash(std::string how) { return cos_test::crash(how); }
std::string Counter::host() const {
  auto h = coop::this_host();
  return h ? h->name() : "none";
}
int Counter::report(int k) {
  value_ += coop::spawner_call(add_to_total, k);
  return value_;
}

COS_REMOTE_CLASS(Counter, Config);
COS_REMOTE_METHOD(Counter, add);
COS_REMOTE_METHOD(Counter, value);
COS_REMOTE_METHOD(Counter, history);
COS_REMOTE_METHOD(Counter, where);
COS_REMOTE_METHOD(Counter, nap);
COS_REMOTE_METHOD(Counter, fail);
COS_REMOTE_METHOD(Counter, crash);
COS_REMOTE_METHOD(Counter, host);
COS_REMOTE_METHOD(Counter, report);
std::string Counter::read(coop::AbstractPath path) const { return read_mirrored_in(std::move(path)); }
COS_REMOTE_METHOD(Counter, read);

int spawner_total = 0;
coop::Tid spawner_tid = coop::invalid_tid;
std::vector<int> spawner_log_lines;
bool spawner_release = false;

int add_to_total(int k) {
  if (coop::this_host()) throw coop::Error("add_to_total runs in a remote task, not in the spawner");
  spawner_tid = coop::current_tid();
  coop::yield();  // a local task of the spawner may give up the CPU
  spawner_total += k;
  return spawner_total;
}
COS_REMOTE(add_to_total);

void log_line(int i) { spawner_log_lines.push_back(i); }
COS_REMOTE(log_line);

int spawner_fail(std::string why) { throw std::invalid_argument(why); }
COS_REMOTE(spawner_fail);

int spawner_wait() {
  while (!spawner_release) coop::sleep_for(std::chrono::milliseconds(1));
  return 1;
}
COS_REMOTE(spawner_wait);

int call_spawner(int n) {
  int last = 0;
  for (int i = 0; i < n; ++i) last = coop::spawner_call(add_to_total, 1);
  return last;
}
COS_REMOTE(call_spawner);

int post_spawner(int from, int n) {
  for (int i = from; i < from + n; ++i) coop::spawner_post(log_line, i);
  return n;
}
COS_REMOTE(post_spawner);

std::string call_spawner_fail() {
  try {
    coop::spawner_call(spawner_fail, std::string("no more work"));
  } catch (const coop::RemoteError& e) {
    return e.type() + "|" + e.message() + "|" + (e.host() ? e.host()->name() : "");
  }
  return "did not throw";
}
COS_REMOTE(call_spawner_fail);

int not_a_remote_function(int x) { return x; }

std::string call_spawner_unregistered() {
  try {
    coop::spawner_call(not_a_remote_function, 1);
  } catch (const coop::NotRegistered& e) {
    return std::string("NotRegistered|") + e.function();
  }
  return "did not throw";
}
COS_REMOTE(call_spawner_unregistered);

std::string call_spawner_wait(std::string path) {
  std::ofstream(path) << "waiting\n";
  try {
    coop::spawner_call(spawner_wait);
    return "ended";
  } catch (const std::exception& e) {
    return e.what();
  }
}
COS_REMOTE(call_spawner_wait);

int post_fail() {
  coop::spawner_post(spawner_fail, std::string("posted and failed"));
  return 0;
}
COS_REMOTE(post_fail);

std::string where_am_i() {
  auto h = coop::this_host();
  auto t = coop::this_task_id();
  if (!h && !t) return "none";
  return (h ? h->name() : "?") + "|" + (t ? std::to_string(t->value()) : "?");
}
COS_REMOTE(where_am_i);

std::string spawner_scratch() {
  coop::yield();  // overlapping spawner calls take turns here
  return coop::task_scratch().string();
}
COS_REMOTE(spawner_scratch);

std::string call_spawner_scratch() {
  coop::spawner_post(spawner_scratch);
  coop::spawner_post(spawner_scratch);
  return coop::spawner_call(spawner_scratch);
}
COS_REMOTE(call_spawner_scratch);

std::string read_mirrored_in(coop::AbstractPath path) {
  std::ifstream in(coop::to_actual(path));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return text;
}
COS_REMOTE(read_mirrored_in);

int post_then_nap(int ms) {
  coop::spawner_post(log_line, 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return ms;
}
COS_REMOTE(post_then_nap);

}  // namespace backends
