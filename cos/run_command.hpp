// run_command.hpp: run_command, the remote function that runs one point's
// command on a slot.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace coop::tool {

// CommandRun is what a slot reports about one run of a command.
struct CommandRun {
  static constexpr int exited = 0;       // code is the exit status
  static constexpr int signaled = 1;     // code is the signal that ended it
  static constexpr int not_started = 2;  // error says why (no such program, ...)

  int end = not_started;
  int code = 0;
  std::string last_line;    // the last non-empty line of stdout, up to 1 MiB
  std::string stdout_tail;  // the last 4 KiB of stdout
  std::string stderr_tail;  // the last 4 KiB of stderr
  std::string error;
  std::int64_t run_ns = 0;  // from start to exit, measured on the slot

  template <class Archive>
  void serialize(Archive& ar) {
    ar(end, code, last_line, stdout_tail, stderr_tail, error, run_ns);
  }
};

// run_command(argv) runs argv[0] (searched in PATH) with stdin from
// /dev/null and its stdout and stderr captured, waits for it and reports how
// it ended. Registered with COS_REMOTE: the sweep runs it on the slots of its VM.
//
// The command runs in a process group of its own under a small guard
// process, the subreaper of everything the command starts. When the command
// exits, the guard kills what is left of its group (background children
// included) and then every other descendant (those that left the group with
// setsid come to the guard when their parent dies); when the slot's worker
// dies (killed for a timeout, Ctrl-C, or with the whole tool), the guard sees
// its pipe close and does the same at once. So a point never leaves a
// process behind, and the program that runs the sweep needs to reap nothing.
// Blocks the calling thread until the command and its group are gone.
CommandRun run_command(std::vector<std::string> argv);

}  // namespace coop::tool
