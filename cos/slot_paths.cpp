#include "slot_paths.hpp"

#include <cos/errors.hpp>
#include <cos/storage.hpp>

namespace coop::tool {
namespace {

const std::string marker_start("\0cos:", 5);

std::string mirror_marker(std::size_t i) { return marker_start + "mirror:" + std::to_string(i) + std::string(1, '\0'); }

// names_dir(arg, at, dir) says whether `dir` starts at arg[at] and ends
// there or at a '/'.
bool names_dir(const std::string& arg, std::size_t at, const std::string& dir) {
  if (dir.empty() || arg.compare(at, dir.size(), dir) != 0) return false;
  std::size_t end = at + dir.size();
  return end == arg.size() || arg[end] == '/' || dir.back() == '/';
}

}  // namespace

const std::string& scratch_marker() {
  static const std::string m = marker_start + "scratch" + std::string(1, '\0');
  return m;
}

void mark_mirrors(std::vector<std::string>& args, const std::vector<std::string>& dirs) {
  for (std::string& arg : args) {
    std::size_t eq = arg.find('=');
    // After the '=' first, so that a replacement at the start moves nothing still to look at.
    for (std::size_t at : {eq == std::string::npos ? std::string::npos : eq + 1, std::size_t{0}}) {
      if (at == std::string::npos) continue;
      for (std::size_t i = 0; i < dirs.size(); ++i) {
        if (!names_dir(arg, at, dirs[i])) continue;
        arg.replace(at, dirs[i].size(), mirror_marker(i));
        break;
      }
    }
  }
}

void resolve_markers(std::vector<std::string>& args) {
  for (std::string& arg : args) {
    for (std::size_t at; (at = arg.find(marker_start)) != std::string::npos;) {
      std::size_t end = arg.find('\0', at + 1);
      if (end == std::string::npos) throw Error("cos sweep: a corrupt slot marker in a command argument");
      std::string what = arg.substr(at + marker_start.size(), end - at - marker_start.size());
      std::string path;
      if (what == "scratch") {
        path = coop::task_scratch().string();
      } else if (what.rfind("mirror:", 0) == 0) {
        path = coop::to_actual(coop::AbstractPath{std::stoul(what.substr(7)), ""}).string();
      } else {
        throw Error("cos sweep: an unknown slot marker '" + what + "' in a command argument");
      }
      arg.replace(at, end + 1 - at, path);
    }
  }
}

}  // namespace coop::tool
