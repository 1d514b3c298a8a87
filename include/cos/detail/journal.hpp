// journal.hpp: the file behind DispatchOptions::journal, where a dispatch
// appends each finished job's result so that a rerun after a kill does not
// compute it again (DESIGN.md section 7).
//
// The file is a header line ("cos dispatch journal 1\n") and records, one
// write() each: "CJR1", the body's length (u32), the body (the job's index,
// the digest of its serialized call, its run time in ns, its host, its
// serialized value) and an FNV-1a checksum of the body. A record cut short
// by a kill (too short, or a bad checksum, at the end of the file) is
// ignored and cut off before the next append; anything else that does not
// read is a coop::Error. The journal survives the process being killed,
// not the machine losing power: records are not fsync'ed, which would cost
// a disk flush per job.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>

#include <cos/export.hpp>
#include <cos/vm.hpp>

namespace coop::detail {

// One finished job, as the journal keeps it.
struct JournalRecord {
  std::size_t index = 0;     // the job's position in the job list
  std::uint64_t digest = 0;  // call_digest() of its call
  std::int64_t run_ns = 0;   // how long it ran
  std::string host{};        // where it ran (empty: locally)
  std::string value{};       // its value, serialized with cereal
};

// call_digest() is a 64-bit FNV-1a digest of a call's function name and
// arguments: what tells one job list from another.
COS_API std::uint64_t call_digest(const Call& call);

// Journal is one open journal file, held under an exclusive lock (flock) so
// that two dispatches never write one journal. Not thread-safe: the
// dispatcher's task uses it.
class COS_API Journal {
 public:
  // Opens the journal at `path`, creating it (and its header) when missing,
  // and reads its whole records (the last one of each index wins). Blocks
  // the thread for the read. Throws coop::Error when the file cannot be
  // opened, is locked by another dispatch, is not a journal, or is corrupt
  // before its last record.
  explicit Journal(const std::filesystem::path& path);
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // records() are the results read at open, by job index.
  std::map<std::size_t, JournalRecord>& records() { return records_; }
  // append() writes one record with one write() (the thread blocks for it);
  // throws coop::Error when the write fails.
  void append(const JournalRecord& record);
  const std::filesystem::path& path() const { return path_; }

 private:
  void read_existing();
  std::filesystem::path path_;
  int fd_ = -1;
  std::map<std::size_t, JournalRecord> records_;
};

}  // namespace coop::detail
