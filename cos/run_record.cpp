#include "run_record.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include "posix/fd.hpp"
#include "posix/text.hpp"

#include "usage.hpp"

namespace coop::tool {
namespace {

using json = nlohmann::ordered_json;

// Digest is FNV-1a, 64 bits: enough to tell two grids apart, not a defence
// against anyone forging one.
class Digest {
 public:
  void add(std::string_view text) {
    for (unsigned char c : text) h_ = (h_ ^ c) * 0x100000001b3ULL;
    h_ = (h_ ^ 0xffU) * 0x100000001b3ULL;  // ends each piece: "ab","c" is not "a","bc"
  }
  std::string hex() const {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h_));
    return buf;
  }

 private:
  std::uint64_t h_ = 0xcbf29ce484222325ULL;
};

std::string read_all(int fd) {
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = ::pread(fd, buf, sizeof buf, static_cast<off_t>(text.size()));
    if (n <= 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  return text;
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string quoted_command(const json& command) {
  std::vector<std::string> words;
  for (const auto& w : command) words.push_back(w.is_string() ? w.get<std::string>() : dump(w));
  std::string out = "'";
  out += posix::join_names(words, " ");
  out += '\'';
  return out;
}

std::vector<std::string> strings(const json& j) {
  std::vector<std::string> out;
  if (j.is_array())
    for (const auto& v : j) out.push_back(v.is_string() ? v.get<std::string>() : dump(v));
  return out;
}

}  // namespace

json sweep_identity(const std::vector<std::string>& specs, const std::vector<Parameter>& params, bool zip,
                    const std::string& points_path, const std::optional<PointsFile>& file,
                    const std::vector<std::string>& names, const std::vector<std::string>& command) {
  json id = json::object();
  id["digest"] = "";
  id["names"] = names;
  json ps = json::array();
  for (std::size_t i = 0; i < params.size(); ++i) {
    Digest d;
    for (std::size_t v = 0; v < params[i].size(); ++v) d.add(params[i].value(v));
    ps.push_back(json{{"name", params[i].name}, {"spec", i < specs.size() ? specs[i] : ""}, {"values", d.hex()}});
  }
  id["params"] = ps;
  id["zip"] = zip;
  if (file) {
    Digest d;
    for (const auto& n : file->names) d.add(n);
    for (const auto& row : file->rows)
      for (const auto& v : row) d.add(v);
    id["points"] = json{{"file", points_path}, {"rows", d.hex()}};
  } else {
    id["points"] = nullptr;
  }
  id["command"] = command;
  // How the grid is written (a range or a list, the path of the points
  // file) is shown, not compared: the same points are the same sweep.
  json compared = id;
  for (auto& p : compared["params"]) p.erase("spec");
  if (compared["points"].is_object()) compared["points"].erase("file");
  Digest all;
  all.add(dump(compared));
  id["digest"] = all.hex();
  return id;
}

std::string record_path(const std::string& out) { return out + ".cos-sweep"; }

RunRecord::RunRecord(const std::string& out) : out_(out), path_(record_path(out)) {
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (fd_ < 0) {
    throw UsageError("--out " + out + ": cannot open its record " + path_ + " (" + std::strerror(errno) + ")");
  }
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    if (e != EWOULDBLOCK) {
      throw UsageError("--out " + out + ": cannot lock its record " + path_ + " (" + std::strerror(e) + ")");
    }
    // The sweep that holds the lock writes its pid as soon as it has it.
    std::string pid;
    for (int i = 0; i < 50 && pid.empty(); ++i) {
      json j = json::parse(read_all(fd_), nullptr, false);
      if (j.is_object() && j.contains("pid") && j["pid"].is_number_integer()) {
        std::string p = std::to_string(j["pid"].get<long long>());
        if (::access(("/proc/" + p).c_str(), F_OK) == 0) pid = p;
      }
      if (pid.empty()) ::usleep(10'000);
    }
    throw UsageError("--out " + out + ": another cos sweep is writing it (" +
                     (pid.empty() ? std::string("its pid is not known yet") : "pid " + pid) +
                     "; it holds the lock on " + path_ + "): wait for it to end, or give another --out file");
  }
  json j = json::parse(read_all(fd_), nullptr, false);
  if (j.is_object() && j.contains("digest")) recorded_ = std::move(j);
  // Say at once who holds the lock, keeping what the record says until the
  // sweep has checked it.
  json with_pid = recorded_.is_null() ? json::object() : recorded_;
  with_pid["pid"] = static_cast<long long>(::getpid());
  replace(dump(with_pid) + "\n");
}

RunRecord::~RunRecord() {
  if (fd_ >= 0) ::close(fd_);
}

std::string RunRecord::check_same_sweep(const json& ours) const {
  if (recorded_.is_null() || recorded_.value("digest", json()) == ours["digest"]) return {};
  std::vector<std::string> their_names = strings(recorded_.value("names", json::array()));
  std::vector<std::string> our_names = strings(ours["names"]);
  {
    std::vector<std::string> a = their_names, b = our_names;
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    if (a != b) return {};
  }
  std::vector<std::string> diffs;
  if (their_names != our_names)
    diffs.push_back("its parameters were in the order " + posix::join_names(their_names) + ", now " +
                    posix::join_names(our_names));
  const json their_params = recorded_.value("params", json::array());
  const json& our_params = ours["params"];
  auto specs = [](const json& ps) {
    std::vector<std::string> out;
    for (const auto& p : ps) out.push_back("--param " + p.value("spec", std::string()));
    return out;
  };
  if (their_params.size() != our_params.size()) {
    diffs.push_back("its --param options were " + posix::join_names(specs(their_params)) + ", now " +
                    posix::join_names(specs(our_params)));
  } else {
    for (std::size_t i = 0; i < our_params.size(); ++i) {
      if (their_params[i].value("values", std::string()) != our_params[i].value("values", std::string()) ||
          their_params[i].value("name", std::string()) != our_params[i].value("name", std::string())) {
        diffs.push_back("--param " + their_params[i].value("spec", std::string()) + " is now --param " +
                        our_params[i].value("spec", std::string()));
      }
    }
  }
  if (recorded_.value("zip", false) != ours["zip"].get<bool>())
    diffs.push_back(ours["zip"].get<bool>() ? "it ran without --zip" : "it ran with --zip");
  const json their_points = recorded_.value("points", json());
  const json& our_points = ours["points"];
  if (their_points != our_points) {
    if (their_points.is_null())
      diffs.push_back("it had no --points file");
    else if (our_points.is_null())
      diffs.push_back("it had --points " + their_points.value("file", std::string()));
    else if (their_points.value("rows", std::string()) != our_points.value("rows", std::string()))
      diffs.push_back("the points of --points " + our_points.value("file", std::string()) +
                      " differ from those of its --points " + their_points.value("file", std::string()));
  }
  std::string command_changed;
  if (recorded_.value("command", json::array()) != ours["command"])
    command_changed = "its command was " + quoted_command(recorded_.value("command", json::array())) + ", now " +
                      quoted_command(ours["command"]);
  if (diffs.empty()) {
    if (!command_changed.empty())
      return "resuming " + out_ + " with another command: " + command_changed +
             " (its successful rows are kept as the old command wrote them)";
    diffs.push_back("its record " + path_ + " names another sweep");
  }
  if (!command_changed.empty()) diffs.push_back(command_changed);
  throw UsageError("--resume: " + out_ + " holds the results of another sweep: " +
                   posix::join_names(diffs, "; ") +
                   ". Give another --out file, or run without --resume to start over");
}

void RunRecord::write(const json& identity) {
  json j = identity;
  j["pid"] = static_cast<long long>(::getpid());
  replace(dump(j) + "\n");
}

void RunRecord::replace(const std::string& text) {
  // Written over in place: the lock is on this open file, so it cannot be
  // replaced by a rename.
  if (::pwrite(fd_, text.data(), text.size(), 0) != static_cast<ssize_t>(text.size()) ||
      ::ftruncate(fd_, static_cast<off_t>(text.size())) != 0) {
    throw UsageError("--out " + out_ + ": cannot write its record " + path_ + " (" + std::strerror(errno) + ")");
  }
}

}  // namespace coop::tool
