// output.hpp: the results of a sweep, one row per point, as CSV or JSON
// lines; and what --resume reads back from them.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace coop::tool {

enum class Format { csv, jsonl };

// format_of() tells the format of --out FILE by its extension (.csv, or
// .jsonl / .ndjson); "" and "-" are stdout as CSV. Throws UsageError for any
// other extension.
Format format_of(const std::string& path);

// fixed_after are the columns a results header has, in this order, after
// the parameters (and before the result's).
extern const std::vector<std::string> fixed_after;

// json_text() is JSON text of j on one line (invalid UTF-8 replaced).
std::string json_text(const nlohmann::ordered_json& j);

// Row is one finished point.
struct Row {
  std::size_t point = 0;
  std::vector<std::string> values;  // the parameters, in the order of the sweep's names
  std::string status;               // ok, failed, crashed, timeout, lost, error
  std::optional<int> exit{};        // the exit status, when the command exited
  std::string signal{};             // the signal that ended it (SIGSEGV), when one did
  double duration = 0;              // seconds, of the last attempt
  std::string host{};
  int attempts = 0;
  nlohmann::ordered_json result = nlohmann::ordered_json::object();  // the command's result fields
  std::string error{};                                               // why it failed; empty when ok
};

// result_fields() turns the last line of a command's stdout into result
// fields: a JSON object gives its fields, a number a `value`, other text an
// `output`; nothing gives none. A field whose name is taken by a parameter
// or a column of the tool is renamed result.NAME.
nlohmann::ordered_json result_fields(const std::string& last_line, const std::vector<std::string>& names);

// Previous is what --resume found in an existing results file.
struct Previous {
  bool exists = false;
  // done: by point number, the points of this sweep that finished
  // successfully (a row whose point number and exact values are that point's).
  std::vector<bool> done;
  std::size_t done_count = 0;
  std::string kept_path;            // unless unchanged: a file of the header and kept rows, byte for byte
  std::vector<std::string> header;  // CSV: the columns of the kept header (empty: write a new one)
  std::size_t failed_rows = 0;      // rows of failed points, dropped to be run again
  std::size_t partial_bytes = 0;    // a last row cut short by a kill, dropped
  bool unchanged = false;           // the file is all kept
};

// PointOf gives the values (exact text, in the order of the sweep's names) of
// point `point` of the sweep, which has `total` points.
struct PointOf {
  std::size_t total = 0;
  std::function<std::vector<std::string>(std::size_t point)> values;
};

// read_previous() reads the results file `path` for --resume. A missing or
// empty file is no previous run. A successful row counts as done only when
// its point number is a point of this sweep and its values are that point's,
// text for text; a second row of a point is dropped. Throws UsageError when
// the file is not a results file of cos sweep, holds other parameters than
// `names`, or has a successful row that is no point of this sweep.
Previous read_previous(const std::string& path, Format format, const std::vector<std::string>& names,
                       const PointOf& points);

// ResultsWriter writes rows as points finish, each row with a single
// write() of a whole line, so that a sweep killed at any moment leaves only
// whole rows. Not thread-safe (the sweep uses it from its scheduler's thread).
//
// CSV needs its header before the first row, and the result columns are
// only known once a command has succeeded. In a file, every row is written
// when its point finishes: rows of failed points before the first success
// go under a header without result columns, and the first success rewrites
// the file with its result columns (written beside it, then renamed over
// it). On stdout, rows of failed points wait for the first success. The
// result columns are those of the first successful row. A later result field that is
// not in the header is left out, with a warning (JSON lines keep every field).
class ResultsWriter {
 public:
  // open() opens the output: stdout for "" or "-", otherwise `path`,
  // truncated, or (with `previous`) rewritten to the rows it keeps and
  // appended to. `before_write` runs before each write to a terminal (the
  // progress line clears itself); `warn` prints a warning. Throws UsageError
  // when the file cannot be opened.
  static std::unique_ptr<ResultsWriter> open(const std::string& path, Format format,
                                             std::vector<std::string> names, const Previous* previous,
                                             std::function<void()> before_write,
                                             std::function<void(const std::string&)> warn);
  ~ResultsWriter();

  // write() writes one row (or holds it until the CSV header is known).
  // Throws std::runtime_error when the output cannot be written.
  void write(const Row& row);
  // finish() writes what is held and syncs a file to disk.
  void finish();

 private:
  ResultsWriter() = default;
  void write_line(const std::string& line);
  void write_header(const nlohmann::ordered_json* result);
  void add_result_columns(const nlohmann::ordered_json& result);
  std::string csv_row(const Row& row);
  std::string json_row(const Row& row) const;

  int fd_ = -1;
  bool own_fd_ = false;
  bool to_terminal_ = false;
  std::string path_;
  Format format_ = Format::csv;
  std::vector<std::string> names_;
  std::vector<std::string> header_;  // CSV columns, once written
  bool provisional_ = false;         // header_ is a file's header without result columns, before a success
  std::vector<Row> held_;            // stdout: failed rows before the first success
  std::set<std::string> warned_;
  std::function<void()> before_write_;
  std::function<void(const std::string&)> warn_;
};

}  // namespace coop::tool
