// run_record.hpp: the record beside a results file, OUT.cos-sweep, that
// says which sweep (grid and command) the results belong to, so that
// --resume refuses to complete the results of another sweep.
//
// The record is a sidecar rather than a line in the results file so that
// the results stay plain CSV (a header, then rows: what csv.DictReader,
// pandas and spreadsheets read) and plain JSON lines (every line a row).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "params.hpp"

namespace coop::tool {

// sweep_identity() describes what makes the points and commands of a sweep:
// its parameter names, each --param as written with a digest of its values
// (exact text), --zip, the points file with a digest of its rows, and the
// command. Its "digest" field is a digest of all of that.
nlohmann::ordered_json sweep_identity(const std::vector<std::string>& specs, const std::vector<Parameter>& params,
                                      bool zip, const std::string& points_path, const std::optional<PointsFile>& file,
                                      const std::vector<std::string>& names, const std::vector<std::string>& command);

// record_path() is the record of the results file `out`: OUT.cos-sweep.
std::string record_path(const std::string& out);

// RunRecord is the open record of a results file, for the life of a sweep.
// It holds an exclusive lock (flock) on the record from construction to
// destruction, so that two sweeps never write one results file; the record
// names the pid of the sweep that holds it.
class RunRecord {
 public:
  // RunRecord() opens (creating) and locks the record of `out`. Throws
  // UsageError when it cannot, or at once (naming the other's pid) when
  // another sweep holds the lock.
  explicit RunRecord(const std::string& out);
  ~RunRecord();
  RunRecord(const RunRecord&) = delete;
  RunRecord& operator=(const RunRecord&) = delete;

  // recorded() is the identity of the sweep that last wrote the results, or
  // null when the record is new or unreadable.
  const nlohmann::ordered_json& recorded() const { return recorded_; }
  // check_same_sweep() throws UsageError, saying what differs, when the
  // record names another grid than `ours` (with the same parameter names:
  // other names are left to the reader of the results, which names them).
  // Another command is not refused, since fixing a command and running its
  // failed points again is what --resume is for: check_same_sweep() returns
  // a warning that says how the command changed, or "".
  std::string check_same_sweep(const nlohmann::ordered_json& ours) const;
  // write() replaces the record with `identity`. Throws UsageError when it cannot.
  void write(const nlohmann::ordered_json& identity);

 private:
  void replace(const std::string& text);

  std::string out_;
  std::string path_;
  int fd_ = -1;
  nlohmann::ordered_json recorded_;
};

}  // namespace coop::tool
