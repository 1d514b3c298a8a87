// storage.hpp (private): the two halves of cos/storage.hpp. A Scheduler
// installs its mirrors on its thread (SpawnerMirrors), and every remote call
// it sends carries them (Call::mirrors); execute() sets up a TaskStorage
// around each call it runs on a slot: the mirrors copied to this host and
// resolved, and the task's scratch directory, removed when it ends.
#pragma once

#include <string>
#include <vector>

#include <cos/storage.hpp>

namespace coop::detail {

// SpawnerMirrors is one scheduler's mirrors, current on its thread while
// it lives (a scheduler made inside a task puts the outer one back when it
// ends). Not thread-safe: its scheduler's thread only.
class SpawnerMirrors {
 public:
  // Makes `shared` of each mirror absolute; throws coop::Error for a mirror
  // whose `shared` is empty or not a directory.
  explicit SpawnerMirrors(std::vector<Mirror> mirrors);
  ~SpawnerMirrors();
  SpawnerMirrors(const SpawnerMirrors&) = delete;
  SpawnerMirrors& operator=(const SpawnerMirrors&) = delete;

  const std::vector<Mirror>& mirrors() const { return mirrors_; }
  const std::string& blob() const { return blob_; }

 private:
  std::vector<Mirror> mirrors_;
  std::string blob_;  // what Call::mirrors carries: a token of this run and the mirrors
  SpawnerMirrors* outer_;
};

// spawner_mirrors_blob() is what a call sent from this thread carries
// (empty when its scheduler has no mirrors).
const std::string& spawner_mirrors_blob();

// TaskStorage is the storage of one remote task, for the thread that runs
// it (execute(): the call is on a slot). Construct it before the call runs
// (it keeps references to the call's mirrors and function name), prepare()
// inside the call's error handling (a mirror that cannot be copied fails
// the task), end() with how the task ended.
class TaskStorage {
 public:
  explicit TaskStorage(const std::string& mirrors_blob, const std::string& function);
  ~TaskStorage();
  TaskStorage(const TaskStorage&) = delete;
  TaskStorage& operator=(const TaskStorage&) = delete;
  // prepare() decodes the mirrors and copies each to this host unless a
  // complete copy of this run is there; throws coop::Error when they do not
  // decode or a copy fails.
  void prepare();
  // end(ok) removes the scratch directory, or keeps it (and says so on
  // stderr) when the task failed and COS_KEEP_SCRATCH=1.
  void end(bool ok);

  const std::vector<Mirror>& mirrors() const { return mirrors_; }
  // scratch() makes the task's scratch directory on the first call.
  const std::filesystem::path& scratch();

 private:
  const std::string* blob_;
  std::vector<Mirror> mirrors_;  // `local` resolved for this host
  const std::string* function_;
  std::filesystem::path scratch_;
  TaskStorage* outer_;
  bool ended_ = false;
};


}  // namespace coop::detail
