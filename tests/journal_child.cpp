// journal_child.cpp: a program that the journal test kills (SIGKILL) in the
// middle of a dispatch and then runs again.
//
//   journal_child BACKEND JOURNAL SIDE OUT JOBS MS
//
// It dispatches JOBS jobs of journal_test::square (MS ms each) on 2 slots of
// BACKEND ("thread" or "process") with the journal JOURNAL; each run of a
// job appends its index to SIDE; the collector appends "index replayed
// value" to OUT for every result it sees (and flushes it at once, so that a
// kill loses nothing the collector saw).
#include <cstdio>
#include <cstdlib>
#include <string>

#include <cos/cos.hpp>

#include "journal_jobs.hpp"
#include "test_support.hpp"

COS_REMOTE(journal_test::square);

int main(int argc, char** argv) {
  coop::init(argc, argv);
  if (argc != 7) {
    std::fprintf(stderr, "usage: journal_child BACKEND JOURNAL SIDE OUT JOBS MS\n");
    return 2;
  }
  std::string backend = argv[1], journal = argv[2], side = argv[3], out = argv[4];
  int jobs = std::atoi(argv[5]), ms = std::atoi(argv[6]);
  std::FILE* f = std::fopen(out.c_str(), "a");
  if (!f) return 3;
  try {
    coop::run(
        [&] {
          std::vector<coop::Job<long>> list;
          for (int i = 0; i < jobs; ++i) list.push_back(coop::job(journal_test::square, i, side, ms));
          coop::dispatch(
              list,
              [&](coop::Stream<long>& results) {
                for (auto& r : results) {
                  std::fprintf(f, "%zu %d %ld\n", r.index, r.replayed ? 1 : 0, r.value.get());
                  std::fflush(f);
                }
              },
              journal_test::with_journal(journal));
        },
        coop::Options{.vm = cos_test::make_vm(backend, 2)});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "journal_child: %s\n", e.what());
    return 1;
  }
  std::fclose(f);
  return 0;
}
