// sweep_cli.cpp: the command line of `cos sweep`, its options and help.
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "sweep.hpp"

namespace coop::tool {
namespace {

// SweepFormatter shows where COMMAND goes in the usage line.
class SweepFormatter : public CLI::Formatter {
 public:
  std::string make_usage(const CLI::App*, std::string name) const override {
    return "Usage: " + name + " [OPTIONS] -- COMMAND [ARG...]\n";
  }
};

}  // namespace

CLI::App* add_sweep_command(CLI::App& app, SweepOptions& o) {
  CLI::App* sub = app.add_subcommand("sweep", "Run a command over a grid of parameters on worker processes");
  sub->formatter(std::make_shared<SweepFormatter>());
  sub->get_formatter()->column_width(32);
  sub->add_option("--param", o.params,
                  "A parameter and its values, either a list:\n"
                  "  NAME=V1,V2,...\n"
                  "or a numeric range, STOP included when it falls\n"
                  "on a step (0:1:0.25 is 0, 0.25, 0.5, 0.75, 1):\n"
                  "  NAME=START:STOP:STEP\n"
                  "Repeat it: the sweep runs the grid of them all,\n"
                  "the first parameter varying slowest")
      ->type_name("NAME=VALUES")
      ->allow_extra_args(false);
  sub->add_option("--points", o.points_file,
                  "Explicit points: a CSV file whose header names\n"
                  "the parameters, one point per row (with --param:\n"
                  "each row crossed with their grid)")
      ->type_name("FILE.csv");
  sub->add_flag("--zip", o.zip, "Pair the --param lists element-wise instead of\nrunning their full grid");
  sub->add_option("--out", o.out,
                  "Where the rows go, as FILE.csv or FILE.jsonl (by\n"
                  "extension); default: CSV on stdout. A row is\n"
                  "written as soon as its point finishes")
      ->type_name("FILE");
  auto* slots =
      sub->add_option("--slots", o.slots, "Worker processes (default: the number of cores)")->type_name("N");
  auto* hosts = sub->add_option("--hosts", o.hosts,
                                "Named hosts with their worker processes, so one\n"
                                "machine stands in for several (a=2,b=4)")
                    ->type_name("NAME=N,...");
  slots->excludes(hosts);
  hosts->excludes(slots);
  sub->add_option("--timeout", o.timeout,
                  "Stop a point that runs longer than this (30s,\n"
                  "500ms, 2m, 1h; a bare number is seconds): its\n"
                  "process group is killed, its status is timeout")
      ->type_name("DURATION");
  sub->add_option("--retries", o.retries,
                  "Run a point that did not succeed (non-zero exit,\n"
                  "signal, timeout, lost worker) up to N more times;\n"
                  "its row is that of the last attempt")
      ->type_name("N");
  sub->add_flag("--resume", o.resume,
                "Complete the --out file of an earlier run of this\n"
                "sweep (killed, interrupted or with failures): keep\n"
                "its successful rows, run every other point");
  sub->add_option("--trace", o.trace,
                  "Write a timeline of every attempt: Chrome trace\n"
                  "JSON, for https://ui.perfetto.dev")
      ->type_name("FILE.json");
  sub->add_flag_callback(
      "--progress", [&o] { o.progress = true; },
      "Show a progress bar on stderr: done, failed,\nrunning and ETA (default: if stderr is a terminal)");
  sub->add_flag_callback(
      "--no-progress", [&o] { o.progress = false; }, "Do not show the progress bar");
  sub->add_option("--mirror", o.mirrors,
                  "Copy DIR to each host once, before its first point,\n"
                  "and run every argument that starts with DIR (or\n"
                  "has it after '=') on that host's copy (repeatable)")
      ->type_name("DIR");
  sub->add_option("command", o.command, "The command to run for each point, after --")->type_name("COMMAND");
  sub->footer(R"(How it runs:
  Each point runs COMMAND with every {name} replaced by the point's value of
  that parameter ({{name}} stays a literal {name}) and {scratch} by a fresh
  directory of the point's own on the slot's local disk (under $COS_SCRATCH
  or $TMPDIR; removed when the point ends), in a worker process of
  its own process group: a command that crashes or hangs costs one point, and
  a point that ends, fails, times out or is interrupted leaves no process.

Results, one row per point, as soon as it finishes:
  point, the parameters, status (ok, failed, crashed, timeout, lost, error),
  exit (its exit status), signal (SIGSEGV, ...), duration (seconds), host,
  attempts, the command's result, error (why it failed).
  The result is the last line of the command's stdout: a JSON object gives
  its fields, a number a `value` column, other text an `output` column.
  CSV takes its result columns from the first successful point (a file gets
  them then; on stdout, failed rows before it wait for it); JSON lines keep
  every field of every row.

Stopping and resuming:
  Rows are whole lines, so a sweep killed at any moment (kill -9 too) leaves
  only whole rows. Ctrl-C stops the running points and keeps the finished
  rows (Ctrl-C again quits at once). --resume completes the --out file: its
  successful points are not run again, failed and missing ones are. A point
  is its number and the exact text of its values. OUT.cos-sweep, beside the
  results, records their grid and command: --resume refuses the results of
  another grid (another command is only a warning), and a sweep holds a lock
  on it while it runs, so a second sweep on the same --out refuses at once.

At the end, a summary on stderr: points done and failed, wall time, serial
time (the sum of the points' run times) and speedup.

Exit status: 0 every point succeeded, 1 some failed, 2 bad input, 130 after
Ctrl-C.

Examples:
  cos sweep --param k=1:4:1 --param c=0.1,0.5 -- ./oscillator --k {k} --c {c}
  cos sweep --zip --param x=0:1:0.5 --param y=a,b,c --out runs.jsonl -- sh -c 'echo {x}{y}'
  cos sweep --points points.csv --slots 8 --timeout 30s --retries 1 --out r.csv -- ./sim {a} {b}
  cos sweep --resume --points points.csv --out r.csv -- ./sim {a} {b})");
  return sub;
}

}  // namespace coop::tool
