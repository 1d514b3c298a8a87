// journal_test.cpp: DispatchOptions::journal, a dispatch that survives being
// killed (DESIGN.md section 7): results recorded as they arrive, a rerun
// that replays them and runs only the rest, another job list refused, a
// record cut short ignored; and a program SIGKILLed mid-dispatch and rerun.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include <cos/cos.hpp>

#include "journal_jobs.hpp"
#include "test_support.hpp"

COS_REMOTE(journal_test::square);
COS_REMOTE(journal_test::flaky);

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using journal_test::runs;
using journal_test::square;
using journal_test::with_journal;

namespace {

// A fresh directory for one test, removed at its end.
struct TempDir {
  fs::path path;
  TempDir() {
    char name[] = "/tmp/cos_journal_test_XXXXXX";
    path = ::mkdtemp(name);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const char* name) const { return (path / name).string(); }
};

std::vector<coop::Job<long>> square_jobs(int n, const std::string& side, int ms = 1, int offset = 0) {
  std::vector<coop::Job<long>> jobs;
  for (int i = 0; i < n; ++i) jobs.push_back(coop::job(square, i + offset, side, ms));
  return jobs;
}

// What one dispatch's collector saw: index -> (value, replayed), and how
// often each index arrived.
struct Seen {
  std::map<std::size_t, std::pair<long, bool>> results;
  std::map<std::size_t, int> count;
};

// run_with_journal() dispatches `jobs` with the journal on `backend`; the
// collector records what it sees and stops the dispatch after `stop_after`
// results (0: never).
Seen run_with_journal(const std::string& backend, std::vector<coop::Job<long>>& jobs, const std::string& journal,
                      std::size_t stop_after = 0) {
  Seen seen;
  coop::run(
      [&] {
        coop::dispatch(
            jobs,
            [&](coop::Stream<long>& results) {
              for (auto& r : results) {
                seen.results[r.index] = {r.value.get(), r.replayed};
                ++seen.count[r.index];
                if (stop_after && seen.results.size() >= stop_after) results.stop();
              }
            },
            with_journal(journal));
      },
      coop::Options{.vm = backend == "none" ? nullptr : cos_test::make_vm(backend, 2)});
  return seen;
}

}  // namespace

TEST_CASE("dispatch journal: a rerun replays the recorded results first and runs only the rest") {
  std::string backend = GENERATE(as<std::string>{}, "none", "thread", "process");
  TempDir dir;
  std::string journal = dir / "journal", side = dir / "side";
  auto jobs = square_jobs(12, side);
  Seen first = run_with_journal(backend, jobs, journal, 5);
  REQUIRE(first.results.size() >= 5);
  REQUIRE(first.results.size() < 12);
  auto runs_before = runs(side);

  Seen second = run_with_journal(backend, jobs, journal);
  REQUIRE(second.results.size() == 12);
  for (auto& [index, n] : second.count) CHECK(n == 1);  // every result exactly once
  for (auto& [index, vr] : second.results) {
    CHECK(vr.first == static_cast<long>(index * index));
    // Replayed exactly the jobs the first run's collector saw.
    CHECK(vr.second == (first.results.count(index) == 1));
  }
  auto runs_after = runs(side);
  for (auto& [index, vr] : first.results) CHECK(runs_after[static_cast<int>(index)] == runs_before[static_cast<int>(index)]);
  for (int i = 0; i < 12; ++i) CHECK(runs_after[i] >= 1);

  // A third run replays everything and runs nothing.
  Seen third = run_with_journal(backend, jobs, journal);
  CHECK(third.results.size() == 12);
  for (auto& [index, vr] : third.results) CHECK(vr.second);
  CHECK(runs(side) == runs_after);
}

TEST_CASE("dispatch journal: the returned values include the replayed results in job order") {
  TempDir dir;
  std::string journal = dir / "journal", side = dir / "side";
  auto jobs = square_jobs(6, side);
  run_with_journal("thread", jobs, journal, 2);
  std::vector<long> values;
  coop::run([&] { values = coop::dispatch(jobs, with_journal(journal)); },
            coop::Options{.vm = std::make_shared<coop::ThreadVM>(2)});
  CHECK(values == std::vector<long>{0, 1, 4, 9, 16, 25});
}

TEST_CASE("dispatch journal: a failed job is not recorded and runs again, a generator's jobs too") {
  std::string backend = GENERATE(as<std::string>{}, "none", "thread", "process");
  TempDir dir;
  std::string journal = dir / "journal", side = dir / "side", fail = dir / "fail";
  std::ofstream(fail) << "fail";
  // A generator of 6 jobs: replaying reads it ahead to the last recorded
  // index and holds job 1, which failed, to run it first.
  auto run_once = [&] {
    int next = 0;
    std::map<std::size_t, std::pair<bool, bool>> seen;  // index -> (ok, replayed)
    coop::run(
        [&] {
          coop::dispatch(
              [&]() -> std::optional<coop::Job<long>> {
                if (next == 6) return std::nullopt;
                int i = next++;
                return coop::job(journal_test::flaky, i, side, fail);
              },
              [&](coop::Stream<long>& results) {
                for (auto& r : results) seen[r.index] = {r.value.ok(), r.replayed};
              },
              with_journal(journal));
        },
        coop::Options{.vm = backend == "none" ? nullptr : cos_test::make_vm(backend, 2)});
    return seen;
  };
  auto first = run_once();
  REQUIRE(first.size() == 6);
  CHECK_FALSE(first[1].first);
  fs::remove(fail);
  auto second = run_once();
  REQUIRE(second.size() == 6);
  for (auto& [index, okr] : second) {
    CHECK(okr.first);
    CHECK(okr.second == (index != 1));  // all but the failed one replayed
  }
  auto n = runs(side);
  CHECK(n[1] == 2);
  for (int i : {0, 2, 3, 4, 5}) CHECK(n[i] == 1);
}

TEST_CASE("dispatch journal: the journal of another job list is a clear error and runs nothing") {
  TempDir dir;
  std::string journal = dir / "journal", side = dir / "side";
  auto jobs = square_jobs(6, side);
  run_with_journal("thread", jobs, journal);
  auto runs_before = runs(side);
  SECTION("other arguments") {
    auto other = square_jobs(6, side, 1, 100);
    CHECK_THROWS_WITH(run_with_journal("thread", other, journal), Contains("another job list"));
  }
  SECTION("a shorter job list") {
    auto shorter = square_jobs(3, side);
    CHECK_THROWS_WITH(run_with_journal("thread", shorter, journal), Contains("another job list"));
  }
  CHECK(runs(side) == runs_before);
}

TEST_CASE("dispatch journal: a record cut short by a kill is ignored and its job runs again") {
  TempDir dir;
  std::string journal = dir / "journal", side = dir / "side";
  auto jobs = square_jobs(4, side);
  run_with_journal("thread", jobs, journal);
  auto whole = fs::file_size(journal);
  fs::resize_file(journal, whole - 5);  // the last record loses its tail
  Seen again = run_with_journal("thread", jobs, journal);
  REQUIRE(again.results.size() == 4);
  int ran_again = 0;
  for (auto& [index, vr] : again.results) {
    CHECK(vr.first == static_cast<long>(index * index));
    if (!vr.second) ++ran_again;
  }
  CHECK(ran_again == 1);
  // The journal is whole again: everything replays.
  Seen third = run_with_journal("thread", jobs, journal);
  for (auto& [index, vr] : third.results) CHECK(vr.second);
}

TEST_CASE("dispatch journal: bad journals and jobs are clear errors") {
  TempDir dir;
  std::string side = dir / "side";
  auto jobs = square_jobs(2, side);
  SECTION("a file that is not a journal") {
    std::ofstream(dir / "other") << "x,y\n1,2\n";
    CHECK_THROWS_WITH(run_with_journal("none", jobs, dir / "other"), Contains("is not a cos dispatch journal"));
  }
  SECTION("a journal in a directory that does not exist") {
    CHECK_THROWS_WITH(run_with_journal("none", jobs, dir / "missing/journal"), Contains("journal"));
  }
  SECTION("a journal in use by another dispatch") {
    coop::detail::Journal held(dir / "journal");
    CHECK_THROWS_WITH(run_with_journal("none", jobs, dir / "journal"), Contains("in use by another dispatch"));
  }
  SECTION("garbage in the middle of a journal") {
    run_with_journal("none", jobs, dir / "journal");
    fs::remove(side);
    {
      std::fstream f(dir / "journal", std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(24);  // inside the first record's header
      f.write("zzzz", 4);
    }
    CHECK_THROWS_WITH(run_with_journal("none", jobs, dir / "journal"), Contains("is corrupt at byte"));
  }
  CHECK(runs(side).empty());
}

namespace {
long unregistered_square(int i) { return i * i; }
}  // namespace

TEST_CASE("dispatch journal: jobs of an unregistered function are refused") {
  TempDir dir;
  std::vector<coop::Job<long>> jobs{coop::job(unregistered_square, 3)};
  CHECK_THROWS_WITH(coop::run([&] { coop::dispatch(jobs, with_journal(dir / "journal")); }),
                    Contains("registered with COS_REMOTE"));
}

namespace {

// Starts journal_child with these arguments; returns its pid.
pid_t start_child(std::vector<std::string> args) {
  std::vector<char*> argv;
  std::string exe = COS_JOURNAL_CHILD;
  argv.push_back(exe.data());
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::execv(exe.c_str(), argv.data());
    ::_exit(127);
  }
  return pid;
}

int wait_child(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

std::vector<std::string> lines(const std::string& path) {
  std::vector<std::string> out;
  std::ifstream in(path);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

}  // namespace

TEST_CASE("dispatch journal: a program killed with SIGKILL mid-dispatch and rerun sees every result once") {
  std::string backend = GENERATE(as<std::string>{}, "thread", "process");
  TempDir dir;
  std::string journal = dir / "journal", side = dir / "side";
  const int jobs = 16;
  pid_t pid = start_child({backend, journal, side, dir / "out1", std::to_string(jobs), "40"});
  // Kill it once its collector has seen a few results.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (lines(dir / "out1").size() < 4 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ::kill(pid, SIGKILL);
  int status = wait_child(pid);
  REQUIRE(WIFSIGNALED(status));
  auto seen_before = lines(dir / "out1");
  REQUIRE(seen_before.size() >= 4);
  REQUIRE(seen_before.size() < static_cast<std::size_t>(jobs));
  std::set<int> recorded;  // what the journal held when the program died
  {
    coop::detail::Journal j(journal);
    for (auto& [index, rec] : j.records()) recorded.insert(static_cast<int>(index));
  }
  // Whatever the collector saw was journaled first.
  for (auto& l : seen_before) CHECK(recorded.count(std::stoi(l)) == 1);

  pid = start_child({backend, journal, side, dir / "out2", std::to_string(jobs), "40"});
  status = wait_child(pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  std::map<int, int> count;
  for (auto& l : lines(dir / "out2")) {
    int index = 0, replayed = 0;
    long value = 0;
    REQUIRE(std::sscanf(l.c_str(), "%d %d %ld", &index, &replayed, &value) == 3);
    ++count[index];
    CHECK(value == static_cast<long>(index) * index);
    CHECK(replayed == static_cast<int>(recorded.count(index)));
  }
  REQUIRE(count.size() == static_cast<std::size_t>(jobs));
  for (auto& [index, n] : count) CHECK(n == 1);
  auto runs_after = runs(side);
  for (int i : recorded) CHECK(runs_after[i] == 1);  // none that had finished ran twice
  for (int i = 0; i < jobs; ++i) CHECK(runs_after[i] >= 1);
}
