#include "csv.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "usage.hpp"

namespace coop::tool {

std::string read_text_file(const std::string& path, const std::string& where, const std::string& what,
                           bool* exists) {
  if (exists) *exists = true;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT && exists) {
      *exists = false;
      return {};
    }
    throw UsageError(where + ": cannot read " + what + " (" + std::strerror(errno) + ")");
  }
  struct stat st {};
  // A pipe is fine (--points <(generate-points)); a directory is not.
  if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
    ::close(fd);
    throw UsageError(where + ": cannot read " + what + ": " + path + " is a directory, not a file");
  }
  std::string text;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      throw UsageError(where + ": cannot read " + what + " (" + std::strerror(e) + ")");
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return text;
}

CsvText parse_csv(std::string_view text, bool final_line_complete) {
  CsvText out;
  std::size_t i = 0;
  std::size_t line = 1;
  const std::size_t n = text.size();
  while (i < n) {
    CsvRecord rec;
    rec.begin = i;
    rec.line = line;
    std::string field;
    bool in_quotes = false;
    bool ended = false;  // saw the record's newline
    bool quoted_field = false;
    while (i < n) {
      char c = text[i];
      if (in_quotes) {
        if (c == '"') {
          if (i + 1 < n && text[i + 1] == '"') {
            field += '"';
            i += 2;
            continue;
          }
          in_quotes = false;
          ++i;
          continue;
        }
        if (c == '\n') ++line;
        field += c;
        ++i;
        continue;
      }
      if (c == '"' && field.empty() && !quoted_field) {
        in_quotes = true;
        quoted_field = true;
        ++i;
        continue;
      }
      if (c == ',') {
        rec.fields.push_back(std::move(field));
        field.clear();
        quoted_field = false;
        ++i;
        continue;
      }
      if (c == '\r' && i + 1 < n && text[i + 1] == '\n') {
        ++i;
        continue;
      }
      if (c == '\n') {
        ++line;
        ++i;
        ended = true;
        break;
      }
      field += c;
      ++i;
    }
    if (in_quotes) break;  // a quote left open: the rest is cut short
    if (!ended && !final_line_complete) break;
    rec.fields.push_back(std::move(field));
    rec.end = i;
    out.complete = i;
    bool blank = rec.fields.size() == 1 && rec.fields[0].empty() && !quoted_field;
    if (!blank) out.records.push_back(std::move(rec));
  }
  return out;
}

std::string csv_field(std::string_view field) {
  if (field.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(field);
  std::string out = "\"";
  for (char c : field) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

std::string csv_line(const std::vector<std::string>& fields) {
  std::string out;
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (i) out += ',';
    out += csv_field(fields[i]);
  }
  out += '\n';
  return out;
}

}  // namespace coop::tool
