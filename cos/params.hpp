// params.hpp: the points of a sweep (--param, --points, --zip) and the
// command with its {name} placeholders.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace coop::tool {

// Range is a numeric range START:STOP:STEP, its values made by index (a
// range of ten million values costs nothing until a value is asked for).
struct Range {
  bool integer = true;
  long long start = 0, step = 0;  // integer ranges
  double x = 0, d = 0;            // decimal ranges
  int places = 0;                 // decimals written, or -1 for exponent notation
  std::size_t count = 0;

  std::string value(std::size_t i) const;
};

// Parameter is one --param: a name and its values, in order, either a list
// or a range.
struct Parameter {
  std::string name;
  std::vector<std::string> values;  // a list
  std::optional<Range> range{};     // or a range (values is empty)

  std::size_t size() const { return range ? range->count : values.size(); }
  std::string value(std::size_t i) const { return range ? range->value(i) : values[i]; }
};

// parse_param() reads "NAME=V1,V2,..." or "NAME=START:STOP:STEP" (a numeric
// range that includes STOP when it falls on a step). Throws UsageError for a
// missing name or values, a bad name, or a malformed range.
Parameter parse_param(std::string_view spec);

// make_range() is START, START+STEP, ... up to STOP (included when it falls
// on a step, within rounding). Integers stay integers; decimals are written
// with the decimals of the inputs ("0:1:0.25" gives 0, 0.25, ..., 1). Throws
// UsageError (naming `name`) for a step of zero, a step that moves away from
// STOP, or more than ten million values.
Range make_range(std::string_view name, std::string_view start, std::string_view stop, std::string_view step);

// PointsFile is a --points file: the parameter names and one row of values per point.
struct PointsFile {
  std::vector<std::string> names;
  std::vector<std::vector<std::string>> rows;
};

// read_points_file() reads a CSV file whose header names the parameters and
// whose rows are points (a UTF-8 byte-order mark before the header is
// skipped). Throws UsageError when it cannot be read or is malformed.
PointsFile read_points_file(const std::string& path);

// Points are the sweep's points: the rows of the points file (if any)
// crossed with the grid of the parameters, or with the parameters paired
// element-wise when zipped; the first parameter varies slowest. A point is
// made from its number when asked for, so the points cost no memory.
class Points {
 public:
  Points() = default;
  Points(std::vector<std::string> names, std::optional<PointsFile> file, std::vector<Parameter> params, bool zip);

  const std::vector<std::string>& names() const { return names_; }
  std::size_t size() const { return total_; }
  // row() is the values of point `point` (< size()), in the order of names().
  std::vector<std::string> row(std::size_t point) const;

 private:
  std::vector<std::string> names_;
  std::optional<PointsFile> file_;
  std::vector<Parameter> params_;
  bool zip_ = false;
  std::size_t part_ = 1;  // points of the --param part per row of the file
  std::size_t total_ = 0;
};

// make_points() builds the sweep's points. Throws UsageError for repeated
// names, --zip lists of different lengths, more than ten million points, or
// no parameters at all.
Points make_points(const std::vector<Parameter>& params, bool zip, const std::optional<PointsFile>& file);

// check_name() throws UsageError when `name` cannot name a parameter: it must
// be letters, digits and '_' (not starting with a digit), and none of the
// columns the tool writes itself (point, status, exit, ...).
void check_name(std::string_view name, std::string_view where);

// reserved_columns() are the columns of a results row other than the
// parameters and the command's own result.
const std::vector<std::string>& reserved_columns();

// CommandTemplate is COMMAND ARG... with {name} placeholders. {{name}} stands
// for a literal {name}; braces around anything that is not a name (a shell's
// ${HOME}, awk's {print $1}) are kept as they are.
class CommandTemplate {
 public:
  // Throws UsageError for an empty command or a placeholder that names no parameter.
  CommandTemplate(std::vector<std::string> args, const std::vector<std::string>& names);

  // substitute() is the command of one point (values in the order of `names`).
  std::vector<std::string> substitute(const std::vector<std::string>& values) const;
  // program_is_fixed() says whether the program (first word) has no placeholder.
  bool program_is_fixed() const;
  // unused() are the parameters no placeholder mentions.
  std::vector<std::string> unused() const;
  const std::vector<std::string>& args() const { return raw_; }

 private:
  struct Piece {
    std::string text;
    int param = -1;  // index of the parameter, or -1 for literal text
  };
  std::vector<std::string> raw_;
  std::vector<std::string> names_;
  std::vector<std::vector<Piece>> pieces_;
};

}  // namespace coop::tool
