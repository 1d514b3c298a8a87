// storage.cpp: task scratch directories and mirrored paths (cos/storage.hpp,
// DESIGN.md section 7): the spawner's half (its mirrors, sent with each
// call) and the slot's half (copy once per host, resolve, scratch).
#include "remote/storage.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <string_view>

#include <cos/errors.hpp>
#include <cos/spawner.hpp>

#include "backends/host_name.hpp"
#include "posix/fd.hpp"

namespace fs = std::filesystem;

namespace coop {
namespace detail {
namespace {

thread_local SpawnerMirrors* current_spawner = nullptr;
thread_local TaskStorage* current_task = nullptr;

// slot_host() is the host this slot serves: the running remote task's
// (coop::this_host(), which every backend's channel gives), else COS_HOST
// (set by ProcessVM for its workers, or by the user), else the machine's
// name.
std::string slot_host() {
  if (auto h = coop::this_host()) return h->name();
  if (const char* h = std::getenv("COS_HOST"); h && *h) return h;
  return this_host_name();
}

fs::path scratch_base() {
  for (const char* var : {"COS_SCRATCH", "TMPDIR"}) {
    if (const char* d = std::getenv(var); d && *d) return d;
  }
  return "/tmp";
}

// make_dir(base, prefix) makes a fresh directory base/prefixXXXXXX.
fs::path make_dir(const fs::path& base, const std::string& prefix) {
  std::error_code ec;
  fs::create_directories(base, ec);
  std::string name = (base / (prefix + "XXXXXX")).string();
  if (!::mkdtemp(name.data())) {
    throw Error(posix::errno_text(("coop::task_scratch: cannot make a directory in '" + base.string() + "'").c_str()));
  }
  return name;
}

void put(std::string& out, std::string_view s) {
  std::uint64_t n = s.size();
  out.append(reinterpret_cast<const char*>(&n), sizeof n);
  out.append(s);
}

std::string take(std::string_view& in) {
  std::uint64_t n = 0;
  if (in.size() < sizeof n) throw Error("coop: a call's mirrors do not decode");
  std::memcpy(&n, in.data(), sizeof n);
  in.remove_prefix(sizeof n);
  if (in.size() < n) throw Error("coop: a call's mirrors do not decode");
  std::string s(in.substr(0, n));
  in.remove_prefix(n);
  return s;
}

// A token names one run of one spawner: a copy made by another run is stale.
std::string make_token() {
  static std::atomic<unsigned> counter{0};
  auto now = std::chrono::system_clock::now().time_since_epoch();
  return this_host_name() + ":" + std::to_string(::getpid()) + ":" +
         std::to_string(std::chrono::duration_cast<std::chrono::nanoseconds>(now).count()) + ":" +
         std::to_string(counter++);
}

std::string expand_host(std::string s, const std::string& host) {
  for (std::size_t at; (at = s.find("{host}")) != std::string::npos;) s.replace(at, 6, host);
  return s;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// ensure_copy(m, token) makes `m.local` a complete copy of `m.shared` made
// by this run. One thread of this process at a time, and one process of
// this host at a time (an flock beside the copy). The copy goes to a
// partial directory that is renamed into place; the marker beside it,
// written last (by a rename too), says which run made it, so a copy cut
// short anywhere is made again.
void ensure_copy(const Mirror& m, const std::string& token) {
  static std::mutex mutex;
  static std::set<std::string> done;
  std::string key = token + '\0' + m.local.string();
  std::lock_guard guard(mutex);
  if (done.count(key)) return;
  std::string what = "coop: mirror '" + m.shared.string() + "' -> '" + m.local.string() + "'";
  std::error_code ec;
  fs::create_directories(m.local.parent_path(), ec);
  std::string base = m.local.string();
  int lock = ::open((base + ".cos-lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock < 0) throw Error(posix::errno_text((what + ": cannot open its lock").c_str()));
  struct Unlock {
    int& fd;
    ~Unlock() { posix::close_fd(fd); }
  } unlock{lock};
  while (::flock(lock, LOCK_EX) != 0) {
    if (errno != EINTR) throw Error(posix::errno_text((what + ": flock").c_str()));
  }
  fs::path marker = base + ".cos-mirror";
  if (read_file(marker) != token || !fs::is_directory(m.local)) {
    fs::remove(marker, ec);
    fs::path partial = base + ".cos-partial";
    fs::remove_all(partial, ec);
    fs::copy(m.shared, partial, fs::copy_options::recursive | fs::copy_options::copy_symlinks, ec);
    if (ec) throw Error(what + ": the copy failed: " + ec.message());
    fs::remove_all(m.local, ec);
    fs::rename(partial, m.local, ec);
    if (ec) throw Error(what + ": cannot rename the copy into place: " + ec.message());
    fs::path tmp = base + ".cos-mirror.tmp";
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      out << token;
      if (!out.flush()) throw Error(what + ": cannot write its marker");
    }
    fs::rename(tmp, marker, ec);
    if (ec) throw Error(what + ": cannot write its marker: " + ec.message());
  }
  done.insert(key);
}

// The spawner's own scratch directory, for tasks that are not remote ones;
// removed when the process exits normally.
struct SpawnerScratch {
  std::mutex mutex;
  fs::path path;
  ~SpawnerScratch() {
    std::error_code ec;
    if (!path.empty()) fs::remove_all(path, ec);
  }
};
SpawnerScratch spawner_scratch;

// relative_inside(p, root) is p relative to root, or nullopt when p is not inside it.
std::optional<std::string> relative_inside(const fs::path& p, const fs::path& root) {
  fs::path rel = p.lexically_relative(root);
  if (rel.empty()) return std::nullopt;
  std::string s = rel.generic_string();
  if (s == ".") return std::string();
  if (s == ".." || s.rfind("../", 0) == 0) return std::nullopt;
  return s;
}

}  // namespace

SpawnerMirrors::SpawnerMirrors(std::vector<Mirror> mirrors) : mirrors_(std::move(mirrors)), outer_(current_spawner) {
  for (Mirror& m : mirrors_) {
    if (m.shared.empty() || m.local.empty()) throw Error("coop::Options::mirrors: a mirror needs both `shared` and `local`");
    m.shared = fs::absolute(m.shared).lexically_normal();
    if (!fs::is_directory(m.shared)) {
      throw Error("coop::Options::mirrors: '" + m.shared.string() + "' is not a directory");
    }
  }
  if (!mirrors_.empty()) {
    put(blob_, make_token());
    for (const Mirror& m : mirrors_) {
      put(blob_, m.shared.string());
      put(blob_, m.local.string());
    }
  }
  current_spawner = this;
}

SpawnerMirrors::~SpawnerMirrors() { current_spawner = outer_; }

const std::string& spawner_mirrors_blob() {
  static const std::string none;
  return current_spawner ? current_spawner->blob() : none;
}


TaskStorage::TaskStorage(const std::string& blob, const std::string& function)
    : blob_(&blob), function_(&function), outer_(current_task) {
  current_task = this;
}

TaskStorage::~TaskStorage() {
  if (!ended_) end(false);
  current_task = outer_;
}

void TaskStorage::prepare() {
  if (blob_->empty()) return;
  std::string_view in(*blob_);
  std::string token = take(in);
  std::string host = slot_host();
  while (!in.empty()) {
    Mirror m;
    m.shared = take(in);
    m.local = expand_host(take(in), host);
    if (m.local.is_relative()) m.local = scratch_base() / m.local;
    mirrors_.push_back(std::move(m));
  }
  for (const Mirror& m : mirrors_) ensure_copy(m, token);
}

const fs::path& TaskStorage::scratch() {
  if (scratch_.empty()) scratch_ = make_dir(scratch_base(), "cos-task-" + std::to_string(::getpid()) + "-");
  return scratch_;
}

void TaskStorage::end(bool ok) {
  ended_ = true;
  if (scratch_.empty()) return;
  const char* keep = std::getenv("COS_KEEP_SCRATCH");
  if (!ok && keep && std::strcmp(keep, "1") == 0) {
    std::fprintf(stderr, "cos: kept the scratch directory %s of the failed task %s (COS_KEEP_SCRATCH=1)\n",
                 scratch_.c_str(), function_->c_str());
    std::fflush(stderr);
  } else {
    std::error_code ec;
    fs::remove_all(scratch_, ec);
  }
  scratch_.clear();
}

}  // namespace detail

fs::path task_scratch() {
  if (detail::current_task) return detail::current_task->scratch();
  auto& s = detail::spawner_scratch;
  std::lock_guard lock(s.mutex);
  if (s.path.empty()) s.path = detail::make_dir(detail::scratch_base(), "cos-spawner-" + std::to_string(::getpid()) + "-");
  return s.path;
}

AbstractPath to_abstract(const fs::path& p) {
  fs::path abs = fs::absolute(p).lexically_normal();
  bool in_task = detail::current_task && !detail::current_task->mirrors().empty();
  const std::vector<Mirror>* mirrors = in_task ? &detail::current_task->mirrors()
                                       : detail::current_spawner ? &detail::current_spawner->mirrors()
                                                                 : nullptr;
  if (mirrors) {
    for (std::size_t i = 0; i < mirrors->size(); ++i) {
      const Mirror& m = (*mirrors)[i];
      if (auto rel = detail::relative_inside(abs, in_task ? m.local : m.shared)) return AbstractPath{i, *rel};
    }
  }
  throw Error("coop::to_abstract: '" + p.string() + "' is in none of this scheduler's mirrors (Options::mirrors)");
}

fs::path to_actual(const AbstractPath& a) {
  const Mirror* m = nullptr;
  if (detail::current_task && !detail::current_task->mirrors().empty()) {
    auto& ms = detail::current_task->mirrors();
    if (a.mirror < ms.size()) m = &ms[a.mirror];
    if (m) return a.suffix.empty() ? m->local : m->local / a.suffix;
  } else if (detail::current_spawner) {
    auto& ms = detail::current_spawner->mirrors();
    if (a.mirror < ms.size()) m = &ms[a.mirror];
    if (m) return a.suffix.empty() ? m->shared : m->shared / a.suffix;
  }
  throw Error("coop::to_actual: there is no mirror " + std::to_string(a.mirror) +
              " here (the spawner's Options::mirrors has fewer)");
}

}  // namespace coop
