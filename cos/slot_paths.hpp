// slot_paths.hpp: the parts of a sweep's command that only the slot can
// fill in: {scratch} (the point's scratch directory) and paths inside a
// --mirror DIR (the host's copy of DIR). The spawner puts a marker in their
// place; run_command resolves the markers on the slot. A marker holds a NUL
// byte, which no argument of a real command can, so a marker is never
// mistaken for text.
#pragma once

#include <string>
#include <vector>

namespace coop::tool {

// scratch_marker() stands for the point's scratch directory.
const std::string& scratch_marker();

// mark_mirrors(args, dirs) replaces, in each argument, a leading mirrored
// directory (or one right after the first '=', as in --in=DIR/a.txt) by the
// marker of that mirror. `dirs` are the --mirror directories as typed; an
// argument names one when it is that text, or that text followed by '/'.
void mark_mirrors(std::vector<std::string>& args, const std::vector<std::string>& dirs);

// resolve_markers(args) replaces every marker by its path on this slot
// (coop::task_scratch(), coop::to_actual()). Throws coop::Error when a
// mirror is unknown here or a scratch directory cannot be made.
void resolve_markers(std::vector<std::string>& args);

}  // namespace coop::tool
