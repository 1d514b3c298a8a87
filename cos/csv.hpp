// csv.hpp: reading and writing CSV (RFC 4180: quotes, doubled quotes, CRLF).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace coop::tool {

// CsvRecord is one record of a CSV text: its fields, the line it starts on
// (1-based) and where its bytes are in the text, newline included.
struct CsvRecord {
  std::vector<std::string> fields;
  std::size_t line = 0;
  std::size_t begin = 0;
  std::size_t end = 0;
};

// CsvText is what parse_csv() found: the complete records, and where the
// complete part of the text ends. Bytes after `complete` are a record cut
// short (no newline after it yet, or a quote left open).
struct CsvText {
  std::vector<CsvRecord> records;
  std::size_t complete = 0;
};

// parse_csv() splits `text` into records. A final record without a newline
// counts as complete only when `final_line_complete` (a file someone wrote
// by hand); a results file being appended to passes false. Blank lines are
// skipped.
CsvText parse_csv(std::string_view text, bool final_line_complete);

// read_text_file() is the whole content of the file (or pipe) `path`, which
// is `what` ("the points file"). Throws UsageError, its message starting
// with `where` and saying what is wrong (missing, a directory, unreadable);
// when `exists` is given, a missing file sets *exists to false and gives "".
std::string read_text_file(const std::string& path, const std::string& where, const std::string& what,
                           bool* exists = nullptr);

// csv_field() quotes a field when it holds a comma, a quote or a line break.
std::string csv_field(std::string_view field);

// csv_line() joins fields into one line, newline included.
std::string csv_line(const std::vector<std::string>& fields);

}  // namespace coop::tool
