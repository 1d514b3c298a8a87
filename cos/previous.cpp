// previous.cpp: what --resume reads back from an earlier results file (CSV
// or JSON lines), a megabyte at a time, keeping the rows of finished points.
#include "output.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <stdexcept>

#include "posix/fd.hpp"
#include "posix/text.hpp"

#include "csv.hpp"
#include "params.hpp"
#include "usage.hpp"

namespace coop::tool {
namespace {

using json = nlohmann::ordered_json;
std::string dump(const json& j) { return json_text(j); }

bool same_names(std::vector<std::string> a, std::vector<std::string> b) {
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  return a == b;
}

[[noreturn]] void other_parameters(const std::string& path, const std::vector<std::string>& theirs,
                                   const std::vector<std::string>& ours) {
  throw UsageError("--resume: " + path + " holds the results of a sweep over other parameters (" +
                   (theirs.empty() ? std::string("none") : posix::join_names(theirs)) + "), not of this one (" +
                   posix::join_names(ours) + "); give another --out file, or run without --resume to start over");
}


// mark_done() takes a successful row of point `point` with `values`: true
// when it is kept (the first row of a point of this sweep), false for a
// second row of a point.
bool mark_done(Previous& prev, const std::string& path, std::size_t line, const std::string& point,
               const std::vector<std::string>& values, const std::vector<std::string>& names,
               const PointOf& points) {
  std::size_t p = 0;
  auto [end, ec] = std::from_chars(point.data(), point.data() + point.size(), p);
  bool number = ec == std::errc() && end == point.data() + point.size();
  if (!number || p >= points.total) {
    throw UsageError("--resume: line " + std::to_string(line) + " of " + path + " is point " + point +
                     ", which this sweep of " + std::to_string(points.total) +
                     " points does not have: the file holds the results of another sweep; give another "
                     "--out file, or run without --resume to start over");
  }
  std::vector<std::string> ours = points.values(p);
  if (ours != values) {
    std::string theirs_text, ours_text;
    for (std::size_t i = 0; i < names.size(); ++i) {
      theirs_text += (i ? ", " : "") + names[i] + "=" + values[i];
      ours_text += (i ? ", " : "") + names[i] + "=" + ours[i];
    }
    throw UsageError("--resume: line " + std::to_string(line) + " of " + path + " is point " + point + " with " +
                     theirs_text + ", but point " + point + " of this sweep is " + ours_text +
                     ": the file holds the results of another sweep; give another --out file, or run without "
                     "--resume to start over");
  }
  if (prev.done.size() < points.total) prev.done.resize(points.total);
  if (prev.done[p]) return false;
  prev.done[p] = true;
  ++prev.done_count;
  return true;
}

// KeptFile is where --resume writes the rows it keeps, as it reads them:
// OUT.cos-resume, renamed over OUT when the sweep starts writing. It is
// removed unless release()d.
class KeptFile {
 public:
  explicit KeptFile(const std::string& out) : path_(out + ".cos-resume") {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd_ < 0) throw UsageError("--out " + out + ": cannot write " + path_ + " (" + std::strerror(errno) + ")");
  }
  ~KeptFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!released_) ::unlink(path_.c_str());
  }
  void append(std::string_view bytes) {
    buffer_.append(bytes);
    bytes_ += bytes.size();
    if (buffer_.size() >= (1U << 20)) flush();
  }
  void clear() {
    buffer_.clear();
    bytes_ = 0;
    if (::ftruncate(fd_, 0) != 0) fail();
  }
  std::size_t bytes() const { return bytes_; }
  // release() writes the rest to disk and keeps the file; its path.
  std::string release() {
    flush();
    ::fsync(fd_);
    released_ = true;
    return path_;
  }

 private:
  void flush() {
    if (!posix::write_all(fd_, buffer_)) fail();
    buffer_.clear();
  }
  [[noreturn]] void fail() { throw UsageError("--resume: cannot write " + path_ + " (" + std::strerror(errno) + ")"); }

  std::string path_;
  int fd_ = -1;
  std::string buffer_;
  std::size_t bytes_ = 0;
  bool released_ = false;
};

// Chunks reads a file a megabyte at a time into a buffer its reader consumes.
class Chunks {
 public:
  Chunks(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~Chunks() { ::close(fd_); }
  // more() appends the next chunk to buffer; false at the end of the file.
  bool more(std::string& buffer) {
    char chunk[1 << 16];
    for (int i = 0; i < 16; ++i) {
      ssize_t n = ::read(fd_, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw UsageError("--resume: cannot read " + path_ + " (" + std::strerror(errno) + ")");
      if (n == 0) return i > 0;
      buffer.append(chunk, static_cast<std::size_t>(n));
      total_ += static_cast<std::size_t>(n);
    }
    return true;
  }
  std::size_t total() const { return total_; }

 private:
  int fd_;
  std::string path_;
  std::size_t total_ = 0;
};

void read_previous_csv(Previous& prev, Chunks& in, KeptFile& kept, const std::string& path,
                       const std::vector<std::string>& names, const PointOf& points) {
  std::string buffer;
  std::size_t lines_before = 0;  // lines consumed from the buffer so far
  bool have_header = false;
  std::vector<std::string> header;
  std::vector<std::size_t> column_of;
  std::size_t status_column = 0;
  bool more = true;
  while (more) {
    more = in.more(buffer);
    CsvText csv = parse_csv(buffer, false);
    for (CsvRecord& rec : csv.records) {
      rec.line += lines_before;
      std::string_view bytes(buffer.data() + rec.begin, rec.end - rec.begin);
      if (!have_header) {
        have_header = true;
        header = rec.fields;
        auto status_at = std::find(header.begin(), header.end(), "status");
        bool ok = !header.empty() && header.front() == "point" && status_at != header.end() &&
                  header.back() == "error" &&
                  static_cast<std::size_t>(header.end() - status_at) >= fixed_after.size() + 1 &&
                  std::equal(fixed_after.begin(), fixed_after.end(), status_at);
        if (!ok) {
          throw UsageError("--resume: " + path + " is not a results file of cos sweep (its first line is '" +
                           std::string(bytes.substr(0, std::min(bytes.find('\n'), std::size_t{200}))) + "')");
        }
        std::vector<std::string> theirs(header.begin() + 1, status_at);
        if (!same_names(theirs, names)) other_parameters(path, theirs, names);
        for (const auto& n : names)
          column_of.push_back(
              static_cast<std::size_t>(std::find(header.begin(), header.end(), n) - header.begin()));
        status_column = static_cast<std::size_t>(status_at - header.begin());
        kept.append(bytes);
        continue;
      }
      if (rec.fields.size() != header.size()) {
        throw UsageError("--resume: line " + std::to_string(rec.line) + " of " + path + " has " +
                         std::to_string(rec.fields.size()) + " fields, its header " +
                         std::to_string(header.size()));
      }
      if (rec.fields[status_column] != "ok") {
        ++prev.failed_rows;
        continue;
      }
      std::vector<std::string> values;
      for (std::size_t c : column_of) values.push_back(rec.fields[c]);
      if (mark_done(prev, path, rec.line, rec.fields.front(), values, names, points)) kept.append(bytes);
    }
    lines_before += static_cast<std::size_t>(std::count(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(csv.complete), '\n'));
    buffer.erase(0, csv.complete);
  }
  prev.partial_bytes = buffer.size();
  if (prev.done_count) {
    prev.header = header;
  } else {
    // Without a successful row, the header (and its result columns) is
    // written afresh from the first success of this run.
    kept.clear();
  }
}

void read_previous_jsonl(Previous& prev, Chunks& in, KeptFile& kept, const std::string& path,
                         const std::vector<std::string>& names, const PointOf& points) {
  std::string buffer;
  std::size_t line_no = 0;
  bool more = true;
  while (more) {
    more = in.more(buffer);
    std::size_t pos = 0;
    for (std::size_t nl; (nl = buffer.find('\n', pos)) != std::string::npos; pos = nl + 1) {
      std::string_view line(buffer.data() + pos, nl - pos);
      std::string_view bytes(buffer.data() + pos, nl + 1 - pos);
      ++line_no;
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      json row = json::parse(line, nullptr, false);
      if (!row.is_object() || !row.contains("point") || !row.contains("status") ||
          row.begin().key() != "point") {
        throw UsageError("--resume: line " + std::to_string(line_no) + " of " + path +
                         " is not a row of cos sweep results");
      }
      std::vector<std::string> theirs;
      for (auto it = std::next(row.begin()); it != row.end() && it.key() != "status"; ++it)
        theirs.push_back(it.key());
      if (!same_names(theirs, names)) other_parameters(path, theirs, names);
      const json& status = row["status"];
      if (!status.is_string() || status.get<std::string>() != "ok") {
        ++prev.failed_rows;
        continue;
      }
      std::vector<std::string> values;
      for (const auto& n : names) {
        const json& v = row[n];
        values.push_back(v.is_string() ? v.get<std::string>() : dump(v));
      }
      const json& point = row["point"];
      if (mark_done(prev, path, line_no, point.is_string() ? point.get<std::string>() : dump(point), values,
                    names, points))
        kept.append(bytes);
    }
    buffer.erase(0, pos);
  }
  prev.partial_bytes = buffer.size();
}

}  // namespace

Previous read_previous(const std::string& path, Format format, const std::vector<std::string>& names,
                       const PointOf& points) {
  Previous prev;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return prev;
    throw UsageError("--resume: cannot read " + path + " (" + std::strerror(errno) + ")");
  }
  Chunks in(fd, path);
  prev.exists = true;
  prev.done.resize(points.total);
  KeptFile kept(path);
  if (format == Format::csv)
    read_previous_csv(prev, in, kept, path, names, points);
  else
    read_previous_jsonl(prev, in, kept, path, names, points);
  prev.unchanged = kept.bytes() == in.total();
  if (!prev.unchanged) prev.kept_path = kept.release();
  return prev;
}

}  // namespace coop::tool
