// backends_storage_test.cpp: files on the slots, on every VM backend
// (DESIGN.md section 7): task_scratch() per remote task, kept on failure
// with COS_KEEP_SCRATCH=1; mirrors copied once per host (each named host
// its own copy, through {host}) before the first task there, abstract paths
// that resolve to the local copy, stale and cut-short copies replaced.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>

#include "backends_objects.hpp"
#include "backends_support.hpp"

using namespace backends;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// A fresh directory for one test, removed at its end.
struct TempDir {
  fs::path path;
  TempDir() {
    char name[] = "/tmp/cos_storage_test_XXXXXX";
    path = ::mkdtemp(name);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// Sets an environment variable for a test's lifetime (workers started
// meanwhile inherit it).
struct Env {
  std::string name;
  Env(const char* n, const std::string& value) : name(n) { ::setenv(n, value.c_str(), 1); }
  ~Env() { ::unsetenv(name.c_str()); }
};

// use_scratch(fail) makes a file in its task's scratch and returns the
// directory's path ("path|empty-at-first|same-on-second-call"), or throws
// with the path in the message.
std::string use_scratch(bool fail) {
  fs::path p = coop::task_scratch();
  bool was_empty = fs::is_empty(p);
  std::ofstream(p / "work.txt") << "scratch";
  bool same = coop::task_scratch() == p;
  if (fail) throw std::runtime_error("failed in " + p.string());
  return p.string() + "|" + (was_empty ? "empty" : "not-empty") + "|" + (same ? "same" : "other");
}
COS_REMOTE(use_scratch);

// read_mirrored(p) is "actual path|contents" of an abstract path on its slot.
std::string read_mirrored(coop::AbstractPath p) {
  fs::path actual = coop::to_actual(p);
  return actual.string() + "|" + slurp(actual);
}
COS_REMOTE(read_mirrored);

// abstract_of(p) turns a slot's actual path back into an abstract one.
coop::AbstractPath abstract_of(coop::AbstractPath p) { return coop::to_abstract(coop::to_actual(p)); }
COS_REMOTE(abstract_of);

std::string split_first(const std::string& s) { return s.substr(0, s.find('|')); }

}  // namespace

TEST_CASE("storage: each remote task gets a fresh scratch directory, removed when it ends") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  TempDir base;
  Env scratch("COS_SCRATCH", base.path.string());
  std::set<std::string> dirs;
  coop::run(
      [&] {
        std::vector<coop::Task<std::string>> ts;
        for (int i = 0; i < 4; ++i) ts.push_back(coop::spawn(remote, use_scratch, false));
        for (auto& t : ts) {
          std::string r = t.join();
          CHECK_THAT(r, Contains("|empty|same"));
          dirs.insert(split_first(r));
        }
      },
      coop::Options{.vm = cos_test::make_vm(backend, 2)});
  CHECK(dirs.size() == 4);
  // On the slot's COS_SCRATCH: the spawner's, where slots inherit its
  // environment; an MPI rank has the environment mpirun gave it.
  fs::path expected = cos_test::inherits_environment(backend) ? base.path : fs::temp_directory_path();
  for (const auto& d : dirs) {
    CHECK(fs::path(d).parent_path() == expected);
    CHECK_FALSE(fs::exists(d));
  }
}

TEST_CASE("storage: a failed task's scratch is removed unless COS_KEEP_SCRATCH=1") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  // COS_KEEP_SCRATCH is read on the slot: set here, it reaches the slots
  // that inherit the spawner's environment (mpirun -x sets it on ranks).
  bool keep = cos_test::inherits_environment(backend) ? GENERATE(false, true) : false;
  INFO("backend " << backend << (keep ? ", kept" : ", removed"));
  TempDir base;
  Env scratch("COS_SCRATCH", base.path.string());
  std::optional<Env> keep_env;
  if (keep) keep_env.emplace("COS_KEEP_SCRATCH", "1");
  std::string dir;
  std::string output;
  coop::run(
      [&] {
        auto t = coop::spawn(remote, use_scratch, true);
        try {
          t.join();
        } catch (const coop::RemoteError& e) {
          std::string what = e.what();
          dir = what.substr(what.find("failed in ") + 10);
          dir = dir.substr(0, dir.find(' '));  // what() goes on with the host
        }
        output = t.output();
      },
      coop::Options{.vm = cos_test::make_vm(backend, 1)});
  REQUIRE_FALSE(dir.empty());
  CHECK(fs::exists(fs::path(dir) / "work.txt") == keep);
  if (keep && backend == "process") CHECK_THAT(output, Contains("kept the scratch directory " + dir));
}

TEST_CASE("storage: without a VM, task_scratch is the spawner's own directory") {
  fs::path a, b;
  coop::run([&] {
    a = coop::spawn([] { return coop::task_scratch(); }).join();
    b = coop::spawn(remote, use_scratch, false).join();  // runs locally: no VM
  });
  CHECK(fs::is_directory(a));
  CHECK(split_first(b.string()) == a.string());
}

TEST_CASE("storage: a mirror is copied once per host and abstract paths resolve to that host's copy") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  TempDir dir;
  fs::path shared = dir.path / "shared";
  fs::create_directories(shared / "sub");
  std::ofstream(shared / "sub" / "x.txt") << "model 1";
  fs::path copies = dir.path / "copies";
  coop::Options options{.vm = cos_test::make_vm(backend, {{"a", 1}, {"b", 2}})};
  options.mirrors = {coop::Mirror{shared, copies / "{host}"}};

  auto round = [&](std::map<std::string, int>& per_host, std::vector<std::string>& contents) {
    coop::AbstractPath p = coop::to_abstract(shared / "sub" / "x.txt");
    CHECK(p == coop::AbstractPath{0, "sub/x.txt"});
    CHECK(coop::to_actual(p) == shared / "sub" / "x.txt");  // the spawner reads the original
    std::vector<coop::Task<std::string>> ts;
    for (int i = 0; i < 6; ++i) {
      ts.push_back(coop::spawn(coop::Spawn{.remote = true, .host = coop::HostId(i % 2 ? "a" : "b")}, read_mirrored, p));
    }
    for (int i = 0; i < 6; ++i) {
      std::string r = ts[static_cast<std::size_t>(i)].join();
      std::string host = i % 2 ? "a" : "b";
      CHECK(split_first(r) == (copies / host / "sub" / "x.txt").string());
      contents.push_back(r.substr(r.find('|') + 1));
      ++per_host[host];
    }
    // Back from a slot's actual path to the same abstract one.
    CHECK(coop::spawn(remote, abstract_of, p).join() == p);
  };
  std::map<std::string, int> per_host;
  std::vector<std::string> contents;
  coop::run(
      [&] {
        round(per_host, contents);
        // Copied once: an edit of a host's copy stays for its later tasks.
        std::ofstream(copies / "a" / "sub" / "x.txt") << "edited on a";
        contents.clear();
        round(per_host, contents);
        CHECK(std::count(contents.begin(), contents.end(), "edited on a") == 3);
        CHECK(std::count(contents.begin(), contents.end(), "model 1") == 3);
      },
      options);
  CHECK(per_host == std::map<std::string, int>{{"a", 6}, {"b", 6}});
  // A new run copies afresh (the old VM lets its slots go first: MpiVM
  // ranks serve one VM at a time).
  options.vm.reset();
  options.vm = cos_test::make_vm(backend, {{"a", 1}, {"b", 1}});
  coop::run(
      [&] {
        contents.clear();
        round(per_host, contents);
        CHECK(std::count(contents.begin(), contents.end(), "model 1") == 6);
      },
      options);
}

TEST_CASE("storage: a copy cut short or left by another run is replaced before the first task") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  TempDir dir;
  fs::path shared = dir.path / "shared";
  fs::create_directories(shared);
  std::ofstream(shared / "x.txt") << "whole";
  fs::path local = dir.path / "copy";
  // What a killed copy leaves: a partial directory, and a copy without this run's marker.
  fs::create_directories(local.string() + ".cos-partial");
  fs::create_directories(local);
  std::ofstream(local.string() + ".cos-mirror") << "another run";
  coop::Options options{.vm = cos_test::make_vm(backend, 2)};
  options.mirrors = {coop::Mirror{shared, local}};
  coop::run([&] { CHECK(coop::spawn(remote, read_mirrored, coop::to_abstract(shared / "x.txt")).join() ==
                        (local / "x.txt").string() + "|whole"); },
            options);
  CHECK_FALSE(fs::exists(local.string() + ".cos-partial"));
}

TEST_CASE("storage: bad mirrors and paths are clear errors") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  TempDir dir;
  fs::path shared = dir.path / "shared";
  fs::create_directories(shared);
  SECTION("a shared directory that does not exist") {
    coop::Options options{.vm = cos_test::make_vm(backend, 1)};
    options.mirrors = {coop::Mirror{dir.path / "missing", dir.path / "copy"}};
    CHECK_THROWS_WITH(coop::Scheduler(options), Contains("is not a directory"));
  }
  SECTION("paths outside every mirror, and mirrors that do not exist") {
    coop::Options options{.vm = cos_test::make_vm(backend, 1)};
    options.mirrors = {coop::Mirror{shared, dir.path / "copy"}};
    coop::run(
        [&] {
          CHECK_THROWS_WITH(coop::to_abstract(dir.path / "elsewhere.txt"), Contains("is in none of"));
          CHECK_THROWS_WITH(coop::to_actual(coop::AbstractPath{3, "x"}), Contains("there is no mirror 3"));
          CHECK_THROWS_WITH(coop::spawn(remote, read_mirrored, coop::AbstractPath{3, "x"}).join(),
                            Contains("there is no mirror 3"));
        },
        options);
  }
  SECTION("a copy that fails fails the task that needed it") {
    coop::Options options{.vm = cos_test::make_vm(backend, 1)};
    options.mirrors = {coop::Mirror{shared, dir.path / "copy"}};
    coop::run(
        [&] {
          fs::remove_all(shared);  // gone before the first task copies it
          CHECK_THROWS_WITH(coop::spawn(remote, read_mirrored, coop::AbstractPath{0, "x"}).join(),
                            Contains("the copy failed"));
        },
        options);
  }
}

TEST_CASE("storage: a remote object resolves mirrored paths on its host like a remote task") {
  auto backend = GENERATE(from_range(cos_test::backends()));
  INFO("backend " << backend);
  TempDir dir;
  fs::path shared = dir.path / "shared";
  fs::create_directories(shared);
  std::ofstream(shared / "m.txt") << "for objects";
  coop::Options options{.vm = cos_test::make_vm(backend, 1)};
  options.mirrors = {coop::Mirror{shared, dir.path / "copies" / "{host}"}};
  coop::run(
      [&] {
        coop::AbstractPath p = coop::to_abstract(shared / "m.txt");
        {
          auto counter = coop::make_remote<Counter>(remote, Config{0, "mirrors", false});
          CHECK(counter.sync(&Counter::read, p) == "for objects");
        }  // closed: its slot is free again
        CHECK(coop::spawn(remote, read_mirrored_in, p).join() == "for objects");
      },
      options);
}
