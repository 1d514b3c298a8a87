#include "output.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include "posix/fd.hpp"
#include "posix/text.hpp"

#include "csv.hpp"
#include "params.hpp"
#include "units.hpp"
#include "usage.hpp"

namespace coop::tool {
namespace {

using json = nlohmann::ordered_json;

using coop::tool::json_text;
std::string dump(const json& j) { return json_text(j); }

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}


// cell() is a result field as CSV text: strings as they are, numbers as
// JSON writes them, null as nothing, objects and arrays as JSON.
std::string cell(const json& j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_null()) return {};
  return dump(j);
}

// json_value() is a parameter value in a JSON row: a number when the JSON
// number reads back as the very text given (1, 2.5), otherwise a string
// (1.10, 1e3, -0), so that a value keeps its exact text.
json json_value(const std::string& v) {
  if (!v.empty() && (v.front() == '-' || std::isdigit(static_cast<unsigned char>(v.front())))) {
    json j = json::parse(v, nullptr, false);
    if (j.is_number() && dump(j) == v) return j;
  }
  return v;
}

std::string errno_text() { return std::strerror(errno); }

void write_all(int fd, const std::string& data, const std::string& what) {
  if (!posix::write_all(fd, data)) throw std::runtime_error("cannot write to " + what + ": " + errno_text());
}

}  // namespace

const std::vector<std::string> fixed_after = {"status", "exit", "signal", "duration", "host", "attempts"};

std::string json_text(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

Format format_of(const std::string& path) {
  if (path.empty() || path == "-" || ends_with(path, ".csv")) return Format::csv;
  if (ends_with(path, ".jsonl") || ends_with(path, ".ndjson")) return Format::jsonl;
  throw UsageError("--out " + path +
                   ": cannot tell the format from the extension (use FILE.csv or FILE.jsonl)");
}

json result_fields(const std::string& last_line, const std::vector<std::string>& names) {
  json out = json::object();
  if (last_line.empty()) return out;
  auto taken = [&](const std::string& key) {
    const auto& reserved = reserved_columns();
    return std::find(names.begin(), names.end(), key) != names.end() ||
           std::find(reserved.begin(), reserved.end(), key) != reserved.end();
  };
  auto put = [&](const std::string& key, json value) {
    std::string k = key;
    while (taken(k) || out.contains(k)) k = "result." + k;
    out[k] = std::move(value);
  };
  if (last_line.front() == '{') {
    json j = json::parse(last_line, nullptr, false);
    if (j.is_object()) {
      for (auto& [k, v] : j.items()) put(k, v);
      return out;
    }
  }
  double v = 0;
  if (is_number(last_line, &v)) {
    json j = json::parse(last_line, nullptr, false);
    put("value", j.is_number() ? j : json(v));
    return out;
  }
  put("output", last_line);
  return out;
}

std::unique_ptr<ResultsWriter> ResultsWriter::open(const std::string& path, Format format,
                                                   std::vector<std::string> names, const Previous* previous,
                                                   std::function<void()> before_write,
                                                   std::function<void(const std::string&)> warn) {
  std::unique_ptr<ResultsWriter> w(new ResultsWriter());
  w->format_ = format;
  w->names_ = std::move(names);
  w->before_write_ = std::move(before_write);
  w->warn_ = std::move(warn);
  if (path.empty() || path == "-") {
    w->fd_ = STDOUT_FILENO;
    w->path_ = "stdout";
  } else {
    w->path_ = path;
    w->own_fd_ = true;
    if (previous && previous->exists) {
      if (!previous->unchanged &&
          ::rename(previous->kept_path.c_str(), path.c_str()) != 0) {
        // The rows worth keeping were written beside it: the file never lacks one of them.
        int e = errno;
        ::unlink(previous->kept_path.c_str());
        throw UsageError("--out " + path + ": cannot replace it (" + std::strerror(e) + ")");
      }
      w->fd_ = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
      w->header_ = previous->header;
    } else {
      w->fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0666);
    }
    if (w->fd_ < 0) throw UsageError("--out " + path + ": cannot open it for writing (" + errno_text() + ")");
  }
  w->to_terminal_ = ::isatty(w->fd_) == 1;
  return w;
}

ResultsWriter::~ResultsWriter() {
  if (own_fd_ && fd_ >= 0) ::close(fd_);
}

void ResultsWriter::write_line(const std::string& line) {
  if (to_terminal_ && before_write_) before_write_();
  write_all(fd_, line, path_);
}

void ResultsWriter::write_header(const json* result) {
  header_ = {"point"};
  header_.insert(header_.end(), names_.begin(), names_.end());
  header_.insert(header_.end(), fixed_after.begin(), fixed_after.end());
  if (result) {
    for (auto it = result->begin(); it != result->end(); ++it) header_.push_back(it.key());
  }
  header_.push_back("error");
  write_line(csv_line(header_));
}

void ResultsWriter::write(const Row& row) {
  if (format_ == Format::jsonl) {
    write_line(json_row(row));
    return;
  }
  if (header_.empty() && !own_fd_) {
    // stdout cannot be rewritten: failed rows wait for the first success.
    if (row.status != "ok") {
      held_.push_back(row);
      return;
    }
    write_header(&row.result);
    std::string lines;
    for (const Row& h : held_) lines += csv_row(h);
    held_.clear();
    if (!lines.empty()) write_line(lines);
  } else if (header_.empty()) {
    // A file gets every row at once: the header has no result columns until
    // the first success, which rewrites it with them.
    if (row.status == "ok") {
      write_header(&row.result);
    } else {
      write_header(nullptr);
      provisional_ = true;
    }
  } else if (provisional_ && row.status == "ok") {
    add_result_columns(row.result);
  }
  write_line(csv_row(row));
}

void ResultsWriter::add_result_columns(const json& result) {
  provisional_ = false;
  if (result.empty()) return;
  std::ifstream in(path_, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!in.eof() && in.fail()) throw std::runtime_error("cannot read back " + path_ + ": " + errno_text());
  header_.pop_back();  // error, the last column
  for (auto it = result.begin(); it != result.end(); ++it) header_.push_back(it.key());
  header_.push_back("error");
  std::string lines = csv_line(header_);
  CsvText csv = parse_csv(text, false);
  for (std::size_t r = 1; r < csv.records.size(); ++r) {
    std::vector<std::string> fields = csv.records[r].fields;
    fields.insert(fields.end() - 1, result.size(), std::string());
    lines += csv_line(fields);
  }
  // Never a file without one of its rows: write beside it, then rename over it.
  std::string tmp = path_ + ".cos-header";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) throw std::runtime_error("cannot write " + tmp + ": " + errno_text());
  try {
    write_all(fd, lines, tmp);
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  ::fsync(fd);
  if (::rename(tmp.c_str(), path_.c_str()) != 0) {
    int e = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    throw std::runtime_error("cannot replace " + path_ + ": " + std::strerror(e));
  }
  ::close(fd_);
  fd_ = ::open(path_.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd_ < 0) throw std::runtime_error("cannot open " + path_ + " again: " + errno_text());
}

void ResultsWriter::finish() {
  if (format_ == Format::csv && (header_.empty() && !held_.empty())) {
    write_header(nullptr);
    std::string lines;
    for (const Row& h : held_) lines += csv_row(h);
    held_.clear();
    write_line(lines);
  }
  if (own_fd_) ::fsync(fd_);
}

std::string ResultsWriter::csv_row(const Row& row) {
  std::vector<std::string> cells;
  cells.reserve(header_.size());
  auto attempts_at = std::find(header_.begin(), header_.end(), "attempts");
  for (auto col = header_.begin(); col != header_.end(); ++col) {
    const std::string& c = *col;
    auto p = std::find(names_.begin(), names_.end(), c);
    if (p != names_.end()) {
      cells.push_back(row.values[static_cast<std::size_t>(p - names_.begin())]);
    } else if (c == "point") {
      cells.push_back(std::to_string(row.point));
    } else if (c == "status") {
      cells.push_back(row.status);
    } else if (c == "exit") {
      cells.push_back(row.exit ? std::to_string(*row.exit) : std::string());
    } else if (c == "signal") {
      cells.push_back(row.signal);
    } else if (c == "duration") {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.6f", row.duration);
      cells.push_back(buf);
    } else if (c == "host") {
      cells.push_back(row.host);
    } else if (c == "attempts") {
      cells.push_back(std::to_string(row.attempts));
    } else if (c == "error" && col + 1 == header_.end()) {
      cells.push_back(row.error);
    } else if (col > attempts_at && row.result.contains(c)) {
      cells.push_back(cell(row.result[c]));
    } else {
      cells.emplace_back();
    }
  }
  for (auto it = row.result.begin(); it != row.result.end(); ++it) {
    if (std::find(attempts_at, header_.end(), it.key()) == header_.end() && warned_.insert(it.key()).second &&
        warn_) {
      warn_("the result field '" + it.key() + "' of point " + std::to_string(row.point) +
            " is not a column of " + path_ +
            " (the CSV columns are those of the first successful point); write --out FILE.jsonl to keep "
            "every field");
    }
  }
  return csv_line(cells);
}

std::string ResultsWriter::json_row(const Row& row) const {
  json j = json::object();
  j["point"] = row.point;
  for (std::size_t i = 0; i < names_.size(); ++i) j[names_[i]] = json_value(row.values[i]);
  j["status"] = row.status;
  j["exit"] = row.exit ? json(*row.exit) : json(nullptr);
  j["signal"] = row.signal.empty() ? json(nullptr) : json(row.signal);
  j["duration"] = std::round(row.duration * 1e6) / 1e6;
  j["host"] = row.host;
  j["attempts"] = row.attempts;
  for (auto it = row.result.begin(); it != row.result.end(); ++it) j[it.key()] = it.value();
  j["error"] = row.error.empty() ? json(nullptr) : json(row.error);
  return dump(j) + "\n";
}

}  // namespace coop::tool
