// main.cpp: the `cos` command-line tool.
//
// The tool is also the program of its own worker processes: ProcessVM starts
// them by running this executable again, and coop::init, the first line of
// main, turns those into workers that serve tasks and never return.
#include <cstdio>

#include <CLI/CLI.hpp>

#include <cos/init.hpp>

#include "bench.hpp"
#include "sweep.hpp"

#ifndef COS_VERSION
#define COS_VERSION "unknown"
#endif

int main(int argc, char** argv) {
  coop::init(argc, argv);

  CLI::App app{"cos: run a command over a grid of parameters on the slots of a cos VM, "
               "or run the cos benchmarks"};
  app.name("cos");
  app.set_version_flag("--version", "cos " COS_VERSION);
  app.require_subcommand(1);
  app.footer(R"(Examples:
  cos sweep --param k=1:4:1 --param c=0.1,0.5 -- ./oscillator --k {k} --c {c}
  cos sweep --points points.csv --out results.csv --timeout 30s -- ./sim --a {a} --b {b}

  cos bench

Run `cos sweep --help` for every option of a sweep, `cos bench --help` for the benchmarks.)");
  coop::tool::SweepOptions sweep;
  CLI::App* sweep_command = coop::tool::add_sweep_command(app, sweep);
  coop::tool::BenchOptions bench;
  CLI::App* bench_command = coop::tool::add_bench_command(app, bench);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit with 0; every mistake on the command line with 2.
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (sweep_command->parsed()) return coop::tool::run_sweep(sweep);
  if (bench_command->parsed()) return coop::tool::run_bench(bench);
  return 2;
}
