// worker.hpp: the worker side of ProcessVM, and what coop::init records.
#pragma once

#include <string>
#include <vector>

namespace coop::detail {

// worker_env names the environment variable that marks a worker process. Its
// value is "<fd>:<fd>:<pid>": the read end of the worker's call pipe (calls
// come in), the write end of its result pipe (hello and results go out), and
// the pid of the spawner. Both are pipes: a Unix socket's read also wakes
// the writer waiting on the other end, for nothing, and its writes cost more
// per call (measured with bench/process).
// coop::init() removes it, so a worker's own children (and ProcessVMs made
// by its tasks) are ordinary processes.
inline constexpr const char* worker_env = "COS_WORKER";

// serve_as_worker() runs the worker loop on the call and result pipes
// named by `spec` (the value of worker_env): say hello on the result pipe,
// then read a call from the call pipe, run it, send its result, until the
// spawner closes the call pipe. Never returns: the
// process exits (status 0 on a clean shutdown).
[[noreturn]] void serve_as_worker(const char* spec);

// command_line() is the program's argv as coop::init saw it, or as
// /proc/self/cmdline tells when init was not called. Workers get the same.
std::vector<std::string> command_line();

// init_called() says whether coop::init ran in this process.
bool init_called();

}  // namespace coop::detail
