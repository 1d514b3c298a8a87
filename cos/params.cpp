#include "params.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <set>
#include <tuple>

#include "posix/text.hpp"
#include "slot_paths.hpp"

#include "csv.hpp"
#include "units.hpp"
#include "usage.hpp"

namespace coop::tool {
namespace {

constexpr std::size_t max_points = 10'000'000;

bool is_name_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool is_name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// name_at() is the length of the name that starts at text[i], or 0.
std::size_t name_at(std::string_view text, std::size_t i) {
  if (i >= text.size() || !is_name_start(text[i])) return 0;
  std::size_t j = i + 1;
  while (j < text.size() && is_name_char(text[j])) ++j;
  return j - i;
}

bool parse_integer(std::string_view s, long long& v) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty()) return false;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && end == s.data() + s.size();
}

// decimals() is the number of digits after the point, or -1 for exponent notation.
int decimals(std::string_view s) {
  if (s.find_first_of("eE") != std::string_view::npos) return -1;
  std::size_t dot = s.find('.');
  return dot == std::string_view::npos ? 0 : static_cast<int>(s.size() - dot - 1);
}

std::string format_decimal(double v, int places) {
  char buf[128];
  if (places < 0) {
    std::snprintf(buf, sizeof buf, "%.12g", v);
    return canonical_value(buf);
  }
  std::snprintf(buf, sizeof buf, "%.*f", places, v);
  std::string s = buf;
  if (s.find('.') != std::string::npos) {
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  if (s == "-0") s = "0";
  return s;
}

}  // namespace

const std::vector<std::string>& reserved_columns() {
  static const std::vector<std::string> names = {"point",    "status", "exit",     "signal",
                                                 "duration", "host",   "attempts", "error"};
  return names;
}

void check_name(std::string_view name, std::string_view where) {
  if (name.empty()) throw UsageError(std::string(where) + ": a parameter needs a name");
  if (name_at(name, 0) != name.size()) {
    throw UsageError(std::string(where) + ": '" + std::string(name) +
                     "' cannot name a parameter (use letters, digits and _, not starting with a digit)");
  }
  const auto& reserved = reserved_columns();
  if (std::find(reserved.begin(), reserved.end(), name) != reserved.end()) {
    throw UsageError(std::string(where) + ": '" + std::string(name) +
                     "' is a column of the results; give the parameter another name");
  }
}

std::string Range::value(std::size_t i) const {
  // Every value lies between START and STOP, but i * STEP alone may not fit.
  if (integer) return std::to_string(static_cast<long long>(start + static_cast<__int128>(i) * step));
  return format_decimal(x + static_cast<double>(i) * d, places);
}

Range make_range(std::string_view name, std::string_view start, std::string_view stop, std::string_view step) {
  std::string where = "--param " + std::string(name) + "=" + std::string(start) + ":" + std::string(stop) +
                      ":" + std::string(step);
  Range r;
  long long a = 0, b = 0, s = 0;
  if (parse_integer(start, a) && parse_integer(stop, b) && parse_integer(step, s)) {
    if (s == 0) throw UsageError(where + ": malformed range: the step must not be zero");
    // STOP - START does not fit in 64 bits near the limits (-9e18:9e18).
    __int128 span = static_cast<__int128>(b) - a;
    if (span != 0 && (span > 0) != (s > 0)) {
      throw UsageError(where + ": malformed range: the step goes away from STOP, so the range is empty");
    }
    __int128 count = span / s + 1;
    if (count > max_points) throw UsageError(where + ": the range has more than ten million values");
    r.integer = true;
    r.start = a;
    r.step = s;
    r.count = static_cast<std::size_t>(count);
    return r;  // count <= ten million
  }
  double x = 0, y = 0, d = 0;
  for (auto [part, label, value] :
       {std::tuple{start, "START", &x}, std::tuple{stop, "STOP", &y}, std::tuple{step, "STEP", &d}}) {
    if (!is_number(part, value)) {
      throw UsageError(where + ": malformed range: " + label + " '" + std::string(part) +
                       "' is not a number (expected START:STOP:STEP)");
    }
  }
  if (d == 0) throw UsageError(where + ": malformed range: the step must not be zero");
  if (y != x && ((y - x) > 0) != (d > 0)) {
    throw UsageError(where + ": malformed range: the step goes away from STOP, so the range is empty");
  }
  double steps = (y - x) / d;
  // STOP counts when it falls on a step up to rounding: 0:1:0.1 has 11 values.
  double n = std::floor(steps + 1e-9 * std::max(1.0, std::fabs(steps)));
  if (n + 1 > static_cast<double>(max_points)) {
    throw UsageError(where + ": the range has more than ten million values");
  }
  int places = std::max({decimals(start), decimals(stop), decimals(step)});
  if (decimals(start) < 0 || decimals(stop) < 0 || decimals(step) < 0) places = -1;
  r.integer = false;
  r.x = x;
  r.d = d;
  r.places = places;
  r.count = static_cast<std::size_t>(n) + 1;
  return r;
}

Parameter parse_param(std::string_view spec) {
  std::string where = "--param " + std::string(spec);
  std::size_t eq = spec.find('=');
  if (eq == std::string_view::npos) {
    throw UsageError(where + ": expected NAME=V1,V2,... or NAME=START:STOP:STEP");
  }
  Parameter p;
  p.name = std::string(spec.substr(0, eq));
  check_name(p.name, where);
  std::string_view values = spec.substr(eq + 1);
  if (values.empty()) throw UsageError(where + ": the parameter " + p.name + " has no values");
  if (values.find(':') != std::string_view::npos && values.find(',') == std::string_view::npos) {
    std::vector<std::string_view> parts;
    std::size_t pos = 0;
    for (;;) {
      std::size_t colon = values.find(':', pos);
      parts.push_back(values.substr(pos, colon == std::string_view::npos ? colon : colon - pos));
      if (colon == std::string_view::npos) break;
      pos = colon + 1;
    }
    if (parts.size() != 3) {
      throw UsageError(where + ": malformed range '" + std::string(values) +
                       "': expected START:STOP:STEP (three numbers)");
    }
    p.range = make_range(p.name, parts[0], parts[1], parts[2]);
    return p;
  }
  std::size_t pos = 0;
  for (;;) {
    std::size_t comma = values.find(',', pos);
    std::string_view v = values.substr(pos, comma == std::string_view::npos ? comma : comma - pos);
    if (v.empty()) throw UsageError(where + ": the list of values of " + p.name + " has an empty value");
    p.values.emplace_back(v);
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  return p;
}

PointsFile read_points_file(const std::string& path) {
  std::string where = "--points " + path;
  std::string text = read_text_file(path, where, "the points file");
  // A spreadsheet may start its CSV with a UTF-8 byte-order mark.
  if (text.compare(0, 3, "\xEF\xBB\xBF") == 0) text.erase(0, 3);
  CsvText csv = parse_csv(text, true);
  if (csv.complete != text.size()) {
    throw UsageError(where + ": a quoted field is not closed (after line " +
                     std::to_string(csv.records.empty() ? 1 : csv.records.back().line) + ")");
  }
  if (csv.records.empty()) {
    throw UsageError(where + ": the points file is empty (its first line must name the parameters)");
  }
  PointsFile p;
  p.names = csv.records.front().fields;
  std::set<std::string> seen;
  for (auto& n : p.names) {
    // A spreadsheet may pad the header.
    while (!n.empty() && std::isspace(static_cast<unsigned char>(n.back()))) n.pop_back();
    while (!n.empty() && std::isspace(static_cast<unsigned char>(n.front()))) n.erase(0, 1);
    check_name(n, where + " (header)");
    if (!seen.insert(n).second) throw UsageError(where + ": the header names parameter " + n + " twice");
  }
  for (std::size_t r = 1; r < csv.records.size(); ++r) {
    const CsvRecord& rec = csv.records[r];
    if (rec.fields.size() != p.names.size()) {
      throw UsageError(where + ": line " + std::to_string(rec.line) + " has " +
                       std::to_string(rec.fields.size()) + " values, the header names " +
                       std::to_string(p.names.size()) + " parameters");
    }
    p.rows.push_back(rec.fields);
  }
  if (p.rows.empty()) throw UsageError(where + ": the points file has a header but no points");
  return p;
}

Points make_points(const std::vector<Parameter>& params, bool zip, const std::optional<PointsFile>& file) {
  if (params.empty() && !file) {
    throw UsageError("no parameters: give at least one --param NAME=VALUES or a --points FILE.csv");
  }
  std::vector<std::string> names;
  std::set<std::string> seen;
  if (file) {
    names = file->names;
    seen.insert(file->names.begin(), file->names.end());
  }
  for (const auto& p : params) {
    if (!seen.insert(p.name).second) {
      throw UsageError("--param " + p.name + ": the parameter " + p.name + " is given twice" +
                       (file && std::find(file->names.begin(), file->names.end(), p.name) != file->names.end()
                            ? " (the points file names it too)"
                            : ""));
    }
    names.push_back(p.name);
  }
  if (zip && !params.empty()) {
    std::size_t n = params.front().size();
    for (const auto& p : params) {
      if (p.size() != n) {
        std::string counts;
        for (const auto& q : params)
          counts += (counts.empty() ? "" : ", ") + q.name + " has " + std::to_string(q.size());
        throw UsageError("--zip pairs the parameters element-wise, so they need as many values each (" +
                         counts + ")");
      }
    }
  } else {
    double total = 1;
    for (const auto& p : params) total *= static_cast<double>(p.size());
    if (total > static_cast<double>(max_points))
      throw UsageError("the grid has more than ten million points");
  }
  Points points(std::move(names), file, params, zip);
  if (file && static_cast<double>(points.size()) > static_cast<double>(max_points))
    throw UsageError("the sweep has more than ten million points");
  return points;
}

Points::Points(std::vector<std::string> names, std::optional<PointsFile> file, std::vector<Parameter> params,
               bool zip)
    : names_(std::move(names)), file_(std::move(file)), params_(std::move(params)), zip_(zip) {
  part_ = 1;
  if (zip_ && !params_.empty()) {
    part_ = params_.front().size();
  } else {
    for (const auto& p : params_) part_ *= p.size();
  }
  std::size_t rows = file_ ? file_->rows.size() : 1;
  // Both are at most ten million (checked by make_points), so this does not overflow.
  total_ = rows * part_;
}

std::vector<std::string> Points::row(std::size_t point) const {
  std::vector<std::string> out;
  out.reserve(names_.size());
  std::size_t j = point % part_;
  if (file_) out = file_->rows[point / part_];
  std::size_t first = out.size();
  out.resize(names_.size());
  if (zip_) {
    for (std::size_t k = 0; k < params_.size(); ++k) out[first + k] = params_[k].value(j);
  } else {
    // The first parameter varies slowest, the last fastest.
    for (std::size_t k = params_.size(); k-- > 0;) {
      out[first + k] = params_[k].value(j % params_[k].size());
      j /= params_[k].size();
    }
  }
  return out;
}

CommandTemplate::CommandTemplate(std::vector<std::string> args, const std::vector<std::string>& names)
    : raw_(std::move(args)), names_(names) {
  if (raw_.empty() || raw_.front().empty()) {
    throw UsageError(
        "no COMMAND: put the command to run after --, as in: cos sweep --param x=1,2 -- ./sim --x {x}");
  }
  for (std::size_t a = 0; a < raw_.size(); ++a) {
    const std::string& arg = raw_[a];
    std::vector<Piece> pieces;
    auto literal = [&](std::string_view s) {
      if (pieces.empty() || pieces.back().param >= 0) pieces.push_back(Piece{});
      pieces.back().text += s;
    };
    std::size_t i = 0;
    while (i < arg.size()) {
      if (arg[i] != '{') {
        literal(std::string_view(arg).substr(i, 1));
        ++i;
        continue;
      }
      // {{name}} is a literal {name}.
      if (i + 1 < arg.size() && arg[i + 1] == '{') {
        std::size_t len = name_at(arg, i + 2);
        if (len && arg.compare(i + 2 + len, 2, "}}") == 0) {
          literal("{" + arg.substr(i + 2, len) + "}");
          i += len + 4;
          continue;
        }
      }
      std::size_t len = name_at(arg, i + 1);
      if (len && i + 1 + len < arg.size() && arg[i + 1 + len] == '}') {
        std::string name = arg.substr(i + 1, len);
        auto it = std::find(names.begin(), names.end(), name);
        if (it == names.end() && name == "scratch") {  // the point's scratch directory, filled in on the slot
          literal(scratch_marker());
          i += len + 2;
          continue;
        }
        if (it == names.end()) {
          throw UsageError("unknown placeholder {" + name + "} in COMMAND argument " + std::to_string(a + 1) +
                           " '" + arg + "': the parameters are " + posix::join_names(names) + " (write {{" + name +
                           "}} for a literal {" + name + "}; {scratch} is the point's scratch directory)");
        }
        pieces.push_back(Piece{{}, static_cast<int>(it - names.begin())});
        i += len + 2;
        continue;
      }
      literal("{");
      ++i;
    }
    pieces_.push_back(std::move(pieces));
  }
}

std::vector<std::string> CommandTemplate::substitute(const std::vector<std::string>& values) const {
  std::vector<std::string> out;
  out.reserve(pieces_.size());
  for (const auto& pieces : pieces_) {
    std::string arg;
    for (const auto& p : pieces) arg += p.param >= 0 ? values[static_cast<std::size_t>(p.param)] : p.text;
    out.push_back(std::move(arg));
  }
  return out;
}

bool CommandTemplate::program_is_fixed() const {
  return std::none_of(pieces_.front().begin(), pieces_.front().end(),
                      [](const Piece& p) { return p.param >= 0; });
}

std::vector<std::string> CommandTemplate::unused() const {
  std::vector<bool> used(names_.size(), false);
  for (const auto& pieces : pieces_) {
    for (const auto& p : pieces) {
      if (p.param >= 0) used[static_cast<std::size_t>(p.param)] = true;
    }
  }
  std::vector<std::string> out;
  for (std::size_t i = 0; i < names_.size(); ++i) {
    if (!used[i]) out.push_back(names_[i]);
  }
  return out;
}

}  // namespace coop::tool
