// ProcessVM through the VM interface (start / receive / cancel / finalize),
// with the worker processes that it starts from this same test program.
// What a ProcessVM does through the scheduler (coop::spawn, coop::dispatch)
// is tested with every other backend in the backends_*_test.cpp files.
#include <cos/cos.hpp>

#include <dirent.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "backends/process/frame.hpp"
#include "test_support.hpp"

using namespace std::chrono_literals;
using coop::Message;

namespace {

int square(int x) { return x * x; }
COS_REMOTE(square);

std::string greet(std::string name) { return "hello, " + name; }
COS_REMOTE(greet);

std::string reverse(std::string s) { return std::string(s.rbegin(), s.rend()); }
COS_REMOTE(reverse);

int slow_square(int x, int ms) {
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return x * x;
}
COS_REMOTE(slow_square);

void fail(std::string why) { throw std::invalid_argument(why); }
COS_REMOTE(fail);

int my_pid() { return static_cast<int>(::getpid()); }
COS_REMOTE(my_pid);

// pid_then_sleep() writes its pid to `path`, then sleeps, so that the test
// can kill it from outside.
int pid_then_sleep(std::string path, int ms) {
  {
    std::ofstream out(path + ".tmp");
    out << ::getpid() << "\n";
  }
  std::rename((path + ".tmp").c_str(), path.c_str());
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return static_cast<int>(::getpid());
}
COS_REMOTE(pid_then_sleep);

int chatter(int lines) {
  for (int i = 0; i < lines; ++i) {
    std::cout << "out " << i << "\n";
    std::fprintf(stderr, "err %d\n", i);
  }
  std::cout << "no newline";
  return lines;
}
COS_REMOTE(chatter);

// send_garbage() writes a bad frame on the worker's result pipe (its only
// pipe besides stdout and stderr), as a broken worker would.
void send_garbage(int what) {
  std::string bytes;
  if (what == 0) {
    bytes = "this is not a frame at all, just text";
  } else {
    std::uint32_t magic = coop::detail::frame_magic;
    std::uint32_t kind = what == 1 ? 99 : static_cast<std::uint32_t>(coop::detail::FrameKind::result);
    std::uint64_t length = what == 1 ? 0 : std::uint64_t{1} << 40;
    bytes.append(reinterpret_cast<const char*>(&magic), 4);
    bytes.append(reinterpret_cast<const char*>(&kind), 4);
    bytes.append(reinterpret_cast<const char*>(&length), 8);
  }
  DIR* dir = ::opendir("/proc/self/fd");
  while (dirent* e = ::readdir(dir)) {
    std::string path = std::string("/proc/self/fd/") + e->d_name;
    char target[256] = {};
    int fd = std::atoi(e->d_name);
    if (fd > 2 && ::readlink(path.c_str(), target, sizeof target - 1) > 0 &&
        std::strncmp(target, "pipe:", 5) == 0) {
      [[maybe_unused]] auto n = ::write(fd, bytes.data(), bytes.size());
    }
  }
  ::closedir(dir);
  std::this_thread::sleep_for(10s);
}
COS_REMOTE(send_garbage);

template <class... A> coop::Call call(const char* fn, A... args) {
  return coop::Call{fn, coop::detail::to_bytes(std::tuple<A...>(args...))};
}

template <class T> T value(const Message& m) {
  INFO("error_type: " << m.error_type << ", payload: " << m.payload << ", reason: " << m.reason);
  REQUIRE(m.kind == Message::Kind::result);
  REQUIRE(m.ok);
  T v{};
  coop::detail::from_bytes(m.payload, v);
  return v;
}

coop::TaskId must_start(coop::VM& vm, const coop::Call& c, std::optional<coop::HostId> host = {}) {
  auto id = vm.start(c, host);
  REQUIRE(id);
  return *id;
}

// receive_all() takes `count` messages, failing if they take too long.
std::map<coop::TaskId, Message> receive_all(coop::VM& vm, std::size_t count, std::chrono::seconds limit = 10s) {
  std::map<coop::TaskId, Message> got;
  auto deadline = coop::clock::now() + limit;
  while (got.size() < count) {
    REQUIRE(coop::clock::now() < deadline);
    if (auto m = vm.receive(100ms)) got.emplace(m->task, std::move(*m));
  }
  return got;
}

bool no_children() {
  int status = 0;
  return ::waitpid(-1, &status, WNOHANG) == -1 && errno == ECHILD;
}

// gone() says whether a process that is not our child has ended (it is
// absent, or a zombie nobody has reaped yet).
bool gone(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  if (!in) return true;
  std::string line;
  std::getline(in, line);
  auto close = line.rfind(')');
  return close == std::string::npos || line.substr(close + 2, 1) == "Z";
}

double cpu_seconds() {
  timespec t{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

}  // namespace

TEST_CASE("process vm: values and exceptions come back across processes") {
  int n = GENERATE(1, 2, 4);
  coop::ProcessVM vm(n);
  REQUIRE(vm.slots() == n);
  REQUIRE(vm.free_slots() == n);
  REQUIRE(vm.hosts().size() == 1);
  CHECK(vm.worker_pids().size() == static_cast<std::size_t>(n));
  for (int pid : vm.worker_pids()) CHECK(pid != ::getpid());

  auto a = must_start(vm, call("square", 7));
  auto r = vm.receive(5s);
  REQUIRE(r);
  CHECK(r->task == a);
  CHECK(value<int>(*r) == 49);
  CHECK(r->host == vm.hosts()[0]);
  CHECK(vm.host_of(a) == vm.hosts()[0]);
  CHECK(r->started <= r->completed);
  CHECK(r->completed <= coop::clock::now());

  auto b = must_start(vm, call("greet", std::string("worker")));
  auto got = receive_all(vm, 1);
  CHECK(value<std::string>(got[b]) == "hello, worker");
  auto c = must_start(vm, call("fail", std::string("bad input")));
  CHECK(b != c);
  got = receive_all(vm, 1);
  const Message& e = got[c];
  CHECK(e.kind == Message::Kind::result);
  CHECK_FALSE(e.ok);
  CHECK(e.error_type == "std::invalid_argument");
  CHECK(e.payload == "bad input");
  CHECK(vm.free_slots() == n);

  // Calls run in other processes.
  auto p = must_start(vm, call("my_pid"));
  CHECK(value<int>(*vm.receive(5s)) != ::getpid());
  (void)p;
}

TEST_CASE("process vm: megabytes of arguments and results travel both ways") {
  coop::ProcessVM vm(2);
  std::string big(5 << 20, '\0');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7919 % 251);
  auto a = must_start(vm, call("reverse", big));
  auto b = must_start(vm, call("reverse", std::string("abc")));
  auto got = receive_all(vm, 2);
  CHECK(value<std::string>(got[a]) == std::string(big.rbegin(), big.rend()));
  CHECK(value<std::string>(got[b]) == "cba");
}

TEST_CASE("process vm: an unregistered function comes back as coop::NotRegistered") {
  coop::ProcessVM vm(1);
  must_start(vm, coop::Call{"no_such_function", ""});
  auto m = vm.receive(5s);
  REQUIRE(m);
  CHECK(m->kind == Message::Kind::result);
  CHECK_FALSE(m->ok);
  CHECK(m->error_type == "coop::NotRegistered");
  CHECK(m->payload == "no_such_function");
  CHECK(vm.free_slots() == 1);
}

TEST_CASE("process vm: a worker that crashes is reported lost and replaced, others undisturbed") {
  int n = GENERATE(1, 2, 4);
  auto [how, reason] = GENERATE(table<std::string, std::string>({
      {"abort", "killed by signal 6 (SIGABRT)"},
      {"segv", "killed by signal 11 (SIGSEGV)"},
      {"exit3", "exited with status 3"},
  }));
  CAPTURE(n, how);
  coop::ProcessVM vm(n);
  auto before = vm.worker_pids();
  std::vector<coop::TaskId> others;
  for (int i = 1; i < n; ++i) others.push_back(must_start(vm, call("slow_square", i, 200)));
  auto victim = must_start(vm, call("cos_test::crash", how));

  auto got = receive_all(vm, static_cast<std::size_t>(n));
  const Message& lost = got[victim];
  CHECK(lost.kind == Message::Kind::worker_lost);
  CHECK(lost.task == victim);
  CHECK(lost.host == vm.hosts()[0]);
  CHECK_THAT(lost.reason, Catch::Contains(reason));
  for (std::size_t i = 0; i < others.size(); ++i) {
    CHECK(value<int>(got[others[i]]) == static_cast<int>((i + 1) * (i + 1)));
  }
  // The message arrives once the replacement is ready: the slot is free.
  CHECK(vm.slots() == n);
  CHECK(vm.free_slots() == n);
  auto after = vm.worker_pids();
  CHECK(after.size() == before.size());
  CHECK(after != before);

  auto again = must_start(vm, call("square", 5));
  auto m = vm.receive(5s);
  REQUIRE(m);
  CHECK(m->task == again);
  CHECK(value<int>(*m) == 25);
}

TEST_CASE("process vm: a worker killed from outside is reported lost and replaced") {
  int n = GENERATE(1, 2, 4);
  coop::ProcessVM vm(n);
  std::string path = "/tmp/cos_process_vm_pid_" + std::to_string(::getpid()) + "_" + std::to_string(n);
  std::remove(path.c_str());
  std::vector<coop::TaskId> others;
  for (int i = 1; i < n; ++i) others.push_back(must_start(vm, call("slow_square", i, 300)));
  auto victim = must_start(vm, call("pid_then_sleep", path, 10000));

  int pid = 0;
  auto deadline = coop::clock::now() + 5s;
  while (pid == 0 && coop::clock::now() < deadline) {
    std::ifstream in(path);
    if (!(in >> pid)) std::this_thread::sleep_for(5ms);
  }
  std::remove(path.c_str());
  REQUIRE(pid > 0);
  REQUIRE(::kill(pid, SIGKILL) == 0);

  auto got = receive_all(vm, static_cast<std::size_t>(n));
  CHECK(got[victim].kind == Message::Kind::worker_lost);
  CHECK_THAT(got[victim].reason, Catch::Contains("killed by signal 9 (SIGKILL)"));
  for (std::size_t i = 0; i < others.size(); ++i) {
    CHECK(value<int>(got[others[i]]) == static_cast<int>((i + 1) * (i + 1)));
  }
  CHECK(vm.free_slots() == n);
  auto pids = vm.worker_pids();
  CHECK(std::find(pids.begin(), pids.end(), pid) == pids.end());
}

TEST_CASE("process vm: an idle worker killed from outside is replaced without a message") {
  coop::ProcessVM vm(2);
  int pid = vm.worker_pids()[0];
  REQUIRE(::kill(pid, SIGKILL) == 0);
  CHECK_FALSE(vm.receive(300ms));
  CHECK(vm.free_slots() == 2);
  auto pids = vm.worker_pids();
  CHECK(std::find(pids.begin(), pids.end(), pid) == pids.end());
  must_start(vm, call("square", 3));
  must_start(vm, call("square", 4));
  auto got = receive_all(vm, 2);
  for (auto& [id, m] : got) CHECK(value<int>(m) > 0);
}

TEST_CASE("process vm: a worker survives SIGINT: Ctrl-C is the spawner's to handle") {
  coop::ProcessVM vm(1);
  int pid = vm.worker_pids()[0];
  auto t = must_start(vm, call("slow_square", 3, 200));
  CHECK_FALSE(vm.receive(50ms));
  REQUIRE(::kill(pid, SIGINT) == 0);
  auto m = vm.receive(5s);
  REQUIRE(m);
  CHECK(m->task == t);
  CHECK(value<int>(*m) == 9);
  CHECK(vm.worker_pids() == std::vector<int>{pid});
}

TEST_CASE("process vm: cancel kills the task's worker and reports exit once the slot is back") {
  int n = GENERATE(1, 2, 4);
  coop::ProcessVM vm(n);
  std::vector<coop::TaskId> others;
  for (int i = 1; i < n; ++i) others.push_back(must_start(vm, call("slow_square", i, 300)));
  auto sleeper = must_start(vm, call("slow_square", 9, 10000));
  CHECK_FALSE(vm.receive(50ms));
  auto t0 = coop::clock::now();
  vm.cancel(sleeper);
  std::map<coop::TaskId, Message> got = receive_all(vm, static_cast<std::size_t>(n));
  const Message& m = got[sleeper];
  CHECK(m.kind == Message::Kind::exit);
  CHECK(m.host == vm.hosts()[0]);
  CHECK(coop::clock::now() - t0 < 1s);
  for (std::size_t i = 0; i < others.size(); ++i) {
    CHECK(value<int>(got[others[i]]) == static_cast<int>((i + 1) * (i + 1)));
  }
  CHECK(vm.free_slots() == n);
  // Cancelling what no longer runs does nothing.
  vm.cancel(sleeper);
  CHECK_FALSE(vm.receive(0ns));
  CHECK(vm.free_slots() == n);
}

TEST_CASE("process vm: named hosts stand in for several machines") {
  coop::ProcessVM vm(std::map<std::string, int>{{"a", 1}, {"b", 2}});
  coop::HostId a("a"), b("b");
  CHECK(vm.slots() == 3);
  CHECK(vm.hosts() == std::vector<coop::HostId>{a, b});
  CHECK(vm.hosts_with_free_slots() == std::vector<coop::HostId>{a, b});

  auto t1 = must_start(vm, call("slow_square", 1, 200), b);
  auto t2 = must_start(vm, call("slow_square", 2, 200), b);
  CHECK(vm.host_of(t1) == b);
  CHECK(vm.host_of(t2) == b);
  CHECK_FALSE(vm.start(call("square", 3), b));  // b is full
  CHECK(vm.hosts_with_free_slots() == std::vector<coop::HostId>{a});
  auto t3 = must_start(vm, call("square", 3));  // any host: a is free
  CHECK(vm.host_of(t3) == a);
  CHECK(vm.free_slots() == 0);
  CHECK(vm.hosts_with_free_slots().empty());
  CHECK_FALSE(vm.start(call("square", 4), std::nullopt));

  auto got = receive_all(vm, 3);
  CHECK(got[t1].host == b);
  CHECK(got[t2].host == b);
  CHECK(got[t3].host == a);
  CHECK(value<int>(got[t3]) == 9);

  CHECK_THROWS_WITH(vm.start(call("square", 1), coop::HostId("c")), Catch::Contains("unknown host 'c'"));
  CHECK_THROWS_AS(vm.host_of(coop::TaskId(12345)), coop::Error);
}

TEST_CASE("process vm: bad slot counts and host maps are clear errors") {
  CHECK_THROWS_WITH(coop::ProcessVM(0), Catch::Contains("at least 1"));
  CHECK_THROWS_WITH(coop::ProcessVM(-3), Catch::Contains("at least 1"));
  CHECK_THROWS_WITH(coop::ProcessVM(std::map<std::string, int>{}), Catch::Contains("empty"));
  CHECK_THROWS_WITH(coop::ProcessVM(std::map<std::string, int>{{"a", 2}, {"b", 0}}),
                    Catch::Contains("host 'b' has 0 slots"));
  CHECK_THROWS_WITH(coop::ProcessVM(std::map<std::string, int>{{"", 1}}), Catch::Contains("empty"));
  CHECK(no_children());
}

TEST_CASE("process vm: hundreds of calls in flight through a few slots") {
  int n = GENERATE(1, 2, 4);
  coop::ProcessVM vm(n);
  constexpr int total = 400;
  int started = 0;
  long long sum = 0;
  std::map<coop::TaskId, int> input;
  int received = 0;
  auto deadline = coop::clock::now() + 20s;
  while (received < total) {
    REQUIRE(coop::clock::now() < deadline);
    while (started < total) {
      auto id = vm.start(call("square", started), std::nullopt);
      if (!id) break;
      REQUIRE(input.emplace(*id, started).second);  // ids are unique
      ++started;
    }
    if (started < total) CHECK(vm.free_slots() == 0);
    auto m = vm.receive(5s);
    REQUIRE(m);
    int x = input.at(m->task);
    int v = value<int>(*m);
    CHECK(v == x * x);
    sum += v;
    ++received;
  }
  long long want = 0;
  for (int i = 0; i < total; ++i) want += static_cast<long long>(i) * i;
  CHECK(sum == want);
  CHECK(vm.free_slots() == n);
  CHECK_FALSE(vm.receive(0ns));
}

TEST_CASE("process vm: finalize leaves no child process behind") {
  int n = GENERATE(1, 2, 4);
  SECTION("idle workers") {
    coop::ProcessVM vm(n);
    must_start(vm, call("square", 2));
    REQUIRE(vm.receive(5s));
    vm.finalize();
    CHECK(no_children());
    CHECK(vm.slots() == 0);
    CHECK(vm.free_slots() == 0);
    CHECK_THROWS_AS(vm.start(call("square", 1), std::nullopt), coop::Error);
    CHECK_FALSE(vm.receive(10ms));
    vm.finalize();  // idempotent
  }
  SECTION("busy workers are killed at once") {
    coop::ProcessVM vm(n);
    for (int i = 0; i < n; ++i) must_start(vm, call("slow_square", i, 10000));
    auto t0 = coop::clock::now();
    vm.finalize();
    CHECK(coop::clock::now() - t0 < 1s);
    CHECK(no_children());
  }
  SECTION("the destructor finalizes") {
    {
      coop::ProcessVM vm(n);
      must_start(vm, call("slow_square", 1, 10000));
    }
    CHECK(no_children());
  }
}

TEST_CASE("process vm: a task's stdout and stderr are kept in its message") {
  coop::ProcessVM vm(1);
  auto t = must_start(vm, call("chatter", 3));
  auto m = vm.receive(5s);
  REQUIRE(m);
  CHECK(m->task == t);
  CHECK(value<int>(*m) == 3);
  for (const char* line : {"out 0\n", "out 1\n", "out 2\n", "err 0\n", "err 1\n", "err 2\n"}) {
    CHECK_THAT(m->output, Catch::Contains(line));
  }
  CHECK_THAT(m->output, Catch::Contains("no newline"));
  // The next task's output is its own.
  must_start(vm, call("square", 2));
  auto next = vm.receive(5s);
  REQUIRE(next);
  CHECK(next->output.empty());
}

TEST_CASE("process vm: a worker sending a corrupt frame is rejected cleanly and replaced") {
  int what = GENERATE(0, 1, 2);
  coop::ProcessVM vm(2);
  auto bad = must_start(vm, call("send_garbage", what));
  auto good = must_start(vm, call("slow_square", 6, 100));
  auto got = receive_all(vm, 2);
  CHECK(got[bad].kind == Message::Kind::worker_lost);
  CHECK_THAT(got[bad].reason, Catch::Contains("corrupt"));
  CHECK(value<int>(got[good]) == 36);
  CHECK(vm.free_slots() == 2);
  must_start(vm, call("square", 8));
  auto m = vm.receive(5s);
  REQUIRE(m);
  CHECK(value<int>(*m) == 64);
}

TEST_CASE("process vm: receive waits on all workers without spinning") {
  coop::ProcessVM vm(2);
  double cpu0 = cpu_seconds();
  auto t0 = coop::clock::now();
  CHECK_FALSE(vm.receive(0ns));
  CHECK_FALSE(vm.receive(300ms));  // nothing runs: times out
  auto waited = coop::clock::now() - t0;
  CHECK(waited >= 300ms);
  CHECK(waited < 1s);

  must_start(vm, call("slow_square", 2, 300));
  auto m = vm.receive(-1ns);
  REQUIRE(m);
  CHECK(value<int>(*m) == 4);
  CHECK(cpu_seconds() - cpu0 < 0.1);
  // Nothing runs: a wait without limit returns at once instead of hanging.
  CHECK_FALSE(vm.receive(-1ns));
}

TEST_CASE("process vm: workers exit when the spawner is killed") {
  int sig = GENERATE(SIGTERM, SIGINT, SIGKILL);
  CAPTURE(sig);
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  std::fflush(nullptr);
  pid_t spawner = ::fork();
  REQUIRE(spawner >= 0);
  if (spawner == 0) {
    ::close(fds[0]);
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
    try {
      coop::ProcessVM vm(2);
      auto pids = vm.worker_pids();
      (void)vm.start(call("slow_square", 1, 10000), std::nullopt);  // one busy, one idle
      [[maybe_unused]] auto n = ::write(fds[1], pids.data(), pids.size() * sizeof(int));
      ::close(fds[1]);
      for (;;) ::pause();
    } catch (...) {
      ::_exit(3);
    }
  }
  ::close(fds[1]);
  int pids[2] = {0, 0};
  auto n = ::read(fds[0], pids, sizeof pids);
  ::close(fds[0]);
  REQUIRE(n == static_cast<ssize_t>(sizeof pids));
  REQUIRE(::kill(spawner, sig) == 0);
  int status = 0;
  REQUIRE(::waitpid(spawner, &status, 0) == spawner);
  CHECK(WIFSIGNALED(status));
  auto deadline = coop::clock::now() + 3s;
  for (int pid : pids) {
    while (!gone(pid) && coop::clock::now() < deadline) std::this_thread::sleep_for(5ms);
    CHECK(gone(pid));
  }
  CHECK(no_children());
}

TEST_CASE("process vm: frames reject corrupt and oversized input") {
  using namespace coop::detail;
  coop::Call c{"fn", std::string("\0args\xff", 6), std::string("mirrors\0", 8)};
  std::string bytes = encode_frame(FrameKind::call, encode_call(42, c));

  SECTION("a frame fed a byte at a time comes out whole") {
    FrameReader r;
    for (std::size_t i = 0; i + 1 < bytes.size(); ++i) {
      r.feed(&bytes[i], 1);
      CHECK_FALSE(r.next());
    }
    r.feed(&bytes.back(), 1);
    auto f = r.next();
    REQUIRE(f);
    CHECK(f->kind == FrameKind::call);
    std::uint64_t task = 0;
    coop::Call back;
    decode_call(f->payload, task, back);
    CHECK(task == 42);
    CHECK(back.function == "fn");
    CHECK(back.args == c.args);
    CHECK(back.mirrors == c.mirrors);
    CHECK(r.buffered() == 0);
  }
  SECTION("call frames appended to one buffer are the encoded frames, read in place one after another") {
    std::string out;
    append_call_frame(out, FrameKind::call, 42, c, "");
    CHECK(out == bytes);
    append_call_frame(out, FrameKind::queue, 43, c, "host-b");
    FrameReader r;
    r.feed(out.data(), out.size());
    for (std::uint64_t want : {42, 43}) {
      auto f = r.next_view();
      REQUIRE(f);
      CHECK(f->kind == (want == 42 ? FrameKind::call : FrameKind::queue));
      std::uint64_t task = 0;
      coop::Call back;
      std::string host;
      decode_call(f->payload, task, back, &host);
      CHECK(task == want);
      CHECK(back.args == c.args);
      CHECK(host == (want == 42 ? "" : "host-b"));
    }
    CHECK_FALSE(r.next_view());
    CHECK(r.buffered() == 0);
  }
  SECTION("results round trip") {
    Message m;
    m.ok = false;
    m.payload = "why";
    m.error_type = "std::logic_error";
    m.started = coop::clock::now();
    m.completed = m.started + 5ms;
    Message back;
    std::uint64_t task = 0;
    decode_result(encode_result(7, m), task, back);
    CHECK(task == 7);
    CHECK_FALSE(back.ok);
    CHECK(back.payload == "why");
    CHECK(back.error_type == "std::logic_error");
    CHECK(back.started == m.started);
    CHECK(back.completed == m.completed);
  }
  SECTION("bad magic") {
    FrameReader r;
    std::string junk = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    r.feed(junk.data(), junk.size());
    CHECK_THROWS_AS(r.next(), FrameError);
  }
  SECTION("unknown kind") {
    std::string f = bytes;
    f[4] = 77;
    FrameReader r;
    r.feed(f.data(), f.size());
    CHECK_THROWS_WITH(r.next(), Catch::Contains("unknown message kind"));
  }
  SECTION("oversized length is refused before its payload arrives") {
    std::string f = bytes.substr(0, frame_header_size);
    std::uint64_t huge = std::uint64_t{1} << 62;
    std::memcpy(f.data() + 8, &huge, 8);
    FrameReader r;
    r.feed(f.data(), f.size());
    CHECK_THROWS_WITH(r.next(), Catch::Contains("oversized"));
    FrameReader small(100);
    std::string f2 = bytes.substr(0, frame_header_size);
    std::uint64_t len = 101;
    std::memcpy(f2.data() + 8, &len, 8);
    small.feed(f2.data(), f2.size());
    CHECK_THROWS_AS(small.next(), FrameError);
    CHECK_THROWS_AS(encode_frame(FrameKind::call, std::string(max_frame_payload + 1, 'x')), FrameError);
  }
  SECTION("payloads with lying lengths") {
    std::string p = encode_call(1, c);
    std::uint64_t lie = std::uint64_t{1} << 50;
    std::memcpy(p.data() + 8, &lie, 8);  // the function name's length
    std::uint64_t task = 0;
    coop::Call back;
    CHECK_THROWS_WITH(decode_call(p, task, back), Catch::Contains("truncated"));
    CHECK_THROWS_AS(decode_call(encode_call(1, c) + "x", task, back), FrameError);
    CHECK_THROWS_AS(decode_hello("abc"), FrameError);
  }
}

TEST_CASE("process vm: a report frame carries several messages in order, withdrawn ones too, and rejects corrupt input") {
  using namespace coop::detail;
  Message result;
  result.kind = Message::Kind::result;
  result.task = coop::TaskId(7);
  result.ok = true;
  result.failure = Message::Failure::none;
  result.payload = std::string("val\0ue", 6);
  result.output = "out\n";
  Message started;
  started.kind = Message::Kind::started;
  started.task = coop::TaskId(8);
  started.started = coop::clock::now();
  Message withdrawn;
  withdrawn.kind = Message::Kind::withdrawn;
  withdrawn.task = coop::TaskId(9);
  std::string payload = encode_reports({result, started, withdrawn});
  std::vector<Message> back = decode_reports(payload);
  REQUIRE(back.size() == 3);
  CHECK(back[0].kind == Message::Kind::result);
  CHECK(back[0].task == coop::TaskId(7));
  CHECK(back[0].payload == result.payload);
  CHECK(back[0].output == "out\n");
  CHECK(back[1].kind == Message::Kind::started);
  CHECK(back[1].task == coop::TaskId(8));
  CHECK(back[1].started == started.started);
  CHECK(back[2].kind == Message::Kind::withdrawn);
  CHECK(back[2].task == coop::TaskId(9));
  CHECK(decode_reports(encode_reports({withdrawn})).size() == 1);
  CHECK_THROWS_AS(decode_reports(""), FrameError);                                 // no message at all
  CHECK_THROWS_AS(decode_reports(payload.substr(0, payload.size() - 1)), FrameError);  // cut short
  std::string bad = payload;
  bad[8] = 42;  // the first report's kind byte (after its 8-byte length)
  CHECK_THROWS_WITH(decode_reports(bad), Catch::Contains("unknown message kind"));
  // One by one, as rank 0 takes them: each `at` is where the next begins.
  std::vector<coop::TaskId> tasks;
  for (std::size_t at = 0; at < payload.size();) {
    Message m;
    std::size_t next = decode_next_report(payload, at, m);
    REQUIRE(next > at);
    at = next;
    tasks.push_back(m.task);
  }
  CHECK(tasks == std::vector<coop::TaskId>{coop::TaskId(7), coop::TaskId(8), coop::TaskId(9)});
  Message m;
  CHECK_THROWS_AS(decode_next_report(payload, payload.size() + 1, m), FrameError);
  CHECK_THROWS_AS(decode_next_report(payload, 3, m), FrameError);  // not where a report begins
}

TEST_CASE("frames: a queue frame between ranks holds several calls in order, and a corrupt one is refused") {
  using namespace coop::detail;
  coop::Call a{"fa", std::string("x\0y", 3), "m"}, b{"fb", "", ""};
  std::string out;
  std::size_t first = append_queued_call(out, 5, a);
  CHECK(first == out.size());
  CHECK(first == queued_call_size(a));
  CHECK(append_queued_call(out, 6, b) == queued_call_size(b));
  CHECK(out.size() == first + queued_call_size(b));
  std::vector<std::uint64_t> tasks;
  std::vector<coop::Call> calls;
  for (std::size_t at = 0; at < out.size();) {
    std::uint64_t task = 0;
    coop::Call call;
    at = decode_queued_call(out, at, task, call);
    tasks.push_back(task);
    calls.push_back(call);
  }
  REQUIRE(tasks == std::vector<std::uint64_t>{5, 6});
  CHECK(calls[0].function == "fa");
  CHECK(calls[0].args == a.args);
  CHECK(calls[0].mirrors == "m");
  CHECK(calls[1].function == "fb");
  std::uint64_t task = 0;
  coop::Call call;
  CHECK_THROWS_AS(decode_queued_call(out.substr(0, out.size() - 1), first, task, call), FrameError);  // cut short
  CHECK_THROWS_AS(decode_queued_call(out, out.size() - 3, task, call), FrameError);  // no length
  std::string longer = out;
  std::uint64_t huge = 1ull << 40;
  std::memcpy(longer.data(), &huge, sizeof huge);
  CHECK_THROWS_WITH(decode_queued_call(longer, 0, task, call), Catch::Contains("longer than the frame"));
  std::string before = out;
  coop::Call big{"f", std::string(max_frame_payload, 'x'), ""};
  CHECK_THROWS_AS(append_queued_call(out, 7, big), FrameError);
  CHECK(out == before);  // nothing added
}

TEST_CASE("process vm: start never blocks on a stopped worker and cancel then kills it and gives the slot back") {
  coop::ProcessVM vm(1);
  REQUIRE(vm.worker_pids().size() == 1);
  int pid = vm.worker_pids()[0];
  REQUIRE(::kill(pid, SIGSTOP) == 0);
  std::string big(50 << 20, 'x');  // far more than a socket buffer holds
  auto t0 = coop::clock::now();
  auto task = vm.start(call("reverse", big), {});
  CHECK(coop::clock::now() - t0 < 1s);
  REQUIRE(task);
  CHECK(vm.free_slots() == 0);
  CHECK_FALSE(vm.receive(100ms));  // the rest waits; nothing is lost or sent twice
  vm.cancel(*task);                // SIGKILL ends a stopped process too
  auto got = receive_all(vm, 1);
  CHECK(got[*task].kind == Message::Kind::exit);
  CHECK(vm.free_slots() == 1);
  REQUIRE(vm.worker_pids().size() == 1);
  CHECK(vm.worker_pids()[0] != pid);
  // The new worker takes a large call that has to go out in pieces.
  auto again = must_start(vm, call("reverse", std::string(8 << 20, 'y') + "z"));
  auto back = receive_all(vm, 1);
  CHECK(value<std::string>(back[again]) == "z" + std::string(8 << 20, 'y'));
}

TEST_CASE("process vm: results carry their Failure across processes and in frames") {
  coop::ProcessVM vm(1);
  must_start(vm, call("square", 3));
  CHECK(vm.receive(5s)->failure == Message::Failure::none);
  must_start(vm, call("fail", std::string("why")));
  CHECK(vm.receive(5s)->failure == Message::Failure::exception);
  must_start(vm, coop::Call{"no_such_function", ""});
  CHECK(vm.receive(5s)->failure == Message::Failure::not_registered);

  using namespace coop::detail;
  for (auto failure : {Message::Failure::none, Message::Failure::exception, Message::Failure::not_registered}) {
    Message m;
    m.failure = failure;
    m.ok = failure == Message::Failure::none;
    Message back;
    std::uint64_t task = 0;
    decode_result(encode_result(1, m), task, back);
    CHECK(back.failure == failure);
    CHECK(back.ok == m.ok);
  }
  std::string bytes = encode_result(1, Message{});
  bytes[8] = 3;  // the byte after the task id: no such Failure
  Message back;
  std::uint64_t task = 0;
  CHECK_THROWS_AS(decode_result(bytes, task, back), FrameError);
}

// ---- the processes that a task starts end with its worker -------------------

namespace {

// start_program() starts a program that outlives its direct parent, writes
// that program's pid to `path`, then does `then`: "block" (sleep 30 s),
// "abort" (crash the worker) or "return" (give 0 back). `how` is "shell"
// (system() of `sleep 30 &`: sh's child, left behind when sh exits or
// waits) or "double_fork" (fork, setsid, fork again: a grandchild in a new
// session whose parent has exited).
int start_program(std::string path, std::string how, std::string then) {
  std::string tmp = path + ".tmp";
  if (how == "shell") {
    bool wait = then == "block";
    std::string cmd = "sleep 30 & echo $! > " + tmp + " && mv " + tmp + " " + path + (wait ? "; wait" : "");
    if (std::system(cmd.c_str()) != 0 && !wait) return -1;
  } else {
    pid_t child = ::fork();
    if (child == 0) {
      ::setsid();
      if (::fork() == 0) {
        {
          std::ofstream out(tmp);
          out << ::getpid() << "\n";
        }
        std::rename(tmp.c_str(), path.c_str());
        ::execlp("sleep", "sleep", "30", static_cast<char*>(nullptr));
        ::_exit(127);
      }
      ::_exit(0);
    }
    ::waitpid(child, nullptr, 0);
  }
  if (then == "abort") {
    while (::access(path.c_str(), F_OK) != 0) std::this_thread::sleep_for(1ms);
    rlimit none{0, 0};
    ::setrlimit(RLIMIT_CORE, &none);
    std::abort();
  }
  if (then == "block") std::this_thread::sleep_for(30s);
  return 0;
}
COS_REMOTE(start_program);

// leave_zombie() starts a child that ends at once and does not wait for it.
int leave_zombie() {
  pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  std::this_thread::sleep_for(50ms);
  return static_cast<int>(child);
}
COS_REMOTE(leave_zombie);

std::string tree_path() {
  static int n = 0;
  std::string path = "/tmp/cos_process_vm_tree_" + std::to_string(::getpid()) + "_" + std::to_string(++n);
  std::remove(path.c_str());
  return path;
}

// program_pid() waits for start_program to write the program's pid.
int program_pid(const std::string& path, bool running = true) {
  auto deadline = coop::clock::now() + 10s;
  int pid = 0;
  while (pid == 0 && coop::clock::now() < deadline) {
    std::ifstream in(path);
    if (!(in >> pid)) std::this_thread::sleep_for(5ms);
  }
  std::remove(path.c_str());
  REQUIRE(pid > 0);
  if (running) REQUIRE_FALSE(gone(pid));
  return pid;
}

// ends_soon() says whether `pid` is gone within a second (it says how long
// it took when it is not).
bool ends_soon(int pid) {
  auto t0 = coop::clock::now();
  while (!gone(pid) && coop::clock::now() - t0 < 1s) std::this_thread::sleep_for(2ms);
  bool ended = gone(pid);
  if (!ended) ::kill(pid, SIGKILL);  // do not leave it behind
  return ended;
}

}  // namespace

TEST_CASE("process vm: a timeout ends the programs that the task started") {
  std::string how = GENERATE(as<std::string>{}, "shell", "double_fork");
  CAPTURE(how);
  auto vm = std::make_shared<coop::ProcessVM>(1);
  std::string path = tree_path();
  int pid = 0;
  coop::run(
      [&] {
        auto t = coop::spawn(coop::Spawn{.remote = true, .timeout = 300ms}, start_program, path, how,
                             std::string("block"));
        pid = program_pid(path);  // the task blocks in its sleep meanwhile
        CHECK_THROWS_AS(t.join(), coop::Timeout);
      },
      coop::Options{.vm = vm});
  CHECK(ends_soon(pid));
}

TEST_CASE("process vm: cancel ends the programs that the task started") {
  std::string how = GENERATE(as<std::string>{}, "shell", "double_fork");
  CAPTURE(how);
  coop::ProcessVM vm(1);
  std::string path = tree_path();
  auto id = must_start(vm, call("start_program", path, how, std::string("block")));
  int pid = program_pid(path);
  vm.cancel(id);
  CHECK(ends_soon(pid));
  auto m = vm.receive(5s);
  REQUIRE(m);
  CHECK(m->kind == Message::Kind::exit);
}

TEST_CASE("process vm: a program in a session of its own, whose parent has exited, ends with its task") {
  // The program is in a session and process group of its own, and its parent
  // is gone: no process group or session kill reaches it, the tree does.
  coop::ProcessVM vm(1);
  std::string path = tree_path();
  auto id = must_start(vm, call("start_program", path, std::string("double_fork"), std::string("block")));
  int pid = program_pid(path);
  CHECK(::getsid(pid) != ::getsid(0));
  vm.cancel(id);
  CHECK(ends_soon(pid));
}

TEST_CASE("process vm: finalize ends the programs that running tasks started") {
  std::string how = GENERATE(as<std::string>{}, "shell", "double_fork");
  CAPTURE(how);
  coop::ProcessVM vm(2);
  std::string a = tree_path(), b = tree_path();
  must_start(vm, call("start_program", a, how, std::string("block")));
  must_start(vm, call("start_program", b, how, std::string("block")));
  int pa = program_pid(a), pb = program_pid(b);
  auto t0 = coop::clock::now();
  vm.finalize();
  CHECK(coop::clock::now() - t0 < 1s);
  CHECK(no_children());
  CHECK(ends_soon(pa));
  CHECK(ends_soon(pb));
}

TEST_CASE("process vm: a program that a finished task left running ends when the VM is finalized") {
  std::string how = GENERATE(as<std::string>{}, "shell", "double_fork");
  CAPTURE(how);
  coop::ProcessVM vm(1);
  std::string path = tree_path();
  must_start(vm, call("start_program", path, how, std::string("return")));
  CHECK(value<int>(*vm.receive(10s)) == 0);
  int pid = program_pid(path);
  must_start(vm, call("square", 4));  // the worker goes on serving meanwhile
  CHECK(value<int>(*vm.receive(5s)) == 16);
  CHECK_FALSE(gone(pid));
  vm.finalize();
  CHECK(no_children());
  CHECK(ends_soon(pid));
}

TEST_CASE("process vm: a worker that crashes takes the programs its task started with it") {
  std::string how = GENERATE(as<std::string>{}, "shell", "double_fork");
  CAPTURE(how);
  coop::ProcessVM vm(1);
  std::string path = tree_path();
  auto id = must_start(vm, call("start_program", path, how, std::string("abort")));
  auto m = vm.receive(10s);
  REQUIRE(m);
  CHECK(m->kind == Message::Kind::worker_lost);
  CHECK(m->task == id);
  CHECK(m->reason.find("SIGABRT") != std::string::npos);  // the worker's own status, not the keeper's
  int pid = program_pid(path, false);  // written before the abort (it may be gone already)
  CHECK(ends_soon(pid));
  must_start(vm, call("square", 5));  // replaced
  CHECK(value<int>(*vm.receive(5s)) == 25);
}

TEST_CASE("process vm: the programs of a task end when its worker is killed from outside") {
  coop::ProcessVM vm(1);
  std::string path = tree_path();
  must_start(vm, call("start_program", path, std::string("double_fork"), std::string("block")));
  int pid = program_pid(path);
  REQUIRE(::kill(vm.worker_pids()[0], SIGKILL) == 0);
  auto m = vm.receive(10s);
  REQUIRE(m);
  CHECK(m->kind == Message::Kind::worker_lost);
  CHECK(m->reason.find("SIGKILL") != std::string::npos);
  CHECK(ends_soon(pid));
}

TEST_CASE("process vm: the programs of a task end when the spawner is killed") {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  std::string path = tree_path();
  std::fflush(nullptr);
  pid_t spawner = ::fork();
  REQUIRE(spawner >= 0);
  if (spawner == 0) {
    ::close(fds[0]);
    try {
      coop::ProcessVM vm(1);
      (void)vm.start(call("start_program", path, std::string("double_fork"), std::string("block")), std::nullopt);
      char one = 1;
      [[maybe_unused]] auto n = ::write(fds[1], &one, 1);
      for (;;) ::pause();
    } catch (...) {
      ::_exit(3);
    }
  }
  ::close(fds[1]);
  char one = 0;
  REQUIRE(::read(fds[0], &one, 1) == 1);
  ::close(fds[0]);
  int pid = program_pid(path);
  REQUIRE(::kill(spawner, SIGKILL) == 0);
  REQUIRE(::waitpid(spawner, nullptr, 0) == spawner);
  CHECK(ends_soon(pid));
}

TEST_CASE("process vm: a worker reaps the children its tasks left unwaited once they return") {
  coop::ProcessVM vm(1);
  must_start(vm, call("leave_zombie"));
  int child = value<int>(*vm.receive(5s));
  REQUIRE(child > 0);
  // Reaped, not a zombie: /proc soon has no trace of it (the worker reaps
  // right after it sent the result).
  std::string proc = "/proc/" + std::to_string(child);
  auto t0 = coop::clock::now();
  while (::access(proc.c_str(), F_OK) == 0 && coop::clock::now() - t0 < 2s) std::this_thread::sleep_for(1ms);
  CHECK(::access(proc.c_str(), F_OK) != 0);
}

namespace {

// sigpipe_state() is whether SIGPIPE is blocked on this thread and whether
// one is pending.
std::pair<bool, bool> sigpipe_state() {
  sigset_t mask, pending;
  ::pthread_sigmask(SIG_SETMASK, nullptr, &mask);
  ::sigpending(&pending);
  return {sigismember(&mask, SIGPIPE) == 1, sigismember(&pending, SIGPIPE) == 1};
}

}  // namespace

TEST_CASE("process vm: a call to a worker that died while idle is lost without a SIGPIPE in the spawner") {
  // A small call goes into the pipe at once; a large one fills it and waits.
  std::size_t size = GENERATE(as<std::size_t>{}, 1, std::size_t{8} << 20);
  CAPTURE(size);
  coop::ProcessVM vm(1);
  auto pids = vm.worker_pids();
  REQUIRE(pids.size() == 1);
  REQUIRE(::kill(pids[0], SIGKILL) == 0);
  // Let the keeper end too: nothing in the worker reads the call pipe now.
  std::this_thread::sleep_for(200ms);
  std::optional<coop::TaskId> id = vm.start(call("reverse", std::string(size, 'x')), std::nullopt);
  // The VM has not looked since: the slot is idle to it, and start() writes
  // the call to the pipe of a worker that is gone. The test program keeps
  // the default SIGPIPE disposition: a SIGPIPE would end it.
  REQUIRE(id);
  std::optional<Message> m = vm.receive(5s);
  REQUIRE(m);
  CHECK(m->task == *id);
  CHECK(m->kind == Message::Kind::worker_lost);
  CHECK(sigpipe_state() == std::pair{false, false});
  struct sigaction now {};
  REQUIRE(::sigaction(SIGPIPE, nullptr, &now) == 0);
  CHECK(now.sa_handler == SIG_DFL);  // the process-wide disposition is untouched
}

// Kernels before Linux 5.11 (and seccomp filters that predate it) have no
// epoll_pwait2: ProcessVM then waits in epoll_wait, with its timeouts rounded
// up to milliseconds. A seccomp filter in a child of the test makes the
// system call fail with ENOSYS there (the workers, started from the child,
// inherit it).
TEST_CASE("process vm: without epoll_pwait2 (old kernels) it waits in epoll_wait") {
  auto r = cos_test::in_child([] {
    sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_epoll_pwait2, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog prog{static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
      return 10;
    }
    timespec zero{};
    epoll_event e{};
    int ep = ::epoll_create1(EPOLL_CLOEXEC);
    if (::epoll_pwait2(ep, &e, 1, &zero, nullptr) != -1 || errno != ENOSYS) return 11;  // the filter works
    ::close(ep);
    coop::ProcessVM vm(2);
    auto t0 = coop::clock::now();
    if (vm.receive(3ms)) return 12;  // nothing runs: a short timeout still ends
    if (coop::clock::now() - t0 < 3ms) return 13;
    auto a = vm.start(call("square", 9), std::nullopt);
    auto b = vm.start(call("slow_square", 3, 20), std::nullopt);
    if (!a || !b) return 14;
    int sum = 0;
    for (int k = 0; k < 2; ++k) {
      auto m = vm.receive(5s);
      if (!m || m->kind != Message::Kind::result || !m->ok) return 15;
      int v = 0;
      coop::detail::from_bytes(m->payload, v);
      sum += v;
    }
    return sum == 81 + 9 ? 0 : 16;
  });
  CHECK(r.exited);
  CHECK(r.code == 0);
}
