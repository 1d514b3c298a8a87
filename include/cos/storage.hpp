// storage.hpp: files on the slots (DESIGN.md section 7): a scratch
// directory per remote task, and mirrored directories that the spawner's
// tasks name by abstract paths which resolve to each host's local copy.
//
// Example:
//   coop::Options o{.vm = vm};
//   o.mirrors = {coop::Mirror{"/home/me/models", "models-{host}"}};
//   // in the spawner:
//   coop::AbstractPath p = coop::to_abstract("/home/me/models/amp.cir");
//   coop::spawn(coop::Spawn{.remote = true}, simulate, p);
//   // in simulate(AbstractPath p), on a slot:
//   std::filesystem::path netlist = coop::to_actual(p);   // the host's copy
//   std::filesystem::path work = coop::task_scratch();    // removed when it returns
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>

#include <cos/export.hpp>

namespace coop {

// task_scratch() is a fresh, empty directory for the running remote task on
// its slot's local disk, under $COS_SCRATCH, else $TMPDIR, else /tmp (as
// the slot sees them). It is made on the first call in a task (later calls
// in the same task, and its own local microthreads, get the same one) and
// removed with everything in it when the task ends; when the task failed
// and COS_KEEP_SCRATCH=1 it is kept and its path printed on the task's
// stderr. Outside a remote task (in the spawner, or without a VM) it is the
// spawner's own scratch directory, shared by its local tasks and removed
// when the process exits. A worker that dies mid-task leaves its scratch
// behind. Blocks the thread for a mkdir; never yields. Throws coop::Error
// when the directory cannot be made.
COS_API std::filesystem::path task_scratch();

// Mirror is a directory of the spawner (`shared`) that is copied, once per
// host and before the first task that runs there, to `local` on that host.
// `{host}` in `local` becomes the slot's host name, so that named hosts on
// one machine (ProcessVM({{"a", 2}, {"b", 2}})) each get their own copy; a
// relative `local` is under the slot's $COS_SCRATCH, else $TMPDIR, else
// /tmp. Give a scheduler its mirrors in Options::mirrors. A copy is made
// beside `local` and renamed into place when complete, under a lock, so two
// slots of one host never copy at once and a copy cut short is never taken
// for complete. Each run of the spawner copies afresh (a copy remembers the
// run that made it); the copies are left on the hosts for the next run to
// replace.
struct Mirror {
  std::filesystem::path shared{};
  std::filesystem::path local{};
};

// AbstractPath is a path inside a mirror, as it travels to a slot: the
// mirror's index in Options::mirrors and the rest of the path. It is
// serializable, so it can be an argument or a result of a remote task.
struct AbstractPath {
  std::size_t mirror = 0;
  std::string suffix{};  // relative to the mirror's root, in generic form ("a/b.txt")
  template <class Archive> void serialize(Archive& ar) { ar(mirror, suffix); }
  friend bool operator==(const AbstractPath&, const AbstractPath&) = default;
};

// to_abstract(p) is the abstract form of a path inside one of the mirrors:
// in the spawner, a path under a mirror's `shared` (absolute, or relative
// to the working directory); in a remote task, under the host's copy.
// Throws coop::Error for a path in no mirror. Never yields.
COS_API AbstractPath to_abstract(const std::filesystem::path& p);

// to_actual(a) is where an abstract path is here: in a remote task, inside
// this host's copy of the mirror; in the spawner (and its local tasks), in
// the `shared` directory itself. Throws coop::Error for a mirror index that
// this scheduler does not have. Never yields.
COS_API std::filesystem::path to_actual(const AbstractPath& a);

}  // namespace coop
